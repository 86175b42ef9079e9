"""The polling door: the stream/polling mode machine, watermarks and windows (pure), and a real
App falling back to polling when its plugin's stream goes silent, against the WooCommerce REST
fake and the Brevo fake."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from agent.app import App
from agent.config import Config
from agent.core.events import Door
from agent.core.polling import (
    Mode,
    Step,
    advance,
    changed_ids,
    next_mode,
    start_mark,
    stream_fresh,
    vanished_ids,
    window_start,
)
from agent.core.rest import to_events, topic_for
from agent.doors.backfill import Backfill
from agent.status import PollingStatus
from agent.woocommerce.factory import site_client
from tests import kit
from tests.agent.doorkit import HELLO
from tests.fakes.brevo import BrevoFake, RecordedRequest
from tests.fakes.woocommerce import WooFake
from tests.kit import UNIT, until

TOKEN = "token-for-the-polling-test-" + "z" * 24
FAST_BREVO = {
    fam: [{"count": 1000, "per": "1s"}]
    for fam in ("contacts", "events", "orders", "products", "other")
}

# -- pure: the mode machine and the windows --------------------------------------------------


def test_mode_machine_stream_polling_catchup_stream() -> None:
    assert next_mode("stream", Mode.STREAM, fresh=True) == (Mode.STREAM, Step.IDLE)
    assert next_mode("stream", Mode.STREAM, fresh=False) == (Mode.POLLING, Step.POLL)
    assert next_mode("stream", Mode.POLLING, fresh=False) == (Mode.POLLING, Step.POLL)
    assert next_mode("stream", Mode.POLLING, fresh=True) == (Mode.STREAM, Step.CATCHUP)
    # A site without the plugin is polled whatever the stream says.
    assert next_mode("polling", Mode.POLLING, fresh=True) == (Mode.POLLING, Step.POLL)
    # Before any hello, the agent's start is the reference: no polling during a restart.
    assert stream_fresh(None, started_at=100.0, now=150.0, stale_after=180.0)
    assert not stream_fresh(None, started_at=100.0, now=281.0, stale_after=180.0)
    assert not stream_fresh(10.0, started_at=0.0, now=191.0, stale_after=180.0)


def test_windows_overlap_and_marks_only_move_forward() -> None:
    assert window_start("2026-11-27T06:00:05", 10) == "2026-11-27T05:59:55"
    items = [
        {"date_modified_gmt": "2026-11-27T06:00:01"},
        {"date_modified_gmt": "2026-11-27T06:02:00"},
    ]
    assert advance("2026-11-27T06:01:00", items) == "2026-11-27T06:02:00"
    assert advance("2026-11-27T07:00:00", items) == "2026-11-27T07:00:00"
    assert advance(None, []) is None
    # Resuming after a healthy stream: the newest version any door stored, minus a lookback,
    # wins over an old poll mark; an even newer poll mark wins over both.
    assert start_mark("2026-11-01T00:00:00", "2026-11-27T06:00:00", 190) == "2026-11-27T05:56:50"
    assert start_mark("2026-11-27T06:30:00", "2026-11-27T06:00:00", 190) == "2026-11-27T06:30:00"
    assert start_mark(None, None, 190) is None


def test_changed_and_vanished_ids() -> None:
    known = {
        1: ("2026-11-27T06:00:00", False, None),
        2: ("2026-11-27T06:00:00", False, None),
        3: ("2026-11-27T06:00:00", True, None),
        4: ("2026-11-27T06:00:00", False, "checkout-draft"),
        5: ("2026-11-27T06:00:00", False, "processing"),
    }
    remote = {1: "2026-11-27T06:00:00", 2: "2026-11-27T06:00:01", 3: "2026-11-27T06:00:00", 9: "x"}
    assert changed_ids(remote, known) == [2, 3, 9]
    # 5 is gone; 3 was already deleted; 4 is a draft the listing never shows.
    assert vanished_ids([1, 2], known) == [5]


def test_topic_and_content_id_do_not_depend_on_the_door() -> None:
    new = {
        "id": 7,
        "date_created_gmt": "2026-11-27T06:00:00",
        "date_modified_gmt": "2026-11-27T06:00:00",
        "status": "pending",
        "billing": {},
    }
    assert topic_for("orders", new) == "order.created"
    assert (
        topic_for("orders", dict(new, date_modified_gmt="2026-11-27T06:01:00")) == "order.updated"
    )
    (polled,), _ = to_events("orders", [new], door=Door.POLL)
    (backfilled,), _ = to_events("orders", [new], door=Door.BACKFILL, historical=True)
    assert polled.id == backfilled.id  # stored once whichever door brings this version
    (variation,), _ = to_events("variations", [dict(new, parent_id=3)], door=Door.POLL)
    assert variation.topic == "product.created" and variation.resource.value == "variation"


# -- a real App, a real websockets "plugin", the REST fake and the Brevo fake ----------------


def _config(tmp: Path, woo: WooFake, brevo: BrevoFake, **woo_extra: Any) -> Config:
    data = kit.config_data(
        tmp,
        sites=[kit.site("shop", TOKEN, **woo_extra)],
        stream={"stale_after": "1s"},
        agent={"historical_after": "30d"},
        brevo=kit.live(brevo, max_backoff="1s", rate_limits=FAST_BREVO),
        woocommerce={
            **kit.store(woo),
            "rate_limit_per_minute": 6000,
            "lists": {"all_customers": 50, "buyers": 51},
            "customer_mapping": {
                "email": "email",
                "first_name": "FIRSTNAME",
                "last_name": "LASTNAME",
                "orders_count": "ORDER_COUNT",
            },
            "webhooks": [{"topic": "order.created", "event": "order_placed"}],
            "polling": {
                "interval": "300ms",
                "overlap": "3s",
                "customer_scan_every": "1s",
                "reconcile_every": "1s",
            },
        },
    )
    return Config.model_validate(data)


class Plugin:
    """The plugin's side of the stream: a real websockets client that sends heartbeats."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.ws: ClientConnection | None = None
        self.beats = 0
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.ws = await connect(
            f"ws://127.0.0.1:{self.app.stream.port}/v1/stream",
            additional_headers={"Authorization": f"Bearer {TOKEN}"},
            compression=None,
            open_timeout=5 * UNIT,
        )

    async def beat(self) -> None:
        """One heartbeat: hello, answered by a welcome (docs/protocol.md, "Heartbeat")."""
        assert self.ws is not None
        await self.ws.send(json.dumps(HELLO))
        assert json.loads(await self.ws.recv())["type"] == "welcome"
        self.beats += 1

    async def _beating(self, every: float) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(every)

    def start(self, every: float = 0.25) -> None:
        self._task = asyncio.create_task(self._beating(every))

    async def stop(self) -> None:
        """WP-Cron stops: no more heartbeats (the connection stays open and quiet)."""
        if self._task is not None:
            self._task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self._task
            self._task = None

    async def close(self) -> None:
        await self.stop()
        if self.ws is not None:
            await self.ws.close()


