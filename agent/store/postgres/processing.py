"""Processing on PostgreSQL: the inbox's new rows, in order, through the pure pipeline into
jobs, order facts, objects, carts and erasures; the cart timers; the pruning of old rows.

The rules and their bookkeeping are the SQLite store's, shared, not copied: a chunk of rows
is planned by agent/store/chunk.py `Chunk` with agent/store/inbox.py `process_row` (the cart
timers with agent/store/carts.py `fire_rows`, the pruning with agent/store/inbox.py
`prune_rows`), on `SyncDb`: a connection of psycopg's sync API that takes the same SQL
(sqlite3's `?` placeholders, agent/store/postgres/base.py `pg`), on a thread of its own, as
the SQLite store runs them on its thread. The pure pipeline reads through the chunk while it
runs (the consent view, aggregates), so those reads cannot be awaited: a thread it is.

Several processes on one database (the workers of several agent replicas) are safe: a pass
holds PROCESS_LOCK, a transaction-scoped advisory lock, from reading its rows to its commit,
so two passes never take the same rows nor reorder a site's events, and the cart timers fire
under it too (a cart is moved on by one of them at a time). The job queue is the one table
the forwarders change meanwhile: a pending job the chunk merged into is locked (`FOR UPDATE`,
which a claim's `SKIP LOCKED` passes by) before the chunk writes, and when a forwarder claimed
it in between, the chunk is planned again (`JobTaken`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
import psycopg.errors

from agent.errors import AgentError
from agent.store.carts import CART_BATCH, fire_rows
from agent.store.chunk import Chunk, QueuedJob
from agent.store.inbox import (
    PRUNE_BATCH,
    Facts,
    Steps,
    last_seq_before,
    plan_rows,
    processing_letter,
    prune_rows,
)
from agent.store.ports import CartFire, CartStep, Decide, ErasureStep
from agent.store.postgres.base import CONNECT_TIMEOUT, PROCESS_LOCK, PgBase, pg
from agent.store.postgres.channels import JOBS_CHANNEL
from agent.store.postgres.dsn import masked
from agent.store.postgres.inbox import _text
from agent.store.rows import EVENT_COLUMNS
from agent.store.schema import PENDING

__all__ = ["PROCESS_LOCK", "JobTaken", "ProcessingMixin", "SyncDb"]

log = logging.getLogger("agent.store")

T = TypeVar("T")
SyncConn = psycopg.Connection[tuple[Any, ...]]

# Times a chunk is planned again when forwarders keep claiming the jobs it merges into, or
# when PostgreSQL aborts its transaction (a deadlock, 40P01; a serialization failure, 40001),
# and the longest pause before planning it again then (random below it).
CONFLICT_TRIES = 5
CONFLICT_PAUSE = 0.05

# A pass's first statement: its lock (see the module), and a commit that does not wait for
# the disk. What a pass writes is derived from committed rows (inbox rows, due carts) that a
# crash leaves as they were, to be processed again; and PostgreSQL writes its log in order, so
# any later commit that waits (a door's batch, a Brevo call's outcome, which only a job
# committed before it can start) makes the pass durable first (docs/durability.md, as the
# SQLite store's processing commits).
_BEGIN_PASS = "SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock(%s)"

# SQLite's functions in the shared SQL, as PostgreSQL names them (same arguments, same result).
_DIALECT = (("instr(", "strpos("),)


@functools.lru_cache(maxsize=512)
def _sql(sql: str) -> bytes:
    for sqlite, postgres in _DIALECT:
        sql = sql.replace(sqlite, postgres)
    return pg(sql)


class JobTaken(Exception):
    """A forwarder claimed a pending job while a chunk merged into it: plan the chunk again."""


# What makes a pass run again from the start: nothing it wrote was kept. (psycopg's
# DeadlockDetected, 40P01, and SerializationFailure, 40001, are not TransactionRollback's.)
_RUN_AGAIN = (
    JobTaken,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.TransactionRollback,
)


def _pause() -> None:
    """A random pause before a pass runs again (two passes that deadlocked do not meet again)."""
    time.sleep(random.uniform(0, CONFLICT_PAUSE))


class SyncDb:
    """The processing connection as agent/store/rows.py `Db`: the SQL the SQLite store runs,
    on PostgreSQL. Statements run in the caller's transaction."""

    dialect = "postgresql"  # agent/store/ahead.py words a read or two for PostgreSQL's planner

    def __init__(self, conn: SyncConn) -> None:
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        return self.conn.execute(_sql(sql), tuple(parameters) or None)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(_sql(sql), [tuple(p) for p in parameters])


