"""Minimization (issue 14): payment details never enter the store, whatever the door, and never
reach Brevo. Unit tests of agent/core/minimize.py, then an order paid through a card gateway
(the meta of the WooCommerce test double's `wcd_card`) through the stream and webhook doors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.config import Config
from agent.core.events import Door, Event, parse_event
from agent.core.minimize import REMOVED, is_payment_meta, minimize, minimize_value
from agent.core.times import gmt
from agent.core.webhooks import sign
from tests.agent.doorkit import SECRETS, batch, client, config_data, hello, order, running
from tests.fakes.brevo import BrevoFake
from tests.kit import live

CARD = "4242 4242 4242 4242"  # Luhn-valid test number
# Every name that must not be stored nor sent, and the card number in both spellings.
PAYMENT_WORDS = (
    "payment_method_title",
    "transaction_id",
    "payment_url",
    "customer_ip_address",
    "customer_user_agent",
    "_stripe_source_id",
    "_stripe_customer_id",
    "_wcd_card_number",
    "_wcpay_charge_id",
    "_ppcp_paypal_order_id",
    "_payment_tokens",
    "Credit card (WCD)",
    "ch_3Pwcd",
    "src_1Nwcd",
    "cus_Qwcd",
    "4242424242424242",
    CARD,
    "203.0.113.9",
    "Mozilla/5.0 (X11; WCD)",
)


# -- the pure part -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("4242424242424242", REMOVED),
        ("card 4242 4242 4242 4242 ok", f"card {REMOVED} ok"),
        ("4242-4242-4242-4242", REMOVED),
        ("paid with 378282246310005 (amex)", f"paid with {REMOVED} (amex)"),
        ("4242 4242 4242 4242 123", f"{REMOVED} 123"),  # a code after the number stays
        ("4242424242424241", "4242424242424241"),  # not Luhn-valid: not a card
        ("order 1234567890123", "order 1234567890123"),  # 13 digits, Luhn-invalid
        ("+33 6 12 34 56 78", "+33 6 12 34 56 78"),  # a phone: too few digits
        ("12345678901234567890123", "12345678901234567890123"),  # 23 digits: no card
        ("2026-12-06T06:29:58", "2026-12-06T06:29:58"),
        # digits inside a word are no card: a cart's random token (tests/chaos) or a hash
        ("a9f04242424242424242bc", "a9f04242424242424242bc"),
        ("4242424242424242ff", "4242424242424242ff"),
        ("tok_4242424242424242", f"tok_{REMOVED}"),  # "_" ends a word here: still a card
    ],
)
def test_card_numbers_are_replaced_in_strings(text: str, kept: str) -> None:
    assert minimize_value(text) == kept


def test_payment_meta_keys() -> None:
    for key in ("_stripe_source_id", "_WCPAY_intent", "_ppcp_x", "_paypal_status",
                "_transaction_id", "_payment_tokens", "_wcd_card_number", "card_brand",
                "_my_cc_last4", "customer_iban"):  # fmt: skip
        assert is_payment_meta(key), key
    for key in ("_woobrevo_consent", "loyalty_points", "_billing_phone", "is_vat_exempt"):
        assert not is_payment_meta(key), key
    assert not is_payment_meta(None)


def paid_order(order_id: int, **changes: Any) -> dict[str, Any]:
    """A REST order paid through the double's card gateway (issue 14, contract §6)."""
    body = order(order_id, gmt(time.time()))
    body.update(
        status="processing",
        payment_method="wcd_card",
        payment_method_title="Credit card (WCD)",
        transaction_id="ch_3Pwcd",
        payment_url="https://shop.example/checkout/order-pay/1/?pay_for_order=true",
        customer_ip_address="203.0.113.9",
        customer_user_agent="Mozilla/5.0 (X11; WCD)",
        customer_note=f"my card is {CARD}",
        **changes,
    )
    body["meta_data"] = [
        {"id": 1, "key": "_transaction_id", "value": "ch_3Pwcd"},
        {"id": 2, "key": "_stripe_source_id", "value": "src_1Nwcd"},
        {"id": 3, "key": "_stripe_customer_id", "value": "cus_Qwcd"},
        {"id": 4, "key": "_wcd_card_number", "value": CARD},
        {"id": 5, "key": "_wcpay_charge_id", "value": "x"},
        {"id": 6, "key": "_ppcp_paypal_order_id", "value": "x"},
        {"id": 7, "key": "_payment_tokens", "value": ["x"]},
        {"id": 8, "key": "loyalty_points", "value": "12"},
        {"id": 9, "key": "gift_message", "value": {"text": f"use {CARD.replace(' ', '-')}"}},
    ]
    body["line_items"][0]["meta_data"] = [{"id": 10, "key": "_card_last4", "value": "4242"}]
    return body


