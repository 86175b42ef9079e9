"""The order facts and their aggregates, data in, data out: no store (agent/core/aggregates.py)."""

from __future__ import annotations

from typing import Any

from agent.core.aggregates import OrderFact, aggregate, email_facts, fact_after, order_fact
from agent.core.events import Door, Event, parse_event

PAID = ("processing", "completed")


def order_event(topic: str, payload: dict[str, Any]) -> Event:
    ev = parse_event({"topic": topic, "payload": payload}, door=Door.POLL)
    assert isinstance(ev, Event), ev
    return ev


def test_only_paid_orders_count() -> None:
    facts = [
        OrderFact("a@x.io", "completed", 10.0, "2026-10-01T00:00:00"),
        OrderFact("a@x.io", "processing", 15.5, "2026-10-03T00:00:00"),
        OrderFact("a@x.io", "failed", 99.0, "2026-09-01T00:00:00"),
        OrderFact("a@x.io", "trash", 99.0, "2026-09-02T00:00:00"),
        OrderFact("a@x.io", "on-hold", 7.0, "2026-10-05T00:00:00"),
    ]
    assert aggregate(facts, PAID) == {
        "orders_count": 2,
        "total_spent": 25.5,
        "first_order_date": "2026-10-01T00:00:00",
        "last_order_date": "2026-10-03T00:00:00",
    }
    assert aggregate(facts, (*PAID, "on-hold"))["orders_count"] == 3
    assert aggregate([OrderFact("a@x.io", "completed", 5.0, "")], PAID)["last_order_date"] is None
    assert aggregate([], PAID) == {
        "orders_count": 0,
        "total_spent": 0.0,
        "first_order_date": None,
        "last_order_date": None,
    }


def test_an_order_event_gives_its_fact() -> None:
    order = {"id": 7, "status": "completed", "total": "12.50", "date_modified_gmt": "2026-10-02",
             "billing": {"email": " Ann@X.io "}, "date_created_gmt": "2026-10-01T00:00:00"}  # fmt: skip
    assert order_fact(order_event("order.updated", order)) == OrderFact(
        "ann@x.io", "completed", 12.5, "2026-10-01T00:00:00"
    )
    assert order_fact(order_event("order.updated", {**order, "billing": {}})) is None
    assert order_fact(order_event("order.deleted", {"id": 7})) is None
    customer = {"id": 7, "email": "ann@x.io", "date_modified_gmt": "2026-10-02"}
    assert order_fact(order_event("customer.updated", customer)) is None


def test_a_new_version_replaces_the_fact_a_stale_one_does_not() -> None:
    new = order_event("order.updated", {"id": 7, "date_modified_gmt": "2026-10-02T00:00:00"})
    stored = OrderFact("a@x.io", "processing", 10.0, "2026-10-01T00:00:00")
    fact = stored._replace(status="completed")
    assert fact_after(new, {"version": "2026-10-01T00:00:00"}, fact, stored) == fact
    assert fact_after(new, None, fact, None) == fact
    # An older version than the one already processed changes nothing.
    assert fact_after(new, {"version": "2026-10-03T00:00:00"}, fact, stored) is None
    assert fact_after(new, None, None, stored) is None  # no fact (no email): kept as it is


def test_a_deleted_order_stays_as_trash_and_counts_for_nothing() -> None:
    deleted = order_event("order.deleted", {"id": 7})
    stored = OrderFact("a@x.io", "completed", 10.0, "2026-10-01T00:00:00")
    trashed = fact_after(deleted, {"version": "2026-10-01T00:00:00"}, None, stored)
    assert trashed == OrderFact("a@x.io", "trash", 10.0, "2026-10-01T00:00:00")
    assert aggregate([trashed], PAID)["orders_count"] == 0
    assert fact_after(deleted, None, None, None) is None  # an order never seen: nothing kept
    product = order_event("product.deleted", {"id": 7})
    assert fact_after(product, None, None, stored) is None


def test_an_emails_facts_are_the_stored_ones_overlaid_with_the_changed() -> None:
    a1 = OrderFact("a@x.io", "completed", 10.0, "2026-10-01T00:00:00")
    a2 = OrderFact("a@x.io", "processing", 5.0, "2026-10-02T00:00:00")
    stored = {1: a1, 2: a2}
    changed = {
        2: a2._replace(email="b@x.io"),  # moved to another email: leaves a@x.io
        1: a1._replace(status="refunded"),  # changed status: replaces the stored one
        3: OrderFact("a@x.io", "completed", 7.0, "2026-10-03T00:00:00"),  # new
        4: OrderFact("c@x.io", "completed", 1.0, "2026-10-04T00:00:00"),  # another email's
    }
    assert email_facts("a@x.io", stored, changed) == [changed[1], changed[3]]
    assert email_facts("a@x.io", stored, {}) == [a1, a2]
    assert email_facts("b@x.io", {}, changed) == [changed[2]]
