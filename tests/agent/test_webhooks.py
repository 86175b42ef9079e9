"""The webhook door against WooCommerce's own deliveries: the signed example from the docs and
every delivery recorded from a real WooCommerce 10.0.2 (reference/woocommerce/real-10.0.2)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.app import App
from agent.config import Config
from agent.core.events import content_event_id
from agent.core.webhooks import (
    delivery_event,
    install_topics,
    is_ping,
    plan_install,
    sign,
    verify_signature,
    webhook_report,
    wp_specialchars_decode,
)
from tests.agent.doorkit import (
    DOCS_EXAMPLES,
    REAL_WEBHOOKS,
    SECRETS,
    config_data,
    dead_refs,
    inbox_ids,
    make_config,
    running,
)
from tests.kit import write_config

EXAMPLE = json.loads((DOCS_EXAMPLES / "webhook_delivery_order_updated.example.json").read_text())
EXAMPLE_BODY = (DOCS_EXAMPLES / "webhook_delivery_order_updated.body.json").read_bytes()
INDEX = json.loads((REAL_WEBHOOKS / "index.json").read_text())
EXAMPLE_ID = content_event_id("order.updated", json.loads(EXAMPLE_BODY))


def recorded(name: str) -> tuple[dict[str, str], bytes]:
    """A recorded delivery: its headers (without the request line) and its exact body bytes."""
    lines = (REAL_WEBHOOKS / f"{name}.headers").read_text().splitlines()[1:]
    headers = dict(line.split(": ", 1) for line in lines if ": " in line)
    return headers, (REAL_WEBHOOKS / f"{name}.body").read_bytes()


def wc_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers WooCommerce sets (Host, Content-Length… are the client's business)."""
    keep = ("Content-Type", "User-Agent")
    return {k: v for k, v in headers.items() if k.startswith("X-WC-") or k in keep}


async def post(app: App, site: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{app.http.port}/webhooks/woocommerce/{site}"
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        return r.status, await r.json()


def signed(topic: str, body: bytes, secret: str, delivery: str = "d" * 32) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Signature": sign(body, secret),
        "X-WC-Webhook-Delivery-ID": delivery,
    }


async def test_docs_example_delivery_verifies_and_is_stored(tmp_path: Path) -> None:
    assert EXAMPLE["sample_secret"] == SECRETS["a"]
    assert EXAMPLE["raw_body"].encode() == EXAMPLE_BODY
    async with running(make_config(tmp_path)) as app:
        status, answer = await post(app, "a", EXAMPLE_BODY, EXAMPLE["headers"])
        assert status == 200, answer
        assert answer["stored"] == EXAMPLE_ID and answer["new"]
        # The same delivery again (WooCommerce's delivery id is no key): stored once.
        status, answer = await post(app, "a", EXAMPLE_BODY, EXAMPLE["headers"])
        assert status == 200 and not answer["new"]
        assert app.metrics.get("woobrevo_events_in_total", door="webhook", site="a") == 2
        assert app.metrics.get("woobrevo_events_replayed_total", door="webhook", site="a") == 1
    assert inbox_ids(app.cfg) == [("a", EXAMPLE_ID)]


def test_the_event_id_is_topic_id_version_and_a_hash_of_the_object() -> None:
    head, digest = EXAMPLE_ID.rsplit(":", 1)
    assert head == "order.updated:723:2017-03-21T19:54:51"
    assert re.fullmatch(r"[0-9a-f]{16}", digest)


async def test_two_changes_in_one_second_are_two_events(tmp_path: Path) -> None:
    """The real store changed order 20 twice within 05:18:15: the second change is not a replay
    of the first (docs/doors.md, "Design change: the hash")."""
    _, body = recorded("0023-order.updated-074c9d7dde92357b")
    first = json.loads(body)
    assert (first["status"], first["date_modified_gmt"]) == ("refunded", "2026-11-27T05:18:15")
    second = json.dumps({**first, "status": "completed"}).encode()
    # the same object through the https URL: only `_links` differ
    links = json.dumps(first["_links"]).replace("http://127.0.0.1:8080", "https://shop.test")
    https = json.dumps({**first, "_links": json.loads(links)}).encode()
    assert https != body and json.loads(https)["_links"] != first["_links"]
    async with running(make_config(tmp_path)) as app:
        answers = []
        for raw in (body, second, body, https):
            status, answer = await post(app, "b", raw, signed("order.updated", raw, SECRETS["b"]))
            assert status == 200, answer
            answers.append((answer["stored"], answer["new"]))
    assert [new for _, new in answers] == [True, True, False, False]
    assert answers[0][0] == answers[2][0] == answers[3][0] != answers[1][0]
    assert [e for _, e in inbox_ids(app.cfg, "b")] == [answers[0][0], answers[1][0]]


