"""The polling door's decisions, pure: where a poll window starts, how watermarks move, what
changed or vanished, and the stream/polling mode machine with its timers.

The machine: stream → (silent for `stale_after`) → polling → (stream back) → one catch-up
round → stream; a site configured `mode: polling` is polled whatever happens. While polling, a
round every `interval`, and in the background a customer scan every `customer_scan_every` and
an id reconciliation every `reconcile_every`, first due one period after polling began.

The shell (agent/doors/poller.py) calls `step` every tick and performs the actions it returns
in order; what the store answered comes back through `round_succeeded`, `round_failed`,
`caught_up`, `due_jobs` and `job_done`. WooCommerce facts: reference/woocommerce/NOTES.md §2.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from agent.core.times import gmt, gmt_seconds
from agent.core.woo import NOT_ORDER_STATUSES

__all__ = [
    "Action",
    "CannotPoll",
    "CatchUp",
    "CheckJobs",
    "Job",
    "Known",
    "Mode",
    "Poll",
    "PollTiming",
    "PollerState",
    "SaveDue",
    "StartJob",
    "Step",
    "StopJobs",
    "SwitchMode",
    "advance",
    "caught_up",
    "changed_ids",
    "due_jobs",
    "job_done",
    "next_mode",
    "round_failed",
    "round_succeeded",
    "start_mark",
    "step",
    "stream_fresh",
    "vanished_ids",
    "window_start",
]

# -- polling windows and watermarks, in WooCommerce's GMT format (agent/core/times.py) ----------


def window_start(mark: str, overlap: float) -> str:
    """`modified_after` for a poll: the mark minus the overlap.

    WP_Date_Query's `after` is exclusive with one-second granularity (NOTES §2.1), and a save
    in the second the last poll ran may commit after it: windows overlap, repeats dedupe.
    """
    seconds = gmt_seconds(mark)
    if seconds is None:
        raise ValueError(f"not a WooCommerce GMT time: {mark!r}")
    return gmt(seconds - overlap)


def advance(mark: str | None, items: Iterable[Mapping[str, Any]]) -> str | None:
    """The newest `date_modified_gmt` among the mark and the items (same format: string max)."""
    newest = mark
    for item in items:
        stamp = item.get("date_modified_gmt")
        if isinstance(stamp, str) and stamp and (newest is None or stamp > newest):
            newest = stamp
    return newest


def start_mark(poll_mark: str | None, known_newest: str | None, lookback: float) -> str | None:
    """Where polling resumes: the poller's own mark, or — when another door kept the site up to
    date since — the newest version any door stored minus `lookback` (rows the plugin had not
    shipped yet when its stream went silent). None: nothing known, start from the store's now."""
    candidates = [poll_mark] if poll_mark else []
    seconds = gmt_seconds(known_newest)
    if seconds is not None:
        candidates.append(gmt(seconds - lookback))
    return max(candidates) if candidates else None


# What the agent holds of an object: (date_modified_gmt, deleted, order status or None), as
# SqliteStore.object_versions returns it. Listings with status "any" leave drafts and trash out
# (NOT_ORDER_STATUSES), so an object last seen in one of them is not counted as gone.
Known = Mapping[int, tuple[str, bool, str | None]]


def changed_ids(remote: Mapping[int, str], known: Known) -> list[int]:
    """Ids whose listed `date_modified_gmt` is newer than the version the agent holds."""
    out = []
    for oid, version in remote.items():
        have = known.get(oid)
        if have is None or have[1] or (version and version > have[0]):
            out.append(oid)
    return sorted(out)


def vanished_ids(remote: Iterable[int], known: Known) -> list[int]:
    """Ids the agent holds as live that the store no longer lists (deleted or trashed).

    Permanent deletions fire no webhook and no hook the stream could miss-handle (NOTES §1.4),
    so only a listing shows them. Objects the agent last saw in a status the listing hides
    (drafts) are not counted as gone.
    """
    present = set(remote)
    return sorted(
        oid
        for oid, (_, deleted, status) in known.items()
        if not deleted and status not in NOT_ORDER_STATUSES and oid not in present
    )


# -- the mode machine ---------------------------------------------------------------------------


class Mode(StrEnum):
    """How a site's changes reach the agent right now (/status, /metrics)."""

    STREAM = "stream"
    POLLING = "polling"


