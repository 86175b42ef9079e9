"""Copying a SQLite store into a PostgreSQL one (`woobrevo-agent store copy`, docs/postgresql.md
"Moving an installation to PostgreSQL").

Each table is read in its primary key's order, in chunks. A chunk is written in one target
transaction that also records, in `store_copy_ledger`, the last key copied: a copy stopped at
any point (kill -9 included) goes on from there on the next run. A chunk makes the target's
rows in its key range equal to the source's (rows that differ written, rows the source no
longer has removed), so a pass over a source that changed since (a first pass while the agent
ran, then the final one after it stopped) leaves the target equal to the source, nothing
doubled. Text keys compare bytewise on both sides (SQLite's BINARY, PostgreSQL's "C").

The end is verified: per table, the row count and an order-independent digest (the sum of
each row's hash, over its canonical form) read back from both sides. Identity sequences are
set past the highest id the source ever gave (`sqlite_sequence`).

As the SQLite store does when it opens, jobs a crash left claimed go back to the queue
(PostgreSQL's claims are leases, which a job copied in flight would not have) and the claims
an erasure dropped are not copied; `meta`'s `schema_version` is the SQLite file's own.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from agent.errors import AgentError
from agent.store.postgres.dsn import masked, shown
from agent.store.schema import ERASED_INFLIGHT, INFLIGHT, PENDING, damage_of
from agent.store.schema import SCHEMA_VERSION as SQLITE_SCHEMA

__all__ = ["TABLES", "CopyResult", "Progress", "Table", "copy_store", "digest_rows"]

Row = tuple[Any, ...]
# The target's ledger: one row per table ({"after": last key, "done": bool}) and one ('')
# for the copy ({"source": path, "fingerprint": …, "finished": bool}).
LEDGER = "store_copy_ledger"
# Test-only: after this many chunks committed, print "paused" and wait to be killed.
PAUSE_ENV = "WOOBREVO_TEST_COPY_PAUSE"
MOD = 1 << 128


@dataclass(frozen=True, slots=True)
class Table:
    """A table copied: its name, its primary key, its identity column (if any)."""

    name: str
    key: tuple[str, ...]
    identity: str | None = None
    where: str = "1=1"  # the source's rows copied


TABLES: tuple[Table, ...] = (
    Table("meta", ("key",), where="key <> 'schema_version'"),
    Table("inbox", ("seq",), identity="seq"),
    Table("objects", ("site", "resource", "resource_id")),
    Table("order_facts", ("site", "order_id")),
    Table("jobs", ("id",), identity="id", where=f"state <> {ERASED_INFLIGHT}"),
    Table("forwarded", ("account", "key")),
    Table("watermarks", ("site", "name")),
    Table("dead_letters", ("id",), identity="id"),
    Table("carts", ("site", "cart_id")),
    Table("consent", ("account", "email")),
    Table("suppression", ("account", "email", "list_id")),
    Table("stats", ("site", "name")),
)


class Progress:
    """What the copy reports as it goes (the CLI draws it)."""

    def start(self, table: str, total: int) -> None:
        """A table's copy begins: `total` source rows."""

    def advance(self, table: str, done: int) -> None:
        """`done` of the table's rows are copied."""

    def finish(self, table: str, done: int, written: int, removed: int) -> None:
        """The table is copied."""


@dataclass(slots=True)
class CopyResult:
    """What a run did: per table, rows in the source, written and removed in the target;
    the verified counts (None: a live pass, not verified)."""

    resumed: bool = False
    written: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] | None = None
    already_finished: bool = False


def _fail(dsn: str, what: str, exc: Exception) -> AgentError:
    return AgentError(f"{what} {shown(dsn)}: {masked(str(exc).strip(), dsn)}")


# -- canonical rows and their digest -----------------------------------------------------

Coerce = Callable[[Any], Any]


def _coercer(pg_type: str) -> Coerce:
    if pg_type in ("bigint", "integer", "smallint"):
        return lambda v: None if v is None else int(v)
    if pg_type in ("double precision", "real", "numeric"):
        return lambda v: None if v is None else float(v)
    return lambda v: None if v is None else str(v)


