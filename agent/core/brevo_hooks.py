"""What Brevo tells the agent about who left, without sockets: its marketing webhooks
(`unsubscribed`, `spam`, `listAddition`) and, at backfill, the contacts it already holds.

Both become suppressions per (account, email, list) (docs/privacy.md; list 0 = every list):
the agent never adds a contact back to a list they left, and never lifts a blocklisting.
Brevo's marketing webhook bodies (developers.brevo.com, "Marketing webhooks"): one JSON object
per event, or an array of them when the webhook is `batched`; each has `event`, `email`, `id`
(the webhook's id), `ts_event` (UTC seconds), `date_event` (the account's local time, so not
read here) and, for list events, `list_id` (an array of list ids).
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agent.core.normalize import normalize_email

__all__ = [
    "BREVO_HOOK_EVENTS",
    "BREVO_HOOK_ROUTE",
    "BrevoHookAction",
    "ContactSuppression",
    "Ignored",
    "brevo_hook_path",
    "contact_suppressions",
    "given_token",
    "hook_action",
    "parse_delivery",
    "token_matches",
]

# Where Brevo delivers a site's marketing webhooks (docs/doors.md).
BREVO_HOOK_ROUTE = "/webhooks/brevo/{site}"
# The events to tick in Brevo → Settings → Webhooks (marketing), as its API names them.
BREVO_HOOK_EVENTS = ("unsubscribed", "listAddition", "spam")

# Brevo writes an event's name in camelCase in its API and snake_case in some bodies.
_EVENTS: dict[str, tuple[Literal["suppress", "lift"], str]] = {
    "unsubscribed": ("suppress", "unsubscribed"),
    "unsubscribe": ("suppress", "unsubscribed"),
    "spam": ("suppress", "spam"),
    "listaddition": ("lift", "list_addition"),
    "list_addition": ("lift", "list_addition"),
}


def brevo_hook_path(site: str) -> str:
    """The Brevo webhook door's path for one site."""
    return BREVO_HOOK_ROUTE.format(site=site)


@dataclass(frozen=True, slots=True)
class BrevoHookAction:
    """One event Brevo reported: suppress `email` on `list_ids` (empty: every list), or lift
    its suppression of `list_ids` (the person rejoined those lists in Brevo)."""

    kind: Literal["suppress", "lift"]
    email: str
    list_ids: tuple[int, ...]
    reason: str  # unsubscribed | spam | list_addition
    since: float


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event the door answers 200 to and does nothing with; `reason` never holds the email."""

    event: str
    reason: str


def given_token(authorization: str | None, query_token: str | None) -> str | None:
    """The secret a request presents: `Authorization: Bearer <secret>` (Brevo's webhook
    `auth.type: bearer`) or `?token=<secret>`; None when it presents neither."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None


def token_matches(given: str | None, secret: str | None) -> bool:
    """Whether `given` is the configured secret, compared in constant time."""
    if not given or not secret:
        return False
    return hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))


def _list_ids(value: object) -> tuple[int, ...] | None:
    """`list_id` as Brevo sends it (an array, or now and then a single id); None: unreadable."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out: list[int] = []
    for item in items:
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item.strip())
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            return None
        out.append(item)
    return tuple(sorted(set(out)))


def _since(item: Mapping[str, Any], now: float) -> float:
    """When the event happened: `ts_event` (UTC seconds), else `ts`, else `ts_epoch` (ms),
    else the time it arrived (`date_event` is in the account's local time zone)."""
    for key, scale in (("ts_event", 1.0), ("ts", 1.0), ("ts_epoch", 1000.0)):
        value = item.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        seconds = float(value) / scale
        if math.isfinite(seconds) and seconds > 0:
            return min(seconds, now)  # a clock ahead of ours never makes a suppression newer
    return now


def hook_action(item: object, now: float) -> BrevoHookAction | Ignored:
    """One webhook event → what the agent records, or why it records nothing."""
    if not isinstance(item, dict):
        return Ignored("?", f"an event must be a JSON object, got {type(item).__name__}")
    raw = item.get("event")
    name = raw[:64] if isinstance(raw, str) else "?"
    known = _EVENTS.get(name.strip().lower()) if isinstance(raw, str) else None
    if known is None:
        return Ignored(name, "not an event the agent uses (unsubscribed, listAddition, spam)")
    kind, reason = known
    email = normalize_email(item.get("email"))
    if email is None:
        return Ignored(name, "no valid email address in the event")
    lists = _list_ids(item.get("list_id", item.get("listId")))
    if lists is None:
        return Ignored(name, "list_id must be list ids (positive integers)")
    if reason == "spam":
        lists = ()  # a complaint stops every marketing email, whatever list it came from
    if kind == "lift" and not lists:
        return Ignored(name, "a listAddition without list_id names no list to lift")
    return BrevoHookAction(kind, email, lists, reason, _since(item, now))


def parse_delivery(body: bytes, now: float) -> list[BrevoHookAction | Ignored] | str:
    """A request body (one event, or an array of them: batched webhooks) → one outcome per
    event, in order; a str says why the body is unreadable."""
    if not body.strip():
        return "the body is empty; Brevo sends a JSON object (or an array of them)"
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"the body is not JSON ({exc}); Brevo sends a JSON object (or an array of them)"
    except RecursionError:  # nested past ~1,000 levels: no Brevo event is
        return "the body nests too deep; Brevo sends a JSON object (or an array of them)"
    if not isinstance(doc, list | dict):
        return f"expected a JSON object or an array of them, got {type(doc).__name__}"
    items = doc if isinstance(doc, list) else [doc]
    return [hook_action(item, now) for item in items]


# -- the backfill's look at the contacts Brevo already holds ------------------------------------


@dataclass(frozen=True, slots=True)
class ContactSuppression:
    """What one existing Brevo contact says: suppress `email` on `list_ids` (empty: every
    list, the store's list 0)."""

    email: str
    list_ids: tuple[int, ...]
    reason: str  # blocklisted | unsubscribed | absent_at_backfill


def contact_suppressions(
    contact: Mapping[str, Any], absent_lists: Iterable[int]
) -> list[ContactSuppression]:
    """A contact of Brevo's `GET /contacts` → its suppressions: blocklisted → every list; each list
    of `listUnsubscribed`; each of `absent_lists` (the marketing lists a backfill fills) it is
    not in, reason `absent_at_backfill` (it exists, so being outside the list was its choice
    or the owner's, not the agent's to undo)."""
    email = normalize_email(contact.get("email"))
    if email is None:
        return []  # a contact known only by SMS or ext_id: no email for the agent to match
    if contact.get("emailBlacklisted") is True:
        return [ContactSuppression(email, (), "blocklisted")]
    out: list[ContactSuppression] = []
    left = _list_ids(contact.get("listUnsubscribed")) or ()
    if left:
        out.append(ContactSuppression(email, left, "unsubscribed"))
    member = set(_list_ids(contact.get("listIds")) or ())
    absent = tuple(sorted({i for i in absent_lists if i not in member and i not in left}))
    if absent:
        out.append(ContactSuppression(email, absent, "absent_at_backfill"))
    return out
