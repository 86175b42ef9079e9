"""The poller's mode machine and timers as data: `step` and the functions that feed results back
(agent/core/polling.py), with no sockets, no store and no clock but the numbers passed in."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from agent.core.polling import (
    Action,
    CannotPoll,
    CatchUp,
    CheckJobs,
    Job,
    Mode,
    Poll,
    PollerState,
    PollTiming,
    SaveDue,
    StartJob,
    StopJobs,
    SwitchMode,
    caught_up,
    due_jobs,
    job_done,
    round_failed,
    round_succeeded,
    step,
)

STARTED = 1000.0
TIMING = PollTiming(
    interval=60.0, stale_after=180.0, jobs={Job.SCAN: 3600.0, Job.RECONCILE: 21600.0}
)


def tick(
    state: PollerState,
    now: float,
    seen: float | None = None,
    *,
    can_poll: bool = True,
    problem: str | None = None,
) -> tuple[PollerState, tuple[Action, ...]]:
    return step(
        state,
        now,
        stream_last_seen=seen,
        started_at=STARTED,
        timing=TIMING,
        can_poll=can_poll,
        problem=problem,
    )


def polling_since(now: float) -> PollerState:
    """A stream site that went silent and switched to polling at `now`."""
    state, _ = tick(PollerState.initial("stream", STARTED), now, seen=now - 181)
    return state


# -- the mode -----------------------------------------------------------------------------------


def test_a_site_starts_in_its_configured_mode() -> None:
    stream = PollerState.initial("stream", STARTED)
    assert (stream.configured, stream.mode, stream.mode_since) == (
        Mode.STREAM,
        Mode.STREAM,
        STARTED,
    )
    polled = PollerState.initial("polling", STARTED, {Job.SCAN: "5000.0"})
    assert (polled.configured, polled.mode, polled.stored) == (
        Mode.POLLING,
        Mode.POLLING,
        {Job.SCAN: "5000.0"},
    )
    assert stream.fresh_start and not stream.failing and stream.due == {}


def test_a_healthy_stream_does_nothing() -> None:
    state = PollerState.initial("stream", STARTED)
    assert tick(state, STARTED + 500, seen=STARTED + 400) == (state, ())
    # Before the first hello the agent's start counts: a restart does not poll at once.
    assert tick(state, STARTED + 180) == (state, ())


def test_a_silent_stream_switches_to_polling_and_polls_at_once() -> None:
    state = replace(PollerState.initial("stream", STARTED), fresh_start=False, due={Job.SCAN: 1.0})
    now = STARTED + 500
    new, actions = tick(state, now, seen=now - 200)
    assert actions == (SwitchMode(Mode.POLLING, 200.0), Poll(), CheckJobs())
    assert (new.mode, new.mode_since, new.next_poll, new.period_start) == (
        Mode.POLLING,
        now,
        now + 60,
        now,
    )
    # The first round resumes from what any door stored; the job timers start over.
    assert new.fresh_start and new.due == {}
    # Never heard from: silent since the agent started.
    _, actions = tick(PollerState.initial("stream", STARTED), STARTED + 181)
    assert actions[0] == SwitchMode(Mode.POLLING, 181.0)


def test_rounds_every_interval_while_polling() -> None:
    now = STARTED + 500
    state = polling_since(now)
    state, actions = tick(state, now + 30, seen=now - 200)
    assert actions == (CheckJobs(),) and state.next_poll == now + 60
    state, actions = tick(state, now + 60, seen=now - 200)
    assert actions == (Poll(), CheckJobs()) and state.next_poll == now + 120
    # A late tick: the next round is an interval after this one, not after the due time.
    state, actions = tick(state, now + 150, seen=now - 200)
    assert actions == (Poll(), CheckJobs()) and state.next_poll == now + 210


def test_a_site_without_the_plugin_is_polled_whatever_the_stream_says() -> None:
    state = PollerState.initial("polling", STARTED)
    state, actions = tick(state, STARTED, seen=STARTED)
    assert actions == (Poll(), CheckJobs()) and state.mode is Mode.POLLING
    state, actions = tick(state, STARTED + 1, seen=STARTED + 1)
    assert actions == (CheckJobs(),)
    state, actions = tick(state, STARTED + 60, seen=STARTED + 60)
    assert actions == (Poll(), CheckJobs())
    assert state.period_start is None  # it never switched


def test_a_site_that_cannot_be_polled_says_so_once_per_problem() -> None:
    state = PollerState.initial("stream", STARTED)
    now = STARTED + 500
    state, actions = tick(state, now, can_poll=False, problem="needs store_url")
    assert actions == (CannotPoll("needs store_url", warn=True),)
    assert state.mode is Mode.STREAM  # the mode does not change without a client
    state, actions = tick(state, now + 1, can_poll=False, problem="needs store_url")
    assert actions == (CannotPoll("needs store_url", warn=False),)
    state, actions = tick(state, now + 2, can_poll=False, problem="needs keys")
    assert actions == (CannotPoll("needs keys", warn=True),)
    # A healthy stream needs no polling: nothing to say.
    assert tick(state, now + 3, seen=now + 3, can_poll=False, problem="needs keys")[1] == ()


# -- results fed back ---------------------------------------------------------------------------


def test_a_round_that_succeeds_clears_the_failure_and_the_fresh_start() -> None:
    state = replace(polling_since(STARTED + 500), failing=True, warned="503")
    assert state.fresh_start
    done = round_succeeded(state)
    assert (done.fresh_start, done.failing, done.warned) == (False, False, None)


def test_a_failure_is_logged_once_per_distinct_message() -> None:
    state = polling_since(STARTED + 500)
    state, warn = round_failed(state, "503 from the store")
    assert warn and state.failing and state.warned == "503 from the store"
    state, warn = round_failed(state, "503 from the store")
    assert not warn
    state, warn = round_failed(state, "401 refused")
    assert warn
    state, warn = round_failed(round_succeeded(state), "401 refused")
    assert warn  # a success in between: the same problem is news again


# -- back to the stream -------------------------------------------------------------------------


def test_the_stream_back_means_one_catch_up_round_then_stream() -> None:
    now = STARTED + 500
    state = round_succeeded(polling_since(now))
    state, actions = tick(state, now + 10, seen=now + 9)
    assert actions == (CatchUp(),) and state.next_poll == now + 70
    assert state.mode is Mode.POLLING  # until the catch-up succeeded
    state, actions = caught_up(round_succeeded(state), now + 11)
    assert actions == (StopJobs(), SwitchMode(Mode.STREAM))
    assert (state.mode, state.mode_since) == (Mode.STREAM, now + 11)
    assert tick(state, now + 12, seen=now + 12) == (state, ())


def test_a_failed_catch_up_is_tried_again_a_round_later() -> None:
    now = STARTED + 500
    state = round_succeeded(polling_since(now))
    state, actions = tick(state, now + 10, seen=now + 10)
    assert actions == (CatchUp(),)
    state, _ = round_failed(state, "503")
    # Failing, and the next round is not due: wait.
    state, actions = tick(state, now + 20, seen=now + 20)
    assert actions == () and state.mode is Mode.POLLING
    state, actions = tick(state, now + 70, seen=now + 70)
    assert actions == (CatchUp(),) and state.next_poll == now + 130


def test_a_failing_background_job_delays_the_catch_up_too() -> None:
    now = STARTED + 500
    state = round_succeeded(polling_since(now))  # next round due at now + 60
    state, _ = round_failed(state, "scan failed")
    assert tick(state, now + 30, seen=now + 30)[1] == ()
    assert tick(state, now + 60, seen=now + 60)[1] == (CatchUp(),)


def test_the_stream_silent_again_after_catching_up_starts_over() -> None:
    now = STARTED + 500
    state = round_succeeded(polling_since(now))
    state, _ = due_jobs(state, now, timing=TIMING, running=())
    state, _ = caught_up(state, now + 10)
    later = now + 1000
    state, actions = tick(state, later, seen=later - 181)
    assert actions == (SwitchMode(Mode.POLLING, 181.0), Poll(), CheckJobs())
    assert state.fresh_start and state.due == {} and state.period_start == later


# -- background jobs ----------------------------------------------------------------------------


def test_jobs_are_first_due_one_period_after_polling_began_and_the_due_is_saved() -> None:
    now = STARTED + 500
    state = polling_since(now)
    state, actions = due_jobs(state, now + 2, timing=TIMING, running=())
    # Computed at the check (after the round), never before one period after polling began.
    assert actions == (SaveDue(Job.SCAN, now + 3602), SaveDue(Job.RECONCILE, now + 21602))
    assert state.due == {Job.SCAN: now + 3602, Job.RECONCILE: now + 21602}
    assert state.stored == {Job.SCAN: repr(now + 3602), Job.RECONCILE: repr(now + 21602)}
    # Known now: nothing saved again, nothing started before it is due.
    assert due_jobs(state, now + 3601, timing=TIMING, running=()) == (state, ())
    state, actions = due_jobs(state, now + 3602, timing=TIMING, running=())
    assert actions == (StartJob(Job.SCAN),)


def test_a_running_job_is_not_started_twice() -> None:
    state = replace(polling_since(STARTED), due={Job.SCAN: 0.0, Job.RECONCILE: 0.0})
    _, actions = due_jobs(state, STARTED + 1, timing=TIMING, running={Job.SCAN})
    assert actions == (StartJob(Job.RECONCILE),)
    _, actions = due_jobs(state, STARTED + 1, timing=TIMING, running={Job.SCAN, Job.RECONCILE})
    assert actions == ()


def test_a_stored_due_survives_a_restart() -> None:
    # A polling-only site restarted: the stored due stands, nothing is saved again.
    state = PollerState.initial("polling", STARTED, {Job.SCAN: "1500.0", Job.RECONCILE: "9e9"})
    state, actions = due_jobs(state, STARTED, timing=TIMING, running=())
    assert actions == () and state.due == {Job.SCAN: 1500.0, Job.RECONCILE: 9e9}
    _, actions = due_jobs(state, 1500.0, timing=TIMING, running=())
    assert actions == (StartJob(Job.SCAN),)
    # An empty stored value counts as none.
    state = PollerState.initial("polling", STARTED, {Job.SCAN: ""})
    _, actions = due_jobs(state, STARTED, timing=TIMING, running=())
    assert SaveDue(Job.SCAN, STARTED + 3600) in actions


def test_a_short_outage_does_not_run_a_job_a_stored_due_had_made_due() -> None:
    # The stored due has passed, but polling began just now: one period from now instead.
    state = replace(PollerState.initial("stream", STARTED), stored={Job.SCAN: "1200.0"})
    now = STARTED + 500
    state, _ = tick(state, now, seen=now - 181)
    state, actions = due_jobs(state, now, timing=TIMING, running=())
    assert state.due[Job.SCAN] == now + 3600
    assert actions == (SaveDue(Job.RECONCILE, now + 21600),)  # the scan's due was stored


def test_a_finished_job_is_due_one_period_later() -> None:
    now = STARTED + 500
    state = replace(polling_since(now), due={Job.SCAN: now, Job.RECONCILE: now + 99999})
    state, save = job_done(state, Job.SCAN, now + 40, TIMING)
    assert save == SaveDue(Job.SCAN, now + 3640)
    assert state.due[Job.SCAN] == now + 3640 and state.stored[Job.SCAN] == repr(now + 3640)
    assert due_jobs(state, now + 3639, timing=TIMING, running=())[1] == ()
    assert due_jobs(state, now + 3640, timing=TIMING, running=())[1] == (StartJob(Job.SCAN),)


def test_a_failed_job_keeps_its_due_and_runs_again_at_the_next_check() -> None:
    now = STARTED + 500
    state = replace(polling_since(now), due={Job.SCAN: now, Job.RECONCILE: now + 99999})
    state, _ = round_failed(state, "scan failed")
    assert due_jobs(state, now + 1, timing=TIMING, running=())[1] == (StartJob(Job.SCAN),)


def test_the_timing_follows_the_site_config() -> None:
    def site(customers: bool) -> SimpleNamespace:
        polling = SimpleNamespace(interval=30.0, customer_scan_every=600.0, reconcile_every=7200.0)
        sync = SimpleNamespace(customers=customers)
        return SimpleNamespace(woo=SimpleNamespace(polling=polling, sync=sync))

    timing = PollTiming.of(site(True), 90.0)
    assert (timing.interval, timing.stale_after) == (30.0, 90.0)
    assert list(timing.jobs.items()) == [(Job.SCAN, 600.0), (Job.RECONCILE, 7200.0)]
    # No customer scan when customers are not synced.
    without = PollTiming.of(site(False), 90.0)
    assert dict(without.jobs) == {Job.RECONCILE: 7200.0}
    state = replace(polling_since(STARTED), due={Job.RECONCILE: 0.0})
    assert due_jobs(state, STARTED, timing=without, running=())[1] == (StartJob(Job.RECONCILE),)
