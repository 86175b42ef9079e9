"""Races between agent replicas sharing one PostgreSQL database (issue #17): a purge against
a processing pass planned before it, and the group commits of two replicas that lock the
same rows (a site's stats and inbox, an account's forwarded records) in opposite orders
(agent/store/postgres/base.py: each group takes its advisory locks first, in one order; a
group PostgreSQL still aborts runs again)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from agent.core.aggregates import order_fact
from agent.core.events import Door, Event, parse_event
from agent.core.jobs import Intent, Job, Kind, Outcome
from agent.store.postgres import PostgresStore
from agent.store.postgres.base import Conn
from tests.agent.storesql import query
from tests.conftest import ref

EMAIL = "gone@example.com"
# How long a test waits for what it waits for (far above what it takes).
DEADLINE = 20.0


def _event(raw: dict[str, Any]) -> Event:
    ev = parse_event(raw, door=Door.STREAM)
    assert isinstance(ev, Event), ev
    return ev


def _aborted(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "aborted a group commit" in r.getMessage()]


async def _lock_waiters(store: PostgresStore) -> int:
    """Backends of the test's database waiting for an advisory lock."""
    ((n,),) = await query(
        store,
        "SELECT COUNT(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        " WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()",
    )
    return int(n)


async def test_a_purge_waits_for_a_processing_pass_planned_before_it(pg_dsn: str) -> None:
    """Replica A's worker plans an order of EMAIL (its order fact, its contact job) while
    replica B's forwarder ends the erasure of EMAIL. The purge waits for the pass to commit and
    then takes out what it wrote; without PROCESS_LOCK in the purge, the pass would write the
    erased email back after the purge."""
    planning, release = threading.Event(), threading.Event()
    base = ref("order.json")
    order = dict(base, billing=dict(base["billing"], email=EMAIL), status="processing")

    def pipeline(site: str, event: Event, prior: Any, agg: Any, consent: Any) -> Outcome:
        planning.set()
        assert release.wait(DEADLINE), "the test never let the pass go on"
        intent = Intent(Kind.CONTACT, f"contact:{EMAIL}", {"email": EMAIL, "attributes": {}})
        return Outcome(account="main", intents=(intent,))

    erase = Job(
        1, "main", "s1", Kind.ERASE, f"erase:{EMAIL}", {"email": EMAIL, "site": "s1"}, False
    )
    async with PostgresStore(pg_dsn) as a, PostgresStore(pg_dsn) as b:
        await a.ingest("s1", [_event({"id": "o-1", "topic": "order.updated", "payload": order})])
        pass_ = asyncio.create_task(a.process_pending(10, pipeline, lambda s, e: order_fact(e)))
        deadline = time.monotonic() + DEADLINE
        while not planning.is_set():
            assert time.monotonic() < deadline, "the pass never planned the order"
            await asyncio.sleep(0.01)
        purge = asyncio.create_task(b.erasure_finished(erase))
        # The purge ends, or waits for the pass: then the pass goes on.
        while not purge.done() and not await _lock_waiters(b):
            assert time.monotonic() < deadline, "the purge neither ended nor waited"
            await asyncio.sleep(0.01)
        release.set()
        assert await pass_ == 1
        await purge
        facts = await query(a, "SELECT * FROM order_facts")
        jobs = await query(a, "SELECT kind, key, body FROM jobs")
        held = await b.holdings("main", ["s1"], EMAIL)
    assert not [f for f in facts if EMAIL in str(f)], facts
    assert not [j for j in jobs if EMAIL in str(j)], jobs
    assert not any(held.values()), held


def _batch(site: str, n: int) -> list[Event]:
    payload = {"id": n + 1, "date_modified_gmt": "2026-11-27T10:00:00"}
    return [_event({"id": f"{site}-{n:03d}", "topic": "product.updated", "payload": payload})]


