"""From reference REST objects to Brevo intents: the pure pipeline, data in, data out.

No store and no Brevo here: what the store keeps between events (object states, order facts,
queued jobs, what Brevo already holds) is kept in plain dicts by the core's own rules
(agent/core/aggregates.py, agent/core/dedupe.py), and the queued bodies are checked field by
field. (tests/agent/test_store.py checks that the store applies those rules the same way;
tests/agent/test_forwarding.py sends the jobs to the Brevo fake, which checks the spec.)
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.config import SiteConfig
from agent.core.aggregates import OrderFact, aggregate, fact_after, order_fact
from agent.core.dedupe import Merged, Pending, claimable, coalesce, coalesces, known_after
from agent.core.events import Door, Event, Rejection, Resource, parse_event
from agent.core.jobs import Intent, Job, Kind, Outcome, canonical
from agent.core.pipeline import SiteRules, decide
from tests.conftest import ref
from tests.kit import load

NOW = 1_795_800_000.0  # 2026-11-27, the recordings' day


class Harness:
    """The pipeline fed events one by one, with what the store would keep between them."""

    def __init__(self, site: SiteConfig) -> None:
        self.rules = SiteRules.of(site)
        self.seq = 0
        self.objects: dict[tuple[str, int], dict[str, Any]] = {}
        self.facts: dict[int, OrderFact] = {}
        self.queued: list[Job] = []  # oldest first, as the store's ids order them
        self.pending: dict[str, Job] = {}  # key → its queued job (all kinds but events)
        self.known: dict[str, Any] = {}  # key → what Brevo holds (the `forwarded` record)
        self.dead: list[tuple[str, str]] = []
        self.ids = itertools.count(1)

    def feed(
        self,
        topic: str,
        payload: dict[str, Any],
        *,
        door: Door = Door.STREAM,
        extra: dict[str, Any] | None = None,
        historical: bool = False,
    ) -> Outcome:
        self.seq += 1
        raw = {"id": f"t-{self.seq}", "topic": topic, "payload": payload, "extra": extra or {}}
        if door is not Door.STREAM:
            raw.pop("id")
        ev = parse_event(raw, door=door, historical=historical)
        assert isinstance(ev, Event), ev
        key = (ev.resource.value, ev.resource_id)
        prior = self.objects.get(key)
        stored = self.facts.get(ev.resource_id) if ev.resource is Resource.ORDER else None
        fact = fact_after(ev, prior, order_fact(ev), stored)
        if fact is not None:
            self.facts[ev.resource_id] = fact
        outcome = decide(
            self.rules, ev, prior, self.aggregates, now=NOW, historical_after=30 * 86400
        )
        if outcome.object_state is not None:  # stored as JSON, read back as JSON
            self.objects[key] = orjson.loads(orjson.dumps(outcome.object_state))
        for intent in outcome.intents:
            self.queue(outcome.account, intent)
        self.dead += outcome.dead
        return outcome

    def aggregates(self, email: str, paid: Any) -> dict[str, Any]:
        return aggregate([f for f in self.facts.values() if f.email == email], paid)

    def queue(self, account: str, intent: Intent) -> None:
        job = self.pending.get(intent.key) if coalesces(intent.kind) else None
        pending = None if job is None else Pending(job.body, job.historical)
        write = coalesce(intent, pending, False, self.known.get(intent.key))
        if isinstance(write, Merged):
            assert job is not None
            job.body, job.historical = write.body, write.historical
        elif write is not None:
            body = json.loads(canonical(write.body))
            new = Job(next(self.ids), account, self.rules.id, intent.kind, intent.key, body,
                      write.historical)  # fmt: skip
            self.queued.append(new)
            if coalesces(intent.kind):
                self.pending[intent.key] = new

    def jobs(self, kind: Kind) -> list[Job]:
        """The jobs of a kind a claim would take, left queued."""
        due = [j for j in self.queued if j.kind is kind]
        take = set(claimable(kind, [(j.id, j.key) for j in due]))
        return [j for j in due if j.id in take]

    def take(self, kind: Kind) -> list[dict[str, Any]]:
        """Bodies of queued jobs of a kind, marking them done (Brevo took them)."""
        jobs = self.jobs(kind)
        done = {j.id for j in jobs}
        self.queued = [j for j in self.queued if j.id not in done]
        for job in jobs:
            if self.pending.get(job.key) is job:
                del self.pending[job.key]
            self.known[job.key] = known_after(job.kind, job.body, self.known.get(job.key))
        return [json.loads(canonical(j.body)) for j in jobs]


def harness(tmp_path: Path, config: dict[str, Any]) -> Harness:
    cfg = load(tmp_path, config)
    return Harness(cfg.resolved_sites()[0])


@pytest.fixture
def h(tmp_path: Path, base_config: dict[str, Any]) -> Harness:
    base_config["connectors"]["woocommerce"]["webhooks"].append(
        {"topic": "order.paid", "event": "order_paid"}
    )
    return harness(tmp_path, base_config)


def test_customer_maps_attributes_and_lists(h: Harness) -> None:
    customer = ref("customer.json")
    customer["meta_data"] = [{"id": 1, "key": "loyalty_points", "value": 120}]
    customer["billing"]["phone"] = "(212) 456-7890"
    customer["email"] = "John.Doe@Example.com"
    customer["date_modified_gmt"] = "2026-11-26T12:00:00"
    h.feed("customer.created", customer)
    (contact,) = h.take(Kind.CONTACT)
    assert contact == {
        "email": "john.doe@example.com",
        "attributes": {
            "FIRSTNAME": "John",
            "LASTNAME": "Doe",
            "SMS": "+12124567890",
            "ORDER_COUNT": 0,
            "TOTAL_SPENT": 0.0,
            "LOYALTY_POINTS": 120,
        },
        "listIds": [50],
        "updateEnabled": True,
    }
    (event,) = h.take(Kind.EVENT)
    assert event["event_name"] == "customer_registered"
    assert event["identifiers"] == {"email_id": "john.doe@example.com"}


def test_unparseable_phone_drops_only_sms(h: Harness) -> None:
    customer = ref("customer.json")  # "(555) 555-5555" is not a valid US number
    outcome = h.feed("customer.updated", customer)
    (contact,) = h.take(Kind.CONTACT)
    assert "SMS" not in contact["attributes"]
    assert contact["attributes"]["FIRSTNAME"] == "John"
    # The core says why, for the shell to log (agent/process/processor.py): data in, data out.
    assert outcome.warnings == (
        "customer 25: phone '(555) 555-5555' is not a valid number for country US; SMS not sent",
    )


def test_invalid_email_is_a_dead_letter(h: Harness) -> None:
    customer = ref("customer.json")
    customer["email"] = "not-an-address"
    h.feed("customer.updated", customer)
    assert h.jobs(Kind.CONTACT) == []
    ((code, message),) = h.dead
    assert code == "invalid_email"
    assert "'not-an-address' is not a valid address" in message


def test_order_maps_every_field_and_never_payment_data(h: Harness) -> None:
    order = ref("order.json")  # 723, completed, 2 line items, 2 refunds
    order["date_modified_gmt"] = "2026-11-26T00:00:00"  # recent: lifecycle events go out
    h.feed("order.created", order)
    (body,) = h.take(Kind.ORDER)
    assert body == {
        "id": "723",
        "createdAt": "2017-03-21T19:16:00Z",
        "updatedAt": "2026-11-26T00:00:00Z",
        "status": "completed",
        "amount": 39.0,
        "products": [
            {"productId": "87", "quantity": 1, "price": 9.0},
            {"productId": "34", "quantity": 1, "price": 20.0},
        ],
        "identifiers": {"email_id": "joao.silva@example.com"},
        "billing": {
            "address": "Av. Brasil, 432",
            "city": "Rio de Janeiro",
            "countryCode": "BR",
            "postCode": "12345-000",
            "region": "RJ",
            "phone": "(11) 1111-1111",
        },
    }
    (contact,) = h.take(Kind.CONTACT)
    assert contact["listIds"] == [50, 51]
    assert contact["attributes"]["ORDER_COUNT"] == 1
    assert contact["attributes"]["TOTAL_SPENT"] == 39.0
    assert contact["attributes"]["FIRST_ORDER_DATE"] == "2017-03-21"
    assert "FIRSTNAME" not in contact["attributes"]  # customer 26 is registered: their record wins
    events = h.take(Kind.EVENT)
    assert sorted(e["event_name"] for e in events) == [
        "order_fulfilled",
        "order_paid",
        "order_placed",
        "order_refunded",
    ]
    everything = json.dumps([body, contact, events])
    for secret in ("bacs", "Direct Bank Transfer", order["payment_method_title"]):
        assert secret not in everything


def test_guest_order_names_come_from_billing(h: Harness) -> None:
    order = dict(ref("order.json"), customer_id=0)
    h.feed("order.created", order)
    (contact,) = h.take(Kind.CONTACT)
    assert contact["attributes"]["FIRSTNAME"] == "João"
    assert contact["attributes"]["LASTNAME"] == "Silva"
    assert "SMS" not in contact["attributes"]  # "(11) 1111-1111" is no valid Brazilian number


def test_registered_customer_order_updates_only_computed_attributes(h: Harness) -> None:
    order = ref("48-order_create_completed.json")  # alice, customer_id 2
    assert order["customer_id"]
    h.feed("order.created", order)
    (contact,) = h.take(Kind.CONTACT)
    assert set(contact["attributes"]) == {
        "ORDER_COUNT",
        "TOTAL_SPENT",
        "FIRST_ORDER_DATE",
        "LAST_ORDER_DATE",
    }
    (body,) = h.take(Kind.ORDER)
    assert body["coupons"] == ["welcome10"]
    assert body["billing"]["phone"] == "+33612345678"


def test_lifecycle_through_statuses_and_refund_same_from_any_door(h: Harness) -> None:
    order = ref("order.json")
    order.update(status="pending", refunds=[], date_modified_gmt="2026-11-01T10:00:00")
    h.feed("order.created", order, door=Door.WEBHOOK)
    names = [e["event_name"] for e in h.take(Kind.EVENT)]
    assert names == ["order_placed"]
    assert (h.take(Kind.ORDER))[0]["status"] == "pending"
    (c,) = h.take(Kind.CONTACT)
    # pending is not paid: no order counted yet, and not a buyer (only all_customers)
    assert c["attributes"]["TOTAL_SPENT"] == 0.0
    assert c["attributes"]["ORDER_COUNT"] == 0
    assert c["listIds"] == [50]

    order2 = dict(order, status="processing", date_modified_gmt="2026-11-01T10:05:00")
    h.feed(
        "order.updated",
        order2,
        door=Door.STREAM,
        extra={"status_from": "pending", "status_to": "processing"},
    )
    assert [e["event_name"] for e in h.take(Kind.EVENT)] == ["order_paid"]
    (c,) = h.take(Kind.CONTACT)
    # paid now: counted, a buyer; only what changed goes to Brevo
    assert c["attributes"] == {
        "ORDER_COUNT": 1,
        "TOTAL_SPENT": 39.0,
        "FIRST_ORDER_DATE": "2017-03-21",
        "LAST_ORDER_DATE": "2017-03-21",
    }
    assert c["listIds"] == [51]
    h.take(Kind.ORDER)

    # The same version again through the poller: nothing new for Brevo.
    h.feed("order.updated", copy.deepcopy(order2), door=Door.POLL)
    for kind in Kind:
        assert h.jobs(kind) == []

    order3 = dict(order2, status="completed", date_modified_gmt="2026-11-01T11:00:00")
    h.feed("order.updated", order3, door=Door.POLL)
    assert [e["event_name"] for e in h.take(Kind.EVENT)] == ["order_fulfilled"]
    order4 = dict(
        order3, refunds=ref("order.json")["refunds"][:1], date_modified_gmt="2026-11-02T09:00:00"
    )
    h.feed("order.updated", order4, door=Door.WEBHOOK)
    (refund,) = h.take(Kind.EVENT)
    assert refund["event_name"] == "order_refunded"
    assert refund["event_properties"]["order"]["refunded"] == 10.0


def test_stale_version_from_a_slower_door_is_ignored(h: Harness) -> None:
    order = ref("order.json")
    new = dict(order, status="completed", date_modified_gmt="2026-11-02T00:00:00")
    old = dict(order, status="processing", date_modified_gmt="2026-11-01T00:00:00")
    h.feed("order.updated", new)
    h.take(Kind.ORDER)
    h.take(Kind.CONTACT)
    h.take(Kind.EVENT)
    h.feed("order.updated", old, door=Door.POLL)
    for kind in Kind:
        assert h.jobs(kind) == []


def test_guest_aggregates_follow_woocommerce_semantics(h: Harness) -> None:
    base = ref("order.json")
    statuses = ["completed", "processing", "cancelled", "failed", "refunded", "checkout-draft"]
    for i, status in enumerate(statuses):
        o = dict(
            base,
            id=900 + i,
            status=status,
            total="10.00",
            refunds=[],
            date_created_gmt=f"2026-10-0{i + 1}T00:00:00",
            date_modified_gmt=f"2026-10-0{i + 1}T00:00:00",
        )
        h.feed("order.created", o)
    contacts = h.take(Kind.CONTACT)
    merged: dict[str, Any] = {}
    for c in contacts:
        merged.update(c["attributes"])
    # only paid orders (processing, completed) count, in every computed field
    assert merged["ORDER_COUNT"] == 2
    assert merged["TOTAL_SPENT"] == 20.0
    assert merged["FIRST_ORDER_DATE"] == "2026-10-01"
    assert merged["LAST_ORDER_DATE"] == "2026-10-02"


@pytest.mark.parametrize("status", ["failed", "pending", "cancelled", "on-hold"])
def test_a_guest_whose_only_order_is_unpaid_is_no_buyer(h: Harness, status: str) -> None:
    order = dict(ref("order.json"), customer_id=0, status=status, refunds=[])
    h.feed("order.created", order)
    (contact,) = h.take(Kind.CONTACT)
    assert contact["listIds"] == [50]  # all_customers, not buyers
    assert contact["attributes"]["ORDER_COUNT"] == 0
    assert contact["attributes"]["TOTAL_SPENT"] == 0.0
    assert "LAST_ORDER_DATE" not in contact["attributes"]


def test_on_hold_counts_as_paid_when_the_store_says_so(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    woo = base_config["connectors"]["woocommerce"]
    woo["paid_statuses"] = ["processing", "completed", "on-hold"]
    woo["webhooks"].append({"topic": "order.paid", "event": "order_paid"})
    h = harness(tmp_path, base_config)
    order = dict(ref("order.json"), customer_id=0, status="on-hold", refunds=[])
    order["date_modified_gmt"] = "2026-11-20T10:00:00"  # recent: events are sent
    h.feed("order.created", order)
    (contact,) = h.take(Kind.CONTACT)
    assert contact["listIds"] == [50, 51]
    assert contact["attributes"]["ORDER_COUNT"] == 1
    assert contact["attributes"]["TOTAL_SPENT"] == 39.0
    assert sorted(e["event_name"] for e in h.take(Kind.EVENT)) == [
        "order_paid",
        "order_placed",
    ]


def test_products_variations_categories(h: Harness) -> None:
    h.feed("product.created", ref("product_simple.json"))
    h.feed("product.created", ref("variation.json"))  # docs variation: parent only in _links
    h.feed("product.updated", ref("38-variation_create_S.json"))
    products = {p["id"]: p for p in h.take(Kind.PRODUCT)}
    assert products["794"] == {
        "id": "794",
        "name": "Premium Quality",
        "url": "https://example.com/product/premium-quality-19/",
        "imageUrl": "https://example.com/wp-content/uploads/2017/03/T_2_front-4.jpg",
        "price": 21.99,
        "categories": ["9", "14"],
        "updateEnabled": True,
    }
    assert products["732"]["parentId"] == "22"
    assert products["732"]["price"] == 9.0
    assert products["15"]["parentId"] == "14"
    assert products["15"]["sku"] == "HOODIE-S"
    assert products["15"]["stock"] == 10
    cats = sorted((c["id"], c["name"]) for c in h.take(Kind.CATEGORY))
    assert cats == [("14", "T-shirts"), ("9", "Clothing")]


def test_deleted_product_is_marked_deleted(h: Harness) -> None:
    h.feed("product.deleted", {"id": 794})
    (body,) = h.take(Kind.PRODUCT)
    assert body["id"] == "794"
    assert body["isDeleted"] is True


def test_coupons_collect_into_one_collection_job(h: Harness) -> None:
    h.feed("coupon.created", ref("coupon.json"))
    h.feed("coupon.created", ref("44-coupon_create_percent.json"))
    (body,) = h.take(Kind.COUPON)
    assert body == {"collection": "WooCommerce", "codes": ["10off", "welcome10"]}
    h.feed("coupon.updated", dict(ref("coupon.json"), date_modified_gmt="2030-01-01T00:00:00"))
    assert h.jobs(Kind.COUPON) == []  # Brevo already holds that code


def test_historical_changes_send_no_events(h: Harness) -> None:
    h.feed("order.created", ref("order.json"), historical=True)
    assert h.jobs(Kind.EVENT) == []
    (job,) = h.jobs(Kind.ORDER)
    assert job.historical


def test_rejections_name_the_field() -> None:
    cases = [
        (
            {"topic": "order.updated", "payload": []},
            "payload: expected the WooCommerce REST object",
        ),
        ({"topic": "order", "payload": {"id": 1}}, "topic: expected '<resource>.<action>'"),
        ({"topic": "basket.updated", "payload": {"id": 1}}, "unknown resource 'basket'"),
        (
            {"topic": "order.updated", "payload": {"id": -1}},
            "payload.id: expected a positive integer",
        ),
        (
            {
                "topic": "order.updated",
                "resource_id": 8,
                "payload": {"id": 7, "date_modified_gmt": "x"},
            },
            "payload.id (7) does not match resource_id (8)",
        ),
        ({"topic": "order.updated", "payload": {"id": 7}}, "payload.date_modified_gmt: missing"),
        (
            {"id": "bad id!", "topic": "order.deleted", "payload": {"id": 7}},
            "id: expected 1-128 characters",
        ),
    ]
    for raw, expected in cases:
        r = parse_event(raw, door=Door.STREAM, index=3)
        assert isinstance(r, Rejection), raw
        assert r.message.startswith("events[3]: ")
        assert expected in r.message, r.message


def test_a_mapped_customer_deleted_event_goes_to_the_last_known_email(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    base_config["connectors"]["woocommerce"]["webhooks"].append(
        {"topic": "customer.deleted", "event": "customer_deleted"}
    )
    h = harness(tmp_path, base_config)
    customer = dict(ref("customer.json"), date_modified_gmt="2026-11-20T10:00:00")
    h.feed("customer.updated", customer)
    h.take(Kind.CONTACT)
    assert [e["event_name"] for e in h.take(Kind.EVENT)] == ["customer_registered"]
    h.feed("customer.deleted", {"id": customer["id"]})
    (event,) = h.take(Kind.EVENT)
    assert event["event_name"] == "customer_deleted"
    assert event["identifiers"] == {"email_id": customer["email"].lower()}
    assert h.jobs(Kind.CONTACT) == []  # the contact stays as it is in Brevo
