"""Retry policy: one function decides what every Brevo answer means, and backoff is a function."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ACCOUNT_PAUSE",
    "Reaction",
    "ReactionKind",
    "Verdict",
    "VerdictKind",
    "backoff",
    "backoff_delay",
    "classify",
    "rate_limit_reset",
    "react",
]


class VerdictKind(StrEnum):
    """What the forwarder does with an answer."""

    OK = "ok"
    RATE_LIMITED = "rate_limited"  # 429: wait for the window's reset, no attempt counted
    RETRY = "retry"  # 425, 5xx, network: jittered backoff, attempt counted
    ACCOUNT = "account"  # 401/402/403: the key or the account is wrong; pause, keep the jobs
    PERMANENT = "permanent"  # other 4xx: dead letter (a batch is split first)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision and what it needs."""

    kind: VerdictKind
    wait: float = 0.0


def rate_limit_reset(headers: dict[str, str]) -> float | None:
    """`x-sib-ratelimit-reset`: seconds until the window resets, relative (NOTES.md §4)."""
    raw = headers.get("x-sib-ratelimit-reset")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def classify(status: int | None, headers: dict[str, str] | None = None) -> Verdict:
    """Map a status (None: network error or timeout) to a verdict."""
    if status is None:
        return Verdict(VerdictKind.RETRY)
    if 200 <= status < 300:
        return Verdict(VerdictKind.OK)
    if status == 429:
        # Brevo sends no Retry-After; its reset header says when the window ends (NOTES §4).
        reset = rate_limit_reset(headers or {})
        return Verdict(VerdictKind.RATE_LIMITED, 1.0 if reset is None else reset)
    if status == 425:
        # "Too Early" on contact writes: undocumented, likely a concurrent write (NOTES §3).
        return Verdict(VerdictKind.RETRY)
    if status in (401, 402, 403):
        return Verdict(VerdictKind.ACCOUNT)
    if status in (408, 409) or status >= 500:
        return Verdict(VerdictKind.RETRY)
    return Verdict(VerdictKind.PERMANENT)


def backoff_delay(
    attempts: int,
    *,
    initial: float = 1.0,
    factor: float = 2.0,
    max_delay: float = 60.0,
    rng: random.Random | None = None,
) -> float:
    """Delay before attempt `attempts + 1`: exponential, capped, with equal jitter (half fixed,
    half random) so a crowd of retries spreads out without ever retrying at once, and never
    close to zero. The one backoff policy of the agent (Brevo calls, WooCommerce requests, the
    worker's restarts)."""
    base = min(max_delay, initial * factor ** min(max(0, attempts), 64))
    r = (rng or random).random()
    return base / 2 + r * base / 2


def backoff(
    initial: float = 0.5,
    maximum: float = 30.0,
    factor: float = 2.0,
    *,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """`backoff_delay` as a generator of the delays before each retry (the shell sleeps)."""
    rng = _Rand(rand)
    attempts = 0
    while True:
        yield backoff_delay(attempts, initial=initial, factor=factor, max_delay=maximum, rng=rng)
        attempts += 1


class _Rand(random.Random):
    """A Random whose `random()` is the given function (tests pass a constant)."""

    def __init__(self, fn: Callable[[], float]) -> None:
        super().__init__()
        self._fn = fn

    def random(self) -> float:
        return self._fn()


ACCOUNT_PAUSE = 60.0  # seconds an account Brevo refused waits before it is tried again


class ReactionKind(StrEnum):
    """What happens to the jobs of a request once its answer is known."""

    COMPLETE = "complete"  # Brevo holds them
    RETRY = "retry"  # again after `wait`
    PAUSE_ACCOUNT = "pause_account"  # the whole account waits `wait`; the jobs too
    SPLIT = "split"  # a refused batch: each job again, alone, to find the bad one
    DEAD = "dead"  # refused for good: a dead letter with Brevo's code and message


@dataclass(frozen=True, slots=True)
class Reaction:
    """`react`'s decision, which the forwarder only applies (agent/forward/forwarder.py `_send`)."""

    kind: ReactionKind
    wait: float = 0.0  # seconds until the jobs (or the account) go again
    reason: str = ""  # stored with the retried jobs
    count_attempt: bool = True
    block_family: float = 0.0  # seconds the endpoint family's budget waits
    failures: int = 0  # the family's consecutive failures after this answer
    account_error: str | None = None  # set on PAUSE_ACCOUNT; cleared by COMPLETE


def react(
    verdict: Verdict,
    status: int | None,
    code: str,
    message: str,
    *,
    jobs: int,
    attempts: int,
    failures: int,
    max_backoff: float,
    rng: random.Random | None = None,
) -> Reaction:
    """The whole verdict → action policy for one answered request of `jobs` jobs, the most
    `attempts` any of them had, after `failures` consecutive failures of its family."""
    if verdict.kind is VerdictKind.OK:
        return Reaction(ReactionKind.COMPLETE)
    if verdict.kind is VerdictKind.RATE_LIMITED:
        # Brevo said when its window resets: wait for it, no attempt counted.
        return Reaction(
            ReactionKind.RETRY,
            wait=verdict.wait,
            reason="429 rate limited",
            count_attempt=False,
            block_family=verdict.wait,
            failures=failures,
        )
    if verdict.kind is VerdictKind.RETRY:
        failures += 1
        delay = backoff_delay(max(attempts, failures - 1), max_delay=max_backoff, rng=rng)
        return Reaction(
            ReactionKind.RETRY,
            wait=delay,
            reason=f"{status} {message}",
            block_family=delay,
            failures=failures,
        )
    if verdict.kind is VerdictKind.ACCOUNT:
        error = f"brevo refused the account: {status} {code}: {message}"
        return Reaction(
            ReactionKind.PAUSE_ACCOUNT,
            wait=ACCOUNT_PAUSE,
            reason=error,
            count_attempt=False,
            failures=failures,
            account_error=error,
        )
    if jobs > 1:
        # One bad item fails a whole batch: resend them one by one, so the bad one is found
        # with Brevo's own message and the rest still go through.
        return Reaction(
            ReactionKind.SPLIT, reason=f"{status} {message}", count_attempt=False, failures=failures
        )
    return Reaction(ReactionKind.DEAD, failures=failures)
