"""The store's backends for the tests that take `backend_store`: each such test runs on the
SQLite store and on the PostgreSQL one (tests/pgserver.py for where the server comes from;
the `pg_server` and `pg_dsn` fixtures are tests/conftest.py's, shared with tests/e2e)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from agent.store import SqliteStore
from agent.store.postgres import PostgresStore
from tests import pgserver

BACKENDS = ("sqlite", "postgres")

OpenStore = Callable[..., AbstractAsyncContextManager[Any]]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`WOOBREVO_TEST_PG=off` leaves the PostgreSQL cases out, said, not skipped silently."""
    if not pgserver.disabled():
        return

    def on_pg(item: pytest.Item) -> bool:
        return "[postgres" in item.nodeid or "pg_server" in getattr(item, "fixturenames", ())

    pg = [i for i in items if on_pg(i)]
    if pg:
        config.hook.pytest_deselected(items=pg)
        items[:] = [i for i in items if not on_pg(i)]


@pytest.fixture(params=BACKENDS)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Opens the test's store on the backend of this case: `async with open_store() as s:`,
    again after a close to reopen the same one. Takes the SQLite store's `held_sites`."""
    if request.param == "sqlite":
        path = tmp_path / "s.db"
        return lambda **kw: SqliteStore(path, **kw)
    dsn: str = request.getfixturevalue("pg_dsn")
    return lambda **kw: PostgresStore(dsn, **kw)


@pytest.fixture
async def backend_store(open_store: OpenStore) -> AsyncIterator[Any]:
    """The test's store, open, on the backend of this case."""
    async with open_store() as store:
        yield store
