"""The dedupe rules, data in, data out: no store, no sockets (agent/core/dedupe.py)."""

from __future__ import annotations

from typing import Any

from agent.core.dedupe import (
    Merged,
    NewJob,
    Pending,
    claimable,
    coalesce,
    known_after,
    largest_list_group,
    minus_known,
    reads_known,
)
from agent.core.jobs import Intent, Kind, body_hash


def contact(attrs: dict[str, Any], lists: list[int] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"email": "a@x.io", "attributes": attrs, "updateEnabled": True}
    if lists is not None:
        body["listIds"] = lists
    return body


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
    assert minus_known(Kind.COUPON, coupons, {"codes": ["B", "A"]}) is None
    assert known_after(Kind.COUPON, {"codes": ["C"]}, {"codes": ["B", "A"]}) == {
        "codes": ["A", "B", "C"]
    }


def test_the_largest_group_of_contacts_sharing_lists_goes_together() -> None:
    rows = [(1, "contact:a", "[50]"), (2, "contact:b", "[50,51]"), (3, "contact:c", "[51,50]"),
            (4, "contact:b", "[50]")]  # fmt: skip
    assert largest_list_group(rows) == [2, 3]  # one job per key: b's second job waits
    assert largest_list_group([(5, "contact:d", None), (6, "contact:e", None)]) == [5]
    assert largest_list_group([]) == []


def test_an_intent_merges_into_the_pending_job_of_its_key() -> None:
    intent = Intent(Kind.CONTACT, "contact:a@x.io", contact({"ORDER_COUNT": 2}, [51]), True)
    pending = Pending(contact({"FIRSTNAME": "Ann"}, [50]), historical=False)
    # Brevo's record is not consulted: the pending job will change what Brevo holds.
    assert not reads_known(intent, pending, in_flight=False)
    write = coalesce(intent, pending, False, {"attributes": {"ORDER_COUNT": 2}})
    assert write == Merged(contact({"FIRSTNAME": "Ann", "ORDER_COUNT": 2}, [50, 51]), False)
    # Historical only when both are.
    both = coalesce(intent, Pending(pending.body, historical=True), False, None)
    assert isinstance(both, Merged) and both.historical
    # A pending job wins over one in flight: the intent rides the queued one.
    assert isinstance(coalesce(intent, pending, True, None), Merged)


def test_an_intent_goes_whole_while_a_job_of_its_key_flies() -> None:
    # The order went on-hold (in flight), then back to what Brevo's record says: it must still
    # be sent, or the job in flight would have the last word.
    order = {"id": "7", "status": "processing"}
    intent = Intent(Kind.ORDER, "order:s1:7", order)
    assert not reads_known(intent, None, in_flight=True)
    assert coalesce(intent, None, True, {"hash": body_hash(order)}) == NewJob(order, False)


def test_otherwise_only_what_brevo_lacks_is_queued() -> None:
    intent = Intent(Kind.CONTACT, "contact:a@x.io", contact({"FIRSTNAME": "Ann", "X": 1}, [50]))
    assert reads_known(intent, None, in_flight=False)
    known = {"attributes": {"FIRSTNAME": "Ann"}, "listIds": [50]}
    assert coalesce(intent, None, False, known) == NewJob(contact({"X": 1}), False)
    assert coalesce(intent, None, False, known_after(Kind.CONTACT, intent.body, known)) is None
    fresh = Intent(Kind.PRODUCT, "product:s1:9", {"id": "9"}, historical=True)
    assert coalesce(fresh, None, False, None) == NewJob({"id": "9"}, True)


def test_events_never_merge_and_are_sent_once() -> None:
    body = {"event_name": "order_paid", "identifiers": {"email_id": "a@x.io"}}
    intent = Intent(Kind.EVENT, "event:s1:order_paid:order:7:v1", body)
    # Whatever is queued or flying for the key, an event is judged against Brevo's record only.
    pending = Pending({"event_name": "order_placed"}, False)
    assert reads_known(intent, pending, in_flight=True)
    assert coalesce(intent, pending, True, None) == NewJob(body, False)
    assert coalesce(intent, pending, True, {"hash": body_hash(body)}) is None


def test_a_claim_takes_one_job_per_key_except_events() -> None:
    due = [(1, "contact:a"), (2, "contact:b"), (3, "contact:a"), (4, "contact:c")]
    assert claimable(Kind.CONTACT, due) == [1, 2, 4]  # a's second job waits for the first
    assert claimable(Kind.EVENT, due) == [1, 2, 3, 4]
    assert claimable(Kind.ORDER, []) == []
