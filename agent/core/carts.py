"""Abandoned carts: the state machine, with the time passed in, and what Brevo hears of it. Pure.

A cart (the plugin's `cart.*` events, docs/carts.md) is `active` while the shopper may still
buy; `abandon_after` with no order from its email or customer makes it `abandoned` (the Brevo
event and the `abandoned_cart` list); an order within `attribution_window` of the abandonment
makes it `recovered` (the list left, the recovery event), an order before it `converted`
(nothing sent); `expire_after` without a change makes it `expired`. An update while abandoned
re-arms the timer; an emptied cart ends it (converted when an order emptied it).

Each cart keeps its next due time; the store fires what came due (agent/store/carts.py), so the
timers survive a restart. The clock of a cart is its snapshot's own time (`date_modified_gmt`),
so an agent that was down fires what came due while it was, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from agent.core.consent import ConsentRules, ConsentView
from agent.core.events import Action, Event, Resource
from agent.core.jobs import Intent, Kind
from agent.core.normalize import money, normalize_email
from agent.core.times import gmt_seconds, utc_stamp
from agent.core.woo import NOT_ORDER_STATUSES

__all__ = [
    "NOT_BUYING",
    "Cart",
    "CartOutcome",
    "CartRules",
    "CartSite",
    "CartStatus",
    "Fired",
    "abandoned_intents",
    "cart_from_row",
    "cart_row",
    "emptied",
    "order_buyer",
    "ordered",
    "recovered_intents",
    "tick",
    "updated",
    "with_consent",
]


class CartStatus(StrEnum):
    """Where a cart is in its life; the last four end it."""

    ACTIVE = "active"
    ABANDONED = "abandoned"
    RECOVERED = "recovered"
    CONVERTED = "converted"
    EXPIRED = "expired"
    EMPTIED = "emptied"


class Fired(StrEnum):
    """A transition Brevo hears of."""

    ABANDONED = "abandoned"
    RECOVERED = "recovered"
    # An order placed before the abandonment reached the agent after the timer fired (the
    # plugin's outbox was late): the cart converted, but Brevo heard "abandoned", so the contact
    # leaves the list again, with no recovery event and no revenue attributed.
    WITHDRAWN = "withdrawn"


# Orders that are no purchase: drafts (the block checkout's `checkout-draft`), trash, failures.
NOT_BUYING = NOT_ORDER_STATUSES | {"cancelled", "failed"}


@dataclass(frozen=True, slots=True)
class CartRules:
    """What the state machine reads of a site's config (`connectors.woocommerce.carts`)."""

    enabled: bool = True
    abandon_after: float = 3600.0
    expire_after: float = 30 * 86400.0
    attribution_window: float = 7 * 86400.0
    event: str = "cart_abandoned"
    recovered_event: str = "cart_recovered"
    list_id: int | None = None

    @classmethod
    def of(cls, site: Any) -> CartRules:
        """From a resolved `SiteConfig` (read by attribute: the core imports no config)."""
        carts = site.woo.carts
        return cls(
            enabled=carts.enabled,
            abandon_after=carts.abandon_after,
            expire_after=carts.expire_after,
            attribution_window=carts.attribution_window,
            event=carts.event,
            recovered_event=carts.recovered_event,
            list_id=site.woo.lists.abandoned_cart,
        )


@dataclass(frozen=True, slots=True)
class Cart:
    """One cart as the agent keeps it: its state, its next due time, its last snapshot."""

    id: int
    status: CartStatus
    changed_at: float  # the last snapshot's time: the timers count from it
    due: float | None  # when `tick` has something to do; None once the cart has ended
    email: str | None = None
    customer_id: int = 0
    version: str = ""  # the snapshot's date_modified_gmt: an older one is stale
    abandoned_at: float | None = None
    order_id: int | None = None
    revenue: float = 0.0  # the recovering order's total
    ordered_at: float | None = None  # when the converting or recovering order was placed
    snapshot: dict[str, Any] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.status not in (CartStatus.ACTIVE, CartStatus.ABANDONED)


def _snapshot_time(payload: dict[str, Any], at: float) -> float:
    seconds = gmt_seconds(payload.get("date_modified_gmt"))
    return at if seconds is None else seconds


def _names_order(payload: dict[str, Any]) -> bool:
    order_id = payload.get("order_id")
    return isinstance(order_id, int) and not isinstance(order_id, bool) and order_id > 0


def _is_stale(prior: Cart | None, payload: dict[str, Any]) -> bool:
    version = str(payload.get("date_modified_gmt") or "")
    return prior is not None and bool(version) and version < prior.version


