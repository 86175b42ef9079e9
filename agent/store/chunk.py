"""What a chunk of inbox rows reads and writes while the pipeline runs on it.

The rules are the core's (agent/core/dedupe.py `coalesce`, agent/core/aggregates.py
`aggregate`); a chunk reads the rows they need and keeps what they decide, in order, for one
write transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from agent.core.aggregates import OrderFact, aggregate, email_facts
from agent.core.carts import Cart, CartOutcome, cart_from_row, cart_row, with_consent
from agent.core.consent import ConsentRecord
from agent.core.dedupe import Merged, Pending, coalesce, coalesces, reads_known
from agent.core.events import Event
from agent.core.jobs import Intent, Kind, canonical
from agent.store.ahead import Ahead
from agent.store.consent import consent_row, consent_upsert, suppression_rows
from agent.store.rows import BUMP, Db
from agent.store.schema import PENDING

__all__ = ["Chunk", "QueuedJob"]

_JOB_UPDATE = "UPDATE jobs SET body=?, historical=? WHERE id=?"
_JOB_INSERT = (
    "INSERT INTO jobs (account, site, kind, key, body, historical, created_at)"
    " VALUES (?,?,?,?,?,?,?)"
)


def _loads(text: str) -> Any:
    """A stored body: orjson reads what `canonical` wrote (agent/core/jobs.py) several times
    faster than json, to the same values; json reads what orjson refuses (NaN, an integer past
    64 bits) should an older version have written it."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


@dataclass(slots=True)
class QueuedJob:
    """A queued job as a chunk leaves it: new (id None) or a pending one it merged into."""

    id: int | None
    account: str
    site: str
    kind: Kind
    key: str
    body: dict[str, Any]
    historical: bool
    written: bool = False  # already in `Chunk.writes`


