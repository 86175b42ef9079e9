"""Replicas wake each other (agent/store/postgres/cluster.py `listening`): a batch one
replica stores wakes the others' processors, the jobs its processing plans wake the others'
forwarders, at the commit (LISTEN/NOTIFY), not at their next timer (up to 5 s)."""

from __future__ import annotations

import asyncio
import time

from agent.core.events import Door, Event, parse_event
from agent.core.jobs import Intent, Kind, Outcome
from agent.store.postgres import PostgresStore
from agent.store.postgres.channels import JOBS_CHANNEL
from agent.store.postgres.cluster import listening
from tests.agent.storesql import query
from tests.conftest import ref
from tests.kit import until

BOUND = 1.0  # seconds from the commit to the other replica's wake-up


def _event(i: int) -> Event:
    ev = parse_event({"id": f"o-{i}", "topic": "order.updated", "payload": ref("order.json")},
                     door=Door.STREAM)  # fmt: skip
    assert isinstance(ev, Event)
    return ev


async def _listening(store: PostgresStore) -> bool:
    """b's listener has run its LISTENs (its last statement, in pg_stat_activity)."""
    ((n,),) = await query(
        store,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
        f" AND query = 'LISTEN {JOBS_CHANNEL}'",
    )
    return bool(n)


def _pipeline(site: str, event: Event, prior: object, agg: object, consent: object) -> Outcome:
    body = {"email": "x@example.com", "attributes": {}}
    return Outcome(account="main", intents=(Intent(Kind.CONTACT, "contact:x@example.com", body),))


async def test_a_replicas_commits_wake_the_others_within_a_bound(pg_dsn: str) -> None:
    inbox, jobs = asyncio.Event(), asyncio.Event()
    async with (
        PostgresStore(pg_dsn, owner="a") as a,
        PostgresStore(pg_dsn, owner="b") as b,
        listening(b, inbox=inbox.set, jobs=jobs.set),
    ):
        await until(lambda: _listening(a), 10, every=0.02)
        assert not inbox.is_set() and not jobs.is_set()
        start = time.monotonic()
        await a.ingest("s1", [_event(1)])
        async with asyncio.timeout(BOUND):
            await inbox.wait()
        woke_inbox = time.monotonic() - start
        assert not jobs.is_set()
        start = time.monotonic()
        assert await a.process_pending(10, _pipeline, lambda s, e: None) == 1
        async with asyncio.timeout(BOUND):
            await jobs.wait()
        woke_jobs = time.monotonic() - start
    print(f"woken {woke_inbox * 1000:.0f} ms after a batch, {woke_jobs * 1000:.0f} ms after jobs")
