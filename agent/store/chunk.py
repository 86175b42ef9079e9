"""What a chunk of inbox rows reads and writes while the pipeline runs on it.

The rules are the core's (agent/core/dedupe.py `coalesce`, agent/core/aggregates.py
`aggregate`); a chunk reads the rows they need and keeps what they decide, in order, for one
write transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from agent.core.aggregates import OrderFact, aggregate, email_facts
from agent.core.carts import Cart, CartOutcome, cart_from_row, cart_row, with_consent
from agent.core.consent import ConsentRecord
from agent.core.dedupe import Merged, Pending, coalesce, coalesces, reads_known
from agent.core.jobs import Intent, Kind, canonical
from agent.store.consent import consent_row, consent_upsert, suppression_rows
from agent.store.rows import BUMP, Db
from agent.store.schema import PENDING

__all__ = ["PRELOAD_ROWS", "Chunk"]

# Ids per query when a chunk reads its objects ahead (`Chunk.preload`); a chunk holds fewer.
PRELOAD_ROWS = 500


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
        # Committed rows read ahead for the chunk's events (`preload`), None where none is.
        self.stored_objects: dict[tuple[str, str, int], str | None] = {}
        self.stored_facts: dict[tuple[str, int], OrderFact | None] = {}

    # -- reads ----------------------------------------------------------------------------

    def preload(self, keys: Iterable[tuple[str, str, int]]) -> None:
        """Read the committed state of these objects (site, resource, id), and the facts of
        the orders among them, in one query per site and resource rather than one per event
        (what `prior` and `fact` read: 7 µs a row alone, under 1 µs in a list). Nothing but
        processing writes either, and a chunk runs in one call on the store's thread (see
        the class), so this reads what they would have read."""
        wanted: dict[tuple[str, str], set[int]] = {}
        for site, resource, rid in keys:
            wanted.setdefault((site, resource), set()).add(rid)
        for (site, resource), ids in wanted.items():
            part = sorted(ids)
            for start in range(0, len(part), PRELOAD_ROWS):
                self._preload(site, resource, part[start : start + PRELOAD_ROWS])

    def _preload(self, site: str, resource: str, ids: list[int]) -> None:
        marks = ",".join("?" * len(ids))
        self.stored_objects.update({(site, resource, rid): None for rid in ids})
        for rid, state in self.db.execute(
            "SELECT resource_id, state FROM objects WHERE site=? AND resource=?"
            f" AND resource_id IN ({marks})",
            (site, resource, *ids),
        ).fetchall():
            self.stored_objects[(site, resource, rid)] = state
        if resource != "order":
            return
        self.stored_facts.update({(site, rid): None for rid in ids})
        for row in self.db.execute(
            "SELECT order_id, email, status, total, created_at FROM order_facts"
            f" WHERE site=? AND order_id IN ({marks})",
            (site, *ids),
        ).fetchall():
            self.stored_facts[(site, row[0])] = OrderFact(*row[1:])

    def prior(self, key: tuple[str, str, int]) -> dict[str, Any] | None:
        """An object's last processed state."""
        state = self.objects.get(key)
        if state is None and key in self.stored_objects:
            state = self.stored_objects[key]
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
        if (site, order_id) in self.stored_facts:
            return self.stored_facts[(site, order_id)]
        row = self.db.execute(
            "SELECT email, status, total, created_at FROM order_facts WHERE site=? AND order_id=?",
            (site, order_id),
        ).fetchone()
        return OrderFact(*row) if row else None

    def aggregates(self, site: str, email: str, paid: Collection[str]) -> dict[str, Any]:
        """The email's aggregates over its committed order facts and those this chunk changed."""
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
        return consent_row(self.db, account, email)

    def suppressions(self, account: str, email: str) -> list[tuple[int, float]]:
        """An email's suppressions as (list id, since) (the `ConsentView`'s other read)."""
        return suppression_rows(self.db, account, email)

    def cart(self, site: str, cart_id: int) -> Cart | None:
        """A cart as kept (agent/core/carts.py)."""
        cart = self.carts.get((site, cart_id))
        if cart is not None:
            return cart
        row = self.db.execute(
            "SELECT state FROM carts WHERE site=? AND cart_id=?", (site, cart_id)
        ).fetchone()
        return cart_from_row(orjson.loads(row[0])) if row else None

    def open_carts(self, site: str, email: str | None, customer_id: int) -> list[Cart]:
        """The carts not ended yet of an email or a customer, oldest first."""
        rows = self.db.execute(
            "SELECT cart_id FROM carts WHERE site=? AND due IS NOT NULL"
            " AND (email=? OR (customer_id=? AND customer_id > 0))",
            (site, email, customer_id),
        ).fetchall()
        ids = {r[0] for r in rows} | {
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
        row = self.db.execute(
            "SELECT id, body, historical, state FROM jobs WHERE account=? AND key=?"
            " ORDER BY state, id DESC LIMIT 1",
            (account, intent.key),
        ).fetchone()
        if row is None:
            return None, False
        if row[3] != PENDING:
            return None, True
        job = QueuedJob(
            row[0], account, site, intent.kind, intent.key, _loads(row[1]), bool(row[2])
        )
        self.jobs[(account, intent.key)] = job
        return job, False

    def _known(self, account: str, key: str) -> dict[str, Any] | None:
        """What Brevo holds for a key, as the last completed job left it (None: nothing)."""
        row = self.db.execute(
            "SELECT state FROM forwarded WHERE account=? AND key=?", (account, key)
        ).fetchone()
        known: dict[str, Any] | None = _loads(row[0]) if row else None
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
        """Queue what coalescing the intent writes (agent/core/dedupe.py `coalesce`): a new job,
        the key's pending job merged, or nothing. Reads only the rows the rule looks at."""
        job: QueuedJob | None = None
        in_flight = False
        if coalesces(intent.kind):
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
            if coalesces(intent.kind):
                self.jobs[(account, intent.key)] = new

    def apply(self) -> None:
        """Run the chunk's writes, in order, in the caller's transaction."""
        db = self.db
        now = time.time()
        for write in self.writes:
            if not isinstance(write, QueuedJob):
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
