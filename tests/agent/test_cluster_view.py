"""/status `cluster` and /metrics' cluster series on SQLite: one agent, a cluster of one
(PostgreSQL's three replicas, alive then one stale: tests/agent/test_pg_takeover.py)."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
from websockets.asyncio.client import connect

from tests.agent.doorkit import TOKENS, hello, make_config, running, url


async def test_sqlite_shows_a_one_replica_cluster(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    async with running(cfg) as app:
        auth = {"Authorization": f"Bearer {TOKENS['a']}"}
        async with connect(url(app), additional_headers=auth) as ws:
            await hello(ws)
            async with aiohttp.ClientSession() as s:
                base = f"http://127.0.0.1:{app.http.port}"
                async with s.get(f"{base}/status") as r:
                    status = await r.json()
                async with s.get(f"{base}/metrics") as r:
                    metrics = await r.text()
    cluster = status["cluster"]
    assert (cluster["alive"], cluster["stale"]) == (1, 0)
    (me,) = cluster["replicas"]
    assert me["name"] == cfg.agent.replica == status["replica"]
    assert me["this"] and me["state"] == "alive" and me["pid"] == os.getpid()
    assert me["sites"] == ["a"]  # the site connected on this stream door
    assert me["claims"] is None  # SQLite's claims are not leased to a replica
    assert 'woobrevo_cluster_replicas{state="alive"} 1' in metrics
    assert 'woobrevo_cluster_replicas{state="stale"} 0' in metrics
