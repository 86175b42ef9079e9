"""Finding 5 of issue 16: payment data reached Brevo through meta (`_wcpay_customer_id` was
mapped and sent; the deny-list missed `_wcpay_*`, `_transaction_id`, Mollie, Authorize.Net and
`session_tokens`). The deny-list is now a rule (agent/core/minimize.py): these tests hold it to
the real meta keys of the major gateways (tests/fixtures/woocommerce/gateway-meta-keys.json,
looked up in their source), to a gateway nobody has heard of, to card numbers outside the
catalogue's own codes, and to the mapping, then send every gateway's order and customer
through the stream and webhook doors into the store and the Brevo fake."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from agent.config import Config
from agent.core import minimize as rule
from agent.core.minimize import REMOVED, is_payment_meta, minimize, minimize_value
from agent.core.times import gmt
from agent.core.webhooks import sign
from tests.agent.doorkit import (
    DOCS_EXAMPLES,
    SECRETS,
    batch,
    client,
    config_data,
    dead_refs,
    hello,
    inbox_ids,
    order,
    running,
)
from tests.conftest import REF, ROOT
from tests.fakes.brevo import BrevoFake
from tests.kit import live, write_config

GATEWAYS: list[dict[str, Any]] = json.loads((REF / "gateway-meta-keys.json").read_text())[
    "gateways"
]
KEPT: dict[str, dict[str, Any]] = json.loads((REF / "gateway-meta-keys.json").read_text())["kept"]
MARKER = "gwsecret"  # in every gateway value of the fixture
MAPPING = {
    "email": "email",
    "first_name": "FIRSTNAME",
    "meta_data.loyalty_tier": "LOYALTY_TIER",
    "meta_data._billing_vat": "VAT_NUMBER",
}
CARD = "4242 4242 4242 4242"
EAN = "5901234123457"  # the EAN-13 example, which happens to pass the Luhn check


def _meta(values: dict[str, Any], first_id: int = 1) -> list[dict[str, Any]]:
    return [{"id": first_id + i, "key": k, "value": v} for i, (k, v) in enumerate(values.items())]


def _all_keys() -> list[str]:
    return sorted({k for g in GATEWAYS for where in ("order", "user") for k in g[where]})


# -- the rule, key by key ----------------------------------------------------------------------


@pytest.mark.attack("5: each major gateway's real order and user meta keys are payment data")
def test_every_gateway_key_is_payment_meta_by_its_words_alone() -> None:
    keys = _all_keys()
    assert len(keys) > 70
    # No gateway id needed: the words of the key are enough (a customer has no payment_method).
    assert [k for k in keys if not is_payment_meta(k)] == []
    # The finding's own examples.
    for key in ("_wcpay_customer_id", "_transaction_id", "_mollie_payment_id", "session_tokens",
                "_wc_authorize_net_cim_credit_card_trans_id", "wp__stripe_customer_id",
                "stripeCustomerId", "Payer PayPal address", "_my_cc_last4", "customer_iban",
                "bank_account_number", "sepa_mandate", "_source_id", "card_fingerprint"):  # fmt: skip
        assert is_payment_meta(key), key


def test_normal_keys_are_not_payment_meta() -> None:
    # Every meta key of the WooCommerce reference objects, the fixture's kept keys, and the
    # keys WooCommerce writes itself that carry no payment detail.
    seen: set[str] = set()

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            for entry in obj.get("meta_data") or []:
                if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                    seen.add(entry["key"])
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    for path in sorted(REF.rglob("*.json")):
        if path.name != "gateway-meta-keys.json":
            walk(json.loads(path.read_text()))
    assert {"loyalty_tier", "_download_permissions_granted", "brevo_opt_in"} <= seen
    normal = seen | set(KEPT["order"]) | set(KEPT["user"])
    normal |= {"billing_company", "discount", "_cart_discount", "_order_currency", "_date_paid",
               "_paid_date", "paying_customer", "is_vat_exempt", "_woobrevo_consent",
               "_billing_phone", "_wc_order_attribution_source_type",
               "_wc_order_attribution_utm_source", "_recorded_sales", "_cart_hash", "payload",
               "_new_order_email_sent", "wc_last_active", "_thumbnail_id", "total_sales",
               "_gtin", "display_name"}  # fmt: skip
    assert sorted(k for k in normal if is_payment_meta(k)) == []
    assert not is_payment_meta(None) and not is_payment_meta("")


@pytest.mark.attack("5: a gateway nobody listed: its keys carry only its own id")
def test_a_new_gateways_keys_are_caught_by_the_orders_payment_method() -> None:
    keys = {"_northwind_ref": "nw-1", "northwind_vault": "nw-2", "_wc_northwind_mode": "nw-3",
            "northwind": "nw-4", "_northwindy_note": "kept", "loyalty_tier": "gold"}  # fmt: skip
    for method in ("northwind", "northwind_gateway", "wc-northwind-payments", "NorthWind"):
        body = order(7, "2026-12-06T06:00:00")
        body.update(payment_method=method, meta_data=_meta(keys))
        kept = minimize(body)
        assert [m["key"] for m in kept["meta_data"]] == ["_northwindy_note", "loyalty_tier"], method
        assert kept["payment_method"] == method  # which gateway is not a payment detail
    # Paid another way, the same keys are not this order's gateway's: the agent keeps them (the
    # plugin drops the keys of every gateway registered in WooCommerce; PaymentMetaTest.php).
    body = order(8, "2026-12-06T06:00:00")
    body.update(payment_method="bacs", meta_data=_meta(keys))
    assert len(minimize(body)["meta_data"]) == len(keys)
    # The double's card gateway: its id's stem (`wcd`) takes `wcd_payment_note` too.
    assert is_payment_meta("wcd_payment_note", ["wcd_card"])
    assert not is_payment_meta("wcd_payment_note".replace("payment", "gift"), ["bacs"])


def test_card_numbers_are_removed_everywhere_but_the_catalogues_codes() -> None:
    product = json.loads((DOCS_EXAMPLES / "product_simple.json").read_text())
    product.update(sku=EAN, global_unique_id=EAN, description=f"<p>Pay with {CARD}</p>")
    product["meta_data"] = _meta({"_gtin": EAN, "ean_code": EAN, "supplier_note": EAN})
    kept = minimize(product)
    assert kept["sku"] == EAN and kept["global_unique_id"] == EAN
    assert kept["description"] == f"<p>Pay with {REMOVED}</p>"
    assert [m["value"] for m in kept["meta_data"]] == [EAN, EAN, REMOVED]
    body = order(9, "2026-12-06T06:00:00")
    body["line_items"][0]["sku"] = EAN
    body["customer_note"] = f"card {CARD.replace(' ', '-')}"
    body["billing"]["company"] = f"Acme {CARD}"
    kept = minimize(body)
    assert kept["line_items"][0]["sku"] == EAN  # the product's code, in the order
    assert (
        kept["customer_note"] == f"card {REMOVED}"
        and kept["billing"]["company"] == "Acme " + REMOVED
    )
    # A number only looks like a card when it passes Luhn.
    assert minimize_value("order 4242 4242 4242 4241") == "order 4242 4242 4242 4241"


def test_the_shortcut_keeps_what_the_walk_keeps_for_every_gateway() -> None:
    for g in GATEWAYS:
        for meta in (g["order"], g["user"], {**g["order"], **KEPT["order"]}):
            body = order(10, "2026-12-06T06:00:00")
            body.update(payment_method=g["payment_method"], meta_data=_meta(meta))
            assert minimize(body) == minimize_value(body), g["gateway"]
            assert MARKER not in json.dumps(minimize(body)), g["gateway"]
    plain = order(11, "2026-12-06T06:00:00")
    plain["meta_data"] = _meta(KEPT["order"])
    assert minimize(plain) == minimize_value(plain) and "order_key" not in minimize(plain)


# -- the mapping -----------------------------------------------------------------------------


@pytest.mark.attack("5: `_wcpay_customer_id` mapped to a Brevo attribute: `check` refuses it")
def test_a_mapping_that_names_a_payment_key_is_refused(tmp_path: Path) -> None:
    for key in ("_wcpay_customer_id", "_transaction_id", "_mollie_customer_id", "session_tokens",
                "_wc_authorize_net_cim_credit_card_customer_id", "_intent_id"):  # fmt: skip
        data = config_data(tmp_path)
        data["connectors"]["woocommerce"]["customer_mapping"] = {**MAPPING, f"meta_data.{key}": "X"}
        with pytest.raises(ValidationError) as info:
            Config.model_validate(data)
        assert f"'meta_data.{key}' is payment data, which never leaves the agent" in str(info.value)
    data = config_data(tmp_path)
    data["connectors"]["woocommerce"]["customer_mapping"] = {
        **MAPPING,
        "meta_data._wcpay_customer_id": "WCPAY_ID",
    }
    path = write_config(tmp_path / "config.yaml", data)
    run = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check", "--config", str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert run.returncode != 0, run.stdout
    assert "customer_mapping" in run.stderr, run.stderr
    assert "meta key '_wcpay_customer_id' names a payment record (wcpay)" in run.stderr
    assert "remove it or map another field" in run.stderr
    # The normal keys of the same mapping pass.
    data["connectors"]["woocommerce"]["customer_mapping"] = MAPPING
    Config.model_validate(data)


# -- through the doors -----------------------------------------------------------------------


def _paid_order(order_id: int, gateway: dict[str, Any]) -> dict[str, Any]:
    body = order(order_id, gmt(time.time()))
    body.update(status="processing", payment_method=gateway["payment_method"])
    body["billing"]["email"] = f"buyer{order_id}@example.com"
    body["meta_data"] = _meta({**gateway["order"], **KEPT["order"]})
    body["line_items"][0]["meta_data"] = _meta({"_card_last4": "4242", "Size": "M"}, 100)
    return body


def _customer(customer_id: int, gateway: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(json.loads((DOCS_EXAMPLES / "customer.json").read_text()))
    body.update(id=customer_id, email=f"customer{customer_id}@example.com")
    body["date_modified_gmt"] = gmt(time.time())
    body["meta_data"] = _meta({**gateway["user"], **KEPT["user"]})
    return body


def _store_bytes(cfg: Config) -> str:
    out = b""
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{cfg.agent.store_path}{suffix}")
        if path.exists():
            out += path.read_bytes()
    return out.decode("latin-1")


def _leaks(text: str) -> list[str]:
    """The gateway values (by their marker) and keys found in `text`."""
    found = [MARKER] if MARKER in text else []
    return found + [k for k in _all_keys() if f'"{k}"' in text]


@pytest.mark.attack("5: every major gateway's meta through the stream and webhook doors")
async def test_gateway_meta_through_both_doors_reaches_neither_store_nor_brevo(
    tmp_path: Path,
) -> None:
    async with BrevoFake() as fake:
        data = config_data(tmp_path, brevo=live(fake, max_backoff="1s"))
        data["agent"]["processing"] = "inline"
        data["connectors"]["woocommerce"]["customer_mapping"] = MAPPING
        cfg = Config.model_validate(data)
        async with running(cfg) as app:
            streamed = []
            for i, gateway in enumerate(GATEWAYS):
                streamed.append({"id": f"o-{600 + i}", "topic": "order.created",
                                 "resource": "order", "resource_id": 600 + i,
                                 "payload": _paid_order(600 + i, gateway)})  # fmt: skip
                streamed.append({"id": f"c-{800 + i}", "topic": "customer.created",
                                 "resource": "customer", "resource_id": 800 + i,
                                 "payload": _customer(800 + i, gateway)})  # fmt: skip
            async with client(app) as ws:
                await hello(ws)
                await ws.send(batch("b1", streamed))
                ack = json.loads(await ws.recv())
                assert sorted(ack["accepted"]) == sorted(e["id"] for e in streamed), ack
                assert ack["rejected"] == []
            url = f"http://127.0.0.1:{app.http.port}/webhooks/woocommerce/a"
            async with aiohttp.ClientSession() as s:
                for i, gateway in enumerate(GATEWAYS):
                    for topic, body in (("order.created", _paid_order(700 + i, gateway)),
                                        ("customer.created", _customer(900 + i, gateway))):  # fmt: skip
                        raw = json.dumps(body).encode()
                        headers = {"Content-Type": "application/json",
                                   "X-WC-Webhook-Topic": topic,
                                   "X-WC-Webhook-Signature": sign(raw, SECRETS["a"]),
                                   "X-WC-Webhook-Delivery-ID": f"{topic[0]}{i:031d}"}  # fmt: skip
                        async with s.post(url, data=raw, headers=headers) as r:
                            assert r.status == 200, await r.text()
            n = len(GATEWAYS)
            orders = {f"{600 + i}" for i in range(n)} | {f"{700 + i}" for i in range(n)}
            emails = {f"customer{800 + i}@example.com" for i in range(n)}
            emails |= {f"customer{900 + i}@example.com" for i in range(n)}
            await fake.wait_for(
                lambda: (
                    orders <= {o.split("-")[-1] for o in fake.orders}
                    and emails <= set(fake.contacts)
                ),
                timeout=30,
            )
            await app.wait_idle(within=30)
            assert _leaks(_store_bytes(cfg)) == []
            # The audit: every event stored once, none refused, every order once in Brevo.
            stored = inbox_ids(cfg, "a")
            assert len(stored) == len(set(stored)) == 4 * n
            assert dead_refs(cfg) == []
        assert _leaks(_store_bytes(cfg)) == []
        sent = json.dumps([[r.path, r.query, r.json] for r in fake.requests])
        assert _leaks(sent) == []
        assert sorted(o.split("-")[-1] for o in fake.orders) == sorted(orders)
        # What is not payment data is still mapped and sent.
        for email in emails:
            attributes = fake.contacts[email]["attributes"]
            assert attributes["LOYALTY_TIER"] == "gold", attributes
            assert attributes["VAT_NUMBER"] == "FR40303265045", attributes
        fake.assert_no_spec_violations()


def test_the_plugin_holds_the_same_rule() -> None:
    """wp-plugin's WooBrevo_Payloads lists the same words, pairs and gateway names as
    agent/core/minimize.py: payment meta that one side drops, the other drops too."""
    php = (ROOT / "wp-plugin" / "includes" / "class-woobrevo-payloads.php").read_text()

    def listed(name: str) -> set[str]:
        match = re.search(rf"const {name} = array\((.*?)\);", php, re.DOTALL)
        assert match, name
        return set(re.findall(r"'([^']*)'", match.group(1)))

    assert listed("PAYMENT_WORDS") == rule._WORDS
    assert listed("PAYMENT_PAIRS") == {f"{a} {b}" for a, b in rule._PAIRS}
    assert listed("LEADING_GATEWAYS") == rule._LEADING
    assert listed("NOT_PAY") == rule._NOT_PAY
    assert listed("GENERIC_ID_WORDS") == rule._GENERIC_ID_WORDS
    assert listed("BARCODE_WORDS") == rule._BARCODE_WORDS
    assert listed("CATALOGUE_FIELDS") == rule.CATALOGUE_FIELDS
    assert listed("PAYMENT_FIELDS") == rule.DROPPED_FIELDS
