"""What a chunk of inbox rows reads ahead: the committed rows its events will ask for, in a
few queries per chunk rather than several per event.

Each read of agent/store/chunk.py `Chunk` costs a query: on SQLite about 7 µs, on PostgreSQL
a round trip to the server (~80 µs on loopback), and a REST order asks for eight (its object,
its facts, its email's order facts, consent record and suppressions, its buyer's open carts,
its jobs' queued versions and what Brevo holds for them). The rows are known from the events
themselves (their keys, and the emails and buyers in their payloads, normalized as the
pipeline does), so each table is read once per site or account for the whole chunk, with up
to PRELOAD_ROWS keys a query: eagerly for the objects and facts (`events`); at the first
read of a site or an account for the emails and carts (a chunk of products asks for none);
once the chunk's rows are planned for the jobs and what Brevo holds (`intents`: the keys are
the pipeline's output).

What is read ahead is what the per-row query would have returned: nothing but processing
writes these tables while a chunk is planned (the class docstring of `Chunk`), except a claim
that moves a job from pending to in flight, which the jobs read, last, sees as the per-row
read would have (and which PostgreSQL checks again under a lock before the write). A read the
events did not foresee (an email only an object's prior state knows) runs its own query:
`covers` says which.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from agent.core.aggregates import OrderFact
from agent.core.carts import order_buyer
from agent.core.consent import ConsentRecord
from agent.core.dedupe import coalesces
from agent.core.events import Event, Resource
from agent.core.jobs import Intent
from agent.core.normalize import normalize_email
from agent.store.rows import Db

__all__ = ["PRELOAD_ROWS", "Ahead", "QueuedRow"]

# Keys per query when a chunk reads ahead; a chunk holds fewer rows.
PRELOAD_ROWS = 500

# A key's queued job as `Chunk._queued` reads it: (id, body, historical, state).
QueuedRow = tuple[int, str, int, int]

# Who placed an order, and when (agent/core/carts.py `order_buyer`).
Buyer = tuple[str | None, int, float]


def _parts(keys: Iterable[Any]) -> Iterator[list[Any]]:
    wanted = sorted(set(keys))
    for start in range(0, len(wanted), PRELOAD_ROWS):
        yield wanted[start : start + PRELOAD_ROWS]


def _marks(part: Sequence[Any]) -> str:
    return ",".join("?" * len(part))


def event_emails(event: Event) -> set[str]:
    """The emails an event's planning may read by: a customer's, an order's billing one, a
    cart's (each normalized as agent/core/pipeline.py does)."""
    p = event.payload
    found = {
        normalize_email(p.get("email")),
        normalize_email((p.get("billing") or {}).get("email")),
    }
    return {e for e in found if e is not None}