class Step(StrEnum):
    """What the poller does on this tick."""

    IDLE = "idle"  # the stream is healthy
    POLL = "poll"  # poll the store (when due)
    CATCHUP = "catchup"  # the stream is back: one last poll now, then stop


def stream_fresh(
    last_seen: float | None, started_at: float, now: float, stale_after: float
) -> bool:
    """Heard from within `stale_after`; before the first hello the agent's start counts, so a
    restart does not poll while the plugin is about to reconnect (WP-Cron ticks every minute)."""
    reference = last_seen if last_seen is not None else started_at
    return now - reference <= stale_after


def next_mode(configured: str, current: Mode, fresh: bool) -> tuple[Mode, Step]:
    """stream → (silent for stale_after) → polling → (stream back) → one catch-up → stream.

    A site configured with `mode: polling` has no plugin and is polled whatever happens.
    """
    if configured == Mode.POLLING:
        return Mode.POLLING, Step.POLL
    if current is Mode.STREAM:
        return (Mode.STREAM, Step.IDLE) if fresh else (Mode.POLLING, Step.POLL)
    return (Mode.STREAM, Step.CATCHUP) if fresh else (Mode.POLLING, Step.POLL)


class Job(StrEnum):
    """A background job of a polling site (its value names the `<job>:due` watermark)."""

    SCAN = "scan"  # every customer's date_modified_gmt (wc/v3 cannot filter them by date)
    RECONCILE = "reconcile"  # ids the store no longer lists: permanent deletions


@dataclass(frozen=True, slots=True)
class PollTiming:
    """A site's polling timers (`polling` in the config, `agent.stream.stale_after`)."""

    interval: float
    stale_after: float
    # The background jobs the site runs and their periods, in the order they are started:
    # no customer scan when `sync.customers` is off.
    jobs: Mapping[Job, float]

    @classmethod
    def of(cls, site: Any, stale_after: float) -> PollTiming:
        """From a resolved `SiteConfig` (read by attribute: the core imports no config)."""
        polling = site.woo.polling
        jobs = {Job.SCAN: polling.customer_scan_every} if site.woo.sync.customers else {}
        jobs[Job.RECONCILE] = polling.reconcile_every
        return cls(polling.interval, stale_after, jobs)


@dataclass(frozen=True, slots=True)
class PollerState:
    """Everything the mode machine remembers of one site between ticks."""

    configured: Mode  # the site's `mode`: polling when it has no plugin
    mode: Mode
    mode_since: float
    next_poll: float = 0.0  # when the next round is due
    failing: bool = False  # the last round (or background job) failed
    # The next round resumes from what any door stored, not only from the poll watermarks.
    fresh_start: bool = True
    warned: str | None = None  # the problem last logged: each distinct one is logged once
    period_start: float | None = None  # when polling last began after a silent stream
    due: Mapping[Job, float] = field(default_factory=dict)  # when each job is next due
    # The `<job>:due` watermarks as the store holds them (the poller is their only writer).
    stored: Mapping[Job, str] = field(default_factory=dict)

    @classmethod
    def initial(
        cls, configured: str, now: float, stored: Mapping[Job, str] | None = None
    ) -> PollerState:
        """A site's state when the agent starts: in its configured mode since `now`, with the
        `<job>:due` watermarks the store holds."""
        mode = Mode.POLLING if configured == Mode.POLLING else Mode.STREAM
        return cls(configured=mode, mode=mode, mode_since=now, stored=dict(stored or {}))


# -- what the shell does, in the order `step` returns it ----------------------------------------


@dataclass(frozen=True, slots=True)
class SwitchMode:
    """Enter `mode`: /status, the mode gauges, a counted change and a log line."""

    mode: Mode
    silent_for: float = 0.0  # how long the stream had been silent (entering polling)


