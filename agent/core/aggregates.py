"""Per-email aggregates from the orders the agent has seen: what makes a buyer. Pure.

The store keeps one `OrderFact` per order (`fact_after` says which) and hands an email's facts
(`email_facts`) to `aggregate`, which counts only orders in a paid status (docs/mapping.md,
"Buyers"): how many, their totals summed (refunds not subtracted, as in WooCommerce), and the
first and last one's creation time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, NamedTuple

from agent.core.events import Action, Event, Resource
from agent.core.lifecycle import is_stale
from agent.core.normalize import money, normalize_email

__all__ = ["OrderFact", "aggregate", "email_facts", "fact_after", "order_fact"]


class OrderFact(NamedTuple):
    """What an order adds to its buyer's aggregates; a trashed order's status is `trash`."""

    email: str
    status: str
    total: float
    created: str  # date_created_gmt (or date_created), ISO 8601


def order_fact(event: Event) -> OrderFact | None:
    """An order's fact, for the per-email aggregates (None for anything else)."""
    if event.resource is not Resource.ORDER or event.action is Action.DELETED:
        return None
    p = event.payload
    email = normalize_email((p.get("billing") or {}).get("email"))
    if email is None:
        return None
    created = p.get("date_created_gmt") or p.get("date_created") or ""
    return OrderFact(email, str(p.get("status") or ""), money(p.get("total")) or 0.0, str(created))


def fact_after(
    event: Event,
    prior: dict[str, Any] | None,
    new: OrderFact | None,
    stored: OrderFact | None,
) -> OrderFact | None:
    """An order's fact once this event is processed, or None to keep the stored one as it is.

    `new` is the event's own fact (`order_fact`), `prior` the object's last processed state,
    `stored` the order's kept fact. A stale version changes nothing; a deleted order's fact
    stays, as trash, so its buyer's aggregates stop counting it.
    """
    if new is not None and not is_stale(prior, event):
        return new
    if event.resource is Resource.ORDER and event.action is Action.DELETED and stored is not None:
        return stored._replace(status="trash")
    return None


def email_facts(
    email: str, stored: Mapping[int, OrderFact], changed: Mapping[int, OrderFact]
) -> list[OrderFact]:
    """An email's order facts: `stored` (order id → fact, this email's) overlaid with the facts
    `changed` since (order id → fact, any email): an order moved to another email leaves it."""
    kept = [fact for order_id, fact in stored.items() if order_id not in changed]
    return kept + [fact for fact in changed.values() if fact.email == email]


def aggregate(facts: Iterable[OrderFact], paid: Collection[str]) -> dict[str, Any]:
    """orders_count, total_spent, first_order_date, last_order_date over the paid orders."""
    count, spent, dates = 0, 0.0, []
    for fact in facts:
        if fact.status not in paid:
            continue  # drafts, trash, unpaid orders count for nothing
        count += 1
        spent += fact.total
        if fact.created:
            dates.append(fact.created)
    return {
        "orders_count": count,
        "total_spent": round(spent, 2),
        "first_order_date": min(dates) if dates else None,
        "last_order_date": max(dates) if dates else None,
    }