def _words(text: str) -> list[str]:
    lowered = text.lower()
    return [w for w in PAYMENT_WORDS if w.lower() in lowered]


def test_minimize_leaves_the_rest_and_does_not_change_its_input() -> None:
    body = paid_order(77)
    before = json.dumps(body, sort_keys=True)
    kept = minimize(body)
    assert json.dumps(body, sort_keys=True) == before
    assert _words(json.dumps(kept)) == []
    assert kept["payment_method"] == "wcd_card"  # which gateway, not its details
    assert kept["customer_note"] == f"my card is {REMOVED}"
    assert [m["key"] for m in kept["meta_data"]] == ["loyalty_points", "gift_message"]
    assert kept["meta_data"][1]["value"] == {"text": f"use {REMOVED}"}
    assert kept["line_items"][0]["meta_data"] == []
    assert kept["billing"] == body["billing"] and kept["total"] == body["total"]


def test_every_door_parses_through_minimize() -> None:
    raw = {"topic": "order.updated", "payload": paid_order(78), "extra": {"note": CARD}}
    for door in Door:
        event = parse_event(raw, door=door)
        assert isinstance(event, Event), event
        assert _words(json.dumps(event.payload)) == [] and event.extra == {"note": REMOVED}


# -- through the doors ---------------------------------------------------------------------


def _store_bytes(cfg: Config) -> str:
    out = b""
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{cfg.agent.store_path}{suffix}")
        if path.exists():
            out += path.read_bytes()
    return out.decode("latin-1")


def _sent(fake: BrevoFake) -> str:
    return json.dumps([[r.path, r.query, r.json] for r in fake.requests])


async def test_a_card_paid_order_through_the_stream_and_webhook_doors(tmp_path: Path) -> None:
    async with BrevoFake() as fake:
        data = config_data(tmp_path, brevo=live(fake, max_backoff="1s"))
        data["agent"]["processing"] = "inline"
        cfg = Config.model_validate(data)
        async with running(cfg) as app:
            streamed = paid_order(501)
            async with client(app) as ws:
                await hello(ws)
                event = {"id": "o-501", "topic": "order.created", "resource": "order",
                         "resource_id": 501, "payload": streamed}  # fmt: skip
                # and a refused one: what is kept of it as a dead letter is minimized too
                refused = {"id": "o-bad", "topic": "order.created", "payload": paid_order(-1)}
                await ws.send(batch("b1", [event, refused]))
                ack = json.loads(await ws.recv())
                assert ack["accepted"] == ["o-501"] and len(ack["rejected"]) == 1
            body = json.dumps(paid_order(502)).encode()
            url = f"http://127.0.0.1:{app.http.port}/webhooks/woocommerce/a"
            headers = {"Content-Type": "application/json", "X-WC-Webhook-Topic": "order.created",
                       "X-WC-Webhook-Signature": sign(body, SECRETS["a"]),
                       "X-WC-Webhook-Delivery-ID": "d" * 32}  # fmt: skip
            async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
                assert r.status == 200, await r.text()
            await fake.wait_for(lambda: {"501", "502"} <= {o.split("-")[-1] for o in fake.orders},
                                timeout=15)  # fmt: skip
            await app.wait_idle(within=15)
            assert _words(_store_bytes(cfg)) == []
        assert _words(_store_bytes(cfg)) == []
        sent = _sent(fake)
        assert _words(sent) == [], _words(sent)
        fake.assert_no_spec_violations()


def _walked(payload: dict[str, Any]) -> dict[str, Any]:
    """What the full walk keeps (minimize's byte-search shortcut must agree with it)."""
    out: dict[str, Any] = minimize_value(payload)
    return out


def test_the_shortcut_keeps_what_the_walk_keeps() -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "woocommerce"
    seen = 0
    for path in sorted(fixtures.rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        for obj in data if isinstance(data, list) else [data]:
            if isinstance(obj, dict):
                assert minimize(obj) == _walked(obj), path
                seen += 1
    assert seen > 50
    base = json.loads(
        (fixtures / "real-10.0.2" / "rest" / "59-order_get_completed.json").read_text()
    )
    cases: list[dict[str, Any]] = [
        {**base, "meta_data": [{"id": 1, "key": "_Stripe_Source_Id", "value": "src_1"}]},
        {**base, "customer_note": "card 4242-4242-4242-4242, thanks"},
        {**base, "line_items": [{"id": 1, "transaction_id": "t-9", "meta_data": []}]},
        {**base, "timestamp_ms": 1733000000000},  # 13 digits, not a string: only looks like one
        {"id": 1, "big": 2**70, "transaction_id": "x"},  # past orjson: the walk does it
    ]
    for case in cases:
        assert minimize(case) == _walked(case)
    assert "transaction_id" not in minimize(cases[4])
