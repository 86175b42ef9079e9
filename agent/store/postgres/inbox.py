"""The inbox on PostgreSQL: what the doors store, in one transaction per batch, shared with
the batches that arrive meanwhile (base.py's group commit).

The rules are the SQLite store's (agent/store/rows.py `event_row`, `rejection_letter`,
agent/store/inbox.py `store_refused`): the same row for an event, the same dead letter for a
rejection, the same refusal of one event the database cannot hold while the others go in.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg

from agent.core.events import Event, Rejection
from agent.store.inbox import store_refused
from agent.store.ports import IngestResult
from agent.store.postgres.base import Conn, PgBase, pg, site_lock
from agent.store.postgres.channels import INBOX_CHANNEL
from agent.store.rows import BUMP, event_row, rejection_letter

__all__ = ["InboxMixin"]

_INSERT_EVENT = (
    "INSERT INTO inbox (site, event_id, topic, resource, action, resource_id, occurred_at,"
    " received_at, door, historical, payload, extra)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (site, event_id) DO NOTHING"
)
# What one row can make PostgreSQL refuse while the others go in: a value it cannot hold (an
# integer past 64 bits, a NUL character in text) or psycopg cannot send (a lone surrogate).
_ROW_ERRORS = (OverflowError, ValueError, psycopg.DataError)


async def _insert_events(
    db: Conn, site: str, events: Sequence[Event], now: float
) -> tuple[int, list[tuple[Event, str]]]:
    """Insert the new events; returns how many were new and those refused, each with why."""
    rows: list[tuple[Event, tuple[Any, ...]]] = []
    refused: list[tuple[Event, str]] = []
    for e in events:
        try:
            rows.append((e, event_row(site, e, now)))
        except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
            refused.append((e, f"{type(exc).__name__}: {exc}"))
    if not rows:
        return 0, refused
    try:
        async with db.transaction(), db.cursor() as cur:
            await cur.executemany(_INSERT_EVENT, [row for _, row in rows])
            return cur.rowcount, refused
    except _ROW_ERRORS:
        pass  # one row refused: each alone, the others kept
    new = 0
    for e, row in rows:
        try:
            async with db.transaction():
                cur = await db.execute(_INSERT_EVENT, row)
                new += cur.rowcount
        except _ROW_ERRORS as exc:
            refused.append((e, f"{type(exc).__name__}: {exc}"))
    return new, refused


class InboxMixin(PgBase):
    """Ingest (the doors' port)."""

    async def ingest(
        self,
        site: str,
        events: Sequence[Event],
        rejected: Sequence[tuple[Rejection, object]] = (),
    ) -> IngestResult:
        """Store a batch in one transaction; replays are no-ops. The one entry point of every door."""
        now = time.time()

        async def run(db: Conn) -> IngestResult:
            result = await _ingest_one(db, site, events, rejected, now)
            if result.new:  # at the commit: every replica's processor looks (cluster.py)
                await db.execute("SELECT pg_notify(%s, '')", (INBOX_CHANNEL,))
            return result

        result: IngestResult = await self._write(run, (site_lock(site),))
        if result.new:
            self.ingested.set()
        return result


async def _ingest_one(
    db: Conn,
    site: str,
    events: Sequence[Event],
    rejected: Sequence[tuple[Rejection, object]],
    now: float,
) -> IngestResult:
    new, refused = await _insert_events(db, site, events, now)
    if refused:  # the store could not write these: rejected alone, kept as dead letters
        rejected = [*rejected, *(store_refused(e, why) for e, why in refused)]
        gone = {id(e) for e, _ in refused}
        events = [e for e in events if id(e) not in gone]
    for rej, raw in rejected:
        ref, (sql, args) = rejection_letter(site, rej, raw, now)
        cur = await db.execute("SELECT 1 FROM dead_letters WHERE origin='event' AND ref=%s", (ref,))
        if rej.id != "?" and await cur.fetchone():
            continue
        await db.execute(pg(sql), _text(args))
    if events:
        await db.execute(pg(BUMP), (site, "events_in", len(events)))
    return IngestResult([e.id for e in events], [r for r, _ in rejected], new)


def _text(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A dead letter's texts as PostgreSQL holds them: no NUL character (SQLite keeps it)."""
    return tuple(a.replace("\x00", "\\u0000") if isinstance(a, str) else a for a in args)
