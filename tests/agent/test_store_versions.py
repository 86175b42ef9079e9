"""Store files across agent versions: an older file gains the new tables when opened; a file a
newer agent wrote is refused, naming the file and what to do, before anything changes in it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import Config
from agent.errors import AgentError
from agent.store import SqliteStore
from agent.store.schema import SCHEMA_VERSION
from tests.agent.doorkit import config_data
from tests.conftest import ROOT
from tests.kit import write_config


def _version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])


def _set_version(path: Path, version: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))


async def test_an_older_file_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "woobrevo.sqlite3"
    async with SqliteStore(path):
        pass
    with sqlite3.connect(path) as db:  # as an agent of schema 2 left it: no consent tables
        db.execute("DROP TABLE consent")
        db.execute("DROP TABLE suppression")
    _set_version(path, 2)
    async with SqliteStore(path) as store:
        assert (await store.counts())["jobs"] == 0
    assert _version(path) == SCHEMA_VERSION
    with sqlite3.connect(path) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"consent", "suppression"} <= names


async def test_a_file_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "woobrevo.sqlite3"
    async with SqliteStore(path):
        pass
    _set_version(path, SCHEMA_VERSION + 1)
    with pytest.raises(AgentError) as caught:
        async with SqliteStore(path):
            pass
    text = str(caught.value)
    assert str(path) in text and f"store schema {SCHEMA_VERSION + 1}" in text
    assert "docs/install.md" in text
    assert _version(path) == SCHEMA_VERSION + 1  # left as it was


def test_the_agent_says_so_and_exits(tmp_path: Path) -> None:
    cfg_path = write_config(tmp_path / "c.yaml", config_data(tmp_path))
    store = Config.model_validate(config_data(tmp_path)).agent.store_path
    store.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "written by a newer WooBrevo agent (store schema 99" in done.stderr
    assert "Traceback" not in done.stderr
