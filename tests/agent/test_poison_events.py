"""Issue 16, finding 3: a poison event (one the store cannot write) is refused alone.

Before the fix an event whose payload nested past orjson's 254 levels parsed, then failed its
batch's commit: the stream closed 1011 on every resend and nothing behind it shipped; the
webhook door answered 503 to it, to integers past 64 bits and to a lone `\\ud800`. Now each
door refuses that event alone, with its reason, into dead letters, and the rest is stored and
acked (agent/core/storable.py, docs/protocol.md "Limits").
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.app import App
from agent.config import Config
from agent.core.events import Action, Door, Event, EventId, Rejection, Resource, parse_event
from agent.core.storable import MAX_DEPTH, keepable, loads, problem
from agent.core.webhooks import sign
from agent.store.sqlite import SqliteStore
from tests import kit
from tests.agent.doorkit import (
    HELLO,
    SECRETS,
    batch,
    client,
    dead_refs,
    event,
    hello,
    inbox_ids,
    make_config,
    order,
    running,
)
from tests.fakes.brevo import BrevoFake
from tests.fakes.woocommerce import WooFake
from tests.kit import UNIT, until

MARK = '"__poison__"'


def _deep(levels: int) -> str:
    """`levels` arrays nested in each other, as JSON text (json.dumps would recurse)."""
    return "[" * levels + "1" + "]" * levels


# Each poison: the JSON text of a meta value, and the rejection code it must get.
POISONS: dict[str, tuple[str, str]] = {
    "deep-300": (_deep(300), "too_deep"),
    "deep-1000": (_deep(1000), "too_deep"),
    "deep-100000": (_deep(100_000), "too_deep"),
    "int-2**64": (str(2**64), "integer_out_of_range"),
    "int--2**63-1": (str(-(2**63) - 1), "integer_out_of_range"),
    "int-5000-digits": ("9" * 5000, "integer_out_of_range"),
    "lone-surrogate": ('"caf\\ud800"', "invalid_string"),
    "NaN": ("NaN", "non_finite_number"),
    "1e400": ("1e400", "non_finite_number"),
}


def _poisoned(raw_event: dict[str, Any], poison: str) -> str:
    """The event's JSON text with `poison` as a meta value of its payload."""
    payload = raw_event["payload"]
    payload["meta_data"] = [*payload.get("meta_data", []), {"key": "x", "value": "__poison__"}]
    text = json.dumps(raw_event)
    assert text.count(MARK) == 1
    return text.replace(MARK, poison)


def _batch_text(name: str, events: list[str]) -> str:
    return f'{{"type": "events", "batch": "{name}", "events": [{", ".join(events)}]}}'


def _dead(cfg: Config) -> list[tuple[str, str, str, str]]:
    """(ref, code, message, body) of every event dead letter."""
    db = sqlite3.connect(cfg.agent.store_path)
    try:
        return db.execute(
            "SELECT ref, code, message, body FROM dead_letters WHERE origin='event' ORDER BY id"
        ).fetchall()
    finally:
        db.close()


# -- the stream door -------------------------------------------------------------------------


@pytest.mark.attack("3: one poison event in a stream batch of 100 no longer fails the batch")
@pytest.mark.parametrize("kind", list(POISONS))
async def test_stream_batch_with_one_poison_event(tmp_path: Path, kind: str) -> None:
    poison, code = POISONS[kind]
    cfg = make_config(tmp_path)
    ids = [f"p-{i}" for i in range(100)]
    texts = [json.dumps(event(eid, 1000 + i)) for i, eid in enumerate(ids)]
    texts[37] = _poisoned(event(ids[37], 1037), poison)
    frame = _batch_text("b-poison", texts)
    async with running(cfg) as app, client(app) as ws:
        await hello(ws)
        await ws.send(frame)
        ack = json.loads(await ws.recv())
        good = [eid for eid in ids if eid != "p-37"]
        assert ack["type"] == "ack" and ack["batch"] == "b-poison"
        assert ack["accepted"] == good
        [rejected] = ack["rejected"]
        assert (rejected["id"], rejected["code"]) == ("p-37", code), rejected
        assert rejected["message"].startswith("events[37]: payload.meta_data[")
        # The next batch flows on the same connection.
        await ws.send(batch("b-next", [event("n-1", 2001), event("n-2", 2002)]))
        assert json.loads(await ws.recv())["accepted"] == ["n-1", "n-2"]
        # The plugin resends the poison batch (a lost ack): the same answer, nothing doubled.
        await ws.send(frame)
        again = json.loads(await ws.recv())
        assert (again["accepted"], again["rejected"]) == (ack["accepted"], ack["rejected"])
    # The audit: every good event stored once, the poison one a dead letter, once.
    assert [e for _, e in inbox_ids(cfg, "a")] == [*good, "n-1", "n-2"]
    dead = _dead(cfg)
    assert [(ref, c) for ref, c, _, _ in dead] == [("a:p-37", code)]
    kept = json.loads(dead[0][3])
    assert kept["id"] == "p-37" and kept["payload"]["id"] == 1037  # what came, kept


