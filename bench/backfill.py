"""Backfill from a rate-limited store: 50,000 customers + 50,000 orders from the WooCommerce REST
fake capped at 300 requests/min, through the real `woobrevo-agent backfill` command.

    .venv/bin/python bench/backfill.py [--customers 50000] [--orders 50000] [--rate 300]
                                       [--concurrency 4] [--skip-no-fields] [--with-forward]

Measured per run: requests the store served (against the ⌈N/100⌉ minimum), wall time of the
store phase (against the time the rate limit alone imposes), 429s, and response bytes (with and
without `_fields`). The fake runs in its own process (`python -m tests.fakes.woocommerce`) and
counts requests and body bytes itself (printed on SIGTERM). Wall time is the whole command, from
process start (interpreter, config, store) to the last page stored.

The two main runs store only (`--no-forward`): the REST side alone, which is what the rate
limit bounds. `--with-forward` adds a run of the command's default mode with Brevo in dry-run
(the pipeline and forwarder run in the same process while pages arrive, each Brevo call logged,
not sent), to show what processing costs the store phase.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kit import write_config  # noqa: E402


def start_store(
    args: argparse.Namespace, tmp: Path
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """The REST fake in its own process; returns it and its url/keys line."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "tests.fakes.woocommerce",
            "--customers", str(args.customers), "--orders", str(args.orders),
            "--products", str(args.products), "--coupons", "5",
            "--max-per-minute", str(args.rate), "--port-file", str(tmp / "woo.port"),
        ],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(
            f"the store fake did not start: {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc, json.loads(line)


def stop_store(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """SIGTERM; the fake prints what it served on stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    for line in reversed(err.splitlines()):
        if line.startswith("{"):
            counts: dict[str, Any] = json.loads(line)
            return counts
    raise RuntimeError(f"no counts from the store fake: {err[-500:]}")


def run(args: argparse.Namespace, *, fields: bool, forward: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmpdir:
        tmp = Path(tmpdir)
        t0 = time.monotonic()
        store, info = start_store(args, tmp)
        generated = time.monotonic() - t0
        try:
            config = write_config(
                tmp / "c.yaml",
                {
                    "agent": {
                        "listen": {"stream": "127.0.0.1:0", "http": "127.0.0.1:0"},
                        "state_dir": str(tmp / "state"),
                    },
                    "brevo": {"dry_run": True},
                    "connectors": {
                        "woocommerce": {
                            "store_url": info["url"],
                            "consumer_key": info["consumer_key"],
                            "consumer_secret": info["consumer_secret"],
                            "rate_limit_per_minute": args.rate,
                            "lists": {"all_customers": 50, "buyers": 51},
                            "customer_mapping": {
                                "email": "email",
                                "first_name": "FIRSTNAME",
                                "last_name": "LASTNAME",
                                "billing.phone": "SMS",
                                "orders_count": "ORDER_COUNT",
                                "total_spent": "TOTAL_SPENT",
                                "meta_data.loyalty_tier": "LOYALTY_TIER",
                            },
                            "backfill": {"concurrency": args.concurrency, "fields": fields},
                        }
                    },
                },
            )
            cmd = [
                sys.executable, "-m", "agent.cli", "backfill", "--config", str(config),
                "--site", "default", "--resources", "customers,orders", "--plain",
                "--progress-every", "30",
            ]  # fmt: skip
            if not forward:
                cmd.append("--no-forward")
            marks: dict[str, float] = {}
            lines: list[str] = []
            start = time.monotonic()
            proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
            assert proc.stdout is not None

            def read() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    now = time.monotonic() - start
                    lines.append(line.rstrip())
                    print(f"  [{now:7.1f}s] {line.rstrip()}", file=sys.stderr)
                    if line.startswith("backfill orders") and line.rstrip().endswith("done"):
                        marks["store_phase"] = now

            reader = threading.Thread(target=read)
            reader.start()
            code = proc.wait()
            reader.join()
            total = time.monotonic() - start
            if code != 0:
                raise RuntimeError(f"backfill exited {code}:\n" + "\n".join(lines[-20:]))
        finally:
            served = stop_store(store)
    minimum = math.ceil(args.customers / 100) + math.ceil(args.orders / 100)
    phase = marks.get("store_phase", total)
    return {
        "fields": fields,
        "forward": "dry-run pipeline and forwarder" if forward else "no (--no-forward)",
        "store_generation_s": round(generated, 1),
        "requests": served["requests"],
        "requests_minimum": minimum,
        "status_429": served.get("statuses", {}).get("429", 0),
        "bytes": served["bytes_sent"],
        "store_phase_s": round(phase, 1),
        "limit_bound_s": round(minimum * 60 / args.rate, 1),
        "ratio": round(phase / (minimum * 60 / args.rate), 3),
        "total_s": round(total, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--products", type=int, default=40)
    parser.add_argument("--rate", type=int, default=300, help="the store's requests per minute")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--skip-no-fields", action="store_true")
    parser.add_argument("--with-forward", action="store_true", help="also run with forwarding")
    args = parser.parse_args()
    print(
        json.dumps(
            {
                "machine": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                **vars(args),
            }
        )
    )
    results = [run(args, fields=True)]
    print(json.dumps(results[-1]), flush=True)
    if not args.skip_no_fields:
        results.append(run(args, fields=False))
        print(json.dumps(results[-1]), flush=True)
    if len(results) == 2:
        print(
            json.dumps(
                {"bytes_ratio_without_fields": round(results[1]["bytes"] / results[0]["bytes"], 2)}
            )
        )
    if args.with_forward:
        print(json.dumps(run(args, fields=True, forward=True)), flush=True)


if __name__ == "__main__":
    main()
