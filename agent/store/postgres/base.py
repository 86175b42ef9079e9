"""The PostgreSQL store's connections, its group commit, its health and its held sites.

Two connections per store, each opened and closed by the store: one for reads (autocommit,
each statement sees what is committed) and one for writes, where the writes that arrive while
a commit runs share the next transaction, each in its own savepoint (the SQLite store's group
commit, agent/store/group.py): a door's ack costs a share of one commit, and one failing write
fails alone. PostgreSQL's `synchronous_commit=on` (its default) makes a commit that returned
survive a crash of the server. A part of the store whose short transactions must not wait
behind a group commit (the forwarders' claims, the shared rate budgets) names a side
connection of its own (`PgBase._wants_side`), opened and closed with the other two.

Several replicas' group commits run at once on one database, each a mix of writes that lock
rows (a site's stats, an account's forwarded records). Each write names the advisory locks
that cover the rows it changes (`site_lock`, `account_lock`, PROCESS_LOCK); a group takes the
union of its writes' locks first, in one global order, before any write runs, so two groups
never wait for each other in a cycle. Should PostgreSQL still abort a group (a deadlock with a
transaction outside the group commit, 40P01, or a serialization failure, 40001), the whole
group runs again, a few times, after a random pause, rather than fail its writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any, Self

import psycopg

from agent.errors import AgentError
from agent.store.group import GroupCommit, Outcome
from agent.store.postgres.dsn import masked, shown
from agent.store.postgres.schema import SCHEMA_VERSION, migrate, schema_version

__all__ = ["PROCESS_LOCK", "Conn", "PgBase", "account_lock", "pg", "site_lock"]

log = logging.getLogger("agent.store")

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
Write = Callable[[Conn], Awaitable[Any]]

# How long a probe of the server (`health`, /readyz) is taken as still true.
HEALTH_TTL = 5.0
# How long the probe waits for the server.
PROBE_TIMEOUT = 2.0
# How long opening a connection waits for the server.
CONNECT_TIMEOUT = 10
# pg_advisory_xact_lock's key for a processing pass or a cart timer pass ("woobproc"),
# taken by a purge too (agent/store/postgres/processing.py, privacy.py).
PROCESS_LOCK = 0x776F6F6270726F63
# Times a group commit runs when PostgreSQL aborts it (deadlock, serialization failure), and
# the longest pause before the first run again (doubled each time, random below it).
GROUP_TRIES = 5
GROUP_PAUSE = 0.05
# The SQLSTATEs of a transaction PostgreSQL aborted that runs fine again.
_RUN_AGAIN = frozenset({"40P01", "40001"})
# Take advisory locks in the order given (volatile functions are computed after the sort).
_LOCK_IN_ORDER = (
    "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(k, n)"
    " ORDER BY n"
)


def _lock_key(*parts: str) -> int:
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def site_lock(site: str) -> int:
    """The advisory lock over a site's rows the group commit changes (its stats, its inbox,
    its dead letters)."""
    return _lock_key("site", site)


def account_lock(account: str) -> int:
    """The advisory lock over a Brevo account's forwarded records, consent and suppressions."""
    return _lock_key("account", account)


def lock_order(locks: Collection[int]) -> list[int]:
    """The one order every group takes its locks in: PROCESS_LOCK first (a purge waits for a
    processing pass holding nothing else), then by key."""
    return sorted(set(locks), key=lambda k: (k != PROCESS_LOCK, k))


def pg(sql: str) -> bytes:
    """SQL written for sqlite3's `?` placeholders (agent/store/rows.py, shared by both
    backends) as psycopg takes it (`%s`), SQLite's `instr(` as PostgreSQL's `strpos(` (same
    arguments, same result). The shared statements hold no `?` nor `%` of their own."""
    return sql.replace("%", "%%").replace("?", "%s").replace("instr(", "strpos(").encode()


