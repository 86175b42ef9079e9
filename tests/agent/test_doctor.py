"""`woobrevo-agent doctor`: each check fails with its fix against a fake set up to show that
fault, and a healthy site passes every row (exit 0)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from agent.app import App
from agent.config import Config
from agent.core.checks import Check, Result, attribute_type, exit_code, render_table
from agent.core.webhooks import install_topics
from agent.doctor import run_doctor
from agent.tokens import token_hash
from tests.agent.doorkit import HELLO, until
from tests.conftest import ROOT, UNIT, write_config
from tests.fakes.brevo import BrevoFake
from tests.fakes.woocommerce import WooFake

TOKEN = "token-for-the-doctor-test-" + "q" * 24
SECRET = "doctor-webhook-secret-0123456789"
PUBLIC = "https://agent.example"
MAPPING = {
    "email": "email",
    "first_name": "FIRSTNAME",
    "billing.phone": "SMS",
    "orders_count": "ORDER_COUNT",
    "total_spent": "TOTAL_SPENT",
    "last_order_date": "LAST_ORDER_DATE",
    "meta_data.loyalty_tier": "LOYALTY_TIER",
}
ATTRIBUTES = {
    "ORDER_COUNT": "float",
    "TOTAL_SPENT": "float",
    "LAST_ORDER_DATE": "date",
    "LOYALTY_TIER": "text",
}
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def config_data(tmp: Path, woo: WooFake, brevo: BrevoFake, **site: Any) -> dict[str, Any]:
    woo_block: dict[str, Any] = {
        "store_url": woo.url,
        "consumer_key": woo.consumer_key,
        "consumer_secret": woo.consumer_secret,
        "lists": {"all_customers": 50, "buyers": 51},
        "customer_mapping": dict(MAPPING),
    }
    if woo.ca_file:
        woo_block["ca_file"] = woo.ca_file
    return {
        "agent": {
            "listen": {"stream": "127.0.0.1:0", "http": "127.0.0.1:0"},
            "state_dir": str(tmp / "state"),
            "public_url": PUBLIC,
        },
        "brevo": {"api_key": brevo.api_key, "base_url": brevo.base_url, "dry_run": False},
        "connectors": {"woocommerce": woo_block},
        "sites": [{"id": "shop", "token_sha256": token_hash(TOKEN), **site}],
    }


def rows(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def doctor(tmp: Path, store: WooFake, brevo: BrevoFake, **kw: Any) -> dict[str, Check]:
    """Doctor's rows for a config pointing at the fakes; `woo=` and `site=` override keys."""
    site = kw.pop("site", {})
    data = config_data(tmp, store, brevo, **site)
    for key, value in kw.pop("woo", {}).items():
        data["connectors"]["woocommerce"][key] = value
    checks = await run_doctor(Config.model_validate(data), "shop", **kw)
    names = [c.name for c in checks]
    assert len(names) == 12 and len(set(names)) == 12  # one row per check, always
    return rows(checks)


@pytest.fixture
async def brevo() -> AsyncIterator[BrevoFake]:
    async with BrevoFake(attributes=ATTRIBUTES, lists=[50, 51]) as fake:
        yield fake
    fake.assert_no_spec_violations()


# -- the store's faults -------------------------------------------------------------------------


async def test_invalid_keys(tmp_path: Path, brevo: BrevoFake) -> None:
    async with WooFake(customers=3, orders=2) as woo:
        got = await doctor(tmp_path, woo, brevo, woo={"consumer_secret": "cs_" + "0" * 40})
    row = got["API keys"]
    assert row.result is Result.FAIL
    assert "signature does not match" in row.detail and "consumer secret" in row.detail
    assert got["REST API reachable"].result is Result.PASS
    assert got["key permissions"].result is Result.SKIP

    async with WooFake(customers=3, orders=2) as woo:
        got = await doctor(tmp_path, woo, brevo, woo={"consumer_key": "ck_" + "1" * 40})
    assert "does not know this consumer key" in got["API keys"].detail


