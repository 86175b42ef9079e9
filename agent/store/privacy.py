"""Erasure and export in the store (issue 14): an erasure's Brevo job is queued when its event
is processed, and once Brevo answered, the email is purged from every table in the same
transaction that ends the job; an exporter reads what is held about an email.

The purge runs with `PRAGMA secure_delete=ON` (set on every connection, agent/store/tx.py), so
freed pages and deleted records are zeroed in the file, and is followed by a WAL checkpoint
(TRUNCATE), so the WAL keeps no page from before. A kill before its commit leaves the erase
job claimed: the restart hands it back, Brevo is asked again (404: already gone = done) and the
purge runs then.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from agent.core.events import Event
from agent.core.jobs import Job
from agent.core.privacy import erase_job, redact
from agent.store.chunk import Chunk
from agent.store.meta import MetaMixin
from agent.store.ports import ErasureStep
from agent.store.rows import bump, dead_letter_insert, set_stat
from agent.store.schema import ERASED_INFLIGHT, INFLIGHT, PENDING

__all__ = [
    "CONSENT_GROUPS",
    "ERASURES_PENDING",
    "PrivacyMixin",
    "Redaction",
    "carts_query",
    "erased",
    "erasure_refused",
    "held",
    "holdings_queries",
    "plan_erasure",
    "purge",
    "purge_deletes",
    "purge_redactions",
    "with_erasures",
]

log = logging.getLogger("agent.store")

# Tries of the WAL checkpoint after a purge while another connection reads (50 ms apart).
CHECKPOINT_TRIES = 100


def plan_erasure(chunk: Chunk, site: str, event: Event, step: ErasureStep | None) -> None:
    """Process a `privacy.erase`: queue its Brevo job and cancel the pending jobs of its email
    (none may re-create the contact after the erase), in the chunk's transaction."""
    erasure = step(site, event) if step is not None else None
    if erasure is None:
        number = event.resource_id
        chunk.writes.append(
            dead_letter_insert(
                site,
                "event",
                f"{site}:{event.id}",
                event.resource.value,
                "unknown_site",
                f"erasure {number}: site {site!r} is not in the config any more; nothing was"
                " erased in Brevo",
                json.dumps({"topic": event.topic, "erasure": number}),
            )
        )
        return
    email = erasure.email
    chunk.settle()  # the jobs the rows before it queued, coalesced: it cancels them too
    for key, job in list(chunk.jobs.items()):
        if key[0] == erasure.account and _names(job.body, job.key, email):
            del chunk.jobs[key]
    chunk.erased.append((erasure.account, email))  # its stored pending jobs: deleted below
    names = (erasure.account, f"contact:{email}", json.dumps(email, ensure_ascii=False).lower())
    match = " AND kind!='erase' AND (key=? OR instr(lower(body), ?) > 0)"
    chunk.writes.append((f"DELETE FROM jobs WHERE account=? AND state={PENDING}" + match, names))
    # A job in flight now is dropped when it comes back, not queued again (agent/store/jobs.py);
    # the erase job waits for it, so its answer cannot land after the erase.
    chunk.writes.append(
        (
            f"UPDATE jobs SET state={ERASED_INFLIGHT} WHERE account=? AND state={INFLIGHT}" + match,
            names,
        )
    )
    chunk.add_intent(erasure.account, site, erasure.intent)


def _names(body: Any, key: str, email: str) -> bool:
    return key == f"contact:{email}" or json.dumps(email, ensure_ascii=False) in json.dumps(
        body, ensure_ascii=False
    )


class PrivacyMixin(MetaMixin):
    """The forwarder's end of an erasure (`erasure_finished`) and the exporter's read."""

    async def erasure_finished(self, job: Job, refused: tuple[str, str] | None = None) -> None:
        """Brevo answered an erase job (done, or `refused` for good as (code, message)): purge
        its email from the store in one transaction, then truncate the WAL."""
        await self._run(self._erasure_finished, job, refused)

    def _erasure_finished(self, job: Job, refused: tuple[str, str] | None) -> None:
        _, site = erase_job(job)
        email, sites = erased(job)
        with self._tx() as db:
            purge(db, email, job.account, sites)
            db.execute("DELETE FROM jobs WHERE id=?", (job.id,))
            bump(db, site, "erasures_done", 1)
            if refused is None:
                set_stat(db, site, "last_success", time.time())
            else:
                db.execute(*erasure_refused(job, refused))
        self._truncate_wal()

    def _truncate_wal(self) -> None:
        """Checkpoint the WAL and truncate it to nothing; another connection still reading an
        older snapshot makes it wait (CHECKPOINT_TRIES)."""
        for _ in range(CHECKPOINT_TRIES):
            busy, _, _ = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.05)
        log.warning(
            "after an erasure the WAL could not be truncated (another connection kept reading);"
            " the next checkpoint overwrites it"
        )

    # -- export ---------------------------------------------------------------------------

    async def holdings(
        self, account: str, sites: Sequence[str], email: str
    ) -> dict[str, list[dict[str, Any]]]:
        """What the store holds about `email` for a Brevo account and its sites, per group of
        agent/core/privacy.py `export_groups`."""
        return await self._run(self._holdings, account, list(sites), email)

    def _holdings(
        self, account: str, sites: list[str], email: str
    ) -> dict[str, list[dict[str, Any]]]:
        db = self.db
        out: dict[str, list[dict[str, Any]]] = {}
        for name, sql, args, fields in holdings_queries(account, sites, email):
            if name in CONSENT_GROUPS and not _has_table(db, CONSENT_GROUPS[name]):
                continue
            out[name] = [dict(zip(fields, r, strict=True)) for r in db.execute(sql, args)]
        sql, args = carts_query(sites, email)
        return held(out, db.execute(sql, args).fetchall())

    # -- status ---------------------------------------------------------------------------

    def _status(self) -> dict[str, dict[str, Any]]:
        out = super()._status()
        return with_erasures(out, dict(self.db.execute(ERASURES_PENDING)))


