"""Pipeline throughput: one worker's processing of a stored backlog into Brevo jobs (issue 17).

    .venv/bin/python bench/pipeline.py [--orders 20000] [--customers 5000] [--products 500]
                                       [--rounds 1] [--profile FILE]
    .venv/bin/python bench/pipeline.py --stages RAW [--cpu-us 200]


The backlog is bench/drain.py's (the reference REST order, customer and product, as a
backfill: orders with `historical: true`), stored in the inbox of a real store file (WAL,
`synchronous=FULL`, the worker's write role) before the clock starts. Then the worker's
processor (agent/process/processor.py `Processor.drain`, as `woobrevo-agent worker` runs it,
without the forwarder: dry-run sends nothing anyway, and with the worker's garbage-collector
settings, agent/cli/main.py `tune_gc`) turns it into jobs, in two timed phases:
products and customers first (the "mixed" phase, as a backfill feeds them), then the orders.

Reported per phase: events/s, CPU seconds per event (all threads: the store's thread runs the
pipeline), and at the end the peak resident memory and a SHA-256 of every job the pipeline
queued (account, site, kind, key, historical, body, in id order): equal digests from two
commits mean the same jobs with byte-identical bodies.

Run with `PYTHONPATH=<checkout>` from a checkout's folder to measure that checkout's code.

`--postgres` runs it on the PostgreSQL store (agent/store/postgres/): a private server with
fsync on (bench/replicas.py `postgres`, or `WOOBREVO_TEST_PG`'s), a new database per round;
the pipeline then runs on the processing connection's thread and each chunk's reads and
writes are round trips to the server (agent/store/ahead.py reads them ahead).

`--live` makes the same events live ones (not historical), so that the planned jobs include
Brevo events too (their bodies are part of the digest).

`--stages RAW` reads a py-spy profile of a run (`py-spy record -r 1000 -f raw -o RAW --
python bench/pipeline.py ...`) and splits the store thread's samples inside `process_pending`
into the pipeline's stages (each sample goes to the innermost frame that names one), as shares
and, given the run's CPU µs per event (`--cpu-us`, from an unprofiled run), as µs per event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import hashlib
import os
import platform
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from agent.cli.main import tune_gc
from agent.metrics import Metrics
from agent.process.processor import Processor
from agent.store.open import open_store
from agent.store.sqlite import SqliteStore
from bench.drain import MAPPING, backlog
from bench.replicas import pg_facts, postgres
from tests.kit import load
from tests.pgserver import fresh_database

SITE = "default"


def config(tmp: Path, live: bool, dsn: str | None = None) -> Any:
    agent: dict[str, Any] = {"state_dir": str(tmp / "state")}
    if dsn is not None:
        agent["store"] = dsn
    if live:  # the fixtures' orders are years old: none of them is too old to be live
        agent["historical_after"] = "36500d"
    return load(
        tmp,
        {
            "agent": agent,
            "brevo": {"dry_run": True},
            "connectors": {
                "woocommerce": {
                    "lists": {"all_customers": 50, "buyers": 51},
                    "customer_mapping": MAPPING,
                }
            },
        },
    )


# Innermost frame (a function's qualified name) → stage; the first match from the leaf wins.
STAGES = [
    ("commit", ("Tx.__exit__", "Tx.__enter__")),
    ("writes of the chunk (objects, facts, jobs, inbox state)", ("Chunk.apply",)),
    ("consent view (record, suppressions)", ("Chunk.record", "Chunk.suppressions")),
    ("aggregates (order facts by email, summed)", ("Chunk.aggregates",)),
    (
        "coalescing into jobs (pending job and Brevo's copy read, merge)",
        ("Chunk.settle", "Chunk._coalesce", "Ahead.intents"),
    ),
    (
        "prior state and stored order fact (reads)",
        ("Chunk.prior", "Chunk.fact", "Ahead.events", "Ahead._preload"),
    ),
    ("open carts of the buyer", ("Chunk.open_carts", "order_buyer", "Ahead.buyer", "_run_carts")),
    (
        "mapping (order, contact, event bodies)",
        (
            "order_body",
            "contact_attributes",
            "event_body",
            "event_properties",
            "customer_view_of_order",
            "_joined",
        ),
    ),
    ("lifecycle (stale, state, topics)", ("derive_topics", "object_state", "is_stale")),
    ("email normalization", ("normalize_email",)),
    ("order fact (core)", ("order_fact", "fact_after", "Processor._facts")),
    ("decide: the rest (consent rules, step, outcome)", ("decide", "Processor._decide")),
    ("row decoding (event_from_row)", ("event_from_row",)),
    ("inbox read and chunk loop", ("InboxMixin._process_pending", "plan_rows", "process_row")),
]


def stages(raw: Path, cpu_us: float) -> None:
    """Print the stage table of a py-spy raw profile (see the module's docstring)."""
    counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n_s = line.rpartition(" ")
        frames = [f.split(" (")[0] for f in stack.split(";")]
        if "InboxMixin._process_pending" not in frames:
            continue
        total += int(n_s)
        stage = next(
            (name for frame in reversed(frames) for name, names in STAGES if frame in names),
            "other",
        )
        counts[stage] = counts.get(stage, 0) + int(n_s)
    print(f"{total} samples in process_pending; µs/event at {cpu_us:g} µs CPU per event")
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {n / total * 100:.1f} % | {n / total * cpu_us:.0f} |")


def job_digest(path: Path, dsn: str | None) -> tuple[int, str]:
    """How many jobs are queued, and a digest of all of them in id order (the same on both
    stores: `historical` as an integer)."""
    query = "SELECT account, site, kind, key, historical, body FROM jobs ORDER BY id"
    if dsn is not None:
        with psycopg.connect(dsn) as pg:
            rows: list[Any] = pg.execute(query).fetchall()
    else:
        db = sqlite3.connect(path)
        try:
            rows = db.execute(query).fetchall()
        finally:
            db.close()
    h = hashlib.sha256()
    for row in rows:
        h.update(repr((*row[:4], int(row[4]), row[5])).encode())
    return len(rows), h.hexdigest()


async def timed(processor: Processor) -> tuple[int, float, float]:
    """Drain the inbox: (events processed, wall seconds, CPU seconds)."""
    w0, c0 = time.perf_counter(), time.process_time()
    n = await processor.drain()
    return n, time.perf_counter() - w0, time.process_time() - c0


async def one_round(
    events: list[Any],
    n_first: int,
    profile: cProfile.Profile | None,
    live: bool,
    dsn: str | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        cfg = config(tmp, live, dsn)
        sites = {s.id: s for s in cfg.resolved_sites()}
        out: dict[str, Any] = {}
        async with open_store(cfg.agent, writes="worker") as store:
            tune_gc()  # as the worker process does once started (agent/cli/main.py)
            processor = Processor(
                store,
                sites,
                metrics=Metrics(),
                clock=time.time,
                wake=lambda: None,
                historical_after=cfg.agent.historical_after,
                inbox_retention=cfg.agent.inbox_retention,
            )
            for phase, part in (("mixed", events[:n_first]), ("orders", events[n_first:])):
                for i in range(0, len(part), 1000):
                    await store.ingest(SITE, part[i : i + 1000])
                if profile is not None:  # the pipeline runs on the store's thread
                    await on_store_thread(store, profile.enable)
                n, wall, cpu = await timed(processor)
                if profile is not None:
                    await on_store_thread(store, profile.disable)
                assert n == len(part), (n, len(part))
                out[phase] = {"events": n, "wall": wall, "cpu": cpu}
        out["jobs"], out["digest"] = job_digest(cfg.agent.store_path, dsn)
        return out


async def on_store_thread(store: Any, fn: Any) -> None:
    """Run `fn()` on the thread the store plans chunks on (SQLite's, or PostgreSQL's
    processing thread)."""
    if isinstance(store, SqliteStore):
        await store._run(fn)
    else:
        await store._on_proc(lambda _db: fn())


def report_round(
    r: int, res: dict[str, Any], rates: dict[str, list[float]], digests: set[str]
) -> None:
    """Print a round's line; keep its rates and its digest."""
    total_n = res["mixed"]["events"] + res["orders"]["events"]
    total_wall = res["mixed"]["wall"] + res["orders"]["wall"]
    line = []
    for phase in ("mixed", "orders"):
        ph = res[phase]
        rate = ph["events"] / ph["wall"]
        rates[phase].append(rate)
        line.append(
            f"{phase}: {rate:,.0f} events/s, {ph['cpu'] / ph['events'] * 1e6:,.0f} µs CPU/event"
        )
    rates["all"].append(total_n / total_wall)
    total_cpu = res["mixed"]["cpu"] + res["orders"]["cpu"]
    line.append(
        f"whole backlog: {total_n / total_wall:,.0f} events/s,"
        f" {total_cpu / total_n * 1e6:,.0f} µs CPU/event"
    )
    print(f"round {r + 1}: " + "; ".join(line) + f"; {res['jobs']} jobs {res['digest'][:16]}")
    digests.add(res["digest"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--orders", type=int, default=20_000)
    p.add_argument("--customers", type=int, default=5_000)
    p.add_argument("--products", type=int, default=500)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument(
        "--live",
        action="store_true",
        help="live events instead of a backfill's: Brevo events planned too, not only objects",
    )
    p.add_argument(
        "--postgres",
        action="store_true",
        help="on the PostgreSQL store: a private server (fsync on), a new database per round",
    )
    p.add_argument("--profile", help="write a cProfile of the timed phases to this file")
    p.add_argument("--stages", type=Path, help="print the stages of this py-spy raw profile")
    p.add_argument("--cpu-us", type=float, default=200.0)
    args = p.parse_args()
    if args.stages:
        stages(args.stages, args.cpu_us)
        return
    events = backlog(args.customers, args.orders, args.products)
    if args.live:
        events = [dataclasses.replace(e, historical=False) for e in events]
    n_first = args.customers + args.products
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"code: {Path(sys.modules['agent'].__file__ or '').parents[1]}"
    )
    print(
        f"backlog: {args.products} products, {args.customers} customers, {args.orders} orders"
        + (" (live)" if args.live else " (a backfill)")
    )
    profile = cProfile.Profile() if args.profile else None
    rates: dict[str, list[float]] = {"mixed": [], "orders": [], "all": []}
    digests: set[str] = set()
    with contextlib.ExitStack() as stack:
        admin = stack.enter_context(postgres())[0] if args.postgres else None
        if admin is not None:
            print("store: PostgreSQL " + ", ".join(f"{k} {v}" for k, v in pg_facts(admin).items()))
        for r in range(args.rounds):
            dsn = None if admin is None else stack.enter_context(fresh_database(admin))
            res = asyncio.run(one_round(events, n_first, profile, args.live, dsn))
            report_round(r, res, rates, digests)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        "median: "
        + "; ".join(f"{k} {statistics.median(v):,.0f} events/s" for k, v in rates.items())
        + f"; peak RSS {peak:.0f} MB"
    )
    print(f"jobs digest: {' '.join(sorted(digests))}")
    if profile is not None:
        profile.dump_stats(args.profile)


if __name__ == "__main__":
    main()
