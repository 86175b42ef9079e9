"""Normalize → dedupe → derive → map: one stored event in, intents and new state out. Pure.

The store calls `order_fact` (so aggregates include the order) and then `decide`, inside one
transaction per event (agent/store/sqlite.py `_process_pending`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from agent.config import SiteConfig
from agent.core.events import Action, Event, Resource
from agent.core.jobs import Intent, Kind, Outcome
from agent.core.lifecycle import derive_topics, is_stale, object_state
from agent.core.mapping import (
    category_bodies,
    contact_attributes,
    customer_view_of_order,
    event_body,
    order_body,
    product_body,
)
from agent.core.normalize import brevo_datetime, money, normalize_email
from agent.core.times import gmt_seconds, utc_stamp
from agent.core.woo import DRAFT_STATUSES

__all__ = ["LIFECYCLE_DEFAULTS", "decide", "order_fact"]

log = logging.getLogger("agent.pipeline")

# Derived lifecycle events sent even when the `webhooks` map does not name them (issue 2).
LIFECYCLE_DEFAULTS = {"order.completed": "order_fulfilled", "order.refunded": "order_refunded"}

# An email's paid orders, given the statuses that count as paid: orders_count, total_spent,
# first_order_date, last_order_date (the store computes them, agent/store/sqlite.py).
Aggregates = Callable[[str, Collection[str]], dict[str, Any]]


def order_fact(site: SiteConfig, event: Event) -> tuple[str, str, float, str] | None:
    """(email, status, total, created) of an order, for the per-email aggregates."""
    if event.resource is not Resource.ORDER or event.action is Action.DELETED:
        return None
    p = event.payload
    email = normalize_email((p.get("billing") or {}).get("email"))
    if email is None:
        return None
    created = p.get("date_created_gmt") or p.get("date_created") or ""
    return email, str(p.get("status") or ""), money(p.get("total")) or 0.0, str(created)


def _is_historical(event: Event, now: float, historical_after: float) -> bool:
    if event.historical:
        return True
    stamp = event.payload.get("date_modified_gmt") or event.payload.get("date_created_gmt")
    seconds = gmt_seconds(stamp)
    return seconds is not None and now - seconds > historical_after


def _event_names(site: SiteConfig, topics: list[str]) -> list[tuple[str, str]]:
    names = {w.topic: w.event for w in site.woo.webhooks}
    out = []
    for topic in topics:
        name = names.get(topic) or LIFECYCLE_DEFAULTS.get(topic)
        if name:
            out.append((topic, name))
    return out


def _events(
    site: SiteConfig,
    topics: list[str],
    email: str,
    event: Event,
    obj: dict[str, Any],
    tail: str,
    *,
    per_topic: bool = False,
) -> list[Intent]:
    """One Brevo event intent per mapped topic; its key (`…:{tail}`, after the topic too when
    `per_topic`) makes a replay of the same change the same job."""
    resource = event.resource.value
    when = brevo_datetime(obj.get("date_modified_gmt")) if obj is event.payload else None
    out = []
    for topic, name in _event_names(site, topics):
        mid = f"{topic}:" if per_topic else ""
        key = f"event:{site.id}:{name}:{resource}:{event.resource_id}:{mid}{tail}"
        body = event_body(name, email, resource, obj, when=when, id_prefix=site.woo.brevo_id_prefix)
        out.append(Intent(Kind.EVENT, key, body))
    return out


def _lists(site: SiteConfig, buyer: bool) -> list[int]:
    lists = []
    if site.woo.lists.all_customers:
        lists.append(site.woo.lists.all_customers)
    if buyer and site.woo.lists.buyers:
        lists.append(site.woo.lists.buyers)
    return lists


def _contact(
    site: SiteConfig,
    email: str,
    source: dict[str, Any],
    agg: dict[str, Any],
    *,
    only_computed: bool,
    historical: bool,
) -> tuple[Intent, list[str]]:
    country = (source.get("billing") or {}).get("country")
    attrs, warnings = contact_attributes(
        source, site.woo.customer_mapping, agg, country=country, only_computed=only_computed
    )
    body: dict[str, Any] = {"email": email, "attributes": attrs, "updateEnabled": True}
    lists = _lists(site, agg.get("orders_count", 0) > 0)
    if lists:
        body["listIds"] = lists
    return Intent(Kind.CONTACT, f"contact:{email}", body, historical), warnings


def decide(
    site: SiteConfig,
    event: Event,
    prior: dict[str, Any] | None,
    aggregates: Aggregates,
    *,
    now: float,
    historical_after: float,
) -> Outcome:
    """Everything Brevo should hold after this event, given what the agent knew before it."""
    account = site.brevo.account
    if is_stale(prior, event):
        log.debug(
            "stale %s %s (%s < %s): skipped",
            event.resource,
            event.resource_id,
            event.payload.get("date_modified_gmt"),
            (prior or {}).get("version"),
        )
        return Outcome(account=account)
    state = object_state(event)
    topics = derive_topics(event, prior, site.woo.paid_statuses)
    historical = _is_historical(event, now, historical_after)
    prefix = site.woo.brevo_id_prefix
    intents: list[Intent] = []
    dead: list[tuple[str, str]] = []
    p = event.payload
    sync = site.woo.sync

    if event.resource is Resource.CUSTOMER:
        if not sync.customers:
            return Outcome(object_state=state, account=account)
        if event.action is Action.DELETED:
            # Deleting a WordPress user does not unsubscribe a person from marketing: the
            # contact stays in Brevo (docs/mapping.md); a mapped `customer.deleted` event
            # goes to the email the agent last knew for that user.
            email = (prior or {}).get("email")
            state["email"] = email
            if email and not historical:
                intents += _events(site, topics, email, event, {"id": event.resource_id}, "deleted")
            return Outcome(object_state=state, intents=tuple(intents), account=account)
        email = normalize_email(p.get("email"))
        if email is None:
            dead.append(
                (
                    "invalid_email",
                    f"customer {event.resource_id}: email {p.get('email')!r} is not a valid address; fix it in WooCommerce, then `woobrevo-agent deadletters retry`",
                )
            )
            return Outcome(object_state=state, dead=tuple(dead), account=account)
        state["email"] = email
        agg = aggregates(email, site.woo.paid_statuses)
        intent, warnings = _contact(site, email, p, agg, only_computed=False, historical=historical)
        for w in warnings:
            log.warning("customer %s: %s", event.resource_id, w)
        intents.append(intent)
        if not historical:
            intents += _events(site, topics, email, event, p, state["version"])
        return Outcome(object_state=state, intents=tuple(intents), account=account)

    if event.resource is Resource.ORDER:
        if not sync.orders:
            return Outcome(object_state=state, account=account)
        if event.action is Action.DELETED:
            # A trashed order leaves the aggregates (its fact turns to 'trash' in the store);
            # the contact's counts are refreshed from the email remembered in the prior state.
            email = (prior or {}).get("email")
            state["email"] = email
            if email:
                intent, _ = _contact(
                    site,
                    email,
                    {},
                    aggregates(email, site.woo.paid_statuses),
                    only_computed=True,
                    historical=historical,
                )
                intents.append(intent)
                if not historical:
                    intents += _events(
                        site, topics, email, event, {"id": event.resource_id}, "deleted"
                    )
            return Outcome(object_state=state, intents=tuple(intents), account=account)
        email = normalize_email((p.get("billing") or {}).get("email"))
        state["email"] = email
        if p.get("status") in DRAFT_STATUSES:
            return Outcome(object_state=state, account=account)
        if email is None:
            raw = (p.get("billing") or {}).get("email")
            if raw:
                dead.append(
                    (
                        "invalid_email",
                        f"order {event.resource_id}: billing email {raw!r} is not a valid address; the order is sent without a contact",
                    )
                )
        else:
            agg = aggregates(email, site.woo.paid_statuses)
            registered = bool(p.get("customer_id"))
            # A registered customer's own record is the authority for names and addresses;
            # a guest's only record is the order's billing data.
            intent, warnings = _contact(
                site,
                email,
                customer_view_of_order(p),
                agg,
                only_computed=registered,
                historical=historical,
            )
            for w in warnings:
                log.warning("order %s: %s", event.resource_id, w)
            intents.append(intent)
        intents.append(
            Intent(
                Kind.ORDER,
                f"order:{prefix}{event.resource_id}",
                order_body(p, email, prefix),
                historical,
            )
        )
        if email and not historical:
            intents += _events(site, topics, email, event, p, state["version"], per_topic=True)
        return Outcome(
            object_state=state, intents=tuple(intents), dead=tuple(dead), account=account
        )

    if event.resource in (Resource.PRODUCT, Resource.VARIATION):
        if not sync.products:
            return Outcome(object_state=state, account=account)
        if event.action is Action.DELETED:
            stamp = utc_stamp(now)
            intents.append(
                Intent(
                    Kind.PRODUCT,
                    f"product:{prefix}{event.resource_id}",
                    product_body(
                        {"id": event.resource_id, "name": (prior or {}).get("name")},
                        prefix,
                        deleted_at=stamp,
                    ),
                    historical,
                )
            )
            return Outcome(object_state=state, intents=tuple(intents), account=account)
        if p.get("status") in ("draft", "auto-draft", "pending", "private") and not prior:
            return Outcome(account=account)  # never published: nothing for Brevo yet
        for cat in category_bodies(p, prefix):
            intents.append(Intent(Kind.CATEGORY, f"category:{cat['id']}", cat, historical))
        intents.append(
            Intent(
                Kind.PRODUCT,
                f"product:{prefix}{event.resource_id}",
                product_body(p, prefix),
                historical,
            )
        )
        return Outcome(object_state=state, intents=tuple(intents), account=account)

    if event.resource is Resource.COUPON:
        if not sync.coupons or event.action is Action.DELETED:
            # Brevo has no call to remove one code from a collection (NOTES §2, Coupons).
            return Outcome(object_state=state, account=account)
        code = str(p.get("code") or "").strip()
        if not code:
            dead.append(("invalid_coupon", f"coupon {event.resource_id}: empty code"))
            return Outcome(object_state=state, dead=tuple(dead), account=account)
        collection = site.brevo.coupon_collection
        intents.append(
            Intent(
                Kind.COUPON,
                f"coupons:{collection}",
                {"collection": collection, "codes": [code]},
                historical,
            )
        )
        return Outcome(object_state=state, intents=tuple(intents), account=account)

    return Outcome(object_state=state, account=account)
