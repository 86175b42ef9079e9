"""/healthz, /readyz, /metrics, /status on a real aiohttp server (port 0, read back)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import InvalidStatus

from agent.app import App
from agent.config import Config
from agent.core.webhooks import sign
from agent.tokens import token_hash
from tests.agent.doorkit import (
    DOCS_EXAMPLES,
    SECRETS,
    TOKENS,
    batch,
    client,
    event,
    hello,
    make_config,
    running,
)
from tests.kit import until

BREVO_KEY = "xkeysib-" + "k" * 64
WC_KEY, WC_SECRET = "ck_" + "1" * 40, "cs_" + "2" * 40


def secret_config(tmp_path: Path) -> Config:
    brevo = {"api_key": BREVO_KEY, "dry_run": True}
    woo = dict(store_url="https://shop.example", consumer_key=WC_KEY, consumer_secret=WC_SECRET)
    return make_config(tmp_path, brevo=brevo, woocommerce=woo)


async def get(app: App, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{app.http.port}{path}") as r:
        return r.status, r.headers["Content-Type"], await r.text()


async def test_health_and_readiness(tmp_path: Path) -> None:
    async with running(secret_config(tmp_path)) as app:
        assert app.http.port != 0
        assert (await get(app, "/healthz"))[0] == 200
        status, _, text = await get(app, "/readyz")
        assert status == 200
        assert json.loads(text) == {
            "ready": True,
            "checks": {"store": "ok", "brevo": "ok"},
            # Which store, and this replica's name (PostgreSQL: tests/agent/test_pg_app.py).
            "store": {"backend": "sqlite", "address": str(app.cfg.agent.store_path)},
            "replica": app.cfg.agent.replica,
        }
        # A damaged store, a full disk: tests/agent/test_store_health.py.


PROM_LINE = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$')


async def test_metrics_count_doors_in_prometheus_format(tmp_path: Path) -> None:
    async with running(secret_config(tmp_path)) as app:
        async with client(app) as ws:
            await hello(ws)
            await ws.send(
                batch(
                    "b1",
                    [
                        event("e-1", 1),
                        event("e-2", 2),
                        {"id": "e-3", "topic": "order.updated", "payload": {"id": 3}},
                    ],
                )
            )
            await ws.recv()
            await ws.send(batch("b1", [event("e-1", 1)]))
            await ws.recv()
        await until(lambda: app.status.site("a").stream.connections == 0)
        with pytest.raises(InvalidStatus):
            async with client(app, "wrong-" + "w" * 40):
                pass
        body = (DOCS_EXAMPLES / "webhook_delivery_order_updated.body.json").read_bytes()
        headers = {
            "Content-Type": "application/json",
            "X-WC-Webhook-Topic": "order.updated",
            "X-WC-Webhook-Signature": sign(body, SECRETS["a"]),
        }
        async with aiohttp.ClientSession() as s:
            url = f"http://127.0.0.1:{app.http.port}/webhooks/woocommerce/a"
            async with s.post(url, data=body, headers=headers) as r:
                assert r.status == 200
        status, ctype, text = await get(app, "/metrics")
    assert status == 200 and ctype.startswith("text/plain") and "version=0.0.4" in ctype
    lines = text.splitlines()
    for line in lines:
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or PROM_LINE.match(line), (
            line
        )
    for series in (
        'woobrevo_events_in_total{door="stream",site="a"} 3',
        'woobrevo_events_in_total{door="webhook",site="a"} 1',
        'woobrevo_events_replayed_total{door="stream",site="a"} 1',
        'woobrevo_rejected_total{door="stream",site="a"} 1',
        'woobrevo_acks_total{site="a"} 2',
        'woobrevo_stream_refused_total{reason="bad_token"} 1',
        'woobrevo_webhook_requests_total{outcome="stored",site="a"} 1',
        'woobrevo_stream_connections{site="a"} 0',
        'woobrevo_dead_letters_open{site="a"} 1',
        'woobrevo_site_mode{mode="stream",site="b"} 1',
    ):
        assert series in lines, series
    assert any(line.startswith('woobrevo_inbox_depth{site="a"}') for line in lines)
    assert any(line.startswith('woobrevo_pending_jobs{site="a"}') for line in lines)
    assert "# TYPE woobrevo_events_in_total counter" in lines


async def test_status_per_site(tmp_path: Path) -> None:
    now = [2_000_000.0]
    cfg = secret_config(tmp_path)
    async with App(cfg, clock=lambda: now[0]) as app:
        async with client(app) as ws:
            await hello(ws)
            await ws.send(batch("b1", [event("e-1", 1)]))
            await ws.recv()
            now[0] += 5
            _, _, text = await get(app, "/status")
        doc = json.loads(text)
        a, b = doc["sites"]["a"], doc["sites"]["b"]
        assert a["connected"] is True and a["connections"] == 1
        assert a["last_seen"] == 2_000_000.0 and a["last_seen_age"] == 5.0
        assert (a["site_url"], a["plugin_version"], a["wc_version"]) == (
            "https://shop.example/",
            "0.1.0",
            "10.0.2",
        )
        assert a["mode"] == "stream"
        assert set(a["backlog"]) == {"inbox_depth", "pending_jobs", "dead_letters"}
        assert b["connected"] is False and b["last_seen"] is None and b["connections"] == 0
        # Silent past stale_after: no longer connected, whatever the socket says.
        now[0] += cfg.agent.stream.stale_after
        _, _, text = await get(app, "/status")
        assert json.loads(text)["sites"]["a"]["connected"] is False
        # The poller's word on the mode wins once it speaks (issue 4).
        app.status.site("a").mode = "polling"
        _, _, text = await get(app, "/status")
        assert json.loads(text)["sites"]["a"]["mode"] == "polling"


async def test_no_secret_in_any_endpoint(tmp_path: Path) -> None:
    cfg = secret_config(tmp_path)
    secrets: list[Any] = [BREVO_KEY, WC_KEY, WC_SECRET, *SECRETS.values(), *TOKENS.values()]
    secrets += [token_hash(t) for t in TOKENS.values()]
    async with running(cfg) as app:
        async with client(app) as ws:
            await hello(ws)
        texts = [(await get(app, p))[2] for p in ("/healthz", "/readyz", "/metrics", "/status")]
    for text in texts:
        for secret in secrets:
            assert secret not in text
            assert secret[:12] not in text


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()


@pytest.mark.attack(
    "fuzz: Expect with a non-UTF-8 value was a 500; malformed requests logged tracebacks"
)
async def test_unrouted_paths_odd_expects_and_malformed_requests(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(secret_config(tmp_path)) as app:
        port = app.http.port
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/webhooks/woocommerce/a") as r:
                assert r.status == 405 and r.headers["Allow"] == "POST"
            async with s.get(f"http://127.0.0.1:{port}/nowhere") as r:
                assert r.status == 404
            async with s.head(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200
        # An Expect value aiohttp's own handler could not echo: 417, no 500.
        for path in (b"/healthz", b"/nowhere", b"/webhooks/woocommerce/a"):
            answer = await _raw(port, b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                                b"Expect: \xbf\r\nContent-Length: 0\r\n\r\n")  # fmt: skip
            assert answer.startswith(b"HTTP/1.1 417"), answer[:80]
        # 100-continue still works on a door.
        answer = await _raw(port, b"POST /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                            b"Content-Length: 0\r\n\r\n")  # fmt: skip
        assert answer.startswith(b"HTTP/1.1 100 Continue"), answer[:80]
        # Malformed requests: refused 400, and at most one summary line, no traceback.
        caplog.clear()
        for _ in range(20):
            answer = await _raw(port, b"POST * HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            assert answer.split(b" ")[1] == b"400", answer[:80]
        assert (await get(app, "/healthz"))[0] == 200
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(server) <= 1 and all(r.exc_info is None for r in server), server
    assert all(r.levelno == logging.WARNING for r in server)
