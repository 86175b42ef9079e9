"""Which store the config names, opened: the one place the agent picks its backend.

`agent.store` left out is the SQLite file in `agent.state_dir` (agent/store/sqlite.py);
`agent.store: postgresql://…` is a PostgreSQL database shared by the agent's replicas
(agent/store/postgres/, docs/postgresql.md), whose Brevo job claims are leased under
`agent.replica`. The password comes from the address, PGPASSWORD or ~/.pgpass (libpq reads
them); it is never shown: every name for the store here is `shown()`'s.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import psycopg

from agent.config import AgentSection
from agent.store.postgres import SCHEMA_VERSION, PostgresStore, shown
from agent.store.postgres.base import CONNECT_TIMEOUT
from agent.store.postgres.dsn import masked
from agent.store.postgres.schema import MIGRATIONS
from agent.store.sqlite import SqliteStore
from agent.store.tx import WriteRole

__all__ = ["Store", "StoreInfo", "check_postgres", "open_store", "store_info"]

# Either backend: both implement every port (agent/store/ports.py, checked by mypy in
# sqlite.py and postgres/store.py), `ingested`, `hold`, `health` and `close`.
Store = SqliteStore | PostgresStore


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """What /status and /readyz show of the store: no password."""

    backend: str  # "sqlite" or "postgresql"
    address: str  # the file's path, or the DSN with its password masked
    replica: str

    def as_dict(self) -> dict[str, str]:
        return {"backend": self.backend, "address": self.address, "replica": self.replica}


def store_info(agent: AgentSection) -> StoreInfo:
    """The config's store, as shown."""
    if agent.store is None:
        return StoreInfo("sqlite", str(agent.store_path), agent.replica)
    return StoreInfo("postgresql", shown(agent.store), agent.replica)


def open_store(
    agent: AgentSection,
    *,
    recover: bool = False,
    writes: WriteRole = "plain",
    held_sites: Collection[str] = (),
) -> Store:
    """The config's store, to be entered (`async with`).

    `recover`: hand back the Brevo jobs a crash left claimed: only the process that forwards
    does (False for operator commands beside a running agent). On PostgreSQL it hands back
    only this replica's claims and expired leases. `writes` is SQLite's split of the write
    lock between the doors and the worker process (agent/store/tx.py); PostgreSQL's
    connections need none: each process has its own, the server orders their transactions.
    """
    if agent.store is None:
        return SqliteStore(agent.store_path, recover=recover, writes=writes, held_sites=held_sites)
    return PostgresStore(
        agent.store,
        owner=agent.replica,
        replica_timeout=agent.replica_timeout,
        recover=recover,
        held_sites=held_sites,
    )


def store_exists(agent: AgentSection) -> bool:
    """Whether there is a store to read (a SQLite file not made yet is not; a database is
    taken to be, and opening it says otherwise)."""
    return agent.store is not None or agent.store_path.exists()


async def check_postgres(dsn: str) -> list[str]:
    """`store check` on PostgreSQL: the server answers, the schema is this agent's, and every
    migration is applied. Reads only (no migration). Problems, as sentences; [] when sound."""
    where = shown(dsn)
    try:
        conn = await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT
        )
    except psycopg.Error as exc:
        return [f"cannot connect: {masked(str(exc).strip(), dsn)}"]
    async with conn:
        try:
            return await _schema_problems(conn, where)
        except psycopg.Error as exc:
            return [f"reading the schema failed: {masked(str(exc).strip(), dsn)}"]


async def _schema_problems(
    conn: psycopg.AsyncConnection[tuple[object, ...]], where: str
) -> list[str]:
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return [
            f"{where} holds no agent schema (no schema_migrations table): run"
            " `woobrevo-agent store migrate --config FILE`"
        ]
    cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
    applied = {int(str(r[0])) for r in await cur.fetchall()}
    problems = []
    newer = sorted(v for v in applied if v > SCHEMA_VERSION)
    if newer:
        problems.append(
            f"migration(s) {', '.join(map(str, newer))} come from a newer agent (this one's"
            f" schema is {SCHEMA_VERSION}): run that agent"
        )
    missing = [m for m in MIGRATIONS if m.version not in applied]
    if missing:
        names = ", ".join(f"{m.version} ({m.name})" for m in missing)
        problems.append(
            f"migration(s) not applied: {names}: run `woobrevo-agent store migrate --config FILE`"
        )
    return problems
