"""The PostgreSQL store's tables, as numbered migrations, and how they are applied.

Each migration is applied once, in order, in one transaction that holds an advisory lock
(two agents starting at once, or `woobrevo-agent store migrate` beside a running one, apply
each once); `schema_migrations` records which ran. A database that a newer agent migrated
holds tables and states this one does not know: it is refused, as the SQLite store refuses
a newer file (agent/store/schema.py `_refuse_newer`).

The tables are the SQLite store's (agent/store/schema.py), with PostgreSQL's types. Jobs
carry `claimed_by` and `claimed_until` so that claims can become leases (issue 17, replicas).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from agent.errors import AgentError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "migrate", "schema_version"]

# pg_advisory_xact_lock's key for migrations: "woobrevo" in ASCII, as a 64-bit integer.
LOCK_KEY = 0x776F6F627265766F


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: its number, what it does, its statements."""

    version: int
    name: str
    sql: str


_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE inbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site TEXT NOT NULL,
    event_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    resource TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_id BIGINT NOT NULL,
    occurred_at TEXT,
    received_at DOUBLE PRECISION NOT NULL,
    door TEXT NOT NULL,
    historical INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}',
    state INTEGER NOT NULL DEFAULT 0,
    UNIQUE (site, event_id)
);
CREATE INDEX inbox_pending ON inbox (seq) WHERE state = 0;
CREATE INDEX inbox_door ON inbox (site, door, received_at);
CREATE TABLE objects (
    site TEXT NOT NULL,
    resource TEXT NOT NULL,
    resource_id BIGINT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (site, resource, resource_id)
);
CREATE TABLE order_facts (
    site TEXT NOT NULL,
    order_id BIGINT NOT NULL,
    email TEXT NOT NULL,
    status TEXT NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (site, order_id)
);
CREATE INDEX order_facts_email ON order_facts (site, email);
CREATE TABLE jobs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account TEXT NOT NULL,
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    historical INTEGER NOT NULL DEFAULT 0,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    single_only INTEGER NOT NULL DEFAULT 0,
    not_before DOUBLE PRECISION NOT NULL DEFAULT 0,
    created_at DOUBLE PRECISION NOT NULL,
    last_error TEXT,
    claimed_by TEXT,
    claimed_until DOUBLE PRECISION
);
CREATE INDEX jobs_queue ON jobs (account, kind, state, id);
CREATE INDEX jobs_key ON jobs (account, key, state);
CREATE INDEX jobs_inflight ON jobs (account, key) WHERE state = 1;
CREATE INDEX jobs_due ON jobs (account, state, kind, not_before);
CREATE TABLE forwarded (
    account TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account, key)
);
CREATE TABLE watermarks (
    site TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (site, name)
);
CREATE TABLE dead_letters (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site TEXT NOT NULL,
    origin TEXT NOT NULL,
    ref TEXT NOT NULL,
    kind TEXT NOT NULL,
    account TEXT,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL DEFAULT 'open'
);
CREATE INDEX dead_open ON dead_letters (state, site);
CREATE INDEX dead_ref ON dead_letters (origin, ref);
CREATE TABLE carts (
    site TEXT NOT NULL,
    cart_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    due DOUBLE PRECISION,
    email TEXT,
    customer_id BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    PRIMARY KEY (site, cart_id)
);
CREATE INDEX carts_due ON carts (due, site, cart_id) WHERE due IS NOT NULL;
CREATE INDEX carts_email ON carts (site, email) WHERE due IS NOT NULL;
CREATE INDEX carts_customer ON carts (site, customer_id) WHERE due IS NOT NULL;
CREATE TABLE consent (
    account TEXT NOT NULL,
    email TEXT NOT NULL,
    subscribed INTEGER NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL,
    doi TEXT,
    PRIMARY KEY (account, email)
);
CREATE TABLE suppression (
    account TEXT NOT NULL,
    email TEXT NOT NULL,
    list_id BIGINT NOT NULL,
    reason TEXT NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account, email, list_id)
);
CREATE TABLE stats (
    site TEXT NOT NULL,
    name TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (site, name)
);
"""

# Brevo's rate windows shared by every replica forwarding for an account (budgets.py): per
# (account, endpoint family, window period) the window's start and the requests counted in
# it, and until when a 429 blocks the family (the same on each of the family's rows); times
# are the server's clock (epoch seconds). The replicas' heartbeats (cluster.py): who runs,
# since when, last seen (the server's clock), and the sites its stream door holds.
_V2 = """
CREATE TABLE rate_windows (
    account TEXT NOT NULL,
    family TEXT NOT NULL,
    period DOUBLE PRECISION NOT NULL,
    start DOUBLE PRECISION,
    used INTEGER NOT NULL DEFAULT 0,
    blocked_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (account, family, period)
);
CREATE TABLE replicas (
    name TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    sites TEXT NOT NULL DEFAULT '[]',
    sites_at DOUBLE PRECISION
);
"""

# In order; a released migration is never edited, a change is a new one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the tables of the SQLite store's schema 3", _V1),
    Migration(2, "shared Brevo rate windows and the replicas' heartbeats", _V2),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)
"""


async def schema_version(db: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
    """The newest migration applied to the database (0: none, or no ledger yet)."""
    cur = await db.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    row = await cur.fetchone()
    return int(str(row[0])) if row is not None else 0


def _refuse(found: int, where: str) -> AgentError:
    return AgentError(
        f"the PostgreSQL store {where} was migrated by a newer WooBrevo agent (store schema"
        f" {found}; this agent knows up to {SCHEMA_VERSION}): run that newer agent again, or"
        " restore the database's backup taken before the upgrade (docs/postgresql.md)"
    )


async def migrate(
    db: psycopg.AsyncConnection[tuple[object, ...]],
    where: str,
    migrations: tuple[Migration, ...] = MIGRATIONS,
) -> list[Migration]:
    """Apply the migrations the database lacks, in order, in one transaction under the
    advisory lock; returns those applied. `where` names the database (password masked)."""
    known = migrations[-1].version
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        await db.execute(_LEDGER)
        found = await schema_version(db)
        if found > known:
            raise _refuse(found, where)
        applied = [m for m in migrations if m.version > found]
        for m in applied:
            await db.execute(m.sql.encode())
            await db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (m.version, m.name, time.time()),
            )
    return applied
