"""Dead letters retried and dropped on PostgreSQL while other replicas' group commits change
the same sites' rows (agent/store/postgres/deadletters.py: a retry or drop names its letters'
`site_lock`, so its group never waits in a cycle with another; base.py for the group commit).
Any group PostgreSQL aborts says so in the log: these tests find none."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from agent.core.events import Door, Event, Rejection, parse_event
from agent.core.jobs import Job, Kind
from agent.store.postgres import PostgresStore
from agent.store.postgres.base import Conn, site_lock
from tests.agent.storesql import query

# How long a test waits for what it waits for (far above what it takes).
DEADLINE = 20.0


def _aborted(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "aborted a group commit" in r.getMessage()]


async def _lock_waiters(store: PostgresStore) -> int:
    """Backends of the test's database waiting for any lock (advisory, row, transaction)."""
    ((n,),) = await query(
        store,
        "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE NOT l.granted AND a.datname = current_database()",
    )
    return int(n)


def _event(eid: str) -> Event:
    raw = {
        "id": eid,
        "topic": "product.updated",
        "payload": {"id": 7, "date_modified_gmt": "2026-11-27T10:00:00"},
    }
    ev = parse_event(raw, door=Door.STREAM)
    assert isinstance(ev, Event), ev
    return ev


async def test_a_retry_waits_for_a_group_holding_its_sites_rows(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Replica B's group holds an event's inbox row, then changes its dead letter (as a purge
    of its email redacts the one and deletes the other, agent/store/postgres/privacy.py);
    replica A retries that letter meanwhile. A's group waits for the site's lock before it
    locks the letter: B commits, then A puts the event back, and no group is aborted (without
    the lock, A would hold the letter and wait for the row: a deadlock PostgreSQL breaks)."""
    caplog.set_level(logging.WARNING, logger="agent.store")
    holding, go_on = asyncio.Event(), asyncio.Event()
    async with PostgresStore(pg_dsn) as a, PostgresStore(pg_dsn) as b:
        await a.ingest("s1", [_event("e-1")])
        await a.ingest("s1", [], [(Rejection("e-1", "bad_payload", "late"), {"id": "e-1"})])
        (letter,) = await a.dead_letters()

        async def purge_like(db: Conn) -> None:
            await db.execute(
                "UPDATE inbox SET payload = payload WHERE site='s1' AND event_id='e-1'"
            )
            holding.set()
            await go_on.wait()
            await db.execute(
                "UPDATE dead_letters SET message='(redacted)' WHERE id=%s", (letter.id,)
            )

        async with asyncio.timeout(DEADLINE):
            held = asyncio.create_task(b._write(purge_like, (site_lock("s1"),)))
            await holding.wait()
            retry = asyncio.create_task(a.retry_dead_letters(None, lambda raw: None))
            while not retry.done():  # ended, or waits for a lock: then B goes on
                if await _lock_waiters(a):
                    break
                await asyncio.sleep(0.01)
            go_on.set()
            await held
            assert await retry == (1, [])
        rows = await query(a, "SELECT state FROM inbox WHERE site='s1' AND event_id='e-1'")
        (after,) = await a.dead_letters("retried")
    assert rows == [(0,)]  # back in the inbox, to be processed again
    assert after.message == "(redacted)"  # B's change, committed before the retry read it
    assert not _aborted(caplog)


async def test_replicas_retrying_and_dropping_letters_in_opposite_orders_never_deadlock(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each round, a letter per site: replica A retries them one by one, in the sites' order,
    in its group commits, while replica B drops them in the reverse order in its own and
    dead-letters the next round's jobs. No group is aborted; each letter is retried or
    dropped, once, and each retried one is a job again."""
    caplog.set_level(logging.WARNING, logger="agent.store")
    sites = [f"site-{i:02d}" for i in range(16)]
    rounds = 8
    ids = iter(range(1_000_000, 1_010_000))  # far from the ids of the jobs retried

    def job(site: str) -> Job:
        body: dict[str, Any] = {"email": f"{site}@example.com", "attributes": {}}
        return Job(next(ids), "main", site, Kind.CONTACT, f"contact:{site}", body, False)

    async with PostgresStore(pg_dsn) as a, PostgresStore(pg_dsn) as b:
        await asyncio.gather(*(b.dead_letter(job(s), "400", "bad") for s in sites))
        retried = dropped = 0
        deadline = time.monotonic() + DEADLINE * 3
        for n in range(rounds):
            letters = {d.site: d.id for d in await a.dead_letters()}
            assert sorted(letters) == sites, n
            more = [b.dead_letter(job(s), "400", "bad") for s in sites] if n < rounds - 1 else []
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                done = await asyncio.gather(
                    *(a.retry_dead_letters([letters[s]], lambda raw: None) for s in sites),
                    *(b.drop_dead_letters([letters[s]]) for s in reversed(sites)),
                    *more,
                )
            assert all(problems == [] for _, problems in done[: len(sites)])
            round_retried = sum(d for d, _ in done[: len(sites)])
            round_dropped = sum(done[len(sites) : 2 * len(sites)])
            assert round_retried + round_dropped == len(sites), n
            retried, dropped = retried + round_retried, dropped + round_dropped
        states = await query(a, "SELECT state, COUNT(*) FROM dead_letters GROUP BY 1 ORDER BY 1")
        ((jobs,),) = await query(a, "SELECT COUNT(*) FROM jobs")
    assert not _aborted(caplog)
    assert states == [(s, c) for s, c in (("dropped", dropped), ("retried", retried)) if c]
    assert jobs == retried
