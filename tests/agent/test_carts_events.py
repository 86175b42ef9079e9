"""Cart events as the plugin sends them (docs/carts.md): parsed, or refused with the field."""

from __future__ import annotations

from typing import Any

import pytest

from agent.core.events import Action, Door, Event, Rejection, Resource, parse_event
from tests.agent.test_carts_core import snap


def raw(topic: str = "cart.updated", **payload: Any) -> dict[str, Any]:
    body = {**snap(), **payload}
    return {"id": "c-1", "topic": topic, "resource": "cart", "resource_id": 1, "payload": body}


@pytest.mark.parametrize(
    ("topic", "action"),
    [
        ("cart.updated", Action.UPDATED),
        ("cart.emptied", Action.EMPTIED),
        ("cart.restored", Action.RESTORED),
    ],
)
def test_the_three_cart_topics_parse(topic: str, action: Action) -> None:
    event = parse_event(raw(topic), door=Door.STREAM)
    assert isinstance(event, Event)
    assert (event.resource, event.action, event.resource_id) == (Resource.CART, action, 1)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"token": "short"}, "payload.token"),
        ({"token": None}, "payload.token"),
        ({"email": 5}, "payload.email"),
        ({"email": "not-an-address"}, "payload.email"),
        ({"customer_id": -1}, "payload.customer_id"),
        ({"items": "cap"}, "payload.items"),
        ({"items": [{"name": "Cap", "quantity": 1}]}, "payload.items[0]"),
        ({"items": [{"product_id": 1, "quantity": 0}]}, "payload.items[0].quantity"),
        ({"totals": {"total": "lots"}}, "payload.totals.total"),
        ({"totals": None}, "payload.totals.total"),
        ({"currency": "euro"}, "payload.currency"),
    ],
)
def test_a_bad_cart_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    refused = parse_event(raw(**change), door=Door.STREAM)
    assert isinstance(refused, Rejection)
    assert refused.code == "invalid_payload"
    assert f"event: {field}:" in refused.message


def test_a_guest_without_an_email_yet_is_accepted() -> None:
    assert isinstance(parse_event(raw(email=None), door=Door.STREAM), Event)


def test_a_cart_without_its_version_is_refused() -> None:
    event = raw()
    del event["payload"]["date_modified_gmt"]
    refused = parse_event(event, door=Door.STREAM)
    assert isinstance(refused, Rejection) and "date_modified_gmt" in refused.message


@pytest.mark.parametrize("door", [Door.WEBHOOK, Door.POLL, Door.BACKFILL, Door.FILE])
def test_carts_ride_only_the_stream(door: Door) -> None:
    refused = parse_event(raw(), door=door)
    assert isinstance(refused, Rejection)
    assert refused.code == "unsupported_door" and "only the plugin's stream" in refused.message


def test_unknown_cart_topics_and_emptied_elsewhere_are_refused() -> None:
    for topic in ("cart.created", "cart.deleted"):
        refused = parse_event(raw(topic), door=Door.STREAM)
        assert isinstance(refused, Rejection) and "cart topic is one of" in refused.message
    order = {"id": "o-1", "topic": "order.emptied", "payload": {"id": 1, "date_modified_gmt": "x"}}
    refused = parse_event(order, door=Door.STREAM)
    assert isinstance(refused, Rejection) and refused.code == "invalid_event"


def test_a_cart_topic_with_another_resource_is_refused() -> None:
    event = {**raw(), "resource": "order"}
    refused = parse_event(event, door=Door.STREAM)
    assert isinstance(refused, Rejection) and "does not match topic" in refused.message
