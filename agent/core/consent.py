"""Marketing consent: the plugin's record, the agent's ratchet, and suppression. Pure.

The plugin stores each choice as `_woobrevo_consent` meta on the order and on the customer
(`{"subscribed", "time", "source", "text"}`), and it travels in the REST objects' `meta_data`.
The agent keeps one record per (Brevo account, email) that only moves the safe way: any
`subscribed: true` sets it (the newer time wins), only an explicit My Account withdrawal
clears it, and an unticked checkout or registration box changes nothing. Suppressions (a
Brevo unsubscription, a blocklisting, a contact found outside a list at backfill) strip the
lists they name from every contact body, when planning and again at send time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from agent.core.times import gmt_seconds

__all__ = [
    "CONSENT_KEY",
    "NOTHING_KNOWN",
    "SOURCES",
    "ConsentChoice",
    "ConsentRecord",
    "ConsentRules",
    "ConsentView",
    "DoubleOptIn",
    "KnownConsent",
    "apply_suppression",
    "consent_in",
    "doi_without",
    "in_force",
    "ratchet",
]

CONSENT_KEY = "_woobrevo_consent"
SOURCES = frozenset({"checkout_classic", "checkout_block", "registration", "my_account"})
WITHDRAWAL_SOURCE = "my_account"  # the only place where an unticked box means "stop"
EVERY_LIST = 0  # a suppression of every list: blocklisted, or marked as spam


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """The agent's consent record for one (account, email) (the `consent` table)."""

    subscribed: bool
    since: float  # the choice's own time (epoch seconds)
    source: str
    doi: str | None = None  # "pending" | "confirmed" | None (no double opt-in asked)


@dataclass(frozen=True, slots=True)
class ConsentChoice:
    """One choice as a payload carries it (`_woobrevo_consent`)."""

    subscribed: bool
    time: float
    source: str


def _meta_value(payload: Mapping[str, Any]) -> Any:
    for entry in payload.get("meta_data") or ():
        if isinstance(entry, dict) and entry.get("key") == CONSENT_KEY:
            return entry.get("value")
    return None


def consent_in(payload: Mapping[str, Any]) -> tuple[ConsentChoice | None, str | None]:
    """The consent choice of an order's or customer's payload, and a warning when its
    `_woobrevo_consent` entry is there but unreadable (it is then ignored: no choice)."""
    value = _meta_value(payload)
    if value is None:
        return None, None
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None, f"{CONSENT_KEY} is not JSON; ignored (the plugin writes an object)"
    if not isinstance(value, dict):
        return None, f"{CONSENT_KEY} is a {type(value).__name__}, not an object; ignored"
    subscribed, source = value.get("subscribed"), value.get("source")
    when = gmt_seconds(str(value.get("time") or "").removesuffix("Z"))
    if not isinstance(subscribed, bool) or source not in SOURCES or when is None:
        return None, (
            f"{CONSENT_KEY} needs subscribed (true/false), time (ISO 8601 UTC) and source (one"
            f" of {', '.join(sorted(SOURCES))}); ignored"
        )
    return ConsentChoice(subscribed, when, str(source)), None


def ratchet(
    stored: ConsentRecord | None, choice: ConsentChoice, *, double_opt_in: bool
) -> ConsentRecord | None:
    """What a new choice does to the stored record: the new record, or None (unchanged).

    Subscribed by any `subscribed: true` newer than the record; withdrawn only by a My
    Account `subscribed: false` newer than it. A first subscription asks for a double opt-in
    when one is configured (doi "pending" until Brevo reports the list addition).
    """
    if stored is not None and choice.time <= stored.since:
        return None
    if choice.subscribed:
        if stored is not None and stored.subscribed:
            return ConsentRecord(True, choice.time, choice.source, stored.doi)
        first = stored is None or stored.doi is None
        doi = "pending" if double_opt_in and first else (stored.doi if stored else None)
        return ConsentRecord(True, choice.time, choice.source, doi)
    if choice.source != WITHDRAWAL_SOURCE:
        return None
    return ConsentRecord(False, choice.time, choice.source, stored.doi if stored else None)