async def test_every_recorded_real_delivery_verifies(tmp_path: Path) -> None:
    assert INDEX["secret"] == SECRETS["b"]
    expected: list[str] = []
    async with running(make_config(tmp_path)) as app:
        for delivery in INDEX["deliveries"]:
            headers, body = recorded(delivery["file"])
            status, answer = await post(app, "b", body, wc_headers(headers))
            assert status == 200, (delivery["file"], answer)
            if delivery["topic"] == "ping":
                assert answer["ping"] is True
                continue
            assert delivery["signature_valid"] is True
            eid = content_event_id(delivery["topic"], json.loads(body))
            assert answer["stored"] == eid
            assert answer["new"] == (eid not in expected)
            if eid not in expected:
                expected.append(eid)
    assert [e for _, e in inbox_ids(app.cfg, "b")] == expected
    assert len(expected) >= 10 and inbox_ids(app.cfg, "a") == []


async def test_one_changed_byte_is_refused(tmp_path: Path) -> None:
    headers, body = recorded("0021-order.updated-074c9d7dde92357b")
    tampered = bytearray(body)
    i = body.index(b'"total":"') + len(b'"total":"')
    tampered[i] = ord("9") if tampered[i] != ord("9") else ord("8")
    async with running(make_config(tmp_path)) as app:
        status, answer = await post(app, "b", bytes(tampered), wc_headers(headers))
        assert status == 401 and answer["error"] == "bad_signature"
        # Site a has another secret: the genuine bytes are refused there too.
        status, _ = await post(app, "a", body, wc_headers(headers))
        assert status == 401
        assert (
            app.metrics.get("woobrevo_webhook_requests_total", site="b", outcome="bad_signature")
            == 1
        )
    assert inbox_ids(app.cfg) == []


async def test_a_refusal_names_the_sender_behind_a_trusted_proxy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    headers, body = recorded("0021-order.updated-074c9d7dde92357b")
    data = config_data(tmp_path)
    data["agent"]["trusted_proxies"] = ["127.0.0.1"]
    async with running(Config.model_validate(data)) as app:
        forwarded = {**wc_headers(headers), "X-Forwarded-For": "198.51.100.20"}
        status, _ = await post(app, "a", body, forwarded)  # site a has another secret
        assert status == 401
    refusals = [r.getMessage() for r in caplog.records if "webhook refused" in r.getMessage()]
    assert refusals == ["site a webhook refused from 198.51.100.20: signature mismatch"]


async def test_signature_is_checked_on_raw_bytes_not_reserialized_json(tmp_path: Path) -> None:
    # PHP's json_encode escapes "/" and non-ASCII; Python's json.dumps does not: the same
    # object, other bytes, so the signature only holds for the bytes as sent.
    raw = EXAMPLE_BODY
    assert b"\\/" in raw and b"\\u00e3" in raw
    reserialized = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False).encode()
    assert json.loads(reserialized) == json.loads(raw) and reserialized != raw
    async with running(make_config(tmp_path)) as app:
        status, _ = await post(app, "a", reserialized, EXAMPLE["headers"])
        assert status == 401
        status, _ = await post(app, "a", raw, EXAMPLE["headers"])
        assert status == 200


async def test_pings_answer_200_without_signature(tmp_path: Path) -> None:
    async with running(make_config(tmp_path)) as app:
        for delivery in INDEX["deliveries"]:
            if delivery["topic"] != "ping":
                continue
            headers, body = recorded(delivery["file"])
            assert "X-WC-Webhook-Signature" not in headers
            status, answer = await post(app, "b", body, wc_headers(headers))
            assert (status, answer) == (200, {"ok": True, "ping": True})
        # A ping for a site the agent does not know: WooCommerce should hear about it.
        status, _ = await post(app, "zz", b"webhook_id=1", {})
        assert status == 404
    assert inbox_ids(app.cfg) == []


