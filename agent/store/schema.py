"""The store's tables, and opening the file: WAL, durability, recovery after a crash, and the
file's health (a damaged, empty or foreign file is refused, never replaced; docs/durability.md,
"A damaged store")."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import stat
from pathlib import Path
from urllib.parse import quote

from agent.errors import AgentError

__all__ = [
    "ERASED_INFLIGHT",
    "INFLIGHT",
    "PENDING",
    "SCHEMA_VERSION",
    "StoreDamaged",
    "check_store",
    "connect",
    "damage_of",
    "probe",
]

log = logging.getLogger("agent.store")

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
    path: Path, *, busy_timeout: float, checkpoints: bool, recover: bool, check: bool = False
) -> sqlite3.Connection:
    """Open the store file for the calling thread, with its schema; create it when no file is
    there (and only then: an empty or foreign file is refused, `StoreDamaged`).

    `checkpoints=False` leaves the WAL checkpoints to another process, but past
    DOORS_CHECKPOINT_PAGES. `recover` hands back to the queue the jobs a crash left claimed
    (at-least-once). `check` runs SQLite's integrity check first (the agent's start): a
    damaged file is refused with what SQLite found and the recovery steps.
    """
    _prepare_folder(path.parent, path.name)
    if not os.path.lexists(path):
        _create(path)
    elif (damage := damage_of(path)) is not None:
        raise StoreDamaged(path, damage)
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    except sqlite3.Error as exc:
        raise _unusable(path, exc) from None
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        if not checkpoints:
            db.execute(f"PRAGMA wal_autocheckpoint={DOORS_CHECKPOINT_PAGES}")
        db.execute("PRAGMA foreign_keys=ON")
        if check and (problems := _integrity(db, START_PROBLEMS)):
            raise StoreDamaged(path, _found(problems))
        _refuse_newer(db, path)
        _apply_schema(db)
        if recover:
            db.execute("UPDATE jobs SET state = ? WHERE state = ?", (PENDING, INFLIGHT))
            db.execute("DELETE FROM jobs WHERE state = ?", (ERASED_INFLIGHT,))
    except sqlite3.Error as exc:
        db.close()
        raise _unusable(path, exc) from None
    except BaseException:
        db.close()
        raise
    return db


def _apply_schema(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key)"
        " DO UPDATE SET value=excluded.value WHERE CAST(value AS INTEGER) < CAST(excluded.value"
        " AS INTEGER)",
        (str(SCHEMA_VERSION),),
    )


# -- the file's health --------------------------------------------------------------------

# The first 16 bytes of every SQLite database file (sqlite.org/fileformat.html, §1.3).
SQLITE_HEADER = b"SQLite format 3\x00"
RECOVERY_DOC = 'docs/durability.md, "A damaged store"'
# The state folder and the agent's files in it hold customers' data (whole payloads, dead
# letters): for the agent's user only (issue 16, finding 6).
DIR_MODE, FILE_MODE = 0o700, 0o600
# Files of the state folder the agent keeps besides the store's own (`<store>`, `-wal`, `-shm`).
OTHER_FILES = ("forwarder.lock",)
# SQLite's result codes (the low byte of `sqlite_errorcode`) that mean the file is damaged.
DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# How many of the integrity check's findings a refused start collects (`store check`: 100).
START_PROBLEMS = 20
SHOWN_PROBLEMS = 5
EMPTY = (
    "the file is empty (0 bytes). A new store is made only where no file exists, so that a"
    " lost or truncated store is never silently replaced by an empty one (every event acked"
    " and not yet forwarded would be gone); to start afresh on purpose, move the file away"
)


class StoreDamaged(AgentError):
    """The store file cannot be used as it is: names the file, the damage and the way back."""

    def __init__(self, path: Path, damage: str) -> None:
        self.path = path
        self.damage = damage
        super().__init__(path, damage)

    def __str__(self) -> str:
        folder, name = self.path.parent, self.path.name
        return (
            f"the store {self.path} is damaged: {self.damage}.\n"
            "  The agent does not run on a damaged store (it could lose acked events or send"
            " them twice). To recover:\n"
            "  1. stop every woobrevo-agent that uses this folder;\n"
            f"  2. copy the folder aside, whole: cp -a {folder} {folder}.damaged;\n"
            "  3. restore the folder from a backup, or salvage what the file still holds:"
            f" remove {name} and its -wal and -shm from {folder} (the copy keeps them), then,"
            f" as the agent's user, sqlite3 {folder}.damaged/{name} .recover | sqlite3"
            f" {self.path} (where .recover fails: .dump, as the doc below shows);\n"
            "  4. check the result: woobrevo-agent store check --config FILE, and start.\n"
            f"  The steps in full, and what each way loses: {RECOVERY_DOC}."
        )


def damage_of(path: Path) -> str | None:
    """Why the file at `path` is no SQLite database (gone, empty, not a file, another
    format), or None. Reads 16 bytes."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return "it is not a regular file"
        if info.st_size == 0:
            return EMPTY
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return "the file is gone"
    except OSError as exc:
        return f"it cannot be read: {exc.strerror or exc}"
    if head != SQLITE_HEADER:
        return "it is not a SQLite database (it does not start with SQLite's header)"
    return None


