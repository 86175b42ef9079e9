"""`agent.store: postgresql://…`: the real agent on the PostgreSQL store (issue 17).

A real `woobrevo-agent run` (its doors process and its worker process, both on the database)
stores a stream batch in PostgreSQL, forwards it to the Brevo fake, is killed and started
again, and forwards the next one: nothing lost, nothing doubled, nothing in a SQLite file.
The config's checks: what `agent.store` and `agent.replica` take, and the password of the
address never shown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from agent.config import Config, ConfigError, masked, secret_values
from agent.reload import restart_needed
from agent.store.open import check_postgres, open_store, store_info
from agent.store.postgres import PostgresStore
from agent.store.sqlite import SqliteStore
from tests.agent.doorkit import AgentProcess, batch, config_data, event, hello, order
from tests.conftest import ROOT
from tests.fakes.brevo import BrevoFake
from tests.kit import live, load, until, write_config

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
SECRET = "pg-Secret-4f1d9c2a7b"


def _with_password(dsn: str) -> str:
    """The test database's DSN with a password (the private server trusts the socket, so any
    password connects): what must never be shown."""
    head, _, tail = dsn.partition("://")
    user, _, rest = tail.partition("@")
    return f"{head}://{user}:{SECRET}@{rest}"


def _agent_config(tmp_path: Path, fake: BrevoFake, dsn: str) -> Path:
    data = config_data(tmp_path, brevo=live(fake, max_backoff="2s"))
    data["agent"].update(store=_with_password(dsn), replica="replica-1")
    return write_config(tmp_path / "agent.yaml", data)


async def _send(agent: AgentProcess, name: str, ids: range) -> dict[str, Any]:
    events = [{**event(f"{name}-{i}", i), "payload": order(i, "2026-11-27T06:20:00")} for i in ids]
    async with agent.connect() as ws:
        await hello(ws)
        await ws.send(batch(name, events))
        ack: dict[str, Any] = json.loads(await ws.recv())
    assert ack["type"] == "ack", ack
    return ack


async def _get(agent: AgentProcess, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{agent.http_port}{path}") as r,
    ):
        return r.status, await r.text()


async def _idle(agent: AgentProcess) -> bool:
    backlog = (await agent.status())["sites"]["a"]["backlog"]
    return bool(backlog == {"inbox_depth": 0, "pending_jobs": 0, "dead_letters": 0})


def _inbox(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as db:
        rows = db.execute("SELECT event_id FROM inbox WHERE site='a' ORDER BY seq").fetchall()
    return [str(r[0]) for r in rows]


def _kill_group(agent: AgentProcess) -> None:
    """SIGKILL the doors process and its worker at once (a crash of the machine's agent)."""
    assert agent.proc is not None
    pid = agent.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for p in [pid, *map(int, children)]:
        os.kill(p, signal.SIGKILL)


@pytest.mark.slow
async def test_the_agent_runs_on_postgresql_across_a_crash(tmp_path: Path, pg_dsn: str) -> None:
    async with BrevoFake() as fake:
        config = _agent_config(tmp_path, fake, pg_dsn)
        async with AgentProcess(config, ENV) as agent:
            ack = await _send(agent, "b1", range(100, 120))
            assert len(ack["accepted"]) == 20
            await until(lambda: {f"a-{i}" for i in range(100, 120)} <= set(fake.orders), 60)
            await until(lambda: _idle(agent), 30, every=0.2)

            status = await agent.status()
            assert status["replica"] == "replica-1"
            assert status["store"]["backend"] == "postgresql"
            assert "***" in status["store"]["address"]
            code, text = await _get(agent, "/readyz")
            assert code == 200, text
            ready = json.loads(text)
            assert ready["checks"]["store"] == "ok"
            assert ready["store"] == status["store"] and ready["replica"] == "replica-1"
            for path in ("/status", "/readyz", "/metrics"):
                assert SECRET not in (await _get(agent, path))[1]
            _kill_group(agent)
        assert SECRET not in "".join(agent.log)

        # Started again on the same database: the batch sent again is a replay (stored
        # once, not forwarded again), the next one is forwarded.
        async with AgentProcess(config, ENV) as agent:
            again = await _send(agent, "b1", range(100, 120))
            assert len(again["accepted"]) == 20
            await _send(agent, "b2", range(120, 140))
            await until(lambda: {f"a-{i}" for i in range(100, 140)} <= set(fake.orders), 60)
            await until(lambda: _idle(agent), 30, every=0.2)
        assert SECRET not in "".join(agent.log)

    # The audit: every event stored once in PostgreSQL, every order written to Brevo once,
    # and no SQLite store made beside it.
    stored = _inbox(pg_dsn)
    assert sorted(stored) == sorted({f"b{1 + (i >= 120)}-{i}" for i in range(100, 140)})
    writes = Counter(
        json.dumps(r.json, sort_keys=True)
        for r in fake.requests
        if r.path == "/orders/status" and r.status is not None and r.status < 300
    )
    assert writes and all(n == 1 for n in writes.values())
    assert not (tmp_path / "state" / "woobrevo.sqlite3").exists()
    fake.assert_no_spec_violations()


# -- the commands --------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_store_check_on_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    data = config_data(tmp_path)
    data["agent"]["store"] = _with_password(pg_dsn)
    config = str(write_config(tmp_path / "agent.yaml", data))

    # A database no agent migrated: said, with the command that fixes it.
    fresh = _cli("store", "check", "--config", config)
    assert fresh.returncode != 0
    assert "no agent schema" in fresh.stdout and "store migrate" in fresh.stdout
    migrated = _cli("store", "migrate", "--config", config)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied migration 1" in migrated.stdout
    ok = _cli("store", "check", "--config", config)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip().endswith(": ok")
    # The tokens command stores into the database too.
    token = _cli("token", "create", "--config", config, "--site", "a", "--store")
    assert token.returncode == 0, token.stderr
    for run in (fresh, migrated, ok, token):
        assert SECRET not in run.stdout + run.stderr
    assert not (tmp_path / "state" / "woobrevo.sqlite3").exists()


async def test_store_check_names_a_server_that_does_not_answer() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"postgresql://agent:{SECRET}@127.0.0.1:{port}/woobrevo?connect_timeout=2"
    problems = await check_postgres(dsn)
    assert len(problems) == 1 and problems[0].startswith("cannot connect"), problems
    assert SECRET not in problems[0]


async def test_open_store_picks_the_backend(tmp_path: Path, pg_dsn: str) -> None:
    cfg = Config.model_validate(config_data(tmp_path))
    sqlite = open_store(cfg.agent)
    assert isinstance(sqlite, SqliteStore)
    assert store_info(cfg.agent).backend == "sqlite"
    data = config_data(tmp_path)
    data["agent"].update(store=pg_dsn, replica="r2")
    cfg = Config.model_validate(data)
    store = open_store(cfg.agent, recover=True)
    assert isinstance(store, PostgresStore)
    async with store:
        assert store.owner == "r2"
        await store.set_meta("k", "v")
        assert await store.get_meta("k") == "v"
        assert await store.health() is None


# -- the config ----------------------------------------------------------------------------


def _problems(tmp_path: Path, **agent: Any) -> str:
    data = config_data(tmp_path)
    data["agent"].update(agent)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, data)
    return str(err.value)


