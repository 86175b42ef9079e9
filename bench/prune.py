"""Inbox retention: what an event costs on disk, and how long deleting old ones holds the
store's write lock (the doors' acks wait for it, see docs/durability.md).

    .venv/bin/python bench/prune.py [--events 200000]

Stores --events real-shaped order events (the reference order.json, each with its own id), marks
them processed and aged past `agent.inbox_retention`, then runs the worker's deletion
(`SqliteStore.prune_inbox`, PRUNE_BATCH rows per transaction) and reports each transaction's
lock hold: the bound is the 100 ms p99 ack-latency goal of the stream door.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agent.store.tx as tx_mod
from agent.core.events import Door, Event, parse_event
from agent.store import SqliteStore
from agent.store.inbox import PRUNE_BATCH
from tests.conftest import ref


def events(start: int, n: int) -> list[Event]:
    order = ref("order.json")
    out = []
    for i in range(start, start + n):
        ev = parse_event(
            {"topic": "order.updated", "payload": dict(order, id=i + 1)}, door=Door.STREAM
        )
        assert isinstance(ev, Event)
        out.append(ev)
    return out


def file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def main(n: int) -> None:
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()},"
        f" Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "woobrevo.sqlite3"
        async with SqliteStore(path, writes="worker") as store:
            for start in range(0, n, 1000):
                await store.ingest("s1", events(start, min(1000, n - start)))
            await store._run(lambda: store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
            size = file_size(path)
            print(f"stored {n} events: {size / 1e6:.1f} MB, {size / n / 1024:.2f} KiB per event")
            await store._run(
                lambda: store.db.execute(
                    "UPDATE inbox SET state = 1, received_at = received_at - 8 * 86400"
                )
            )
            holds: list[float] = []
            real = tx_mod.Tx.__exit__
            entered: list[float] = []
            real_enter = tx_mod.Tx.__enter__

            def enter(self: tx_mod.Tx) -> object:
                db = real_enter(self)
                entered.append(time.perf_counter())
                return db

            def leave(self: tx_mod.Tx, *exc: object) -> None:
                real(self, *exc)  # type: ignore[arg-type]
                holds.append(time.perf_counter() - entered.pop())

            tx_mod.Tx.__enter__ = enter  # type: ignore[method-assign,assignment]
            tx_mod.Tx.__exit__ = leave  # type: ignore[method-assign,assignment]
            t0 = time.perf_counter()
            deleted = await store.prune_inbox(time.time() - 7 * 86400)
            wall = time.perf_counter() - t0
            tx_mod.Tx.__exit__ = real  # type: ignore[method-assign]
            tx_mod.Tx.__enter__ = real_enter  # type: ignore[method-assign]
            holds_ms = sorted(h * 1000 for h in holds)
            p99 = holds_ms[min(len(holds_ms) - 1, int(len(holds_ms) * 0.99))]
            print(
                f"deleted {deleted} in {wall:.1f} s, {len(holds)} transactions of"
                f" {PRUNE_BATCH}: lock held median {statistics.median(holds_ms):.1f} ms,"
                f" p99 {p99:.1f} ms, max {holds_ms[-1]:.1f} ms"
            )
            await store._run(lambda: store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
            await store.ingest("s1", events(n, n // 10))
            await store._run(lambda: store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
            print(
                f"then {n // 10} new events: file {file_size(path) / 1e6:.1f} MB"
                f" (freed pages reused; was {size / 1e6:.1f} MB)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().events))
