"""Abandoned carts through the real agent: the stream door, the store's timers, the Brevo fake.

Carts arrive as the plugin sends them (docs/carts.md); `abandon_after` is a second or two.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp

from agent.app import App
from agent.config import Config
from agent.core.times import gmt
from tests.agent.doorkit import AgentProcess, batch, client, config_data, hello, order
from tests.agent.test_carts_core import snap
from tests.fakes.brevo import BrevoFake
from tests.kit import live, until, write_config

EMAIL = "shopper@example.com"
LIST = 52
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _data(tmp_path: Path, fake: BrevoFake, abandon_after: str = "1s") -> dict[str, Any]:
    data = config_data(
        tmp_path,
        brevo=live(fake, max_backoff="1s"),
        woocommerce={
            "lists": {"abandoned_cart": LIST},
            "carts": {"abandon_after": abandon_after},
        },
    )
    data["agent"]["processing"] = "inline"
    return data


def cart_event(eid: str, topic: str = "cart.updated", **extra: Any) -> dict[str, Any]:
    payload = snap(7, time.time(), email=EMAIL, **extra)
    return {"id": eid, "topic": topic, "resource": "cart", "resource_id": 7, "payload": payload}


def order_event(eid: str, order_id: int) -> dict[str, Any]:
    body = order(order_id, gmt(time.time()))
    body["date_created_gmt"] = gmt(time.time())
    body["status"] = "processing"
    body["billing"] = {**body["billing"], "email": EMAIL}
    body["customer_id"] = 0
    return {
        "id": eid,
        "topic": "order.created",
        "resource": "order",
        "resource_id": order_id,
        "payload": body,
    }


async def _send(ws: Any, name: str, events: list[dict[str, Any]]) -> None:
    await ws.send(batch(name, events))
    ack = json.loads(await ws.recv())
    assert ack["accepted"] == [e["id"] for e in events], ack


def _events(fake: BrevoFake, name: str) -> list[dict[str, Any]]:
    return [e for e in fake.events if e.get("event_name") == name]


def _cart_status(cfg: Config) -> str | None:
    db = sqlite3.connect(cfg.agent.store_path)
    try:
        row = db.execute("SELECT status FROM carts WHERE site='a' AND cart_id=7").fetchone()
    finally:
        db.close()
    return None if row is None else str(row[0])


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _contact_lists(fake: BrevoFake) -> list[int]:
    contact = fake.contacts.get(EMAIL)
    return [] if contact is None else list(contact["listIds"])


async def test_abandonment_then_recovery(tmp_path: Path) -> None:
    async with BrevoFake(lists=[50, 51, LIST]) as fake:
        cfg = Config.model_validate(_data(tmp_path, fake))
        async with App(cfg) as app, client(app) as ws:
            welcome = await hello(ws)
            carts = welcome["carts"]
            assert (carts["enabled"], carts["link_lifetime"]) == (True, 7 * 86400)
            await _send(ws, "b1", [cart_event("c-1")])
            await fake.wait_for(lambda: _events(fake, "cart_abandoned"), timeout=15)
            await fake.wait_for(lambda: LIST in _contact_lists(fake), timeout=15)
            await app.wait_idle(within=15)
            (event,) = _events(fake, "cart_abandoned")
            props = event["event_properties"]
            assert props["cart_id"] == 7 and props["currency"] == "EUR"
            assert props["total"] == "22.00" and props["restore_url"].endswith("restore=x")
            assert props["cart"]["items"][0]["name"] == "Cap"
            assert event["identifiers"] == {"email_id": EMAIL}

            await _send(ws, "b2", [order_event("o-1", 456)])
            await fake.wait_for(lambda: _events(fake, "cart_recovered"), timeout=15)
            await fake.wait_for(lambda: LIST not in _contact_lists(fake), timeout=15)
            await app.wait_idle(within=15)
            (recovered,) = _events(fake, "cart_recovered")
            assert recovered["event_properties"]["order_id"] == 456
            assert recovered["event_properties"]["amount"] == "39.00"
            assert len(_events(fake, "cart_abandoned")) == 1
            status = (await app.http.snapshot())["sites"]["a"]["carts"]
            assert status["abandoned"] == 1 and status["recovered"] == 1
            assert status["recovered_revenue"] == 39.0 and status["recovery_rate"] == 1.0
            async with (
                aiohttp.ClientSession() as s,
                s.get(f"http://127.0.0.1:{app.http.port}/metrics") as r,
            ):
                text = await r.text()
            assert 'woobrevo_carts{site="a",state="recovered"} 1' in text
            assert 'woobrevo_carts_recovery_rate{site="a"} 1' in text
        fake.assert_no_spec_violations()


async def test_a_cart_that_converts_before_its_timer_sends_nothing(tmp_path: Path) -> None:
    async with BrevoFake(lists=[50, 51, LIST]) as fake:
        cfg = Config.model_validate(_data(tmp_path, fake))
        async with App(cfg) as app, client(app) as ws:
            await hello(ws)
            updated = cart_event("c-1")
            emptied = cart_event("c-2", "cart.emptied", order_id=456, items=[])
            await _send(ws, "b1", [updated, emptied])
            await until(lambda: _cart_status(cfg) == "converted", 10)
            due = time.time() + 1.5  # past the second the timer would have fired
            await until(lambda: time.time() > due, 5, what="the abandonment's due time")
            assert await app.processor.fire_timers() == 0
            await app.wait_idle(within=10)
        assert fake.requests == []


async def test_abandonment_fires_once_across_a_kill_at_the_due_moment(tmp_path: Path) -> None:
    async with BrevoFake(lists=[50, 51, LIST]) as fake:
        data = _data(tmp_path, fake, abandon_after="2s")
        data["agent"]["processing"] = "process"
        path = write_config(tmp_path / "agent.yaml", data)
        async with AgentProcess(path, ENV) as agent:
            async with agent.connect() as ws:
                await hello(ws)
                event = cart_event("c-1")
                due = time.time() + 2.0
                await _send(ws, "b1", [event])
            await until(lambda: time.time() >= due, 10, what="the due moment", every=0.01)
            assert agent.proc is not None
            pid = agent.proc.pid
            for child in _children(pid):
                os.kill(child, signal.SIGKILL)
            agent.proc.kill()
            assert await agent.proc.wait() == -signal.SIGKILL
        async with AgentProcess(path, ENV) as agent:
            await fake.wait_for(lambda: _events(fake, "cart_abandoned"), timeout=30)

            async def idle() -> bool:
                backlog = (await agent.status())["sites"]["a"]["backlog"]
                return bool(backlog == {"inbox_depth": 0, "pending_jobs": 0, "dead_letters": 0})

            await until(idle, 30, every=0.1)
        assert len(_events(fake, "cart_abandoned")) == 1
        assert LIST in _contact_lists(fake)
        fake.assert_no_spec_violations()
