"""Backlog drain: 20,000 customers + 20,000 orders + 2,000 products into the Brevo fake enforcing
the general plan's limits, time-scaled; compared in the same run with the lower bound those
limits imply and with a one-call-per-object strategy like the peer plugins'.

    .venv/bin/python bench/drain.py [--customers 20000] [--orders 20000] [--products 2000]
                                    [--time-scale 60] [--skip-single]

The backlog is a store's history (a backfill): no Brevo events, orders with `historical: true`.
The Brevo fake runs in its own process (`python -m tests.fakes.brevo`) and enforces Brevo's
fixed windows divided by --time-scale; the agent gets the same scaled limits in its config
(`brevo.rate_limits`) and `live_window` scaled alike, so its planner makes the decisions it
would make in real time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.app import App
from agent.core.events import Door, Event, parse_event
from agent.core.jobs import Kind
from agent.core.planner import BATCH_SIZE, PLAN_LIMITS
from tests.conftest import ROOT, ref
from tests.kit import load


def backlog(n_customers: int, n_orders: int, n_products: int) -> list[Event]:
    """Products first, then customers, then orders: the order a backfill feeds them."""
    customer, order, product = ref("customer.json"), ref("order.json"), ref("product_simple.json")
    raws: list[dict[str, Any]] = []
    for i in range(n_products):
        cat = {"id": 1000 + i % 20, "name": f"Category {i % 20}", "slug": f"cat-{i % 20}"}
        raws.append(
            {
                "topic": "product.created",
                "payload": dict(product, id=10_000 + i, sku=f"SKU-{i}", categories=[cat]),
            }
        )
    for i in range(n_customers):
        raws.append(
            {
                "topic": "customer.created",
                "payload": dict(
                    customer,
                    id=100_000 + i,
                    email=f"customer{i}@example.com",
                    first_name=f"First{i}",
                ),
            }
        )
    for i in range(n_orders):
        c = i % max(1, n_customers)
        raws.append(
            {
                "topic": "order.created",
                "payload": dict(
                    order,
                    id=500_000 + i,
                    customer_id=100_000 + c,
                    billing=dict(order["billing"], email=f"customer{c}@example.com"),
                    line_items=[
                        dict(order["line_items"][0], product_id=10_000 + i % max(1, n_products))
                    ],
                ),
            }
        )
    out = []
    for raw in raws:
        ev = parse_event(raw, door=Door.BACKFILL, historical=True)
        assert isinstance(ev, Event)
        out.append(ev)
    return out


def scaled_limits(scale: float) -> dict[str, list[dict[str, Any]]]:
    return {
        fam: [{"count": c, "per": f"{p / scale * 1000:.3f}ms"} for c, p in windows]
        for fam, windows in PLAN_LIMITS["general"].items()
    }


def bound_seconds(requests: dict[str, int], scale: float) -> float:
    """Least time to send that many requests per family under fixed windows: the first window
    opens with the first request, so n requests need ceil(n / count) - 1 further windows."""
    worst = 0.0
    for fam, n in requests.items():
        if n == 0:
            continue
        t = 0.0
        for count, period in PLAN_LIMITS["general"][fam]:
            t = max(t, (math.ceil(n / count) - 1) * period / scale)
        worst = max(worst, t)
    return worst


class FakeProcess:
    """The Brevo fake in its own process, so it does not share the agent's CPU time slices."""

    def __init__(self, scale: float, tmp: Path) -> None:
        self.port_file = tmp / "port"
        self.summary = tmp / "summary.json"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fakes.brevo",
                "--port",
                "0",
                "--enforce-limits",
                "--api-key",
                "xkeysib-bench",
                "--time-scale",
                str(scale),
                "--port-file",
                str(self.port_file),
                "--summary",
                str(self.summary),
            ],
            cwd=ROOT,
        )
        deadline = time.time() + 60
        while not (self.port_file.exists() and self.port_file.read_text().strip()):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the Brevo fake did not start")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text().strip())

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        data: dict[str, Any] = json.loads(self.summary.read_text())
        return data


async def floor(events: list[Event]) -> float:
    """The agent's own cost for this backlog with no network: ingest, pipeline and planning in
    dry-run. No run against any Brevo can be faster on this machine."""
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        data = {
            "agent": {"state_dir": str(tmp / "state")},
            "brevo": {"dry_run": True},
            "connectors": {
                "woocommerce": {
                    "lists": {"all_customers": 50, "buyers": 51},
                    "customer_mapping": MAPPING,
                }
            },
        }
        cfg = load(tmp, data)
        logging.getLogger("agent.brevo").setLevel(logging.WARNING)
        async with App(cfg, doors=False) as app:
            t0 = time.perf_counter()
            for i in range(0, len(events), 1000):
                await app.store.ingest("default", events[i : i + 1000])
            await app.wait_idle(None)
            return time.perf_counter() - t0