def test_the_store_is_sqlite_by_default_and_the_replica_the_host(tmp_path: Path) -> None:
    cfg = load(tmp_path, config_data(tmp_path))
    assert cfg.agent.store is None
    assert cfg.agent.replica == socket.gethostname()
    assert store_info(cfg.agent).address == str(tmp_path / "state" / "woobrevo.sqlite3")


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (f"mysql://agent:{SECRET}@db/woobrevo", "a mysql:// address"),
        ("/var/lib/woobrevo/store.sqlite3", "a file path"),
        (f"postgresql://agent:{SECRET}@db/woobrevo?bogus=1", "not a valid PostgreSQL address"),
    ],
)
def test_a_store_that_is_not_postgresql_is_refused(tmp_path: Path, value: str, said: str) -> None:
    text = _problems(tmp_path, store=value)
    assert "agent.store" in text and said in text, text
    assert SECRET not in text


@pytest.mark.parametrize("value", ["", "two words", "-leading", "x" * 65, "a/b"])
def test_a_bad_replica_name_is_refused(tmp_path: Path, value: str) -> None:
    text = _problems(tmp_path, replica=value)
    assert "agent.replica" in text and "not a replica name" in text, text


def test_the_store_password_is_a_secret(tmp_path: Path) -> None:
    dsn = f"postgresql://agent:{SECRET}@db.example:5432/woobrevo?sslmode=require"
    data = config_data(tmp_path)
    data["agent"].update(store=dsn)
    cfg = load(tmp_path, data)
    assert cfg.agent.store == dsn
    assert SECRET in secret_values(cfg)  # masked in every log line (agent/logs.py)
    shown = masked(cfg)["agent"]["store"]
    assert shown == "postgresql://agent:***@db.example:5432/woobrevo?sslmode=require"
    assert store_info(cfg.agent).address == shown
    check = _cli("check", "--config", str(tmp_path / "c.yaml"))
    assert check.returncode == 0, check.stderr
    assert SECRET not in check.stdout + check.stderr
    assert "agent:***@db.example" in check.stdout


def test_store_and_replica_need_a_restart(tmp_path: Path) -> None:
    old = load(tmp_path, config_data(tmp_path))
    data = config_data(tmp_path)
    data["agent"].update(store=f"postgresql://agent:{SECRET}@db/w", replica="other")
    new = load(tmp_path, data, name="d.yaml")
    problems = restart_needed(old, new)
    assert any(p.startswith("agent.store:") for p in problems)
    assert any(p.startswith("agent.replica:") for p in problems)
    assert SECRET not in " ".join(problems)