async def test_insufficient_permission(tmp_path: Path, brevo: BrevoFake) -> None:
    async with WooFake(customers=3, orders=2) as woo:
        key = woo.add_key(permissions="write")
        got = await doctor(
            tmp_path,
            woo,
            brevo,
            woo={"consumer_key": key.consumer_key, "consumer_secret": key.consumer_secret},
        )
        row = got["key permissions"]
        assert row.result is Result.FAIL
        assert "lacks read permission" in row.detail and "Permissions to Read" in row.detail

        weak = woo.add_key(capable=False)
        got = await doctor(
            tmp_path,
            woo,
            brevo,
            woo={"consumer_key": weak.consumer_key, "consumer_secret": weak.consumer_secret},
        )
    assert got["key permissions"].result is Result.FAIL
    assert "Administrator or Shop manager" in got["key permissions"].detail


@needs_openssl
async def test_tls_certificate_not_trusted(tmp_path: Path, brevo: BrevoFake) -> None:
    async with WooFake(customers=3, orders=2, scheme="https") as woo:
        got = await doctor(tmp_path, woo, brevo, woo={"ca_file": None})
    row = got["TLS certificate"]
    assert row.result is Result.FAIL
    assert "certificate verify failed" in row.detail and "ca_file" in row.detail


async def test_slow_store(tmp_path: Path, brevo: BrevoFake) -> None:
    async with WooFake(customers=3, orders=2, delay=0.3) as woo:
        got = await doctor(tmp_path, woo, brevo, slow_after=0.2)
    row = got["response time"]
    assert row.result is Result.FAIL
    assert "slow store" in row.detail and "backfill.per_page" in row.detail
    assert "object cache" in row.detail


async def test_slow_store_that_times_out(tmp_path: Path, brevo: BrevoFake) -> None:
    async with WooFake(customers=3, orders=2, delay=1.0) as woo:
        got = await doctor(tmp_path, woo, brevo, woo={"timeout": "300ms"})
    assert got["response time"].result is Result.FAIL
    assert "no complete answer within 0.3 s" in got["response time"].detail


async def test_mapped_meta_key_missing(tmp_path: Path, brevo: BrevoFake) -> None:
    mapping = dict(MAPPING, **{"meta_data.loyalty_points": "LOYALTY_POINTS"})
    async with WooFake(customers=10, orders=2) as woo:
        got = await doctor(tmp_path, woo, brevo, woo={"customer_mapping": mapping})
    row = got["custom fields (meta)"]
    assert row.result is Result.FAIL
    assert "loyalty_points" in row.detail and "loyalty_tier" not in row.detail.split("(")[0]
    assert "brevo_opt_in" in row.detail  # the keys the store does have, as a hint


async def test_pagination_headers_stripped(tmp_path: Path, brevo: BrevoFake) -> None:
    async with WooFake(customers=3, orders=2, strip_headers=("X-WP-TotalPages",)) as woo:
        got = await doctor(tmp_path, woo, brevo)
    row = got["pagination headers"]
    assert row.result is Result.FAIL
    assert "X-WP-TotalPages" in row.detail and "strips them" in row.detail


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ({"rest_enabled": False}, "no REST route"),
        ({"pretty_permalinks": False}, "pretty permalinks"),
    ],
)
async def test_rest_api_not_reachable(
    tmp_path: Path, brevo: BrevoFake, fault: dict[str, Any], words: str
) -> None:
    async with WooFake(customers=3, orders=2, **fault) as woo:
        got = await doctor(tmp_path, woo, brevo)
    assert got["REST API reachable"].result is Result.FAIL
    assert words in got["REST API reachable"].detail


