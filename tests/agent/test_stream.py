"""The websocket door against a real websockets client on loopback (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.sync.client import connect as sync_connect

from agent import cli
from agent.app import App
from agent.config import Config, load_config
from agent.core import protocol
from agent.core.protocol import ErrorCode
from agent.core.proxies import client_address, parse_network
from agent.tokens import revoke_token, token_hash
from tests.agent.doorkit import (
    HELLO,
    TOKENS,
    UNIT,
    AgentProcess,
    batch,
    client,
    config_data,
    dead_refs,
    event,
    hello,
    inbox_ids,
    make_config,
    order,
    running,
)
from tests.fakes.brevo import BrevoFake
from tests.kit import tls_trust, until, write_config


async def test_batch_is_acked_only_after_commit(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    async with running(cfg) as app:
        real_ingest = app.store.ingest
        entered, release = asyncio.Event(), asyncio.Event()

        async def held_ingest(site: str, events: Any, rejected: Any = ()) -> Any:
            entered.set()
            await release.wait()
            return await real_ingest(site, events, rejected=rejected)

        app.store.ingest = held_ingest  # type: ignore[method-assign]
        async with client(app) as ws:
            await hello(ws)
            await ws.send(batch("b1", [event("e-1", 11), event("e-2", 12)]))
            reply = asyncio.create_task(ws.recv())
            await entered.wait()
            # The commit is held: the batch is not in the store, and no ack has come.
            for _ in range(20):
                await asyncio.sleep(0)
            assert not reply.done()
            assert inbox_ids(cfg) == []
            release.set()
            ack = json.loads(await reply)
        assert ack == {"type": "ack", "batch": "b1", "accepted": ["e-1", "e-2"], "rejected": []}
        assert inbox_ids(cfg) == [("a", "e-1"), ("a", "e-2")]


async def test_store_failure_closes_1011_without_ack(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    async with running(cfg) as app:

        async def broken_ingest(site: str, events: Any, rejected: Any = ()) -> Any:
            raise sqlite3.OperationalError("disk I/O error")

        app.store.ingest = broken_ingest  # type: ignore[method-assign]
        async with client(app) as ws:
            await hello(ws)
            await ws.send(batch("b1", [event("e-1", 11)]))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
        assert inbox_ids(cfg) == []


async def test_replayed_batch_same_ack_stored_once(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    events = [
        event("e-1", 11),
        event("e-2", 12),
        {"id": "e-3", "topic": "order.updated", "payload": {"id": 3}},
    ]
    async with running(cfg) as app:
        async with client(app) as ws:
            await hello(ws)
            await ws.send(batch("b1", events))
            first = json.loads(await ws.recv())
        # A resend after a lost ack comes on a new connection.
        async with client(app) as ws:
            await hello(ws)
            await ws.send(batch("b1", events))
            second = json.loads(await ws.recv())
        assert first == second
        assert first["accepted"] == ["e-1", "e-2"]
        assert [r["id"] for r in first["rejected"]] == ["e-3"]
        assert inbox_ids(cfg) == [("a", "e-1"), ("a", "e-2")]
        assert dead_refs(cfg) == [("a", "a:e-3", "invalid_payload")]
        assert app.metrics.get("woobrevo_events_replayed_total", door="stream", site="a") == 2


async def test_rejected_events_are_dead_letters_and_acked(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    bad = [
        {"id": "r-1", "topic": "order.updated", "resource_id": 8, "payload": order(7)},
        {"id": "r-2", "topic": "widget.updated", "payload": {"id": 1}},
        {"id": "r-3", "topic": "order.updated"},
    ]
    async with running(cfg) as app, client(app) as ws:
        await hello(ws)
        await ws.send(batch("b1", [event("ok-1", 5), *bad]))
        ack = json.loads(await ws.recv())
    assert ack["accepted"] == ["ok-1"]
    assert [(r["id"], r["code"]) for r in ack["rejected"]] == [
        ("r-1", "invalid_payload"),
        ("r-2", "unknown_resource"),
        ("r-3", "invalid_payload"),
    ]
    assert "does not match resource_id" in ack["rejected"][0]["message"]
    assert [r for _, r, _ in dead_refs(cfg)] == ["a:r-1", "a:r-2", "a:r-3"]


async def test_refused_handshakes_get_401_before_upgrade(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    async with running(cfg) as app:
        for token in (None, "not-a-known-token-" + "z" * 30):
            with pytest.raises(InvalidStatus) as refused:
                async with client(app, token):
                    pass
            assert refused.value.response.status_code == 401
            assert refused.value.response.headers["WWW-Authenticate"].startswith("Bearer")
        # Not "Bearer": refused too.
        with pytest.raises(InvalidStatus) as refused:
            async with client(
                app, None, additional_headers={"Authorization": f"Basic {TOKENS['a']}"}
            ):
                pass
        assert refused.value.response.status_code == 401
        # Revoked in the store: refused on the next handshake, no restart.
        async with client(app) as ws:
            await hello(ws)
        records = {r.sha256: r for r in await _all(app)}
        await revoke_token(app.store, records[token_hash(TOKENS["a"])], 1.0)
        with pytest.raises(InvalidStatus) as refused:
            async with client(app):
                pass
        assert refused.value.response.status_code == 401
        # Site b is unaffected.
        async with client(app, TOKENS["b"]) as ws:
            assert (await hello(ws))["site"] == "b"


async def test_revoking_a_token_closes_its_open_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.doors import stream

    monkeypatch.setattr(stream, "TOKEN_RECHECK", 0.1)
    async with running(make_config(tmp_path)) as app:
        async with client(app) as a, client(app, TOKENS["b"]) as b:
            await hello(a)
            await hello(b)
            await a.send(batch("before", [event("r-1", 501)]))
            assert json.loads(await a.recv())["accepted"] == ["r-1"]
            records = {r.sha256: r for r in await _all(app)}
            await revoke_token(app.store, records[token_hash(TOKENS["a"])], 1.0)
            async with asyncio.timeout(5 * UNIT):
                err = json.loads(await a.recv())
                with pytest.raises(ConnectionClosed) as closed:
                    await a.recv()
            assert err["type"] == "error" and err["code"] == "token_revoked"
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            # Site b's connection stays open and keeps working.
            await b.send(batch("still", [event("r-2", 502)]))
            assert json.loads(await b.recv())["accepted"] == ["r-2"]
        assert inbox_ids(app.cfg) == [("a", "r-1"), ("b", "r-2")]
        assert app.metrics.get("woobrevo_stream_refused_total", reason="revoked") == 1


async def _all(app: App) -> list[Any]:
    from agent.tokens import all_tokens

    return await all_tokens(app.cfg, app.store)


async def test_other_paths_404_and_throttle_429(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, max_failed_handshakes_per_minute=3)
    async with running(cfg) as app:
        from websockets.asyncio.client import connect

        with pytest.raises(InvalidStatus) as nf:
            async with connect(f"ws://127.0.0.1:{app.stream.port}/v2/other"):
                pass
        assert nf.value.response.status_code == 404
        for _ in range(3):
            with pytest.raises(InvalidStatus) as refused:
                async with client(app, "wrong-" + "w" * 40):
                    pass
            assert refused.value.response.status_code == 401
        # Throttled now, even with a good token: a guesser learns nothing more from this address.
        with pytest.raises(InvalidStatus) as throttled:
            async with client(app):
                pass
        assert throttled.value.response.status_code == 429
        assert 1 <= int(throttled.value.response.headers["Retry-After"]) <= 60
        assert app.metrics.get("woobrevo_stream_refused_total", reason="throttled") == 1


async def test_behind_a_trusted_proxy_the_throttle_counts_each_client(tmp_path: Path) -> None:
    """Behind a reverse proxy every handshake comes from the proxy: with the proxy in
    `agent.trusted_proxies`, the throttle counts the X-Forwarded-For client, so one site with a
    stale token does not get the others refused. From anyone else the header is ignored."""
    data = config_data(tmp_path, max_failed_handshakes_per_minute=2)
    data["agent"]["trusted_proxies"] = ["127.0.0.0/8", "10.0.0.0/8"]
    async with running(Config.model_validate(data)) as app:
        stale = {"X-Forwarded-For": "198.51.100.7, 10.1.2.3"}  # client, then an inner proxy
        for _ in range(2):
            with pytest.raises(InvalidStatus) as refused:
                async with client(app, "stale-" + "s" * 40, additional_headers=stale):
                    pass
            assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as throttled:
            async with client(app, additional_headers=stale):
                pass
        assert throttled.value.response.status_code == 429
        # Another store behind the same proxy is not held back, and /status shows its address.
        async with client(app, additional_headers={"X-Forwarded-For": "203.0.113.9"}) as ws:
            await hello(ws)
            assert app.status.site("a").stream.remote == "203.0.113.9"

    # Without trusted proxies the header is the client's own word: ignored.
    data = config_data(tmp_path / "direct", max_failed_handshakes_per_minute=2)
    async with running(Config.model_validate(data)) as app:
        for n in range(2):
            spoof = {"X-Forwarded-For": f"192.0.2.{n}"}
            with pytest.raises(InvalidStatus):
                async with client(app, "wrong-" + "w" * 40, additional_headers=spoof):
                    pass
        with pytest.raises(InvalidStatus) as throttled:
            async with client(app, additional_headers={"X-Forwarded-For": "192.0.2.99"}):
                pass
        assert throttled.value.response.status_code == 429


def test_client_address_reads_forwarded_for_only_from_trusted_proxies() -> None:
    nets = [parse_network("127.0.0.1"), parse_network("10.0.0.0/8"), parse_network("fd00::/8")]
    assert client_address("203.0.113.1", ["198.51.100.7"], nets) == "203.0.113.1"
    assert client_address("127.0.0.1", [], nets) == "127.0.0.1"
    assert client_address("127.0.0.1", ["198.51.100.7"], nets) == "198.51.100.7"
    # Right to left over every header: the first hop that is not a trusted proxy.
    assert client_address("127.0.0.1", ["6.6.6.6, 198.51.100.7", "10.0.0.2"], nets) == (
        "198.51.100.7"
    )
    assert client_address("fd00::1", ["[2001:db8::5]:4431"], nets) == "2001:db8::5"
    assert client_address("127.0.0.1", ["198.51.100.7:5555"], nets) == "198.51.100.7"
    assert client_address("::ffff:127.0.0.1", ["::ffff:198.51.100.7"], nets) == "198.51.100.7"
    # Garbage stops the walk at the last address that was one.
    assert client_address("127.0.0.1", ["198.51.100.7, unknown, 10.0.0.2"], nets) == "10.0.0.2"
    assert client_address("127.0.0.1", ["198.51.100.7"], []) == "127.0.0.1"
    with pytest.raises(ValueError, match="expected an IP address or network"):
        parse_network("proxy.local")


async def test_a_token_writes_only_its_own_site(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    async with running(cfg) as app:
        async with client(app, TOKENS["a"]) as ws:
            welcome = await hello(ws)
            assert welcome["site"] == "a"
            # Whatever the message says, it lands in site a.
            msg = json.loads(batch("b1", [event("x-1", 21)]))
            msg["site"] = "b"
            msg["events"][0]["site"] = "b"
            await ws.send(json.dumps(msg))
            assert json.loads(await ws.recv())["accepted"] == ["x-1"]
        async with client(app, TOKENS["b"]) as ws:
            assert (await hello(ws))["site"] == "b"
            await ws.send(batch("b1", [event("x-1", 22)]))
            assert json.loads(await ws.recv())["accepted"] == ["x-1"]
    # Same event id in both sites: two rows, each in its own site.
    assert inbox_ids(cfg) == [("a", "x-1"), ("b", "x-1")]


async def test_oversized_message_closes_1009_nothing_stored(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, max_message_bytes=4096)
    async with running(cfg) as app:
        async with client(app) as ws:
            welcome = await hello(ws)
            assert welcome["max_message_bytes"] == 4096
            big = batch("b1", [event("big-1", 5), event("big-2", 6)])
            assert len(big) > 4096
            await ws.send(big)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert inbox_ids(cfg) == []


MALFORMED: list[tuple[str, Any, ErrorCode, int]] = [
    ("not json", "{nope", ErrorCode.BAD_JSON, 1008),
    ("array", "[1, 2]", ErrorCode.BAD_JSON, 1008),
    ("unknown type", {"type": "subscribe"}, ErrorCode.BAD_MESSAGE, 1008),
    ("no type", {"batch": "b"}, ErrorCode.BAD_MESSAGE, 1008),
    ("no batch", {"type": "events", "events": [event("m-1", 1)]}, ErrorCode.BAD_MESSAGE, 1008),
    ("empty events", {"type": "events", "batch": "b", "events": []}, ErrorCode.BAD_MESSAGE, 1008),
    ("events not a list", {"type": "events", "batch": "b", "events": {}}, ErrorCode.BAD_MESSAGE, 1008),
    ("event without id", {"type": "events", "batch": "b", "events": [event("m-1", 1), {"topic": "order.updated"}]},
     ErrorCode.BAD_MESSAGE, 1008),
    ("bad id", {"type": "events", "batch": "b", "events": [event("m 1", 1)]}, ErrorCode.BAD_MESSAGE, 1008),
    ("repeated id", {"type": "events", "batch": "b", "events": [event("m-1", 1), event("m-1", 2)]},
     ErrorCode.BAD_MESSAGE, 1008),
    ("too many", {"type": "events", "batch": "b", "events": [event(f"m-{i}", i + 1) for i in range(4)]},
     ErrorCode.BATCH_TOO_LARGE, 1008),
    ("wrong protocol", {**HELLO, "protocol": 2}, ErrorCode.PROTOCOL_VERSION, 1008),
    ("hello missing wc_version", {k: v for k, v in HELLO.items() if k != "wc_version"},
     ErrorCode.BAD_MESSAGE, 1008),
    ("binary", b"\x00\x01", ErrorCode.BINARY_FRAME, 1003),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "message", "code", "close"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
async def test_malformed_message_gets_error_then_close(
    tmp_path: Path, name: str, message: Any, code: ErrorCode, close: int
) -> None:
    cfg = make_config(tmp_path, max_batch=3)
    async with running(cfg) as app, client(app) as ws:
        await hello(ws)
        await ws.send(message if isinstance(message, str | bytes) else json.dumps(message))
        error = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert error["type"] == "error" and error["code"] == code.value, error
    assert error["message"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == close
    assert inbox_ids(cfg) == [] and dead_refs(cfg) == []


async def test_events_before_hello_is_an_error(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    async with running(cfg) as app, client(app) as ws:
        await ws.send(batch("b1", [event("e-1", 1)]))
        error = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert error["code"] == "hello_required"
    assert inbox_ids(cfg) == []


async def test_hello_is_a_heartbeat_and_feeds_status(tmp_path: Path) -> None:
    now = [1_000_000.0]
    cfg = make_config(tmp_path)
    async with App(cfg, clock=lambda: now[0]) as app:
        assert app.stream.last_seen("a") is None
        async with client(app) as ws:
            welcome = await hello(ws)
            assert welcome == {
                "type": "welcome",
                "site": "a",
                "protocol": 1,
                "max_batch": 100,
                "max_message_bytes": 8 * 1024 * 1024,
                "watch_meta": {
                    "customer": ["loyalty_points"],
                    "order": [],
                    "product": [],
                    "coupon": [],
                },
                "server_time": "1970-01-12T13:46:40Z",
                "carts": {
                    "enabled": True,
                    "link_lifetime": 7 * 86400,
                    "figures": {
                        "active": 0,
                        "abandoned": 0,
                        "recovered": 0,
                        "expired": 0,
                        "converted": 0,
                        "emptied": 0,
                        "recovered_revenue": 0.0,
                        "recovery_rate": None,
                    },
                },
                "consent": {"mode": "implied"},
            }
            link = app.status.site("a").stream
            assert link.connections == 1
            assert (link.site_url, link.wc_version, link.wp_version) == (
                "https://shop.example/",
                "10.0.2",
                "6.8.8",
            )
            assert app.stream.last_seen("a") == 1_000_000.0
            assert app.stream.connected("a")
            now[0] += 60
            await ws.send(json.dumps(HELLO))  # the heartbeat: each hello gets a welcome
            assert json.loads(await ws.recv())["type"] == "welcome"
            assert app.stream.last_seen("a") == 1_000_060.0
            now[0] += cfg.agent.stream.stale_after + 1
            assert not app.stream.connected("a")
            # An `error` from the plugin is logged, not answered; the connection stays.
            await ws.send(json.dumps({"type": "error", "code": "x", "message": "plugin trouble"}))
            await ws.send(json.dumps(HELLO))
            assert json.loads(await ws.recv())["type"] == "welcome"
        await until(lambda: app.status.site("a").stream.connections == 0)
        assert app.stream.last_seen("b") is None


async def test_no_hello_in_time_and_idle_timeout(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path, handshake_timeout=f"{int(300 * UNIT)}ms", idle_timeout=f"{int(300 * UNIT)}ms"
    )
    async with running(cfg) as app:
        async with client(app) as ws:
            error = json.loads(await ws.recv())  # sent nothing: the agent gives up on hello
            assert error["code"] == "hello_required"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        async with client(app) as ws:
            await hello(ws)
            await ws.wait_closed()  # idle after the hello: a normal close
            assert ws.close_code == 1000 and ws.close_reason == "idle"


async def test_keepalive_closes_a_peer_that_stops_answering_pings(tmp_path: Path) -> None:
    cfg = make_config(
        tmp_path, ping_interval=f"{int(100 * UNIT)}ms", ping_timeout=f"{int(200 * UNIT)}ms"
    )
    async with running(cfg) as app:
        async with client(app, ping_interval=None) as ws:
            await hello(ws)
            ws.transport.pause_reading()  # pings pile up unanswered
            await until(lambda: app.status.site("a").stream.connections == 0)
            ws.transport.resume_reading()
            await ws.wait_closed()
        assert ws.close_code == 1011


async def test_shutdown_closes_1001(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    async with running(cfg) as app, client(app) as ws:
        await hello(ws)
        await app.stream.close()
        await ws.wait_closed()
    assert ws.close_code == 1001


async def test_listens_on_ipv6_loopback(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    data["agent"]["listen"] = {"stream": "[::1]:0", "http": "[::1]:0"}
    async with running(Config.model_validate(data)) as app:
        async with connect(
            f"ws://[::1]:{app.stream.port}/v1/stream",
            additional_headers={"Authorization": f"Bearer {TOKENS['a']}"},
        ) as ws:
            assert (await hello(ws))["site"] == "a"
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://[::1]:{app.http.port}/healthz") as r,
        ):
            assert r.status == 200


async def test_tls_with_agent_certificate(tmp_path: Path) -> None:
    data = config_data(tmp_path, tls=True)
    trust = tls_trust(data)
    async with running(Config.model_validate(data)) as app:
        async with client(app, ssl=trust) as ws:
            assert (await hello(ws))["site"] == "a"
        # Plain ws:// to a TLS port never gets an upgrade.
        with pytest.raises((OSError, InvalidStatus, InvalidMessage, TimeoutError)):
            async with client(app, open_timeout=2 * UNIT):
                pass


def test_tls_files_that_do_not_load_are_named_by_check_and_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = config_data(tmp_path)
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    data["agent"]["tls"] = {"cert": str(tmp_path / "cert.pem"), "key": str(tmp_path / "no.pem")}
    path = write_config(tmp_path / "agent.yaml", data)
    for command in ("check", "run"):
        assert cli.main([command, "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"{path}: invalid configuration" in err
        assert f"agent.tls: cannot load certificate {tmp_path / 'cert.pem'}" in err
        assert "expected PEM files" in err


def test_watch_meta_reads_meta_paths() -> None:
    mapping = {"email": "email", "meta_data.loyalty_points": "LP", "meta_data._tier.level": "TIER"}
    assert protocol.watch_meta(mapping, {"meta_data._gift_note": "NOTE"}) == {
        "customer": ["_tier", "loyalty_points"],
        "order": ["_gift_note"],
        "product": [],
        "coupon": [],
    }


def test_bearer_token_parsing() -> None:
    assert protocol.bearer_token("Bearer abc-_.~+/=") == "abc-_.~+/="
    assert protocol.bearer_token("bearer  abc") == "abc"
    for header in (None, "", "Bearer", "Basic abc", "Bearer a b", "Bearer é"):
        assert protocol.bearer_token(header) is None


def test_throttle_window_and_memory_bound() -> None:
    t = protocol.HandshakeThrottle(limit=2, window=60.0, max_addresses=2)
    t.failure("1.1.1.1", 0.0)
    assert t.retry_after("1.1.1.1", 1.0) is None
    t.failure("1.1.1.1", 10.0)
    assert t.retry_after("1.1.1.1", 11.0) == 49.0
    assert t.retry_after("1.1.1.1", 60.5) is None  # the first failure left the window
    t.failure("2.2.2.2", 1.0)
    t.failure("3.3.3.3", 1.0)  # a third address evicts the least recently failed
    assert len(t._fails) == 2


# -- fuzz ---------------------------------------------------------------------------------


class _Background:
    """The real App on its own loop in a thread, so that a synchronous hypothesis test can
    drive it with the synchronous websockets client."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.ready: Future[App] = Future()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with App(self.cfg) as app:
                self.ready.set_result(app)
                await self._stop.wait()
        except BaseException as exc:
            if not self.ready.done():
                self.ready.set_exception(exc)
            raise

    def __enter__(self) -> App:
        self._thread.start()
        return self.ready.result(timeout=10 * UNIT)

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10 * UNIT)


