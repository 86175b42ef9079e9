"""The operator commands: ingest (replay a file), status, deadletters — as real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, ref
from tests.kit import write_config


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def events_file(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_ingest_replays_are_stored_once(tmp_path: Path, base_config: dict[str, Any]) -> None:
    cfg = str(write_config(tmp_path / "c.yaml", base_config))
    f = events_file(
        tmp_path / "e.jsonl",
        [
            {"topic": "order.created", "payload": ref("order.json")},
            {"topic": "customer.updated", "payload": ref("customer.json"), "id": "export-1"},
            {
                "topic": "product.created",
                "payload": ref("product_simple.json"),
                "occurred_at": "2026-11-01T00:00:00Z",
            },
        ],
    )
    first = cli("ingest", "--config", cfg, "--site", "default", str(f))
    assert first.returncode == 0, first.stderr
    assert "3 events read, 3 new, 0 already stored, 0 rejected" in first.stdout
    again = cli("ingest", "--config", cfg, "--site", "default", str(f))
    assert "3 events read, 0 new, 3 already stored" in again.stdout
    status = cli("status", "--config", cfg, "--json")
    assert json.loads(status.stdout)["default"]["inbox_depth"] == 3


def test_ingest_names_bad_lines_and_stores_nothing(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    cfg = str(write_config(tmp_path / "c.yaml", base_config))
    f = events_file(
        tmp_path / "e.jsonl",
        [{"topic": "order.created", "payload": ref("order.json")}, "{not json"],
    )
    out = cli("ingest", "--config", cfg, "--site", "default", str(f))
    assert out.returncode == 1
    assert f"{f}:2: not JSON" in out.stderr
    assert "nothing stored" in out.stderr
    assert (
        json.loads(cli("status", "--config", cfg, "--json").stdout)["default"]["inbox_depth"] == 0
    )
    unknown = cli("ingest", "--config", cfg, "--site", "nope", str(f))
    assert unknown.returncode == 2
    assert "no site 'nope'; known sites: default" in unknown.stderr


def test_rejected_events_become_dead_letters_to_list_retry_and_drop(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    cfg = str(write_config(tmp_path / "c.yaml", base_config))
    f = events_file(
        tmp_path / "e.jsonl",
        [
            {"topic": "order.updated", "payload": {"id": 7}},
            {"topic": "basket.updated", "payload": {"id": 8}},
        ],
    )
    out = cli("ingest", "--config", cfg, "--site", "default", str(f))
    assert out.returncode == 0
    assert "2 rejected" in out.stdout
    listed = cli("deadletters", "list", "--config", cfg)
    assert "invalid_payload: line 1: event: payload.date_modified_gmt: missing" in listed.stdout
    assert "unknown_resource: line 2" in listed.stdout
    retry = cli("deadletters", "retry", "--config", cfg, "--all")
    assert retry.returncode == 1  # they are still invalid, and it says so
    assert "the event is still invalid" in retry.stderr
    assert cli("deadletters", "retry", "--config", cfg).returncode == 1  # needs --id or --all
    dropped = cli("deadletters", "drop", "--config", cfg, "--all")
    assert "2 dead letter(s) dropped" in dropped.stdout
    assert "no dead letters" in cli("deadletters", "list", "--config", cfg).stdout


def test_run_until_idle_drains_in_dry_run(tmp_path: Path, base_config: dict[str, Any]) -> None:
    cfg = str(write_config(tmp_path / "c.yaml", base_config))
    f = events_file(
        tmp_path / "e.jsonl",
        [{"topic": "order.created", "payload": ref("48-order_create_completed.json")}],
    )
    assert cli("ingest", "--config", cfg, "--site", "default", str(f)).returncode == 0
    run = cli("run", "--config", cfg, "--until-idle")
    assert run.returncode == 0, run.stderr
    assert "dry-run POST https://api.brevo.com/v3/orders/status" in run.stderr
    assert "idle: every event processed" in run.stderr
    status = json.loads(cli("status", "--config", cfg, "--json").stdout)["default"]
    assert (status["inbox_depth"], status["pending_jobs"]) == (0, 0)
