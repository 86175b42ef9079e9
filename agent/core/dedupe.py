"""What Brevo already holds, subtracted: the agent's dedupe rules, data in, data out. Pure.

The store keeps, per Brevo account and key, what was last written successfully (`forwarded`);
an intent goes out only for what that record lacks (DESIGN.md, data path step 5). Intents for
one key coalesce into one queued job (`coalesce`), one key never flies twice (`claimable`), and
contacts that share their lists ride one `/contacts/import` together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agent.core.jobs import Intent, Kind, body_hash, merge_bodies

__all__ = [
    "Merged",
    "NewJob",
    "Pending",
    "Write",
    "claimable",
    "coalesce",
    "coalesces",
    "known_after",
    "largest_list_group",
    "minus_known",
    "reads_known",
]

_MISSING = object()


@dataclass(frozen=True, slots=True)
class Pending:
    """The job queued for an intent's key, not yet claimed: what coalescing merges into."""

    body: dict[str, Any]
    historical: bool


@dataclass(frozen=True, slots=True)
class NewJob:
    """Queue a new job with this body."""

    body: dict[str, Any]
    historical: bool


@dataclass(frozen=True, slots=True)
class Merged:
    """The pending job for the key takes this body instead of its own."""

    body: dict[str, Any]
    historical: bool


# What coalescing an intent writes; None when Brevo already holds all of it.
Write = NewJob | Merged


def coalesces(kind: Kind) -> bool:
    """Whether intents of a kind merge per key: all but events (one job per event)."""
    return kind is not Kind.EVENT


def reads_known(intent: Intent, pending: Pending | None, in_flight: bool) -> bool:
    """Whether `coalesce` judges the intent against what Brevo holds (the `forwarded` record):
    not while a job for the key is queued or in flight, since Brevo is about to hold something
    else (so the store reads that record only when this says so)."""
    return not coalesces(intent.kind) or (pending is None and not in_flight)


def coalesce(
    intent: Intent,
    pending: Pending | None,
    in_flight: bool,
    known: dict[str, Any] | None,
) -> Write | None:
    """What to queue for an intent, given the key's pending job, whether a job for the key is
    in flight, and what Brevo holds of it (`known`, None: nothing).

    A pending job takes the intent in (`merge_bodies`). With a job in flight the intent goes
    whole: an intent that goes back to what `known` says (an order on-hold, then processing
    again) must still be sent, or the job in flight would have the last word. Otherwise only
    what Brevo lacks goes (`minus_known`), or nothing. Events never merge: one job each.
    """
    if pending is not None and coalesces(intent.kind):
        body = merge_bodies(intent.kind, pending.body, intent.body)
        return Merged(body, pending.historical and intent.historical)
    if not reads_known(intent, pending, in_flight):
        return NewJob(intent.body, intent.historical)
    unknown = minus_known(intent.kind, intent.body, known)
    return None if unknown is None else NewJob(unknown, intent.historical)


def claimable(kind: Kind, due: Iterable[tuple[int, str]]) -> list[int]:
    """Ids of the due jobs (id, key), oldest first, that one claim may take: one job per key,
    the oldest, since two writes of one key must reach Brevo in order; all of them for events,
    which never coalesce (one job per event).

    `due` holds no key already in flight: the store's query leaves those out before its LIMIT,
    from the index of jobs in flight, so that they do not use up the claim's room.
    """
    if not coalesces(kind):
        return [job_id for job_id, _ in due]
    seen: set[str] = set()
    taken = []
    for job_id, key in due:
        if key not in seen:
            seen.add(key)
            taken.append(job_id)
    return taken


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
        held = set(known.get("listIds", []))
        lists = [i for i in body.get("listIds", []) if i not in held]
        # A list the contact is to leave (an abandoned cart recovered, agent/core/carts.py):
        # only one Brevo holds it in.
        unlink = [i for i in body.get("unlinkListIds", []) if i in held]
        if not attrs and not lists and not unlink:
            return None
        out = {k: v for k, v in body.items() if k not in ("attributes", "listIds", "unlinkListIds")}
        if attrs:
            out["attributes"] = attrs
        if lists:
            out["listIds"] = lists
        if unlink:
            out["unlinkListIds"] = unlink
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
            "listIds": sorted(
                (set(prev.get("listIds", [])) | set(body.get("listIds", [])))
                - set(body.get("unlinkListIds", []))
            ),
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
