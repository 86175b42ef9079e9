"""The dedupe and aggregate rules, data in, data out: no store, no sockets (issue 12)."""

from __future__ import annotations

from agent.core.aggregates import OrderFact, aggregate
from agent.core.dedupe import known_after, largest_list_group, minus_known
from agent.core.jobs import Kind, body_hash

PAID = ("processing", "completed")


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
    assert aggregate([], PAID) == {
        "orders_count": 0,
        "total_spent": 0.0,
        "first_order_date": None,
        "last_order_date": None,
    }


def test_a_contact_sends_only_what_brevo_lacks() -> None:
    known = {"attributes": {"FIRSTNAME": "Ann", "ORDER_COUNT": 1}, "listIds": [50]}
    body = {
        "email": "a@x.io",
        "attributes": {"FIRSTNAME": "Ann", "ORDER_COUNT": 2},
        "listIds": [50, 51],
        "updateEnabled": True,
    }
    assert minus_known(Kind.CONTACT, body, known) == {
        "email": "a@x.io",
        "attributes": {"ORDER_COUNT": 2},
        "listIds": [51],
        "updateEnabled": True,
    }
    after = known_after(Kind.CONTACT, body, known)
    assert after == {"attributes": {"FIRSTNAME": "Ann", "ORDER_COUNT": 2}, "listIds": [50, 51]}
    assert minus_known(Kind.CONTACT, body, after) is None
    assert minus_known(Kind.CONTACT, body, None) is body


def test_other_kinds_compare_whole_bodies_and_coupons_codes() -> None:
    order = {"id": "7", "status": "completed"}
    assert minus_known(Kind.ORDER, order, {"hash": body_hash(order)}) is None
    assert minus_known(
        Kind.ORDER, {**order, "status": "refunded"}, known_after(Kind.ORDER, order, None)
    )
    coupons = {"collection": "C", "codes": ["A", "B"]}
    assert minus_known(Kind.COUPON, coupons, {"codes": ["A"]}) == {
        "collection": "C",
        "codes": ["B"],
    }


def test_the_largest_group_of_contacts_sharing_lists_goes_together() -> None:
    rows = [(1, "contact:a", "[50]"), (2, "contact:b", "[50,51]"), (3, "contact:c", "[51,50]"),
            (4, "contact:b", "[50]")]  # fmt: skip
    assert largest_list_group(rows) == [2, 3]  # one job per key: b's second job waits
    assert largest_list_group([(5, "contact:d", None), (6, "contact:e", None)]) == [5]
    assert largest_list_group([]) == []
