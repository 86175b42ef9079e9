"""Events as every door hands them to the core, and the one validator they all share."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NewType

import orjson

from agent.core.minimize import minimize, minimize_value
from agent.core.normalize import normalize_email
from agent.core.storable import problem
from agent.core.times import parse_time

__all__ = [
    "CART_TOPICS",
    "EVENT_ID",
    "PRIVACY_TOPICS",
    "Action",
    "Door",
    "Event",
    "EventId",
    "Rejection",
    "Resource",
    "SiteId",
    "content_event_id",
    "parse_event",
]

SiteId = NewType("SiteId", str)
EventId = NewType("EventId", str)


class Resource(StrEnum):
    """The WooCommerce objects the agent understands."""

    CUSTOMER = "customer"
    ORDER = "order"
    PRODUCT = "product"
    VARIATION = "variation"
    COUPON = "coupon"
    CART = "cart"  # the plugin's cart snapshots (docs/carts.md): the stream door only
    PRIVACY = "privacy"  # the plugin's erasure requests (privacy.erase): the stream door only


class Action(StrEnum):
    """What happened to the object (WooCommerce's webhook events)."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    RESTORED = "restored"
    EMPTIED = "emptied"  # carts only
    ERASE = "erase"  # privacy only


class Door(StrEnum):
    """How an event reached the agent (for metrics and /status; never for semantics)."""

    STREAM = "stream"
    WEBHOOK = "webhook"
    POLL = "poll"
    BACKFILL = "backfill"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class Event:
    """One change to one WooCommerce object, carrying its REST v3 representation."""

    id: EventId
    topic: str
    resource: Resource
    action: Action
    resource_id: int
    payload: dict[str, Any]
    occurred_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    door: Door = Door.STREAM
    historical: bool = False


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that cannot be used; it is still stored, as a dead letter."""

    id: str
    code: str
    message: str


_RESOURCES = frozenset(r.value for r in Resource)
# Dict lookups, not Enum(value) calls: parse_event runs for every event of every door, and
# EnumType.__call__ was a tenth of the stream door's parse time (docs/benchmarks.md).
_RESOURCE_OF = {r.value: r for r in Resource}
_ACTION_OF = {a.value: a for a in Action}
# The plugin's cart topics (docs/carts.md); no webhook or REST listing carries carts.
CART_TOPICS = frozenset({"cart.updated", "cart.emptied", "cart.restored"})
# The plugin's erasure requests (a WordPress personal-data eraser): only its stream carries them.
PRIVACY_TOPICS = frozenset({"privacy.erase"})
# Resources only the plugin's stream carries, and the topics each allows.
_STREAM_ONLY = {"cart": CART_TOPICS, "privacy": PRIVACY_TOPICS}
# An event id (and anything else of ours that lands in a key or a log line): short and safe.
EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _resource_of(topic: str, payload: dict[str, Any]) -> Resource:
    base = topic.split(".", 1)[0]
    # WooCommerce sends variations as product.* with the variation's own body (NOTES §1.3);
    # its body names a parent (wc/v3 since 10.x has parent_id; type is "variation").
    if base == "product" and (
        payload.get("type") == "variation"
        or (payload.get("parent_id") and "variations" not in payload and "type" not in payload)
    ):
        return Resource.VARIATION
    return _RESOURCE_OF[base]


def content_event_id(
    topic: str, payload: dict[str, Any], occurred_at: str | None = None
) -> EventId:
    """An id derived from content, for doors with no ids of their own (webhooks, files, polls).

    WooCommerce's delivery id is not unique (NOTES §1.1), so the key is topic, resource id,
    `date_modified_gmt` and a hash of the object. The hash is there because that version is to
    the second: the real store changed orders twice within one second, and a second change keyed
    on the second alone was dropped as a replay of the first (docs/doors.md). `_links` is left
    out of the hash: it follows the URL the request came through, not the object.
    """
    rid = payload.get("id")
    version = payload.get("date_modified_gmt") or occurred_at
    content = {k: v for k, v in payload.items() if k != "_links"}
    try:
        canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an integer past 64 bits: the slower encoder takes it
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(canonical).hexdigest()[:16]
    if not version:
        return EventId(f"{topic}:{rid}:{digest}")
    return EventId(f"{topic}:{rid}:{version}:{digest}")


class _Refused(Exception):
    """A field of a raw event is wrong: the code and what was expected (parse_event's only way
    out of its helpers; never leaves this module)."""

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message


# The largest id the inbox's INTEGER column holds (SQLite integers are signed 64-bit).
_MAX_ID = 2**63 - 1


def _positive_id(value: object, code: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _Refused(code, f"{name}: expected a positive integer")
    if value > _MAX_ID:
        raise _Refused(
            "integer_out_of_range",
            f"{name}: {value} is past 2^63-1, the largest id the store keeps",
        )
    return value


def _topic_action(topic: str) -> Action:
    """The action of a `<resource>.<action>` topic whose resource is known."""
    base, _, act = topic.partition(".")
    if base not in _RESOURCES:
        raise _Refused("unknown_resource", f"topic {topic!r}: unknown resource {base!r}")
    topics = _STREAM_ONLY.get(base)
    if topics is not None:
        if topic not in topics:
            known = ", ".join(sorted(topics))
            raise _Refused("invalid_event", f"topic {topic!r}: a {base} topic is one of {known}")
        return _ACTION_OF[act]
    action = _ACTION_OF.get(act)
    if action is None or action in (Action.EMPTIED, Action.ERASE):
        raise _Refused(
            "invalid_event",
            f"topic {topic!r}: action must be created, updated, deleted or restored",
        )
    return action


def _declared_resource(declared: object, topic: str, payload: dict[str, Any]) -> Resource:
    """The event's `resource` when it names one, else what the topic and payload say."""
    if declared is None:
        return _resource_of(topic, payload)
    found = _RESOURCE_OF.get(declared) if isinstance(declared, str) else None
    if found is None:
        raise _Refused(
            "unknown_resource",
            f"resource {declared!r} is not one of customer, order, product, variation, coupon,"
            " cart, privacy",
        )
    base = topic.partition(".")[0]
    if (found.value in _STREAM_ONLY or base in _STREAM_ONLY) and found.value != base:
        raise _Refused("invalid_event", f"resource {declared!r} does not match topic {topic!r}")
    return found


def _check_shape(resource: Resource, action: Action, payload: dict[str, Any]) -> None:
    """A REST v3 object: a version for everything but customers, an email for customers."""
    if action is Action.DELETED:
        return
    if resource is Resource.CART:
        _check_cart(payload)
    elif resource is Resource.PRIVACY:
        _check_erase(payload)
    elif resource is Resource.CUSTOMER:
        if "email" not in payload:
            raise _Refused("invalid_payload", "payload.email: missing (not a REST v3 customer?)")
    elif "date_modified_gmt" not in payload:
        raise _Refused(
            "invalid_payload", "payload.date_modified_gmt: missing (not a REST v3 object?)"
        )


_CART_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_MONEY = re.compile(r"^-?\d+(\.\d+)?$")


def _check_cart(p: dict[str, Any]) -> None:
    """A cart snapshot as the plugin sends it (docs/carts.md, the contract of issue 13)."""
    if not isinstance(p.get("token"), str) or not _CART_TOKEN.match(p["token"]):
        raise _Refused("invalid_payload", "payload.token: expected the cart's random token")
    email = p.get("email")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        raise _Refused("invalid_payload", "payload.email: expected an address or null")
    customer = p.get("customer_id", 0)
    if isinstance(customer, bool) or not isinstance(customer, int) or not 0 <= customer <= _MAX_ID:
        raise _Refused("invalid_payload", "payload.customer_id: expected 0 or a customer id")
    items = p.get("items")
    if not isinstance(items, list):
        raise _Refused("invalid_payload", "payload.items: expected a list")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("product_id"), int):
            raise _Refused("invalid_payload", f"payload.items[{i}]: expected a product_id")
        quantity = item.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise _Refused("invalid_payload", f"payload.items[{i}].quantity: expected >= 1")
    totals = p.get("totals")
    if not isinstance(totals, dict) or not _MONEY.match(str(totals.get("total", ""))):
        raise _Refused("invalid_payload", "payload.totals.total: expected a money string")
    currency = p.get("currency")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        raise _Refused("invalid_payload", "payload.currency: expected an ISO 4217 code")
    if "date_modified_gmt" not in p:
        raise _Refused("invalid_payload", "payload.date_modified_gmt: missing (the version)")


