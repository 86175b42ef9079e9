"""The store's tables, and opening the file: WAL, durability, recovery after a crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.errors import AgentError

__all__ = ["ERASED_INFLIGHT", "INFLIGHT", "PENDING", "SCHEMA_VERSION", "connect"]

# 2: `carts` (issue 13); 3: `consent` and `suppression` (issue 14). An older file gains the
# new tables when opened (every CREATE below is IF NOT EXISTS).
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL,
    event_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    resource TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_id INTEGER NOT NULL,
    occurred_at TEXT,
    received_at REAL NOT NULL,
    door TEXT NOT NULL,
    historical INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}',
    state INTEGER NOT NULL DEFAULT 0,
    UNIQUE (site, event_id)
);
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (seq) WHERE state = 0;
CREATE TABLE IF NOT EXISTS objects (
    site TEXT NOT NULL,
    resource TEXT NOT NULL,
    resource_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (site, resource, resource_id)
);
CREATE TABLE IF NOT EXISTS order_facts (
    site TEXT NOT NULL,
    order_id INTEGER NOT NULL,
    email TEXT NOT NULL,
    status TEXT NOT NULL,
    total REAL NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (site, order_id)
);
CREATE INDEX IF NOT EXISTS order_facts_email ON order_facts (site, email);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    site TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    historical INTEGER NOT NULL DEFAULT 0,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    single_only INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (account, kind, state, id);
CREATE INDEX IF NOT EXISTS jobs_key ON jobs (account, key, state);
CREATE INDEX IF NOT EXISTS jobs_inflight ON jobs (account, key) WHERE state = 1;
-- the forwarder's "how many of a kind are due, and when is the next one", from the index alone
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (account, state, kind, not_before);
CREATE TABLE IF NOT EXISTS forwarded (
    account TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (account, key)
);
CREATE TABLE IF NOT EXISTS watermarks (
    site TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (site, name)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site TEXT NOT NULL,
    origin TEXT NOT NULL,
    ref TEXT NOT NULL,
    kind TEXT NOT NULL,
    account TEXT,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'open'
);
CREATE INDEX IF NOT EXISTS dead_open ON dead_letters (state, site);
-- abandoned carts (agent/core/carts.py): each cart's state and its next due time
CREATE TABLE IF NOT EXISTS carts (
    site TEXT NOT NULL,
    cart_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    due REAL,
    email TEXT,
    customer_id INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    PRIMARY KEY (site, cart_id)
);
CREATE INDEX IF NOT EXISTS carts_due ON carts (due, site, cart_id) WHERE due IS NOT NULL;
CREATE INDEX IF NOT EXISTS carts_email ON carts (site, email) WHERE due IS NOT NULL;
CREATE INDEX IF NOT EXISTS carts_customer ON carts (site, customer_id) WHERE due IS NOT NULL;
-- marketing consent per (Brevo account, email) (agent/core/consent.py); doi: pending|confirmed
CREATE TABLE IF NOT EXISTS consent (
    account TEXT NOT NULL,
    email TEXT NOT NULL,
    subscribed INTEGER NOT NULL,
    since REAL NOT NULL,
    source TEXT NOT NULL,
    doi TEXT,
    PRIMARY KEY (account, email)
);
-- lists an email left in Brevo (list_id 0: every list: blocklisted or spam)
CREATE TABLE IF NOT EXISTS suppression (
    account TEXT NOT NULL,
    email TEXT NOT NULL,
    list_id INTEGER NOT NULL,
    reason TEXT NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (account, email, list_id)
);
CREATE TABLE IF NOT EXISTS stats (
    site TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (site, name)
);
"""

# Job states (`jobs.state`); an inbox row is 0 until processed, then 1.
# A job's state: queued, claimed (a Brevo call may be in flight), or claimed when an erasure of
# its email came (agent/store/privacy.py): its answer is then dropped, never queued again.
PENDING, INFLIGHT, ERASED_INFLIGHT = 0, 1, 2

# The doors process checkpoints the WAL only past this many pages (40 MB): the worker's commits
# checkpoint it at SQLite's default 1,000; this bounds it while the worker is down.
DOORS_CHECKPOINT_PAGES = 10_000


def _refuse_newer(db: sqlite3.Connection, path: Path) -> None:
    """A file a newer agent wrote holds tables and states this one does not know (and would
    silently ignore, e.g. who unsubscribed): refuse it rather than run on part of it."""
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
    ).fetchone()
    if not has_meta:
        return
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    found = int(row[0]) if row and str(row[0]).isdigit() else 0
    if found > SCHEMA_VERSION:
        db.close()
        raise AgentError(
            f"{path} was written by a newer WooBrevo agent (store schema {found}; this agent"
            f" knows up to {SCHEMA_VERSION}): run that newer agent again, or restore the copy"
            ' of the state folder taken before the upgrade (docs/install.md, "Upgrading")'
        )


def connect(
    path: Path, *, busy_timeout: float, checkpoints: bool, recover: bool
) -> sqlite3.Connection:
    """Open (creating) the store file for the calling thread, with its schema.

    `checkpoints=False` leaves the WAL checkpoints to another process, but past
    DOORS_CHECKPOINT_PAGES. `recover` hands back to the queue the jobs a crash left claimed
    (at-least-once).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    if not checkpoints:
        db.execute(f"PRAGMA wal_autocheckpoint={DOORS_CHECKPOINT_PAGES}")
    db.execute("PRAGMA foreign_keys=ON")
    _refuse_newer(db, path)
    db.executescript(_SCHEMA)
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key)"
        " DO UPDATE SET value=excluded.value WHERE CAST(value AS INTEGER) < CAST(excluded.value"
        " AS INTEGER)",
        (str(SCHEMA_VERSION),),
    )
    if recover:
        db.execute("UPDATE jobs SET state = ? WHERE state = ?", (PENDING, INFLIGHT))
        db.execute("DELETE FROM jobs WHERE state = ?", (ERASED_INFLIGHT,))
    return db
