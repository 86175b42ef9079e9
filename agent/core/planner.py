"""The Brevo planner: budgets per endpoint family, and single vs batch endpoints by queue depth.

Pure: the clock is passed in. Limits are Brevo's published ones (reference/brevo/NOTES.md §4);
the forwarder corrects them from the `x-sib-ratelimit-*` headers of every answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.core.jobs import FAMILY_OF_KIND, Job, Kind
from agent.core.privacy import erase_path, erase_request_body

__all__ = [
    "BATCH_SIZE",
    "PLAN_LIMITS",
    "Budget",
    "Plan",
    "Request",
    "batch_request",
    "choose",
    "single_request",
]

# (count, period seconds) windows per family and plan. "other" holds every batch endpoint.
PLAN_LIMITS: dict[str, dict[str, list[tuple[int, float]]]] = {
    "general": {
        "contacts": [(10, 1.0), (36_000, 3600.0)],
        "events": [(10, 1.0), (36_000, 3600.0)],
        "orders": [(5, 1.0), (18_000, 3600.0)],
        "products": [(2, 1.0), (7_200, 3600.0)],
        "other": [(100, 3600.0)],
    },
    "advanced": {
        "contacts": [(20, 1.0), (72_000, 3600.0)],
        "events": [(20, 1.0), (72_000, 3600.0)],
        "orders": [(10, 1.0), (36_000, 3600.0)],
        "products": [(4, 1.0), (14_400, 3600.0)],
        "other": [(200, 3600.0)],
    },
    "extended": {
        "contacts": [(60, 1.0)],
        "events": [(60, 1.0)],
        "orders": [(15, 1.0)],
        "products": [(21_600, 3600.0)],
        "other": [(600, 3600.0)],
    },
}

# Items per batch request (NOTES §2): import ≤ 10 MB (we stay far below), orders ≤ 1000,
# products ≤ 100 when creating, categories ≤ 100, coupons ≤ 10,000 codes.
BATCH_SIZE: dict[Kind, int] = {
    Kind.CONTACT: 1000,
    Kind.ORDER: 1000,
    Kind.PRODUCT: 100,
    Kind.CATEGORY: 100,
    Kind.COUPON: 10_000,
}
# The family a kind's batch endpoint is metered in.
BATCH_FAMILY: dict[Kind, str] = {
    Kind.CONTACT: "contacts",
    Kind.ORDER: "other",
    Kind.PRODUCT: "other",
    Kind.CATEGORY: "other",
    Kind.COUPON: "other",
}
# Kinds that only ever go out through their batch endpoint (cheaper on every count).
BATCH_ONLY = frozenset({Kind.CATEGORY, Kind.COUPON})


@dataclass(slots=True)
class _Window:
    count: int
    period: float
    used: int = 0
    start: float | None = None

    def roll(self, now: float) -> None:
        if self.start is None or now >= self.start + self.period:
            self.start, self.used = None, 0


@dataclass(slots=True)
class Budget:
    """Fixed windows, as Brevo meters them: the first request opens a window (NOTES §4)."""

    windows: list[_Window]
    blocked_until: float = 0.0

    @classmethod
    def of(cls, limits: list[tuple[int, float]]) -> Budget:
        """A budget from (count, period) pairs."""
        return cls([_Window(c, p) for c, p in limits])

    def delay(self, now: float) -> float:
        """Seconds to wait before the next request may go (0: now)."""
        wait = max(0.0, self.blocked_until - now)
        for w in self.windows:
            w.roll(now)
            if w.used >= w.count and w.start is not None:
                wait = max(wait, w.start + w.period - now)
        return wait

    def take(self, now: float) -> None:
        """Count one request sent now."""
        for w in self.windows:
            w.roll(now)
            if w.start is None:
                w.start = now
            w.used += 1

    def rate(self) -> float:
        """Sustained requests per second allowed by the tightest window."""
        return min(w.count / w.period for w in self.windows)

    def headroom(self, now: float) -> int:
        """Requests that may go right now without waiting."""
        left = []
        for w in self.windows:
            w.roll(now)
            left.append(w.count - w.used)
        return max(0, min(left)) if now >= self.blocked_until else 0

    def observe(
        self, now: float, limit: int | None, remaining: int | None, reset: float | None
    ) -> None:
        """Adopt what Brevo says about the window (`x-sib-ratelimit-*`), which wins over our count."""
        if remaining is None or reset is None:
            return
        target = None
        if limit is not None:
            target = next((w for w in self.windows if w.count == limit), None)
        if target is None:
            target = min(self.windows, key=lambda w: w.period)
        target.start = now + reset - target.period
        target.used = max(0, target.count - remaining)

    def block(self, now: float, seconds: float) -> None:
        """After a 429: nothing goes until the reset."""
        self.blocked_until = max(self.blocked_until, now + seconds)

    def take_many(self, now: float, n: int) -> float:
        """Take `n` requests at once if every window has room for them: 0.0, taken; else the
        seconds until they may go (nothing taken). A shared budget's atomic take."""
        wait = self.delay(now)
        if wait <= 0:
            for w in self.windows:
                if w.used + n > w.count and w.start is not None:
                    wait = max(wait, w.start + w.period - now)
        if wait > 0:
            return wait
        for _ in range(n):
            self.take(now)
        return 0.0

    def merge_observed(
        self, now: float, limit: int | None, remaining: int | None, reset: float | None
    ) -> None:
        """`observe` for a budget several senders share: what Brevo says only ever makes the
        window stricter. Another sender's requests may be counted here and not yet by Brevo
        (on the wire), so a count is raised, never lowered, and a window is held until the
        later of its own end and Brevo's; an answer about a window that ended before this one
        opened (a late answer) is ignored."""
        if remaining is None or reset is None:
            return
        target = None
        if limit is not None:
            target = next((w for w in self.windows if w.count == limit), None)
        if target is None:
            target = min(self.windows, key=lambda w: w.period)
        target.roll(now)
        brevo_end, brevo_used = now + reset, max(0, target.count - remaining)
        if target.start is None:
            if brevo_used:
                target.start, target.used = brevo_end - target.period, brevo_used
            return
        if brevo_end <= target.start:
            return
        target.start = max(target.start, brevo_end - target.period)
        target.used = max(target.used, brevo_used)


