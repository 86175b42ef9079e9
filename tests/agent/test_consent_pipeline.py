"""Consent in the pure pipeline and the cart machine: which lists and events each mode gives
a contact, with and without a choice, what a withdrawal and a double opt-in send."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.core.carts import CartOutcome, CartSite, with_consent
from agent.core.consent import ConsentRecord, KnownConsent
from agent.core.events import Door, Event, parse_event
from agent.core.jobs import Intent, Kind, Outcome
from agent.core.pipeline import SiteRules, decide
from tests.conftest import ref
from tests.kit import config_data

NOW = 1_795_800_000.0
ORDER_EMAIL = "joao.silva@example.com"
CUSTOMER_EMAIL = "john.doe@example.com"
HOOKS = [{"topic": "order.created", "event": "order_placed"},
         {"topic": "customer.created", "event": "customer_registered"}]  # fmt: skip


def site(tmp_path: Path, **consent: Any) -> SiteRules:
    data = config_data(tmp_path, woocommerce={
        "lists": {"all_customers": 50, "buyers": 51, "abandoned_cart": 52},
        "webhooks": HOOKS, "consent": consent})  # fmt: skip
    return SiteRules.of(Config.model_validate(data).resolved_sites()[0])


def with_choice(payload: dict[str, Any], subscribed: bool, source: str, time: str) -> dict[str, Any]:  # fmt: skip
    out = copy.deepcopy(payload)
    value = {"subscribed": subscribed, "time": time, "source": source, "text": "News, please"}
    out["meta_data"] = [*out.get("meta_data", []), {"id": 99, "key": "_woobrevo_consent", "value": value}]  # fmt: skip
    return out


def feed(
    rules: SiteRules, topic: str, payload: dict[str, Any], view: KnownConsent, *, buyer: bool = True
) -> tuple[Outcome, KnownConsent]:
    ev = parse_event({"id": f"e-{topic}-{payload.get('date_modified_gmt')}", "topic": topic,
                      "payload": payload}, door=Door.STREAM)  # fmt: skip
    assert isinstance(ev, Event), ev
    agg = {"orders_count": 1 if buyer else 0}
    out = decide(rules, ev, None, lambda _e, _p: agg, now=NOW, historical_after=1e10, consent=view)
    records = {**view.records, **dict(out.consent)}
    return out, KnownConsent(records, view.rows)


def contact(out: Outcome) -> dict[str, Any]:
    (body,) = [i.body for i in out.intents if i.kind is Kind.CONTACT]
    return body


def events(out: Outcome) -> list[str]:
    return [i.body["event_name"] for i in out.intents if i.kind is Kind.EVENT]


def order(status: str = "processing", modified: str = "2026-12-06T06:00:00") -> dict[str, Any]:
    body = ref("order.json")
    body.update(status=status, date_modified_gmt=modified, customer_id=0, refunds=[])
    return body


def test_implied_mode_without_a_choice_is_todays_behaviour(tmp_path: Path) -> None:
    out, _ = feed(site(tmp_path), "order.created", order(), KnownConsent())
    assert contact(out)["listIds"] == [50, 51]
    assert events(out) == ["order_placed"]
    assert out.consent == ()


def test_required_mode_without_a_choice_sends_the_contact_without_lists_or_events(
    tmp_path: Path,
) -> None:
    rules = site(tmp_path, mode="required", transactional_events=["order_fulfilled"])
    out, _ = feed(rules, "order.created", order(), KnownConsent())
    body = contact(out)
    assert "listIds" not in body and body["attributes"]  # order data still synced
    assert events(out) == []
    assert [i.kind for i in out.intents].count(Kind.ORDER) == 1
    # the transactional event still goes
    done, _ = feed(
        rules, "order.updated", order("completed", "2026-12-06T07:00:00"), KnownConsent()
    )
    assert events(done) == ["order_fulfilled"]


def test_required_mode_with_the_box_ticked_joins_and_hears(tmp_path: Path) -> None:
    rules = site(tmp_path, mode="required")
    payload = with_choice(order(), True, "checkout_block", "2026-12-06T06:00:00Z")
    out, view = feed(rules, "order.created", payload, KnownConsent())
    assert contact(out)["listIds"] == [50, 51]
    assert events(out) == ["order_placed"]
    ((email, rec),) = out.consent
    assert email == ORDER_EMAIL and rec.subscribed and rec.source == "checkout_block"
    # a later checkout without the box ticked leaves the subscriber subscribed
    unticked = with_choice(order("processing", "2026-12-06T08:00:00"), False, "checkout_classic",
                           "2026-12-06T08:00:00Z")  # fmt: skip
    again, view = feed(rules, "order.updated", unticked, view)
    assert again.consent == ()
    assert contact(again)["listIds"] == [50, 51]
    assert view.records[ORDER_EMAIL].subscribed


def test_required_mode_with_the_box_unticked_stays_out(tmp_path: Path) -> None:
    rules = site(tmp_path, mode="required")
    payload = with_choice(order(), False, "checkout_classic", "2026-12-06T06:00:00Z")
    out, _ = feed(rules, "order.created", payload, KnownConsent())
    assert "listIds" not in contact(out) and events(out) == [] and out.consent == ()


def test_a_withdrawal_unlinks_the_marketing_lists_in_either_mode(tmp_path: Path) -> None:
    for mode in ("implied", "required"):
        rules = site(tmp_path, mode=mode)
        known = KnownConsent({CUSTOMER_EMAIL: ConsentRecord(True, 100.0, "registration")})
        payload = with_choice(ref("customer.json"), False, "my_account", "2026-12-06T06:00:00Z")
        out, view = feed(rules, "customer.updated", payload, known)
        body = contact(out)
        assert body["unlinkListIds"] == [50, 51, 52] and "listIds" not in body, mode
        assert "emailBlacklisted" not in body
        assert not view.records[CUSTOMER_EMAIL].subscribed
        # the next update of the same customer does not put them back
        later = copy.deepcopy(payload)
        later["date_modified_gmt"] = "2026-12-06T09:00:00"
        again, _ = feed(rules, "customer.updated", later, view)
        assert "listIds" not in contact(again) and "unlinkListIds" not in contact(again)


def test_suppressed_lists_are_stripped_when_planning(tmp_path: Path) -> None:
    rules = site(tmp_path)
    view = KnownConsent(rows={ORDER_EMAIL: [(51, NOW)]})
    out, _ = feed(rules, "order.created", order(), view)
    assert contact(out)["listIds"] == [50]
    blocked = KnownConsent(rows={ORDER_EMAIL: [(0, NOW)]})
    out, _ = feed(rules, "order.created", order(), blocked)
    assert "listIds" not in contact(out)
    # a subscription given after the suppression lifts it
    payload = with_choice(order(), True, "checkout_block", "2026-12-06T06:00:00Z")
    early = KnownConsent(rows={ORDER_EMAIL: [(51, 1_700_000_000.0)]})
    out, _ = feed(rules, "order.created", payload, early)
    assert contact(out)["listIds"] == [50, 51]


def test_double_opt_in_is_asked_once_and_holds_the_lists(tmp_path: Path) -> None:
    rules = site(tmp_path, mode="required",
                 double_opt_in={"template_id": 12, "redirect_url": "https://shop.example/thanks"})  # fmt: skip
    payload = with_choice(ref("customer.json"), True, "registration", "2026-12-06T06:00:00Z")
    out, view = feed(rules, "customer.created", payload, KnownConsent())
    (doi,) = [i for i in out.intents if i.kind is Kind.DOI]
    assert doi.key == f"doi:{CUSTOMER_EMAIL}"
    assert doi.body["includeListIds"] == [50, 51] and doi.body["templateId"] == 12
    assert doi.body["redirectionUrl"] == "https://shop.example/thanks"
    assert doi.body["attributes"]["FIRSTNAME"] == "John"
    assert "listIds" not in contact(out)  # pending: Brevo adds the lists on confirmation
    assert view.records[CUSTOMER_EMAIL].doi == "pending"
    again = copy.deepcopy(payload)
    again["meta_data"][-1]["value"]["time"] = "2026-12-06T07:00:00Z"
    out, _ = feed(rules, "customer.updated", again, view)
    assert [i for i in out.intents if i.kind is Kind.DOI] == []


def cart_outcome(email: str) -> CartOutcome:
    contact = Intent(Kind.CONTACT, f"contact:{email}",
                     {"email": email, "attributes": {}, "updateEnabled": True, "listIds": [52]})  # fmt: skip
    event = Intent(Kind.EVENT, "event:a:cart_abandoned:cart:7:1",
                   {"event_name": "cart_abandoned", "identifiers": {"email_id": email}})  # fmt: skip
    return CartOutcome(intents=(contact, event), account="acc")


def test_abandoned_carts_follow_the_same_rule(tmp_path: Path) -> None:
    data = config_data(tmp_path, woocommerce={"lists": {"abandoned_cart": 52},
                                               "consent": {"mode": "required"}})  # fmt: skip
    cart_site = CartSite.of(Config.model_validate(data).resolved_sites()[0])
    outcome = cart_outcome("s@x.test")
    outcome = CartOutcome(outcome.carts, outcome.intents, outcome.counts, "acc", cart_site.consent)
    nobody = with_consent(outcome, KnownConsent())
    assert [i.kind for i in nobody] == [Kind.CONTACT] and "listIds" not in nobody[0].body
    subscribed = KnownConsent({"s@x.test": ConsentRecord(True, 1.0, "checkout_block")})
    both = with_consent(outcome, subscribed)
    assert [i.kind for i in both] == [Kind.CONTACT, Kind.EVENT]
    assert both[0].body["listIds"] == [52]
    left = KnownConsent(subscribed.records, {"s@x.test": [(52, 5.0)]})
    assert "listIds" not in with_consent(outcome, left)[0].body
    implied = with_consent(cart_outcome("s@x.test"), KnownConsent())  # implied: as before
    assert implied[0].body["listIds"] == [52] and len(implied) == 2


def test_polling_and_backfill_ask_for_the_consent_record() -> None:
    """REST pages are trimmed to the fields the pipeline reads (`_fields`): the opt-in record
    rides in `meta_data`, of orders as of customers."""
    from agent.core.rest import FIELDS

    assert "meta_data" in FIELDS["orders"] and "meta_data" in FIELDS["customers"]
