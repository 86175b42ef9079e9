"""Backfill: the fields it asks for, its order and checkpoints, progress output, and a real
`woobrevo-agent backfill` killed with SIGKILL at about half, restarted, and checked against the
Brevo fake: every object written once."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.cli.progress import BarProgress, LineProgress, format_bar, format_line
from agent.config import SiteConfig
from agent.core.backfill import Checkpoint, backfill_order, parse_since, seconds_until
from agent.core.events import Door
from agent.core.pipeline import SiteRules, decide
from agent.core.rest import fields_for, to_events
from agent.doors.backfill import Backfill, BackfillConflict
from agent.store import SqliteStore
from agent.woocommerce.factory import site_client
from tests.conftest import ROOT, ref
from tests.fakes.brevo import BrevoFake
from tests.fakes.woocommerce import WooFake
from tests.kit import UNIT, load, until, write_config

NOW = 1_795_800_000.0  # 2026-11-27, the recordings' day
FAST_BREVO = {
    fam: [{"count": 1000, "per": "1s"}]
    for fam in ("contacts", "events", "orders", "products", "other")
}

# Reference objects (docs examples and a real 10.0.2 store) by the listing they come from.
REFERENCE = {
    "customers": ["customer.json", "25-customer_create_1.json", "32-customer_update.json"],
    "orders": [
        "order.json",
        "order_retrieve_727.json",
        "48-order_create_completed.json",
        "51-order_get_refunded.json",
        "53-order_create_guest_on_hold.json",
    ],
    "products": ["product_simple.json", "product_variable.json", "37-product_create_variable.json"],
    "variations": ["variation.json", "38-variation_create_S.json"],
    "coupons": ["coupon.json", "44-coupon_create_percent.json"],
}


def _site(tmp_path: Path, base_config: dict[str, Any]) -> SiteConfig:
    base_config["connectors"]["woocommerce"]["customer_mapping"].update(
        {"meta_data.loyalty_tier": "LOYALTY_TIER", "date_created_gmt": "SIGNED_UP"}
    )
    base_config["connectors"]["woocommerce"]["webhooks"] += [
        {"topic": "order.updated", "event": "order_updated"},
        {"topic": "order.paid", "event": "order_paid"},
        {"topic": "customer.updated", "event": "customer_updated"},
    ]
    return load(tmp_path, base_config).resolved_sites()[0]


def _trim(obj: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """What `_fields` leaves of an object (rest_filter_response_fields, top-level names)."""
    return {k: v for k, v in obj.items() if k in fields}


def _outcome(site: SiteConfig, resource: str, payload: dict[str, Any], prior: Any) -> Any:
    (event,), rejected = to_events(resource, [payload], door=Door.BACKFILL)
    assert not rejected
    aggregates = {
        "orders_count": 3,
        "total_spent": 120.5,
        "first_order_date": "2026-01-02T00:00:00",
        "last_order_date": "2026-11-02T00:00:00",
    }
    return decide(
        SiteRules.of(site),
        event,
        prior,
        lambda _email, _paid: aggregates,
        now=NOW,
        historical_after=1e10,
    )


@pytest.mark.parametrize("resource", sorted(REFERENCE))
def test_trimmed_fields_give_the_pipeline_the_same_intents(
    tmp_path: Path, base_config: dict[str, Any], resource: str
) -> None:
    """`_fields` halves an order page; it must not change a single Brevo write or event."""
    site = _site(tmp_path, base_config)
    fields = fields_for(resource, site.woo.customer_mapping)
    for name in REFERENCE[resource]:
        full = ref(name)
        if resource == "variations":
            full.setdefault("parent_id", 799)  # what the listing adds to old bodies
        priors = [
            None,
            {
                "version": "2020-01-01T00:00:00",
                "deleted": False,
                "status": "pending",
                "refunds": [],
            },
        ]
        for prior in priors:
            want = _outcome(site, resource, full, prior)
            got = _outcome(site, resource, _trim(full, fields), prior)
            assert got == want, (name, prior)
        assert len(json.dumps(_trim(full, fields))) <= len(json.dumps(full))


def test_order_of_resources_and_plain_helpers() -> None:
    enabled = {"customers": True, "orders": True, "products": True, "coupons": False}
    assert backfill_order(None, enabled) == ["products", "customers", "orders"]
    assert backfill_order(["orders", "customers"], enabled) == ["customers", "orders"]
    with pytest.raises(ValueError, match="unknown resource 'refunds'"):
        backfill_order(["refunds"], enabled)
    assert parse_since("2025-01-31") == "2025-01-31T00:00:00"
    assert parse_since("2025-01-31T12:30:00+02:00") == "2025-01-31T10:30:00"
    late = datetime(2026, 11, 27, 23, 30)
    assert seconds_until("02:00", late) == 2.5 * 3600
    assert seconds_until("23:45", late) == 15 * 60
    with pytest.raises(ValueError, match="HH:MM"):
        seconds_until("25:00", late)
    # A resumed run starts one page back: deletions since shift every later page left.
    assert Checkpoint(next_page=7).resume_page() == 6
    assert Checkpoint().resume_page() == 1
    cp = Checkpoint(next_page=3, total_pages=9, total=850, done_items=200, parents=(4, 5))
    assert Checkpoint.load(cp.dump()) == cp


def test_progress_bar_and_lines() -> None:
    bar = format_bar("orders", 25_000, 50_000, 250.0, width=80)
    assert bar.startswith("orders     [#") and "25000/50000" in bar and "100.0/s" in bar
    inside = bar[bar.index("[") + 1 : bar.index("]")]
    assert len(bar) == 80 and inside.count("#") == len(inside) // 2
    assert "eta 04:10" in bar  # 25,000 left at 100/s
    assert format_line("customers", 50, 200, 5.0) == "customers 50/200 (25.0%) 10.0/s eta 00:15"
    assert format_line("variations", 7, None, 2.0) == "variations 7/? 3.5/s elapsed 00:02"

    now = [0.0]
    out = io.StringIO()
    lines = LineProgress(out, every=10, clock=lambda: now[0])
    lines.update("orders", 0, 1000)
    now[0] = 5.0
    lines.update("orders", 400, 1000)  # too soon for another line
    now[0] = 10.0
    lines.update("orders", 800, 1000)
    now[0] = 12.5
    lines.finish("orders", 1000)
    assert out.getvalue().splitlines() == [
        "backfill orders 800/1000 (80.0%) 80.0/s eta 00:03",
        "backfill orders 1000/1000 (100.0%) 80.0/s eta 00:00 done",
    ]
    tty = io.StringIO()
    bars = BarProgress(tty, clock=lambda: now[0])
    bars.update("products", 10, 40)
    now[0] = 13.0
    bars.update("customers", 5, 10)
    bars.finish("products", 40)
    drawn = tty.getvalue()
    assert "\x1b[2F" in drawn  # the second redraw goes back over both bars
    assert drawn.count("\x1b[2K") == 5


async def test_backfill_stores_in_order_and_resumes_from_its_checkpoint(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    async with WooFake(customers=30, orders=45, products=9, coupons=2, seed=3) as woo:
        base_config["connectors"]["woocommerce"].update(
            store_url=woo.url,
            consumer_key=woo.consumer_key,
            consumer_secret=woo.consumer_secret,
            rate_limit_per_minute=6000,
            backfill={"per_page": 10, "concurrency": 3},
        )
        site = _site(tmp_path, base_config)
        path = tmp_path / "s.sqlite3"
        resources = ["products", "customers", "orders", "coupons"]
        async with SqliteStore(path) as store, site_client(site, concurrency=3) as wc:
            # A first run dies in the middle of the orders (a store error on page 3).
            job = Backfill(store, site, wc, resources=resources)
            original = job._store
            pages = Counter[str]()

            async def failing(resource: str, items: list[dict[str, Any]]) -> int:
                pages[resource] += 1
                if resource == "orders" and pages[resource] == 3:
                    raise RuntimeError("killed")
                return await original(resource, items)

            job._store = failing  # type: ignore[method-assign]
            with pytest.raises(RuntimeError):
                await job.run()
            # Another command cannot silently take over the unfinished run.
            with pytest.raises(BackfillConflict, match="Run that same command"):
                await Backfill(store, site, wc, resources=["orders"]).run()
            woo.reset_counters()
            counts = await Backfill(store, site, wc, resources=resources).run()
            order_pages = sorted(
                int(dict(p.split("=") for p in r.query.split("&"))["page"])
                for r in woo.requests
                if r.path.endswith("/orders")
            )
            # Resumed one page before the first page not stored, not from page 1.
            assert order_pages[0] == 2 and order_pages[-1] == 5
            assert not any(r.path.endswith("/customers") for r in woo.requests)
            assert counts == {"orders": 45 - 10, "coupons": 2}
        rows = _inbox(path)
    kinds = [resource for resource, _ in rows]
    # Products and their variations, then customers, then orders, then coupons.
    firsts = {k: kinds.index(k) for k in set(kinds)}
    assert (
        firsts["product"]
        < firsts["variation"]
        < firsts["customer"]
        < firsts["order"]
        < firsts["coupon"]
    )
    assert Counter(kinds) == {
        "product": 9,
        "variation": len(woo.ids("variations")),
        "customer": 30,
        "order": 45,
        "coupon": 2,
    }
    assert {door for _, door in rows} == {"backfill"}


async def test_since_and_headers_stripped_by_a_proxy(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    async with WooFake(
        customers=12,
        orders=25,
        products=4,
        coupons=1,
        strip_headers=("X-WP-Total", "X-WP-TotalPages"),
    ) as woo:
        base_config["connectors"]["woocommerce"].update(
            store_url=woo.url,
            consumer_key=woo.consumer_key,
            consumer_secret=woo.consumer_secret,
            rate_limit_per_minute=6000,
            backfill={"per_page": 10},
        )
        site = _site(tmp_path, base_config)
        woo.clock.advance(60)
        # `modified_after` is exclusive (NOTES §2.1): one second before the changes.
        since = datetime.fromtimestamp(woo.clock.now() - 1).astimezone().isoformat()
        touched = woo.ids("orders")[:3]
        for oid in touched:
            woo.update_order(oid, customer_note="changed")
        woo.update_customer(woo.ids("customers")[0], first_name="Since")
        async with (
            SqliteStore(tmp_path / "s.sqlite3") as store,
            site_client(site, concurrency=2) as wc,
        ):
            # Without X-WP-TotalPages the pages come one at a time until a short one.
            full = await Backfill(store, site, wc, resources=["orders"]).run()
            assert full == {"orders": 25}
            recent = await Backfill(
                store, site, wc, resources=["customers", "orders"], since=parse_since(since)
            ).run()
        assert recent == {"customers": 1, "orders": 3}  # customers filtered here, not by the store
        rows = _inbox(tmp_path / "s.sqlite3")
        # The second run listed versions the first had stored: stored once (content ids).
        assert Counter(r for r, _ in rows) == {"order": 25, "customer": 1}


async def test_once_skips_a_finished_backfill(tmp_path: Path, base_config: dict[str, Any]) -> None:
    async with WooFake(customers=4, orders=6, products=2, coupons=1) as woo:
        base_config["connectors"]["woocommerce"].update(
            store_url=woo.url,
            consumer_key=woo.consumer_key,
            consumer_secret=woo.consumer_secret,
            rate_limit_per_minute=6000,
        )
        site = _site(tmp_path, base_config)
        async with (
            SqliteStore(tmp_path / "s.sqlite3") as store,
            site_client(site, concurrency=2) as wc,
        ):
            first = Backfill(store, site, wc, resources=["orders"], once=True)
            assert await first.run() == {"orders": 6}
            # Killed while forwarding: the same command stores nothing again, it forwards.
            woo.reset_counters()
            again = Backfill(store, site, wc, resources=["orders"], once=True)
            assert await again.run() == {} and again.already_stored and not again.already_done
            await again.finish()  # forwarded
            later = Backfill(store, site, wc, resources=["orders"], once=True)
            assert await later.run() == {} and later.already_done
            assert woo.requests == []  # the nightly timer's later nights cost nothing
            # Without --once a finished backfill starts over.
            assert await Backfill(store, site, wc, resources=["orders"]).run() == {"orders": 6}


def _inbox(path: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(path)
    try:
        return [
            (str(r), str(d)) for r, d in db.execute("SELECT resource, door FROM inbox ORDER BY seq")
        ]
    finally:
        db.close()


# -- the real command, killed -------------------------------------------------------------------


def _writes(requests: list[Any]) -> tuple[Counter[str], Counter[str], Counter[tuple[str, str]]]:
    """Successful writes: orders by id, products by id, contact rows by (email, body)."""
    orders: Counter[str] = Counter()
    products: Counter[str] = Counter()
    contacts: Counter[tuple[str, str]] = Counter()
    for r in requests:
        if (r.status or 999) >= 300 or not isinstance(r.json, dict):
            continue
        body = r.json
        if r.path == "/orders/status":
            orders[str(body["id"])] += 1
        elif r.path == "/orders/status/batch":
            orders.update(str(o["id"]) for o in body["orders"])
        elif r.path == "/products":
            products[str(body["id"])] += 1
        elif r.path == "/products/batch":
            products.update(str(p["id"]) for p in body["products"])
        elif r.path == "/contacts":
            contacts[str(body["email"]), json.dumps(body.get("attributes"), sort_keys=True)] += 1
        elif r.path == "/contacts/import":
            for row in body["jsonBody"]:
                contacts[str(row["email"]), json.dumps(row.get("attributes"), sort_keys=True)] += 1
    return orders, products, contacts


def _spawn(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.cli",
                "backfill",
                "--config",
                str(config),
                "--site",
                "default",
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _pages(requests: list[Any], resource: str) -> list[int]:
    out = []
    for r in requests:
        if r.path.endswith(f"/{resource}"):
            query = dict(p.split("=", 1) for p in r.query.split("&") if "=" in p)
            out.append(int(query.get("page", 0)))
    return out


async def test_backfill_killed_at_half_resumes_and_writes_each_object_once(
    tmp_path: Path, base_config: dict[str, Any]
) -> None:
    async with (
        WooFake(customers=120, orders=400, products=12, coupons=3, delay=0.02) as woo,
        BrevoFake() as brevo,
    ):
        # Brevo's published limits (general plan): a backlog this deep goes through the
        # batch endpoints, as a real backfill does.
        base_config["brevo"] = {
            "api_key": brevo.api_key,
            "base_url": brevo.base_url,
            "dry_run": False,
            "max_backoff": "1s",
        }
        base_config["connectors"]["woocommerce"].update(
            store_url=woo.url,
            consumer_key=woo.consumer_key,
            consumer_secret=woo.consumer_secret,
            rate_limit_per_minute=6000,
            backfill={"per_page": 20, "concurrency": 2},
        )
        config = write_config(tmp_path / "c.yaml", base_config)
        log = tmp_path / "backfill.log"
        proc = _spawn(config, log)
        try:
            await until(lambda: len(_pages(woo.requests, "orders")) >= 10, 60)
            os.kill(proc.pid, signal.SIGKILL)
            assert await asyncio.to_thread(proc.wait, 10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
        first = _pages(woo.requests, "orders")
        assert 10 <= len(first) < 20, "the kill should land in the middle of the orders"
        # Forwarding starts once every page is stored: nothing reached Brevo yet but the
        # pre-pass's reading of the contacts it already holds (never re-subscribe).
        assert [(r.method, r.path) for r in brevo.requests] == [("GET", "/contacts")]
        seen_brevo = len(brevo.requests)

        # The second run resumes the listing, then is killed too, while forwarding: Brevo
        # holds its first write, so the kill leaves no write half-applied (a held request
        # is cancelled when its connection dies) and "once" below is exact.
        seen = len(woo.requests)
        brevo.stall()
        proc = _spawn(config, log)
        try:
            await asyncio.wait_for(brevo.stalled.wait(), 60 * UNIT)
            os.kill(proc.pid, signal.SIGKILL)
            assert await asyncio.to_thread(proc.wait, 10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
        second = _pages(woo.requests[seen:], "orders")
        # Resumed near where it stopped, not from the first page.
        assert min(second) >= max(first) - 4 and len(second) < 20
        assert not _pages(woo.requests[seen:], "customers")
        await brevo.wait_for(lambda: brevo.stalled_count == 0, timeout=10 * UNIT)
        # The resumed run does not read Brevo's contacts again: the first run recorded them.
        assert not any((r.status or 999) < 300 for r in brevo.requests[seen_brevo:])
        assert all(r.method != "GET" for r in brevo.requests[seen_brevo:])
        brevo.release()

        # The third run lists nothing again: every page is stored; it forwards.
        seen = len(woo.requests)
        proc = _spawn(config, log)
        code = await asyncio.to_thread(proc.wait, 120 * UNIT)
        assert code == 0, log.read_text()[-3000:]
        assert woo.requests[seen:] == []
        assert "every page was stored by an earlier run; forwarding" in log.read_text()

        orders, products, contacts = _writes(brevo.requests)
        assert set(orders) == {str(i) for i in woo.ids("orders")}
        assert set(orders.values()) == {1}
        expected_products = {str(i) for i in woo.ids("products") + woo.ids("variations")}
        assert set(products) == expected_products and set(products.values()) == {1}
        assert contacts and set(contacts.values()) == {1}
        assert brevo.events == []  # history starts no automations
        brevo.assert_no_spec_violations()
        text = log.read_text()
        assert "backfill orders 400/400 (100.0%)" in text  # plain progress lines (no tty)
        assert "backfill customers 120/120 done (by an earlier run)" in text
        assert "forwarded what an earlier backfill run stored" in text
        paths = Counter(r.path for r in brevo.requests if (r.status or 999) < 300)
        assert paths["/orders/status/batch"] >= 1 and paths["/orders/status"] < 100