def row_hash(table: str, row: Row) -> int:
    """A row's hash over its canonical form (JSON: ints, floats exactly, text, null)."""
    text = json.dumps([table, list(row)], ensure_ascii=False, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")


def digest_rows(table: str, rows: Iterator[Row]) -> tuple[int, str]:
    """(count, digest): the digest is the sum of the rows' hashes, so any order gives it."""
    count, total = 0, 0
    for row in rows:
        count += 1
        total = (total + row_hash(table, row)) % MOD
    return count, f"{total:032x}"


# -- the source ----------------------------------------------------------------------------


class Source:
    """The SQLite store, read only; its rows as the target holds them."""

    def __init__(self, path: Path) -> None:
        if (damage := damage_of(path)) is not None:
            raise AgentError(f"--from {path}: not a WooBrevo store: {damage}")
        self.path = path
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        try:
            self.db = sqlite3.connect(uri, uri=True, timeout=10.0, isolation_level=None)
            names = self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            self.tables = {str(r[0]) for r in names}
        except sqlite3.Error as exc:
            raise AgentError(f"--from {path}: cannot read it: {exc}") from None
        self._refuse_newer()

    def _refuse_newer(self) -> None:
        if "meta" not in self.tables:
            raise AgentError(f"--from {self.path}: not a WooBrevo store (it has no meta table)")
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        found = int(row[0]) if row and str(row[0]).isdigit() else 0
        if found > SQLITE_SCHEMA:
            raise AgentError(
                f"--from {self.path} was written by a newer WooBrevo agent (store schema"
                f" {found}; this agent knows up to {SQLITE_SCHEMA}): copy it with that newer"
                " agent's `store copy`"
            )

    def columns(self, table: str) -> list[str]:
        return [str(r[1]) for r in self.db.execute(f"PRAGMA table_info({table})")]

    def count(self, t: Table) -> int:
        if t.name not in self.tables:
            return 0
        return int(self.db.execute(f"SELECT COUNT(*) FROM {t.name} WHERE {t.where}").fetchone()[0])

    def chunk(self, t: Table, cols: Sequence[str], after: Row | None, limit: int) -> list[Row]:
        if t.name not in self.tables:
            return []
        key = ", ".join(t.key)
        cond = f"({key}) > ({', '.join('?' * len(t.key))})" if after is not None else "1=1"
        sql = (
            f"SELECT {', '.join(cols)} FROM {t.name} WHERE {t.where} AND {cond}"
            f" ORDER BY {key} LIMIT {int(limit)}"
        )
        return self.db.execute(sql, after or ()).fetchall()

    def sequence(self, table: str) -> int:
        if "sqlite_sequence" not in self.tables:
            return 0
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name=?", (table,)).fetchone()
        return int(row[0]) if row else 0

    def fingerprint(self) -> list[int]:
        """The file's and its WAL's size and time: a change means the source was written (an
        empty WAL, which SQLite makes and removes as readers come and go, counts as none)."""
        out: list[int] = []
        for p in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            if st.st_size:
                out += [st.st_ino, st.st_size, st.st_mtime_ns]
        return out


@contextmanager
def no_agent_running(path: Path) -> Iterator[None]:
    """Hold the forwarder's lock of the store's folder (agent/app.py `forwarding_lock`) for
    the copy: refused while an agent runs there, and no agent starts until the copy ends."""
    if (damage := damage_of(path)) is not None:
        raise AgentError(f"--from {path}: not a WooBrevo store: {damage}")
    lock = path.parent / "forwarder.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise AgentError(
                f"an agent (pid {holder}) is running on {path}: stop it first (systemctl stop"
                " woobrevo-agent), or pass --live for a first pass while it runs, then stop it"
                " and copy again (docs/postgresql.md)"
            ) from None
        yield
    finally:
        os.close(fd)


# -- the target ----------------------------------------------------------------------------


