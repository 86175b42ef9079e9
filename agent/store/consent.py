"""Consent records and suppressions (the `ConsentStore` port, agent/store/ports.py).

The rules are the core's (agent/core/consent.py): a record written by the pipeline in the
transaction of the event that changed it (agent/store/chunk.py), suppressions written by the
Brevo webhook door and backfill, read by the pipeline and again by the forwarder at send time.
A suppression is in force until a Brevo `listAddition` lifts it or a subscription newer than
it (the `consent` row) outweighs it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence

from agent.core.consent import EVERY_LIST, ConsentRecord, apply_suppression, doi_without
from agent.core.jobs import Job, Kind
from agent.store.rows import Db
from agent.store.tx import StoreBase

__all__ = [
    "ConsentMixin",
    "consent_row",
    "consent_upsert",
    "forgotten_lists",
    "in_force",
    "strip_lists",
    "strip_suppressed",
    "suppressible_emails",
    "suppression_rows",
]

# Emails per query of `suppressed` (SQLite's default limit of host parameters is 999).
_CHUNK = 500

# Suppressions in force: those no subscription newer than them lifted.
_IN_FORCE = (
    "SELECT s.email, s.list_id FROM suppression s LEFT JOIN consent c"
    " ON c.account = s.account AND c.email = s.email"
    " WHERE s.account = ? AND s.email IN ({marks})"
    " AND NOT COALESCE(c.subscribed = 1 AND c.since > s.since, 0)"
)


def consent_row(db: Db, account: str, email: str) -> ConsentRecord | None:
    """The stored consent record of an email on an account."""
    row = db.execute(
        "SELECT subscribed, since, source, doi FROM consent WHERE account=? AND email=?",
        (account, email),
    ).fetchone()
    return None if row is None else ConsentRecord(bool(row[0]), row[1], row[2], row[3])


def suppression_rows(db: Db, account: str, email: str) -> list[tuple[int, float]]:
    """An email's suppressions on an account as (list id, since)."""
    rows = db.execute(
        "SELECT list_id, since FROM suppression WHERE account=? AND email=? ORDER BY list_id",
        (account, email),
    ).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]


def in_force(
    db: sqlite3.Connection, account: str, emails: Collection[str]
) -> dict[str, frozenset[int]]:
    """email → its suppressed lists in force (0: every list); emails without any are absent."""
    wanted = sorted(set(emails))
    out: dict[str, set[int]] = {}
    for start in range(0, len(wanted), _CHUNK):
        part = wanted[start : start + _CHUNK]
        query = _IN_FORCE.format(marks=",".join("?" * len(part)))
        for email, list_id in db.execute(query, (account, *part)):
            out.setdefault(email, set()).add(int(list_id))
    return {email: frozenset(ids) for email, ids in out.items()}


def strip_suppressed(db: sqlite3.Connection, account: str, jobs: Sequence[Job]) -> None:
    """Strip from claimed contact and double opt-in jobs the lists their emails left: read as
    they are claimed, just before they are sent, so that a suppression that arrived while a
    job waited still wins (and never `emailBlacklisted`). A contact job left without lists
    still upserts its contact; a double opt-in left without lists is not asked."""
    emails = suppressible_emails(jobs)
    strip_lists(jobs, in_force(db, account, emails) if emails else {})


def suppressible_emails(jobs: Sequence[Job]) -> set[str]:
    """The emails of the contact and double opt-in jobs, whose suppressions a claim reads."""
    mine = [j for j in jobs if j.kind in (Kind.CONTACT, Kind.DOI)]
    return {j.body["email"] for j in mine if isinstance(j.body.get("email"), str)}


def strip_lists(jobs: Sequence[Job], gone: dict[str, frozenset[int]]) -> None:
    """`strip_suppressed` once the suppressions in force (`gone`, as `in_force` reads them)
    are known: pure, so that both backends strip alike."""
    for job in jobs:
        if job.kind not in (Kind.CONTACT, Kind.DOI):
            continue
        lists = gone.get(job.body.get("email", ""), frozenset())
        if job.kind is Kind.DOI:
            job.body = doi_without(job.body, lists)
        elif lists or "emailBlacklisted" in job.body:
            job.body = apply_suppression(job.body, lists)


