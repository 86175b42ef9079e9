"""The fence (agent/store/postgres/cluster.py `holds_claims`): a replica whose heartbeat
lapses while it still runs sends nothing the others may have taken over (issue 17).

Without it, a live replica whose beat the others could not see for agent.replica_timeout
went on claiming and sending while they took its claims in flight over and sent them again:
orders written twice at Brevo. Here a real agent replica's heartbeat is held up by a test
transaction that locks its row of `replicas` (as a database too slow to take the beat would),
while its forwarder runs on; the other replica takes over, and every order reaches Brevo
exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from agent.store.postgres import PostgresStore
from agent.store.postgres.cluster import FENCE
from tests.agent.doorkit import AgentProcess, batch, event, hello, order
from tests.agent.replicakit import left, replica_config, states
from tests.fakes.brevo import BrevoFake
from tests.kit import until

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
TIMEOUT = 3.0  # agent.replica_timeout
ORDERS = 120
NAMES = ("r0", "r1")


async def test_the_fence_follows_the_heartbeat(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Claims are vouched for from the first beat, for FENCE of the timeout after each beat
    sent; a claim made before a lapse stays fenced after the beats come back."""
    caplog.set_level(logging.WARNING, "agent.store")
    async with PostgresStore(pg_dsn, owner="a", replica_timeout=TIMEOUT) as a:
        before = time.monotonic()
        assert a.holds_claims(before), "no heartbeat kept (a tool, the doors): nothing fenced"
        await a.beat(time.time())
        claimed = time.monotonic()
        assert a.holds_claims(claimed)
        assert not a.holds_claims(before), "claimed before the first beat: not vouched for"
        await a.beat(time.time())
        assert a.holds_claims(claimed), "beats in time keep earlier claims"

        await asyncio.sleep(TIMEOUT * FENCE + 0.2)
        assert not a.holds_claims(claimed)
        assert not a.holds_claims(time.monotonic()), "a lapsed heartbeat: claim nothing"
        assert not [r for r in caplog.records if "lapsed" in r.getMessage()]

        await a.beat(time.time())
        assert a.holds_claims(time.monotonic()), "beating again: new claims may go"
        assert not a.holds_claims(claimed), "claimed before the lapse: never sent"
        (lapsed,) = [r.getMessage() for r in caplog.records if "lapsed" in r.getMessage()]
        assert "replica a: its heartbeat lapsed for" in lapsed


def _claims(dsn: str, owner: str) -> int:
    with psycopg.connect(dsn) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM jobs WHERE claimed_by=%s AND state=1", (owner,)
        ).fetchone()
    return int(row[0]) if row else 0


async def _stale(agent: AgentProcess, name: str) -> bool:
    return states(await agent.status()).get(name) == "stale"


@pytest.mark.slow
async def test_a_replica_whose_heartbeat_lapses_sends_nothing_twice(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with BrevoFake() as fake:
        fake.latency = 0.4  # each replica holds requests in flight
        configs = [replica_config(tmp_path, fake, pg_dsn, name, TIMEOUT) for name in NAMES]
        async with AgentProcess(configs[0], ENV) as r0, AgentProcess(configs[1], ENV) as r1:

            async def both_alive() -> bool:
                return states(await r0.status()) == dict.fromkeys(NAMES, "alive")

            await until(both_alive, 30, every=0.2)
            events = [
                {**event(f"o-{i}", i), "payload": order(i, "2026-11-27T06:20:00")}
                for i in range(1000, 1000 + ORDERS)
            ]
            async with r0.connect() as ws:
                await hello(ws)
                for n, part in enumerate((events[: ORDERS // 2], events[ORDERS // 2 :])):
                    await ws.send(batch(f"backlog-{n}", part))
                    ack = json.loads(await ws.recv())
                    assert ack["type"] == "ack" and len(ack["accepted"]) == len(part), ack

            await until(lambda: _claims(pg_dsn, "r1") >= 1, 40, every=0.02)
            # r1's heartbeat cannot be written while this transaction holds its row: to r0 it
            # looks dead after TIMEOUT, while its forwarder runs on.
            with psycopg.connect(pg_dsn) as hold:
                hold.execute("SELECT 1 FROM replicas WHERE name='r1' FOR UPDATE")
                held_at = time.monotonic()
                await until(lambda: _stale(r0, "r1"), TIMEOUT + 5, every=0.1)
                await asyncio.sleep(2.0)  # r0 claims (and takes over) meanwhile
                sent_while_held = [r for r in fake.requests if r.time > held_at]
                hold.rollback()
            await until(lambda: left(pg_dsn) == (0, 0), 90, every=0.2)
            logs = "".join(r1.log)
            others = "".join(r0.log)

        writes = Counter(
            str(r.json["id"])
            for r in fake.requests
            if r.path == "/orders/status" and r.status is not None and r.status < 300
        )
        assert set(writes) == {f"a-{i}" for i in range(1000, 1000 + ORDERS)}, "orders lost"
        doubled = sorted(o for o, n in writes.items() if n > 1)
        assert not doubled, f"written twice: {doubled}"
        assert sent_while_held, "r0 went on sending while r1 was stale"
        assert "replica r1: its heartbeat lapsed for" in logs, logs[-3000:]
        assert "replica r1 was not seen for" in logs, logs[-3000:]
        # A start is not a pause: the worker's first beat after its doors process's row.
        assert "was not seen for" not in others, others[-3000:]