@pytest.fixture(scope="module")
def fuzz_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, Config]]:
    cfg = make_config(tmp_path_factory.mktemp("fuzz"), max_batch=5, max_message_bytes=64 * 1024)
    with _Background(cfg) as app:
        yield app, cfg


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_ids = (
    st.text("abc-1:.", min_size=1, max_size=6) | st.sampled_from(["", " ", "é", "a" * 129]) | _json
)
_topics = (
    st.sampled_from(
        [
            "order.updated",
            "order.deleted",
            "customer.created",
            "product.updated",
            "coupon.restored",
            "order.nope",
            "widget.created",
            "order",
        ]
    )
    | _json
)
_payloads = (
    st.sampled_from(
        [order(5), {"id": 5}, {"id": 5, "email": "a@b.c", "date_modified_gmt": "x"}, {"id": -1}, {}]
    )
    | _json
)
_events = (
    st.fixed_dictionaries(
        {"id": _ids, "topic": _topics, "payload": _payloads},
        optional={
            "resource_id": st.integers(-2, 7) | _json,
            "resource": st.sampled_from(["order", "variation", "x"]),
            "occurred_at": st.sampled_from(["2026-11-27T06:29:58Z", "yesterday"]) | _json,
            "extra": _json,
        },
    )
    | _json
)
_messages = (
    st.fixed_dictionaries(
        {"type": st.just("events"), "batch": st.text(max_size=10) | _json,
         "events": st.lists(_events, max_size=7) | _json}
    )
    | st.fixed_dictionaries({"type": st.sampled_from(["hello", "error", "ack", "welcome", "?"]) | _json},
                            optional={"protocol": st.sampled_from([1, 2, "1"]), "code": _json,
                                      "site_url": _json, "blog_id": _json})
    | _json
)  # fmt: skip
_frames = _messages.map(lambda m: json.dumps(m)) | st.text(max_size=50) | st.binary(max_size=50)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frame=_frames)
def test_fuzzed_messages_never_crash_and_never_ack_unstored(
    fuzz_agent: tuple[App, Config], frame: str | bytes
) -> None:
    app, cfg = fuzz_agent
    replies: list[dict[str, Any]] = []
    url = f"ws://127.0.0.1:{app.stream.port}/v1/stream"
    with sync_connect(
        url,
        additional_headers={"Authorization": f"Bearer {TOKENS['a']}"},
        compression=None,
        open_timeout=5 * UNIT,
    ) as ws:
        ws.send(json.dumps(HELLO))
        assert json.loads(ws.recv(timeout=5 * UNIT))["type"] == "welcome"
        ws.send(frame)
        try:
            ws.send(json.dumps(HELLO))  # a marker: the reply to this ends the exchange
            while True:
                reply = json.loads(ws.recv(timeout=5 * UNIT))
                if reply["type"] == "welcome":
                    break
                replies.append(reply)
        except ConnectionClosed:
            pass
    stored = set(inbox_ids(cfg, "a"))
    dead = {ref for site, ref, _ in dead_refs(cfg) if site == "a"}
    sent = json.loads(frame) if isinstance(frame, str) and _is_json(frame) else None
    for reply in replies:
        assert reply["type"] in ("ack", "error"), reply
        if reply["type"] == "ack":
            assert isinstance(sent, dict)
            ids = [e["id"] for e in sent["events"]]
            assert reply["batch"] == sent["batch"]
            assert sorted(reply["accepted"] + [r["id"] for r in reply["rejected"]]) == sorted(ids)
            assert all(("a", i) in stored for i in reply["accepted"])
            assert all(f"a:{r['id']}" in dead for r in reply["rejected"])
    # The server is still there and still serves.
    with sync_connect(
        url,
        additional_headers={"Authorization": f"Bearer {TOKENS['a']}"},
        compression=None,
        open_timeout=5 * UNIT,
    ) as ws:
        ws.send(json.dumps(HELLO))
        assert json.loads(ws.recv(timeout=5 * UNIT))["type"] == "welcome"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# -- crash between commit and ack (a real `woobrevo-agent run`, killed with SIGKILL) --------