async def test_two_replicas_ingesting_sites_in_opposite_orders_never_deadlock(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each round, both replicas store one batch per site, every site's in one group commit
    of theirs: A's in the sites' order, B's in the reverse, the same events (a plugin's
    retry that landed on the other replica). No group is aborted, every event is stored once."""
    caplog.set_level(logging.WARNING, logger="agent.store")
    sites = [f"site-{i:02d}" for i in range(16)]
    rounds = 12
    async with PostgresStore(pg_dsn) as a, PostgresStore(pg_dsn) as b:

        async def replica(store: PostgresStore, order: list[str]) -> int:
            new = 0
            for n in range(rounds):
                results = await asyncio.gather(*(store.ingest(s, _batch(s, n)) for s in order))
                assert all(len(r.accepted) == 1 for r in results)
                new += sum(r.new for r in results)
            return new

        async with asyncio.timeout(DEADLINE * 3):
            new_a, new_b = await asyncio.gather(replica(a, sites), replica(b, sites[::-1]))
        rows = await query(a, "SELECT site, event_id, COUNT(*) FROM inbox GROUP BY 1, 2")
    assert not _aborted(caplog)
    assert new_a + new_b == len(sites) * rounds  # each event new once, on one replica
    assert len(rows) == len(sites) * rounds and all(c == 1 for _, _, c in rows)


async def test_two_replicas_completing_and_suppressing_keys_in_opposite_orders_never_deadlock(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each round, both replicas' forwarders complete one job per contact and suppress its
    email, all in one group commit of theirs, A in the emails' order, B in the reverse: no
    group is aborted, every job is gone, every contact's record and suppression is kept."""
    caplog.set_level(logging.WARNING, logger="agent.store")
    emails = [f"c{i:02d}@example.com" for i in range(16)]
    rounds = 10
    ids = iter(range(1, 10_000))

    def job(email: str, n: int) -> Job:
        body = {"email": email, "attributes": {"N": n}, "listIds": [7]}
        site = f"site-{emails.index(email) % 4}"
        return Job(next(ids), "main", site, Kind.CONTACT, f"contact:{email}", body, False)

    async with PostgresStore(pg_dsn) as a, PostgresStore(pg_dsn) as b:

        async def replica(store: PostgresStore, order: list[str]) -> None:
            for n in range(rounds):
                writes = []
                for email in order:
                    writes.append(store.complete([job(email, n)]))
                    writes.append(store.suppress("main", email, [7], "unsubscribed", 1000.0 + n))
                await asyncio.gather(*writes)

        async with asyncio.timeout(DEADLINE * 3):
            await asyncio.gather(replica(a, emails), replica(b, emails[::-1]))
        forwarded = await query(a, "SELECT key, state FROM forwarded ORDER BY key")
        suppressed = await query(a, "SELECT email, since FROM suppression ORDER BY email")
        ((done,),) = await query(
            a, "SELECT SUM(value) FROM stats WHERE name = 'brevo_done_contact'"
        )
    assert not _aborted(caplog)
    assert [k for k, _ in forwarded] == [f"contact:{e}" for e in emails]
    assert suppressed == [(e, 1000.0 + rounds - 1) for e in emails]
    assert done == 2 * rounds * len(emails)  # every completion counted once


async def test_a_group_postgresql_aborts_for_a_deadlock_runs_again(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two writes that name no locks take two rows in opposite orders, each in its replica's
    group commit: PostgreSQL aborts one group (40P01; two, rarely, under load); it runs again,
    said once per abort, and both writes are stored, once each."""
    caplog.set_level(logging.WARNING, logger="agent.store")
    holding = {"a": asyncio.Event(), "b": asyncio.Event()}

    def bumps(me: str, other: str, first: str, second: str) -> Any:
        async def run(db: Conn) -> None:
            for row in (first, second):
                await db.execute(
                    "INSERT INTO stats (site, name, value) VALUES (%s, 'n', 1)"
                    " ON CONFLICT (site, name) DO UPDATE SET value = stats.value + 1",
                    (row,),
                )
                if row == first:
                    holding[me].set()
                    await holding[other].wait()  # both hold their first row

        return run

    async with PostgresStore(pg_dsn) as a, PostgresStore(pg_dsn) as b:
        async with asyncio.timeout(DEADLINE):
            await asyncio.gather(
                a._write(bumps("a", "b", "r1", "r2")), b._write(bumps("b", "a", "r2", "r1"))
            )
        rows = await query(a, "SELECT site, value FROM stats WHERE name = 'n' ORDER BY site")
    assert rows == [("r1", 2), ("r2", 2)]
    aborted = _aborted(caplog)
    # One abort, or two under load: the second group's deadlock check may run before the
    # aborted one's locks are released, and PostgreSQL aborts it too; both run again.
    assert 1 <= len(aborted) <= 2 and all("40P01" in a for a in aborted), aborted