async def test_deleted_bodies_keyed_by_delivery(tmp_path: Path) -> None:
    body = b'{"id":19}'
    async with running(make_config(tmp_path)) as app:
        status, first = await post(
            app, "a", body, signed("order.deleted", body, SECRETS["a"], "1" * 32)
        )
        assert status == 200 and first["new"]
        status, again = await post(
            app, "a", body, signed("order.deleted", body, SECRETS["a"], "1" * 32)
        )
        assert status == 200 and again == {**first, "new": False}
        # Trashed again after a restore: another delivery, another event.
        status, later = await post(
            app, "a", body, signed("order.deleted", body, SECRETS["a"], "2" * 32)
        )
        assert status == 200 and later["new"] and later["stored"] != first["stored"]
    digest = content_event_id("order.deleted", {"id": 19}, "x").rsplit(":", 1)[1]
    assert [e for _, e in inbox_ids(app.cfg)] == [
        f"order.deleted:19:{'1' * 32}:{digest}",
        f"order.deleted:19:{'2' * 32}:{digest}",
    ]


async def test_unusable_verified_bodies_are_dead_letters_not_errors(tmp_path: Path) -> None:
    error = json.dumps(
        {
            "code": "woocommerce_rest_shop_order_invalid_id",
            "message": "Invalid ID.",
            "data": {"status": 404},
        }
    ).encode()
    async with running(make_config(tmp_path)) as app:
        status, answer = await post(app, "a", error, signed("order.updated", error, SECRETS["a"]))
        assert status == 200
        assert answer["rejected"]["code"] == "rest_error"
        assert (
            "woocommerce_rest_shop_order_invalid_id (404): Invalid ID."
            in answer["rejected"]["message"]
        )
        garbage = b"<html>oops</html>"
        status, answer = await post(
            app, "a", garbage, signed("order.updated", garbage, SECRETS["a"], "e" * 32)
        )
        assert status == 200 and answer["rejected"]["code"] == "invalid_payload"
        not_rest = b'{"id":5}'
        status, answer = await post(
            app, "a", not_rest, signed("order.updated", not_rest, SECRETS["a"], "f" * 32)
        )
        assert status == 200 and answer["rejected"]["code"] == "invalid_payload"
        action = b'{"action":"woocommerce_add_to_cart","arg":"abc"}'
        status, answer = await post(
            app, "a", action, signed("action.woocommerce_add_to_cart", action, SECRETS["a"])
        )
        assert status == 200 and "ignored" in answer
        assert app.metrics.get("woobrevo_rejected_total", door="webhook", site="a") == 3
    assert inbox_ids(app.cfg) == []
    assert [(r, c) for _, r, c in dead_refs(app.cfg)] == [
        (f"a:webhook:order.updated:{'d' * 32}", "rest_error"),
        (f"a:webhook:order.updated:{'e' * 32}", "invalid_payload"),
        ("a:order.updated:5:" + _hash_version(not_rest), "invalid_payload"),
    ]


def _hash_version(body: bytes) -> str:
    return content_event_id("order.updated", json.loads(body)).rsplit(":", 1)[1]


async def test_limits_and_refusals(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, max_message_bytes=4096)
    async with running(cfg) as app:
        big = b'{"id":1,"x":"' + b"x" * 5000 + b'"}'
        status, answer = await post(app, "a", big, signed("order.updated", big, SECRETS["a"]))
        assert status == 413 and answer["error"] == "too_large"
        # Chunked, no Content-Length: aiohttp stops at the limit.
        url = f"http://127.0.0.1:{app.http.port}/webhooks/woocommerce/a"

        async def chunks() -> Any:
            for _ in range(10):
                yield b"x" * 1000

        async with (
            aiohttp.ClientSession() as s,
            s.post(url, data=chunks(), headers=signed("order.updated", b"", "x")) as r,
        ):
            assert r.status == 413
        body = EXAMPLE_BODY
        unsigned = {"Content-Type": "application/json", "X-WC-Webhook-Topic": "order.updated"}
        assert (await post(app, "a", body, unsigned))[0] == 401
        assert (await post(app, "nope", body, EXAMPLE["headers"]))[0] == 404
        no_topic = {"X-WC-Webhook-Signature": sign(body, SECRETS["a"])}
        assert (await post(app, "a", body, no_topic))[0] == 400
    assert inbox_ids(cfg) == []