def _check_erase(p: dict[str, Any]) -> None:
    """An erasure request as the plugin sends it (issue 14: id, email, date_modified_gmt)."""
    email = p.get("email")
    if not isinstance(email, str) or normalize_email(email) is None:
        # The address itself is never repeated: a rejection is logged and kept.
        raise _Refused(
            "invalid_payload",
            "payload.email: expected the email address to erase (a valid address, as the"
            " WordPress eraser was given it)",
        )
    if "date_modified_gmt" not in p:
        raise _Refused("invalid_payload", "payload.date_modified_gmt: missing (the request's time)")


def _event_id(raw_id: object, topic: str, payload: dict[str, Any], occurred_at: Any) -> EventId:
    if raw_id is None:
        return content_event_id(topic, payload, occurred_at)
    if isinstance(raw_id, str) and EVENT_ID.match(raw_id):
        return EventId(raw_id)
    raise _Refused("invalid_event", "id: expected 1-128 characters of [A-Za-z0-9._:-]")


def parse_event(
    raw: object,
    *,
    door: Door,
    historical: bool = False,
    index: int | None = None,
    json_checked: bool = False,
) -> Event | Rejection:
    """Validate one raw event object; a Rejection names the field and what was expected.

    `json_checked`: `raw` came from orjson (agent/core/storable.py `loads`), so only the
    payload's depth is left to check of what the store cannot keep, not every number.
    """
    where = f"events[{index}]" if index is not None else "event"
    if not isinstance(raw, dict):
        return Rejection("?", "invalid_event", f"{where}: expected an object")
    raw_id = raw.get("id")
    try:
        return _parse(raw, raw_id, door, historical, json_checked)
    except _Refused as refused:
        shown_id = raw_id if isinstance(raw_id, str) and EVENT_ID.match(raw_id) else "?"
        return Rejection(shown_id, refused.code, f"{where}: {refused.message}")


