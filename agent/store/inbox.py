"""The inbox: what the doors store, processed in order into jobs, and pruned once old.

Durability: `synchronous=FULL` in WAL mode, so a commit that returned survives a power cut, not
only a kill -9; a door acks only after `ingest` returned (docs/durability.md).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from agent.core.aggregates import OrderFact, fact_after
from agent.core.carts import Cart
from agent.core.events import Event, Rejection, Resource
from agent.store.chunk import Chunk
from agent.store.ports import CartStep, Decide, ErasureStep, IngestResult
from agent.store.privacy import plan_erasure
from agent.store.rows import (
    EVENT_COLUMNS,
    Db,
    bump,
    dead_letter_insert,
    event_from_row,
    insert_events,
    rejection_letter,
)
from agent.store.tx import StoreBase

__all__ = [
    "PRUNE_BATCH",
    "InboxMixin",
    "Steps",
    "last_seq_before",
    "plan_rows",
    "process_row",
    "processing_letter",
    "prune_rows",
    "store_refused",
]

log = logging.getLogger("agent.store")

# Inbox rows deleted per transaction when old ones are pruned (`prune_inbox`).
PRUNE_BATCH = 100

Facts = Callable[[str, Event], OrderFact | None]


@dataclass(frozen=True, slots=True)
class Steps:
    """The core's steps a processing pass runs (see `process_pending`)."""

    decide: Decide
    facts: Facts
    carts: CartStep | None
    privacy: ErasureStep | None


def store_refused(event: Event, why: str) -> tuple[Rejection, object]:
    """An event the inbox could not write, as a rejection and what its dead letter keeps."""
    raw = {
        "id": event.id,
        "topic": event.topic,
        "resource": event.resource.value,
        "resource_id": event.resource_id,
        "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None,
        "payload": event.payload,
        "extra": event.extra,
    }
    message = f"event {event.id}: the store could not write it ({why[:300]})"
    return Rejection(event.id, "store_refused", message), raw


def processing_letter(row: Sequence[Any], exc: Exception) -> tuple[str, tuple[Any, ...]]:
    """The dead letter of an inbox row (read as EVENT_COLUMNS) the pipeline failed on."""
    site = row[1]
    return dead_letter_insert(
        site,
        "event",
        f"{site}:{row[2]}",
        row[4],
        "processing_error",
        f"{type(exc).__name__}: {exc}",
        json.dumps({"topic": row[3], "payload": json.loads(row[10])}),
    )


def process_row(chunk: Chunk, site: str, event: Event, steps: Steps) -> None:
    """Plan one inbox row into the chunk: the pure pipeline, order facts, carts, erasures
    (shared by both backends: agent/store/postgres/processing.py)."""
    decide, facts, carts = steps.decide, steps.facts, steps.carts
    if event.resource is Resource.PRIVACY:
        plan_erasure(chunk, site, event, steps.privacy)
        return
    if event.resource is Resource.CART:
        kept = chunk.cart(site, event.resource_id)
        _run_carts(chunk, site, event, [] if kept is None else [kept], carts)
        return
    key = (site, event.resource.value, event.resource_id)
    prior = chunk.prior(key)
    stored = chunk.fact(site, event.resource_id) if event.resource is Resource.ORDER else None
    fact = fact_after(event, prior, facts(site, event), stored)
    if fact is not None:
        chunk.set_fact(site, event.resource_id, fact)

    def aggregates(email: str, paid: Collection[str]) -> dict[str, Any]:
        return chunk.aggregates(site, email, paid)

    outcome = decide(site, event, prior, aggregates, chunk)
    if outcome.object_state is not None:
        chunk.set_object(key, orjson.dumps(outcome.object_state).decode())
    for email, record in outcome.consent:
        chunk.set_consent(outcome.account, email, record)
    for intent in outcome.intents:
        chunk.add_intent(outcome.account, site, intent)
    buyer = chunk.ahead.buyer(event) if carts is not None else None
    if buyer is not None:
        _run_carts(chunk, site, event, chunk.open_carts(site, buyer[0], buyer[1]), carts)
    for code, message in outcome.dead:
        chunk.writes.append(
            dead_letter_insert(
                site,
                "event",
                f"{site}:{event.id}",
                event.resource.value,
                code,
                message,
                json.dumps({"topic": event.topic, "payload": event.payload}),
            )
        )


def plan_rows(chunk: Chunk, rows: Sequence[Sequence[Any]], steps: Steps) -> None:
    """Plan inbox rows (read as EVENT_COLUMNS), in order, into the chunk, what they ask for
    read ahead (agent/store/ahead.py); both backends."""
    events = [(str(row[1]), event_from_row(row)) for row in rows]
    chunk.foresee(events, carts=steps.carts is not None)
    for row, (site, event) in zip(rows, events, strict=True):
        process_row(chunk, site, event, steps)
        chunk.done.append(int(row[0]))
    chunk.settle()


def _run_carts(
    chunk: Chunk, site: str, event: Event, kept: list[Cart], carts: CartStep | None
) -> None:
    """The cart state machine on a cart event, or on an order and its buyer's open carts."""
    if carts is None or (event.resource is not Resource.CART and not kept):
        return
    outcome = carts(site, event, kept)
    if outcome is not None:
        chunk.set_carts(site, outcome)