@pytest.fixture
async def plugin_app(tmp_path: Path) -> AsyncIterator[tuple[App, Plugin, WooFake, BrevoFake]]:
    async with (
        WooFake(customers=6, orders=10, products=5, coupons=2, seed=7) as woo,
        BrevoFake() as brevo,
    ):
        async with App(_config(tmp_path, woo, brevo)) as app:
            plugin = Plugin(app)
            await plugin.connect()
            plugin.start()
            try:
                yield app, plugin, woo, brevo
            finally:
                await plugin.close()
        brevo.assert_no_spec_violations()


def _polling(app: App) -> PollingStatus:
    """The shop's poller record in /status."""
    record = app.status.site("shop").polling
    assert record is not None
    return record


def _writes(requests: list[RecordedRequest]) -> Counter[tuple[str, str]]:
    """Successful Brevo writes per object: ("order", id), ("product", id), ("contact", email)."""
    out: Counter[tuple[str, str]] = Counter()
    for r in requests:
        if (r.status or 999) >= 300 or r.method != "POST" or not isinstance(r.json, dict):
            continue
        body = r.json
        if r.path == "/orders/status":
            out["order", str(body["id"])] += 1
        elif r.path == "/orders/status/batch":
            out.update(("order", str(o["id"])) for o in body["orders"])
        elif r.path == "/products":
            out["product", str(body["id"])] += 1
        elif r.path == "/products/batch":
            out.update(("product", str(p["id"])) for p in body["products"])
        elif r.path == "/contacts":
            out["contact", str(body["email"]).lower()] += 1
        elif r.path == "/contacts/import":
            out.update(("contact", str(c["email"]).lower()) for c in body["jsonBody"])
        elif r.path == "/contacts/batch":
            out.update(("contact", str(c["email"]).lower()) for c in body["contacts"])
    return out