class ProcessingMixin(PgBase):
    """The `InboxQueue`, `CartTimers` ports (agent/store/ports.py) on PostgreSQL."""

    _proc_pool: ThreadPoolExecutor | None = None
    _proc_conn: SyncConn | None = None

    # -- the processing connection and its thread ----------------------------------------

    async def _on_proc(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(SyncDb, *args)` on the processing thread, its connection opened if need be."""
        if self._proc_pool is None:
            self._proc_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-process")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._proc_pool, self._call_proc, fn, args)

    def _call_proc(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._proc_conn
        if conn is None or conn.closed or conn.broken:
            try:
                conn = psycopg.Connection.connect(
                    self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT
                )
            except psycopg.Error as exc:
                raise AgentError(
                    f"cannot connect to the PostgreSQL store {self.where}:"
                    f" {masked(str(exc).strip(), self._dsn)}"
                ) from None
            self._proc_conn = conn
        try:
            return fn(SyncDb(conn), *args)
        except psycopg.Error as exc:
            text = str(exc)
            if masked(text, self._dsn) != text:
                raise AgentError(masked(text, self._dsn)) from None
            raise

    async def close(self) -> None:
        """Close the processing connection and its thread, then the others."""
        pool, self._proc_pool = self._proc_pool, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(pool, self._close_proc)
            pool.shutdown(wait=True)
        await super().close()

    def _close_proc(self) -> None:
        conn, self._proc_conn = self._proc_conn, None
        if conn is not None and not conn.closed:
            conn.close()

    # -- processing -----------------------------------------------------------------------

    async def process_pending(
        self,
        limit: int,
        decide: Decide,
        facts: Facts,
        *,
        carts: CartStep | None = None,
        privacy: ErasureStep | None = None,
    ) -> int:
        """Process up to `limit` new inbox rows in order, in one transaction (one per row when
        one of them breaks the pipeline: that one becomes a dead letter). As on SQLite
        (agent/store/inbox.py `process_pending`); returns how many rows were processed."""
        steps = Steps(decide, facts, carts, privacy)
        return await self._on_proc(self._process_pending, limit, steps)

    def _process_pending(self, db: SyncDb, limit: int, steps: Steps) -> int:
        conn = db.conn
        rows: list[tuple[Any, ...]] = []
        try:
            for _ in range(CONFLICT_TRIES):
                try:
                    with conn.transaction():
                        conn.execute(_BEGIN_PASS, (PROCESS_LOCK,))
                        rows = self._pending(conn, limit)
                        if rows:
                            _plan_and_apply(db, rows, steps)
                            # At the commit: every replica's forwarders look (cluster.py).
                            conn.execute("SELECT pg_notify(%s, '')", (JOBS_CHANNEL,))
                    return len(rows)
                except _RUN_AGAIN as exc:
                    log.debug("processing pass runs again: %s", type(exc).__name__)
                    _pause()
            log.warning(
                "a chunk kept conflicting with claims or other transactions; one row at a time"
            )
        except psycopg.OperationalError:
            raise  # the server or the connection failed: nothing was written, rows stay pending
        except Exception:
            log.warning("processing a batch of %d failed; isolating the bad event", len(rows))
        for row in rows:
            self._process_alone(db, int(row[0]), steps)
        return len(rows)

    def _pending(self, conn: SyncConn, limit: int, seq: int | None = None) -> list[Any]:
        """The new rows, oldest first (or the one row `seq`, if still new), held sites left."""
        cur = conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM inbox WHERE state = 0"
            " AND NOT (site = ANY(%s)) AND (%s::bigint IS NULL OR seq = %s)"
            " ORDER BY seq LIMIT %s",
            (self._held, seq, seq, limit),
        )
        return cur.fetchall()

    def _process_alone(self, db: SyncDb, seq: int, steps: Steps) -> None:
        """One row in its own transaction: processed, or kept as a dead letter."""
        for _ in range(CONFLICT_TRIES):
            try:
                self._one_row(db, seq, steps)
                return
            except _RUN_AGAIN:
                _pause()
        raise JobTaken(f"inbox row {seq}: it kept conflicting with claims or other transactions")

    def _one_row(self, db: SyncDb, seq: int, steps: Steps) -> None:
        conn = db.conn
        with conn.transaction():
            conn.execute(_BEGIN_PASS, (PROCESS_LOCK,))
            rows = self._pending(conn, 1, seq)
            if not rows:  # another replica processed it meanwhile
                return
            try:
                with conn.transaction():  # a savepoint: the dead letter replaces it
                    _plan_and_apply(db, rows, steps)
            except (JobTaken, psycopg.OperationalError):
                raise
            except Exception as exc:
                row = rows[0]
                log.exception("event %s of site %s failed to process", row[2], row[1])
                sql, args = processing_letter(row, exc)
                db.execute(sql, _text(args))
                db.execute("UPDATE inbox SET state = 1 WHERE seq = ?", (seq,))
            conn.execute("SELECT pg_notify(%s, '')", (JOBS_CHANNEL,))

    # -- cart timers ----------------------------------------------------------------------

    async def fire_due_carts(self, now: float, fire: CartFire, *, limit: int = CART_BATCH) -> int:
        """Fire up to `limit` carts due by `now`, oldest due first, with their jobs, in one
        transaction; returns how many fired (agent/store/carts.py on SQLite)."""
        return await self._on_proc(self._fire_due, now, fire, limit)

    def _fire_due(self, db: SyncDb, now: float, fire: CartFire, limit: int) -> int:
        conn = db.conn
        for _ in range(CONFLICT_TRIES):
            try:
                with conn.transaction():
                    conn.execute(_BEGIN_PASS, (PROCESS_LOCK,))
                    cur = conn.execute(
                        "SELECT site, state FROM carts WHERE due IS NOT NULL AND due <= %s"
                        " AND NOT (site = ANY(%s)) ORDER BY due, site, cart_id LIMIT %s",
                        (now, self._held, limit),
                    )
                    rows = cur.fetchall()
                    chunk = Chunk(db)
                    fire_rows(chunk, rows, fire)
                    chunk.settle()
                    _lock_merged(db, chunk)
                    _apply(db, chunk)
                    if rows:  # the carts' jobs: every replica's forwarders look (cluster.py)
                        conn.execute("SELECT pg_notify(%s, '')", (JOBS_CHANNEL,))
                return len(rows)
            except _RUN_AGAIN:
                _pause()
        raise JobTaken("the cart timers kept conflicting with claims or other transactions")

    async def next_cart_due(self) -> float | None:
        """When the next cart timer comes due (None: no cart is waiting)."""
        cur = await self.db.execute(
            "SELECT MIN(due) FROM carts WHERE due IS NOT NULL AND NOT (site = ANY(%s))",
            (self._held,),
        )
        row = await cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- retention ------------------------------------------------------------------------

    async def prune_inbox(self, before: float, *, batch: int = PRUNE_BATCH) -> int:
        """Delete processed inbox rows stored before `before` (epoch seconds), oldest first,
        at most `batch` per transaction; rows not processed yet stay. Returns how many went."""
        cutoff = await self._on_proc(last_seq_before, before)
        total = 0
        while cutoff is not None:
            n = await self._on_proc(self._prune_some, cutoff, before, batch)
            total += n
            if n < batch:
                break
        return total

    def _prune_some(self, db: SyncDb, cutoff: int, before: float, batch: int) -> int:
        with db.conn.transaction():
            return prune_rows(db, cutoff, before, batch)


def _plan_and_apply(db: SyncDb, rows: Sequence[Sequence[Any]], steps: Steps) -> None:
    """Plan the rows through the pipeline into a chunk and write it, in the caller's
    transaction (which holds PROCESS_LOCK)."""
    chunk = Chunk(db)
    plan_rows(chunk, rows, steps)
    _lock_merged(db, chunk)
    _apply(db, chunk)


def _lock_merged(db: SyncDb, chunk: Chunk) -> None:
    """Lock the pending jobs the chunk merged into; JobTaken when one is pending no more (a
    forwarder claimed it since the chunk read it)."""
    ids = {w.id for w in chunk.writes if isinstance(w, QueuedJob) and w.id is not None}
    if not ids:
        return
    cur = db.conn.execute(
        f"SELECT id FROM jobs WHERE id = ANY(%s) AND state = {PENDING} FOR UPDATE",
        (sorted(ids),),
    )
    if len(cur.fetchall()) != len(ids):
        raise JobTaken("a job the chunk merged into was claimed meanwhile")


def _apply(db: SyncDb, chunk: Chunk) -> None:
    """The chunk's writes, sent in one round trip (psycopg's pipeline mode)."""
    with db.conn.pipeline():
        chunk.apply()
