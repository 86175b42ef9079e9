"""A replica killed mid-drain: its claims are taken over within agent.replica_timeout, not the
120 s lease (issue 17; agent/store/postgres/cluster.py).

Three real agents (`python -m agent.cli run`, each its doors and worker processes, its own
state folder and replica name) share one PostgreSQL database and one Brevo account (the fake,
answering slowly so that each replica holds requests in flight). One gets a backlog of
orders on its stream door; all three forward it. Replica r1 is killed (SIGKILL, both
processes) while it holds claims. The others take them over within the timeout and a
margin, and finish the drain: every order reaches Brevo; an order is written twice only if
r1 had sent it before it died and could not record Brevo's answer (the in-flight case: the
fake saw its request arrive before the kill, and its job was still r1's claim).

Also the cluster view: /status `cluster` and /metrics' `woobrevo_cluster_replicas` show the
three replicas alive, then r1 stale.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import aiohttp
import psycopg
import pytest

from tests.agent.doorkit import AgentProcess, batch, event, hello, order
from tests.agent.replicakit import left, replica_config, states
from tests.fakes.brevo import BrevoFake
from tests.kit import until

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
TIMEOUT = 3.0  # agent.replica_timeout
MARGIN = 6.0  # a survivor's loop turn (≤ 5 s asleep when it saw nothing to do) and slack
ORDERS = 60
NAMES = ("r0", "r1", "r2")


def _claims(dsn: str, owner: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as db:
        rows = db.execute(
            "SELECT id, key FROM jobs WHERE claimed_by=%s AND state=1 ORDER BY id", (owner,)
        ).fetchall()
    return [(int(i), str(k)) for i, k in rows]


def _still_claimed(dsn: str, ids: list[int], owner: str) -> int:
    with psycopg.connect(dsn) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM jobs WHERE id = ANY(%s) AND claimed_by=%s", (ids, owner)
        ).fetchone()
    return int(row[0]) if row else 0


def _kill(agent: AgentProcess) -> None:
    """SIGKILL the doors process and its worker at once."""
    assert agent.proc is not None
    pid = agent.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for p in [pid, *map(int, children)]:
        os.kill(p, signal.SIGKILL)


async def _metrics(agent: AgentProcess) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{agent.http_port}/metrics") as r,
    ):
        return await r.text()


@pytest.mark.slow
async def test_a_killed_replicas_claims_are_taken_over_within_the_timeout(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with BrevoFake() as fake:
        fake.latency = 0.4  # each replica holds requests in flight
        configs = [replica_config(tmp_path, fake, pg_dsn, name, TIMEOUT) for name in NAMES]
        async with (
            AgentProcess(configs[0], ENV) as r0,
            AgentProcess(configs[1], ENV) as r1,
            AgentProcess(configs[2], ENV) as r2,
        ):
            agents = {"r0": r0, "r1": r1, "r2": r2}

            async def all_alive() -> bool:
                return states(await r0.status()) == dict.fromkeys(NAMES, "alive")

            await until(all_alive, 30, every=0.2)
            status = await r2.status()
            this = [r["name"] for r in status["cluster"]["replicas"] if r["this"]]
            assert this == ["r2"] and status["replica"] == "r2"
            assert 'woobrevo_cluster_replicas{state="alive"} 3' in await _metrics(r0)

            events = [
                {**event(f"o-{i}", i), "payload": order(i, "2026-11-27T06:20:00")}
                for i in range(1000, 1000 + ORDERS)
            ]
            async with r0.connect() as ws:
                await hello(ws)
                await ws.send(batch("backlog", events))
                ack = json.loads(await ws.recv())
            assert ack["type"] == "ack" and len(ack["accepted"]) == ORDERS, ack

            # r1 holds orders in flight: kill it there
            await until(lambda: len(_claims(pg_dsn, "r1")) >= 2, 40, every=0.02)
            _kill(agents["r1"])
            killed_at = time.monotonic()
            held = _claims(pg_dsn, "r1")  # r1 is dead: these stay its own until taken over
            assert held
            ids = [i for i, _ in held]
            await until(lambda: _still_claimed(pg_dsn, ids, "r1") == 0, TIMEOUT + MARGIN + 30)
            took = time.monotonic() - killed_at
            assert took <= TIMEOUT + MARGIN, f"r1's claims taken over after {took:.1f}s"

            async def r1_stale() -> bool:
                return states(await r0.status()).get("r1") == "stale"

            await until(r1_stale, 10, every=0.2)
            metrics = await _metrics(r2)
            assert 'woobrevo_cluster_replicas{state="stale"} 1' in metrics
            assert 'woobrevo_cluster_replicas{state="alive"} 2' in metrics

            await until(lambda: left(pg_dsn) == (0, 0), 90, every=0.2)

        # The audit: every order written; twice only when r1 sent it before it died.
        writes = Counter(
            str(r.json["id"])
            for r in fake.requests
            if r.path == "/orders/status" and r.status is not None and r.status < 300
        )
        wanted = {f"a-{i}" for i in range(1000, 1000 + ORDERS)}
        assert set(writes) == wanted, wanted - set(writes)
        in_flight = {
            str(r.json["id"])
            for r in fake.requests
            if r.path == "/orders/status" and r.time <= killed_at
        } & {key.removeprefix("order:") for _, key in held if key.startswith("order:")}
        doubled = {oid for oid, n in writes.items() if n > 1}
        assert doubled <= in_flight, (
            f"doubled beyond r1's in-flight requests: {doubled - in_flight}"
        )
        assert max(writes.values()) <= 2
        print(
            f"takeover {took:.2f}s; r1 held {len(held)} claims; {len(in_flight)} in flight"
            f" when killed; {len(doubled)} written twice; lost 0"
        )
