"""`python -m tests.fakes.brevo`: the fake in its own process, for the benchmarks; it prints
its port, serves until SIGTERM, then writes a summary of what it saw."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from tests.fakes.brevo.fake import DEFAULT_API_KEY, BrevoFake
from tests.fakes.brevo.limits import PLAN_LIMITS, Windows


def _parse_limit(text: str) -> tuple[str, Windows]:
    """--limit other=100/3600,10/1 → ("other", ((100, 3600.0), (10, 1.0)))."""
    family, _, spec = text.partition("=")
    windows = []
    for part in spec.split(","):
        count, _, period = part.partition("/")
        windows.append((int(count), float(period)))
    return family, tuple(windows)


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file so a reader never sees half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    fake = BrevoFake(
        api_key=args.api_key,
        plan=args.plan,
        enforce_limits=args.enforce_limits,
        time_scale=args.time_scale,
        limits=dict(_parse_limit(text) for text in args.limit),
        strict_attributes=args.strict_attributes,
        host=args.host,
        port=args.port,
    )
    async with fake:
        if args.port_file is not None:
            _write_atomic(args.port_file, f"{fake.port}\n")
        # The port on stdout is this tool's interface to the process that started it.
        sys.stdout.write(f"{fake.port}\n")
        sys.stdout.flush()
        await stop.wait()
    if args.summary is not None:
        _write_atomic(args.summary, json.dumps(fake.summary(), indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Serve the fake until SIGTERM; then write the summary."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.brevo", description="Serve the Brevo API v3 fake."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    parser.add_argument("--summary", type=Path, help="write a JSON summary here on SIGTERM")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--plan", choices=sorted(PLAN_LIMITS), default="general")
    parser.add_argument("--enforce-limits", action="store_true", help="answer 429 over limits")
    parser.add_argument("--time-scale", type=float, default=1.0, help="divides every window")
    parser.add_argument("--strict-attributes", action="store_true")
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="FAMILY=COUNT/SECONDS[,...]",
        help="override a family's windows, e.g. other=100/3600",
    )
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0
