"""Ingest benchmark: REST-sized events committed to the store per second (goal ≥ 10,000/s).

    .venv/bin/python bench/ingest.py [--events 50000] [--batch 100]

Each event carries the reference order (docs-examples/order.json, ~3 KB of JSON) with its own
id; batches go through `SqliteStore.ingest`, the entry point of every door, each batch one
durable transaction (WAL, synchronous=FULL), exactly as the websocket door acks them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.core.events import Door, Event, parse_event
from agent.store import SqliteStore
from tests.conftest import ref


def make_events(n: int) -> list[Event]:
    order = ref("order.json")
    out = []
    for i in range(n):
        payload = dict(
            order, id=100_000 + i, date_modified_gmt=f"2026-11-{1 + i % 27:02d}T10:00:00"
        )
        ev = parse_event(
            {"id": f"bench-{i}", "topic": "order.updated", "payload": payload}, door=Door.STREAM
        )
        assert isinstance(ev, Event)
        out.append(ev)
    return out


async def run(n: int, batch: int, producers: int) -> dict[str, float]:
    events = make_events(n)
    size = len(json.dumps(events[0].payload))
    with tempfile.TemporaryDirectory() as tmp:
        async with SqliteStore(Path(tmp) / "bench.sqlite3") as store:
            t0 = time.perf_counter()

            async def producer(k: int) -> None:
                # each producer is one site's connection: one batch in flight, awaiting its ack
                for i in range(k * batch, n, batch * producers):
                    await store.ingest(f"site{k}", events[i : i + batch])

            await asyncio.gather(*(producer(k) for k in range(producers)))
            elapsed = time.perf_counter() - t0
            # a replay of everything stores nothing and is acked as fast
            t1 = time.perf_counter()
            for k in range(producers):
                for i in range(k * batch, n, batch * producers):
                    res = await store.ingest(f"site{k}", events[i : i + batch])
                    assert res.new == 0
            replay = time.perf_counter() - t1
    return {
        "events": n,
        "batch": batch,
        "producers": producers,
        "payload_bytes": size,
        "seconds": elapsed,
        "events_per_s": n / elapsed,
        "replay_events_per_s": n / replay,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--producers", type=int, nargs="+", default=[1, 8])
    args = p.parse_args()
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}")
    for producers in args.producers:
        r = asyncio.run(run(args.events, args.batch, producers))
        print(
            f"ingest: {r['events']} events of {r['payload_bytes']} B, batches of {r['batch']}, "
            f"{producers} concurrent producer(s): {r['seconds']:.2f} s, "
            f"{r['events_per_s']:,.0f} events/s (goal ≥ 10,000/s); "
            f"replay {r['replay_events_per_s']:,.0f} events/s"
        )


if __name__ == "__main__":
    main()
