"""The SQLite backend: one file in WAL mode, owned by one thread.

Every method runs on a single worker thread that owns the connection (sqlite3 objects are not
shared across threads), so the asyncio loop never blocks on the disk and a process's writes
never contend with each other. Two processes (the doors and the worker, agent/process/worker.py) share
the file: see `_Tx` for how one waits for the other's write.
Durability: `synchronous=FULL` in WAL mode, so a commit that returned survives a power cut, not
only a kill -9; a door acks only after `ingest` returned. Claims and retries are the exception
(docs/durability.md, "Commits that do not wait for the disk").
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from agent.core.aggregates import OrderFact, aggregate
from agent.core.dedupe import known_after, largest_list_group, minus_known
from agent.core.events import Action, Event, Rejection, Resource
from agent.core.jobs import Intent, Job, Kind, Outcome, canonical, merge_bodies
from agent.core.lifecycle import is_stale
from agent.store.ports import DeadLetter, Decide, IngestResult

__all__ = ["DeadLetter", "Decide", "IngestResult", "Outcome", "SqliteStore"]

T = TypeVar("T")
WriteRole = Literal["plain", "doors", "worker"]

log = logging.getLogger("agent.store")

SCHEMA_VERSION = 1

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
CREATE TABLE IF NOT EXISTS stats (
    site TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (site, name)
);
"""

# Job states.
PENDING, INFLIGHT = 0, 1

# How long a write waits for another process's write transaction before it fails.
BUSY_TIMEOUT = 5.0
# Inbox rows deleted per transaction when old ones are pruned (`prune_inbox`).
PRUNE_BATCH = 100
# How long the worker leaves the write lock free after each of its commits (`_Tx`).
WORKER_GAP = 0.001
# The doors process checkpoints the WAL only past this many pages (40 MB): the worker's commits
# checkpoint it at SQLite's default 1,000; this bounds it while the worker is down.
DOORS_CHECKPOINT_PAGES = 10_000
# How often a waiting write tries again (SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20,
# 25 ms…: a write waiting behind a 30 ms one would wait 33 or 53 ms).
BUSY_STEP = 0.0002
# Inbox states.
NEW, DONE = 0, 1

