"""The forwarder against the Brevo fake: spec-valid requests, limits, faults, dead letters."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agent.app import App
from agent.core.events import Door, Event, parse_event
from agent.forward.forwarder import MAX_IN_FLIGHT
from tests.conftest import ROOT, ref
from tests.fakes.brevo import BrevoFake
from tests.kit import UNIT, live, load, until, write_config

# The issue asks for a five-minute outage; CI runs it in full, a developer may shorten it.
OUTAGE_SECONDS = float(
    os.environ.get("WOOBREVO_OUTAGE_SECONDS", "300" if os.environ.get("CI") else "20")
)

REFERENCE = [
    ("customer.updated", "customer.json"),
    ("customer.created", "25-customer_create_1.json"),
    ("customer.created", "26-customer_create_2.json"),
    ("customer.created", "27-customer_create_3.json"),
    ("product.created", "product_simple.json"),
    ("product.created", "product_variable.json"),
    ("product.created", "variation.json"),
    ("product.created", "35-product_create_simple.json"),
    ("product.created", "36-product_create_simple_virtual.json"),
    ("product.created", "37-product_create_variable.json"),
    ("product.created", "38-variation_create_S.json"),
    ("product.created", "39-variation_create_M.json"),
    ("coupon.created", "coupon.json"),
    ("coupon.created", "44-coupon_create_percent.json"),
    ("order.created", "order.json"),
    ("order.created", "order_retrieve_727.json"),
    ("order.created", "48-order_create_completed.json"),
    ("order.created", "49-order_create_processing.json"),
    ("order.updated", "51-order_get_refunded.json"),
    ("order.created", "53-order_create_guest_on_hold.json"),
    ("order.updated", "54-order_update_status_processing.json"),
]


def brevo_config(base: dict[str, Any], fake: BrevoFake, **brevo: Any) -> dict[str, Any]:
    """`base` talking to the Brevo fake, with a short backoff unless `brevo` says otherwise."""
    base["brevo"] = live(fake, **{"max_backoff": "2s", **brevo})
    return base


def events_from(pairs: list[tuple[str, str]], *, recent: bool = True) -> list[Event]:
    out = []
    for topic, name in pairs:
        payload = ref(name)
        if recent and "date_modified_gmt" in payload and payload["date_modified_gmt"] < "2026":
            payload["date_modified_gmt"] = "2026-11-26T12:00:00"
        ev = parse_event({"topic": topic, "payload": payload}, door=Door.WEBHOOK)
        assert isinstance(ev, Event), (name, ev)
        out.append(ev)
    return out


async def start_app(tmp_path: Path, data: dict[str, Any]) -> App:
    cfg = load(tmp_path, data)
    return App(cfg, doors=False)


async def test_every_reference_object_reaches_brevo_spec_valid(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    base_config["connectors"]["woocommerce"]["customer_mapping"]["meta_data.loyalty_tier"] = (
        "LOYALTY_TIER"
    )
    async with BrevoFake() as fake:
        async with await start_app(tmp_path, brevo_config(base_config, fake)) as app:
            await app.store.ingest("default", events_from(REFERENCE))
            await app.wait_idle(60 * UNIT)
        fake.assert_no_spec_violations()
        # contacts: every customer and every order's email, with mapped and computed attributes
        alice = fake.contacts["alice@example.com"]
        assert alice["attributes"]["FIRSTNAME"] == "Alice"
        assert alice["attributes"]["LOYALTY_TIER"] == "gold"
        assert alice["attributes"]["ORDER_COUNT"] == 1
        assert alice["attributes"]["TOTAL_SPENT"] == 37.28
        assert set(alice["listIds"]) == {50, 51}
        assert fake.contacts["zoe@example.com"]["listIds"] == [50]  # no order yet
        # orders, field by field for one, present for all
        o19 = fake.orders["19"]
        assert (o19["status"], o19["amount"], o19["coupons"]) == ("completed", 37.28, ["welcome10"])
        assert o19["identifiers"] == {"email_id": "alice@example.com"}
        assert o19["products"] == [{"productId": "12", "quantity": 2, "price": 16.19}]
        assert {"723", "727", "19", "20", "22"} <= set(fake.orders)
        assert fake.orders["22"]["status"] == "processing"  # the later version won
        assert fake.orders["20"]["status"] == "refunded"
        # products and variations
        assert fake.products["15"]["parentId"] == "14"
        assert fake.products["794"]["price"] == 21.99
        assert {"12", "13", "14", "16", "799", "732"} <= set(fake.products)
        # coupons in one collection
        (codes,) = fake.coupons.values()
        assert {"10off", "welcome10"} <= {c.lower() for c in codes}
        names = Counter(e["event_name"] for e in fake.events)
        assert names["order_placed"] >= 5
        assert names["order_refunded"] >= 1
        assert names["order_fulfilled"] >= 1
        wire = json.dumps([r.json for r in fake.requests])
        for secret in ("Direct Bank Transfer", "transaction_id", "Cash on delivery"):
            assert secret not in wire


async def test_old_events_leave_the_inbox_and_a_late_replay_changes_nothing(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    """`agent.inbox_retention`: processed events older than it are deleted; events replayed
    after that are stored again and leave Brevo as it was (docs/durability.md)."""

    def brevo_state(fake: BrevoFake) -> object:
        contacts = {
            k: (c["attributes"], sorted(c["listIds"]), c.get("emailBlacklisted"))
            for k, c in fake.contacts.items()
        }
        return copy.deepcopy((contacts, fake.orders, fake.products, fake.coupons, fake.events))

    async def age_and_prune(app: App) -> int:
        await app.store._run(
            lambda: app.store.db.execute(
                "UPDATE inbox SET received_at = received_at - ?", (8 * 86400,)
            )
        )
        return await app.processor.prune()

    async with BrevoFake() as fake:
        async with await start_app(tmp_path, brevo_config(base_config, fake)) as app:
            events = events_from(REFERENCE)
            await app.store.ingest("default", events)
            await app.wait_idle(60 * UNIT)
            before = brevo_state(fake)
            assert await age_and_prune(app) == len(REFERENCE)
            assert app.metrics.get("woobrevo_inbox_pruned_total") == len(REFERENCE)
            assert (await app.store.counts())["inbox"] == 0
            assert await app.store.last_received("default", "webhook") is not None
            # A recent event stays.
            recent = parse_event(
                {"topic": "customer.updated", "payload": ref("customer.json")}, door=Door.STREAM
            )
            assert isinstance(recent, Event)
            assert (await app.store.ingest("default", [recent])).new == 1
            await app.wait_idle(60 * UNIT)
            assert await app.processor.prune() == 0
            # Every version again, in order, long after (a resend of lost acks): stored anew.
            # Two of the store's orders changed twice within one second (the same
            # date_modified_gmt), which the agent cannot order: their older versions go to
            # Brevo again, then the newer ones, and Brevo ends as it was.
            sent = len(fake.requests)
            assert (await app.store.ingest("default", events)).new == len(events)
            await app.wait_idle(60 * UNIT)
            assert brevo_state(fake) == before
            assert {r.json["id"] for r in fake.requests[sent:] if r.path == "/orders/status"} == {
                "20",
                "22",
            }
            # Each object's current version only (a backfill, a late delivery): nothing to send.
            assert await age_and_prune(app) == len(events) + 1
            current = list({(e.resource, e.resource_id): e for e in events}.values())
            sent = len(fake.requests)
            assert (await app.store.ingest("default", current)).new == len(current)
            await app.wait_idle(60 * UNIT)
            assert [(r.path, r.json) for r in fake.requests[sent:]] == []
        fake.assert_no_spec_violations()


@pytest.mark.parametrize("middle", ["queued", "in flight"])
async def test_a_change_back_to_what_brevo_holds_still_wins(
    tmp_path: Path, base_config: dict[str, Any], middle: str
) -> None:
    """Ann → Anne → Ann. When the last change arrives, Brevo holds "Ann" and a job for
    "Anne" is queued or in flight: Brevo must end with "Ann" all the same."""

    def version(first_name: str, minute: int) -> Event:
        payload = dict(
            ref("25-customer_create_1.json"),
            first_name=first_name,
            date_modified_gmt=f"2026-11-27T06:{minute:02d}:00",
        )
        ev = parse_event({"topic": "customer.updated", "payload": payload}, door=Door.STREAM)
        assert isinstance(ev, Event)
        return ev

    def first_name() -> str:
        return str(fake.contacts["alice@example.com"]["attributes"]["FIRSTNAME"])

    async with BrevoFake() as fake:
        async with await start_app(tmp_path, brevo_config(base_config, fake)) as app:
            await app.store.ingest("default", [version("Ann", 1)])
            await app.wait_idle(60 * UNIT)
            assert first_name() == "Ann"
            if middle == "queued":  # one chunk: "Anne" is queued when "Ann" comes back
                await app.store.ingest("default", [version("Anne", 2), version("Ann", 3)])
            else:
                fake.stall(path="/contacts")
                await app.store.ingest("default", [version("Anne", 2)])
                await fake.wait_for(lambda: fake.stalled_count == 1, timeout=30 * UNIT)
                await app.store.ingest("default", [version("Ann", 3)])
                await app.processor.drain()
                fake.release()
            await app.wait_idle(60 * UNIT)
            assert first_name() == "Ann"
        fake.assert_no_spec_violations()


async def test_backlog_goes_through_batch_endpoints(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    order = ref("order.json")
    events = []
    for i in range(300):
        p = dict(
            order,
            id=5000 + i,
            customer_id=0,
            date_modified_gmt="2025-01-01T00:00:00",
            billing=dict(order["billing"], email=f"guest{i}@example.com"),
        )
        ev = parse_event(
            {"topic": "order.created", "payload": p}, door=Door.BACKFILL, historical=True
        )
        assert isinstance(ev, Event)
        events.append(ev)
    async with BrevoFake() as fake:
        async with await start_app(tmp_path, brevo_config(base_config, fake)) as app:
            await app.store.ingest("default", events)
            await app.wait_idle(60 * UNIT)
        fake.assert_no_spec_violations()
        paths = Counter(r.path for r in fake.requests if (r.status or 999) < 300)
        assert paths["/orders/status/batch"] >= 1
        assert paths["/contacts/import"] >= 1
        assert paths["/orders/status"] < 50
        assert len(fake.orders) == 300
        assert len(fake.contacts) == 300
        batch = next(r for r in fake.requests if r.path == "/orders/status/batch")
        assert batch.json["historical"] is True
        assert fake.events == []  # history starts no automations


async def test_429_storm_waits_for_the_reset(tmp_path: Path, base_config: dict[str, Any]) -> None:
    async with BrevoFake() as fake:
        fake.fail_next(20, status=429, family="contacts", headers={"x-sib-ratelimit-reset": "1"})
        async with await start_app(tmp_path, brevo_config(base_config, fake)) as app:
            await app.store.ingest("default", events_from(REFERENCE[:4]))
            await app.wait_idle(60 * UNIT)
        contacts = [r for r in fake.requests if r.family == "contacts"]
        ok = [r for r in contacts if (r.status or 999) < 300]
        limited = [r for r in contacts if r.status == 429]
        assert len({r.json["email"] for r in ok}) == 4
        # after a 429 that says "reset in 1 s", nothing new goes out on that family for ~1 s
        # (requests already on the wire when the first 429 came back are not new)
        for a in limited:
            hurried = [b for b in contacts if a.time + 0.1 < b.time < a.time + 0.9]
            assert not hurried, (a, hurried)
        assert len(limited) <= 20
        fake.assert_no_spec_violations()


@pytest.mark.slow
@pytest.mark.timeout(OUTAGE_SECONDS + 300)
async def test_503_outage_loses_nothing(tmp_path: Path, base_config: dict[str, Any]) -> None:
    async with BrevoFake() as fake:
        fake.outage(status=503)
        async with await start_app(
            tmp_path, brevo_config(base_config, fake, max_backoff="30s")
        ) as app:
            await app.store.ingest("default", events_from(REFERENCE))
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself is the thing under test
            during = len(fake.requests)
            fake.end_outage()
            await app.wait_idle(120 * UNIT)
        # backoff, not hammering: a handful of tries per queue over the whole outage
        # (one probe at a time per endpoint family, spaced 15-30 s apart once backed off)
        assert during <= 5 * (OUTAGE_SECONDS / 15 + 8), during
        assert {"723", "727", "19", "20", "22"} <= set(fake.orders)
        assert "alice@example.com" in fake.contacts
        assert {"12", "13", "14", "15", "16"} <= set(fake.products)
        fake.assert_no_spec_violations()


async def test_ecommerce_calls_wait_for_the_activation_which_backs_off(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    """Brevo needs `POST /ecommerce/activate` before products, orders and categories: while it
    fails, those wait, and it is tried again after a backoff, not by every ecommerce job."""
    async with BrevoFake() as fake:
        fake.fail_next(2, 503, path="/ecommerce/activate")
        async with await start_app(tmp_path, brevo_config(base_config, fake)) as app:
            await app.store.ingest("default", events_from(REFERENCE))
            await app.wait_idle(60 * UNIT)
        activations = [r for r in fake.requests if r.path == "/ecommerce/activate"]
        assert [r.status for r in activations] == [503, 503, 200]
        ecommerce = [
            r for r in fake.requests if r.path.startswith(("/products", "/orders", "/categories"))
        ]
        assert ecommerce and min(r.time for r in ecommerce) >= activations[-1].time
        assert {"723", "727", "19", "20", "22"} <= set(fake.orders)
        assert {"12", "13", "14", "15", "16"} <= set(fake.products)
        fake.assert_no_spec_violations()


async def test_invalid_contact_is_dead_lettered_then_retried(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    customers = []
    for i in range(5):
        c = dict(
            ref("customer.json"),
            id=100 + i,
            email=f"c{i}@example.com",
            date_modified_gmt="2026-11-26T00:00:00",
        )
        if i == 2:
            c["meta_data"] = [{"id": 9, "key": "loyalty_points", "value": 30}]
        customers.append(("customer.updated", c))
    events = [parse_event({"topic": t, "payload": p}, door=Door.STREAM) for t, p in customers]
    known = {
        "ORDER_COUNT": "float",
        "TOTAL_SPENT": "float",
        "FIRST_ORDER_DATE": "date",
        "LAST_ORDER_DATE": "date",
    }
    async with BrevoFake(strict_attributes=True, attributes=known) as fake:
        async with await start_app(tmp_path, brevo_config(base_config, fake)) as app:
            await app.store.ingest("default", [e for e in events if isinstance(e, Event)])
            await app.wait_idle(30 * UNIT)
            assert set(fake.contacts) == {
                "c0@example.com",
                "c1@example.com",
                "c3@example.com",
                "c4@example.com",
            }
            (dead,) = await app.store.dead_letters()
            assert dead.ref == "contact:c2@example.com"
            assert dead.code == "invalid_parameter"
            assert "LOYALTY_POINTS" in dead.message
            # the fix: the attribute now exists in Brevo; then retry the dead letter
            fake.attributes["LOYALTY_POINTS"] = {
                "name": "LOYALTY_POINTS",
                "category": "normal",
                "type": "float",
            }
            n, problems = await app.store.retry_dead_letters(None, lambda raw: None)
            assert (n, problems) == (1, [])
            app.forwarder.wake()
            await app.wait_idle(30 * UNIT)
        assert fake.contacts["c2@example.com"]["attributes"]["LOYALTY_POINTS"] == 30
        assert await_count(fake, "c2@example.com") == 2  # refused once, accepted once


def await_count(fake: BrevoFake, email: str) -> int:
    return sum(
        1 for r in fake.requests if isinstance(r.json, dict) and r.json.get("email") == email
    )


async def test_dry_run_logs_each_exact_request(
    tmp_path: Path, base_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.brevo")
    async with await start_app(tmp_path, base_config) as app:
        await app.store.ingest(
            "default", events_from([("order.created", "48-order_create_completed.json")])
        )
        await app.wait_idle(30 * UNIT)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dry-run ")]
    order_line = next(
        line for line in lines if " /orders/status" in line or "/orders/status " in line
    )
    body = json.loads(order_line.split(" ", 3)[3])
    assert body["id"] == "19" and body["amount"] == 37.28


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _run_agent(config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(config), *extra],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_kill_9_while_forwarding_then_restart(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    """Every event reaches Brevo, and no object version is applied twice — except a request
    Brevo carried out but whose answer the agent had not recorded when it was killed: that one
    is resent (at-least-once; see docs/durability.md)."""
    order = ref("order.json")
    lines = []
    for i in range(400):
        p = dict(
            order,
            id=7000 + i,
            customer_id=0,
            date_modified_gmt="2026-11-26T00:00:00",
            billing=dict(order["billing"], email=f"k{i}@example.com"),
        )
        lines.append(json.dumps({"topic": "order.created", "payload": p}))
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    async with BrevoFake() as fake:
        # live traffic pace: single calls, so the kill lands in the middle of many requests
        cfg = write_config(tmp_path / "c.yaml", brevo_config(base_config, fake, live_window="1h"))
        ing = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "agent.cli",
                "ingest",
                "--config",
                str(cfg),
                "--site",
                "default",
                str(jsonl),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ing.returncode == 0, ing.stderr
        log = tmp_path / "agent.log"
        proc = _run_agent(cfg, log)
        try:
            await fake.wait_for(lambda: len(fake.orders) >= 120, timeout=60 * UNIT)
            # The worst moment: Brevo has carried out the next orders, and their answers are
            # on the way when the agent dies.
            fake.stall(path="/orders/status", applied=True)
            await fake.wait_for(lambda: fake.stalled_count >= 2, timeout=30 * UNIT)
            # kill -9 the agent: both processes, as systemd's SIGKILL to the unit's cgroup (a
            # worker left alive would let its calls be answered and recorded, as on a stop).
            for pid in [proc.pid, *_children(proc.pid)]:
                os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)
        finally:
            if proc.poll() is None:
                proc.kill()
        fake.release()
        # Requests the agent had sent before it died may still be in the fake's socket buffers:
        # let the fake answer them (as Brevo would) before counting what Brevo answered.
        await until(lambda: fake.connections == 0, 10, what="the dead agent's requests answered")
        assert 120 <= len(fake.orders) < 400
        # What the killed agent had stored: the order jobs still queued. Brevo answered some of
        # them before the kill, and the agent had not recorded the answer yet: those are the
        # in-doubt ones, and the restart must resend exactly those (at-least-once).
        answered_before = {
            str(r.json["id"])
            for r in fake.requests
            if r.path == "/orders/status" and (r.status or 999) < 300
        }
        db = sqlite3.connect(f"file:{tmp_path / 'state' / 'woobrevo.sqlite3'}?mode=ro", uri=True)
        try:
            queued = {
                key.rsplit(":", 1)[1]
                for (key,) in db.execute("SELECT key FROM jobs WHERE kind='order'")
            }
        finally:
            db.close()
        in_doubt = answered_before & queued
        # each in-doubt one still held one of the family's request slots at the kill
        assert 1 <= len(in_doubt) <= MAX_IN_FLIGHT, sorted(in_doubt)
        proc = _run_agent(cfg, log, "--until-idle")
        try:
            code = await asyncio.to_thread(proc.wait, 600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert code == 0, log.read_text()[-3000:]
        fake.assert_no_spec_violations()
        assert set(fake.orders) == {str(7000 + i) for i in range(400)}
        writes = Counter(
            str(r.json["id"])
            for r in fake.requests
            if (r.status or 999) < 300 and r.path == "/orders/status"
        )
        assert set(writes) == {str(7000 + i) for i in range(400)}
        doubled = {k for k, n in writes.items() if n > 1}
        assert doubled == in_doubt, (sorted(doubled), sorted(in_doubt))
        assert max(writes.values()) <= 2


async def test_only_paid_orders_make_buyers_in_brevo(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    """A guest whose only order failed, is pending or was cancelled is a contact, not a buyer;
    one whose order is paid later becomes one then (docs/mapping.md, "Buyers")."""
    base = dict(ref("order.json"), customer_id=0, refunds=[], total="25.00")
    feed = []
    for i, status in enumerate(["failed", "pending", "cancelled", "pending"]):
        billing = dict(base["billing"], email=f"guest{i}@example.com")
        feed.append(dict(base, id=950 + i, status=status, billing=billing))
    paid_later = dict(feed[3], status="processing", date_modified_gmt="2030-01-01T00:00:00")
    async with BrevoFake() as fake:
        async with await start_app(tmp_path, brevo_config(base_config, fake)) as app:
            for payload in [*feed, paid_later]:
                ev = parse_event({"topic": "order.updated", "payload": payload}, door=Door.POLL)
                assert isinstance(ev, Event)
                await app.store.ingest("default", [ev])
                await app.wait_idle(60 * UNIT)
        fake.assert_no_spec_violations()
        for i in range(3):
            guest = fake.contacts[f"guest{i}@example.com"]
            assert guest["listIds"] == [50], guest  # all_customers only
            assert guest["attributes"]["ORDER_COUNT"] == 0
            assert guest["attributes"]["TOTAL_SPENT"] == 0
            assert "LAST_ORDER_DATE" not in guest["attributes"]
        buyer = fake.contacts["guest3@example.com"]
        assert buyer["listIds"] == [50, 51]
        assert buyer["attributes"]["ORDER_COUNT"] == 1
        assert buyer["attributes"]["TOTAL_SPENT"] == 25.0
