"""The store file's health (issue 16, findings 4 and 6): a damaged, empty or foreign file is
refused at start with the file, the damage and the recovery steps (never replaced, never a
traceback); `store check` runs SQLite's integrity check; /readyz reflects the file's real
health and writes nothing; the state folder and its files are the agent's user's alone.

The stores are real: made by `woobrevo-agent ingest` or by a running agent, then damaged on
disk as a failing disk would (pages overwritten, a file cut to nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.app import App
from agent.cli.main import main
from agent.config import Config
from tests.agent.doorkit import (
    ROOT,
    AgentProcess,
    batch,
    client,
    event,
    hello,
    inbox_ids,
    make_config,
    order,
    running,
)
from tests.agent.doorkit import config_data as door_config
from tests.kit import UNIT, config_data, until, write_config

STORE = "woobrevo.sqlite3"
DOC = 'docs/durability.md, "A damaged store"'


# -- helpers ------------------------------------------------------------------------------


def _config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "c.yaml", config_data(tmp_path))


def _ingested_store(tmp_path: Path, events: int = 200) -> Path:
    """A real store with `events` orders in it, made by `woobrevo-agent ingest`."""
    lines = [
        json.dumps({"id": f"e-{i}", "topic": "order.updated", "payload": order(i)})
        for i in range(1, events + 1)
    ]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    argv = ["ingest", "--config", str(tmp_path / "c.yaml"), "--site", "default"]
    assert main([*argv, str(tmp_path / "events.jsonl")]) == 0
    return tmp_path / "state" / STORE


def _page_size(path: Path) -> int:
    size = int.from_bytes(path.read_bytes()[16:18], "big")  # sqlite.org/fileformat.html §1.3.2
    return 65536 if size == 1 else size


def _overwrite(path: Path, page: int, count: int = 1) -> bytes:
    """Overwrite `count` pages from `page` (1-based) with noise, as a failing disk would;
    returns what was there."""
    size = _page_size(path)
    with path.open("r+b") as fh:
        fh.seek((page - 1) * size)
        before = fh.read(size * count)
        fh.seek((page - 1) * size)
        fh.write(random.Random(page).randbytes(size * count))
    return before


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _start(config: Path) -> subprocess.CompletedProcess[str]:
    """`woobrevo-agent run`, as systemd starts it; it must stop by itself (refused)."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=60 * UNIT, check=False,
    )  # fmt: skip


def _assert_refused(done: subprocess.CompletedProcess[str], path: Path, damage: str) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"the store {path} is damaged: " in done.stderr
    assert damage in done.stderr
    for step in (".recover", "cp -a", "woobrevo-agent store check", DOC):
        assert step in done.stderr, step


async def _readyz(port: int) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{port}/readyz") as r,
    ):
        return r.status, await r.json()


# -- a damaged file refuses the start -----------------------------------------------------