def _unusable(path: Path, exc: sqlite3.Error) -> AgentError:
    """What a SQLite error while opening means for the operator: damage, or a file the agent
    cannot use (owner, permissions, disk full), each naming the file."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in DAMAGE_CODES:
        return StoreDamaged(path, f"SQLite says {exc}")
    name = getattr(exc, "sqlite_errorname", type(exc).__name__)
    return AgentError(
        f"cannot use the store {path}: {exc} ({name}); check the folder's owner and"
        " permissions (the agent's user must own it) and the free disk space"
    )


def _integrity(db: sqlite3.Connection, limit: int) -> list[str]:
    """SQLite's `PRAGMA integrity_check`: every page, record and index entry of the file
    (sqlite.org/pragma.html#pragma_integrity_check). Chosen over `quick_check` at start: it
    also finds an index out of step with its table, such as the inbox's UNIQUE (site,
    event_id) that keeps a resend from being stored twice, and costs the same when the
    file is not in the page cache (the disk is the cost; docs/durability.md)."""
    try:
        rows = db.execute(f"PRAGMA integrity_check({int(limit)})").fetchall()
    except sqlite3.DatabaseError as exc:  # damage the check itself cannot get past
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in DAMAGE_CODES:
            raise
        return [str(exc)]
    return [str(row[0]) for row in rows if row[0] != "ok"]


def _found(problems: list[str]) -> str:
    shown = "; ".join(problems[:SHOWN_PROBLEMS])
    more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
    return f"SQLite's integrity check found: {shown}{more}"


def _read_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A connection that cannot write the file (`mode=ro`), beside a running agent or not."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)


def probe(path: Path, timeout: float = 1.0) -> str | None:
    """What a new reader finds wrong with the store file, or None: it is there, starts with
    SQLite's header, its schema reads, and so do the first and last row of every table (each
    read walks the table's pages from its root to a leaf, so a damaged root or edge page, or
    a file cut short, fails it). A few milliseconds whatever the file's size, and no write:
    /readyz (agent/http.py); `check_store` reads every page."""
    damage = damage_of(path)
    if damage is not None:
        return damage
    try:
        db = _read_only(path, timeout)
    except sqlite3.Error as exc:
        return f"it cannot be opened: {exc}"
    try:
        tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        for (name,) in tables:
            quoted = '"' + str(name).replace('"', '""') + '"'
            for order in ("ASC", "DESC"):
                db.execute(f"SELECT * FROM {quoted} ORDER BY rowid {order} LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        return f"SQLite says {exc}"
    finally:
        db.close()
    return None


def check_store(path: Path, limit: int = 100) -> list[str]:
    """`woobrevo-agent store check`: SQLite's integrity check and foreign key check of the
    whole file, read-only (beside a running agent or not); [] when it is sound."""
    if not os.path.lexists(path):
        return [f"there is no store at {path} (the agent makes one at its first start)"]
    damage = damage_of(path)
    if damage is not None:
        return [damage]
    try:
        db = _read_only(path, timeout=5.0)
    except sqlite3.Error as exc:
        return [f"it cannot be opened: {exc}"]
    try:
        problems = _integrity(db, limit)
        for table, rowid, parent, _ in db.execute("PRAGMA foreign_key_check").fetchall():
            problems.append(f"foreign key: {table} row {rowid} names a missing {parent} row")
    except sqlite3.Error as exc:
        problems = [f"SQLite says {exc}"]
    finally:
        db.close()
    return problems


# -- creating the file, and its folder ----------------------------------------------------


def _create(path: Path) -> None:
    """A new store at `path`, built beside it and linked into place whole, private (0600):
    a crash half way leaves no file at `path`, never an empty one (refused at the next
    start, as a truncated store would be)."""
    tmp = path.with_name(f"{path.name}.new-{os.getpid()}")
    parts = [tmp, *(Path(f"{tmp}{end}") for end in ("-wal", "-shm", "-journal"))]
    for leftover in parts:  # an earlier try of this pid's, killed half way
        leftover.unlink(missing_ok=True)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        # SQLite gives the -wal and -shm files the database file's mode (0600 here).
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            _apply_schema(db)
        finally:
            db.close()  # the last connection: the WAL is checkpointed (synced) and removed
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it meanwhile: that one is the store
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
        _sync_folder(path.parent)
    finally:
        for leftover in parts:
            leftover.unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    """The new name survives a power cut (fsync of the directory, as SQLite does for its WAL)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _prepare_folder(folder: Path, store: str) -> None:
    """Create the state folder private (0700). An existing one open to others, and the
    agent's files in it (the store `store`, its -wal and -shm, the forwarding lock), are
    made private, each with a warning: they hold whole payloads."""
    folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(folder, DIR_MODE, "state folder")
    for entry in folder.iterdir():
        if entry.name in OTHER_FILES or entry.name.startswith(store):
            _tighten(entry, FILE_MODE, "state file")


def _tighten(path: Path, mode: int, what: str) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o077:
        return
    was = stat.S_IMODE(info.st_mode)
    try:
        path.chmod(mode)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EACCES):
            raise
        log.warning(
            "%s %s is %04o, open to other users, and cannot be changed (%s): make it %04o"
            " (chmod %o %s); it holds customers' data",
            what, path, was, exc.strerror, mode, mode, path,
        )  # fmt: skip
        return
    log.warning(
        "%s %s was %04o, open to other users: now %04o (it holds customers' data)",
        what, path, was, mode,
    )  # fmt: skip
