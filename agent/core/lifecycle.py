"""Lifecycle derivation: the topics a change means, from the previous state to the new one.

Derived from state, not from the door's topic, so the same change gives the same events whether
the plugin, a native webhook or the poller brought it (DESIGN.md, data path step 5).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from agent.core.events import Action, Event, Resource
from agent.core.woo import DEFAULT_PAID_STATUSES, DRAFT_STATUSES

__all__ = ["derive_topics", "is_stale", "object_state"]


def is_stale(prior: dict[str, Any] | None, event: Event) -> bool:
    """An older version than the one already seen (a slower door): it changes nothing."""
    if not prior or event.action is Action.DELETED:
        return False
    new, old = event.payload.get("date_modified_gmt"), prior.get("version")
    return bool(new and old and str(new) < str(old))


def object_state(event: Event) -> dict[str, Any]:
    """What the agent remembers of an object to derive the next transition."""
    p = event.payload
    state: dict[str, Any] = {
        "version": p.get("date_modified_gmt") or "",
        "deleted": event.action is Action.DELETED,
    }
    if event.resource in (Resource.PRODUCT, Resource.VARIATION):
        # Kept for the deletion, whose body carries only the id (Brevo needs a name).
        name = p.get("name")
        if name:
            state["name"] = name
    if event.resource is Resource.ORDER and event.action is not Action.DELETED:
        state["status"] = p.get("status")
        state["refunds"] = sorted(_refund_ids(p))
    return state


def _refund_ids(payload: dict[str, Any]) -> list[int]:
    """The ids of an order's refunds."""
    refunds = payload.get("refunds") or []
    return [r["id"] for r in refunds if isinstance(r, dict) and isinstance(r.get("id"), int)]


def derive_topics(
    event: Event,
    prior: dict[str, Any] | None,
    paid: Collection[str] = DEFAULT_PAID_STATUSES,
) -> list[str]:
    """Topics for this change: WooCommerce's own (`order.created` …) plus derived lifecycle
    topics (`order.paid` into one of the `paid` statuses, `order.completed`, `order.refunded`,
    `order.cancelled`)."""
    res = event.resource.value if event.resource is not Resource.VARIATION else "product"
    if event.action is Action.DELETED:
        return [] if prior and prior.get("deleted") else [f"{res}.deleted"]
    if event.resource is Resource.ORDER and event.payload.get("status") in DRAFT_STATUSES:
        return []  # an order exists for marketing once it leaves draft (NOTES §4, orders)
    topics: list[str] = []
    existed = (
        prior is not None
        and not prior.get("deleted")
        and (event.resource is not Resource.ORDER or prior.get("status") not in DRAFT_STATUSES)
    )
    if prior is not None and prior.get("deleted"):
        topics.append(f"{res}.restored")
    elif not existed:
        topics.append(f"{res}.created")
    else:
        topics.append(f"{res}.updated")
    if event.resource is Resource.ORDER:
        old = (prior or {}).get("status") if existed else None
        new = event.payload.get("status")
        if new != old:
            if new in paid and old not in paid:
                topics.append("order.paid")
            if new == "completed":
                topics.append("order.completed")
            if new == "cancelled":
                topics.append("order.cancelled")
        new_refunds = set(_refund_ids(event.payload))
        old_refunds = set((prior or {}).get("refunds", []))
        if new_refunds - old_refunds or (
            new == "refunded" and old != "refunded" and not old_refunds
        ):
            topics.append("order.refunded")
    return topics
