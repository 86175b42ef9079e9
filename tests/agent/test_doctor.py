"""`woobrevo-agent doctor`: each check fails with its fix against a fake set up to show that
fault, and a healthy site passes every row (exit 0)."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import shutil
import sys
import types
import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel
from websockets.asyncio.client import connect

from agent.app import App
from agent.cli.doctor import run_doctor, stream_url
from agent.config import Config, WooSection
from agent.core.checks import (
    Check,
    Result,
    attribute_type,
    cron_check,
    exit_code,
    render_table,
)
from agent.core.webhooks import install_topics, sign
from tests import kit
from tests.agent.doorkit import HELLO
from tests.conftest import ROOT
from tests.fakes.brevo import BrevoFake
from tests.fakes.woocommerce import WooFake
from tests.kit import UNIT, until, write_config

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
    return kit.config_data(
        tmp,
        sites=[kit.site("shop", TOKEN, **site)],
        agent={"public_url": PUBLIC},
        brevo=kit.live(brevo),
        woocommerce={
            **kit.store(woo),
            "lists": {"all_customers": 50, "buyers": 51},
            "customer_mapping": MAPPING,
        },
    )


def rows(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def doctor_cli(tmp: Path, data: dict[str, Any]) -> tuple[int, str]:
    """`woobrevo-agent doctor` as a user runs it: exit code and output, whitespace collapsed."""
    config = write_config(tmp / "doctor.yaml", data)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", "doctor", "--config", str(config), "--site", "shop",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60 * UNIT)
    assert proc.returncode is not None
    return proc.returncode, " ".join((out + err).decode().split())


async def doctor(tmp: Path, store: WooFake, brevo: BrevoFake, **kw: Any) -> dict[str, Check]:
    """Doctor's rows for a config pointing at the fakes; `woo=` and `site=` override keys."""
    site = kw.pop("site", {})
    data = config_data(tmp, store, brevo, **site)
    for key, value in kw.pop("woo", {}).items():
        data["connectors"]["woocommerce"][key] = value
    checks = await run_doctor(Config.model_validate(data), "shop", **kw)
    names = [c.name for c in checks]
    assert len(names) == 13 and len(set(names)) == 13  # one row per check, always
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


@pytest.mark.parametrize(
    ("agent", "url"),
    [
        ({}, "ws://127.0.0.1:8765/v1/stream"),
        (
            {"listen": {"stream": "0.0.0.0:9000", "http": "0.0.0.0:9001"}},
            "ws://<this host>:9000/v1/stream",
        ),
        # public_url on the HTTP listener itself: no proxy, the stream has its own port
        ({"public_url": "http://203.0.113.5:8766"}, "ws://203.0.113.5:8765/v1/stream"),
        (
            {"public_url": "http://203.0.113.5:8766", "tls": {"cert": "c.pem", "key": "k.pem"}},
            "wss://203.0.113.5:8765/v1/stream",
        ),
        # a proxy in front: it forwards the stream path on the same public address
        ({"public_url": "https://agent.example.com"}, "wss://agent.example.com/v1/stream"),
        (
            {"public_url": "https://agent.example.com:8443/woobrevo/"},
            "wss://agent.example.com:8443/woobrevo/v1/stream",
        ),
    ],
)
def test_the_stream_url_doctor_suggests(agent: dict[str, Any], url: str) -> None:
    cfg = Config.model_validate({"agent": agent, "brevo": {}, "connectors": {"woocommerce": {
        "store_url": "https://shop.example.com"}}})  # fmt: skip
    assert stream_url(cfg) == url


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


# -- the auth mode --------------------------------------------------------------------------------


@needs_openssl
async def test_host_that_strips_authorization_is_told_auth_query(
    tmp_path: Path, brevo: BrevoFake
) -> None:
    async with WooFake(customers=3, orders=2, scheme="https", strip_authorization=True) as woo:
        data = config_data(tmp_path, woo, brevo)
        code, text = await doctor_cli(tmp_path, data)
        assert code == 1, text
        assert "strips the Authorization header" in text and "`auth: query`" in text
        assert "entry of `sites` with id shop" in text
        assert_names_existing_keys(text)
        # Following the advice: the same doctor now passes the keys, sent in the query only.
        woo.requests.clear()
        got = await doctor(tmp_path, woo, brevo, site={"auth": "query"})
        assert got["API keys"] == Check("API keys", Result.PASS, "accepted (query)")
        assert got["key permissions"].result is Result.PASS
        assert woo.requests and all(r.authorization == "" for r in woo.requests)
        assert all("consumer_secret=" in r.query for r in woo.requests)

    # A key the store does not know is not mistaken for a stripped header.
    async with WooFake(customers=3, orders=2, scheme="https") as woo:
        got = await doctor(tmp_path, woo, brevo, woo={"consumer_key": "ck_" + "1" * 40})
    assert got["API keys"].result is Result.FAIL
    assert "is probably wrong" in got["API keys"].detail
    assert "strips the Authorization header" not in got["API keys"].detail