async def test_store_unreachable(tmp_path: Path, brevo: BrevoFake) -> None:
    async with WooFake(customers=3, orders=2) as woo:
        data_url = woo.url
    async with WooFake(customers=1, orders=1) as other:
        got = await doctor(tmp_path, other, brevo, woo={"store_url": data_url})
    assert got["REST API reachable"].result is Result.FAIL
    assert "cannot reach the store" in got["REST API reachable"].detail


async def test_webhook_disabled_by_woocommerce(tmp_path: Path, brevo: BrevoFake) -> None:
    async with WooFake(customers=3, orders=2) as woo:
        url = f"{PUBLIC}/webhooks/woocommerce/shop"
        for topic in install_topics({"customers": True, "orders": True}, []):
            woo.store.add_webhook("WooBrevo shop", topic, url, SECRET, "active")
        woo.store.webhooks[1]["status"] = "disabled"  # 7 failed deliveries (NOTES §1.1)
        got = await doctor(tmp_path, woo, brevo, site={"webhook_secret": SECRET})
    row = got["webhooks"]
    assert row.result is Result.FAIL
    assert "disabled" in row.detail and "webhooks install --site shop" in row.detail


async def test_stream_never_seen(tmp_path: Path, brevo: BrevoFake) -> None:
    async with WooFake(customers=3, orders=2) as woo:
        got = await doctor(tmp_path, woo, brevo)
        row = got["stream last seen"]
        assert row.result is Result.FAIL
        assert "no agent answers" in row.detail and "token create --site shop" in row.detail

        # A running agent the plugin never reached.
        cfg = Config.model_validate(config_data(tmp_path, woo, brevo))
        async with App(cfg) as app:
            data = config_data(tmp_path, woo, brevo)
            data["agent"]["listen"]["http"] = f"127.0.0.1:{app.http.port}"
            checks = await run_doctor(Config.model_validate(data), "shop")
    row = rows(checks)["stream last seen"]
    assert row.result is Result.FAIL
    assert "never since the agent started" in row.detail and "WP-Cron" in row.detail


# -- Brevo's faults -----------------------------------------------------------------------------


async def test_brevo_key_refused(tmp_path: Path) -> None:
    async with WooFake(customers=3, orders=2) as woo, BrevoFake(api_key="xkeysib-other") as brevo:
        data = config_data(tmp_path, woo, brevo)
        data["brevo"]["api_key"] = "xkeysib-wrong"
        got = rows(await run_doctor(Config.model_validate(data), "shop"))
    row = got["Brevo API key"]
    assert row.result is Result.FAIL
    assert "Brevo refused the key (401 unauthorized" in row.detail and "API keys" in row.detail
    assert got["Brevo lists"].result is Result.SKIP


async def test_brevo_list_missing(tmp_path: Path) -> None:
    async with (
        WooFake(customers=3, orders=2) as woo,
        BrevoFake(attributes=ATTRIBUTES, lists=[50]) as brevo,
    ):
        got = await doctor(tmp_path, woo, brevo)
    row = got["Brevo lists"]
    assert row.result is Result.FAIL
    assert "51 (lists.buyers)" in row.detail and "Contacts → Lists" in row.detail


async def test_brevo_attributes_missing_then_fixed(tmp_path: Path) -> None:
    async with WooFake(customers=10, orders=2) as woo, BrevoFake(lists=[50, 51]) as brevo:
        got = await doctor(tmp_path, woo, brevo)
        row = got["Brevo attributes"]
        assert row.result is Result.FAIL
        assert "ORDER_COUNT (float)" in row.detail and "LAST_ORDER_DATE (date)" in row.detail
        assert "LOYALTY_TIER (text)" in row.detail and "--fix" in row.detail

        got = await doctor(tmp_path, woo, brevo, fix=True)
        assert got["Brevo attributes"].result is Result.PASS
        assert "created" in got["Brevo attributes"].detail
        assert {n: brevo.attributes[n]["type"] for n in ATTRIBUTES} == ATTRIBUTES
        assert (await doctor(tmp_path, woo, brevo))["Brevo attributes"].result is Result.PASS
        brevo.assert_no_spec_violations()

    async with (
        WooFake(customers=3, orders=2) as woo,
        BrevoFake(attributes={**ATTRIBUTES, "ORDER_COUNT": "text"}, lists=[50, 51]) as brevo,
    ):
        got = await doctor(tmp_path, woo, brevo)
    assert got["Brevo attributes"].result is Result.FAIL
    assert "ORDER_COUNT is text in Brevo, the agent sends float" in got["Brevo attributes"].detail