class Target:
    """The PostgreSQL store: migrated, its ledger, the chunks written."""

    def __init__(self, db: psycopg.Connection[Row]) -> None:
        self.db = db
        db.execute(f"CREATE TABLE IF NOT EXISTS {LEDGER} (name TEXT PRIMARY KEY, value TEXT)")
        self.types: dict[str, dict[str, str]] = {}
        cur = db.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        )
        for table, column, kind in cur.fetchall():
            self.types.setdefault(str(table), {})[str(column)] = str(kind)

    def ledger(self, name: str) -> dict[str, Any] | None:
        cur = self.db.execute(f"SELECT value FROM {LEDGER} WHERE name=%s", (name,))
        row = cur.fetchone()
        return None if row is None else dict(json.loads(str(row[0])))

    def note(self, name: str, value: dict[str, Any]) -> None:
        self.db.execute(
            f"INSERT INTO {LEDGER} (name, value) VALUES (%s, %s) ON CONFLICT (name)"
            " DO UPDATE SET value = EXCLUDED.value",
            (name, json.dumps(value)),
        )

    def holds_rows(self) -> list[str]:
        held = []
        for t in TABLES:
            if self.db.execute(f"SELECT EXISTS (SELECT 1 FROM {t.name})").fetchone() != (False,):
                held.append(t.name)
        return held

    def _range(self, t: Table, after: Row | None, last: Row | None) -> tuple[str, list[Any]]:
        def key() -> str:
            parts = [f'{c} COLLATE "C"' if self.types[t.name][c] == "text" else c for c in t.key]
            return f"ROW({', '.join(parts)})"

        conds, args = [], []
        if after is not None:
            conds.append(f"{key()} > ROW({', '.join(['%s'] * len(after))})")
            args += list(after)
        if last is not None:
            conds.append(f"{key()} <= ROW({', '.join(['%s'] * len(last))})")
            args += list(last)
        return " AND ".join(conds) or "TRUE", args

    def sync_range(
        self, t: Table, cols: Sequence[str], rows: list[Row], after: Row | None, tail: bool
    ) -> tuple[int, int]:
        """Make the target's rows of the range (after, last row's key] (to the end: `tail`)
        the given ones; returns (written, removed)."""
        nkey = [cols.index(c) for c in t.key]
        last = None if tail or not rows else tuple(rows[-1][i] for i in nkey)
        cond, args = self._range(t, after, last)
        cur = self.db.execute(f"SELECT {', '.join(cols)} FROM {t.name} WHERE {cond}", args)
        have = {tuple(r[i] for i in nkey): tuple(r) for r in cur.fetchall()}
        wanted = {tuple(r[i] for i in nkey): r for r in rows}
        stale = [k for k in have if k not in wanted]
        if stale:
            match = " AND ".join(f"{c} = %s" for c in t.key)
            with self.db.cursor() as c:
                c.executemany(f"DELETE FROM {t.name} WHERE {match}", stale)
        changed = [r for k, r in wanted.items() if have.get(k) != r]
        if changed:
            self._upsert(t, cols, changed)
        return len(changed), len(stale)

    def _upsert(self, t: Table, cols: Sequence[str], rows: list[Row]) -> None:
        others = [c for c in cols if c not in t.key]
        override = " OVERRIDING SYSTEM VALUE" if t.identity else ""
        update = ", ".join(f"{c} = EXCLUDED.{c}" for c in others)
        sql = (
            f"INSERT INTO {t.name} ({', '.join(cols)}){override}"
            f" VALUES ({', '.join(['%s'] * len(cols))})"
            f" ON CONFLICT ({', '.join(t.key)}) DO UPDATE SET {update}"
        )
        if t.name == "jobs":  # a claim taken on SQLite is no lease here
            sql += ", claimed_by = NULL, claimed_until = NULL"
        with self.db.cursor() as c:
            c.executemany(sql, rows)

    def rows(self, t: Table, cols: Sequence[str], chunk: int) -> Iterator[Row]:
        with self.db.cursor(name=f"digest_{t.name}") as cur:
            cur.execute(f"SELECT {', '.join(cols)} FROM {t.name}")
            while batch := cur.fetchmany(chunk):
                yield from (tuple(r) for r in batch)

    def set_sequence(self, t: Table, given: int) -> None:
        """The identity's next value past every id the source gave (or holds)."""
        assert t.identity is not None
        cur = self.db.execute(f"SELECT COALESCE(MAX({t.identity}), 0) FROM {t.name}")
        high = max(given, int(str((cur.fetchone() or (0,))[0])))
        self.db.execute(
            "SELECT setval(pg_get_serial_sequence(%s, %s), %s, %s)",
            (t.name, t.identity, max(high, 1), high > 0),
        )


