"""core/lifecycle.py as data in → data out: prior state and a change in, topics and the state to
remember out. No store, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from agent.core.events import Action, Event, EventId, Resource
from agent.core.lifecycle import derive_topics, is_stale, object_state


def _event(
    resource: Resource, action: Action = Action.UPDATED, rid: int = 7, **payload: Any
) -> Event:
    body = {"id": rid, "date_modified_gmt": "2026-12-01T10:00:00", **payload}
    return Event(
        id=EventId(f"e-{rid}"),
        topic=f"{resource.value}.{action.value}",
        resource=resource,
        action=action,
        resource_id=rid,
        payload=body,
    )


def _order(status: str, action: Action = Action.UPDATED, **payload: Any) -> Event:
    return _event(Resource.ORDER, action, status=status, **payload)


def _after(event: Event) -> dict[str, Any]:
    return object_state(event)


# -- is_stale ---------------------------------------------------------------------------------


def test_an_older_version_than_the_one_seen_is_stale() -> None:
    seen = {"version": "2026-12-01T10:00:05"}
    assert is_stale(seen, _order("processing"))
    assert not is_stale(seen, _order("processing", date_modified_gmt="2026-12-01T10:00:05"))
    assert not is_stale(seen, _order("processing", date_modified_gmt="2026-12-01T10:00:06"))


def test_nothing_seen_a_deletion_or_an_unversioned_body_is_never_stale() -> None:
    assert not is_stale(None, _order("processing"))
    assert not is_stale({}, _order("processing"))
    seen = {"version": "2026-12-01T10:00:05"}
    assert not is_stale(seen, _event(Resource.ORDER, Action.DELETED))
    assert not is_stale(seen, _order("processing", date_modified_gmt=""))
    assert not is_stale({"version": ""}, _order("processing"))


# -- object_state -----------------------------------------------------------------------------


def test_an_order_remembers_version_status_and_refund_ids_sorted() -> None:
    state = object_state(
        _order("processing", refunds=[{"id": 9}, {"id": 3}, {"id": "x"}, "junk", {"total": 1}])
    )
    assert state == {
        "version": "2026-12-01T10:00:00",
        "deleted": False,
        "status": "processing",
        "refunds": [3, 9],
    }


def test_a_product_remembers_its_name_for_the_deletion_and_a_deletion_only_that() -> None:
    assert object_state(_event(Resource.PRODUCT, name="Cap"))["name"] == "Cap"
    assert "name" not in object_state(_event(Resource.VARIATION, name=""))
    gone = object_state(_event(Resource.ORDER, Action.DELETED, date_modified_gmt=None))
    assert gone == {"version": "", "deleted": True}


def test_a_customer_remembers_only_version_and_deletion() -> None:
    assert object_state(_event(Resource.CUSTOMER, email="a@example.com")) == {
        "version": "2026-12-01T10:00:00",
        "deleted": False,
    }


# -- derive_topics ----------------------------------------------------------------------------


@pytest.mark.parametrize("resource", [Resource.CUSTOMER, Resource.PRODUCT, Resource.COUPON])
def test_created_updated_deleted_restored_from_state_not_from_the_door(resource: Resource) -> None:
    first = _event(resource, Action.UPDATED)  # the door says updated; nothing was seen
    assert derive_topics(first, None) == [f"{resource.value}.created"]
    assert derive_topics(_event(resource, Action.CREATED), _after(first)) == [
        f"{resource.value}.updated"
    ]
    gone = _event(resource, Action.DELETED)
    assert derive_topics(gone, _after(first)) == [f"{resource.value}.deleted"]
    assert derive_topics(gone, _after(gone)) == []  # deleted twice: once
    assert derive_topics(_event(resource), _after(gone)) == [f"{resource.value}.restored"]


def test_a_variation_speaks_as_a_product() -> None:
    assert derive_topics(_event(Resource.VARIATION), None) == ["product.created"]
    assert derive_topics(_event(Resource.VARIATION, Action.DELETED), None) == ["product.deleted"]


def test_a_draft_order_is_not_an_order_until_it_leaves_draft() -> None:
    draft = _order("checkout-draft")
    assert derive_topics(draft, None) == []
    assert derive_topics(_order("pending"), _after(draft)) == ["order.created"]


def test_order_status_changes_give_their_lifecycle_topics() -> None:
    pending = _after(_order("pending"))
    assert derive_topics(_order("processing"), pending) == ["order.updated", "order.paid"]
    assert derive_topics(_order("completed"), pending) == [
        "order.updated",
        "order.paid",
        "order.completed",
    ]
    processing = _after(_order("processing"))
    assert derive_topics(_order("completed"), processing) == ["order.updated", "order.completed"]
    assert derive_topics(_order("processing"), processing) == ["order.updated"]  # no change
    assert derive_topics(_order("cancelled"), pending) == ["order.updated", "order.cancelled"]


def test_paid_statuses_come_from_the_config() -> None:
    pending = _after(_order("pending"))
    assert derive_topics(_order("on-hold"), pending) == ["order.updated"]
    assert derive_topics(_order("on-hold"), pending, paid={"on-hold"}) == [
        "order.updated",
        "order.paid",
    ]


def test_a_new_order_already_paid_is_created_and_paid() -> None:
    assert derive_topics(_order("processing"), None) == ["order.created", "order.paid"]


def test_a_refund_is_a_new_refund_id_or_the_refunded_status_without_one() -> None:
    paid = _after(_order("processing"))
    one = _order("processing", refunds=[{"id": 31}])
    assert derive_topics(one, paid) == ["order.updated", "order.refunded"]
    assert derive_topics(one, _after(one)) == ["order.updated"]  # the same refund again
    two = _order("processing", refunds=[{"id": 31}, {"id": 32}])
    assert derive_topics(two, _after(one)) == ["order.updated", "order.refunded"]
    assert derive_topics(_order("refunded"), paid) == ["order.updated", "order.refunded"]
    # Fully refunded after partial refunds: those refunds were already told.
    assert derive_topics(_order("refunded", refunds=[{"id": 31}]), _after(one)) == ["order.updated"]