async def test_site_without_secret_refuses_deliveries(tmp_path: Path) -> None:
    from agent.config import Config
    from tests.agent.doorkit import config_data

    data = config_data(tmp_path)
    del data["sites"][0]["webhook_secret"]
    async with running(Config.model_validate(data)) as app:
        status, answer = await post(app, "a", EXAMPLE_BODY, EXAMPLE["headers"])
        assert status == 401 and "no webhook_secret" in answer["message"]
        assert (await post(app, "a", b"webhook_id=3", {}))[0] == 200  # pings still work


def test_signature_helpers() -> None:
    body = b'{"a":"\\/"}'
    sig = sign(body, "s3cret")
    assert verify_signature(body, "s3cret", sig)
    assert verify_signature(body, "s3cret", f" {sig} ")
    assert not verify_signature(body + b" ", "s3cret", sig)
    assert not verify_signature(body, "s3cret", None)
    assert not verify_signature(body, "", sig)
    assert not verify_signature(body, "s3cret", "é")
    # WooCommerce decodes HTML entities in the secret before signing.
    assert wp_specialchars_decode("a&amp;b&#039;c&quot;") == "a&b'c\""
    assert sign(body, "a&amp;b") == sign(body, "a&b")
    assert is_ping(None, None, b"webhook_id=142")
    assert not is_ping("order.updated", None, b"webhook_id=142")
    assert not is_ping(None, None, b'{"id":1}')


def test_delivery_event_shapes() -> None:
    ev = delivery_event(
        "customer.updated",
        (REAL_WEBHOOKS / "0008-customer.updated-130441141d3e0b55.body").read_bytes(),
        delivery_id="x",
        now=0.0,
    )
    assert not isinstance(ev, tuple) and not hasattr(ev, "reason")
    assert ev.resource.value == "customer" and ev.door.value == "webhook"  # type: ignore[union-attr]


def test_install_topics_cover_sync_and_config() -> None:
    all_on = {"customers": True, "orders": True, "products": True, "coupons": True}
    topics = install_topics(all_on, [])
    assert "customer.restored" not in topics and "order.restored" in topics and len(topics) == 15
    only_orders = install_topics(
        {**dict.fromkeys(all_on, False), "orders": True}, ["order.paid", "coupon.created"]
    )
    assert only_orders == [
        "coupon.created",
        "order.created",
        "order.deleted",
        "order.restored",
        "order.updated",
    ]


def test_plan_reuses_matching_webhooks() -> None:
    url = "https://agent.example/webhooks/woocommerce/a"
    existing = [
        {"id": 1, "topic": "order.created", "delivery_url": url, "status": "disabled"},
        {"id": 2, "topic": "order.created", "delivery_url": url + "/", "status": "active"},
        {
            "id": 3,
            "topic": "order.updated",
            "delivery_url": "https://elsewhere.example/hook",
            "status": "active",
        },
    ]
    plan = plan_install(existing, ["order.created", "order.updated"], url, "sec", name="WooBrevo a")
    assert [(p.kind, p.topic, p.webhook_id) for p in plan] == [
        ("update", "order.created", 2),
        ("duplicate", "order.created", 1),
        ("create", "order.updated", None),
    ]
    assert plan[0].fields == {
        "secret": "sec",
        "status": "active",
        "name": "WooBrevo a order.created",
    }
    report = webhook_report(existing, ["order.created", "order.updated"], url, "a")
    assert [(r.topic, r.status, r.ok) for r in report] == [
        ("order.created", "active", True),
        ("order.created", "duplicate", False),
        ("order.updated", "missing", False),
    ]