async def test_silent_stream_falls_back_to_polling_and_back(
    plugin_app: tuple[App, Plugin, WooFake, BrevoFake],
) -> None:
    app, plugin, woo, brevo = plugin_app
    site = app.sites["shop"]
    assert app.status.site("shop").mode == "stream"

    # What the agent held before the gap: the store's history, backfilled while the plugin
    # was healthy (the poller stays idle meanwhile).
    async with site_client(site, concurrency=2) as wc:
        await Backfill(
            app.store, site, wc, resources=["products", "customers", "orders", "coupons"]
        ).run()
    await app.wait_idle(30 * UNIT)
    assert len(brevo.orders) == 10
    assert app.status.site("shop").mode == "stream" and _polling(app).rounds == 0
    before = len(brevo.requests)

    # The plugin goes silent: after stale_after the agent polls.
    await plugin.stop()
    await until(lambda: app.status.site("shop").mode == "polling", 5)

    # Changes made during the gap: none of them reaches the agent through the stream.
    woo.clock.advance(2)
    changed_order = next(
        i for i in woo.ids("orders") if woo.object("orders", i)["status"] != "completed"
    )
    customer_id = next(i for i in woo.ids("customers"))
    new_customer_name = "Gapfilled"
    woo.update_order(changed_order, status="completed")
    new_order = woo.add_order(customer_id=customer_id, status="processing")
    woo.update_customer(woo.ids("customers")[-1], first_name=new_customer_name)
    new_product = woo.add_product("simple")
    gone_product = next(
        i
        for i in woo.ids("products")
        if woo.object("products", i)["type"] == "simple" and i != new_product["id"]
    )
    woo.delete("products", gone_product)
    renamed = woo.object("customers", woo.ids("customers")[-1])["email"].lower()

    def arrived() -> bool:
        w = _writes(brevo.requests[before:])
        deleted = any(
            r.path == "/products"
            and isinstance(r.json, dict)
            and r.json.get("id") == str(gone_product)
            and r.json.get("isDeleted")
            for r in brevo.requests[before:]
        )
        contact = brevo.contacts.get(renamed, {})
        return (
            brevo.orders.get(str(changed_order), {}).get("status") == "completed"
            and str(new_order["id"]) in brevo.orders
            and str(new_product["id"]) in brevo.products
            and deleted
            and contact.get("attributes", {}).get("FIRSTNAME") == new_customer_name
            and w["order", str(new_order["id"])] == 1
        )

    await brevo.wait_for(arrived, timeout=20 * UNIT)
    await app.wait_idle(20 * UNIT)
    writes = _writes(brevo.requests[before:])
    # Exactly once each, though overlapping windows listed some of them several times.
    assert writes["order", str(changed_order)] == 1
    assert writes["order", str(new_order["id"])] == 1
    assert writes["product", str(new_product["id"])] == 1
    assert writes["product", str(gone_product)] == 1
    assert writes["contact", renamed] == 1
    # Nothing that did not change was written again.
    untouched = {("order", str(i)) for i in woo.ids("orders")} - {
        ("order", str(changed_order)),
        ("order", str(new_order["id"])),
    }
    assert not untouched & set(writes)
    placed = [e for e in brevo.events if e["event_name"] == "order_placed"]
    assert [e["event_properties"]["order_id"] for e in placed] == [new_order["id"]]
    assert _polling(app).last_customer_scan is not None
    # The reconciliation found the deletion; its variation sweep finishes after that.
    await until(lambda: _polling(app).last_reconcile is not None, 5)

    # /status and /metrics show the mode.
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{app.http.port}"
        async with http.get(f"{base}/status") as resp:
            status = (await resp.json())["sites"]["shop"]
        async with http.get(f"{base}/metrics") as resp:
            metrics = await resp.text()
    assert status["mode"] == "polling" and status["polling"]["rounds"] >= 1
    assert 'woobrevo_site_mode{mode="polling",site="shop"} 1' in metrics
    assert 'woobrevo_mode_changes_total{mode="polling",site="shop"} 1' in metrics

    # The stream comes back: one catch-up round, then polling stops.
    rounds = _polling(app).rounds
    plugin.start()
    await until(lambda: app.status.site("shop").mode == "stream", 5)
    assert _polling(app).rounds >= rounds + 1  # the catch-up
    served = len(woo.requests)
    beats = plugin.beats
    # Four heartbeats later (more than a stale window), the store has seen no request.
    await until(lambda: plugin.beats >= beats + 5, 5)
    assert len(woo.requests) == served
    assert app.status.site("shop").mode == "stream"
    assert app.metrics.get("woobrevo_mode_changes_total", site="shop", mode="stream") == 1