async def test_basic_auth_over_http_is_warned(tmp_path: Path, brevo: BrevoFake) -> None:
    async with WooFake(customers=3, orders=2) as woo:
        got = await doctor(tmp_path, woo, brevo, woo={"auth": "basic"})
    assert got["TLS certificate"].result is Result.WARN
    assert "`auth: basic` with an http:// `store_url`" in got["TLS certificate"].detail
    assert got["API keys"].result is Result.FAIL
    assert "only over HTTPS" in got["API keys"].detail


# -- advice names only keys that exist ----------------------------------------------------------

# A config key as advice writes it: `backfill.per_page`, `auth: query`, `verify_ssl: false`.
KEY_SPAN = re.compile(r"`([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)(?:: ([^`\s]+))?`")
ADVICE_SOURCES = (
    "agent/cli/doctor.py",
    "agent/woocommerce/client.py",
    "agent/woocommerce/errors.py",
    "agent/woocommerce/factory.py",
    "agent/core/checks.py",
    "agent/core/webhooks.py",
    "agent/doors/poller.py",
)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _allowed(annotation: Any) -> set[str] | None:
    """The values a key takes as YAML words, or None when any value goes."""
    if annotation is bool:
        return {"true", "false"}
    if typing.get_origin(annotation) is typing.Literal:
        return {str(a) for a in typing.get_args(annotation)}
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            allowed = _allowed(arg)
            if allowed is not None:
                return allowed
    return None


def key_problem(path: str, value: str | None) -> str | None:
    """Why `path: value` is not a key of the config (from the top or within a site), or None."""
    for root in (Config, WooSection):
        model: type[BaseModel] | None = root
        annotation: Any = None
        for part in path.split("."):
            field = model.model_fields.get(part) if model is not None else None
            if field is None or part == "source":
                break
            annotation, model = field.annotation, _model_in(field.annotation)
        else:
            allowed = _allowed(annotation)
            if value is None or allowed is None or value in allowed:
                return None
            return f"`{path}: {value}`: {path} takes {sorted(allowed)}"
    return f"`{path}` is not a config key"


def assert_names_existing_keys(text: str) -> list[str]:
    spans = KEY_SPAN.findall(text)
    # A value filled in at run time (\0 stands for an f-string field) is checked by the run.
    problems = [
        p
        for path, value in spans
        if (p := key_problem(path, value if value and "\0" not in value else None))
    ]
    assert not problems, problems
    return [path for path, _ in spans]


def _texts(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else "\0" for v in node.values)]
    return []