@pytest.mark.attack("3: an event whose id is past SQLite's integer range is rejected alone")
async def test_stream_resource_id_past_sqlite_integers(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    big = event("big-1", 1)
    big["resource_id"] = big["payload"]["id"] = 2**63  # orjson reads it; SQLite cannot hold it
    async with running(cfg) as app, client(app) as ws:
        await hello(ws)
        await ws.send(batch("b-ids", [event("ok-1", 3001), big, event("ok-2", 3002)]))
        ack = json.loads(await ws.recv())
    assert ack["accepted"] == ["ok-1", "ok-2"]
    assert [(r["id"], r["code"]) for r in ack["rejected"]] == [("big-1", "integer_out_of_range")]
    assert [e for _, e in inbox_ids(cfg, "a")] == ["ok-1", "ok-2"]
    assert dead_refs(cfg) == [("a", "a:big-1", "integer_out_of_range")]


@pytest.mark.attack("3: invalid JSON around an events batch still fails the message, not silently")
async def test_stream_non_json_is_still_a_protocol_error(tmp_path: Path) -> None:
    async with running(make_config(tmp_path)) as app:
        async with client(app) as ws:
            await hello(ws)
            await ws.send('{"type": "events", "batch": "b", "events": [NaN')
            assert json.loads(await ws.recv())["code"] == "bad_json"
        async with client(app) as ws:  # a hello with NaN is no events batch: refused whole
            await ws.send('{"type": "hello", "protocol": 1, "blog_id": NaN}')
            assert json.loads(await ws.recv())["code"] == "bad_json"
        async with client(app) as ws:  # a 19-digit run in a string: read exactly, welcomed
            await ws.send(json.dumps({**HELLO, "site_url": "https://shop.example/?" + "7" * 19}))
            assert json.loads(await ws.recv())["type"] == "welcome"


# -- the webhook door ------------------------------------------------------------------------


async def _post(app: App, body: bytes, topic: str = "order.updated") -> tuple[int, Any]:
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Signature": sign(body, SECRETS["a"]),
        "X-WC-Webhook-Delivery-ID": "d" * 32,
        "X-WC-Webhook-Source": "https://shop.example/",
    }
    url = f"http://127.0.0.1:{app.http.port}/webhooks/woocommerce/a"
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        return r.status, await r.json()


@pytest.mark.attack("3: a signed webhook delivery the store cannot keep gets 422 and a dead letter")
@pytest.mark.parametrize("kind", list(POISONS))
async def test_webhook_poison_delivery(tmp_path: Path, kind: str) -> None:
    poison, code = POISONS[kind]
    cfg = make_config(tmp_path)
    body = _poisoned({"payload": order(4001)}, poison).encode()
    body = body[len(b'{"payload": ') : -1]  # the order alone, as WooCommerce sends it
    async with running(cfg) as app:
        status, answer = await _post(app, body)
        assert status == 422, answer  # WooCommerce never resends; the failure shows in its log
        assert answer["rejected"]["code"] == code, answer
        good = json.dumps(order(4002)).encode()
        status, answer = await _post(app, good)
        assert status == 200 and answer["new"], answer
        stored = answer["stored"]
    assert [e for _, e in inbox_ids(cfg, "a")] == [stored]
    assert [c for _, _, c in dead_refs(cfg)] == [code]


# -- the store's own line of defence -------------------------------------------------------


def _event(eid: str, rid: int, payload: dict[str, Any]) -> Event:
    return Event(
        id=EventId(eid),
        topic="order.updated",
        resource=Resource.ORDER,
        action=Action.UPDATED,
        resource_id=rid,
        payload={"id": rid, "date_modified_gmt": "2026-11-27T06:00:00", **payload},
        occurred_at=datetime(2026, 11, 27, tzinfo=UTC),
    )