async def test_site_without_plugin_is_polled_continuously(tmp_path: Path) -> None:
    async with WooFake(customers=3, orders=4, products=2, coupons=1) as woo, BrevoFake() as brevo:
        cfg = _config(tmp_path, woo, brevo, mode="polling")
        async with App(cfg) as app:
            assert app.status.site("shop").mode == "polling"
            await until(lambda: _polling(app).rounds >= 1, 5)
            woo.clock.advance(1)
            order = woo.add_order(status="processing")
            await brevo.wait_for(lambda: str(order["id"]) in brevo.orders, timeout=10 * UNIT)
            # Only the newest objects were there before polling began: history is backfill's job.
            assert len(brevo.orders) <= 2
            assert app.status.site("shop").mode == "polling"
        brevo.assert_no_spec_violations()


async def test_keyset_walks_a_burst_saved_in_one_second(tmp_path: Path) -> None:
    """250 orders saved in the same second (a bulk edit): three requests of 100, none lost,
    none listed twice, although page numbers would shift while the round pages."""
    async with WooFake(customers=5, orders=250, products=3, coupons=0) as woo, BrevoFake() as brevo:
        cfg = _config(tmp_path, woo, brevo, mode="polling")
        async with App(cfg) as app:
            poller = app.pollers.sites["shop"]
            await until(lambda: _polling(app).rounds >= 1, 5)
            await poller.close()  # drive rounds by hand from here
            poller.client = site_client(app.sites["shop"], concurrency=2)
            async with poller.client:
                woo.clock.advance(5)
                for oid in woo.ids("orders"):
                    woo.update_order(oid, customer_note="bulk")
                woo.reset_counters()
                before = _polled_orders(cfg)
                assert await poller._round()
                order_lists = [r for r in woo.requests if r.path.endswith("/orders")]
                assert len(order_lists) == 3
                assert "exclude=" in order_lists[1].query
                assert _polled_orders(cfg) - before == 250


def _polled_orders(cfg: Config) -> int:
    db = sqlite3.connect(cfg.agent.store_path)
    try:
        n: int = db.execute(
            "SELECT COUNT(*) FROM inbox WHERE resource='order' AND door='poll'"
        ).fetchone()[0]
    finally:
        db.close()
    return n