def updated(prior: Cart | None, payload: dict[str, Any], at: float, rules: CartRules) -> Cart:
    """A snapshot (`cart.updated`, or `cart.restored` when the shopper opened the restore
    link): the cart is active and its abandonment timer (re)starts.

    A re-armed cart keeps the time it was abandoned, so that the order that follows still
    counts as recovered. `at` is the time the event was processed, used when the snapshot has
    no time of its own. The very snapshot a cart was abandoned with, sent again, changes
    nothing: re-armed, its timer, long past, would send a second abandonment (tests/chaos). It
    comes again when the plugin resends a row whose ack was lost, or when two rows of one cart
    (`cart.updated`, then `cart.restored`) ship late and both carry the stored snapshot, which
    is built at ship time. A shopper who comes back after the abandonment makes a newer snapshot.
    """
    if prior is not None and _is_stale(prior, payload):
        return prior
    if (
        prior is not None
        and prior.status is CartStatus.ABANDONED
        and prior.version
        and str(payload.get("date_modified_gmt") or "") == prior.version
    ):
        return prior
    changed = _snapshot_time(payload, at)
    kept = prior is not None and not prior.ended
    return Cart(
        id=int(payload["id"]),
        status=CartStatus.ACTIVE,
        changed_at=changed,
        due=changed + rules.abandon_after,
        email=normalize_email(payload.get("email")),
        customer_id=int(payload.get("customer_id") or 0),
        version=str(payload.get("date_modified_gmt") or ""),
        abandoned_at=prior.abandoned_at if kept and prior is not None else None,
        snapshot=payload,
    )


def emptied(
    prior: Cart | None, payload: dict[str, Any], at: float, rules: CartRules
) -> tuple[Cart, Fired | None]:
    """`cart.emptied`: an order placed from the cart converts (or recovers) it; else it ends."""
    if prior is not None and (prior.ended or _is_stale(prior, payload)):
        return prior, None
    base = prior or updated(None, payload, at, rules)
    order_id = payload.get("order_id")
    when = _snapshot_time(payload, at)
    if isinstance(order_id, int) and order_id > 0:
        total = money((payload.get("totals") or {}).get("total")) or 0.0
        return ordered(base, order_id, total, when, rules)
    return replace(base, status=CartStatus.EMPTIED, due=None, changed_at=when), None


def ordered(
    cart: Cart, order_id: int, total: float, at: float, rules: CartRules
) -> tuple[Cart, Fired | None]:
    """An order from the cart's email or customer, placed at `at`.

    Before the abandonment: converted, nothing sent (or, when it arrives after the timer
    fired, the abandonment withdrawn). Within the attribution window after it (even once an
    update re-armed the cart): recovered. An order older than the cart's last change, or one
    past the window while the cart is abandoned, changes nothing.
    """
    if cart.ended or at < cart.changed_at:
        return cart, None
    if cart.abandoned_at is not None and at < cart.abandoned_at:
        converted = replace(
            cart, status=CartStatus.CONVERTED, due=None, order_id=order_id, ordered_at=at
        )
        return converted, Fired.WITHDRAWN
    attributed = (
        cart.abandoned_at is not None and at - cart.abandoned_at <= rules.attribution_window
    )
    if not attributed:
        if cart.status is CartStatus.ABANDONED:
            return cart, None
        converted = replace(
            cart, status=CartStatus.CONVERTED, due=None, order_id=order_id, ordered_at=at
        )
        return converted, None
    recovered = replace(
        cart,
        status=CartStatus.RECOVERED,
        due=None,
        order_id=order_id,
        revenue=total,
        ordered_at=at,
    )
    return recovered, Fired.RECOVERED


def tick(cart: Cart, now: float, rules: CartRules) -> tuple[Cart, Fired | None]:
    """Fire the cart's timer if it came due by `now`: abandon an active cart, expire an
    abandoned one. A cart whose whole life passed while the agent was down expires without
    an abandonment event (a month-old cart is no reminder)."""
    if cart.due is None or cart.due > now:
        return cart, None
    expires = cart.changed_at + rules.expire_after
    if cart.status is CartStatus.ACTIVE and now < expires:
        abandoned = replace(cart, status=CartStatus.ABANDONED, abandoned_at=cart.due, due=expires)
        return abandoned, Fired.ABANDONED
    return replace(cart, status=CartStatus.EXPIRED, due=None), None


# -- Brevo ----------------------------------------------------------------------------------