@pytest.mark.attack("3: one row the inbox cannot write is store_refused; the others commit")
async def test_store_refuses_one_event_and_commits_the_others(tmp_path: Path) -> None:
    # Events made past parse_event (as a future door might): each bad in its own way.
    events = [
        _event("s-1", 1, {}),
        _event("s-2", 2, {"note": "caf\ud800"}),  # orjson cannot write it
        _event("s-3", 2**63, {}),  # SQLite cannot bind it
        _event("s-4", 4, {}),
    ]
    async with SqliteStore(tmp_path / "s.db") as store:
        result = await store.ingest("a", events)
        assert result.accepted == ["s-1", "s-4"] and result.new == 2
        assert [(r.id, r.code) for r in result.rejected] == [
            ("s-2", "store_refused"),
            ("s-3", "store_refused"),
        ]
        again = await store.ingest("a", events)  # a resend: nothing doubled
        assert again.accepted == ["s-1", "s-4"] and again.new == 0
        dead = await store.dead_letters()
    assert [(d.ref, d.code) for d in dead] == [
        ("a:s-2", "store_refused"),
        ("a:s-3", "store_refused"),
    ]
    assert dead[0].body["payload"]["note"] == "caf\ud800"  # kept as it came (JSON escapes it)


# -- polling -------------------------------------------------------------------------------


@pytest.mark.attack("3: a poison object in a REST page is skipped and dead-lettered by polling")
async def test_polling_skips_and_dead_letters_a_poison_object(tmp_path: Path) -> None:
    async with WooFake(customers=1, orders=2, products=0, coupons=0) as woo, BrevoFake() as brevo:
        data = kit.config_data(
            tmp_path,
            sites=[kit.site("shop", "token-for-the-poison-poll-" + "q" * 24, mode="polling")],
            brevo=kit.live(brevo),
            woocommerce={
                **kit.store(woo),
                "rate_limit_per_minute": 6000,
                "customer_mapping": {"email": "email"},
                "polling": {"interval": "300ms", "overlap": "3s"},
            },
        )
        cfg = Config.model_validate(data)
        async with App(cfg) as app:
            rounds = app.status.site("shop").polling
            assert rounds is not None
            woo.clock.advance(1)
            bad = woo.add_order(
                status="processing", meta_data=[{"key": "x", "value": float("nan")}]
            )
            woo.clock.advance(1)
            good = woo.add_order(status="processing")
            await brevo.wait_for(lambda: str(good["id"]) in brevo.orders, timeout=10 * UNIT)
            await until(lambda: len(dead_refs(cfg)) >= 1, 5, what="the poison order's dead letter")
            seen = rounds.rounds
            await until(lambda: rounds.rounds >= seen + 3, 10, what="three more polling rounds")
        assert str(bad["id"]) not in brevo.orders
    # Listed again by every overlapping window, kept once.
    [(site, ref, code)] = dead_refs(cfg)
    assert (site, code) == ("shop", "non_finite_number")
    assert ref.startswith(f"shop:order.created:{bad['id']}:"), ref


# -- the core, values in and out -------------------------------------------------------------


@pytest.mark.attack("3: the checks cost no stack, whatever the depth")
def test_storable_core() -> None:
    deep, checked = loads(_deep(100_000))
    assert not checked
    found = problem(deep, "payload")
    assert found is not None and found.code == "too_deep"
    kept = keepable(deep)
    written = json.dumps(kept)  # cut, then written by the json module: no recursion error
    assert written.count("[") == MAX_DEPTH + 16 + 1  # 144 levels kept, and the text that says so
    assert f'"[cut: nested deeper than {MAX_DEPTH + 16} levels]"' in written
    shallow, checked = loads(_deep(MAX_DEPTH - 1))
    assert checked and problem(shallow, "payload", checked=True) is None
    assert problem([shallow], "payload", checked=True) is None  # MAX_DEPTH levels: allowed
    assert problem([[shallow]], "payload", checked=True) is not None
    # orjson reads uint64; the store writes it: allowed as a value (not as an id).
    assert problem({"n": 2**64 - 1}, "payload") is None
    raw = {
        "id": "e-1",
        "topic": "order.updated",
        "payload": {"id": 2**63, "date_modified_gmt": "x"},
    }
    parsed = parse_event(raw, door=Door.STREAM)
    assert isinstance(parsed, Rejection) and parsed.code == "integer_out_of_range"
    assert problem({"x": float("inf")}, "payload", checked=True) is None  # orjson never reads inf
    assert problem({"x": float("inf")}, "payload") is not None
