"""SQL on the test's store, whichever backend it is (tests/agent/conftest.py `open_store`):
the SQLite store's statements (`?` placeholders), run on its thread or, on PostgreSQL, through
agent/store/postgres/base.py `pg`. For tests that look at, or set up, what a port wrote."""

from __future__ import annotations

from typing import Any

from agent.store import SqliteStore
from agent.store.postgres.base import Conn, pg

__all__ = ["query", "write"]


async def query(store: Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """The rows of a SELECT, as tuples."""
    if isinstance(store, SqliteStore):
        return await store._run(lambda: [tuple(r) for r in store.db.execute(sql, args)])
    cur = await store.db.execute(pg(sql), args or None)
    return [tuple(r) for r in await cur.fetchall()]


async def write(store: Any, sql: str, *args: Any) -> None:
    """Run one statement in a committed transaction."""
    if isinstance(store, SqliteStore):

        def run() -> None:
            with store._tx() as db:
                db.execute(sql, args)

        await store._run(run)
        return

    async def on(db: Conn) -> None:
        await db.execute(pg(sql), args or None)

    await store._write(on)