class SqliteStore:
    """The embedded store. Use as `async with SqliteStore(path) as store:`."""

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
        # writes: "doors" and "worker" for agent/process/worker.py's two processes (`_Tx` for how they
        # share the write lock). The doors leave WAL checkpoints to the worker: a commit that
        # crosses the checkpoint threshold copies the WAL into the database and waits for the
        # disk again before it returns, and a door's ack would wait for that.
        self.writes = writes
        self._pace = _Pace(WORKER_GAP if writes == "worker" else 0.0)
        # recover=False for short-lived tools (`token`, `deadletters` CLIs) that open the file
        # beside a running agent: they must not hand the agent's in-flight jobs back to the queue.
        self.recover = recover
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._db: sqlite3.Connection | None = None
        self.ingested = asyncio.Event()
        self._writes: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> SqliteStore:
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
        if self.writes == "doors":
            db.execute(f"PRAGMA wal_autocheckpoint={DOORS_CHECKPOINT_PAGES}")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(_SCHEMA)
        db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        # A crash leaves claimed jobs claimed: they go back to the queue (at-least-once).
        if self.recover:
            db.execute("UPDATE jobs SET state = ? WHERE state = ?", (PENDING, INFLIGHT))
        self._db = db

    def _close(self) -> None:
        assert self._db is not None
        self._db.close()
        self._db = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "store is not open"
        return self._db

    def _tx(self, *, sync: bool = True) -> _Tx:
        return _Tx(self.db, self._pace, sync=sync)

    # -- doors ----------------------------------------------------------------------------

    async def ingest(
        self,
        site: str,
        events: Sequence[Event],
        rejected: Sequence[tuple[Rejection, object]] = (),
    ) -> IngestResult:
        """Store a batch in one transaction; replays are no-ops. The one entry point of every door."""
        result = await self._write(
            lambda db: self._ingest_one(db, site, events, rejected, time.time())
        )
        if result.new:
            self.ingested.set()
        return result

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a write in the next group commit.

        Writes that arrive while a commit is running share the next one (each in its own
        savepoint, so one failing write fails alone): many connections and many finishing Brevo
        calls cost one fsync per round instead of one each.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writes.append((fn, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_writes(), name="store-writes")
        result: T = await fut
        return result

    async def _flush_writes(self) -> None:
        while self._writes:
            group, self._writes = self._writes, []
            try:
                outcomes = await self._run(self._apply_writes, [fn for fn, _ in group])
            except Exception as exc:  # BEGIN or COMMIT failed: nothing of the group is stored
                for _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), (ok, value) in zip(group, outcomes, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

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
                    db.execute("ROLLBACK TO w")
                    out.append((False, exc))
                db.execute("RELEASE w")
        return out

    def _ingest_one(
        self,
        db: sqlite3.Connection,
        site: str,
        events: Sequence[Event],
        rejected: Sequence[tuple[Rejection, object]],
        now: float,
    ) -> IngestResult:
        new = self._ingest_rows(db, site, events, now)
        for rej, raw in rejected:
            ref = f"{site}:{rej.id}"
            exists = db.execute(
                "SELECT 1 FROM dead_letters WHERE origin='event' AND ref=?", (ref,)
            ).fetchone()
            if rej.id != "?" and exists:
                continue
            db.execute(
                *_dead_letter_insert(
                    site, "event", ref, "event", rej.code, rej.message, _dump_raw(raw), now
                )
            )
        if events:
            self._bump(db, site, "events_in", len(events))
        return IngestResult([e.id for e in events], [r for r, _ in rejected], new)

    def _ingest_rows(
        self, db: sqlite3.Connection, site: str, events: Sequence[Event], now: float
    ) -> int:
        """INSERT OR IGNORE the events; returns how many were new."""
        rows = [
            (
                site,
                e.id,
                e.topic,
                e.resource.value,
                e.action.value,
                e.resource_id,
                e.occurred_at.isoformat() if e.occurred_at else None,
                now,
                e.door.value,
                int(e.historical),
                orjson.dumps(e.payload).decode(),
                orjson.dumps(e.extra).decode(),
            )
            for e in events
        ]
        before = db.total_changes
        db.executemany(
            "INSERT OR IGNORE INTO inbox (site, event_id, topic, resource, action, resource_id,"
            " occurred_at, received_at, door, historical, payload, extra)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        return db.total_changes - before

    # -- processing -----------------------------------------------------------------------

    async def process_pending(
        self,
        limit: int,
        decide: Decide,
        facts: Callable[[str, Event], OrderFact | None],
    ) -> int:
        """Process up to `limit` new inbox rows in order, each in its own transaction.

        `facts(site, event)` returns an order's (email, status, total, created_at) so that
        aggregates include it; `decide(site, event, prior_state, aggregates_for)` is the pure
        pipeline. Returns how many rows were processed.
        """
        return await self._run(self._process_pending, limit, decide, facts)

    def _process_pending(
        self,
        limit: int,
        decide: Decide,
        facts: Callable[[str, Event], OrderFact | None],
    ) -> int:
        rows = self.db.execute(
            "SELECT seq, site, event_id, topic, resource, action, resource_id, occurred_at, door,"
            " historical, payload, extra FROM inbox WHERE state = 0"
            + self._not_held
            + " ORDER BY seq LIMIT ?",
            (*self._held, limit),
        ).fetchall()
        if not rows:
            return 0
        # The pipeline runs outside any transaction, on what is committed plus what the rows
        # before it in this chunk changed (_Chunk); only its writes take the write lock, in
        # one short transaction. Another process (the doors, agent/process/worker.py) commits its
        # batches in between instead of waiting for the whole chunk's pipeline.
        chunk = _Chunk(self.db)
        try:
            for row in rows:
                self._process_row(chunk, row[1], _event_from_row(row), decide, facts)
                chunk.done.append(row[0])
            with self._tx():
                chunk.apply()
        except Exception:
            # Something in this chunk breaks the pipeline: redo it one row per transaction, so
            # the bad row becomes a dead letter and the rows behind it are not blocked.
            log.warning("processing a batch of %d failed; isolating the bad event", len(rows))
            for row in rows:
                self._process_alone(row, decide, facts)
        return len(rows)

    def _process_alone(
        self,
        row: Sequence[Any],
        decide: Decide,
        facts: Callable[[str, Event], OrderFact | None],
    ) -> None:
        seq, site = row[0], row[1]
        try:
            chunk = _Chunk(self.db)
            self._process_row(chunk, site, _event_from_row(row), decide, facts)
            chunk.done.append(seq)
            with self._tx():
                chunk.apply()
        except Exception as exc:
            log.exception("event %s of site %s failed to process", row[2], site)
            with self._tx() as db:
                db.execute(
                    *_dead_letter_insert(
                        site,
                        "event",
                        f"{site}:{row[2]}",
                        row[4],
                        "processing_error",
                        f"{type(exc).__name__}: {exc}",
                        json.dumps({"topic": row[3], "payload": json.loads(row[10])}),
                    )
                )
                db.execute("UPDATE inbox SET state = 1 WHERE seq = ?", (seq,))

    def _process_row(
        self,
        chunk: _Chunk,
        site: str,
        event: Event,
        decide: Decide,
        facts: Callable[[str, Event], OrderFact | None],
    ) -> None:
        key = (site, event.resource.value, event.resource_id)
        prior = chunk.prior(key)
        fact = facts(site, event)
        if event.resource is Resource.ORDER and event.action is Action.DELETED:
            old = chunk.fact(site, event.resource_id)
            if old is not None:
                chunk.set_fact(site, event.resource_id, old._replace(status="trash"))
        if fact is not None and not is_stale(prior, event):
            chunk.set_fact(site, event.resource_id, fact)

        def aggregates(email: str, paid: Collection[str]) -> dict[str, Any]:
            return chunk.aggregates(site, email, paid)

        outcome = decide(site, event, prior, aggregates)
        if outcome.object_state is not None:
            chunk.set_object(key, orjson.dumps(outcome.object_state).decode())
        for intent in outcome.intents:
            chunk.add_intent(outcome.account, site, intent)
        for code, message in outcome.dead:
            chunk.writes.append(
                _dead_letter_insert(
                    site,
                    "event",
                    f"{site}:{event.id}",
                    event.resource.value,
                    code,
                    message,
                    json.dumps({"topic": event.topic, "payload": event.payload}),
                )
            )

    # -- jobs -----------------------------------------------------------------------------

    async def pending_count(self, account: str, kind: Kind, now: float) -> int:
        """Claimable jobs of one kind for one Brevo account."""
        return await self._run(
            lambda: self.db.execute(
                "SELECT COUNT(*) FROM jobs WHERE account=? AND state=0 AND kind=?"
                " AND not_before<=?" + self._not_held,
                (account, kind.value, now, *self._held),
            ).fetchone()[0]
        )

    async def next_due(self, account: str, kind: Kind) -> float | None:
        """The earliest not_before among a kind's pending jobs (to sleep until then)."""
        return await self._run(
            lambda: self.db.execute(
                "SELECT MIN(not_before) FROM jobs WHERE account=? AND state=0 AND kind=?"
                + self._not_held,
                (account, kind.value, *self._held),
            ).fetchone()[0]
        )

    async def claim(
        self,
        account: str,
        kind: Kind,
        limit: int,
        now: float,
        *,
        single: bool | None = None,
        by_lists: bool = False,
    ) -> list[Job]:
        """Claim up to `limit` due jobs of a kind, oldest first, skipping keys already in flight.

        `single`: None any job, False only jobs a batch may carry, True only jobs that must go
        alone (what a failed batch handed back to be found one by one).

        `by_lists` (contacts for `/contacts/import`, which takes one `listIds` for the whole
        file): only the largest group of the due jobs that share their lists, or, when that
        group has no list (import needs one), its first job alone. The others are not claimed,
        so they are neither read in full nor handed back.
        """
        return await self._run(self._claim, account, kind, limit, now, single, by_lists)

    def _claim(
        self,
        account: str,
        kind: Kind,
        limit: int,
        now: float,
        single: bool | None,
        by_lists: bool,
    ) -> list[Job]:
        extra = ""
        if single is not None:
            extra = f" AND single_only = {int(single)}"
        # The oldest first by the queue's index (not a sort of every due job), and the keys in
        # flight from their own small index.
        where = (
            " FROM jobs INDEXED BY jobs_queue"
            " WHERE account=? AND kind=? AND state=0 AND not_before<=?"
            + extra
            + self._not_held
            + " AND key NOT IN (SELECT key FROM jobs INDEXED BY jobs_inflight"
            " WHERE account=? AND state=1)"
            " ORDER BY id LIMIT ?"
        )
        args = (account, kind.value, now, *self._held, account, limit)
        # Not synced: a claim only marks jobs in flight, and a restart puts every claimed job
        # back in the queue anyway (at-least-once). The lock is held for the statements only;
        # the bodies are decoded after the commit.
        with self._tx(sync=False) as db:
            if by_lists:
                ids = largest_list_group(
                    db.execute("SELECT id, key, json_extract(body, '$.listIds')" + where, args)
                )
                rows = db.execute(
                    "SELECT id, site, key, body, historical, attempts, single_only FROM jobs"
                    " WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
                    (orjson.dumps(ids).decode(),),
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT id, site, key, body, historical, attempts, single_only" + where, args
                ).fetchall()
            seen: set[str] = set()
            taken = []
            for r in rows:
                if r[2] in seen and kind is not Kind.EVENT:
                    continue  # two jobs for one key never fly together: order matters
                seen.add(r[2])
                taken.append(r)
            db.executemany("UPDATE jobs SET state=1 WHERE id=?", [(r[0],) for r in taken])
        return [
            Job(r[0], account, r[1], kind, r[2], json.loads(r[3]), bool(r[4]), r[5], bool(r[6]))
            for r in taken
        ]

    async def unclaim(self, account: str) -> None:
        """Put every claimed job of an account back in the queue (on shutdown)."""

        def run() -> None:
            with self._tx() as db:
                db.execute("UPDATE jobs SET state=0 WHERE account=? AND state=1", (account,))

        await self._run(run)

    async def complete(self, jobs: Iterable[Job]) -> None:
        """Brevo took these: forget the jobs, remember what Brevo now holds."""
        done = list(jobs)
        await self._write(lambda db: self._complete(db, done))

    def _complete(self, db: sqlite3.Connection, jobs: list[Job]) -> None:
        if not jobs:
            return
        now = time.time()
        # One read of what Brevo held, then the writes in bulk: this runs under the write lock.
        known: dict[tuple[str, str], Any] = {}
        for account in {j.account for j in jobs}:
            keys = orjson.dumps([j.key for j in jobs if j.account == account]).decode()
            for key, state in db.execute(
                "SELECT key, state FROM forwarded WHERE account=? AND key IN"
                " (SELECT value FROM json_each(?))",
                (account, keys),
            ):
                known[(account, key)] = json.loads(state)
        for job in jobs:  # in order: two event jobs may share a key
            k = (job.account, job.key)
            known[k] = known_after(job.kind, job.body, known.get(k))
        done = Counter((j.site, f"brevo_done_{j.kind.value}") for j in jobs)
        db.executemany("DELETE FROM jobs WHERE id=?", [(j.id,) for j in jobs])
        db.executemany(
            "INSERT INTO forwarded (account, key, state, updated_at) VALUES (?,?,?,?)"
            " ON CONFLICT (account, key) DO UPDATE SET state=excluded.state,"
            " updated_at=excluded.updated_at",
            [(a, key, json.dumps(state), now) for (a, key), state in known.items()],
        )
        for (site, name), n in done.items():
            self._bump(db, site, name, n)
        for site in {j.site for j in jobs}:
            self._stat(db, site, "last_success", now)

    async def retry(
        self,
        jobs: Iterable[Job],
        not_before: float,
        error: str,
        *,
        single_only: bool = False,
        count_attempt: bool = True,
    ) -> None:
        """Put jobs back in the queue, due at `not_before`."""
        again = list(jobs)

        def run() -> None:
            # Not synced, like a claim: a power cut that undoes it leaves the jobs claimed,
            # and a restart puts claimed jobs back in the queue.
            with self._tx(sync=False) as db:
                self._retry(db, again, not_before, error, single_only, count_attempt)

        await self._run(run)

    def _retry(
        self,
        db: sqlite3.Connection,
        jobs: list[Job],
        not_before: float,
        error: str,
        single_only: bool,
        count_attempt: bool,
    ) -> None:
        db.executemany(
            "UPDATE jobs SET state=0, not_before=?, attempts=attempts+?, last_error=?,"
            " single_only=MAX(single_only, ?) WHERE id=?",
            [(not_before, int(count_attempt), error[:500], int(single_only), j.id) for j in jobs],
        )

    async def dead_letter(self, job: Job, code: str, message: str) -> None:
        """Brevo refused this write for good: keep it, with Brevo's code and message."""
        await self._write(lambda db: self._dead_letter(db, job, code, message))

    def _dead_letter(self, db: sqlite3.Connection, job: Job, code: str, message: str) -> None:
        db.execute("DELETE FROM jobs WHERE id=?", (job.id,))
        db.execute(
            *_dead_letter_insert(
                job.site,
                "job",
                job.key,
                job.kind.value,
                code,
                message,
                json.dumps({"body": job.body, "historical": job.historical}),
                account=job.account,
            )
        )
        self._bump(db, job.site, "dead_letters", 1)

    # -- dead letters ---------------------------------------------------------------------

    async def dead_letters(self, state: str = "open", site: str | None = None) -> list[DeadLetter]:
        """Kept failures, oldest first."""
        return await self._run(self._dead_letters, state, site)

    def _dead_letters(self, state: str, site: str | None) -> list[DeadLetter]:
        sql = "SELECT id, site, origin, ref, kind, account, code, message, body, created_at, state FROM dead_letters WHERE state=?"
        args: list[Any] = [state]
        if site:
            sql += " AND site=?"
            args.append(site)
        rows = self.db.execute(sql + " ORDER BY id", args).fetchall()
        return [
            DeadLetter(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]), r[9], r[10]
            )
            for r in rows
        ]

    async def retry_dead_letters(
        self, ids: Sequence[int] | None, reparse: Callable[[Any], Event | None]
    ) -> tuple[int, list[str]]:
        """Send dead letters again: jobs go back to the queue, events back to the inbox.

        `reparse(raw)` turns an event refused at a door into an Event (None: still invalid).
        Returns how many went back, and why the others could not.
        """
        return await self._run(self._retry_dead, ids, reparse)

    def _retry_dead(
        self, ids: Sequence[int] | None, reparse: Callable[[Any], Event | None]
    ) -> tuple[int, list[str]]:
        rows = self._dead_letters("open", None)
        if ids is not None:
            wanted = set(ids)
            rows = [r for r in rows if r.id in wanted]
        now = time.time()
        done, problems = 0, []
        with self._tx() as db:
            for r in rows:
                if r.origin == "job" and r.account:
                    db.execute(
                        "INSERT INTO jobs (account, site, kind, key, body, historical, created_at, single_only)"
                        " VALUES (?,?,?,?,?,?,?,1)",
                        (
                            r.account,
                            r.site,
                            r.kind,
                            r.ref,
                            canonical(r.body["body"]),
                            int(r.body.get("historical", False)),
                            now,
                        ),
                    )
                else:
                    event_id = r.ref.split(":", 1)[1] if ":" in r.ref else r.ref
                    back = db.execute(
                        "UPDATE inbox SET state=0 WHERE site=? AND event_id=?", (r.site, event_id)
                    ).rowcount
                    if not back:
                        event = reparse(r.body)
                        if event is None:
                            problems.append(
                                f"dead letter {r.id}: the event is still invalid ({r.message})"
                            )
                            continue
                        self._ingest_rows(db, r.site, [event], now)
                db.execute("UPDATE dead_letters SET state='retried' WHERE id=?", (r.id,))
                done += 1
        if done:
            self.ingested.set()
        return done, problems

    async def drop_dead_letters(self, ids: Sequence[int] | None) -> int:
        """Mark dead letters as dropped (kept for the record, never resent)."""

        def run() -> int:
            with self._tx() as db:
                if ids is None:
                    return db.execute(
                        "UPDATE dead_letters SET state='dropped' WHERE state='open'"
                    ).rowcount
                return sum(
                    db.execute(
                        "UPDATE dead_letters SET state='dropped' WHERE id=? AND state='open'", (i,)
                    ).rowcount
                    for i in ids
                )

        return await self._run(run)

    # -- small state ----------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        """A value from the key/value table."""
        row = await self._run(
            lambda: self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        )
        return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str) -> None:
        """Set a value in the key/value table."""

        def run() -> None:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                    (key, value),
                )

        await self._run(run)

    async def meta_items(self, prefix: str) -> dict[str, str]:
        """Every key/value of the key/value table whose key starts with `prefix`."""

        def run() -> dict[str, str]:
            rows = self.db.execute(
                "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix),
            ).fetchall()
            return {str(k): str(v) for k, v in rows}

        return await self._run(run)

    async def get_watermark(self, site: str, name: str) -> str | None:
        """A polling watermark."""
        row = await self._run(
            lambda: self.db.execute(
                "SELECT value FROM watermarks WHERE site=? AND name=?", (site, name)
            ).fetchone()
        )
        return None if row is None else str(row[0])

    async def set_watermark(self, site: str, name: str, value: str) -> None:
        """Move a polling watermark."""

        def run() -> None:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO watermarks (site, name, value) VALUES (?,?,?)"
                    " ON CONFLICT (site, name) DO UPDATE SET value=excluded.value",
                    (site, name, value),
                )

        await self._run(run)

    async def object_versions(
        self, site: str, resource: str
    ) -> dict[int, tuple[str, bool, str | None]]:
        """Every object of a resource the pipeline has seen: id → (date_modified_gmt, deleted,
        order status or None). The poller compares these with the store's listings (customer
        scan, id reconciliation)."""

        def run() -> dict[int, tuple[str, bool, str | None]]:
            rows = self.db.execute(
                "SELECT resource_id, json_extract(state, '$.version'),"
                " json_extract(state, '$.deleted'), json_extract(state, '$.status')"
                " FROM objects WHERE site=? AND resource=?",
                (site, resource),
            ).fetchall()
            return {
                int(r[0]): (str(r[1] or ""), bool(r[2]), None if r[3] is None else str(r[3]))
                for r in rows
            }

        return await self._run(run)

    async def last_received(self, site: str, door: str) -> float | None:
        """When an event last arrived through a door (stored time), or None."""
        row = await self._run(
            lambda: self.db.execute(
                "SELECT MAX(at) FROM (SELECT MAX(received_at) AS at FROM inbox"
                " WHERE site=? AND door=? UNION ALL SELECT value FROM stats WHERE site=?"
                " AND name=?)",
                (site, door, site, f"last_received_{door}"),
            ).fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    # -- retention ------------------------------------------------------------------------

    async def prune_inbox(self, before: float, *, batch: int = PRUNE_BATCH) -> int:
        """Delete processed inbox rows stored before `before` (epoch seconds), oldest first.

        Each transaction deletes at most `batch` rows, so the write lock is never held long
        (the doors' acks wait for it). Rows not yet processed are kept, whatever their age.
        Returns how many rows were deleted.
        """
        cutoff = await self._run(self._last_seq_before, before)
        total = 0
        while cutoff is not None:
            n = await self._run(self._prune_some, cutoff, before, batch)
            total += n
            if n < batch:
                break
        return total

    def _prune_some(self, cutoff: int, before: float, batch: int) -> int:
        # Bookkeeping a restart redoes (the rows are deleted again): no wait for the disk.
        with self._tx(sync=False) as db:
            rows = db.execute(
                "SELECT seq, site, door, received_at FROM inbox"
                " WHERE seq <= ? AND state = 1 AND received_at < ? ORDER BY seq LIMIT ?",
                (cutoff, before, batch),
            ).fetchall()
            latest: dict[tuple[str, str], float] = {}
            for _, site, door, at in rows:
                latest[(site, door)] = max(latest.get((site, door), 0.0), at)
            # `last_received` still knows a door's last event once its row is gone
            for (site, door), at in latest.items():
                db.execute(
                    "INSERT INTO stats (site, name, value) VALUES (?,?,?) ON CONFLICT (site, name)"
                    " DO UPDATE SET value=max(value, excluded.value)",
                    (site, f"last_received_{door}", at),
                )
            db.executemany("DELETE FROM inbox WHERE seq = ?", [(r[0],) for r in rows])
        return len(rows)

    def _last_seq_before(self, before: float) -> int | None:
        """The last inbox seq stored before `before`, found by bisection on seq (rows are
        stored in time order, give or take the moment two processes' commits cross: the
        delete checks each row's time itself). Reads only; None when no row is that old."""
        db = self.db
        lo, hi = db.execute("SELECT MIN(seq), MAX(seq) FROM inbox").fetchone()
        if lo is None:
            return None

        def first_from(seq: int) -> tuple[int, float]:
            row = db.execute(
                "SELECT seq, received_at FROM inbox WHERE seq >= ? ORDER BY seq LIMIT 1", (seq,)
            ).fetchone()
            return (seq, math.inf) if row is None else (int(row[0]), float(row[1]))

        if first_from(lo)[1] >= before:
            return None
        while lo < hi:  # invariant: the row at `lo` was stored before `before`
            mid = (lo + hi + 1) // 2
            seq, at = first_from(mid)
            if at < before:
                lo = min(seq, hi)
            else:
                hi = mid - 1
        return int(lo)

    async def status(self) -> dict[str, dict[str, Any]]:
        """Per site: inbox depth, pending jobs, open dead letters, last success, counters."""
        return await self._run(self._status)

    def _status(self) -> dict[str, dict[str, Any]]:
        db = self.db
        out: dict[str, dict[str, Any]] = {}

        def site(s: str) -> dict[str, Any]:
            return out.setdefault(
                s, {"inbox_depth": 0, "pending_jobs": 0, "dead_letters": 0, "last_success": None}
            )

        for s, n in db.execute("SELECT site, COUNT(*) FROM inbox WHERE state=0 GROUP BY site"):
            site(s)["inbox_depth"] = n
        for s, n in db.execute("SELECT site, COUNT(*) FROM jobs GROUP BY site"):
            site(s)["pending_jobs"] = n
        for s, n in db.execute(
            "SELECT site, COUNT(*) FROM dead_letters WHERE state='open' GROUP BY site"
        ):
            site(s)["dead_letters"] = n
        for s, name, v in db.execute("SELECT site, name, value FROM stats"):
            site(s)[name] = v
        return out

    async def counts(self) -> dict[str, int]:
        """Whole-store totals (for tests and `status`); what waits for held sites is counted
        apart (`held`), since nothing will process or send it."""

        def run() -> dict[str, int]:
            db = self.db
            held = self._held
            marks = ",".join("?" * len(held))

            def count(sql: str, *args: Any) -> int:
                return int(db.execute(sql, args).fetchone()[0])

            return {
                "inbox": count("SELECT COUNT(*) FROM inbox"),
                "inbox_pending": count(
                    "SELECT COUNT(*) FROM inbox WHERE state=0" + self._not_held, *held
                ),
                "jobs": count("SELECT COUNT(*) FROM jobs WHERE 1" + self._not_held, *held),
                "held": sum(
                    count(f"SELECT COUNT(*) FROM {table} WHERE {where}site IN ({marks})", *held)
                    for table, where in (("inbox", "state=0 AND "), ("jobs", ""))
                )
                if held
                else 0,
                "dead_letters": count("SELECT COUNT(*) FROM dead_letters WHERE state='open'"),
            }

        return await self._run(run)

    def _bump(self, db: sqlite3.Connection, site: str, name: str, n: float) -> None:
        db.execute(
            "INSERT INTO stats (site, name, value) VALUES (?,?,?) ON CONFLICT (site, name)"
            " DO UPDATE SET value=value+excluded.value",
            (site, name, n),
        )

    def _stat(self, db: sqlite3.Connection, site: str, name: str, v: float) -> None:
        db.execute(
            "INSERT INTO stats (site, name, value) VALUES (?,?,?) ON CONFLICT (site, name)"
            " DO UPDATE SET value=excluded.value",
            (site, name, v),
        )


class _Tx:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error.

    The write lock is waited for in BUSY_STEP steps rather than by SQLite's busy handler, so
    a door's commit starts within a fraction of a millisecond of the other process's ending.
    `pace.gap` leaves the lock free that long after this connection's last commit before it
    takes it again. `sync=False` commits without waiting for the disk (`synchronous=NORMAL`,
    for this transaction only): for bookkeeping that a restart redoes anyway, such as claims.
    The WAL is written in order, so the next synced commit makes it durable too.
    """

    def __init__(self, db: sqlite3.Connection, pace: _Pace, *, sync: bool = True) -> None:
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
            _begin_immediate(self.db)
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
            else:
                self.db.execute("ROLLBACK")
        finally:
            if not self.sync:
                self.db.execute("PRAGMA synchronous=FULL")
            if self.pace.gap:
                self.pace.last_commit = time.monotonic()


@dataclass(slots=True)
class _Pace:
    gap: float
    last_commit: float = 0.0


def _begin_immediate(db: sqlite3.Connection) -> None:
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


def _dead_letter_insert(
    site: str,
    origin: Literal["event", "job"],
    ref: str,
    kind: str,
    code: str,
    message: str,
    body: str,
    now: float | None = None,
    *,
    account: str | None = None,
) -> tuple[str, tuple[Any, ...]]:
    """The one INSERT of a dead letter, as (sql, parameters); the message is cut at 2,000."""
    return (
        "INSERT INTO dead_letters (site, origin, ref, kind, account, code, message, body,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            site,
            origin,
            ref,
            kind,
            account,
            code,
            message[:2000],
            body,
            time.time() if now is None else now,
        ),
    )


def _dump_raw(raw: object) -> str:
    try:
        return json.dumps(raw)
    except (TypeError, ValueError):
        return json.dumps(repr(raw))


def _event_from_row(row: Sequence[Any]) -> Event:
    from agent.core.events import Action, Door, EventId, Resource
    from agent.core.times import parse_time

    return Event(
        id=EventId(row[2]),
        topic=row[3],
        resource=Resource(row[4]),
        action=Action(row[5]),
        resource_id=row[6],
        occurred_at=parse_time(row[7]),
        door=Door(row[8]),
        historical=bool(row[9]),
        payload=orjson.loads(row[10]),
        extra=orjson.loads(row[11]),
    )


@dataclass(slots=True)
class _PendingJob:
    """A queued job as a chunk leaves it: new (id None) or a pending one it merged into."""

    id: int | None
    account: str
    site: str
    kind: Kind
    key: str
    body: dict[str, Any]
    historical: bool
    written: bool = False  # already in `_Chunk.writes`


class _Chunk:
    """The state a chunk of inbox rows reads and writes while the pipeline runs on it.

    Reads see the committed state overlaid with what the chunk's earlier rows wrote; writes
    are kept, in order, and `apply()` runs them in one transaction. Processing is the only
    writer of objects, order facts and pending jobs' bodies, and a chunk is planned and
    applied in one call on the store's thread, so nothing else changes them in between.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.objects: dict[tuple[str, str, int], str] = {}
        self.facts: dict[tuple[str, int], OrderFact] = {}
        self.jobs: dict[tuple[str, str], _PendingJob] = {}
        self.writes: list[tuple[str, tuple[Any, ...]] | _PendingJob] = []
        self.done: list[int] = []

    # -- reads ----------------------------------------------------------------------------

    def prior(self, key: tuple[str, str, int]) -> dict[str, Any] | None:
        """An object's last processed state."""
        state = self.objects.get(key)
        if state is None:
            row = self.db.execute(
                "SELECT state FROM objects WHERE site=? AND resource=? AND resource_id=?", key
            ).fetchone()
            state = row[0] if row else None
        return orjson.loads(state) if state is not None else None

    def fact(self, site: str, order_id: int) -> OrderFact | None:
        """An order's (email, status, total, created_at)."""
        if (site, order_id) in self.facts:
            return self.facts[(site, order_id)]
        row = self.db.execute(
            "SELECT email, status, total, created_at FROM order_facts WHERE site=? AND order_id=?",
            (site, order_id),
        ).fetchone()
        return OrderFact(*row) if row else None

    def aggregates(self, site: str, email: str, paid: Collection[str]) -> dict[str, Any]:
        """The email's aggregates (agent/core/aggregates.py) over its committed order facts
        and those this chunk changed."""
        mine = [oid for (s, oid) in self.facts if s == site]
        skip = f" AND order_id NOT IN ({','.join('?' * len(mine))})" if mine else ""
        rows = self.db.execute(
            "SELECT email, status, total, created_at FROM order_facts"
            f" WHERE site=? AND email=?{skip}",
            (site, email, *mine),
        ).fetchall()
        facts = [OrderFact(*row) for row in rows]
        facts += [f for (s, _), f in self.facts.items() if s == site and f.email == email]
        return aggregate(facts, paid)

    # -- writes ---------------------------------------------------------------------------

    def set_object(self, key: tuple[str, str, int], state: str) -> None:
        self.objects[key] = state
        self.writes.append(
            (
                "INSERT INTO objects (site, resource, resource_id, state) VALUES (?,?,?,?)"
                " ON CONFLICT (site, resource, resource_id) DO UPDATE SET state=excluded.state",
                (*key, state),
            )
        )

    def set_fact(self, site: str, order_id: int, fact: OrderFact) -> None:
        self.facts[(site, order_id)] = fact
        self.writes.append(
            (
                "INSERT INTO order_facts (site, order_id, email, status, total, created_at)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (site, order_id) DO UPDATE SET"
                " email=excluded.email, status=excluded.status, total=excluded.total,"
                " created_at=excluded.created_at",
                (site, order_id, *fact),
            )
        )

    def add_intent(self, account: str, site: str, intent: Intent) -> None:
        """Queue an intent unless Brevo already holds it; coalesce with a pending one for the key.

        "Brevo holds it" is judged against the `forwarded` state only when no job for the key
        is queued or in flight: otherwise Brevo is about to hold something else, and an intent
        that goes back to what `forwarded` says (an order on-hold, then processing again) must
        still be sent, whole, or the queued job would have the last word.
        """
        if intent.kind is Kind.EVENT:  # one job per event: nothing to coalesce with
            event = minus_known(intent.kind, intent.body, self._known(account, intent.key))
            if event is not None:
                self._new_job(account, site, intent, event)
            return
        pending = self.jobs.get((account, intent.key))
        in_flight = False
        if pending is None:
            # the newest pending job for the key, else whether one is in flight (one lookup)
            row = self.db.execute(
                "SELECT id, body, historical, state FROM jobs WHERE account=? AND key=?"
                " ORDER BY state, id DESC LIMIT 1",
                (account, intent.key),
            ).fetchone()
            if row is not None and row[3] == PENDING:
                pending = _PendingJob(
                    row[0], account, site, intent.kind, intent.key, json.loads(row[1]),
                    bool(row[2]),
                )  # fmt: skip
                self.jobs[(account, intent.key)] = pending
            in_flight = row is not None and row[3] == INFLIGHT
        if pending is not None:
            pending.body = merge_bodies(intent.kind, pending.body, intent.body)
            pending.historical = pending.historical and intent.historical
            if not pending.written:
                pending.written = True
                self.writes.append(pending)
            return
        body = intent.body
        if not in_flight:
            unknown = minus_known(intent.kind, intent.body, self._known(account, intent.key))
            if unknown is None:
                return
            body = unknown
        self.jobs[(account, intent.key)] = self._new_job(account, site, intent, body)

    def _new_job(
        self, account: str, site: str, intent: Intent, body: dict[str, Any]
    ) -> _PendingJob:
        job = _PendingJob(
            None, account, site, intent.kind, intent.key, body, intent.historical, written=True
        )
        self.writes.append(job)
        return job

    def _known(self, account: str, key: str) -> Any:
        """What Brevo holds for a key, as the last completed job left it (None: nothing)."""
        row = self.db.execute(
            "SELECT state FROM forwarded WHERE account=? AND key=?", (account, key)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def apply(self) -> None:
        """Run the chunk's writes, in order, in the caller's transaction."""
        db = self.db
        now = time.time()
        for write in self.writes:
            if not isinstance(write, _PendingJob):
                db.execute(*write)
            elif write.id is not None:
                db.execute(
                    "UPDATE jobs SET body=?, historical=? WHERE id=?",
                    (canonical(write.body), int(write.historical), write.id),
                )
            else:
                db.execute(
                    "INSERT INTO jobs (account, site, kind, key, body, historical, created_at)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (
                        write.account,
                        write.site,
                        write.kind.value,
                        write.key,
                        canonical(write.body),
                        int(write.historical),
                        now,
                    ),
                )
        db.executemany("UPDATE inbox SET state = 1 WHERE seq = ?", [(s,) for s in self.done])
