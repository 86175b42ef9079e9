"""End to end: WordPress + the plugin (PHP) → the real agent → the Brevo fake.

The PHP side is the WordPress that `tests/php/run.sh --setup-only` installs (private MariaDB,
Debian's WordPress, the plugin, the WooCommerce test double); each store action is its own PHP
process (`wp_scenario.php`), so every action is one request and ships at its `shutdown` as on a
live shop. The agent is `python -m agent.cli run --config FILE` in its own process; the Brevo
fake runs in the test's event loop.

Every test that makes an agent runs on each store backend (`agent_store`): the SQLite file, and
PostgreSQL (a fresh database per agent on the session's server, tests/pgserver.py).
`WOOBREVO_TEST_STORE=sqlite|postgres|both` (default both) picks them; `WOOBREVO_TEST_PG=off`
leaves PostgreSQL out. The tests read what the agent stored through `Agent.rows`, on either.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import psycopg.errors
import pytest

from agent.store.postgres.base import pg
from tests import pgserver
from tests.kit import UNIT, until

REPO = Path(__file__).resolve().parents[2]
RUN_SH = REPO / "tests" / "php" / "run.sh"
SCENARIO = Path(__file__).resolve().parent / "wp_scenario.php"
STORE_ENV = "WOOBREVO_TEST_STORE"
STORES = ("sqlite", "postgres")


def chosen_stores() -> tuple[str, ...]:
    """The backends `WOOBREVO_TEST_STORE` asks for (sqlite, postgres or both; default both),
    without PostgreSQL when `WOOBREVO_TEST_PG=off`."""
    value = os.environ.get(STORE_ENV, "").strip().lower() or "both"
    if value not in (*STORES, "both"):
        raise pytest.UsageError(f"{STORE_ENV}={value!r}: use sqlite, postgres or both")
    chosen = STORES if value == "both" else (value,)
    if pgserver.disabled():
        if chosen == ("postgres",):
            raise pytest.UsageError(
                f"{STORE_ENV}=postgres with {pgserver.ENV}=off: unset one of them"
            )
        chosen = ("sqlite",)
    return chosen


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The cases of the backends `WOOBREVO_TEST_STORE` leaves out are deselected (counted in
    pytest's summary), not skipped."""
    chosen = chosen_stores()

    def left_out(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        return callspec is not None and callspec.params.get("agent_store", chosen[0]) not in chosen

    out = [i for i in items if left_out(i)]
    if out:
        config.hook.pytest_deselected(items=out)
        items[:] = [i for i in items if not left_out(i)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (bound, read back, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """The process ids `pid` started (Linux)."""
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def token(name: str) -> str:
    """A site token of the shape `woobrevo-agent token create` prints."""
    return hashlib.sha256(f"e2e-{name}-{os.getpid()}".encode()).hexdigest()[:48]


@pytest.fixture(scope="session")
def wp_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """WordPress single-site and multisite on a private MariaDB, for the whole session."""
    if not shutil.which("bash"):
        pytest.skip("bash is needed for tests/php/run.sh")
    env_file = tmp_path_factory.mktemp("wp") / "env"
    setup = subprocess.run(
        ["bash", str(RUN_SH), "--setup-only", "--env-file", str(env_file)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if setup.returncode != 0:
        pytest.fail(f"tests/php/run.sh --setup-only failed:\n{setup.stdout}\n{setup.stderr}")
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    try:
        yield env
    finally:
        subprocess.run(
            ["bash", str(RUN_SH), "--stop", "--env-file", str(env_file)],
            capture_output=True,
            timeout=120,
            check=False,
        )


class Php:
    """Runs wp_scenario.php commands against one site of the test WordPress."""

    def __init__(self, env: dict[str, str], kind: str = "single", path: str = "/") -> None:
        self.env = {
            **os.environ,
            "WOOBREVO_WP_DIR": env[
                "WOOBREVO_WP_SINGLE" if kind == "single" else "WOOBREVO_WP_MULTI"
            ],
            "WOOBREVO_WP_PATH": path,
        }

    async def __call__(self, *args: str) -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            "php",
            str(SCENARIO),
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120 * UNIT)
        if proc.returncode != 0:
            raise AssertionError(
                f"php {' '.join(args)} failed ({proc.returncode}):\n{out.decode()}\n{err.decode()}"
            )
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        assert lines, f"php {' '.join(args)} printed no JSON:\n{out.decode()}\n{err.decode()}"
        result: dict[str, Any] = json.loads(lines[-1])
        return result


class Agent:
    """`python -m agent.cli run` with a generated config; stop() and start() keep its ports."""

    def __init__(
        self,
        state: Path,
        sites: list[dict[str, Any]],
        brevo: Any,
        woocommerce: dict[str, Any] | None = None,
        store: str | None = None,
    ) -> None:
        """`store`: a PostgreSQL database's DSN for `agent.store`; None, the SQLite file."""
        self.state = state
        self.store = store
        self.port = free_port()
        self.http_port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.log = state / "agent.log"
        config = {
            "agent": {
                "listen": {
                    "stream": f"127.0.0.1:{self.port}",
                    "http": f"127.0.0.1:{self.http_port}",
                },
                "state_dir": str(state / "state"),
                "log_level": "info",
                **({"store": store} if store else {}),
            },
            "brevo": {"api_key": brevo.api_key, "base_url": brevo.base_url},
            "connectors": {
                "woocommerce": {
                    "store_url": "http://woobrevo.test",
                    "customer_mapping": {
                        "email": "email",
                        "first_name": "FIRSTNAME",
                        "last_name": "LASTNAME",
                        "billing.city": "CITY",
                        "orders_count": "ORDER_COUNT",
                    },
                    "lists": {"all_customers": 50, "buyers": 51},
                    "webhooks": [{"topic": "order.created", "event": "order_placed"}],
                    **(woocommerce or {}),
                }
            },
            "sites": sites,
        }
        self.config = state / "agent.yaml"
        # JSON is YAML: the agent's loader reads it as is.
        self.config.write_text(json.dumps(config, indent=2))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    async def start(self) -> None:
        log = self.log.open("a")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            "--config",
            str(self.config),
            cwd=str(REPO),
            stdout=log,
            stderr=log,
        )
        log.close()
        proc = self.proc

        async def listening() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"the agent exited:\n{self.log.read_text()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                return False
            writer.close()
            await writer.wait_closed()
            return True

        await until(listening, 30, what=f"the agent to listen (log: {self.log})", every=0.1)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20 * UNIT)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None

    async def kill(self) -> None:
        """kill -9 of the whole agent, the doors process and its worker (agent/process/worker.py)
        at once: the doors are frozen first, so they cannot start another worker meanwhile."""
        assert self.proc is not None and self.proc.returncode is None, "the agent is not running"
        pid = self.proc.pid
        os.kill(pid, signal.SIGSTOP)
        for child in children_of(pid):
            with contextlib.suppress(ProcessLookupError):  # a child that just ended
                os.kill(child, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL
        self.proc = None

    async def status(self) -> dict[str, Any]:
        """The agent's /status document."""
        url = f"http://127.0.0.1:{self.http_port}/status"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200, await response.text()
            document: dict[str, Any] = await response.json()
        return document

    @property
    def sqlite_file(self) -> Path:
        """Where the SQLite store is (on PostgreSQL the agent must make no such file)."""
        return self.state / "state" / "woobrevo.sqlite3"

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """The rows of one SELECT (SQLite's `?` placeholders) on the agent's store, whichever
        backend it is; none while the store's tables are not made yet."""
        if self.store is None:
            db = sqlite3.connect(self.sqlite_file)
            try:
                return [tuple(r) for r in db.execute(sql, args)]
            except sqlite3.OperationalError:  # the agent has not made its tables yet
                return []
            finally:
                db.close()
        with psycopg.connect(self.store, autocommit=True) as pgdb:
            try:
                return [tuple(r) for r in pgdb.execute(pg(sql), args or None)]
            except psycopg.errors.UndefinedTable:  # the agent has not migrated yet
                return []

    def stored(self) -> dict[str, bytes]:
        """Everything the agent keeps: its state folder's files (the SQLite database and its
        -wal and -shm on SQLite) and, on PostgreSQL, each table's rows as text ("table NAME":
        what a query can read; dead row versions the server has not reused yet are not in it,
        docs/postgresql.md "Erasure")."""
        folder = self.state / "state"
        kept = {p.name: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        if self.store is not None:
            with psycopg.connect(self.store, autocommit=True) as pgdb:
                tables = pgdb.execute(
                    "SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema = 'public' ORDER BY table_name"
                ).fetchall()
                for (name,) in tables:
                    text = pgdb.execute(f'SELECT t::text FROM "{name}" t'.encode()).fetchall()
                    kept[f"table {name}"] = "\n".join(str(r[0]) for r in text).encode()
        return kept

    def carts(self, site: str = "default") -> dict[int, tuple[str, float | None]]:
        """cart id → (status, next due time) of every cart the agent keeps for `site`."""
        rows = self.rows("SELECT cart_id, status, due FROM carts WHERE site = ?", site)
        return {int(c): (str(s), None if d is None else float(d)) for c, s, d in rows}

    def inbox(self) -> list[tuple[str, str, str, int]]:
        """(site, event_id, topic, resource_id) of every stored event, in arrival order."""
        return [
            (str(s), str(e), str(t), int(r))
            for s, e, t, r in self.rows(
                "SELECT site, event_id, topic, resource_id FROM inbox ORDER BY seq"
            )
        ]


@pytest.fixture
async def brevo() -> AsyncIterator[Any]:
    from tests.fakes.brevo import BrevoFake

    async with BrevoFake() as fake:
        yield fake
    fake.assert_no_spec_violations()


@pytest.fixture(params=STORES)
def agent_store(request: pytest.FixtureRequest) -> str:
    """The store backend of this case's agents: "sqlite" or "postgres" (`chosen_stores`).
    Function-scoped: the cases keep the files' order (a session scope would run every SQLite
    case first, then the PostgreSQL ones, then the rest; the e2e tests share one WordPress)."""
    return str(request.param)


@pytest.fixture
async def make_agent(
    tmp_path: Path, brevo: Any, agent_store: str, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    agents: list[Agent] = []
    databases = contextlib.ExitStack()
    server: str | None = request.getfixturevalue("pg_server") if agent_store == "postgres" else None

    def database() -> str | None:
        """A fresh PostgreSQL database for one agent (None on SQLite)."""
        if server is None:
            return None
        try:
            return databases.enter_context(pgserver.fresh_database(server))
        except pgserver.NoServer as exc:
            pytest.fail(f"PostgreSQL for the tests: {exc}", pytrace=False)

    async def make(
        sites: list[tuple[str, str]] | list[tuple[str, str, dict[str, Any]]],
        woocommerce: dict[str, Any] | None = None,
    ) -> Agent:
        """Sites as (id, token) or (id, token, extra site keys such as brevo_id_prefix);
        `woocommerce` replaces keys of the connectors.woocommerce block (lists, carts)."""
        state = tmp_path / f"agent{len(agents)}"
        state.mkdir()
        entries = [
            {
                "id": site[0],
                "token_sha256": hashlib.sha256(site[1].encode()).hexdigest(),
                **(site[2] if len(site) > 2 else {}),  # type: ignore[misc]
            }
            for site in sites
        ]
        agent = Agent(state, entries, brevo, woocommerce, database())
        agents.append(agent)
        await agent.start()
        return agent

    with databases:
        yield make
        for agent in agents:
            await agent.stop()