def _items(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in snapshot.get("items") or []:
        if not isinstance(item, dict):
            continue
        out.append(
            {
                "product_id": int(item.get("product_id") or 0),
                "variation_id": int(item.get("variation_id") or 0),
                "name": str(item.get("name") or ""),
                "quantity": int(item.get("quantity") or 0),
                "price": money(item.get("price")) or 0.0,
                "image": str(item.get("image") or ""),
                "url": str(item.get("url") or ""),
            }
        )
    return out


def abandoned_intents(site: str, cart: Cart, rules: CartRules) -> list[Intent]:
    """The contact (created when unknown, joining `lists.abandoned_cart`) and the event.

    Brevo's event properties are strings, integers, objects or arrays (openapi: /events), so
    amounts sit in the nested `cart` object and as strings at the top.
    """
    if cart.email is None:
        return []
    snap = cart.snapshot
    totals = snap.get("totals") or {}
    contact: dict[str, Any] = {"email": cart.email, "attributes": {}, "updateEnabled": True}
    if rules.list_id:
        contact["listIds"] = [rules.list_id]
    items = _items(snap)
    props: dict[str, Any] = {
        "cart_id": cart.id,
        "currency": str(snap.get("currency") or ""),
        "total": str(totals.get("total") or "0"),
        "restore_url": str(snap.get("restore_url") or ""),
        "item_count": sum(i["quantity"] for i in items),
        "cart": {
            "id": cart.id,
            "items": items,
            "subtotal": money(totals.get("subtotal")) or 0.0,
            "discount": money(totals.get("discount")) or 0.0,
            "shipping": money(totals.get("shipping")) or 0.0,
            "tax": money(totals.get("tax")) or 0.0,
            "total": money(totals.get("total")) or 0.0,
            "coupons": [str(c) for c in snap.get("coupons") or []],
        },
    }
    if snap.get("locale"):
        props["locale"] = str(snap["locale"])
    assert cart.abandoned_at is not None
    stamp = int(cart.abandoned_at)
    event = {
        "event_name": rules.event,
        "identifiers": {"email_id": cart.email},
        "event_properties": props,
        "event_date": utc_stamp(cart.abandoned_at),
    }
    return [
        Intent(Kind.CONTACT, f"contact:{cart.email}", contact),
        Intent(Kind.EVENT, f"event:{site}:{rules.event}:cart:{cart.id}:{stamp}", event),
    ]


def leave_list_intents(cart: Cart, rules: CartRules) -> list[Intent]:
    """The contact leaves `lists.abandoned_cart` (when the site names one)."""
    if cart.email is None or not rules.list_id:
        return []
    body = {"email": cart.email, "unlinkListIds": [rules.list_id]}
    return [Intent(Kind.CONTACT, f"contact:{cart.email}", body)]


def recovered_intents(site: str, cart: Cart, rules: CartRules) -> list[Intent]:
    """The contact leaves `lists.abandoned_cart`; the recovery event names the order."""
    if cart.email is None:
        return []
    at = cart.ordered_at if cart.ordered_at is not None else cart.changed_at
    out = leave_list_intents(cart, rules)
    event = {
        "event_name": rules.recovered_event,
        "identifiers": {"email_id": cart.email},
        "event_properties": {
            "cart_id": cart.id,
            "order_id": cart.order_id or 0,
            "currency": str(cart.snapshot.get("currency") or ""),
            "amount": f"{cart.revenue:.2f}",
            "order": {"id": cart.order_id or 0, "amount": cart.revenue},
        },
        "event_date": utc_stamp(at),
    }
    key = f"event:{site}:{rules.recovered_event}:cart:{cart.id}:{cart.order_id}"
    out.append(Intent(Kind.EVENT, key, event))
    return out


# -- the shell's entry points ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CartOutcome:
    """What one cart event, order or timer decided: carts to keep, Brevo intents, and the
    site's counters to add to (`carts_abandoned`, `carts_recovered_revenue`, …)."""

    carts: tuple[Cart, ...] = ()
    intents: tuple[Intent, ...] = ()
    counts: tuple[tuple[str, float], ...] = ()
    account: str = ""
    consent: ConsentRules = field(default_factory=ConsentRules)  # the site's (`with_consent`)


def with_consent(outcome: CartOutcome, view: ConsentView) -> list[Intent]:
    """A cart outcome's intents as consent allows (agent/core/consent.py): the
    `abandoned_cart` list only for who may join it and is not suppressed there, the cart
    events only for who may hear them (in required mode: subscribers, or transactional)."""
    rules, account, out = outcome.consent, outcome.account, []
    for intent in outcome.intents:
        body = intent.body
        if intent.kind is Kind.CONTACT and "listIds" in body:
            email = body["email"]
            lists = rules.lists(
                body["listIds"], view.record(account, email), view.suppressions(account, email)
            )
            body = {k: v for k, v in body.items() if k != "listIds"}
            if lists:
                body["listIds"] = lists
            intent = replace(intent, body=body)
        elif intent.kind is Kind.EVENT:
            email = body["identifiers"]["email_id"]
            if not rules.may_hear(view.record(account, email), body["event_name"]):
                continue
        out.append(intent)
    return out


def order_buyer(event: Event) -> tuple[str | None, int, float] | None:
    """Who placed an order, and when: (email, customer id, time), or None when the event is
    no purchase (not an order, deleted, a draft, cancelled or failed)."""
    p = event.payload
    if event.resource is not Resource.ORDER or event.action is Action.DELETED:
        return None
    if p.get("status") in NOT_BUYING:
        return None
    email = normalize_email((p.get("billing") or {}).get("email"))
    customer = p.get("customer_id")
    customer_id = customer if isinstance(customer, int) and customer > 0 else 0
    when = gmt_seconds(p.get("date_created_gmt")) or gmt_seconds(p.get("date_modified_gmt"))
    if (email is None and not customer_id) or when is None:
        return None
    return email, customer_id, when


_FIRED_COUNT = {
    Fired.ABANDONED: "carts_abandoned",
    Fired.RECOVERED: "carts_recovered",
    Fired.WITHDRAWN: "carts_converted",
}
_END_COUNT = {
    CartStatus.CONVERTED: "carts_converted",
    CartStatus.EXPIRED: "carts_expired",
    CartStatus.EMPTIED: "carts_emptied",
}


@dataclass(frozen=True, slots=True)
class CartSite:
    """A site's carts as the processor runs them: its rules and its Brevo account."""

    id: str
    account: str
    rules: CartRules
    consent: ConsentRules = field(default_factory=ConsentRules)

    @classmethod
    def of(cls, site: Any) -> CartSite:
        """From a resolved `SiteConfig`."""
        return cls(site.id, site.brevo.account, CartRules.of(site), ConsentRules.of(site.woo))

    def on_event(self, event: Event, carts: Sequence[Cart], now: float) -> CartOutcome:
        """A cart event (`carts`: the cart as kept, if any) or an order (`carts`: the open
        carts of its email or customer). With `carts.enabled: false` nothing is tracked."""
        if not self.rules.enabled:
            return CartOutcome(account=self.account)
        if event.resource is Resource.CART:
            prior = carts[0] if carts else None
            # A snapshot naming its order is the cart's end, whatever the topic: the plugin
            # builds a row's payload when it ships it, so a `cart.updated` shipped late carries
            # the ended cart (tests/chaos websocket: re-armed as active, it fired a second
            # abandonment before its `cart.emptied` came, and the recovery was lost).
            if event.action is Action.EMPTIED or _names_order(event.payload):
                return self._outcome([(prior, *emptied(prior, event.payload, now, self.rules))])
            return self._outcome([(prior, updated(prior, event.payload, now, self.rules), None)])
        buyer = order_buyer(event)
        if buyer is None:
            return CartOutcome(account=self.account)
        total = money(event.payload.get("total")) or 0.0
        steps = [(c, *ordered(c, event.resource_id, total, buyer[2], self.rules)) for c in carts]
        return self._outcome(steps)

    def on_due(self, cart: Cart, now: float) -> CartOutcome:
        """The cart's timer came due."""
        return self._outcome([(cart, *tick(cart, now, self.rules))])

    def _outcome(self, steps: Sequence[tuple[Cart | None, Cart, Fired | None]]) -> CartOutcome:
        carts: list[Cart] = []
        intents: list[Intent] = []
        counts: list[tuple[str, float]] = []
        for before, after, fired in steps:
            if after is before:
                continue
            carts.append(after)
            if fired is Fired.ABANDONED:
                intents += abandoned_intents(self.id, after, self.rules)
            elif fired is Fired.RECOVERED:
                intents += recovered_intents(self.id, after, self.rules)
                counts.append(("carts_recovered_revenue", after.revenue))
            elif fired is Fired.WITHDRAWN:
                intents += leave_list_intents(after, self.rules)
            if fired is not None:
                counts.append((_FIRED_COUNT[fired], 1.0))
            elif after.status in _END_COUNT and (before is None or not before.ended):
                counts.append((_END_COUNT[after.status], 1.0))
        if not self.rules.enabled:
            intents = []
        return CartOutcome(tuple(carts), tuple(intents), tuple(counts), self.account, self.consent)


# -- rows -----------------------------------------------------------------------------------


def cart_row(cart: Cart) -> dict[str, Any]:
    """A cart as plain data, for the store (and back with `cart_from_row`)."""
    return {
        "id": cart.id,
        "status": cart.status.value,
        "changed_at": cart.changed_at,
        "due": cart.due,
        "email": cart.email,
        "customer_id": cart.customer_id,
        "version": cart.version,
        "abandoned_at": cart.abandoned_at,
        "order_id": cart.order_id,
        "revenue": cart.revenue,
        "ordered_at": cart.ordered_at,
        "snapshot": cart.snapshot,
    }


def cart_from_row(row: dict[str, Any]) -> Cart:
    """The inverse of `cart_row`."""
    return Cart(**{**row, "status": CartStatus(row["status"])})
