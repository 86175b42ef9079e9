"""`python -m tests.fakes.woocommerce`: a generated store in its own process, for the
benchmarks; it prints its URL and keys, serves until SIGTERM, then prints a summary."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tests.fakes import woocommerce
from tests.fakes.woocommerce.records import ApiKey
from tests.fakes.woocommerce.server import WooFake


def _write_port_file(path: str, port: int) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(path)  # atomic: a reader never sees a half-written file


async def _serve(args: argparse.Namespace) -> None:
    keys = None
    if args.consumer_key and args.consumer_secret:
        keys = [ApiKey(args.consumer_key, args.consumer_secret)]
    fake = WooFake(
        customers=args.customers,
        orders=args.orders,
        products=args.products,
        coupons=args.coupons,
        seed=args.seed,
        scheme=args.scheme,
        port=args.port,
        keys=keys,
        delay=args.delay,
        max_per_minute=args.max_per_minute,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with fake:
        info = {
            "url": fake.url,
            "consumer_key": fake.consumer_key,
            "consumer_secret": fake.consumer_secret,
            "ca_file": fake.ca_file,
        }
        if args.port_file:
            _write_port_file(args.port_file, fake.port)
        print(json.dumps(info), flush=True)  # the line a parent process waits for
        await stop.wait()
        requests, sent = len(fake.requests), fake.bytes_sent
        statuses = dict(Counter(str(r.status) for r in fake.requests))
    summary = {"requests": requests, "bytes_sent": sent, "statuses": statuses}
    print(json.dumps(summary), file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tests.fakes.woocommerce``: serve a generated store until SIGTERM."""
    doc = woocommerce.__doc__  # the package's: what the fake is
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.woocommerce",
        description=doc.splitlines()[0] if doc else None,
    )
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--products", type=int, default=40)
    parser.add_argument("--coupons", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scheme", choices=("http", "https"), default="http")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="write the listening port here once serving")
    parser.add_argument("--max-per-minute", type=int, default=None)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to each request")
    parser.add_argument("--consumer-key", default=None)
    parser.add_argument("--consumer-secret", default=None)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args(argv)))