def test_advice_names_only_existing_keys() -> None:
    named: list[str] = []
    for source in ADVICE_SOURCES:
        tree = ast.parse((ROOT / source).read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if id(node) in docstrings:
                continue  # docstrings name code (`woocommerce_rest_cannot_view`), not keys
            for text in _texts(node):
                named += assert_names_existing_keys(text)
    # The check is not vacuous: the advice that used to name missing keys is among them.
    assert {"auth", "store_url", "backfill.per_page", "ca_file", "agent.public_url"} <= set(named)
    assert key_problem("auth", "query") is None and key_problem("verify_ssl", "false") is None
    assert key_problem("auth", "header") is not None
    assert key_problem("per_page", None) is not None  # it is backfill.per_page
    assert key_problem("connectors.woocommerce.timeout", None) is None


# -- WP-Cron --------------------------------------------------------------------------------------


def hooks_to_agent(woo: WooFake) -> None:
    url = f"{PUBLIC}/webhooks/woocommerce/shop"
    for topic in install_topics(
        {"customers": True, "orders": True, "products": True, "coupons": True}, []
    ):
        woo.store.add_webhook("WooBrevo shop", topic, url, SECRET, "active")


async def test_wp_cron_off_with_webhooks_and_no_delivery_says_run_a_server_cron(
    tmp_path: Path, brevo: BrevoFake
) -> None:
    async with WooFake(customers=3, orders=2, wp_cron=False) as woo:
        hooks_to_agent(woo)
        data = config_data(tmp_path, woo, brevo, webhook_secret=SECRET)
        code, text = await doctor_cli(tmp_path, data)
        assert "WP-Cron warn" in text, text
        assert "DISABLE_WP_CRON" in text and "no webhook delivery has reached the agent" in text
        assert "wp cron event run --due-now --path=/var/www/html" in text
        assert "wp action-scheduler run --group=woocommerce-webhooks" in text
        assert "/wp-cron.php?doing_wp_cron" in text
        assert code == 1  # from "stream last seen" (no agent runs): WP-Cron only warns, as an
        # idle store has no deliveries yet either

        # One delivery reaches the running agent: a server cron runs WP-Cron after all.
        cfg = Config.model_validate(data)
        async with App(cfg) as app:
            body = json.dumps(woo.object("customers", woo.ids("customers")[0])).encode()
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"http://127.0.0.1:{app.http.port}/webhooks/woocommerce/shop",
                    data=body,
                    headers={
                        "Content-Type": "application/json",
                        "X-WC-Webhook-Topic": "customer.updated",
                        "X-WC-Webhook-Signature": sign(body, SECRET),
                        "X-WC-Webhook-Delivery-ID": "41",
                    },
                ) as resp,
            ):
                assert resp.status == 200, await resp.text()
            data["agent"]["listen"]["http"] = f"127.0.0.1:{app.http.port}"
            live = rows(await run_doctor(Config.model_validate(data), "shop"))
        # And from the state store once the agent is gone.
        stored = await doctor(tmp_path, woo, brevo, site={"webhook_secret": SECRET})
    for got in (live, stored):
        row = got["WP-Cron"]
        assert row.result is Result.PASS, row
        assert "but a server cron runs it" in row.detail and "s ago" in row.detail


async def test_wp_cron_on_passes(tmp_path: Path, brevo: BrevoFake) -> None:
    async with WooFake(customers=3, orders=2) as woo:
        hooks_to_agent(woo)
        got = await doctor(tmp_path, woo, brevo, site={"webhook_secret": SECRET})
        assert got["WP-Cron"].result is Result.PASS
        assert got["WP-Cron"].detail.startswith("on:")
        assert "_fields=environment.wp_cron" in next(
            r.query for r in woo.requests if r.path.endswith("/system_status")
        ).replace("%2C", ",").replace("%2E", ".")


async def test_wp_cron_off_without_a_secret_but_hooks_to_the_agent(
    tmp_path: Path, brevo: BrevoFake
) -> None:
    async with WooFake(customers=3, orders=2, wp_cron=False) as woo:
        hooks_to_agent(woo)  # installed earlier; the secret is not in this config
        got = await doctor(tmp_path, woo, brevo)
    assert got["WP-Cron"].result is Result.WARN
    assert "no webhook delivery" in got["WP-Cron"].detail


def test_cron_verdicts() -> None:
    def row(wp_cron: object, **kw: Any) -> Check:
        options: dict[str, Any] = {
            "webhooks_in_use": True,
            "last_delivery_age": None,
            "site_url": "https://shop.example/",
        }
        return cron_check(wp_cron, **{**options, **kw})

    assert row(True).result is Result.PASS
    assert row(True, last_delivery_age=12.0).detail.endswith("arrived 12 s ago")
    off = row(False)
    assert off.result is Result.WARN
    assert "curl -s https://shop.example/wp-cron.php?doing_wp_cron" in off.detail
    assert row(False, last_delivery_age=5.0).result is Result.PASS
    plugin = row(False, webhooks_in_use=False, plugin=True)
    assert plugin.result is Result.WARN and "heartbeat" in plugin.detail
    assert row(False, webhooks_in_use=False).result is Result.SKIP
    assert row(None).result is Result.WARN  # a store that does not say


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
    # the table wraps its detail column: read the words, not the lines
    assert "Consumer secret is invalid" in " ".join(bad_out.decode().split())
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
        "WP-Cron",
        "stream last seen",
        "Brevo API key",
        "Brevo lists",
        "Brevo attributes",
    ):
        line = next(line for line in text.splitlines() if line.startswith(name))
        assert line[len(name) :].split()[0] == "pass", line