@dataclass(frozen=True, slots=True)
class Poll:
    """Poll every resource once now; report through `round_succeeded` or `round_failed`."""


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The stream is back: one last round; when it succeeds, `caught_up`."""


@dataclass(frozen=True, slots=True)
class CheckJobs:
    """Start the background jobs that are due: `due_jobs` with the clock read after the round."""


@dataclass(frozen=True, slots=True)
class CannotPoll:
    """The stream is silent but the site has no REST client; `warn`: log it (once a problem)."""

    problem: str | None
    warn: bool


@dataclass(frozen=True, slots=True)
class SaveDue:
    """Store when `job` is next due (the `<job>:due` watermark), so a restart keeps the period."""

    job: Job
    due: float


@dataclass(frozen=True, slots=True)
class StartJob:
    """Run `job` in the background; report through `job_done` or `round_failed`."""

    job: Job


@dataclass(frozen=True, slots=True)
class StopJobs:
    """Cancel the running background jobs."""


Action = SwitchMode | Poll | CatchUp | CheckJobs | CannotPoll | SaveDue | StartJob | StopJobs


# -- the transitions ----------------------------------------------------------------------------


def step(
    state: PollerState,
    now: float,
    *,
    stream_last_seen: float | None,
    started_at: float,
    timing: PollTiming,
    can_poll: bool = True,
    problem: str | None = None,
) -> tuple[PollerState, tuple[Action, ...]]:
    """One tick: the mode from the stream's last sign of life, and a round when one is due.

    `can_poll` is False when the site has no REST client (`problem` says why).
    """
    fresh = stream_fresh(stream_last_seen, started_at, now, timing.stale_after)
    mode, what = next_mode(state.configured, state.mode, fresh)
    if what is Step.IDLE:
        return state, ()
    if not can_poll:
        return replace(state, warned=problem), (CannotPoll(problem, state.warned != problem),)
    actions: list[Action] = []
    if mode is Mode.POLLING and state.mode is Mode.STREAM:
        silent = now - (stream_last_seen if stream_last_seen is not None else started_at)
        actions.append(SwitchMode(Mode.POLLING, silent))
        # A stream outage shorter than a scan or reconciliation period triggers neither: the
        # plugin's outbox still holds what happened and ships it when it is back.
        state = replace(
            state,
            mode=Mode.POLLING,
            mode_since=now,
            fresh_start=True,
            next_poll=now,
            period_start=now,
            due={},
        )
    if what is Step.POLL:
        if now >= state.next_poll:
            actions.append(Poll())
            state = replace(state, next_poll=now + timing.interval)
        actions.append(CheckJobs())
        return state, tuple(actions)
    # The stream is back: one last round covers changes made since the previous one; after a
    # failure, not before the next round would have been due.
    if state.failing and now < state.next_poll:
        return state, tuple(actions)
    actions.append(CatchUp())
    return replace(state, next_poll=now + timing.interval), tuple(actions)


def round_succeeded(state: PollerState) -> PollerState:
    """A round stored everything the store listed: later rounds resume from the poll marks."""
    return replace(state, fresh_start=False, failing=False, warned=None)


def round_failed(state: PollerState, error: str) -> tuple[PollerState, bool]:
    """A round or a background job failed with `error`; True: log it (a new problem)."""
    return replace(state, failing=True, warned=error), state.warned != error


def caught_up(state: PollerState, now: float) -> tuple[PollerState, tuple[Action, ...]]:
    """The catch-up round succeeded: polling stops, back to the stream."""
    return replace(state, mode=Mode.STREAM, mode_since=now), (StopJobs(), SwitchMode(Mode.STREAM))


def due_jobs(
    state: PollerState, now: float, *, timing: PollTiming, running: Collection[Job]
) -> tuple[PollerState, tuple[Action, ...]]:
    """The background jobs to start now (none of those still `running`).

    A job's first due time is the stored one, or one period from now (and never before one
    period after polling began), so a short outage does not trigger a full scan.
    """
    due = dict(state.due)
    stored = dict(state.stored)
    actions: list[Action] = []
    for job, every in timing.jobs.items():
        if job in running:
            continue
        when = due.get(job)
        if when is None:
            saved = stored.get(job)
            when = float(saved) if saved else now + every
            if state.period_start is not None:
                when = max(when, state.period_start + every)
            if not saved:
                stored[job] = repr(when)
                actions.append(SaveDue(job, when))
            due[job] = when
        if now >= when:
            actions.append(StartJob(job))
    return replace(state, due=due, stored=stored), tuple(actions)


def job_done(
    state: PollerState, job: Job, now: float, timing: PollTiming
) -> tuple[PollerState, SaveDue]:
    """`job` finished: next due one period from now."""
    when = now + timing.jobs[job]
    state = replace(state, due={**state.due, job: when}, stored={**state.stored, job: repr(when)})
    return state, SaveDue(job, when)