@pytest.mark.slow
async def test_killed_between_commit_and_ack_resend_is_stored_and_forwarded_once(
    tmp_path: Path,
) -> None:
    async with BrevoFake() as fake:
        data = config_data(tmp_path)
        data["brevo"] = {"api_key": fake.api_key, "base_url": fake.base_url, "dry_run": False,
                         "max_backoff": "2s"}  # fmt: skip
        path = write_config(tmp_path / "agent.yaml", data)
        cfg = load_config(path)
        payload = order(4242, "2026-11-27T06:20:00")
        message = batch("b-crash", [{**event("crash-1", 4242), "payload": payload}])
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}

        async with AgentProcess(path, {**env, "WOOBREVO_TEST_CRASH_AFTER_COMMIT": "1"}) as agent:
            async with agent.connect() as ws:
                await hello(ws)
                await ws.send(message)
                with pytest.raises(ConnectionClosed):
                    await ws.recv()  # no ack: the agent died right after the commit
            assert agent.proc is not None
            assert await agent.proc.wait() == -signal.SIGKILL
        assert inbox_ids(cfg) == [("a", "crash-1")]

        async with AgentProcess(path, env) as agent:
            async with agent.connect() as ws:
                await hello(ws)
                await ws.send(message)  # the plugin resends the unacked batch
                ack = json.loads(await ws.recv())
            assert ack == {
                "type": "ack",
                "batch": "b-crash",
                "accepted": ["crash-1"],
                "rejected": [],
            }

            async def idle() -> bool:
                backlog = (await agent.status())["sites"]["a"]["backlog"]
                return "a-4242" in fake.orders and backlog == {"inbox_depth": 0, "pending_jobs": 0,
                                                              "dead_letters": 0}  # fmt: skip

            await until(idle, 30, every=0.05)
        assert inbox_ids(cfg) == [("a", "crash-1")]
        writes = Counter((r.method, r.path, json.dumps(r.json, sort_keys=True)) for r in fake.requests
                         if r.status is not None and r.status < 300 and r.method == "POST")  # fmt: skip
        orders = [
            r for r in fake.requests if r.path == "/orders/status" and r.json["id"] == "a-4242"
        ]
        assert len(orders) == 1
        assert all(n == 1 for n in writes.values()), writes
        fake.assert_no_spec_violations()