MAPPING = {
    "email": "email",
    "first_name": "FIRSTNAME",
    "last_name": "LASTNAME",
    "orders_count": "ORDER_COUNT",
    "total_spent": "TOTAL_SPENT",
}


async def drain(events: list[Event], scale: float, single: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        fake = FakeProcess(scale, tmp)
        try:
            data = {
                "agent": {"state_dir": str(tmp / "state")},
                "brevo": {
                    "api_key": "xkeysib-bench",
                    "base_url": f"http://127.0.0.1:{fake.port}/v3",
                    "dry_run": False,
                    "rate_limits": scaled_limits(scale),
                    # one-call-per-object: a live window so long that nothing is batched
                    "live_window": "3650d" if single else f"{5000 / scale:.3f}ms",
                    "max_backoff": f"{2000 / scale:.0f}ms",
                },
                "connectors": {
                    "woocommerce": {
                        "lists": {"all_customers": 50, "buyers": 51},
                        "customer_mapping": {
                            "email": "email",
                            "first_name": "FIRSTNAME",
                            "last_name": "LASTNAME",
                            "orders_count": "ORDER_COUNT",
                            "total_spent": "TOTAL_SPENT",
                        },
                    }
                },
            }
            cfg = load(tmp, data)
            async with App(cfg, doors=False) as app:
                t0 = time.perf_counter()
                for i in range(0, len(events), 1000):
                    await app.store.ingest("default", events[i : i + 1000])
                t_ingest = time.perf_counter() - t0
                await app.wait_idle(None)
                wall = time.perf_counter() - t0
                left = await app.store.counts()
        finally:
            summary = fake.stop()
    return {"wall": wall, "ingest": t_ingest, "left": left, "summary": summary}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--customers", type=int, default=20_000)
    p.add_argument("--orders", type=int, default=20_000)
    p.add_argument("--products", type=int, default=2_000)
    p.add_argument("--time-scale", type=float, default=60.0)
    p.add_argument("--skip-single", action="store_true")
    args = p.parse_args()
    scale = args.time_scale
    events = backlog(args.customers, args.orders, args.products)
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}")
    print(
        f"backlog: {args.customers} customers, {args.orders} orders, {args.products} products; "
        f"time scale {scale:g} (an hour lasts {3600 / scale:g} s)"
    )

    # The bound: the fewest requests the batch endpoints allow, under the fixed windows.
    contacts = args.customers or args.orders
    need_batch = {
        # customers once, then again when their orders change the computed attributes
        "contacts": math.ceil(contacts / BATCH_SIZE[Kind.CONTACT]) * (2 if args.orders else 1),
        "other": math.ceil(args.orders / BATCH_SIZE[Kind.ORDER])
        + math.ceil(args.products / BATCH_SIZE[Kind.PRODUCT])
        + 1
        + 1,  # categories batch, ecommerce activation
    }
    need_single = {
        "contacts": contacts,
        "orders": args.orders,
        "products": args.products,
        "other": 2,
    }
    b_batch, b_single = bound_seconds(need_batch, scale), bound_seconds(need_single, scale)
    print(f"lower bound with batch endpoints: {need_batch} requests → {b_batch:.2f} s scaled")
    print(f"lower bound one call per object: {need_single} requests → {b_single:.2f} s scaled")

    cpu_floor = asyncio.run(floor(events))
    print(f"agent's own processing floor (dry-run, no network): {cpu_floor:.1f} s")
    res = asyncio.run(drain(events, scale, single=False))
    calls = Counter(res["summary"].get("paths", {}))
    print(
        f"agent (planner): {res['wall']:.1f} s wall ({res['ingest']:.1f} s of it ingesting), "
        f"{sum(calls.values())} requests {dict(calls)}; left {res['left']}; "
        f"{res['wall'] / max(b_batch, cpu_floor):.2f}× the bound "
        f"max(limits {b_batch:.2f} s, processing floor {cpu_floor:.1f} s)"
    )
    if not args.skip_single:
        res1 = asyncio.run(drain(events, scale, single=True))
        calls1 = Counter(res1["summary"].get("paths", {}))
        print(
            f"one call per object: {res1['wall']:.1f} s wall, {sum(calls1.values())} requests; "
            f"left {res1['left']}; the planner is {res1['wall'] / res['wall']:.1f}× faster than "
            f"this run and {b_single / res['wall']:.1f}× faster than its limit bound ({b_single:.1f} s)"
        )


if __name__ == "__main__":
    main()
