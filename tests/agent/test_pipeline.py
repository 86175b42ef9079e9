"""From reference REST objects to Brevo intents, through the real store and pipeline.

No Brevo here: the jobs the store holds after processing are read back and checked field by
field. (tests/agent/test_forwarding.py sends them to the Brevo fake, which checks the spec.)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from agent.config import SiteConfig, load_config
from agent.core.aggregates import order_fact
from agent.core.events import Door, Event, Rejection, parse_event
from agent.core.jobs import Job, Kind
from agent.core.pipeline import SiteRules, decide
from agent.store import SqliteStore
from tests.conftest import ref, write_config

NOW = 1_795_800_000.0  # 2026-11-27, the recordings' day


class Harness:
    """A store plus the pipeline, fed events and read back as jobs."""

    def __init__(self, store: SqliteStore, site: SiteConfig) -> None:
        self.store = store
        self.site = site
        self.seq = 0

    async def feed(
        self,
        topic: str,
        payload: dict[str, Any],
        *,
        door: Door = Door.STREAM,
        extra: dict[str, Any] | None = None,
        historical: bool = False,
    ) -> None:
        self.seq += 1
        raw = {"id": f"t-{self.seq}", "topic": topic, "payload": payload, "extra": extra or {}}
        if door is not Door.STREAM:
            raw.pop("id")
        ev = parse_event(raw, door=door, historical=historical)
        assert isinstance(ev, Event), ev
        await self.store.ingest(self.site.id, [ev])
        await self.store.process_pending(
            100,
            lambda s, e, prior, agg: decide(
                SiteRules.of(self.site), e, prior, agg, now=NOW, historical_after=30 * 86400
            ),
            lambda s, e: order_fact(e),
        )

    async def jobs(self, kind: Kind) -> list[Job]:
        jobs = await self.store.claim(self.site.brevo.account, kind, 10_000, NOW + 1e9)
        await self.store.retry(jobs, 0, "read back", count_attempt=False)
        return jobs

    async def take(self, kind: Kind) -> list[dict[str, Any]]:
        """Bodies of pending jobs of a kind, marking them done (Brevo took them)."""
        jobs = await self.store.claim(self.site.brevo.account, kind, 10_000, NOW + 1e9)
        await self.store.complete(jobs)
        return [j.body for j in jobs]


@pytest.fixture
async def h(tmp_path: Path, base_config: dict[str, Any]) -> Any:
    base_config["connectors"]["woocommerce"]["webhooks"].append(
        {"topic": "order.paid", "event": "order_paid"}
    )
    cfg = load_config(write_config(tmp_path / "c.yaml", base_config), env={})
    async with SqliteStore(tmp_path / "s.sqlite3") as store:
        yield Harness(store, cfg.resolved_sites()[0])


async def test_customer_maps_attributes_and_lists(h: Harness) -> None:
    customer = ref("customer.json")
    customer["meta_data"] = [{"id": 1, "key": "loyalty_points", "value": 120}]
    customer["billing"]["phone"] = "(212) 456-7890"
    customer["email"] = "John.Doe@Example.com"
    customer["date_modified_gmt"] = "2026-11-26T12:00:00"
    await h.feed("customer.created", customer)
    (contact,) = await h.take(Kind.CONTACT)
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
    (event,) = await h.take(Kind.EVENT)
    assert event["event_name"] == "customer_registered"
    assert event["identifiers"] == {"email_id": "john.doe@example.com"}


async def test_unparseable_phone_drops_only_sms(h: Harness) -> None:
    customer = ref("customer.json")  # "(555) 555-5555" is not a valid US number
    await h.feed("customer.updated", customer)
    (contact,) = await h.take(Kind.CONTACT)
    assert "SMS" not in contact["attributes"]
    assert contact["attributes"]["FIRSTNAME"] == "John"
    # The core says why, for the shell to log (agent/process/processor.py): data in, data out.
    ev = parse_event({"topic": "customer.updated", "payload": customer}, door=Door.POLL)
    assert isinstance(ev, Event)
    outcome = decide(
        SiteRules.of(h.site), ev, None, lambda _e, _p: {"orders_count": 0}, now=NOW,
        historical_after=30 * 86400,
    )  # fmt: skip
    assert outcome.warnings == (
        "customer 25: phone '(555) 555-5555' is not a valid number for country US; SMS not sent",
    )


async def test_invalid_email_is_a_dead_letter(h: Harness) -> None:
    customer = ref("customer.json")
    customer["email"] = "not-an-address"
    await h.feed("customer.updated", customer)
    assert await h.jobs(Kind.CONTACT) == []
    (dead,) = await h.store.dead_letters()
    assert dead.code == "invalid_email"
    assert "'not-an-address' is not a valid address" in dead.message


async def test_order_maps_every_field_and_never_payment_data(h: Harness) -> None:
    order = ref("order.json")  # 723, completed, 2 line items, 2 refunds
    order["date_modified_gmt"] = "2026-11-26T00:00:00"  # recent: lifecycle events go out
    await h.feed("order.created", order)
    (body,) = await h.take(Kind.ORDER)
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
    (contact,) = await h.take(Kind.CONTACT)
    assert contact["listIds"] == [50, 51]
    assert contact["attributes"]["ORDER_COUNT"] == 1
    assert contact["attributes"]["TOTAL_SPENT"] == 39.0
    assert contact["attributes"]["FIRST_ORDER_DATE"] == "2017-03-21"
    assert "FIRSTNAME" not in contact["attributes"]  # customer 26 is registered: their record wins
    events = await h.take(Kind.EVENT)
    assert sorted(e["event_name"] for e in events) == [
        "order_fulfilled",
        "order_paid",
        "order_placed",
        "order_refunded",
    ]
    everything = json.dumps([body, contact, events])
    for secret in ("bacs", "Direct Bank Transfer", order["payment_method_title"]):
        assert secret not in everything


async def test_guest_order_names_come_from_billing(h: Harness) -> None:
    order = dict(ref("order.json"), customer_id=0)
    await h.feed("order.created", order)
    (contact,) = await h.take(Kind.CONTACT)
    assert contact["attributes"]["FIRSTNAME"] == "João"
    assert contact["attributes"]["LASTNAME"] == "Silva"
    assert "SMS" not in contact["attributes"]  # "(11) 1111-1111" is no valid Brazilian number


async def test_registered_customer_order_updates_only_computed_attributes(h: Harness) -> None:
    order = ref("48-order_create_completed.json")  # alice, customer_id 2
    assert order["customer_id"]
    await h.feed("order.created", order)
    (contact,) = await h.take(Kind.CONTACT)
    assert set(contact["attributes"]) == {
        "ORDER_COUNT",
        "TOTAL_SPENT",
        "FIRST_ORDER_DATE",
        "LAST_ORDER_DATE",
    }
    (body,) = await h.take(Kind.ORDER)
    assert body["coupons"] == ["welcome10"]
    assert body["billing"]["phone"] == "+33612345678"


async def test_lifecycle_through_statuses_and_refund_same_from_any_door(h: Harness) -> None:
    order = ref("order.json")
    order.update(status="pending", refunds=[], date_modified_gmt="2026-11-01T10:00:00")
    await h.feed("order.created", order, door=Door.WEBHOOK)
    names = [e["event_name"] for e in await h.take(Kind.EVENT)]
    assert names == ["order_placed"]
    assert (await h.take(Kind.ORDER))[0]["status"] == "pending"
    (c,) = await h.take(Kind.CONTACT)
    # pending is not paid: no order counted yet, and not a buyer (only all_customers)
    assert c["attributes"]["TOTAL_SPENT"] == 0.0
    assert c["attributes"]["ORDER_COUNT"] == 0
    assert c["listIds"] == [50]

    order2 = dict(order, status="processing", date_modified_gmt="2026-11-01T10:05:00")
    await h.feed(
        "order.updated",
        order2,
        door=Door.STREAM,
        extra={"status_from": "pending", "status_to": "processing"},
    )
    assert [e["event_name"] for e in await h.take(Kind.EVENT)] == ["order_paid"]
    (c,) = await h.take(Kind.CONTACT)
    # paid now: counted, a buyer; only what changed goes to Brevo
    assert c["attributes"] == {
        "ORDER_COUNT": 1,
        "TOTAL_SPENT": 39.0,
        "FIRST_ORDER_DATE": "2017-03-21",
        "LAST_ORDER_DATE": "2017-03-21",
    }
    assert c["listIds"] == [51]
    await h.take(Kind.ORDER)

    # The same version again through the poller: nothing new for Brevo.
    await h.feed("order.updated", copy.deepcopy(order2), door=Door.POLL)
    for kind in Kind:
        assert await h.jobs(kind) == []

    order3 = dict(order2, status="completed", date_modified_gmt="2026-11-01T11:00:00")
    await h.feed("order.updated", order3, door=Door.POLL)
    assert [e["event_name"] for e in await h.take(Kind.EVENT)] == ["order_fulfilled"]
    order4 = dict(
        order3, refunds=ref("order.json")["refunds"][:1], date_modified_gmt="2026-11-02T09:00:00"
    )
    await h.feed("order.updated", order4, door=Door.WEBHOOK)
    (refund,) = await h.take(Kind.EVENT)
    assert refund["event_name"] == "order_refunded"
    assert refund["event_properties"]["order"]["refunded"] == 10.0


async def test_stale_version_from_a_slower_door_is_ignored(h: Harness) -> None:
    order = ref("order.json")
    new = dict(order, status="completed", date_modified_gmt="2026-11-02T00:00:00")
    old = dict(order, status="processing", date_modified_gmt="2026-11-01T00:00:00")
    await h.feed("order.updated", new)
    await h.take(Kind.ORDER)
    await h.take(Kind.CONTACT)
    await h.take(Kind.EVENT)
    await h.feed("order.updated", old, door=Door.POLL)
    for kind in Kind:
        assert await h.jobs(kind) == []


async def test_guest_aggregates_follow_woocommerce_semantics(h: Harness) -> None:
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
        await h.feed("order.created", o)
    contacts = await h.take(Kind.CONTACT)
    merged: dict[str, Any] = {}
    for c in contacts:
        merged.update(c["attributes"])
    # only paid orders (processing, completed) count, in every computed field
    assert merged["ORDER_COUNT"] == 2
    assert merged["TOTAL_SPENT"] == 20.0
    assert merged["FIRST_ORDER_DATE"] == "2026-10-01"
    assert merged["LAST_ORDER_DATE"] == "2026-10-02"


@pytest.mark.parametrize("status", ["failed", "pending", "cancelled", "on-hold"])
async def test_a_guest_whose_only_order_is_unpaid_is_no_buyer(h: Harness, status: str) -> None:
    order = dict(ref("order.json"), customer_id=0, status=status, refunds=[])
    await h.feed("order.created", order)
    (contact,) = await h.take(Kind.CONTACT)
    assert contact["listIds"] == [50]  # all_customers, not buyers
    assert contact["attributes"]["ORDER_COUNT"] == 0
    assert contact["attributes"]["TOTAL_SPENT"] == 0.0
    assert "LAST_ORDER_DATE" not in contact["attributes"]


async def test_on_hold_counts_as_paid_when_the_store_says_so(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    woo = base_config["connectors"]["woocommerce"]
    woo["paid_statuses"] = ["processing", "completed", "on-hold"]
    woo["webhooks"].append({"topic": "order.paid", "event": "order_paid"})
    cfg = load_config(write_config(tmp_path / "c.yaml", base_config), env={})
    async with SqliteStore(tmp_path / "s.sqlite3") as store:
        h = Harness(store, cfg.resolved_sites()[0])
        order = dict(ref("order.json"), customer_id=0, status="on-hold", refunds=[])
        order["date_modified_gmt"] = "2026-11-20T10:00:00"  # recent: events are sent
        await h.feed("order.created", order)
        (contact,) = await h.take(Kind.CONTACT)
        assert contact["listIds"] == [50, 51]
        assert contact["attributes"]["ORDER_COUNT"] == 1
        assert contact["attributes"]["TOTAL_SPENT"] == 39.0
        assert sorted(e["event_name"] for e in await h.take(Kind.EVENT)) == [
            "order_paid",
            "order_placed",
        ]


async def test_products_variations_categories(h: Harness) -> None:
    await h.feed("product.created", ref("product_simple.json"))
    await h.feed("product.created", ref("variation.json"))  # docs variation: parent only in _links
    await h.feed("product.updated", ref("38-variation_create_S.json"))
    products = {p["id"]: p for p in await h.take(Kind.PRODUCT)}
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
    cats = sorted((c["id"], c["name"]) for c in await h.take(Kind.CATEGORY))
    assert cats == [("14", "T-shirts"), ("9", "Clothing")]


async def test_deleted_product_is_marked_deleted(h: Harness) -> None:
    await h.feed("product.deleted", {"id": 794})
    (body,) = await h.take(Kind.PRODUCT)
    assert body["id"] == "794"
    assert body["isDeleted"] is True


async def test_coupons_collect_into_one_collection_job(h: Harness) -> None:
    await h.feed("coupon.created", ref("coupon.json"))
    await h.feed("coupon.created", ref("44-coupon_create_percent.json"))
    (body,) = await h.take(Kind.COUPON)
    assert body == {"collection": "WooCommerce", "codes": ["10off", "welcome10"]}
    await h.feed(
        "coupon.updated", dict(ref("coupon.json"), date_modified_gmt="2030-01-01T00:00:00")
    )
    assert await h.jobs(Kind.COUPON) == []  # Brevo already holds that code


async def test_historical_changes_send_no_events(h: Harness) -> None:
    await h.feed("order.created", ref("order.json"), historical=True)
    assert await h.jobs(Kind.EVENT) == []
    (job,) = await h.jobs(Kind.ORDER)
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


async def test_a_chunk_of_rows_decides_as_one_row_at_a_time(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    """The processor runs the pipeline on a chunk of rows before it writes (the store's
    `_Chunk`): each row must see what the rows before it changed, exactly as if every row had
    its own transaction. The same events, processed one by one and as one chunk, leave the
    same jobs, object states, order facts and dead letters."""
    cfg = load_config(write_config(tmp_path / "c.yaml", base_config), env={})
    site = cfg.resolved_sites()[0]
    base = ref("order.json")
    feed: list[tuple[str, dict[str, Any]]] = []
    for i, status in enumerate(["pending", "processing", "completed", "checkout-draft"]):
        feed.append(("order.created", dict(base, id=700 + i, status=status, total=f"{10 + i}.50",
                     refunds=[], date_created_gmt=f"2026-11-0{i + 1}T00:00:00",
                     date_modified_gmt=f"2026-11-0{i + 1}T00:00:00")))  # fmt: skip
    # The first order moves on twice (a new version each time), one arrives stale, one goes.
    feed.append(("order.updated", dict(feed[0][1], status="processing",
                 date_modified_gmt="2026-11-05T00:00:00")))  # fmt: skip
    feed.append(("order.updated", dict(feed[0][1], status="completed",
                 date_modified_gmt="2026-11-06T00:00:00")))  # fmt: skip
    feed.append(("order.updated", dict(feed[0][1], status="cancelled")))  # stale
    feed.append(("order.deleted", {"id": 701}))
    feed.append(("customer.created", ref("customer.json")))
    feed.append(("customer.updated", dict(ref("customer.json"), first_name="Changed")))
    feed.append(("product.created", ref("product_simple.json")))
    feed.append(("coupon.created", ref("coupon.json")))
    feed.append(("customer.created", dict(ref("customer.json"), id=9999, email="not-an-email")))

    def decide_(s: str, e: Event, prior: Any, agg: Any) -> Any:
        return decide(SiteRules.of(site), e, prior, agg, now=NOW, historical_after=30 * 86400)

    async def run(path: Path, chunk: int) -> dict[str, Any]:
        async with SqliteStore(path) as store:
            for n, (topic, payload) in enumerate(feed):
                ev = parse_event({"id": f"c-{n}", "topic": topic, "payload": payload},
                                 door=Door.STREAM)  # fmt: skip
                assert isinstance(ev, Event), ev
                await store.ingest(site.id, [ev])
                if chunk == 1:
                    assert await store.process_pending(1, decide_, lambda s, e: order_fact(e)) == 1
            if chunk > 1:
                assert await store.process_pending(
                    chunk, decide_, lambda s, e: order_fact(e)
                ) == len(feed)
        import sqlite3

        db = sqlite3.connect(path)
        try:
            return {
                "jobs": db.execute("SELECT kind, key, body, historical, state FROM jobs ORDER BY id").fetchall(),
                "objects": db.execute("SELECT * FROM objects ORDER BY 1, 2, 3").fetchall(),
                "facts": db.execute("SELECT * FROM order_facts ORDER BY 1, 2").fetchall(),
                "dead": db.execute("SELECT site, ref, code, message FROM dead_letters ORDER BY id").fetchall(),
                "pending": db.execute("SELECT COUNT(*) FROM inbox WHERE state = 0").fetchone(),
            }  # fmt: skip
        finally:
            db.close()

    one = await run(tmp_path / "one.sqlite3", 1)
    chunked = await run(tmp_path / "chunk.sqlite3", 100)
    assert one["jobs"] and one["facts"] and one["dead"]
    assert chunked == one


async def test_a_mapped_customer_deleted_event_goes_to_the_last_known_email(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    base_config["connectors"]["woocommerce"]["webhooks"].append(
        {"topic": "customer.deleted", "event": "customer_deleted"}
    )
    cfg = load_config(write_config(tmp_path / "c.yaml", base_config), env={})
    async with SqliteStore(tmp_path / "s.sqlite3") as store:
        h = Harness(store, cfg.resolved_sites()[0])
        customer = dict(ref("customer.json"), date_modified_gmt="2026-11-20T10:00:00")
        await h.feed("customer.updated", customer)
        await h.take(Kind.CONTACT)
        assert [e["event_name"] for e in await h.take(Kind.EVENT)] == ["customer_registered"]
        await h.feed("customer.deleted", {"id": customer["id"]})
        (event,) = await h.take(Kind.EVENT)
        assert event["event_name"] == "customer_deleted"
        assert event["identifiers"] == {"email_id": customer["email"].lower()}
        assert await h.jobs(Kind.CONTACT) == []  # the contact stays as it is in Brevo