# -- the copy ------------------------------------------------------------------------------


@dataclass(slots=True)
class Plan:
    """One table's columns and how the source's values become the target's."""

    table: Table
    cols: list[str]
    coerce: list[Coerce]

    def convert(self, row: Row) -> Row:
        out = tuple(f(v) for f, v in zip(self.coerce, row, strict=True))
        if self.table.name == "jobs":  # a crash's claim, back to the queue (as SQLite's open)
            i = self.cols.index("state")
            if out[i] == INFLIGHT:
                out = (*out[:i], PENDING, *out[i + 1 :])
        return out


def _plans(source: Source, target: Target) -> list[Plan]:
    plans = []
    for t in TABLES:
        if t.name not in target.types:
            raise AgentError(f"the target lacks the table {t.name}: is it a WooBrevo store?")
        # a table an older source lacks is empty there: its rows compare on the target's columns
        cols = source.columns(t.name) if t.name in source.tables else list(target.types[t.name])
        missing = [c for c in cols if c not in target.types[t.name]]
        if missing:
            raise AgentError(
                f"the target's {t.name} lacks the column(s) {', '.join(missing)}: migrate it"
                " with this agent (woobrevo-agent store migrate --database …)"
            )
        coerce = [_coercer(target.types[t.name][c]) for c in cols]
        plans.append(Plan(t, cols, coerce))
    return plans


@dataclass(slots=True)
class Run:
    """One run's settings."""

    source: Source
    target: Target
    chunk: int
    progress: Progress
    live: bool
    pause_after: int | None = None
    chunks: int = 0


def _begin(run: Run) -> tuple[bool, bool]:
    """Check the target against the ledger: (resume from the checkpoints, already finished).
    Refuses a target that holds other data."""
    source, target = run.source, run.target
    head = target.ledger("")
    where = str(source.path.resolve())
    if head is None:
        held = target.holds_rows()
        if held:
            raise AgentError(
                f"the target already holds data ({', '.join(held)}) that no copy of this store"
                " wrote: copy into a new, empty database (createdb), or drop it and start again"
            )
    elif head.get("source") != where:
        raise AgentError(
            f"the target holds a copy of another store ({head.get('source')}), not of {where}:"
            " copy into a new, empty database"
        )
    if head is not None and head.get("finished"):
        return True, True
    fingerprint = source.fingerprint()
    # a live pass's checkpoints are of a moving source: the next run reads it all again
    resume = (
        head is not None
        and head.get("fingerprint") == fingerprint
        and not head.get("live")
        and not run.live
    )
    head = {"source": where, "fingerprint": fingerprint, "finished": False, "live": run.live}
    with target.db.transaction():
        target.note("", head)
        if not resume:  # the source changed since (or a live pass): read it all again
            for t in TABLES:
                target.note(t.name, {"after": None, "done": False})
    return resume, False