# -- the other test-only faults of `woobrevo-agent run` (agent/cli/main.py _stream_test_hooks) ---


def _faulty_agent(tmp_path: Path, fault: str, value: str) -> tuple[Config, AgentProcess]:
    """The config and a `woobrevo-agent run` with one WOOBREVO_TEST_* fault set."""
    path = write_config(tmp_path / "agent.yaml", config_data(tmp_path))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", f"WOOBREVO_TEST_{fault}": value}
    return load_config(path), AgentProcess(path, env)


async def _recv_json(ws: Any, seconds: float) -> dict[str, Any]:
    async with asyncio.timeout(seconds * UNIT):
        reply: dict[str, Any] = json.loads(await ws.recv())
    return reply


@pytest.mark.slow
async def test_ack_delay_holds_each_ack_after_its_commit_and_status_shows_the_pipeline(
    tmp_path: Path,
) -> None:
    cfg, process = _faulty_agent(tmp_path, "ACK_DELAY", "1.0")
    async with process as agent:
        assert any("WOOBREVO_TEST_ACK_DELAY=1 (test only)" in line for line in agent.log)
        async with agent.connect() as ws:
            await hello(ws)
            loop = asyncio.get_running_loop()
            sent = loop.time()
            for n in range(1, 6):  # five batches at once: pipelined
                await ws.send(batch(f"b{n}", [event(f"d-{n}", 100 + n)]))
            # The door commits four at once (PIPELINE_DEPTH), well before the first ack leaves.
            await until(lambda: len(inbox_ids(cfg, "a")) == 4, 0.8)
            first = await _recv_json(ws, 5)
            assert loop.time() - sent >= 1.0
            acks = [first] + [await _recv_json(ws, 5) for _ in range(4)]
            assert [a["batch"] for a in acks] == ["b1", "b2", "b3", "b4", "b5"]  # still in order
            assert [a["accepted"] for a in acks] == [[f"d-{n}"] for n in range(1, 6)]
            # Received and not yet acked when b5 came: all five (the fifth waited its turn).
            assert (await agent.status())["sites"]["a"]["batches_in_flight_max"] == 5
        # A peer that waits for each ack keeps one batch in flight; the next connection says so.
        async with agent.connect() as ws:
            await hello(ws)
            for n in range(6, 8):
                await ws.send(batch(f"b{n}", [event(f"d-{n}", 100 + n)]))
                assert (await _recv_json(ws, 5))["batch"] == f"b{n}"
            assert (await agent.status())["sites"]["a"]["batches_in_flight_max"] == 1


