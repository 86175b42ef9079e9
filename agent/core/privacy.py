"""Erasure and export (issue 14), the pure part: what a `privacy.erase` asks of Brevo, how an
email is taken out of a stored value, and how the agent's holdings are shown to an exporter.

The shells: agent/process/processor.py turns a stored `privacy.erase` into an `Erasure` (its
Brevo job), agent/forward/forwarder.py sends it, and agent/store/privacy.py purges the email
from the store once Brevo answered; agent/doors/stream.py answers `export` frames.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.core.events import Event
from agent.core.jobs import Intent, Job, Kind
from agent.core.normalize import normalize_email
from agent.core.times import utc_stamp

__all__ = [
    "ERASED",
    "ERASE_ROUTE",
    "Erasure",
    "ErasureRules",
    "erase_done",
    "erase_job",
    "erase_path",
    "erase_request_body",
    "erasure_of",
    "export_groups",
    "mentions",
    "redact",
    "redact_raw",
]

# What stands where an erased email was inside a longer string.
ERASED = "[erased]"
# The path the forwarder's logs and metrics show for an erase call (never the address).
ERASE_ROUTE = "/contacts/{identifier}"


@dataclass(frozen=True, slots=True)
class ErasureRules:
    """What an erasure reads of one site's config: its Brevo account, the erasure setting,
    the Brevo attributes its mapping writes, and every site sending to the same account (the
    contact in Brevo is the account's: their stored data about the email goes too)."""

    site: str
    account: str
    mode: str  # "delete" | "blocklist"
    attributes: tuple[str, ...]
    sites: tuple[str, ...]

    @classmethod
    def of(cls, site: Any, every_site: Iterable[Any]) -> ErasureRules:
        """From a resolved `SiteConfig` (read by attribute: the core imports no config)."""
        account = site.brevo.account
        # The mapping's "email" path is the contact's identifier, not an attribute.
        mapping = site.woo.customer_mapping
        attributes = sorted(
            {attr for path, attr in mapping.items() if path != "email" and attr != "EMAIL"}
        )
        return cls(
            site=site.id,
            account=account,
            mode=site.woo.privacy.erasure,
            attributes=tuple(attributes),
            sites=tuple(sorted({s.id for s in every_site if s.brevo.account == account})),
        )


@dataclass(frozen=True, slots=True)
class Erasure:
    """A stored `privacy.erase`, decided: the Brevo job, and what to purge once it is done."""

    number: int
    email: str
    account: str
    sites: tuple[str, ...]
    intent: Intent


def erasure_of(rules: ErasureRules, event: Event) -> Erasure | None:
    """The erasure a `privacy.erase` event asks for (None: its email is unusable, which the
    parser refuses before it is stored)."""
    email = normalize_email(event.payload.get("email"))
    if email is None:
        return None
    body: dict[str, Any] = {
        "email": email,
        "erasure": event.resource_id,
        "site": rules.site,
        "mode": rules.mode,
        "sites": list(rules.sites),
    }
    if rules.mode == "blocklist":
        body["attributes"] = list(rules.attributes)
    # Keyed by the erasure, not the email: the key is shown in logs and kept in `forwarded`.
    intent = Intent(Kind.ERASE, f"erase:{rules.site}:{event.resource_id}", body)
    return Erasure(event.resource_id, email, rules.account, rules.sites, intent)


def erase_path(email: str) -> str:
    """DELETE or PUT /contacts/{email}?identifierType=email_id (the address URL-encoded)."""
    return f"/contacts/{urllib.parse.quote(email, safe='@')}?identifierType=email_id"


def erase_request_body(body: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The method and body of an erase job's call: DELETE, or PUT blocklisting the contact with
    every mapped attribute emptied (Brevo's update takes "" to clear a text value; a number or
    date attribute ignores a value of another type, so those keep theirs)."""
    if body.get("mode") == "blocklist":
        attributes = {name: "" for name in body.get("attributes", [])}
        put: dict[str, Any] = {"emailBlacklisted": True}
        if attributes:
            put["attributes"] = attributes
        return "PUT", put
    return "DELETE", None


def erase_done(status: int | None) -> bool:
    """Whether Brevo's answer ends an erase job: done, or 404 (no such contact: already gone,
    or never there)."""
    return status is not None and (200 <= status < 300 or status == 404)


def erase_job(job: Job) -> tuple[int, str]:
    """(erasure number, site) of an erase job, for the log line that never names the email."""
    return int(job.body.get("erasure", 0)), str(job.body.get("site", job.site))


def mentions(text: str, email: str) -> bool:
    """Whether stored text holds the email, in any case."""
    return email.lower() in text.lower()


def redact(value: Any, email: str) -> Any:
    """A JSON value without the email: a string that is the address becomes None, one that
    holds it has it replaced by ERASED (in any case)."""
    if isinstance(value, str):
        lowered = value.lower()
        target = email.lower()
        if target not in lowered:
            return value
        if lowered.strip() == target:
            return None
        out, start = [], 0
        while (at := lowered.find(target, start)) >= 0:
            out.append(value[start:at])
            out.append(ERASED)
            start = at + len(target)
        out.append(value[start:])
        return "".join(out)
    if isinstance(value, list):
        return [redact(v, email) for v in value]
    if isinstance(value, dict):
        return {k: redact(v, email) for k, v in value.items()}
    return value


def redact_raw(raw: object) -> object:
    """A refused raw event as kept in dead letters: a `privacy.*` one loses its email (it may
    be a mistyped real address)."""
    if not isinstance(raw, dict):
        return raw
    topic, payload = raw.get("topic"), raw.get("payload")
    if isinstance(topic, str) and topic.startswith("privacy.") and isinstance(payload, dict):
        return {**raw, "payload": {k: v for k, v in payload.items() if k != "email"}}
    return raw


# -- export -------------------------------------------------------------------------------

# Group id, label and the fields of each kind of holding, in the order the exporter shows.
_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("consent", "Marketing consent (WooBrevo agent)", ("subscribed", "since", "source", "doi")),
    ("suppressions", "Brevo list suppressions (WooBrevo agent)", ("list_id", "reason", "since")),
    ("events", "Events received (WooBrevo agent)", ("event", "topic", "received")),
    ("jobs", "Brevo writes waiting (WooBrevo agent)", ("kind", "created")),
    ("dead_letters", "Kept failures (WooBrevo agent)", ("kind", "code", "created")),
    ("carts", "Cart state (WooBrevo agent)", ("cart", "status", "total", "currency", "changed")),
    (
        "orders",
        "Order facts for customer totals (WooBrevo agent)",
        ("order", "status", "total", "created"),
    ),
)


def export_groups(holdings: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The `export_result` groups (WordPress's exporter shape; every value a string) of what
    the store holds about one email: `holdings` maps each group of _GROUPS to its rows."""
    groups: list[dict[str, Any]] = []
    for gid, label, fields in _GROUPS:
        rows = holdings.get(gid) or ()
        if not rows:
            continue
        items = []
        for i, row in enumerate(rows):
            data = [
                {"name": name, "value": _text(name, row.get(name))}
                for name in fields
                if row.get(name) is not None
            ]
            items.append({"id": f"woobrevo-agent-{gid}-{i + 1}", "data": data})
        groups.append({"id": f"woobrevo-agent-{gid}", "label": label, "items": items})
    return groups


# Fields that hold epoch seconds, shown as UTC stamps.
_TIMES = frozenset({"since", "received", "created", "changed"})


def _text(name: str, value: Any) -> str:
    if name in _TIMES and isinstance(value, int | float) and not isinstance(value, bool):
        return utc_stamp(float(value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