def apply_suppression(body: dict[str, Any], suppressed: Collection[int]) -> dict[str, Any]:
    """A contact body without the lists `suppressed` names (0: every list), and never with
    `emailBlacklisted`: the agent does not touch a blocklisting. Works for a single contact
    body and for a /contacts/import body (its one `listIds`)."""
    out = {k: v for k, v in body.items() if k != "emailBlacklisted"}
    lists = out.get("listIds")
    if lists is None:
        return out
    kept = [] if EVERY_LIST in suppressed else [i for i in lists if i not in suppressed]
    if kept:
        out["listIds"] = kept
    else:
        out.pop("listIds")
    return out


def doi_without(body: dict[str, Any], suppressed: Collection[int]) -> dict[str, Any]:
    """A double opt-in body without the lists `suppressed` names (0: every list)."""
    lists = body.get("includeListIds", [])
    kept = [] if EVERY_LIST in suppressed else [i for i in lists if i not in suppressed]
    return {**body, "includeListIds": kept}


@dataclass(frozen=True, slots=True)
class DoubleOptIn:
    """`consent.double_opt_in`: the Brevo DOI template and where it sends the person."""

    template_id: int
    redirect_url: str


@dataclass(frozen=True, slots=True)
class ConsentRules:
    """What the pipeline reads of a site's `connectors.woocommerce.consent`."""

    mode: str = "implied"
    transactional: frozenset[str] = frozenset()
    double_opt_in: DoubleOptIn | None = None
    marketing_lists: tuple[int, ...] = ()  # lists.all_customers, buyers, abandoned_cart

    @classmethod
    def of(cls, woo: Any) -> ConsentRules:
        """From a resolved site's woocommerce block (read by attribute)."""
        consent, lists = woo.consent, woo.lists
        doi = consent.double_opt_in
        return cls(
            mode=consent.mode,
            transactional=frozenset(consent.transactional_events),
            double_opt_in=None if doi is None else DoubleOptIn(doi.template_id, doi.redirect_url),
            marketing_lists=tuple(
                x for x in (lists.all_customers, lists.buyers, lists.abandoned_cart) if x
            ),
        )

    def may_join(self, record: ConsentRecord | None) -> bool:
        """Whether a contact may join the marketing lists: in required mode only when
        subscribed; in either mode never once withdrawn, nor while a double opt-in waits."""
        if record is None:
            return self.mode != "required"
        return record.subscribed and record.doi != "pending"

    def lists(
        self,
        lists: Iterable[int | None],
        record: ConsentRecord | None,
        suppressions: Iterable[tuple[int, float]],
    ) -> list[int]:
        """The lists of `lists` a contact joins: none without consent (`may_join`), and none
        that a suppression still in force names."""
        wanted = [x for x in lists if x]
        if not wanted or not self.may_join(record):
            return []
        gone = in_force(suppressions, record)
        return [] if EVERY_LIST in gone else [x for x in wanted if x not in gone]

    def may_hear(self, record: ConsentRecord | None, event_name: str) -> bool:
        """Whether a Brevo event goes to this contact: transactional ones always; the others
        as for the lists, a double opt-in waiting aside (the person did subscribe)."""
        if event_name in self.transactional:
            return True
        if record is None:
            return self.mode != "required"
        return record.subscribed


class ConsentView(Protocol):
    """What the pipeline may read of the store's consent state for one account, as the
    event's transaction sees it (agent/store/chunk.py)."""

    def record(self, account: str, email: str) -> ConsentRecord | None:
        """The consent record of an email on a Brevo account, or None (no choice known)."""
        ...

    def suppressions(self, account: str, email: str) -> Sequence[tuple[int, float]]:
        """The email's suppressions as (list id, since); list id 0 is every list."""
        ...


@dataclass(frozen=True, slots=True)
class KnownConsent:
    """A `ConsentView` over plain mappings, for one account (nothing known by default)."""

    records: Mapping[str, ConsentRecord] = field(default_factory=dict)  # by email
    rows: Mapping[str, Sequence[tuple[int, float]]] = field(default_factory=dict)

    def record(self, account: str, email: str) -> ConsentRecord | None:
        return self.records.get(email)

    def suppressions(self, account: str, email: str) -> Sequence[tuple[int, float]]:
        return self.rows.get(email, ())


NOTHING_KNOWN = KnownConsent()


def in_force(rows: Iterable[tuple[int, float]], record: ConsentRecord | None) -> frozenset[int]:
    """The lists still suppressed of (list id, since) rows: a subscription newer than a
    suppression lifts it (the person opted in again after leaving)."""
    newer = record.since if record is not None and record.subscribed else None
    return frozenset(i for i, since in rows if newer is None or newer <= since)
