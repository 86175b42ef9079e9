"""Normalize → dedupe → derive → map: one stored event in, intents and new state out. Pure.

The store calls `order_fact` (agent/core/aggregates.py, so aggregates include the order) and then `decide`, inside one
transaction per event (agent/store/inbox.py `process_pending`). What `decide` needs of a
site's config is a `SiteRules`, built once per site by the shell (agent/process/processor.py), so the
core reads no config module; what it would have logged comes back in `Outcome.warnings`.
Consent (agent/core/consent.py) is read the same way as the aggregates: a `ConsentView` of the
email's record and suppressions as the transaction sees them; a changed record comes back in
`Outcome.consent` and is written with the event's other writes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agent.core.consent import (
    NOTHING_KNOWN,
    ConsentRecord,
    ConsentRules,
    ConsentView,
    consent_in,
    ratchet,
)
from agent.core.events import Action, Event, Resource
from agent.core.jobs import Intent, Kind, Outcome, merge_bodies
from agent.core.lifecycle import derive_topics, is_stale, object_state
from agent.core.mapping import (
    category_bodies,
    contact_attributes,
    customer_view_of_order,
    event_body,
    event_properties,
    order_body,
    product_body,
)
from agent.core.normalize import brevo_datetime, normalize_email
from agent.core.times import gmt_seconds, utc_stamp
from agent.core.woo import DRAFT_STATUSES

__all__ = ["LIFECYCLE_DEFAULTS", "SiteRules", "decide"]

# Derived lifecycle events sent even when the `webhooks` map does not name them (issue 2).
LIFECYCLE_DEFAULTS = {"order.completed": "order_fulfilled", "order.refunded": "order_refunded"}

# An email's paid orders, given the statuses that count as paid: orders_count, total_spent,
# first_order_date, last_order_date (agent/core/aggregates.py, over the facts the store keeps).
Aggregates = Callable[[str, Collection[str]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class SiteRules:
    """What the pipeline reads of one site's config (agent/config.py `SiteConfig`)."""

    id: str
    account: str
    prefix: str
    mapping: dict[str, str]
    lists_all: int | None
    lists_buyers: int | None
    event_names: Mapping[str, str]  # topic → Brevo event name (`webhooks`)
    sync: Mapping[str, bool]  # customers, orders, products, coupons
    paid_statuses: tuple[str, ...]
    coupon_collection: str
    consent: ConsentRules = field(default_factory=ConsentRules)

    @classmethod
    def of(cls, site: Any) -> SiteRules:
        """From a resolved `SiteConfig` (read by attribute: the core imports no config)."""
        woo = site.woo
        return cls(
            id=site.id,
            account=site.brevo.account,
            prefix=woo.brevo_id_prefix,
            mapping=dict(woo.customer_mapping),
            lists_all=woo.lists.all_customers,
            lists_buyers=woo.lists.buyers,
            event_names={w.topic: w.event for w in woo.webhooks},
            sync=woo.sync.model_dump(),
            paid_statuses=tuple(woo.paid_statuses),
            coupon_collection=site.brevo.coupon_collection,
            consent=ConsentRules.of(woo),
        )


def _is_historical(event: Event, now: float, historical_after: float) -> bool:
    if event.historical:
        return True
    stamp = event.payload.get("date_modified_gmt") or event.payload.get("date_created_gmt")
    seconds = gmt_seconds(stamp)
    return seconds is not None and now - seconds > historical_after


