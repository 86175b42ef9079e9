"""What the tests of real agent replicas on one PostgreSQL database share
(tests/agent/test_pg_takeover.py, tests/agent/test_pg_fence.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from tests.agent.doorkit import config_data
from tests.fakes.brevo import BrevoFake
from tests.kit import live, write_config


def replica_config(tmp_path: Path, fake: BrevoFake, dsn: str, name: str, timeout: float) -> Path:
    """Replica `name`'s config file: the shared store, its own state folder, single calls to
    the fake (many requests, many claims) at 12 orders a second."""
    data = config_data(
        tmp_path / name,
        brevo=live(
            fake,
            max_backoff="1s",
            live_window="3650d",  # single calls: many requests, many claims
            rate_limits={"orders": [{"count": 12, "per": "1s"}]},
        ),
    )
    data["agent"].update(store=dsn, replica=name, replica_timeout=f"{timeout:g}s")
    return write_config(tmp_path / f"{name}.yaml", data)


def left(dsn: str) -> tuple[int, int]:
    """(events not processed yet, jobs not done yet) in the shared store."""
    with psycopg.connect(dsn) as db:
        row = db.execute(
            "SELECT (SELECT COUNT(*) FROM inbox WHERE state=0), (SELECT COUNT(*) FROM jobs)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def states(status: dict[str, Any]) -> dict[str, str]:
    """Replica name → `alive` or `stale`, from a /status document's cluster view."""
    return {r["name"]: r["state"] for r in status["cluster"]["replicas"]}
