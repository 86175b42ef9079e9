"""The carts table and its timers (agent/store/carts.py): kept across restarts, fired in due
order, once; a version-1 store file gains the table."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.core.carts import Cart, CartOutcome, CartRules, CartSite
from agent.core.events import Door, Event, parse_event
from agent.core.jobs import Outcome
from agent.store import SqliteStore
from agent.store.schema import SCHEMA_VERSION
from tests import kit
from tests.agent.conftest import OpenStore
from tests.agent.storesql import query
from tests.agent.test_carts_core import T0, snap
from tests.conftest import ROOT

SITE = CartSite("a", "acct", CartRules(abandon_after=60.0, list_id=52))
H = 3600.0


def cart_event(cart_id: int, at: float, email: str) -> Event:
    raw = {
        "id": f"c-{cart_id}-{int(at)}",
        "topic": "cart.updated",
        "payload": snap(cart_id, at, email),
    }
    event = parse_event(raw, door=Door.STREAM)
    assert isinstance(event, Event)
    return event


def no_decide(*_: Any) -> Outcome:
    raise AssertionError("only cart events here")


async def ingest_and_process(store: Any, events: list[Event], now: float) -> None:
    await store.ingest("a", events)

    def step(site: str, event: Event, carts: Sequence[Cart]) -> CartOutcome:
        return SITE.on_event(event, carts, now)

    await store.process_pending(50, no_decide, lambda s, e: None, carts=step)


def fire_at(now: float) -> Any:
    def fire(site: str, cart: Cart) -> CartOutcome:
        return SITE.on_due(cart, now)

    return fire


async def abandoned_events(store: Any) -> list[int]:
    rows = await query(store, "SELECT body FROM jobs WHERE kind='event' ORDER BY id")
    return [json.loads(r[0])["event_properties"]["cart_id"] for r in rows]


async def test_down_for_hours_fires_what_came_due_in_order_once(open_store: OpenStore) -> None:
    async with open_store() as store:
        # Three carts, changed in the order 2, 3, 1: due in that order.
        events = [
            cart_event(1, T0 + 20, "one@example.com"),
            cart_event(2, T0, "two@example.com"),
            cart_event(3, T0 + 10, "three@example.com"),
        ]
        await ingest_and_process(store, events, T0 + 30)
        assert await store.next_cart_due() == T0 + 60
        assert await store.fire_due_carts(T0 + 59, fire_at(T0 + 59)) == 0
    async with open_store() as store:  # a restart: the timers are in the store
        assert await store.fire_due_carts(T0 + 5 * H, fire_at(T0 + 5 * H), limit=2) == 2
        assert await store.fire_due_carts(T0 + 5 * H, fire_at(T0 + 5 * H)) == 1
        assert await store.fire_due_carts(T0 + 5 * H, fire_at(T0 + 5 * H)) == 0
        status = (await store.status())["a"]["carts"]
        assert await abandoned_events(store) == [2, 3, 1]
        assert await store.cart_figures("a") == status
        assert await store.cart_figures("nowhere") == {
            **status,
            "abandoned": 0,
            "recovery_rate": None,
        }
    assert status["active"] == 0 and status["abandoned"] == 3 and status["recovery_rate"] == 0


async def test_a_version_1_store_gains_the_carts_table(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.commit()
    db.close()
    async with SqliteStore(path) as store:
        assert await store.get_meta("schema_version") == str(SCHEMA_VERSION) == "3"
        assert await store.next_cart_due() is None


async def test_held_sites_fire_no_timer(open_store: OpenStore) -> None:
    async with open_store() as store:
        await ingest_and_process(store, [cart_event(1, T0, "one@example.com")], T0)
    async with open_store(held_sites=["a"]) as store:
        assert await store.next_cart_due() is None
        assert await store.fire_due_carts(T0 + H, fire_at(T0 + H)) == 0


async def test_a_site_gone_from_the_config_stops_its_timers(open_store: OpenStore) -> None:
    async with open_store() as store:
        await ingest_and_process(store, [cart_event(1, T0, "one@example.com")], T0)
        assert await store.fire_due_carts(T0 + H, lambda site, cart: None) == 1
        assert await store.next_cart_due() is None
        assert await store.fire_due_carts(T0 + H, fire_at(T0 + H)) == 0
        assert await abandoned_events(store) == []


def test_a_site_with_carts_disabled_tracks_nothing() -> None:
    off = CartSite("a", "acct", CartRules(enabled=False))
    assert off.on_event(cart_event(1, T0, "one@example.com"), [], T0) == CartOutcome(account="acct")


async def _two_abandoned_one_active(path: Path) -> None:
    async with SqliteStore(path) as store:
        events = [cart_event(1, T0, "one@example.com"), cart_event(2, T0, "two@example.com")]
        await ingest_and_process(store, events, T0)
        await store.fire_due_carts(T0 + H, fire_at(T0 + H))
        await ingest_and_process(store, [cart_event(3, T0 + H, "three@example.com")], T0 + H)


def test_status_shows_the_carts(tmp_path: Path) -> None:
    data = kit.config_data(tmp_path, sites=[kit.site("a", "t" * 32)])
    config = kit.write_config(tmp_path / "c.yaml", data)
    asyncio.run(_two_abandoned_one_active(kit.load(tmp_path, data).agent.store_path))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "agent.cli", "status", "--config", str(config)]
    out = subprocess.run(run, capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    lines = out.stdout.splitlines()
    header = lines.index(next(x for x in lines if x.startswith("carts ")))
    assert lines[header].split() == [
        "carts", "active", "abandoned", "recovered", "expired", "revenue", "rate",
    ]  # fmt: skip
    assert lines[header + 1].split() == ["a", "1", "2", "0", "0", "0.00", "0%"]
    as_json = subprocess.run([*run, "--json"], capture_output=True, text=True, env=env, check=True)
    carts = json.loads(as_json.stdout)["a"]["carts"]
    assert (carts["active"], carts["abandoned"], carts["recovery_rate"]) == (1, 2, 0)