@dataclass(slots=True)  # not frozen: a frozen init costs a microsecond per event
class _Step:
    """One event on its way through `decide`: the site, what is known, and what it means."""

    site: SiteRules
    event: Event
    prior: dict[str, Any] | None
    state: dict[str, Any]
    topics: list[str]
    historical: bool
    aggregates: Aggregates
    now: float
    view: ConsentView
    # The consent records this event changed, by email (written with its outcome).
    records: dict[str, ConsentRecord] = field(default_factory=dict)
    stored: dict[str, ConsentRecord | None] = field(default_factory=dict)  # read once per email

    def outcome(
        self,
        intents: list[Intent] | tuple[Intent, ...] = (),
        dead: tuple[tuple[str, str], ...] = (),
        warnings: list[str] | tuple[str, ...] = (),
    ) -> Outcome:
        return Outcome(
            object_state=self.state,
            intents=tuple(intents),
            dead=dead,
            account=self.site.account,
            warnings=tuple(warnings),
            consent=tuple(self.records.items()),
        )

    def record(self, email: str) -> ConsentRecord | None:
        """The email's consent record as this event leaves it."""
        if email in self.records:
            return self.records[email]
        if email not in self.stored:
            self.stored[email] = self.view.record(self.site.account, email)
        return self.stored[email]

    def choose(
        self, email: str, source: dict[str, Any], person: dict[str, Any]
    ) -> tuple[list[Intent], list[str]]:
        """Apply the payload's consent choice (if any) to the email's record: a withdrawal
        takes the contact out of the marketing lists, a first subscription with double
        opt-in configured asks Brevo to confirm it. Returns those intents and a warning."""
        choice, warning = consent_in(source)
        if choice is None:
            what = f"{self.event.resource.value} {self.event.resource_id}"
            return [], [f"{what}: {warning}"] if warning else []
        rules = self.site.consent
        stored = self.record(email)
        doi = rules.double_opt_in is not None and bool(self.doi_lists(email))
        new = ratchet(stored, choice, double_opt_in=doi)
        if new is None:
            return [], []
        self.records[email] = new
        if not new.subscribed and (stored is None or stored.subscribed):
            body = {"email": email, "unlinkListIds": list(rules.marketing_lists)}
            return (
                [Intent(Kind.CONTACT, f"contact:{email}", body)] if rules.marketing_lists else []
            ), []
        if new.doi == "pending" and (stored is None or stored.doi != "pending"):
            return [self.doi(email, person)], []
        return [], []

    def doi_lists(self, email: str) -> list[int]:
        """The marketing lists a confirmed subscriber joins (its DOI's includeListIds)."""
        site = self.site
        buyer = self.aggregates(email, site.paid_statuses).get("orders_count", 0) > 0
        return [x for x in (site.lists_all, site.lists_buyers if buyer else None) if x]

    def doi(self, email: str, source: dict[str, Any]) -> Intent:
        """Brevo's double opt-in request (POST /contacts/doubleOptinConfirmation)."""
        site, doi = self.site, self.site.consent.double_opt_in
        assert doi is not None
        country = (source.get("billing") or {}).get("country")
        attrs, _ = contact_attributes(source, site.mapping, {}, country=country)
        body = {
            "email": email,
            "includeListIds": self.doi_lists(email),
            "templateId": doi.template_id,
            "redirectionUrl": doi.redirect_url,
            "attributes": attrs,
        }
        return Intent(Kind.DOI, f"doi:{email}", body)

    def last_email(self) -> str | None:
        """The email the agent last knew for a deleted object (kept in its state)."""
        email: str | None = (self.prior or {}).get("email")
        self.state["email"] = email
        return email

    def events(
        self, email: str, obj: dict[str, Any], tail: str, *, per_topic: bool = False
    ) -> list[Intent]:
        """One Brevo event intent per mapped topic; its key (`…:{tail}`, after the topic too
        when `per_topic`) makes a replay of the same change the same job."""
        if self.historical:
            return []
        site, event = self.site, self.event
        record = self.record(email)
        resource = event.resource.value
        when = brevo_datetime(obj.get("date_modified_gmt")) if obj is event.payload else None
        out = []
        props = None  # the same for every topic: computed once
        for topic in self.topics:
            name = site.event_names.get(topic) or LIFECYCLE_DEFAULTS.get(topic)
            if not name or not site.consent.may_hear(record, name):
                continue
            mid = f"{topic}:" if per_topic else ""
            key = f"event:{site.id}:{name}:{resource}:{event.resource_id}:{mid}{tail}"
            if props is None:
                props = event_properties(resource, obj, site.prefix)
            body = event_body(name, email, props, when=when)
            out.append(Intent(Kind.EVENT, key, body))
        return out

    def contact(
        self, email: str, source: dict[str, Any], *, only_computed: bool
    ) -> tuple[Intent, list[str]]:
        """The contact's intent (mapped attributes, computed ones, lists) and its warnings."""
        site = self.site
        agg = self.aggregates(email, site.paid_statuses)
        country = (source.get("billing") or {}).get("country")
        attrs, warnings = contact_attributes(
            source, site.mapping, agg, country=country, only_computed=only_computed
        )
        body: dict[str, Any] = {"email": email, "attributes": attrs, "updateEnabled": True}
        buyer = agg.get("orders_count", 0) > 0
        lists = site.consent.lists(
            (site.lists_all, site.lists_buyers if buyer else None),
            self.record(email),
            self.view.suppressions(site.account, email),
        )
        if lists:
            body["listIds"] = lists
        intent = Intent(Kind.CONTACT, f"contact:{email}", body, self.historical)
        what = f"{self.event.resource.value} {self.event.resource_id}"
        return intent, [f"{what}: {w}" for w in warnings]


def decide(
    site: SiteRules,
    event: Event,
    prior: dict[str, Any] | None,
    aggregates: Aggregates,
    *,
    now: float,
    historical_after: float,
    consent: ConsentView = NOTHING_KNOWN,
) -> Outcome:
    """Everything Brevo should hold after this event, given what the agent knew before it."""
    if is_stale(prior, event):  # an older version than one already seen: nothing changes
        return Outcome(account=site.account)
    step = _Step(
        site,
        event,
        prior,
        object_state(event),
        derive_topics(event, prior, site.paid_statuses),
        _is_historical(event, now, historical_after),
        aggregates,
        now,
        consent,
    )
    return _BY_RESOURCE[event.resource](step)


