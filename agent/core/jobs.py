"""Brevo intents: what the core asks the forwarder to write, before any endpoint is chosen."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from agent.core.consent import ConsentRecord

__all__ = ["FAMILY_OF_KIND", "Intent", "Job", "Kind", "Outcome", "body_hash", "merge_bodies"]


class Kind(StrEnum):
    """What a job writes in Brevo."""

    CONTACT = "contact"
    EVENT = "event"
    ORDER = "order"
    PRODUCT = "product"
    CATEGORY = "category"
    COUPON = "coupon"
    DOI = "doi"  # Brevo's double opt-in request for a new subscriber; single only
    ERASE = "erase"  # a `privacy.erase`: DELETE (or blocklist) one contact; single only


# The endpoint family of each kind's single endpoint (reference/brevo/NOTES.md §4).
FAMILY_OF_KIND: dict[Kind, str] = {
    Kind.CONTACT: "contacts",
    Kind.EVENT: "events",
    Kind.ORDER: "orders",
    Kind.PRODUCT: "products",
    Kind.CATEGORY: "other",
    Kind.COUPON: "other",
    Kind.DOI: "contacts",
    Kind.ERASE: "contacts",
}


def canonical(body: Any) -> str:
    """JSON with sorted keys: the form hashed and stored."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()


def body_hash(body: Any) -> str:
    """A short stable hash of a body, for dedupe."""
    return hashlib.sha256(canonical(body).encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Intent:
    """One thing Brevo should hold, keyed so that later intents for the same thing coalesce."""

    kind: Kind
    key: str
    body: dict[str, Any]
    historical: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What processing one stored event decided (agent.core.pipeline.decide)."""

    object_state: dict[str, Any] | None = None
    intents: tuple[Intent, ...] = ()
    dead: tuple[tuple[str, str], ...] = ()  # (code, message)
    account: str = ""
    warnings: tuple[str, ...] = ()  # for the log (an unreadable phone or date: not sent)
    consent: tuple[tuple[str, ConsentRecord], ...] = ()  # (email, new record) to keep


@dataclass(slots=True)
class Job:
    """A stored intent with its delivery bookkeeping."""

    id: int
    account: str
    site: str
    kind: Kind
    key: str
    body: dict[str, Any]
    historical: bool
    attempts: int = 0
    single_only: bool = False


def merge_bodies(kind: Kind, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Latest wins, except that contacts keep attributes and lists that the newer intent lacks."""
    if kind is Kind.CONTACT:
        return _merge_contacts(old, new)
    if kind is Kind.COUPON:
        codes = sorted(set(old.get("codes", [])) | set(new.get("codes", [])))
        return {**new, "codes": codes}
    return new


def _merge_contacts(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Two contact bodies in one: attributes merged, and per list the later word (join or
    leave). Leaving a list that the queued body was about to join cancels both: the contact
    never joined it."""
    merged = dict(old)
    merged.update(
        {k: v for k, v in new.items() if k not in ("attributes", "listIds", "unlinkListIds")}
    )
    merged["attributes"] = {**old.get("attributes", {}), **new.get("attributes", {})}
    joining = set(old.get("listIds", []))
    leave = set(new.get("unlinkListIds", []))
    lists = sorted((joining | set(new.get("listIds", []))) - leave)
    unlink = sorted(
        ((set(old.get("unlinkListIds", [])) - set(new.get("listIds", []))) | leave) - joining
    )
    for name, ids in (("listIds", lists), ("unlinkListIds", unlink)):
        merged.pop(name, None)
        if ids:
            merged[name] = ids
    return merged