@pytest.mark.parametrize("status", ["disabled", "paused"])
def test_report_explains_disabled_webhooks(status: str) -> None:
    url = "https://agent.example/webhooks/woocommerce/a"
    [row] = webhook_report(
        [{"id": 7, "topic": "order.updated", "delivery_url": url, "status": status}],
        ["order.updated"],
        url,
        "a",
    )
    assert not row.ok and "webhooks install --site a" in row.advice
    if status == "disabled":
        assert "repeated failed deliveries" in row.advice and "Status: Active" in row.advice


# -- `webhooks install|status` against the WooCommerce REST fake ----------------------------


async def test_webhooks_install_and_status_against_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from agent.cli import main
    from agent.config import load_config
    from tests.agent.doorkit import config_data
    from tests.fakes.woocommerce import WooFake

    async with WooFake(customers=1, orders=1, products=1, coupons=1, deliver_pings=True) as woo:
        data = config_data(tmp_path)
        key = woo.keys[0]
        data["connectors"]["woocommerce"].update(
            store_url=woo.url,
            consumer_key=key.consumer_key,
            consumer_secret=key.consumer_secret,
            rate_limit_per_minute=60_000,
        )
        path = tmp_path / "agent.yaml"
        async with running(load_config(write_config(path, data))) as app:
            # The agent's own address as the store reaches it; WooCommerce pings it on create.
            data["agent"]["public_url"] = f"http://127.0.0.1:{app.http.port}/"
            write_config(path, data)
            url = f"http://127.0.0.1:{app.http.port}/webhooks/woocommerce/a"

            def cli(*argv: str) -> Any:
                return asyncio.to_thread(main, [*argv, "--config", str(path), "--site", "a"])

            capsys.readouterr()
            assert await cli("webhooks", "install") == 0
            out = capsys.readouterr().out
            hooks = woo.store.webhooks
            assert sorted(h["topic"] for h in hooks.values()) == install_topics(
                {"customers": True, "orders": True, "products": True, "coupons": True}, []
            )
            assert {h["delivery_url"] for h in hooks.values()} == {url}
            assert set(woo.store.webhook_secrets.values()) == {SECRETS["a"]}
            assert sum(line.startswith("created ") for line in out.splitlines()) == 15
            # WooCommerce pinged each new webhook while the install waited; the agent said 200.
            assert woo.pings == [(url, 200)] * 15
            assert (
                app.metrics.get("woobrevo_webhook_requests_total", site="a", outcome="ping") == 15
            )

            # Run again: reused, not duplicated.
            assert await cli("webhooks", "install") == 0
            out = capsys.readouterr().out
            assert sum(line.startswith("reused ") for line in out.splitlines()) == 15
            assert len(hooks) == 15
            assert await cli("webhooks", "status") == 0
            capsys.readouterr()

            # WooCommerce disabled one after failed deliveries: status says so and how to fix it.
            victim = next(h for h in hooks.values() if h["topic"] == "order.updated")
            victim["status"] = "disabled"
            assert await cli("webhooks", "status") == 1
            out = capsys.readouterr().out
            line = next(line for line in out.splitlines() if "order.updated" in line)
            assert "disabled" in line and "repeated failed deliveries" in line
            assert "webhooks install --site a" in line
            assert await cli("webhooks", "install") == 0
            assert victim["status"] == "active" and len(hooks) == 15
            assert await cli("webhooks", "status") == 0

            # A delivery signed with the installed secret goes through the door.
            body = EXAMPLE_BODY
            status, answer = await post(app, "a", body, signed("order.updated", body, SECRETS["a"]))
            assert status == 200 and answer["new"]


async def test_webhooks_install_needs_public_url_and_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main
    from tests.agent.doorkit import config_data

    data = config_data(tmp_path)
    data["connectors"]["woocommerce"].update(
        store_url="https://shop.example", consumer_key="ck_x", consumer_secret="cs_x"
    )
    del data["agent"]["public_url"]
    path = write_config(tmp_path / "a.yaml", data)
    assert main(["webhooks", "install", "--config", str(path), "--site", "a"]) == 1
    assert "agent.public_url" in capsys.readouterr().out
    data["agent"]["public_url"] = "https://agent.example"
    del data["sites"][0]["webhook_secret"]
    path = write_config(tmp_path / "a.yaml", data)
    assert main(["webhooks", "install", "--config", str(path), "--site", "a"]) == 1
    assert "webhook_secret" in capsys.readouterr().out