def _parse(
    raw: dict[str, Any], raw_id: object, door: Door, historical: bool, json_checked: bool
) -> Event:
    topic = raw.get("topic")
    payload = raw.get("payload")
    if not isinstance(topic, str) or "." not in topic:
        raise _Refused(
            "invalid_event", "topic: expected '<resource>.<action>' such as order.updated"
        )
    if not isinstance(payload, dict):
        raise _Refused("invalid_payload", "payload: expected the WooCommerce REST object")
    # What the store cannot write (too deep, an integer past 64 bits, a lone surrogate, NaN)
    # is refused here, for this event alone, before anything walks it (issue 16, finding 3).
    found = problem(payload, "payload", checked=json_checked)
    if found is None and raw.get("extra") is not None:
        found = problem(raw["extra"], "extra", checked=json_checked)
    if found is not None:
        raise _Refused(found.code, found.message)
    # Payment details never go further (agent/core/minimize.py): every door passes here. A
    # content id is still the hash of what came (ids stay what they were before minimizing).
    received, payload = payload, minimize(payload)
    action = _topic_action(topic)
    payload_id = _positive_id(payload.get("id"), "invalid_payload", "payload.id")
    rid = _positive_id(raw.get("resource_id", payload_id), "invalid_event", "resource_id")
    if rid != payload_id:
        raise _Refused(
            "invalid_payload", f"payload.id ({payload_id}) does not match resource_id ({rid})"
        )
    resource = _declared_resource(raw.get("resource"), topic, payload)
    if resource.value in _STREAM_ONLY and door is not Door.STREAM:
        what = "carts" if resource is Resource.CART else "erasure requests"
        raise _Refused(
            "unsupported_door",
            f"topic {topic!r}: {what} ride only the plugin's stream, not the {door.value} door",
        )
    _check_shape(resource, action, payload)
    try:
        occurred = parse_time(raw.get("occurred_at"))
    except ValueError as exc:
        raise _Refused("invalid_event", f"occurred_at: {exc}") from None
    extra = raw.get("extra") or {}
    if not isinstance(extra, dict):
        raise _Refused("invalid_event", "extra: expected an object")
    extra = minimize_value(extra)
    event_id = _event_id(raw_id, topic, received, raw.get("occurred_at"))
    return Event(
        id=event_id,
        topic=topic,
        resource=resource,
        action=action,
        resource_id=rid,
        payload=payload,
        occurred_at=occurred,
        extra=extra,
        door=door,
        historical=historical,
    )