class InboxMixin(StoreBase):
    """Ingest (the doors' port), processing (the processor's) and retention of the inbox."""

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

    def _ingest_one(
        self,
        db: sqlite3.Connection,
        site: str,
        events: Sequence[Event],
        rejected: Sequence[tuple[Rejection, object]],
        now: float,
    ) -> IngestResult:
        new, refused = insert_events(db, site, events, now)
        if refused:  # the store could not write these: rejected alone, kept as dead letters
            rejected = [*rejected, *(store_refused(e, why) for e, why in refused)]
            gone = {id(e) for e, _ in refused}
            events = [e for e in events if id(e) not in gone]
        for rej, raw in rejected:
            ref, insert = rejection_letter(site, rej, raw, now)
            exists = db.execute(
                "SELECT 1 FROM dead_letters WHERE origin='event' AND ref=?", (ref,)
            ).fetchone()
            if rej.id != "?" and exists:
                continue
            db.execute(*insert)
        if events:
            bump(db, site, "events_in", len(events))
        return IngestResult([e.id for e in events], [r for r, _ in rejected], new)

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
        """Process up to `limit` new inbox rows in order, each in its own transaction.

        `facts(site, event)` returns an order's (email, status, total, created_at) so that
        aggregates include it; `decide(site, event, prior_state, aggregates_for, consent)` is
        the pure pipeline (`consent`, the chunk, reads consent records and suppressions); `carts(site, event, carts)` the cart state machine, for cart events and for
        the open carts of an order's buyer (without it, cart events change nothing);
        `privacy(site, event)` an erasure's Brevo job (agent/store/privacy.py). Returns how many
        rows were processed.
        """
        steps = Steps(decide, facts, carts, privacy)
        return await self._run(self._process_pending, limit, steps)

    def _process_pending(self, limit: int, steps: Steps) -> int:
        rows = self.db.execute(
            f"SELECT {EVENT_COLUMNS} FROM inbox WHERE state = 0"
            + self._not_held
            + " ORDER BY seq LIMIT ?",
            (*self._held, limit),
        ).fetchall()
        if not rows:
            return 0
        # The pipeline runs outside any transaction, on what is committed plus what the rows
        # before it in this chunk changed (Chunk); only its writes take the write lock, in
        # one short transaction. Another process (the doors, agent/process/worker.py) commits
        # its batches in between instead of waiting for the whole chunk's pipeline.
        chunk = Chunk(self.db)
        try:
            plan_rows(chunk, rows, steps)
            # Not synced (docs/durability.md): what it writes is derived from inbox rows that
            # are, and a power cut that undoes it leaves those rows pending, processed again
            # at the restart; any later synced commit (a door's batch, a finished Brevo call,
            # which only a job committed before it can start) makes it durable first.
            with self._tx(sync=False):
                chunk.apply()
        except Exception:
            # Something in this chunk breaks the pipeline: redo it one row per transaction, so
            # the bad row becomes a dead letter and the rows behind it are not blocked.
            log.warning("processing a batch of %d failed; isolating the bad event", len(rows))
            for row in rows:
                self._process_alone(row, steps)
        return len(rows)

    def _process_alone(self, row: Sequence[Any], steps: Steps) -> None:
        seq, site = row[0], row[1]
        try:
            chunk = Chunk(self.db)
            process_row(chunk, site, event_from_row(row), steps)
            chunk.done.append(seq)
            with self._tx():
                chunk.apply()
        except Exception as exc:
            log.exception("event %s of site %s failed to process", row[2], site)
            with self._tx() as db:
                db.execute(*processing_letter(row, exc))
                db.execute("UPDATE inbox SET state = 1 WHERE seq = ?", (seq,))

    # -- retention ------------------------------------------------------------------------

    async def prune_inbox(self, before: float, *, batch: int = PRUNE_BATCH) -> int:
        """Delete processed inbox rows stored before `before` (epoch seconds), oldest first.

        Each transaction deletes at most `batch` rows, so the write lock is never held long
        (the doors' acks wait for it). Rows not yet processed are kept, whatever their age.
        Returns how many rows were deleted.
        """
        cutoff = await self._run(last_seq_before, self.db, before)
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
            return prune_rows(db, cutoff, before, batch)


def prune_rows(db: Db, cutoff: int, before: float, batch: int) -> int:
    """Delete up to `batch` processed rows stored before `before`, up to seq `cutoff`, in the
    caller's transaction (both backends); returns how many."""
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
            " DO UPDATE SET value=CASE WHEN excluded.value > stats.value THEN excluded.value"
            " ELSE stats.value END",
            (site, f"last_received_{door}", at),
        )
    db.executemany("DELETE FROM inbox WHERE seq = ?", [(r[0],) for r in rows])
    return len(rows)


def last_seq_before(db: Db, before: float) -> int | None:
    """The last inbox seq stored before `before`, found by bisection on seq (rows are
    stored in time order, give or take the moment two processes' commits cross: the
    delete checks each row's time itself). Reads only; None when no row is that old."""
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