def _customer(step: _Step) -> Outcome:
    event, p = step.event, step.event.payload
    if not step.site.sync.get("customers", True):
        return step.outcome()
    if event.action is Action.DELETED:
        # Deleting a WordPress user does not unsubscribe a person from marketing: the
        # contact stays in Brevo (docs/mapping.md); a mapped `customer.deleted` event
        # goes to the email the agent last knew for that user.
        email = step.last_email()
        if not email:
            return step.outcome()
        return step.outcome(step.events(email, {"id": event.resource_id}, "deleted"))
    email = normalize_email(p.get("email"))
    if email is None:
        message = (
            f"customer {event.resource_id}: email {p.get('email')!r} is not a valid address;"
            " fix it in WooCommerce, then `woobrevo-agent deadletters retry`"
        )
        return step.outcome(dead=(("invalid_email", message),))
    step.state["email"] = email
    chosen, noted = step.choose(email, p, p)
    contact, warnings = step.contact(email, p, only_computed=False)
    intents = [*_joined(contact, chosen), *step.events(email, p, step.state["version"])]
    return step.outcome(intents, warnings=[*noted, *warnings])


def _joined(contact: Intent, chosen: list[Intent]) -> list[Intent]:
    """The contact with a withdrawal's leaving of lists folded in (one intent per key)."""
    if not chosen:  # the common case: the contact as it is
        return [contact]
    body, others = contact.body, []
    for intent in chosen:
        if intent.key == contact.key:
            body = merge_bodies(Kind.CONTACT, body, intent.body)
        else:
            others.append(intent)
    return [replace(contact, body=body), *others]


def _order(step: _Step) -> Outcome:
    site, event, p = step.site, step.event, step.event.payload
    if not site.sync.get("orders", True):
        return step.outcome()
    if event.action is Action.DELETED:
        # A trashed order leaves the aggregates (its fact turns to 'trash' in the store);
        # the contact's counts are refreshed from the email remembered in the prior state.
        email = step.last_email()
        if not email:
            return step.outcome()
        contact, _ = step.contact(email, {}, only_computed=True)
        return step.outcome([contact, *step.events(email, {"id": event.resource_id}, "deleted")])
    raw = (p.get("billing") or {}).get("email")
    email = normalize_email(raw)
    step.state["email"] = email
    if p.get("status") in DRAFT_STATUSES:
        return step.outcome()
    intents: list[Intent] = []
    warnings: list[str] = []
    dead: tuple[tuple[str, str], ...] = ()
    if email is not None:
        # The order's consent choice first: the contact's lists follow the record it leaves.
        person = customer_view_of_order(p)
        chosen, warnings = step.choose(email, p, person)
        # A registered customer's own record is the authority for names and addresses;
        # a guest's only record is the order's billing data.
        contact, noted = step.contact(email, person, only_computed=bool(p.get("customer_id")))
        intents += _joined(contact, chosen)
        warnings += noted
    elif raw:
        message = (
            f"order {event.resource_id}: billing email {raw!r} is not a valid address;"
            " the order is sent without a contact"
        )
        dead = (("invalid_email", message),)
    prefix = site.prefix
    body = order_body(p, email, prefix)
    intents.append(Intent(Kind.ORDER, f"order:{prefix}{event.resource_id}", body, step.historical))
    if email:
        intents += step.events(email, p, step.state["version"], per_topic=True)
    return step.outcome(intents, dead, warnings)


def _product(step: _Step) -> Outcome:
    site, event, p = step.site, step.event, step.event.payload
    if not site.sync.get("products", True):
        return step.outcome()
    key = f"product:{site.prefix}{event.resource_id}"
    if event.action is Action.DELETED:
        last = {"id": event.resource_id, "name": (step.prior or {}).get("name")}
        body = product_body(last, site.prefix, deleted_at=utc_stamp(step.now))
        return step.outcome([Intent(Kind.PRODUCT, key, body, step.historical)])
    if p.get("status") in ("draft", "auto-draft", "pending", "private") and not step.prior:
        return Outcome(account=site.account)  # never published: nothing for Brevo yet
    intents = [
        Intent(Kind.CATEGORY, f"category:{cat['id']}", cat, step.historical)
        for cat in category_bodies(p, site.prefix)
    ]
    intents.append(Intent(Kind.PRODUCT, key, product_body(p, site.prefix), step.historical))
    return step.outcome(intents)


def _coupon(step: _Step) -> Outcome:
    site, event, p = step.site, step.event, step.event.payload
    if not site.sync.get("coupons", True) or event.action is Action.DELETED:
        # Brevo has no call to remove one code from a collection (NOTES §2, Coupons).
        return step.outcome()
    code = str(p.get("code") or "").strip()
    if not code:
        return step.outcome(dead=(("invalid_coupon", f"coupon {event.resource_id}: empty code"),))
    collection = site.coupon_collection
    body = {"collection": collection, "codes": [code]}
    return step.outcome([Intent(Kind.COUPON, f"coupons:{collection}", body, step.historical)])


_BY_RESOURCE: dict[Resource, Callable[[_Step], Outcome]] = {
    Resource.CUSTOMER: _customer,
    Resource.ORDER: _order,
    Resource.PRODUCT: _product,
    Resource.VARIATION: _product,
    Resource.COUPON: _coupon,
}
