"""WooCommerce's native webhooks, without sockets: signatures, pings, deliveries → events, and
the plan that registers the agent's webhooks on a store.

Facts from reference/woocommerce/NOTES.md §1 (read in `WC_Webhook::deliver()` and friends).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.core.events import EVENT_ID, Door, Event, Rejection, content_event_id, parse_event
from agent.core.storable import loads, problem
from agent.core.times import utc_stamp
from agent.core.woo import PLURAL

__all__ = [
    "DISABLED_ADVICE",
    "WEBHOOK_ROUTE",
    "Ignored",
    "WebhookAction",
    "WebhookRow",
    "delivery_event",
    "install_topics",
    "is_ping",
    "plan_install",
    "sign",
    "verify_signature",
    "webhook_path",
    "webhook_report",
    "wp_specialchars_decode",
]

# Where WooCommerce delivers a site's webhooks (docs/doors.md).
WEBHOOK_ROUTE = "/webhooks/woocommerce/{site}"


def webhook_path(site: str) -> str:
    """The webhook door's path for one site."""
    return WEBHOOK_ROUTE.format(site=site)


_PING = re.compile(rb"^webhook_id=\d{1,20}$")

DISABLED_ADVICE = (
    "WooCommerce disables a webhook after repeated failed deliveries (on the 7th in a row; it "
    "never retries one: the poller catches up). Once the agent is reachable, re-enable it with "
    "`woobrevo-agent webhooks install --site {site}`, or in WooCommerce → Settings → Advanced → "
    "Webhooks → edit → Status: Active."
)


def wp_specialchars_decode(text: str) -> str:
    """WordPress' `wp_specialchars_decode($s, ENT_QUOTES)`: WooCommerce decodes the secret with
    it before signing (NOTES §1.1), so a secret holding `&amp;` signs as `&`."""
    if "&" not in text:
        return text
    for entity, char in (
        ("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#039;", "'"), ("&#39;", "'"),
        ("&#x27;", "'"), ("&#X27;", "'"), ("&amp;", "&"),
    ):  # fmt: skip
        text = text.replace(entity, char)
    return text


def sign(body: bytes, secret: str) -> str:
    """`X-WC-Webhook-Signature` for `body`: base64 of HMAC-SHA256 over the exact bytes."""
    key = wp_specialchars_decode(secret).encode("utf-8")
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode("ascii")


def verify_signature(body: bytes, secret: str, header: str | None) -> bool:
    """True when `header` signs these raw bytes; checked in constant time, never on re-parsed
    JSON (WooCommerce signs PHP's json_encode output: `\\/`, `\\uXXXX`)."""
    if not header or not secret:
        return False
    given = header.strip()
    if not given.isascii():  # base64 is ASCII; aiohttp hands other bytes over as surrogates,
        return False  # which no codec encodes (found by tests/fuzz/test_webhook_fuzz.py)
    return hmac.compare_digest(sign(body, secret).encode("ascii"), given.encode("ascii"))


def is_ping(topic: str | None, signature: str | None, body: bytes) -> bool:
    """WooCommerce's ping: form body `webhook_id=N`, no X-WC headers, no signature (NOTES §1.5)."""
    return topic is None and signature is None and bool(_PING.match(body.strip()))


@dataclass(frozen=True, slots=True)
class Ignored:
    """A verified delivery the agent does not use (`action.*` topics); answered 200."""

    reason: str


def delivery_event(
    topic: str, body: bytes, *, delivery_id: str | None, now: float
) -> Event | tuple[Rejection, object] | Ignored:
    """A verified delivery → the event to store, a rejection (kept as a dead letter), or Ignored.

    The event id is the content key of `content_event_id` (site is the store's key): WooCommerce's
    delivery id repeats within a second, so it is no idempotency key (NOTES §1.1). A `deleted`
    body is only `{"id": N}`: its version is the delivery id, so a second trash of the same
    object (after a restore) is not taken for a replay of the first.
    """
    if topic.startswith("action."):
        return Ignored(f"topic {topic} carries no REST object")
    safe_delivery = delivery_id if delivery_id and EVENT_ID.match(delivery_id) else None
    ref = f"webhook:{topic}:{safe_delivery}" if safe_delivery and EVENT_ID.match(topic) else "?"
    try:
        # What the store cannot keep (NaN, a lone surrogate, nesting past 1,024 levels…) is
        # read, then refused with its reason below (agent/core/storable.py).
        payload, checked = loads(body)
    except ValueError:
        text = body[:4096].decode("utf-8", "replace")
        return Rejection(ref, "invalid_payload", f"webhook {topic}: body is not JSON"), {
            "body": text
        }
    if not isinstance(payload, dict):
        return Rejection(
            ref, "invalid_payload", f"webhook {topic}: body is not a JSON object"
        ), payload
    if "id" not in payload and isinstance(payload.get("code"), str) and "message" in payload:
        # The webhook's user could not read the object, or it is gone (NOTES §1.3): WooCommerce
        # sends its REST error instead. Kept as a dead letter; the poller has the object.
        status = (
            payload.get("data", {}).get("status") if isinstance(payload.get("data"), dict) else None
        )
        msg = f"webhook {topic}: WooCommerce sent a REST error, not the object: {payload['code']}"
        msg += f" ({status}): {payload['message']}" if status else f": {payload['message']}"
        return Rejection(ref, "rest_error", msg[:1000]), payload
    found = problem(payload, "payload", checked=checked)
    if found is not None:  # before the content id, which hashes the payload's JSON
        return Rejection(ref, found.code, f"webhook {topic}: {found.message}"), {
            "topic": topic,
            "payload": payload,
        }
    version = (safe_delivery or utc_stamp(now)) if topic.endswith(".deleted") else None
    raw: dict[str, Any] = {
        "id": content_event_id(topic, payload, version),
        "topic": topic,
        "payload": payload,
        "occurred_at": utc_stamp(now),
    }
    parsed = parse_event(raw, door=Door.WEBHOOK, json_checked=checked)
    if isinstance(parsed, Rejection):
        return Rejection(parsed.id, parsed.code, f"webhook {parsed.message}"), raw
    return parsed


