"""The cart state machine (agent/core/carts.py), table-driven over an injected clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from agent.core.carts import (
    Cart,
    CartRules,
    CartSite,
    CartStatus,
    Fired,
    abandoned_intents,
    cart_from_row,
    cart_row,
    emptied,
    leave_list_intents,
    ordered,
    recovered_intents,
    tick,
    updated,
)
from agent.core.events import Action, Event, EventId, Resource
from agent.core.jobs import Kind
from agent.core.times import gmt

T0 = 1_800_000_000.0
RULES = CartRules(
    abandon_after=3600.0, expire_after=30 * 86400.0, attribution_window=7 * 86400.0, list_id=52
)


def snap(
    cart_id: int = 1, at: float = T0, email: str | None = "a@example.com", **extra: Any
) -> dict[str, Any]:
    return {
        "id": cart_id,
        "token": "9f2c" * 8,
        "email": email,
        "customer_id": 0,
        "items": [
            {"product_id": 11, "variation_id": 0, "name": "Cap", "quantity": 2, "price": "10.00"}
        ],
        "totals": {
            "subtotal": "20.00",
            "discount": "0.00",
            "shipping": "0.00",
            "tax": "2.00",
            "total": "22.00",
        },
        "currency": "EUR",
        "coupons": ["SAVE10"],
        "restore_url": "https://shop.example/?woobrevo_restore=x",
        "locale": "fr_FR",
        "date_modified_gmt": gmt(at),
        **extra,
    }


@dataclass
class World:
    """Carts by id, each step at a time of the injected clock; what fired, in order."""

    carts: dict[int, Cart] = field(default_factory=dict)
    fired: list[tuple[int, Fired]] = field(default_factory=list)

    def run(self, step: tuple[Any, ...]) -> None:
        what, at, *args = step
        if what == "update":
            cart_id = args[0] if args else 1
            self.carts[cart_id] = updated(self.carts.get(cart_id), snap(cart_id, at), at, RULES)
        elif what == "empty":
            cart_id, order_id = (*args, 1, None)[:2] if args else (1, None)
            extra = {"order_id": order_id} if order_id else {}
            self.note(
                cart_id, *emptied(self.carts.get(cart_id), snap(cart_id, at, **extra), at, RULES)
            )
        elif what == "order":
            for cart_id, cart in list(self.carts.items()):
                self.note(cart_id, *ordered(cart, 456, 22.0, at, RULES))
        elif what == "tick":
            for cart_id in sorted(self.carts, key=lambda c: self.carts[c].due or 0):
                self.note(cart_id, *tick(self.carts[cart_id], at, RULES))
        elif what == "restart":  # what the store keeps, and nothing else
            self.carts = {i: cart_from_row(cart_row(c)) for i, c in self.carts.items()}

    def note(self, cart_id: int, cart: Cart, fired: Fired | None) -> None:
        self.carts[cart_id] = cart
        if fired is not None:
            self.fired.append((cart_id, fired))


H = 3600.0
D = 86400.0
CASES = {
    "active, then abandoned after abandon_after": (
        [("update", T0), ("tick", T0 + H - 1), ("tick", T0 + H)],
        {1: CartStatus.ABANDONED},
        [(1, Fired.ABANDONED)],
    ),
    "abandoned, then an order recovers it": (
        [("update", T0), ("tick", T0 + H), ("order", T0 + 2 * H)],
        {1: CartStatus.RECOVERED},
        [(1, Fired.ABANDONED), (1, Fired.RECOVERED)],
    ),
    "an order before abandonment converts it, nothing fires": (
        [("update", T0), ("order", T0 + 60), ("tick", T0 + 10 * H)],
        {1: CartStatus.CONVERTED},
        [],
    ),
    "an order older than the cart changes nothing": (
        [("update", T0), ("order", T0 - 60), ("tick", T0 + H)],
        {1: CartStatus.ABANDONED},
        [(1, Fired.ABANDONED)],
    ),
    "an order past the attribution window does not recover": (
        [("update", T0), ("tick", T0 + H), ("order", T0 + H + 8 * D)],
        {1: CartStatus.ABANDONED},
        [(1, Fired.ABANDONED)],
    ),
    "updated while abandoned re-arms the timer, fires again": (
        [
            ("update", T0),
            ("tick", T0 + H),
            ("update", T0 + 2 * H),
            ("tick", T0 + 2.5 * H),
            ("tick", T0 + 3 * H),
        ],
        {1: CartStatus.ABANDONED},
        [(1, Fired.ABANDONED), (1, Fired.ABANDONED)],
    ),
    "re-armed after abandonment, the order still recovers": (
        [("update", T0), ("tick", T0 + H), ("update", T0 + 2 * H), ("order", T0 + 2.1 * H)],
        {1: CartStatus.RECOVERED},
        [(1, Fired.ABANDONED), (1, Fired.RECOVERED)],
    ),
    "emptied ends it": (
        [("update", T0), ("empty", T0 + 60), ("tick", T0 + 10 * H)],
        {1: CartStatus.EMPTIED},
        [],
    ),
    "emptied by its order converts it": (
        [("update", T0), ("empty", T0 + 60, 1, 456), ("tick", T0 + 10 * H)],
        {1: CartStatus.CONVERTED},
        [],
    ),
    "emptied by its order after abandonment recovers it": (
        [("update", T0), ("tick", T0 + H), ("empty", T0 + 2 * H, 1, 456)],
        {1: CartStatus.RECOVERED},
        [(1, Fired.ABANDONED), (1, Fired.RECOVERED)],
    ),
    "abandoned, then expired": (
        [("update", T0), ("tick", T0 + H), ("tick", T0 + 30 * D - 1), ("tick", T0 + 30 * D)],
        {1: CartStatus.EXPIRED},
        [(1, Fired.ABANDONED)],
    ),
    "a whole life past while down: expired, no reminder": (
        [("update", T0), ("tick", T0 + 31 * D), ("tick", T0 + 31 * D)],
        {1: CartStatus.EXPIRED},
        [],
    ),
    "an order placed before the abandonment but heard after it withdraws it, no recovery": (
        [("update", T0), ("tick", T0 + H), ("order", T0 + H - 60), ("tick", T0 + 30 * D)],
        {1: CartStatus.CONVERTED},
        [(1, Fired.ABANDONED), (1, Fired.WITHDRAWN)],
    ),
    "two carts for one email: each on its own timer; the order settles both": (
        [("update", T0, 1), ("update", T0 + H / 2, 2), ("tick", T0 + H), ("order", T0 + 1.2 * H)],
        {1: CartStatus.RECOVERED, 2: CartStatus.CONVERTED},
        [(1, Fired.ABANDONED), (1, Fired.RECOVERED)],
    ),
    "a restart in the middle loses no timer and fires nothing twice": (
        [
            ("update", T0),
            ("restart", T0),
            ("tick", T0 + H),
            ("restart", T0 + H),
            ("tick", T0 + H + 1),
            ("order", T0 + 2 * H),
        ],
        {1: CartStatus.RECOVERED},
        [(1, Fired.ABANDONED), (1, Fired.RECOVERED)],
    ),
    "an ended cart ignores a late order and a late empty": (
        [("update", T0), ("order", T0 + 60), ("order", T0 + 120), ("empty", T0 + 180)],
        {1: CartStatus.CONVERTED},
        [],
    ),
    "a new snapshot after an end starts a new life": (
        [("update", T0), ("empty", T0 + 60), ("update", T0 + 120), ("tick", T0 + 120 + H)],
        {1: CartStatus.ABANDONED},
        [(1, Fired.ABANDONED)],
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_transitions(name: str) -> None:
    steps, states, fired = CASES[name]
    world = World()
    for step in steps:
        world.run(step)
    assert {i: c.status for i, c in world.carts.items()} == states
    assert world.fired == fired


def test_a_stale_snapshot_changes_nothing() -> None:
    cart = updated(None, snap(at=T0 + 60), T0 + 60, RULES)
    assert updated(cart, snap(at=T0), T0 + 61, RULES) is cart


def test_the_abandoned_snapshot_sent_again_changes_nothing_but_a_newer_one_rearms() -> None:
    # tests/chaos (websocket, kill -9, disk-full): a row resent after a lost ack, or a cart's
    # `cart.updated` and `cart.restored` rows shipped late with the one stored snapshot;
    # re-armed, the long-past timer sent a second abandonment of the same version.
    cart, fired = tick(updated(None, snap(), T0, RULES), T0 + H, RULES)
    assert fired is Fired.ABANDONED
    assert updated(cart, snap(), T0 + H + 5, RULES) is cart
    back = updated(cart, snap(at=T0 + H + 5), T0 + H + 5, RULES)  # the shopper came back
    assert back.status is CartStatus.ACTIVE and back.abandoned_at == cart.abandoned_at
    assert back.due == T0 + 2 * H + 5


def test_a_late_cart_updated_naming_its_order_ends_the_cart() -> None:
    # tests/chaos (websocket): a stalled stream shipped the cart's `cart.updated` row after the
    # cart ended, carrying the stored snapshot with its order; taken for a live cart it fired
    # a second abandonment, and the order then counted as converted: the recovery was lost.
    cart, fired = tick(updated(None, snap(), T0, RULES), T0 + H, RULES)
    assert fired is Fired.ABANDONED
    late = Event(
        id=EventId("e-7"),
        topic="cart.updated",
        resource=Resource.CART,
        action=Action.UPDATED,
        resource_id=1,
        payload=snap(at=T0 + H + 2, order_id=456),
        occurred_at=datetime.fromtimestamp(T0 + H + 2, UTC),
    )
    outcome = CartSite("a", "acct", RULES).on_event(late, [cart], T0 + H + 20)
    (after,) = outcome.carts
    assert after.status is CartStatus.RECOVERED and after.order_id == 456
    assert [i.kind for i in outcome.intents] == [
        i.kind for i in recovered_intents("a", after, RULES)
    ]


def test_the_abandonment_sends_the_contact_with_the_list_and_the_event() -> None:
    cart, fired = tick(updated(None, snap(), T0, RULES), T0 + H, RULES)
    assert fired is Fired.ABANDONED
    contact, event = abandoned_intents("s", cart, RULES)
    assert contact.kind is Kind.CONTACT
    assert contact.body == {
        "email": "a@example.com",
        "attributes": {},
        "updateEnabled": True,
        "listIds": [52],
    }
    assert event.kind is Kind.EVENT and event.key == f"event:s:cart_abandoned:cart:1:{int(T0 + H)}"
    props = event.body["event_properties"]
    assert props["cart_id"] == 1 and props["currency"] == "EUR" and props["total"] == "22.00"
    assert props["restore_url"].startswith("https://shop.example/")
    assert props["cart"]["items"][0]["name"] == "Cap" and props["cart"]["total"] == 22.0
    assert props["item_count"] == 2
    assert event.body["identifiers"] == {"email_id": "a@example.com"}


def test_the_recovery_leaves_the_list_and_names_the_order() -> None:
    cart, _ = tick(updated(None, snap(), T0, RULES), T0 + H, RULES)
    cart, fired = ordered(cart, 456, 22.0, T0 + 2 * H, RULES)
    assert fired is Fired.RECOVERED and cart.revenue == 22.0
    leave, event = recovered_intents("s", cart, RULES)
    assert leave.body == {"email": "a@example.com", "unlinkListIds": [52]}
    assert leave.key == "contact:a@example.com"
    assert event.body["event_name"] == "cart_recovered"
    assert event.body["event_properties"]["order_id"] == 456
    assert event.body["event_properties"]["amount"] == "22.00"


def test_a_withdrawn_abandonment_only_leaves_the_list() -> None:
    cart, _ = tick(updated(None, snap(), T0, RULES), T0 + H, RULES)
    cart, fired = ordered(cart, 456, 22.0, T0 + H - 60, RULES)
    assert fired is Fired.WITHDRAWN and cart.status is CartStatus.CONVERTED and cart.revenue == 0
    (leave,) = leave_list_intents(cart, RULES)
    assert leave.body == {"email": "a@example.com", "unlinkListIds": [52]}


def test_a_cart_without_an_email_sends_nothing() -> None:
    cart, fired = tick(updated(None, snap(email=None), T0, RULES), T0 + H, RULES)
    assert fired is Fired.ABANDONED
    assert abandoned_intents("s", cart, RULES) == []
