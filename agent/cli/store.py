"""`woobrevo-agent store migrate`: bring a store's schema up to this agent's.

For the SQLite file of the config (`agent.state_dir`), opening it is the migration (every
table is created IF NOT EXISTS, agent/store/schema.py). For a PostgreSQL database
(`--database postgresql://…`, else the config's `agent.store`; the password best from PGPASSWORD or ~/.pgpass, not the
command line), the numbered migrations it lacks are applied, once, under an advisory lock
(agent/store/postgres/schema.py); one a newer agent migrated is refused.
"""

from __future__ import annotations

import argparse
import asyncio

import psycopg

from agent.config import Config
from agent.errors import EXIT_OK, AgentError
from agent.logs import protect
from agent.store import SqliteStore
from agent.store.postgres import SCHEMA_VERSION, is_postgres, migrate, shown
from agent.store.postgres.dsn import masked, password
from agent.store.schema import SCHEMA_VERSION as SQLITE_SCHEMA

__all__ = ["migrate_store"]


def migrate_store(args: argparse.Namespace, cfg: Config) -> int:
    """Apply the store's migrations; prints what was done."""
    # Without --database: the config's store (agent.store, else its SQLite file).
    database: str | None = args.database or cfg.agent.store
    if database is None:

        async def sqlite() -> None:
            async with SqliteStore(cfg.agent.store_path, recover=False):
                pass

        asyncio.run(sqlite())
        print(f"{cfg.agent.store_path}: at schema {SQLITE_SCHEMA}")
        return EXIT_OK
    if not is_postgres(database):
        raise AgentError(
            f"--database {shown(database)}: expected a PostgreSQL address"
            " (postgresql://user@host/dbname); without --database the config's SQLite file is"
            " migrated"
        )
    protect([password(database)])
    applied = asyncio.run(_postgres(database))
    where = shown(database)
    if not applied:
        print(f"{where}: at schema {SCHEMA_VERSION}, nothing to apply")
    for version, name in applied:
        print(f"{where}: applied migration {version} ({name})")
    return EXIT_OK


async def _postgres(dsn: str) -> list[tuple[int, str]]:
    where = shown(dsn)
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as db:
            return [(m.version, m.name) for m in await migrate(db, where)]
    except psycopg.Error as exc:
        raise AgentError(
            f"cannot migrate the PostgreSQL store {where}: {masked(str(exc).strip(), dsn)}"
        ) from None