# -- registration (webhooks install / status) ----------------------------------------------

_ACTIONS = {
    "customer": ("created", "updated", "deleted"),  # customer.restored is refused (NOTES §1.4)
    "order": ("created", "updated", "deleted", "restored"),
    "product": ("created", "updated", "deleted", "restored"),
    "coupon": ("created", "updated", "deleted", "restored"),
}


def install_topics(sync: Mapping[str, bool], configured: Iterable[str]) -> list[str]:
    """The WooCommerce topics the agent subscribes to.

    Every topic of each synced resource (a contact needs `customer.updated` even when no Brevo
    event is mapped to it), plus the topics of the config's `webhooks:` list; a derived lifecycle
    topic (`order.paid`, `order.completed`…) comes from `order.updated`.
    """
    topics: set[str] = set()
    for resource, actions in _ACTIONS.items():
        if sync.get(PLURAL[resource], True):
            topics.update(f"{resource}.{a}" for a in actions)
    for topic in configured:
        resource, _, action = topic.partition(".")
        if resource in _ACTIONS and action in _ACTIONS[resource]:
            topics.add(topic)
        elif resource == "order":
            topics.add("order.updated")
    return sorted(topics)


def _same_url(a: object, b: str) -> bool:
    return isinstance(a, str) and a.rstrip("/") == b.rstrip("/")


@dataclass(frozen=True, slots=True)
class WebhookAction:
    """One step of `webhooks install`: create, update (reuse) or report a duplicate."""

    kind: str  # "create" | "update" | "duplicate"
    topic: str
    webhook_id: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def plan_install(
    existing: Iterable[Mapping[str, Any]],
    topics: Iterable[str],
    delivery_url: str,
    secret: str,
    name: str,
) -> list[WebhookAction]:
    """What to send so that each topic has one active webhook to `delivery_url` with `secret`.

    A webhook with the same topic and delivery URL is reused: its secret cannot be read back
    (the REST API never returns it), so it is set again, with status active. Extra matches are
    reported as duplicates, never deleted.
    """
    ours: dict[str, list[Mapping[str, Any]]] = {}
    for hook in existing:
        if _same_url(hook.get("delivery_url"), delivery_url) and isinstance(hook.get("id"), int):
            ours.setdefault(str(hook.get("topic")), []).append(hook)
    plan: list[WebhookAction] = []
    for topic in topics:
        matches = sorted(ours.get(topic, []), key=lambda h: (h.get("status") != "active", h["id"]))
        label = f"{name} {topic}"
        if not matches:
            plan.append(WebhookAction("create", topic, None, {
                "name": label, "topic": topic, "delivery_url": delivery_url, "secret": secret,
                "status": "active",
            }))  # fmt: skip
            continue
        plan.append(WebhookAction("update", topic, int(matches[0]["id"]), {
            "secret": secret, "status": "active", "name": label,
        }))  # fmt: skip
        plan.extend(WebhookAction("duplicate", topic, int(h["id"])) for h in matches[1:])
    return plan


@dataclass(frozen=True, slots=True)
class WebhookRow:
    """One line of `webhooks status`."""

    topic: str
    webhook_id: int | None
    status: str  # active, paused, disabled, missing, or (for an extra match) duplicate
    delivery_url: str | None
    ok: bool
    advice: str = ""


def webhook_report(
    existing: Iterable[Mapping[str, Any]], topics: Iterable[str], delivery_url: str, site: str
) -> list[WebhookRow]:
    """Each wanted topic's webhook and its state, with what to do when it is not active."""
    ours: dict[str, list[Mapping[str, Any]]] = {}
    for hook in existing:
        if _same_url(hook.get("delivery_url"), delivery_url):
            ours.setdefault(str(hook.get("topic")), []).append(hook)
    rows: list[WebhookRow] = []
    install = f"woobrevo-agent webhooks install --site {site}"
    for topic in topics:
        matches = sorted(
            ours.pop(topic, []), key=lambda h: (h.get("status") != "active", h.get("id"))
        )
        if not matches:
            rows.append(WebhookRow(topic, None, "missing", None, False, f"run `{install}`"))
            continue
        for i, hook in enumerate(matches):
            status = str(hook.get("status"))
            wid = hook.get("id") if isinstance(hook.get("id"), int) else None
            url = str(hook.get("delivery_url"))
            if i > 0:
                rows.append(
                    WebhookRow(
                        topic,
                        wid,
                        "duplicate",
                        url,
                        False,
                        "a second webhook for this topic: delete it in WooCommerce",
                    )
                )
            elif status == "active":
                rows.append(WebhookRow(topic, wid, status, url, True))
            elif status == "disabled":
                rows.append(
                    WebhookRow(topic, wid, status, url, False, DISABLED_ADVICE.format(site=site))
                )
            else:
                rows.append(
                    WebhookRow(
                        topic,
                        wid,
                        status,
                        url,
                        False,
                        f"status {status}: WooCommerce delivers nothing; run `{install}`",
                    )
                )
    for topic, hooks in sorted(ours.items()):
        for hook in hooks:
            wid = hook.get("id") if isinstance(hook.get("id"), int) else None
            rows.append(
                WebhookRow(
                    topic,
                    wid,
                    str(hook.get("status")),
                    str(hook.get("delivery_url")),
                    True,
                    "not a topic the agent needs (harmless)",
                )
            )
    return rows