def erased(job: Job) -> tuple[str, list[str]]:
    """An erase job's email and the sites whose tables lose it."""
    _, site = erase_job(job)
    return str(job.body["email"]), [str(s) for s in job.body.get("sites") or [site]]


def erasure_refused(job: Job, refused: tuple[str, str]) -> tuple[str, tuple[Any, ...]]:
    """The dead letter of an erase Brevo refused for good, as `dead_letter_insert` gives it:
    an event's, without the address (a retry cannot resend it: the address is gone); the
    operator erases the contact in Brevo by hand."""
    number, site = erase_job(job)
    code, message = refused
    return dead_letter_insert(
        site,
        "event",
        f"{site}:erasure-{number}",
        job.kind.value,
        code,
        f"erasure {number}: Brevo refused it ({redact(message, str(job.body['email']))}); the"
        " contact may still be in Brevo: erase it there by hand",
        json.dumps({"erasure": number, "mode": job.body.get("mode")}),
        account=job.account,
    )


# The erase jobs waiting, per site (/status's `erasures.pending`).
ERASURES_PENDING = "SELECT site, COUNT(*) FROM jobs WHERE kind='erase' GROUP BY site"


def with_erasures(
    out: dict[str, dict[str, Any]], pending: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """/status's rows with each site's erasures done (its counter) and pending."""
    for site in set(out) | set(pending):
        row = out.setdefault(
            site, {"inbox_depth": 0, "pending_jobs": 0, "dead_letters": 0, "last_success": None}
        )
        done = row.pop("erasures_done", 0)
        row["erasures"] = {"done": int(done), "pending": int(pending.get(site, 0))}
    return out


def _cart(cart_id: int, status: str, state: str) -> dict[str, Any]:
    kept = orjson.loads(state)
    snapshot = kept.get("snapshot") or {}
    return {
        "cart": cart_id,
        "status": status,
        "total": (snapshot.get("totals") or {}).get("total"),
        "currency": snapshot.get("currency"),
        "changed": kept.get("changed_at"),
    }


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return (
        db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
        is not None
    )


def purge(db: sqlite3.Connection, email: str, account: str, sites: Sequence[str]) -> None:
    """Take `email` (any case) out of every table, in the caller's transaction: inbox payloads
    and object states lose it (the rows stay: an inbox id still dedupes a replay), order facts,
    carts, jobs, Brevo records, dead letters, keyed values, consent and suppressions that name
    it go (the statements: `purge_redactions`, `purge_deletes`, shared with PostgreSQL)."""
    for r in purge_redactions(email, sites):
        for row in db.execute(r.select, r.args).fetchall():
            db.execute(r.update, r.redacted(row))
    for sql, args in purge_deletes(email, account, sites):
        db.execute(sql, args)
    for table in CONSENT_GROUPS.values():
        if _has_table(db, table):
            db.execute(f"DELETE FROM {table} WHERE lower(email)=?", (email.lower(),))


def _marks(sites: Sequence[str]) -> str:
    """`?` per site for `IN (…)`; NULL when there is none (matches nothing, on both backends)."""
    return ",".join("?" * len(sites)) or "NULL"


@dataclass(frozen=True, slots=True)
class Redaction:
    """Rows whose text columns name the email: `select` reads the texts (the first `texts`
    columns), then their keys; `update` writes the redacted texts back, by those keys."""

    select: str
    args: tuple[Any, ...]
    update: str
    texts: int
    email: str

    def redacted(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """`update`'s parameters for a row `select` read."""
        n = self.texts
        return (*(_redacted(t, self.email) for t in row[:n]), *row[n:])


def purge_redactions(email: str, sites: Sequence[str]) -> list[Redaction]:
    """The purge's rows that stay, redacted: inbox payloads (a replay is still deduped) and
    object states. SQL both backends run (on PostgreSQL, agent/store/postgres/base.py `pg`
    turns `instr` into `strpos`)."""
    low, marks = email.lower(), _marks(sites)
    return [
        Redaction(
            f"SELECT payload, extra, seq FROM inbox WHERE site IN ({marks})"
            " AND (instr(lower(payload), ?) > 0 OR instr(lower(extra), ?) > 0)",
            (*sites, low, low),
            "UPDATE inbox SET payload=?, extra=? WHERE seq=?",
            2,
            email,
        ),
        Redaction(
            f"SELECT state, site, resource, resource_id FROM objects WHERE site IN ({marks})"
            " AND instr(lower(state), ?) > 0",
            (*sites, low),
            "UPDATE objects SET state=? WHERE site=? AND resource=? AND resource_id=?",
            1,
            email,
        ),
    ]


def purge_deletes(
    email: str, account: str, sites: Sequence[str]
) -> list[tuple[str, tuple[Any, ...]]]:
    """The purge's deletes but consent and suppressions (CONSENT_GROUPS): order facts, carts,
    jobs, Brevo records, dead letters, keyed values that name the email. SQL both backends
    run."""
    low, marks = email.lower(), _marks(sites)
    return [
        (f"DELETE FROM order_facts WHERE site IN ({marks}) AND lower(email)=?", (*sites, low)),
        (
            f"DELETE FROM carts WHERE site IN ({marks})"
            " AND (lower(email)=? OR instr(lower(state), ?) > 0)",
            (*sites, low, low),
        ),
        (
            "DELETE FROM jobs WHERE account=?"
            " AND (instr(lower(key), ?) > 0 OR instr(lower(body), ?) > 0)",
            (account, low, low),
        ),
        (
            "DELETE FROM forwarded WHERE account=?"
            " AND (instr(lower(key), ?) > 0 OR instr(lower(state), ?) > 0)",
            (account, low, low),
        ),
        (
            "DELETE FROM dead_letters WHERE instr(lower(body), ?) > 0"
            " OR instr(lower(message), ?) > 0 OR instr(lower(ref), ?) > 0",
            (low, low, low),
        ),
        (
            "DELETE FROM meta WHERE instr(lower(key), ?) > 0 OR instr(lower(value), ?) > 0",
            (low, low),
        ),
    ]


# The export's groups read from the consent tables, and those tables.
CONSENT_GROUPS = {"consent": "consent", "suppressions": "suppression"}


def holdings_queries(
    account: str, sites: Sequence[str], email: str
) -> list[tuple[str, str, tuple[Any, ...], tuple[str, ...]]]:
    """What an export reads, as (group, SQL, parameters, fields) but carts (`carts_query`):
    SQL both backends run."""
    low, marks = email.lower(), _marks(sites)
    quoted = json.dumps(low, ensure_ascii=False)
    return [
        (
            "consent",
            "SELECT subscribed, since, source, doi FROM consent WHERE account=? AND email=?",
            (account, low),
            ("subscribed", "since", "source", "doi"),
        ),
        (
            "suppressions",
            "SELECT list_id, reason, since FROM suppression WHERE account=? AND email=?"
            " ORDER BY list_id",
            (account, low),
            ("list_id", "reason", "since"),
        ),
        (
            "events",
            f"SELECT event_id, topic, received_at FROM inbox WHERE site IN ({marks})"
            " AND instr(lower(payload), ?) > 0 ORDER BY seq",
            (*sites, low),
            ("event", "topic", "received"),
        ),
        (
            "jobs",
            "SELECT kind, created_at FROM jobs WHERE account=? AND (key=? OR"
            " instr(lower(body), ?) > 0) ORDER BY id",
            (account, f"contact:{low}", quoted),
            ("kind", "created"),
        ),
        (
            "dead_letters",
            f"SELECT kind, code, created_at FROM dead_letters WHERE site IN ({marks})"
            " AND instr(lower(body), ?) > 0 ORDER BY id",
            (*sites, low),
            ("kind", "code", "created"),
        ),
        (
            "orders",
            f"SELECT order_id, status, total, created_at FROM order_facts WHERE site IN ({marks})"
            " AND email=? ORDER BY order_id",
            (*sites, low),
            ("order", "status", "total", "created"),
        ),
    ]


def carts_query(sites: Sequence[str], email: str) -> tuple[str, tuple[Any, ...]]:
    """An export's read of the email's carts (rows for `held`)."""
    return (
        f"SELECT cart_id, status, state FROM carts WHERE site IN ({_marks(sites)}) AND email=?"
        " ORDER BY cart_id",
        (*sites, email.lower()),
    )


def held(
    out: dict[str, list[dict[str, Any]]], carts: Sequence[Sequence[Any]]
) -> dict[str, list[dict[str, Any]]]:
    """An export's groups as `holdings` answers them, from what `holdings_queries` and
    `carts_query` read."""
    for row in out.get("consent", []):
        row["subscribed"] = bool(row["subscribed"])
    out["carts"] = [_cart(cid, status, state) for cid, status, state in carts]
    return out


def _redacted(text: str, email: str) -> str:
    return orjson.dumps(redact(orjson.loads(text), email)).decode()