@dataclass(frozen=True, slots=True)
class Plan:
    """How the next request of a kind goes out."""

    batch: bool
    family: str
    size: int


def choose(
    kind: Kind, depth: int, budgets: dict[str, Budget], now: float, live_window: float
) -> Plan:
    """Single endpoints for live traffic; a batch endpoint when it clears the queue sooner.

    Single calls clear `depth` jobs in about depth / rate seconds. A batch endpoint is worth a
    request from its (often scarcer) family when the queue is deeper than single calls clear
    within `live_window`, and when its family can send before single calls would have finished.
    """
    single_family = FAMILY_OF_KIND[kind]
    if kind in BATCH_ONLY:
        return Plan(True, BATCH_FAMILY[kind], BATCH_SIZE[kind])
    if kind not in BATCH_SIZE or depth <= 1:
        return Plan(False, single_family, 1)
    single = budgets[single_family]
    single_time = depth / single.rate()
    if single_time <= live_window:
        return Plan(False, single_family, 1)
    batch_family = BATCH_FAMILY[kind]
    batch_wait = budgets[batch_family].delay(now)
    if batch_wait < single_time:
        return Plan(True, batch_family, BATCH_SIZE[kind])
    return Plan(False, single_family, 1)


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP call to Brevo and the jobs it carries."""

    method: str
    path: str
    body: dict[str, Any] | None  # None: no body (an erasure's DELETE)
    jobs: tuple[Job, ...]
    family: str
    extra_jobs: tuple[Job, ...] = field(default=())  # claimed but not carried: give back


def single_request(job: Job, *, collection_id: str | None = None) -> Request:
    """The single-endpoint call for one job."""
    family = FAMILY_OF_KIND[job.kind]
    body = dict(job.body)
    if job.kind is Kind.CONTACT and "unlinkListIds" in body:
        return _leave_lists(job)
    if job.kind is Kind.CONTACT:
        return Request("POST", "/contacts", body, (job,), family)
    if job.kind is Kind.EVENT:
        return Request("POST", "/events", body, (job,), family)
    if job.kind is Kind.ORDER:
        return Request("POST", "/orders/status", body, (job,), family)
    if job.kind is Kind.PRODUCT:
        return Request("POST", "/products", body, (job,), family)
    if job.kind is Kind.CATEGORY:
        return Request("POST", "/categories", body, (job,), family)
    if job.kind is Kind.DOI:
        # Brevo mails the confirmation and adds the contact to the lists once it is clicked.
        return Request("POST", "/contacts/doubleOptinConfirmation", body, (job,), family)
    if job.kind is Kind.ERASE:
        method, erase_body = erase_request_body(body)
        return Request(method, erase_path(body["email"]), erase_body, (job,), family)
    if job.kind is Kind.COUPON:
        assert collection_id is not None
        codes = sorted(set(body["codes"]))[: BATCH_SIZE[Kind.COUPON]]
        return Request(
            "POST", "/coupons", {"collectionId": collection_id, "coupons": codes}, (job,), "other"
        )
    raise ValueError(f"no endpoint for {job.kind}")


def _leave_lists(job: Job) -> Request:
    """A contact that leaves lists: POST /contacts (create) has no `unlinkListIds`, the batch
    update has (openapi: updateBatchContacts); it updates only, so the contact must exist
    (a recovered cart's contact was created when the cart was abandoned)."""
    item = {
        k: v
        for k, v in job.body.items()
        if k in ("email", "attributes", "listIds", "unlinkListIds") and v
    }
    return Request("POST", "/contacts/batch", {"contacts": [item]}, (job,), "contacts")


def batch_request(jobs: list[Job], *, collection_id: str | None = None) -> Request:
    """One batch call for jobs of one kind (what does not fit is handed back in extra_jobs)."""
    kind = jobs[0].kind
    family = BATCH_FAMILY[kind]
    leaving = next((j for j in jobs if "unlinkListIds" in j.body), None)
    if kind is Kind.CONTACT and leaving is not None:
        # An import cannot take a contact out of a list: that one goes alone.
        r = _leave_lists(leaving)
        return Request(
            r.method, r.path, r.body, r.jobs, r.family, tuple(j for j in jobs if j is not leaving)
        )
    if kind is Kind.CONTACT:
        # /contacts/import takes one listIds for the whole file: send the largest group now.
        groups: dict[tuple[int, ...], list[Job]] = {}
        for j in jobs:
            groups.setdefault(tuple(sorted(j.body.get("listIds", []))), []).append(j)
        lists, group = max(groups.items(), key=lambda kv: len(kv[1]))
        carried = {j.id for j in group}
        rest = tuple(j for j in jobs if j.id not in carried)
        if not lists:
            # Import needs a list; without one, contacts go one by one.
            first = group[0]
            return Request(
                "POST",
                "/contacts",
                dict(first.body),
                (first,),
                "contacts",
                tuple(j for j in jobs if j is not first),
            )
        body: dict[str, Any] = {
            "jsonBody": [
                {"email": j.body["email"], "attributes": j.body.get("attributes", {})}
                for j in group
            ],
            "listIds": list(lists),
            "updateExistingContacts": True,
            "emptyContactsAttributes": False,
            "disableNotification": True,
        }
        return Request("POST", "/contacts/import", body, tuple(group), family, rest)
    if kind is Kind.ORDER:
        # historical=true keeps Brevo automations quiet for past orders (NOTES §2, orders).
        hist = all(j.historical for j in jobs)
        return Request(
            "POST",
            "/orders/status/batch",
            {"orders": [j.body for j in jobs], "historical": hist},
            tuple(jobs),
            family,
        )
    if kind is Kind.PRODUCT:
        items = [{k: v for k, v in j.body.items() if k != "updateEnabled"} for j in jobs]
        return Request(
            "POST",
            "/products/batch",
            {"products": items, "updateEnabled": True},
            tuple(jobs),
            family,
        )
    if kind is Kind.CATEGORY:
        items = [{k: v for k, v in j.body.items() if k != "updateEnabled"} for j in jobs]
        return Request(
            "POST",
            "/categories/batch",
            {"categories": items, "updateEnabled": True},
            tuple(jobs),
            family,
        )
    if kind is Kind.COUPON:
        first, rest_c = jobs[0], tuple(jobs[1:])
        r = single_request(first, collection_id=collection_id)
        return Request(r.method, r.path, r.body, r.jobs, r.family, rest_c)
    raise ValueError(f"no batch endpoint for {kind}")
