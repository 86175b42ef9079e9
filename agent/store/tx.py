"""The store's connection, its one thread, and how its writes take the file's write lock.

Every statement runs on a single worker thread that owns the connection (sqlite3 objects are
not shared across threads), so the asyncio loop never blocks on the disk and a process's writes
never contend with each other. Two processes (the doors and the worker, agent/process/worker.py)
share the file: see `Tx` for how one waits for the other's write, and `StoreBase._write` for
how a process's small writes share one commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from agent.store.group import GroupCommit
from agent.store.schema import DAMAGE_CODES, RECOVERY_DOC, connect, probe

__all__ = ["BUSY_STEP", "BUSY_TIMEOUT", "WORKER_GAP", "StoreBase", "Tx", "WriteRole"]

T = TypeVar("T")
WriteRole = Literal["plain", "doors", "worker"]

# How long a write waits for another process's write transaction before it fails.
BUSY_TIMEOUT = 5.0
# How often a waiting write tries again (SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20,
# 25 ms…: a write waiting behind a 30 ms one would wait 33 or 53 ms).
BUSY_STEP = 0.0002
# How long the worker leaves the write lock free after each of its commits (`Tx`).
WORKER_GAP = 0.001
# How long a probe of the file's health (`StoreBase.health`, /readyz) is taken as still true.
HEALTH_TTL = 5.0
# How long a failed write (a full disk, an I/O error) keeps the store unhealthy unless a write
# succeeds first.
FAULT_TTL = 60.0
# SQLite's result codes for a file that cannot take writes or be read now (not damage).
FAULT_CODES = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN}
)


class StoreBase:
    """The connection on its thread, the group-commit write queue, and the held sites: what
    every part of the store (inbox, jobs, dead letters, meta) builds on."""

    def __init__(
        self,
        path: str | Path,
        *,
        recover: bool = True,
        writes: WriteRole = "plain",
        held_sites: Collection[str] = (),
    ) -> None:
        self.path = Path(path)
        # Sites switched off in the config (`enabled: false`): their stored events are neither
        # processed nor forwarded; they wait, kept, until the site is enabled again.
        self._held = tuple(sorted(held_sites))
        self._not_held = (
            f" AND site NOT IN ({','.join('?' * len(self._held))})" if self._held else ""
        )
        # writes: "doors" and "worker" for agent/process/worker.py's two processes (`Tx` for how
        # they share the write lock). The doors leave WAL checkpoints to the worker: a commit
        # that crosses the checkpoint threshold copies the WAL into the database and waits for
        # the disk again before it returns, and a door's ack would wait for that.
        self.writes = writes
        self._pace = Pace(WORKER_GAP if writes == "worker" else 0.0)
        # recover=False for short-lived tools (`token`, `deadletters` CLIs) that open the file
        # beside a running agent: they must not hand the agent's in-flight jobs back to the queue.
        self.recover = recover
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._db: sqlite3.Connection | None = None
        self.ingested = asyncio.Event()
        self._group: GroupCommit[Callable[[sqlite3.Connection], Any]] = GroupCommit(
            self._commit_group, lambda exc: exc, "store-writes"
        )
        # The file's health (`health`): damage SQLite reported to any statement (for good),
        # the last failed write (until a write succeeds), the last probe and when it ran.
        self._damage: str | None = None
        self._fault: tuple[float, str] | None = None
        self._probed: tuple[float, str | None] = (float("-inf"), None)
        self._probing: asyncio.Task[str | None] | None = None

    async def hold(self, sites: Collection[str]) -> None:
        """Hold these sites from now on (a reload: disabled or removed sites) instead of the
        ones given before. Set on the store's thread, so no query runs half with each."""

        def swap() -> None:
            self._held = tuple(sorted(sites))
            marks = ",".join("?" * len(self._held))
            self._not_held = f" AND site NOT IN ({marks})" if self._held else ""

        await self._run(swap)

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._run(self._open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection and stop the worker thread."""
        if self._db is not None:
            await self._run(self._close)
        self._pool.shutdown(wait=True)

    def _open(self) -> None:
        self._db = connect(
            self.path,
            busy_timeout=BUSY_TIMEOUT,
            checkpoints=self.writes != "doors",
            recover=self.recover,
            # The file is checked whole once per start of the agent, by the process that
            # opens it first (the doors', or the only one); not by operator commands.
            check=self.writes == "doors" or (self.writes == "plain" and self.recover),
        )
        # Deleted records and freed pages are zeroed, not left in the file: an erased email
        # (agent/store/privacy.py) must not survive in free space.
        self._db.execute("PRAGMA secure_delete=ON")

    def _close(self) -> None:
        assert self._db is not None
        self._db.close()
        self._db = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, *args)
        except sqlite3.Error as exc:
            self._note(exc)
            raise

    # -- health ---------------------------------------------------------------------------

    def _note(self, exc: BaseException) -> None:
        """Remember a store error that says the file is damaged or cannot take writes."""
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:
            return
        if code & 0xFF in DAMAGE_CODES:
            self._damage = self._damage or (
                f"{self.path} is damaged: SQLite says {exc} ({RECOVERY_DOC})"
            )
        elif code & 0xFF in FAULT_CODES:
            self._fault = (time.monotonic(), f"{self.path}: a write failed: SQLite says {exc}")

    async def health(self) -> str | None:
        """None when the store is sound, else what is wrong: damage any statement met, a
        write that failed in the last FAULT_TTL seconds with none succeeding since, or what a
        read-only probe of the file finds (`schema.probe`, at most every HEALTH_TTL seconds,
        on a connection of its own: it reads the file as it is on disk, and writes nothing)."""
        if self._damage is not None:
            return self._damage
        now = time.monotonic()
        if self._fault is not None and now - self._fault[0] < FAULT_TTL:
            return self._fault[1]
        at, found = self._probed
        if now - at < HEALTH_TTL:
            return found
        if self._probing is None or self._probing.done():
            self._probing = asyncio.create_task(asyncio.to_thread(probe, self.path))
        try:
            found = await asyncio.shield(self._probing)
        except Exception as exc:  # the probe's whole point is to report any failure
            found = f"{type(exc).__name__}: {exc}"
        if found is not None:
            found = f"{self.path}: {found} ({RECOVERY_DOC})"
        self._probed = (time.monotonic(), found)
        return found

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "store is not open"
        return self._db

    def _tx(self, *, sync: bool = True) -> Tx:
        return Tx(self.db, self._pace, sync=sync)

    # -- group commit ---------------------------------------------------------------------

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a write in the next group commit.

        Writes that arrive while a commit is running share the next one (each in its own
        savepoint, so one failing write fails alone): many connections and many finishing Brevo
        calls cost one fsync per round instead of one each.
        """
        result: T = await self._group.run(fn)
        return result

    async def _commit_group(
        self, fns: list[Callable[[sqlite3.Connection], Any]]
    ) -> list[tuple[bool, Any]]:
        outcomes = await self._run(self._apply_writes, fns)
        self._fault = None  # a commit went through: the disk takes writes again
        for ok, value in outcomes:
            if not ok:
                self._note(value)
        return outcomes

    def _apply_writes(
        self, fns: list[Callable[[sqlite3.Connection], Any]]
    ) -> list[tuple[bool, Any]]:
        out: list[tuple[bool, Any]] = []
        with self._tx() as db:
            for fn in fns:
                db.execute("SAVEPOINT w")
                try:
                    out.append((True, fn(db)))
                except Exception as exc:
                    if not db.in_transaction:
                        # SQLite rolled the whole transaction back itself (a full disk, an I/O
                        # error: sqlite.org/lang_transaction.html, "Response To Errors Within A
                        # Transaction"): every write of the group failed with this one.
                        raise
                    db.execute("ROLLBACK TO w")
                    out.append((False, exc))
                db.execute("RELEASE w")
        return out


class Tx:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error.

    The write lock is waited for in BUSY_STEP steps rather than by SQLite's busy handler, so
    a door's commit starts within a fraction of a millisecond of the other process's ending.
    `pace.gap` leaves the lock free that long after this connection's last commit before it
    takes it again. `sync=False` commits without waiting for the disk (`synchronous=NORMAL`,
    for this transaction only): for bookkeeping that a restart redoes anyway, such as claims.
    The WAL is written in order, so the next synced commit makes it durable too.
    """

    def __init__(self, db: sqlite3.Connection, pace: Pace, *, sync: bool = True) -> None:
        self.db = db
        self.pace = pace
        self.sync = sync

    def __enter__(self) -> sqlite3.Connection:
        if self.pace.gap:
            wait = self.pace.last_commit + self.pace.gap - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        if not self.sync:
            self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            begin_immediate(self.db)
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if not self.sync:
                self.db.execute("PRAGMA synchronous=FULL")
            raise
        return self.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.db.execute("COMMIT")
            elif self.db.in_transaction:  # else SQLite rolled it back already (a full disk)
                self.db.execute("ROLLBACK")
        finally:
            if not self.sync:
                self.db.execute("PRAGMA synchronous=FULL")
            if self.pace.gap:
                self.pace.last_commit = time.monotonic()


@dataclass(slots=True)
class Pace:
    """How long a connection leaves the write lock free after its last commit."""

    gap: float
    last_commit: float = 0.0


def begin_immediate(db: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, trying again every BUSY_STEP while another connection writes."""
    db.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                code = getattr(exc, "sqlite_errorcode", None)
                if code is None or code & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                if time.monotonic() >= deadline:
                    raise
            time.sleep(BUSY_STEP)
    finally:
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
