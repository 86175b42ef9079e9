"""`parse_event` on one real REST order: what every door pays per event before storing it.

    .venv/bin/python bench/parse_event.py [--calls 20000] [--rounds 7]

Times `parse_event(raw, door=Door.STREAM)` on the reference order (tests/fixtures, `order.json`,
as WooCommerce 10.0.2 sends it), `--rounds` rounds of `--calls` calls, and prints each round's
µs per call and the best. Run it from two checkouts to compare commits (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.core.events import Door, parse_event
from tests.conftest import ref


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    order = ref("order.json")
    raw = {"id": "e-1", "topic": "order.updated", "resource": "order",
           "resource_id": order["id"], "payload": order}  # fmt: skip
    parse_event(raw, door=Door.STREAM)
    rounds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.calls):
            parse_event(raw, door=Door.STREAM)
        rounds.append((time.perf_counter() - start) / args.calls * 1e6)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    print(
        f"parse_event, one REST order ({len(json.dumps(order))} B): "
        + " ".join(f"{r:.1f}" for r in rounds)
        + f" µs per call; best {min(rounds):.1f}"
    )


if __name__ == "__main__":
    main()