def _copy_table(run: Run, plan: Plan, result: CopyResult) -> None:
    t, target = plan.table, run.target
    state = target.ledger(t.name) or {"after": None, "done": False}
    total = run.source.count(t)
    run.progress.start(t.name, total)
    written = removed = 0
    if state["done"]:
        run.progress.finish(t.name, total, 0, 0)
        return
    after: Row | None = None if state["after"] is None else tuple(state["after"])
    done = 0
    if after is not None:
        done = _count_upto(run, t, after)
    while True:
        raw = run.source.chunk(t, plan.cols, after, run.chunk)
        rows = [plan.convert(r) for r in raw]
        tail = len(rows) < run.chunk
        with target.db.transaction():
            w, r = target.sync_range(t, plan.cols, rows, after, tail)
            if rows:
                after = tuple(raw[-1][plan.cols.index(c)] for c in t.key)
            target.note(t.name, {"after": list(after) if after else None, "done": tail})
        written, removed, done = written + w, removed + r, done + len(rows)
        run.progress.advance(t.name, done)
        run.chunks += 1
        if run.pause_after is not None and run.chunks >= run.pause_after:
            print("paused", flush=True)
            time.sleep(3600)
        if tail:
            break
    result.written[t.name], result.removed[t.name] = written, removed
    run.progress.finish(t.name, done, written, removed)


def _count_upto(run: Run, t: Table, after: Row) -> int:
    key = ", ".join(t.key)
    upto = ", ".join("?" * len(after))
    sql = f"SELECT COUNT(*) FROM {t.name} WHERE {t.where} AND ({key}) <= ({upto})"
    return int(run.source.db.execute(sql, after).fetchone()[0])


def _verify(run: Run, plans: list[Plan], finished: bool) -> dict[str, int]:
    """Counts and digests of every table on both sides; raises naming those that differ.
    Sets the identities' sequences unless the copy finished before (an agent may run on the
    target since)."""
    counts, differ = {}, []
    for plan in plans:
        t = plan.table

        def source_rows(plan: Plan = plan) -> Iterator[Row]:
            after: Row | None = None
            while raw := run.source.chunk(plan.table, plan.cols, after, run.chunk):
                yield from (plan.convert(r) for r in raw)
                after = tuple(raw[-1][plan.cols.index(c)] for c in plan.table.key)

        with run.target.db.transaction():
            theirs = digest_rows(t.name, run.target.rows(t, plan.cols, run.chunk))
        ours = digest_rows(t.name, source_rows())
        counts[t.name] = ours[0]
        if ours != theirs:
            differ.append(
                f"{t.name} (source {ours[0]} rows, digest {ours[1]}; target {theirs[0]} rows,"
                f" digest {theirs[1]})"
            )
        if t.identity is not None and not finished:
            with run.target.db.transaction():
                run.target.set_sequence(t, run.source.sequence(t.name))
    if differ:
        raise AgentError(
            "the copy does not match its source: " + "; ".join(differ) + ". If an agent ran on"
            " either side since the copy began, stop it and run the copy again"
        )
    return counts


def copy_store(
    source_path: Path,
    dsn: str,
    *,
    chunk: int = 2000,
    live: bool = False,
    progress: Progress | None = None,
) -> CopyResult:
    """Copy the SQLite store at `source_path` into the migrated PostgreSQL database `dsn`
    (resuming an interrupted copy), then verify it. `live`: a first pass beside a running
    agent (not verified, not finished)."""
    if chunk < 1:
        raise AgentError(f"--chunk-rows {chunk}: must be 1 or more")
    source = Source(source_path)
    pause = os.environ.get(PAUSE_ENV)
    try:
        db = psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise _fail(dsn, "cannot connect to the PostgreSQL store", exc) from None
    try:
        with db:
            run = Run(
                source,
                Target(db),
                chunk,
                progress or Progress(),
                live,
                int(pause) if pause and pause.isdigit() else None,
            )
            return _copy(run)
    except psycopg.Error as exc:
        raise _fail(dsn, "the copy into the PostgreSQL store failed at", exc) from None
    finally:
        source.db.close()


def _copy(run: Run) -> CopyResult:
    plans = _plans(run.source, run.target)
    resume, finished = _begin(run)
    result = CopyResult(resumed=resume, already_finished=finished)
    if not finished:
        for plan in plans:
            _copy_table(run, plan, result)
        if run.live:
            return result
    result.counts = _verify(run, plans, finished)
    if not finished:
        head = run.target.ledger("") or {}
        with run.target.db.transaction():
            run.target.note("", {**head, "finished": True})
    return result
