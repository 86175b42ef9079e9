"""The forwarder's whole verdict → action policy, data in, data out (core/retry.py `react`)."""

from __future__ import annotations

import random

from agent.core.retry import ACCOUNT_PAUSE, Reaction, ReactionKind, Verdict, VerdictKind, react


class _Half(random.Random):
    def random(self) -> float:
        return 0.5


def _react(kind: VerdictKind, *, wait: float = 0.0, jobs: int = 1, failures: int = 0) -> Reaction:
    return react(
        Verdict(kind, wait), 503 if kind is VerdictKind.RETRY else 400, "code", "message",
        jobs=jobs, attempts=0, failures=failures, max_backoff=60.0, rng=_Half(),
    )  # fmt: skip


def test_ok_completes_and_clears_the_failures() -> None:
    assert _react(VerdictKind.OK, failures=3) == Reaction(ReactionKind.COMPLETE)


def test_a_429_waits_for_brevo_and_counts_no_attempt() -> None:
    r = _react(VerdictKind.RATE_LIMITED, wait=7.5, failures=2)
    assert (r.kind, r.wait, r.block_family, r.count_attempt, r.failures) == (
        ReactionKind.RETRY, 7.5, 7.5, False, 2,
    )  # fmt: skip


def test_failures_back_off_further_each_time_up_to_the_cap() -> None:
    waits = [_react(VerdictKind.RETRY, failures=f).wait for f in range(8)]
    assert waits == [0.75, 1.5, 3.0, 6.0, 12.0, 24.0, 45.0, 45.0]  # equal jitter at 0.5, cap 60
    r = _react(VerdictKind.RETRY, failures=1)
    assert (r.failures, r.count_attempt, r.reason, r.block_family) == (2, True, "503 message", 1.5)


def test_a_refused_account_pauses_and_keeps_the_jobs() -> None:
    r = _react(VerdictKind.ACCOUNT)
    assert r.kind is ReactionKind.PAUSE_ACCOUNT and r.wait == ACCOUNT_PAUSE
    assert r.account_error == "brevo refused the account: 400 code: message"
    assert not r.count_attempt


def test_a_refused_batch_is_split_and_a_refused_single_is_a_dead_letter() -> None:
    assert _react(VerdictKind.PERMANENT, jobs=5).kind is ReactionKind.SPLIT
    assert _react(VerdictKind.PERMANENT, jobs=1).kind is ReactionKind.DEAD