def consent_upsert(
    account: str, email: str, record: ConsentRecord
) -> tuple[str, tuple[object, ...]]:
    """The write that keeps a consent record (the pipeline's, in its event's transaction)."""
    return (
        "INSERT INTO consent (account, email, subscribed, since, source, doi)"
        " VALUES (?,?,?,?,?,?) ON CONFLICT (account, email) DO UPDATE SET"
        " subscribed=excluded.subscribed, since=excluded.since, source=excluded.source,"
        # a confirmation `lift` wrote while the event was being decided is kept
        " doi=CASE WHEN consent.doi='confirmed' AND excluded.doi='pending' THEN consent.doi"
        " ELSE excluded.doi END",
        (account, email, int(record.subscribed), record.since, record.source, record.doi),
    )


def _forget_lists(db: sqlite3.Connection, account: str, email: str, ids: Sequence[int]) -> None:
    """Drop suppressed lists from the contact's `forwarded` record (agent/core/dedupe.py)."""
    key = f"contact:{email}"
    row = db.execute("SELECT state FROM forwarded WHERE account=? AND key=?", (account, key))
    found = row.fetchone()
    if found is None:
        return
    state = forgotten_lists(found[0], ids)
    if state is not None:
        db.execute("UPDATE forwarded SET state=? WHERE account=? AND key=?", (state, account, key))


def forgotten_lists(stored: str, ids: Sequence[int]) -> str | None:
    """A contact's `forwarded` record (JSON) without the suppressed lists `ids` (0: every
    list), or None when it held none of them."""
    state = json.loads(stored)
    held = state.get("listIds", [])
    kept = [] if EVERY_LIST in ids else [i for i in held if i not in ids]
    if kept == held:
        return None
    state["listIds"] = kept
    return json.dumps(state)


class ConsentMixin(StoreBase):
    """The `ConsentStore` port."""

    async def suppress(
        self, account: str, email: str, list_ids: Sequence[int], reason: str, since: float
    ) -> None:
        """Suppress lists for an email (none named: every list, 0); a suppression already
        kept takes the later `since` and the new reason. What the agent records Brevo holding
        for the contact (`forwarded`) loses those lists: Brevo took the person out, so a later
        subscription that lifts the suppression must add them again."""
        ids = sorted(set(list_ids)) or [EVERY_LIST]

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO suppression (account, email, list_id, reason, since)"
                " VALUES (?,?,?,?,?) ON CONFLICT (account, email, list_id) DO UPDATE SET"
                " reason=excluded.reason, since=max(since, excluded.since)",
                [(account, email, i, reason, since) for i in ids],
            )
            _forget_lists(db, account, email, ids)

        await self._write(write)

    async def lift(self, account: str, email: str, list_ids: Sequence[int]) -> None:
        """A Brevo `listAddition`: the person is in those lists again, so their suppressions
        go, and a double opt-in waiting for that confirmation is confirmed."""

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "DELETE FROM suppression WHERE account=? AND email=? AND list_id=?",
                [(account, email, i) for i in set(list_ids)],
            )
            db.execute(
                "UPDATE consent SET doi='confirmed' WHERE account=? AND email=? AND doi='pending'",
                (account, email),
            )

        await self._write(write)

    async def suppressed(self, account: str, emails: Collection[str]) -> dict[str, frozenset[int]]:
        """email → its suppressed lists in force (0: every list); emails without any are absent."""
        wanted = set(emails)
        return await self._run(lambda: in_force(self.db, account, wanted)) if wanted else {}

    async def consent_of(self, account: str, email: str) -> ConsentRecord | None:
        """The email's consent record on the account, or None."""
        return await self._run(lambda: consent_row(self.db, account, email))