@pytest.mark.attack(
    "4: pages in the middle of a real store overwritten: the start ended in a raw traceback"
    " naming no file"
)
def test_damaged_pages_refuse_the_start_with_the_file_the_damage_and_the_recovery(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    path = _ingested_store(tmp_path)
    pages = path.stat().st_size // _page_size(path)
    assert pages > 50
    _overwrite(path, pages // 2, count=3)
    before = _digest(path)

    done = _start(config)

    _assert_refused(done, path, "SQLite's integrity check found: ")
    # Nothing was written to the damaged file: `.recover` gets what the disk left.
    assert _digest(path) == before
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


@pytest.mark.parametrize(
    ("content", "damage"),
    [
        pytest.param(
            b"",
            "the file is empty (0 bytes)",
            marks=pytest.mark.attack("4: a zero-length store silently became a new empty store"),
            id="empty",
        ),
        pytest.param(
            b"inbox: this is not a database\n",
            "it is not a SQLite database",
            marks=pytest.mark.attack("4: a text file at the store's path"),
            id="text",
        ),
    ],
)
def test_an_empty_or_foreign_file_is_refused_never_replaced(
    tmp_path: Path, content: bytes, damage: str
) -> None:
    config = _config(tmp_path)
    path = tmp_path / "state" / STORE
    path.parent.mkdir(mode=0o700)
    path.write_bytes(content)
    path.chmod(0o600)

    done = _start(config)

    _assert_refused(done, path, damage)
    assert path.read_bytes() == content  # refused, not replaced by a new store
    assert sorted(p.name for p in path.parent.iterdir()) == [STORE]


def test_a_new_store_is_made_only_where_no_file_is(tmp_path: Path) -> None:
    """The one case a store is created: no file. It is built aside and linked into place, so
    no empty file is ever left at the path by a crash half way."""
    config = _config(tmp_path)
    path = _ingested_store(tmp_path, events=3)
    assert path.read_bytes()[:16] == b"SQLite format 3\x00"
    assert sorted(p.name for p in path.parent.iterdir() if ".new-" in p.name) == []
    assert main(["store", "check", "--config", str(config)]) == 0


# -- store check --------------------------------------------------------------------------


def test_store_check_says_ok_then_lists_the_damage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    assert main(["store", "check", "--config", str(config)]) == 1  # no store yet
    assert "there is no store at" in capsys.readouterr().out
    path = _ingested_store(tmp_path)
    capsys.readouterr()

    assert main(["store", "check", "--config", str(config)]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"

    pages = path.stat().st_size // _page_size(path)
    _overwrite(path, pages // 2, count=3)
    assert main(["store", "check", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: ") and "problem(s)" in out
    assert len(out.splitlines()) >= 2  # each of SQLite's findings on a line of its own
    assert DOC in err

    path.write_bytes(b"")
    assert main(["store", "check", "--config", str(config)]) == 1
    assert "the file is empty (0 bytes)" in capsys.readouterr().out


# -- /readyz ------------------------------------------------------------------------------


async def _stored(app: App, cfg: Config, count: int) -> None:
    """`count` orders in through the stream, acked, processed and forwarded (dry-run)."""
    async with client(app) as ws:
        await hello(ws)
        await ws.send(batch("b1", [event(f"e-{i}", i) for i in range(1, count + 1)]))
        assert json.loads(await ws.recv())["type"] == "ack"
    await app.wait_idle()
    assert inbox_ids(cfg, "a") == [("a", f"e-{i}") for i in range(1, count + 1)]


def _checkpoint(path: Path) -> None:
    """Everything the WAL holds copied into the file, as the worker's checkpoints do."""
    db = sqlite3.connect(path)
    try:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        db.close()


def _root_page(path: Path, table: str) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (page,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (table,)).fetchone()
    finally:
        db.close()
    return int(page)


@pytest.mark.attack("4: /readyz said ready on a store damaged while the agent ran")
async def test_readyz_fails_when_the_store_is_damaged_under_a_running_agent(
    tmp_path: Path,
) -> None:
    cfg = make_config(tmp_path)
    path = cfg.agent.store_path
    async with running(cfg) as app:
        await _stored(app, cfg, 30)
        status, doc = await _readyz(app.http.port)
        assert (status, doc["checks"]["store"]) == (200, "ok")

        _checkpoint(path)
        page = _root_page(path, "inbox")
        before = _overwrite(path, page)
        try:

            async def unready() -> bool:
                return (await _readyz(app.http.port))[0] == 503

            # The last probe is taken as true for 5 s (HEALTH_TTL): at most that long.
            await until(unready, 15, what="/readyz to answer 503")
            status, doc = await _readyz(app.http.port)
            assert doc["ready"] is False
            assert str(path) in doc["checks"]["store"]
            assert "malformed" in doc["checks"]["store"] and DOC in doc["checks"]["store"]
        finally:  # the page put back, so that the agent stops as it would on a sound file
            with path.open("r+b") as fh:
                fh.seek((page - 1) * _page_size(path))
                fh.write(before)


@pytest.mark.attack("4: every /readyz was a write to the store")
async def test_readyz_writes_nothing(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    path, wal = cfg.agent.store_path, Path(f"{cfg.agent.store_path}-wal")
    async with running(cfg) as app:
        await _stored(app, cfg, 5)
        watcher = sqlite3.connect(path)
        try:
            version = watcher.execute("PRAGMA data_version").fetchone()[0]
            files = [(p.stat().st_size, p.stat().st_mtime_ns) for p in (path, wal)]
            for _ in range(20):
                assert (await _readyz(app.http.port))[0] == 200
            # data_version changes when any other connection commits (sqlite.org/pragma.html).
            assert watcher.execute("PRAGMA data_version").fetchone()[0] == version
            assert [(p.stat().st_size, p.stat().st_mtime_ns) for p in (path, wal)] == files
        finally:
            watcher.close()
        assert await app.store.meta_items("readyz") == {}


@pytest.mark.attack(
    "4: a full disk: /readyz, a write no more, still reports a store that cannot take writes"
)
async def test_a_failed_write_makes_the_agent_unready_until_a_write_succeeds(
    tmp_path: Path,
) -> None:
    cfg = make_config(tmp_path)
    async with running(cfg) as app:
        await _stored(app, cfg, 2)
        store = app.store

        def pages(limit: int | None) -> None:
            # SQLite's own SQLITE_FULL, as from a full disk: the file may not grow past `limit`
            # pages (its current size, when lower) (sqlite.org/pragma.html#pragma_max_page_count).
            store.db.execute(f"PRAGMA max_page_count={limit or 1_000_000}")

        await store._run(pages, 1)
        events = [event(f"e-{i}", i) for i in range(3, 23)]
        async with client(app) as ws:
            await hello(ws)
            await ws.send(batch("b2", events))
            await until(lambda: ws.close_code is not None, 10, what="the batch refused")
            assert ws.close_code == 1011
        status, doc = await _readyz(app.http.port)
        assert status == 503
        assert "database or disk is full" in doc["checks"]["store"]

        await store._run(pages, None)
        async with client(app) as ws:  # the plugin resends the batch it kept
            await hello(ws)
            await ws.send(batch("b2", events))
            assert json.loads(await ws.recv())["type"] == "ack"
        assert (await _readyz(app.http.port))[0] == 200
        await app.wait_idle()
    # Nothing lost, nothing doubled.
    assert inbox_ids(cfg, "a") == [("a", f"e-{i}") for i in range(1, 23)]


# -- the state folder is private ----------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("BREVO_", "WC_"))}


async def _one_batch(agent: AgentProcess, cfg: Path) -> None:
    async with agent.connect() as ws:
        await hello(ws)
        await ws.send(batch("b1", [event("e-1", 1), event("e-2", 2)]))
        assert json.loads(await ws.recv())["type"] == "ack"


@pytest.mark.attack("6d: the state files were created 0644 and hold whole payloads")
async def test_a_fresh_start_makes_the_state_folder_and_its_files_private(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "c.yaml", door_config(tmp_path))
    state = tmp_path / "state"
    umask = os.umask(0o022)  # the usual one (the agent inherits it): nothing may rely on it
    try:
        async with AgentProcess(config, _env()) as agent:
            await _one_batch(agent, config)
            lock = state / "forwarder.lock"
            await until(lock.exists, 10, what="the worker's lock")
            files = [state / n for n in (STORE, f"{STORE}-wal", f"{STORE}-shm", lock.name)]
            assert _mode(state) == 0o700
            assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
            assert not any("open to other users" in line for line in agent.log)
    finally:
        os.umask(umask)
    db = sqlite3.connect(state / STORE)
    try:
        assert db.execute("SELECT event_id FROM inbox ORDER BY seq").fetchall() == [
            ("e-1",),
            ("e-2",),
        ]
    finally:
        db.close()


@pytest.mark.attack("6d: state files left 0644 by an older agent stay readable by everyone")
async def test_loose_modes_are_made_private_at_start_with_a_warning(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", door_config(tmp_path))
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    db = sqlite3.connect(state / STORE)  # a store as an older agent left it: 0644
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.close()
    (state / STORE).chmod(0o644)
    (state / "forwarder.lock").write_text("1\n")
    (state / "forwarder.lock").chmod(0o644)

    async with AgentProcess(config, _env()) as agent:
        await _one_batch(agent, config)
        assert _mode(state) == 0o700
        assert _mode(state / STORE) == 0o600 and _mode(state / "forwarder.lock") == 0o600
        warned = [line for line in agent.log if "open to other users" in line]
        assert any(f"state folder {state} was 0755" in line for line in warned), agent.log
        assert any(f"{state / STORE} was 0644" in line for line in warned), agent.log
    assert [e for _, e in inbox_ids(Config.model_validate(door_config(tmp_path)))] == [
        "e-1",
        "e-2",
    ]