class Chunk:
    """The state a chunk of inbox rows reads and writes while the pipeline runs on it.

    Reads see the committed state overlaid with what the chunk's earlier rows wrote; writes
    are kept, in order, and `apply()` runs them in one transaction. Processing is the only
    writer of objects, order facts and pending jobs' bodies, and a chunk is planned and
    applied in one call on the store's thread, so nothing else changes them in between.
    """

    def __init__(self, db: Db) -> None:
        self.db = db
        self.objects: dict[tuple[str, str, int], str] = {}
        self.facts: dict[str, dict[int, OrderFact]] = {}  # site → order id → fact
        self.jobs: dict[tuple[str, str], QueuedJob] = {}
        self.carts: dict[tuple[str, int], Cart] = {}  # (site, cart id) → as this chunk left it
        self.consents: dict[tuple[str, str], ConsentRecord] = {}  # (account, email) → record
        self.writes: list[tuple[str, tuple[Any, ...]] | QueuedJob] = []
        self.done: list[int] = []
        # Committed rows read ahead for the chunk's events (`foresee`).
        self.ahead = Ahead(db)
        # The intents of the rows planned so far, coalesced once their keys' rows are read
        # in one go (`settle`), in the order the rows queued them.
        self.intents: list[tuple[str, str, Intent]] = []
        # (account, email) of the erasures planned so far: their DELETE of the email's pending
        # jobs runs before any later write, so a later intent merges into none of them.
        self.erased: list[tuple[str, str]] = []

    # -- reads ----------------------------------------------------------------------------

    def foresee(self, events: Iterable[tuple[str, Event]], *, carts: bool) -> None:
        """Read ahead what these events (site, event) will ask for (agent/store/ahead.py)."""
        self.ahead.events(events, carts=carts)

    def prior(self, key: tuple[str, str, int]) -> dict[str, Any] | None:
        """An object's last processed state."""
        state = self.objects.get(key)
        if state is None and key in self.ahead.objects:
            state = self.ahead.objects[key]
        elif state is None:
            row = self.db.execute(
                "SELECT state FROM objects WHERE site=? AND resource=? AND resource_id=?", key
            ).fetchone()
            state = row[0] if row else None
        return orjson.loads(state) if state is not None else None

    def fact(self, site: str, order_id: int) -> OrderFact | None:
        """An order's (email, status, total, created_at)."""
        changed = self.facts.get(site, {})
        if order_id in changed:
            return changed[order_id]
        if (site, order_id) in self.ahead.facts:
            return self.ahead.facts[(site, order_id)]
        row = self.db.execute(
            "SELECT email, status, total, created_at FROM order_facts WHERE site=? AND order_id=?",
            (site, order_id),
        ).fetchone()
        return OrderFact(*row) if row else None

    def aggregates(self, site: str, email: str, paid: Collection[str]) -> dict[str, Any]:
        """The email's aggregates over its committed order facts and those this chunk changed."""
        stored = self.ahead.order_facts(site, email)
        if stored is None:
            rows = self.db.execute(
                "SELECT order_id, email, status, total, created_at FROM order_facts"
                " WHERE site=? AND email=?",
                (site, email),
            ).fetchall()
            stored = {row[0]: OrderFact(*row[1:]) for row in rows}
        return aggregate(email_facts(email, stored, self.facts.get(site, {})), paid)

    def record(self, account: str, email: str) -> ConsentRecord | None:
        """An email's consent record (the pipeline's `ConsentView`, agent/core/consent.py)."""
        key = (account, email)
        if key in self.consents:
            return self.consents[key]
        if self.ahead.covers(account, email):
            return self.ahead.consent.get(key)
        return consent_row(self.db, account, email)

    def suppressions(self, account: str, email: str) -> list[tuple[int, float]]:
        """An email's suppressions as (list id, since) (the `ConsentView`'s other read)."""
        if self.ahead.covers(account, email):
            return sorted(self.ahead.suppressions.get((account, email), ()))
        return suppression_rows(self.db, account, email)

    def cart(self, site: str, cart_id: int) -> Cart | None:
        """A cart as kept (agent/core/carts.py)."""
        cart = self.carts.get((site, cart_id))
        if cart is not None:
            return cart
        ahead, state = self.ahead.cart(site, cart_id)
        if not ahead:
            row = self.db.execute(
                "SELECT state FROM carts WHERE site=? AND cart_id=?", (site, cart_id)
            ).fetchone()
            state = row[0] if row else None
        return cart_from_row(orjson.loads(state)) if state is not None else None

    def open_carts(self, site: str, email: str | None, customer_id: int) -> list[Cart]:
        """The carts not ended yet of an email or a customer, oldest first."""
        stored = self.ahead.open_carts(site, email, customer_id)
        if stored is None:
            stored = [
                r[0]
                for r in self.db.execute(
                    "SELECT cart_id FROM carts WHERE site=? AND due IS NOT NULL"
                    " AND (email=? OR (customer_id=? AND customer_id > 0))",
                    (site, email, customer_id),
                ).fetchall()
            ]
        ids = set(stored) | {
            cid
            for (s, cid), c in self.carts.items()
            if s == site and (c.email == email or (customer_id and c.customer_id == customer_id))
        }
        carts = [c for c in (self.cart(site, i) for i in ids) if c is not None and not c.ended]
        return sorted(carts, key=lambda c: (c.changed_at, c.id))

    def _queued(self, account: str, site: str, intent: Intent) -> tuple[QueuedJob | None, bool]:
        """The key's pending job (this chunk's, else the newest stored one), and whether a job
        for the key is in flight: one lookup."""
        job = self.jobs.get((account, intent.key))
        if job is not None:
            return job, False
        if (account, intent.key) in self.ahead.jobs:
            row: Sequence[Any] | None = self.ahead.jobs[(account, intent.key)]
        else:
            row = self.db.execute(
                "SELECT id, body, historical, state FROM jobs WHERE account=? AND key=?"
                " ORDER BY state, id DESC LIMIT 1",
                (account, intent.key),
            ).fetchone()
        if row is None:
            return None, False
        if row[3] != PENDING:
            return None, True
        if self._erased(account, intent, row[1]):
            return None, False
        job = QueuedJob(
            row[0], account, site, intent.kind, intent.key, _loads(row[1]), bool(row[2])
        )
        self.jobs[(account, intent.key)] = job
        return job, False

    def _erased(self, account: str, intent: Intent, body: str) -> bool:
        """Whether an erasure earlier in the chunk deletes this stored pending job: the test
        of its DELETE (agent/store/privacy.py `plan_erasure`), on the stored body."""
        if intent.kind is Kind.ERASE:
            return False
        for erased_account, email in self.erased:
            needle = json.dumps(email, ensure_ascii=False).lower()
            if erased_account == account and (
                intent.key == f"contact:{email}" or needle in body.lower()
            ):
                return True
        return False

    def _known(self, account: str, key: str) -> dict[str, Any] | None:
        """What Brevo holds for a key, as the last completed job left it (None: nothing)."""
        if (account, key) in self.ahead.known:
            state = self.ahead.known[(account, key)]
        else:
            row = self.db.execute(
                "SELECT state FROM forwarded WHERE account=? AND key=?", (account, key)
            ).fetchone()
            state = row[0] if row else None
        known: dict[str, Any] | None = _loads(state) if state is not None else None
        return known

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
        self.facts.setdefault(site, {})[order_id] = fact
        self.writes.append(
            (
                "INSERT INTO order_facts (site, order_id, email, status, total, created_at)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (site, order_id) DO UPDATE SET"
                " email=excluded.email, status=excluded.status, total=excluded.total,"
                " created_at=excluded.created_at",
                (site, order_id, *fact),
            )
        )

    def set_consent(self, account: str, email: str, record: ConsentRecord) -> None:
        """Keep a consent record the pipeline changed."""
        self.consents[(account, email)] = record
        self.writes.append(consent_upsert(account, email, record))

    def set_carts(self, site: str, outcome: CartOutcome) -> None:
        """Keep what the cart state machine decided: carts, their intents, the counters."""
        for cart in outcome.carts:
            self.carts[(site, cart.id)] = cart
            self.writes.append(
                (
                    "INSERT INTO carts (site, cart_id, status, due, email, customer_id, state)"
                    " VALUES (?,?,?,?,?,?,?) ON CONFLICT (site, cart_id) DO UPDATE SET"
                    " status=excluded.status, due=excluded.due, email=excluded.email,"
                    " customer_id=excluded.customer_id, state=excluded.state",
                    (
                        site,
                        cart.id,
                        cart.status.value,
                        cart.due,
                        cart.email,
                        cart.customer_id,
                        orjson.dumps(cart_row(cart)).decode(),
                    ),
                )
            )
        for intent in with_consent(outcome, self):
            self.add_intent(outcome.account, site, intent)
        for name, n in outcome.counts:
            self.writes.append((BUMP, (site, name, n)))

    def add_intent(self, account: str, site: str, intent: Intent) -> None:
        """Keep an intent to coalesce once the chunk's rows are planned (`settle`): nothing
        in planning reads the job queue, so it reads the keys' rows in one go."""
        self.intents.append((account, site, intent))

    def settle(self) -> None:
        """Coalesce the intents kept so far, in order: read their keys' queued jobs and what
        Brevo holds in one go, then write what the rule decides for each (`_coalesce`).
        Before anything reads the job queue (an erasure cancels the email's pending jobs)
        and before `apply`."""
        intents, self.intents = self.intents, []
        if not intents:
            return
        self.ahead.intents(intents)
        for account, site, intent in intents:
            self._coalesce(account, site, intent)

    def _coalesce(self, account: str, site: str, intent: Intent) -> None:
        """Queue what coalescing the intent writes (agent/core/dedupe.py `coalesce`): a new job,
        the key's pending job merged, or nothing. Reads only the rows the rule looks at."""
        job: QueuedJob | None = None
        in_flight = False
        merges = coalesces(intent.kind)
        if merges:
            job, in_flight = self._queued(account, site, intent)
        pending = None if job is None else Pending(job.body, job.historical)
        read = reads_known(intent, pending, in_flight)
        known = self._known(account, intent.key) if read else None
        write = coalesce(intent, pending, in_flight, known)
        if isinstance(write, Merged):
            assert job is not None
            job.body, job.historical = write.body, write.historical
            if not job.written:
                job.written = True
                self.writes.append(job)
        elif write is not None:
            new = QueuedJob(
                None, account, site, intent.kind, intent.key, write.body, write.historical, True
            )
            self.writes.append(new)
            if merges:
                self.jobs[(account, intent.key)] = new

    def apply(self) -> None:
        """Run the chunk's writes, in order, in the caller's transaction: the intents settled
        first, each run of writes that share a statement sent as one `executemany`."""
        self.settle()
        db = self.db
        for sql, params in self._statements(time.time()):
            if len(params) == 1:
                db.execute(sql, params[0])
            else:
                db.executemany(sql, params)
        db.executemany("UPDATE inbox SET state = 1 WHERE seq = ?", [(s,) for s in self.done])

    def _statements(self, now: float) -> list[tuple[str, list[Sequence[Any]]]]:
        """The writes as (statement, parameters of each run). Between two writes that must
        keep their place (a DELETE, an UPDATE but a merged job's: an erasure's), the upserts
        and the merged jobs' bodies are joined by statement: each changes rows of its own
        table, and one statement's rows keep their order (a key upserted twice, the ids of
        new jobs). So a chunk sends a few `executemany` rather than several writes a row."""
        out: list[tuple[str, list[Sequence[Any]]]] = []
        runs: dict[str, list[Sequence[Any]]] = {}
        for write in self.writes:
            if isinstance(write, QueuedJob):  # an INSERT or a merged job's UPDATE: joined
                sql, params = _job_write(write, now)
            else:
                sql, params = write
                if not (sql.startswith("INSERT") or sql == _JOB_UPDATE):
                    out.extend(runs.items())
                    runs = {}
                    out.append((sql, [params]))
                    continue
            runs.setdefault(sql, []).append(params)
        out.extend(runs.items())
        return out


def _job_write(job: QueuedJob, now: float) -> tuple[str, Sequence[Any]]:
    """The statement that writes a queued job: its merged body, or a new row."""
    if job.id is not None:
        return _JOB_UPDATE, (canonical(job.body), int(job.historical), job.id)
    return _JOB_INSERT, (
        job.account,
        job.site,
        job.kind.value,
        job.key,
        canonical(job.body),
        int(job.historical),
        now,
    )
