"""Rows more than one part of the store writes: inbox events, dead letters, counters."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Literal

import orjson

from agent.core.events import Action, Door, Event, EventId, Resource
from agent.core.times import parse_time

__all__ = [
    "EVENT_COLUMNS",
    "bump",
    "dead_letter_insert",
    "dump_raw",
    "event_from_row",
    "insert_events",
    "set_stat",
]

# The inbox columns `event_from_row` reads, in its order.
EVENT_COLUMNS = (
    "seq, site, event_id, topic, resource, action, resource_id, occurred_at, door, historical,"
    " payload, extra"
)


_INSERT_EVENT = (
    "INSERT OR IGNORE INTO inbox (site, event_id, topic, resource, action, resource_id,"
    " occurred_at, received_at, door, historical, payload, extra)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
# What one row can make the database refuse, while the others go in: a value SQLite cannot
# bind (an integer past 64 bits: OverflowError; a lone surrogate: UnicodeEncodeError, a
# ValueError) or hold. Not OperationalError: a full disk or a lock fails the whole write.
_ROW_ERRORS = (OverflowError, ValueError, sqlite3.InterfaceError, sqlite3.DataError)


def _event_row(site: str, e: Event, now: float) -> tuple[Any, ...]:
    return (
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


def insert_events(
    db: sqlite3.Connection, site: str, events: Sequence[Event], now: float
) -> tuple[int, list[tuple[Event, str]]]:
    """INSERT OR IGNORE the events into the inbox; returns how many were new, and the events
    the store could not write, each with why (parse_event refuses those first: this is the
    second line, so that one such event never fails the others, issue 16 finding 3)."""
    rows: list[tuple[Event, tuple[Any, ...]]] = []
    refused: list[tuple[Event, str]] = []
    for e in events:
        try:
            rows.append((e, _event_row(site, e, now)))
        except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
            refused.append((e, f"{type(exc).__name__}: {exc}"))
    before = db.total_changes
    db.execute("SAVEPOINT events")
    try:
        db.executemany(_INSERT_EVENT, [row for _, row in rows])
        new = db.total_changes - before
    except _ROW_ERRORS:
        db.execute("ROLLBACK TO events")  # one row refused: each alone, the others kept
        new = 0  # total_changes counts the rows rolled back too
        for e, row in rows:
            try:
                new += db.execute(_INSERT_EVENT, row).rowcount
            except _ROW_ERRORS as exc:
                refused.append((e, f"{type(exc).__name__}: {exc}"))
    db.execute("RELEASE events")
    return new, refused


def event_from_row(row: Sequence[Any]) -> Event:
    """The event of an inbox row read as EVENT_COLUMNS."""
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


def dead_letter_insert(
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


def dump_raw(raw: object) -> str:
    """JSON of what a door refused, or of its repr when it is not JSON."""
    try:
        return json.dumps(raw)
    except (TypeError, ValueError, RecursionError):
        try:
            return json.dumps(repr(raw)[:100_000])
        except (ValueError, RecursionError):  # an int past 4,300 digits, a structure too deep
            return json.dumps(f"<a {type(raw).__name__} that could not be written>")


def bump(db: sqlite3.Connection, site: str, name: str, n: float) -> None:
    """Add `n` to a site's counter (`stats`, read by `status`)."""
    db.execute(
        "INSERT INTO stats (site, name, value) VALUES (?,?,?) ON CONFLICT (site, name)"
        " DO UPDATE SET value=value+excluded.value",
        (site, name, n),
    )


def set_stat(db: sqlite3.Connection, site: str, name: str, v: float) -> None:
    """Set a site's figure (`stats`), such as the time of its last success."""
    db.execute(
        "INSERT INTO stats (site, name, value) VALUES (?,?,?) ON CONFLICT (site, name)"
        " DO UPDATE SET value=excluded.value",
        (site, name, v),
    )
