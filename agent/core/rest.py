"""WooCommerce REST objects → events, pure: the fields a listing asks for, the topic a listed
object gets, tombstones for objects that vanished, and `include=` lists.

The polling and backfill doors (agent/doors/poller.py, agent/doors/backfill.py) list the store
and store what these return. WooCommerce facts: reference/woocommerce/NOTES.md §2 (listings).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agent.core.events import EVENT_ID, Door, Event, Rejection, parse_event
from agent.core.woo import COMPUTED_PATHS, SINGULAR

__all__ = ["FIELDS", "chunks", "deleted_events", "fields_for", "to_events", "topic_for"]


# The fields each resource's consumers read: the pipeline (agent/core/pipeline.py, lifecycle.py)
# and the mapping (agent/core/mapping.py). Asking only for them (`_fields`) halves the bytes of
# an order page; tests/agent/test_backfill.py checks that a trimmed reference object gives the
# pipeline exactly the intents the full one gives, so a new field read there fails that test.
FIELDS: dict[str, tuple[str, ...]] = {
    "customers": (
        "id",
        "email",
        "first_name",
        "last_name",
        "role",
        "billing",
        "shipping",
        "meta_data",
        "date_created_gmt",
        "date_modified_gmt",
    ),
    "orders": (
        "id",
        "parent_id",
        "number",
        "status",
        "currency",
        "total",
        "customer_id",
        "billing",
        "shipping",
        "line_items",
        "coupon_lines",
        "refunds",
        "meta_data",  # the checkout's opt-in record, `_woobrevo_consent` (agent/core/consent.py)
        "date_created",
        "date_created_gmt",
        "date_modified_gmt",
    ),
    "products": (
        "id",
        "name",
        "type",
        "status",
        "permalink",
        "sku",
        "price",
        "images",
        "categories",
        "parent_id",
        "stock_quantity",
        "attributes",
        "variations",
        "date_created_gmt",
        "date_modified_gmt",
    ),
    "variations": (
        "id",
        "name",
        "type",
        "status",
        "permalink",
        "sku",
        "price",
        "image",
        "parent_id",
        "stock_quantity",
        "attributes",
        "date_created_gmt",
        "date_modified_gmt",
    ),
    "coupons": ("id", "code", "status", "date_created_gmt", "date_modified_gmt"),
}

# WooCommerce sends variations as product.* (NOTES §1.3).
_TOPIC_BASE = {**SINGULAR, "variations": "product"}


def fields_for(resource: str, mapping: Mapping[str, str]) -> tuple[str, ...]:
    """`_fields` for a listing: what the pipeline reads plus each mapped customer path's root."""
    fields = list(FIELDS[resource])
    if resource == "customers":
        for path in mapping:
            root = path.split(".", 1)[0]
            if path not in COMPUTED_PATHS and root not in fields:
                fields.append(root)
    return tuple(fields)


def topic_for(resource: str, obj: Mapping[str, Any]) -> str:
    """`created` while the object was never modified after its creation, else `updated`.

    Derived from content only, so the same version listed twice (overlapping windows, a
    backfill and a poll) gets the same content id and is stored once (agent/core/events.py).
    """
    created = obj.get("date_created_gmt")
    fresh = bool(created) and created == obj.get("date_modified_gmt")
    return f"{_TOPIC_BASE[resource]}.{'created' if fresh else 'updated'}"


def to_events(
    resource: str,
    items: Iterable[Mapping[str, Any]],
    *,
    door: Door,
    historical: bool = False,
) -> tuple[list[Event], list[tuple[Rejection, object]]]:
    """Listed REST objects → events (content ids) and rejections (kept as dead letters)."""
    events: list[Event] = []
    rejected: list[tuple[Rejection, object]] = []
    for item in items:
        raw = {"topic": topic_for(resource, item), "resource": SINGULAR[resource], "payload": item}
        parsed = parse_event(raw, door=door, historical=historical)
        if isinstance(parsed, Rejection):
            rejected.append((_named(parsed, raw), raw))
        else:
            events.append(parsed)
    return events, rejected


def _named(rejection: Rejection, raw: Mapping[str, Any]) -> Rejection:
    """A refused listed object named by topic, id and version, so that the overlapping windows
    that list it again keep one dead letter of it, not one a round."""
    payload = raw["payload"]
    name = f"{raw['topic']}:{payload.get('id')}:{payload.get('date_modified_gmt')}"
    if rejection.id != "?" or not EVENT_ID.match(name):
        return rejection
    return Rejection(name, rejection.code, rejection.message)


def deleted_events(resource: str, ids: Iterable[int], *, door: Door) -> list[Event]:
    """`<resource>.deleted` events for objects that vanished from the store's listings."""
    out = []
    for oid in ids:
        raw = {"topic": f"{_TOPIC_BASE[resource]}.deleted", "payload": {"id": oid}}
        raw["resource"] = SINGULAR[resource]
        parsed = parse_event(raw, door=door)
        if isinstance(parsed, Event):
            out.append(parsed)
    return out


def chunks(ids: Sequence[int], size: int) -> list[list[int]]:
    """`ids` in lists of at most `size` (WooCommerce's `include` takes up to per_page ids)."""
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]