def test_attribute_types_and_table() -> None:
    assert attribute_type("orders_count") == "float"
    assert attribute_type("total_spent") == "float"
    assert attribute_type("first_order_date") == "date"
    assert attribute_type("date_created_gmt") == "date"
    assert attribute_type("billing.phone") == "text"
    assert attribute_type("meta_data.loyalty_points") == "text"
    table = render_table(
        [Check("API keys", Result.FAIL, "word " * 40), Check("webhooks", Result.SKIP, "not used")],
        width=60,
    )
    lines = table.splitlines()
    assert lines[0].split() == ["check", "result", "fix", "/", "detail"]
    assert lines[2].startswith("API keys  FAIL    word")
    assert all(len(line) <= 60 for line in lines)
    assert lines[-1].startswith("webhooks  skip")
    assert exit_code([Check("a", Result.WARN, ""), Check("b", Result.SKIP, "")]) == 0


# -- a healthy site, through the real command ---------------------------------------------------


@needs_openssl
async def test_healthy_site_passes_every_check_and_exits_0(
    tmp_path: Path, brevo: BrevoFake
) -> None:
    async with WooFake(customers=20, orders=5, scheme="https", seed=2) as woo:
        url = f"{PUBLIC}/webhooks/woocommerce/shop"
        for topic in install_topics(
            {"customers": True, "orders": True, "products": True, "coupons": True}, []
        ):
            woo.store.add_webhook("WooBrevo shop", topic, url, SECRET, "active")
        data = config_data(tmp_path, woo, brevo, webhook_secret=SECRET)
        app = App(Config.model_validate(data))
        async with app:
            plugin = connect(
                f"ws://127.0.0.1:{app.stream.port}/v1/stream",
                additional_headers={"Authorization": f"Bearer {TOKEN}"},
                compression=None,
            )
            async with plugin as ws:
                await ws.send(json.dumps(HELLO))
                await ws.recv()
                await until(lambda: app.stream.connected("shop"))
                data["agent"]["listen"]["http"] = f"127.0.0.1:{app.http.port}"
                config = write_config(tmp_path / "doctor.yaml", data)
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "agent.cli", "doctor", "--config", str(config), "--site", "shop",
                    cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                out, err = await asyncio.wait_for(proc.communicate(), 60 * UNIT)
        # And the same command against a broken site exits 1.
        data["connectors"]["woocommerce"]["consumer_secret"] = "wrong"
        bad = write_config(tmp_path / "bad.yaml", data)
        proc_bad = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "doctor", "--config", str(bad), "--site", "shop",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        bad_out, _ = await asyncio.wait_for(proc_bad.communicate(), 60 * UNIT)
    assert proc_bad.returncode == 1
    assert "Consumer secret is invalid" in bad_out.decode()
    text = out.decode()
    assert proc.returncode == 0, text + err.decode()
    for name in (
        "REST API reachable",
        "TLS certificate",
        "API keys",
        "key permissions",
        "response time",
        "pagination headers",
        "custom fields (meta)",
        "webhooks",
        "stream last seen",
        "Brevo API key",
        "Brevo lists",
        "Brevo attributes",
    ):
        line = next(line for line in text.splitlines() if line.startswith(name))
        assert line[len(name) :].split()[0] == "pass", line