class PgBase:
    """What every part of the PostgreSQL store builds on. Use as `async with`.

    `migrate=False` refuses a database that lacks migrations instead of applying them (the
    operator runs `woobrevo-agent store migrate`); a database migrated by a newer agent is
    refused either way.
    """

    def __init__(self, dsn: str, *, held_sites: Collection[str] = (), migrate: bool = True) -> None:
        self._dsn = dsn
        self.where = shown(dsn)
        self._migrate = migrate
        # Sites switched off in the config: their stored events wait, kept (tx.py StoreBase).
        self._held: list[str] = sorted(held_sites)
        self._read: Conn | None = None
        self._writer: Conn | None = None
        # Side connections by name (None until opened), each with its lock: one transaction
        # at a time on a connection.
        self._sides: dict[str, Conn | None] = {}
        self._side_locks: dict[str, asyncio.Lock] = {}
        self.ingested = asyncio.Event()
        self._group: GroupCommit[tuple[Write, Collection[int]]] = GroupCommit(
            self._commit, self._failed, "pg-store-writes"
        )
        self._probed: tuple[float, str | None] = (float("-inf"), None)
        self._fault: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r})"

    async def hold(self, sites: Collection[str]) -> None:
        """Hold these sites from now on instead of the ones given before."""
        self._held = sorted(sites)

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._read = await self._connect()
        try:
            if self._migrate:
                await migrate(self._read, self.where)
            else:
                await self._check_version(self._read)
            self._writer = await self._connect()
            for name in self._sides:
                self._sides[name] = await self._connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Wait for the writes queued, then close every connection."""
        await self._group.drained()
        for conn in (self._read, self._writer, *self._sides.values()):
            if conn is not None and not conn.closed:
                await conn.close()
        self._read = self._writer = None
        self._sides = dict.fromkeys(self._sides)

    async def _connect(self) -> Conn:
        try:
            return await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            )
        except psycopg.Error as exc:
            raise AgentError(
                f"cannot connect to the PostgreSQL store {self.where}:"
                f" {masked(str(exc).strip(), self._dsn)}; check agent.store's address, the"
                " server, and the user's password and rights (docs/postgresql.md)"
            ) from None

    async def _check_version(self, db: Conn) -> None:
        found = await schema_version(db)
        if found != SCHEMA_VERSION:
            newer = found > SCHEMA_VERSION
            raise AgentError(
                f"the PostgreSQL store {self.where} is at schema {found}, this agent's is"
                f" {SCHEMA_VERSION}: "
                + (
                    "a newer agent migrated it; run that agent again"
                    if newer
                    else "run `woobrevo-agent store migrate --config FILE` first"
                )
            )

    def _wants_side(self, name: str) -> None:
        """Open a side connection `name` with the store (call from `__init__`): autocommit,
        used only through `_side_tx`."""
        self._sides[name] = None
        self._side_locks[name] = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def _side_tx(self, name: str) -> AsyncIterator[Conn]:
        """A transaction on the side connection `name`, one at a time, that does not wait for
        the disk (`synchronous_commit = off`: for bookkeeping a lost commit costs little, as
        SQLite's `Tx(sync=False)`); a driver's error comes out with the password masked."""
        db = self._sides[name]
        assert db is not None, "store is not open"
        async with self._side_locks[name]:
            try:
                async with db.transaction():
                    await db.execute("SET LOCAL synchronous_commit = off")
                    yield db
            except Exception as exc:
                raise _clean(exc, self._dsn) from None

    @property
    def db(self) -> Conn:
        """The read connection (autocommit: each statement sees what is committed)."""
        assert self._read is not None, "store is not open"
        return self._read

    # -- health ---------------------------------------------------------------------------

    async def health(self) -> str | None:
        """None when the server answers, else what is wrong (a failed commit, or a probe
        that failed or timed out; probed at most every HEALTH_TTL seconds)."""
        if self._fault is not None:
            return self._fault
        now = time.monotonic()
        at, found = self._probed
        if now - at < HEALTH_TTL:
            return found
        found = None
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self.db.execute("SELECT 1")
        except TimeoutError:
            found = f"{self.where}: the server did not answer within {PROBE_TIMEOUT:g}s"
        except (psycopg.Error, AssertionError) as exc:
            found = f"{self.where}: {masked(str(exc).strip(), self._dsn)}"
        self._probed = (time.monotonic(), found)
        return found

    # -- group commit ---------------------------------------------------------------------

    async def _write(self, fn: Write, locks: Collection[int] = ()) -> Any:
        """Run a write in the next group commit, which takes `locks` (advisory lock keys over
        the rows `fn` changes) before any of its writes (see the module's docstring)."""
        return await self._group.run((fn, locks))

    def _failed(self, exc: Exception) -> Exception:
        """BEGIN or COMMIT failed: nothing of the group is stored, the store is unhealthy."""
        self._fault = f"{self.where}: a commit failed: {masked(str(exc), self._dsn)}"
        return _clean(exc, self._dsn)

    async def _commit(self, group: list[tuple[Write, Collection[int]]]) -> list[Outcome]:
        """The group's outcomes, committed with the union of its locks: healthy again."""
        fns = [fn for fn, _ in group]
        out = await self._commit_group(fns, lock_order([k for _, keys in group for k in keys]))
        self._fault = None
        return out

    async def _commit_group(self, fns: list[Write], locks: list[int]) -> list[Outcome]:
        """Run the group in one transaction; again when PostgreSQL aborted it (said once)."""
        for attempt in range(1, GROUP_TRIES):
            try:
                return await self._apply_writes(fns, locks)
            except psycopg.Error as exc:
                if exc.sqlstate not in _RUN_AGAIN:
                    raise
                if attempt == 1:
                    log.warning(
                        "%s: PostgreSQL aborted a group commit of %d writes (%s, %s);"
                        " running it again",
                        self.where,
                        len(fns),
                        exc.sqlstate,
                        type(exc).__name__,
                    )
            await asyncio.sleep(random.uniform(0, GROUP_PAUSE * 2**attempt))
        return await self._apply_writes(fns, locks)

    async def _apply_writes(self, fns: list[Write], locks: list[int]) -> list[Outcome]:
        db = self._writer
        if db is None:
            raise AgentError(f"the PostgreSQL store {self.where} is closed")
        out: list[Outcome] = []
        async with db.transaction():
            if locks:
                await db.execute(_LOCK_IN_ORDER, (locks,))
            for fn in fns:
                try:
                    async with db.transaction():  # a savepoint: this write fails alone
                        out.append((True, await fn(db)))
                except psycopg.OperationalError:
                    raise  # the connection or the server failed: the whole group with it
                except Exception as exc:
                    out.append((False, _clean(exc, self._dsn)))
        return out


def _clean(exc: Exception, dsn: str) -> Exception:
    """The exception to hand a caller: a driver's, with the password masked out of its text."""
    if isinstance(exc, psycopg.Error):
        text = str(exc)
        clean = masked(text, dsn)
        if clean != text:
            return AgentError(clean)
    return exc