class Ahead:
    """The committed rows a chunk's events ask for, read in batches (see the module)."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.postgres = getattr(db, "dialect", "sqlite") == "postgresql"
        self.objects: dict[tuple[str, str, int], str | None] = {}
        self.facts: dict[tuple[str, int], OrderFact | None] = {}
        # The chunk's emails, per site (its order facts) and in all (consent, suppressions).
        self.emails: dict[str, set[str]] = {}
        self.all_emails: set[str] = set()
        self.buyers: dict[str, tuple[set[str], set[int]]] = {}  # site → emails, customer ids
        # Each event's `order_buyer`, by id (with the event: the id is its object's only while
        # it lives).
        self.buyer_of: dict[int, tuple[Event, Buyer | None]] = {}
        self.cart_ids: dict[str, set[int]] = {}
        # Read once asked for: sites, accounts, then rows.
        self.fact_sites: set[str] = set()
        self.email_facts: dict[tuple[str, str], dict[int, OrderFact]] = {}
        self.consent_accounts: set[str] = set()
        self.consent: dict[tuple[str, str], ConsentRecord] = {}
        self.suppressions: dict[tuple[str, str], list[tuple[int, float]]] = {}
        self.cart_sites: set[str] = set()
        self.carts: dict[tuple[str, int], str | None] = {}  # state of carts read, None: none
        self.open: dict[str, list[tuple[int, str | None, int]]] = {}  # site → id, email, customer
        self.jobs: dict[tuple[str, str], QueuedRow | None] = {}
        self.known: dict[tuple[str, str], str | None] = {}

    def _rows(
        self,
        select: str,
        where: tuple[str, tuple[Any, ...]],
        keyed: tuple[str, str, list[Any]],
        tail: str = "",
    ) -> list[Any]:
        """`SELECT {select} WHERE {where} AND {column} IN part` (+ `tail` per key on
        PostgreSQL, where each key is looked up on its own, in one statement: with statistics
        older than a backlog, which autovacuum refreshes a minute later at best, its planner
        answers an IN list with a scan of every row of the site or the account, 4 ms a chunk
        at 13,000 jobs and growing, instead of an index lookup per key, 0.5 ms)."""
        column, cast, part = keyed
        clause, args = where
        if not self.postgres:
            sql = f"SELECT {select} WHERE {clause} AND {column} IN ({_marks(part)})"
            return self.db.execute(sql, (*args, *part)).fetchall()
        sql = (
            f"SELECT t.* FROM unnest(?::{cast}[]) AS k(v) CROSS JOIN LATERAL"
            f" (SELECT {select} WHERE {clause} AND {column} = k.v {tail or 'OFFSET 0'}) AS t"
        )
        return self.db.execute(sql, (part, *args)).fetchall()

    # -- what the events name -------------------------------------------------------------

    def events(self, events: Iterable[tuple[str, Event]], *, carts: bool) -> None:
        """Note the emails, buyers and carts of the chunk's events; read their objects and
        order facts now (every event asks for those)."""
        keys: list[tuple[str, str, int]] = []
        for site, event in events:
            keys.append((site, event.resource.value, event.resource_id))
            emails = event_emails(event)
            self.emails.setdefault(site, set()).update(emails)
            self.all_emails.update(emails)
            if event.resource is Resource.CART:
                self.cart_ids.setdefault(site, set()).add(event.resource_id)
            buyer = order_buyer(event) if carts else None
            if carts:  # kept for the row's planning, which asks again (`buyer`)
                self.buyer_of[id(event)] = (event, buyer)
            if buyer is not None:
                mails, customers = self.buyers.setdefault(site, (set(), set()))
                if buyer[0] is not None:
                    mails.add(buyer[0])
                if buyer[1] > 0:
                    customers.add(buyer[1])
        self._preload(keys)

    def _preload(self, keys: Iterable[tuple[str, str, int]]) -> None:
        """Read the committed state of these objects (site, resource, id), and the facts of
        the orders among them, in one query per site and resource."""
        wanted: dict[tuple[str, str], set[int]] = {}
        for site, resource, rid in keys:
            wanted.setdefault((site, resource), set()).add(rid)
        for (site, resource), ids in wanted.items():
            for part in _parts(ids):
                self._objects(site, resource, part)

    def _objects(self, site: str, resource: str, ids: list[int]) -> None:
        self.objects.update({(site, resource, rid): None for rid in ids})
        for rid, state in self._rows(
            "resource_id, state FROM objects",
            ("site=? AND resource=?", (site, resource)),
            ("resource_id", "bigint", ids),
        ):
            self.objects[(site, resource, rid)] = state
        if resource != "order":
            return
        self.facts.update({(site, rid): None for rid in ids})
        for row in self._rows(
            "order_id, email, status, total, created_at FROM order_facts",
            ("site=?", (site,)),
            ("order_id", "bigint", ids),
        ):
            self.facts[(site, row[0])] = OrderFact(*row[1:])

    def buyer(self, event: Event) -> Buyer | None:
        """The event's `order_buyer` (agent/core/carts.py), as noted by `events` if it was."""
        noted = self.buyer_of.get(id(event))
        if noted is not None and noted[0] is event:
            return noted[1]
        return order_buyer(event)

    # -- read at the first ask ------------------------------------------------------------

    def order_facts(self, site: str, email: str) -> dict[int, OrderFact] | None:
        """The committed order facts of an email (order id → fact), None when not foreseen."""
        if email not in self.emails.get(site, ()):
            return None
        if site not in self.fact_sites:
            self.fact_sites.add(site)
            for part in _parts(self.emails[site]):
                for row in self._rows(
                    "order_id, email, status, total, created_at FROM order_facts",
                    ("site=?", (site,)),
                    ("email", "text", part),
                ):
                    self.email_facts.setdefault((site, row[1]), {})[row[0]] = OrderFact(*row[1:])
        return self.email_facts.get((site, email), {})

    def covers(self, account: str, email: str) -> bool:
        """Whether the email's consent record and suppressions on the account are read
        ahead (reading them, with the chunk's other emails', at the account's first ask)."""
        if email not in self.all_emails:
            return False
        if account not in self.consent_accounts:
            self.consent_accounts.add(account)
            for part in _parts(self.all_emails):
                self._consent(account, part)
        return True

    def _consent(self, account: str, part: list[str]) -> None:
        for email, subscribed, since, source, doi in self._rows(
            "email, subscribed, since, source, doi FROM consent",
            ("account=?", (account,)),
            ("email", "text", part),
        ):
            self.consent[(account, email)] = ConsentRecord(bool(subscribed), since, source, doi)
        for email, list_id, since in self._rows(
            "email, list_id, since FROM suppression",
            ("account=?", (account,)),
            ("email", "text", part),
        ):
            self.suppressions.setdefault((account, email), []).append((int(list_id), float(since)))

    def open_carts(self, site: str, email: str | None, customer_id: int) -> list[int] | None:
        """The ids of a buyer's carts not ended yet as committed, None when not foreseen."""
        mails, customers = self.buyers.get(site, (set(), set()))
        if (email is not None and email not in mails) or (
            customer_id > 0 and customer_id not in customers
        ):
            return None
        if site not in self.cart_sites:
            self.cart_sites.add(site)
            self._open_carts(site, mails, customers)
        return [
            cid
            for cid, e, c in self.open.get(site, ())
            if (email is not None and e == email) or (customer_id > 0 and c == customer_id)
        ]

    def _open_carts(self, site: str, mails: set[str], customers: set[int]) -> None:
        seen: set[int] = set()  # a cart may match by its email and by its customer
        keyed: tuple[tuple[str, str, set[Any]], ...] = (
            ("email", "text", mails),
            ("customer_id", "bigint", customers),
        )
        for column, cast, keys in keyed:
            for part in _parts(keys):
                for cid, email, customer, state in self._rows(
                    "cart_id, email, customer_id, state FROM carts",
                    ("site=? AND due IS NOT NULL", (site,)),
                    (column, cast, part),
                ):
                    if cid not in seen:
                        seen.add(cid)
                        self.open.setdefault(site, []).append((cid, email, customer))
                    self.carts[(site, cid)] = state

    def cart(self, site: str, cart_id: int) -> tuple[bool, str | None]:
        """(whether read ahead, the cart's committed state or None)."""
        if (site, cart_id) in self.carts:
            return True, self.carts[(site, cart_id)]
        ids = self.cart_ids.pop(site, None)
        if ids is None or cart_id not in ids:
            return False, None
        for part in _parts(ids):
            self.carts.update({(site, cid): None for cid in part if (site, cid) not in self.carts})
            for cid, state in self._rows(
                "cart_id, state FROM carts", ("site=?", (site,)), ("cart_id", "bigint", part)
            ):
                self.carts[(site, cid)] = state
        return True, self.carts[(site, cart_id)]

    # -- what the planned rows queue ------------------------------------------------------

    def intents(self, intents: Iterable[tuple[str, str, Intent]]) -> None:
        """Read each key's queued job (for the kinds that coalesce) and what Brevo holds."""
        keys: dict[str, set[str]] = {}
        queued: dict[str, set[str]] = {}
        for account, _, intent in intents:
            keys.setdefault(account, set()).add(intent.key)
            if coalesces(intent.kind):
                queued.setdefault(account, set()).add(intent.key)
        for account, names in queued.items():
            for part in _parts(names):
                self._jobs(account, part)
        for account, names in keys.items():
            for part in _parts(names):
                self.known.update({(account, k): None for k in part})
                for key, state in self._rows(
                    "key, state FROM forwarded", ("account=?", (account,)), ("key", "text", part)
                ):
                    self.known[(account, key)] = state

    def _jobs(self, account: str, part: list[str]) -> None:
        """Each key's job as `ORDER BY state, id DESC LIMIT 1` picks it (jobs leave the table
        once done: a key has few rows)."""
        self.jobs.update({(account, k): None for k in part})
        for key, jid, body, historical, state in self._rows(
            "key, id, body, historical, state FROM jobs",
            ("account=?", (account,)),
            ("key", "text", part),
            "ORDER BY state, id DESC LIMIT 1",
        ):
            best = self.jobs[(account, key)]
            if best is None or (state, -jid) < (best[3], -best[0]):
                self.jobs[(account, key)] = (jid, body, historical, state)
