"""The cart figures in each `welcome` (docs/protocol.md): what the plugin's status panel shows,
read from the store on every hello, so they follow the carts; none for a site without carts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from agent.app import App
from agent.config import Config
from agent.core.times import gmt
from tests.agent.doorkit import TOKENS, batch, client, config_data, hello, order
from tests.agent.test_carts_core import snap
from tests.kit import until

EMAIL = "shopper@example.com"
ZERO = {
    "active": 0,
    "abandoned": 0,
    "recovered": 0,
    "expired": 0,
    "converted": 0,
    "emptied": 0,
    "recovered_revenue": 0.0,
    "recovery_rate": None,
}


def _config(tmp_path: Path) -> Config:
    """Sites a (carts on, abandoned after 3 s: the snapshot's time is to the second) and b (carts off); Brevo dry-run."""
    data = config_data(
        tmp_path,
        woocommerce={"lists": {"abandoned_cart": 52}, "carts": {"abandon_after": "3s"}},
    )
    data["agent"]["processing"] = "inline"
    data["sites"][1]["carts"] = {"enabled": False}
    return Config.model_validate(data)


def _cart() -> dict[str, Any]:
    payload = snap(7, time.time(), email=EMAIL)
    return {
        "id": "c-1",
        "topic": "cart.updated",
        "resource": "cart",
        "resource_id": 7,
        "payload": payload,
    }


def _order(order_id: int) -> dict[str, Any]:
    body = order(order_id, gmt(time.time()))
    body["date_created_gmt"] = gmt(time.time())
    body["status"] = "processing"
    body["billing"] = {**body["billing"], "email": EMAIL}
    body["customer_id"] = 0
    return {
        "id": "o-1",
        "topic": "order.created",
        "resource": "order",
        "resource_id": order_id,
        "payload": body,
    }


async def _figures(ws: Any) -> dict[str, Any]:
    """The figures of a fresh welcome (the plugin's heartbeat hello)."""
    figures: dict[str, Any] = (await hello(ws))["carts"]["figures"]
    return figures


async def _send(ws: Any, name: str, events: list[dict[str, Any]]) -> None:
    await ws.send(batch(name, events))
    ack = json.loads(await ws.recv())
    assert ack["accepted"] == [e["id"] for e in events], ack


async def test_welcome_figures_follow_an_abandonment_and_its_recovery(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    async with App(cfg) as app, client(app) as ws:
        welcome = await hello(ws)
        assert welcome["carts"] == {"enabled": True, "link_lifetime": 7 * 86400, "figures": ZERO}
        await _send(ws, "b1", [_cart()])
        await app.wait_idle(within=5)
        assert await _figures(ws) == {**ZERO, "active": 1}

        async def abandoned() -> bool:
            return bool((await _figures(ws))["abandoned"] == 1)

        await until(abandoned, 15, what="the abandonment in the welcome", every=0.1)
        assert await _figures(ws) == {**ZERO, "abandoned": 1, "recovery_rate": 0.0}

        await _send(ws, "b2", [_order(456)])
        await app.wait_idle(within=15)
        recovered = await _figures(ws)
        assert recovered == {
            **ZERO,
            "abandoned": 1,
            "recovered": 1,
            "recovered_revenue": 39.0,
            "recovery_rate": 1.0,
        }
        # The same figures as /status has them.
        assert (await app.http.snapshot())["sites"]["a"]["carts"] == recovered


async def test_no_figures_for_a_site_without_carts(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    async with App(cfg) as app, client(app, token=TOKENS["b"]) as ws:
        welcome = await hello(ws)
    assert welcome["carts"] == {"enabled": False, "link_lifetime": 7 * 86400}


async def test_a_store_that_cannot_answer_leaves_the_figures_out(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    async with App(cfg) as app:

        async def broken(site: str) -> dict[str, float | None]:
            raise OSError("disk I/O error")

        app.store.cart_figures = broken  # type: ignore[method-assign]
        async with client(app) as ws:
            welcome = await hello(ws)
    assert welcome["carts"] == {"enabled": True, "link_lifetime": 7 * 86400}