@pytest.mark.slow
async def test_fail_store_batch_closes_1011_after_acking_the_batches_before_it(
    tmp_path: Path,
) -> None:
    cfg, process = _faulty_agent(tmp_path, "FAIL_STORE_BATCH", "2")
    messages = [
        batch(f"b{n}", [event(f"f-{n}-{i}", 10 * n + i) for i in (1, 2)]) for n in (1, 2, 3)
    ]
    async with process as agent:
        async with agent.connect() as ws:
            await hello(ws)
            for message in messages:
                await ws.send(message)
            first = await _recv_json(ws, 5)
            with pytest.raises(ConnectionClosed) as closed:
                await _recv_json(ws, 5)
        # The batch before the failing one is acked first; the failing one is not stored.
        assert first["batch"] == "b1"
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
            1011,
            "store failed; resend later",
        )
        stored = {eid for _, eid in inbox_ids(cfg, "a")}
        assert {"f-1-1", "f-1-2"} <= stored
        assert not stored & {"f-2-1", "f-2-2"}
        assert any("batch b2 could not be stored" in line for line in agent.log)
        # Only that one batch fails: the resend of b2 and b3 is stored, each event once.
        async with agent.connect() as ws:
            await hello(ws)
            for message in messages[1:]:
                await ws.send(message)
            assert [(await _recv_json(ws, 5))["batch"] for _ in (2, 3)] == ["b2", "b3"]
    assert sorted(eid for _, eid in inbox_ids(cfg, "a")) == [
        f"f-{n}-{i}" for n in (1, 2, 3) for i in (1, 2)
    ]
