"""Rows more than one part of the store writes: inbox events, dead letters, counters."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol

import orjson

from agent.core.events import Action, Door, Event, EventId, Rejection, Resource
from agent.core.minimize import minimize_value
from agent.core.privacy import redact_raw
from agent.core.storable import keepable
from agent.core.times import parse_time

__all__ = [
    "BUMP",
    "EVENT_COLUMNS",
    "Db",
    "Rows",
    "bump",
    "dead_letter_insert",
    "dump_raw",
    "event_from_row",
    "event_row",
    "insert_events",
    "rejection_letter",
    "set_stat",
]


class Rows(Protocol):
    """What a statement gives back, as `Db` uses it."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Db(Protocol):
    """The connection the planning of a chunk (agent/store/chunk.py) and the consent reads
    run on: a `sqlite3.Connection`, or the PostgreSQL store's processing connection
    (agent/store/postgres/processing.py `SyncDb`), on the same SQL with `?` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Rows: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> object: ...


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


def event_row(site: str, e: Event, now: float) -> tuple[Any, ...]:
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
            rows.append((e, event_row(site, e, now)))
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


def rejection_letter(
    site: str, rej: Rejection, raw: object, now: float
) -> tuple[str, tuple[str, tuple[Any, ...]]]:
    """A door's rejection as its dead letter: (ref, the INSERT as `dead_letter_insert` gives
    it). Kept without payment details nor an erasure's address (agent/core/minimize.py), cut
    to what the json module writes and the helpers walk (agent/core/storable.py). A caller
    skips it when `rej.id` is not "?" and an event dead letter with this ref exists."""
    ref = f"{site}:{rej.id}"
    kept = dump_raw(minimize_value(redact_raw(keepable(raw))))
    message = rej.message.encode("utf-8", "backslashreplace").decode("utf-8")
    return ref, dead_letter_insert(site, "event", ref, "event", rej.code, message, kept, now)


def dump_raw(raw: object) -> str:
    """JSON of what a door refused, or of its repr when it is not JSON."""
    try:
        return json.dumps(raw)
    except (TypeError, ValueError, RecursionError):
        try:
            return json.dumps(repr(raw)[:100_000])
        except (ValueError, RecursionError):  # an int past 4,300 digits, a structure too deep
            return json.dumps(f"<a {type(raw).__name__} that could not be written>")


# Adds to a site's counter; SQL both backends run (agent/store/postgres/base.py `pg`).
BUMP = (
    "INSERT INTO stats (site, name, value) VALUES (?,?,?) ON CONFLICT (site, name)"
    " DO UPDATE SET value=stats.value+excluded.value"
)


def bump(db: sqlite3.Connection, site: str, name: str, n: float) -> None:
    """Add `n` to a site's counter (`stats`, read by `status`)."""
    db.execute(BUMP, (site, name, n))


def set_stat(db: sqlite3.Connection, site: str, name: str, v: float) -> None:
    """Set a site's figure (`stats`), such as the time of its last success."""
    db.execute(
        "INSERT INTO stats (site, name, value) VALUES (?,?,?) ON CONFLICT (site, name)"
        " DO UPDATE SET value=excluded.value",
        (site, name, v),
    )
