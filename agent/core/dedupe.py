"""What Brevo already holds, subtracted: the agent's dedupe rules, data in, data out. Pure.

The store keeps, per Brevo account and key, what was last written successfully (`forwarded`);
an intent goes out only for what that record lacks (DESIGN.md, data path step 5), and contacts
that share their lists ride one `/contacts/import` together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from agent.core.jobs import Kind, body_hash

__all__ = ["known_after", "largest_list_group", "minus_known"]

_MISSING = object()


def minus_known(kind: Kind, body: dict[str, Any], known: Any) -> dict[str, Any] | None:
    """The part of an intent Brevo does not hold yet, or None when it holds all of it."""
    if known is None:
        return body
    if kind is Kind.CONTACT:
        attrs = {
            k: v
            for k, v in body.get("attributes", {}).items()
            if known.get("attributes", {}).get(k, _MISSING) != v
        }
        lists = [i for i in body.get("listIds", []) if i not in set(known.get("listIds", []))]
        if not attrs and not lists:
            return None
        out = {k: v for k, v in body.items() if k not in ("attributes", "listIds")}
        if attrs:
            out["attributes"] = attrs
        if lists:
            out["listIds"] = lists
        return out
    if kind is Kind.COUPON:
        codes = [c for c in body.get("codes", []) if c not in set(known.get("codes", []))]
        return {**body, "codes": codes} if codes else None
    if known.get("hash") == body_hash(body):
        return None
    return body


def known_after(kind: Kind, body: dict[str, Any], known: Any) -> dict[str, Any]:
    """What Brevo holds of a key once this body is written (the `forwarded` record)."""
    if kind is Kind.CONTACT:
        prev = known or {}
        return {
            "attributes": {**prev.get("attributes", {}), **body.get("attributes", {})},
            "listIds": sorted(set(prev.get("listIds", [])) | set(body.get("listIds", []))),
        }
    if kind is Kind.COUPON:
        prev_codes = set((known or {}).get("codes", []))
        return {"codes": sorted(prev_codes | set(body.get("codes", [])))}
    return {"hash": body_hash(body)}


def largest_list_group(rows: Iterable[tuple[int, str, str | None]]) -> list[int]:
    """Ids of the largest group of contact jobs with the same lists (one job per key), or the
    first job alone when that group has no list."""
    groups: dict[tuple[int, ...], list[int]] = {}
    seen: set[str] = set()
    for job_id, key, lists in rows:
        if key in seen:
            continue
        seen.add(key)
        group = tuple(sorted(json.loads(lists))) if lists else ()
        groups.setdefault(group, []).append(job_id)
    if not groups:
        return []
    largest, ids = max(groups.items(), key=lambda kv: len(kv[1]))
    return ids if largest else ids[:1]
