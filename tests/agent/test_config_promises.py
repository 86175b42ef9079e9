"""The config's promises, through the real CLI and the real agent: the original connector's
configuration works as it is, and no key `check` accepts is a silent no-op (issue 11)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from pydantic import BaseModel

from agent.app import App
from agent.config import Config, load_config
from agent.core.webhooks import sign
from tests import kit
from tests.agent.doorkit import SECRETS, TOKENS, batch, client, hello, order
from tests.conftest import ROOT, ref
from tests.fakes.brevo import BrevoFake
from tests.fakes.woocommerce import WooFake

ORIGINAL = ROOT / "tests" / "fixtures" / "original-config.yaml"
# The original config names no secret: no variable of the environment may fill one in.
CLEAN_ENV = {
    k: v for k, v in os.environ.items() if not k.startswith(("BREVO_", "WC_", "WOOBREVO_WEBHOOK"))
}


EVENT_SENT = re.compile(r"dry-run POST \S+/events (\{.*\})$")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**CLEAN_ENV, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )


def _now_gmt(offset: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + offset))


# -- 1. the original configuration, verbatim -----------------------------------------------


def test_the_original_config_passes_check_as_it_is(tmp_path: Path) -> None:
    config = shutil.copy(ORIGINAL, tmp_path / "config.yaml")
    out = cli("check", "--config", str(config), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)
    hooks = resolved["connectors"]["woocommerce"]["webhooks"]
    assert {"topic": "order.completed", "event": "order_fulfilled"} in hooks
    assert resolved["resolved_sites"][0]["brevo"]["dry_run_effective"] is True
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    # product.created, product.updated, coupon.created mapped to events
    assert len(warnings) == 3, out.stderr
    product = next(w for w in warnings if "product.created -> product_added" in w)
    assert "a Brevo event needs a contact" in product
    assert "ecommerce catalogue" in product
    coupon = next(w for w in warnings if "coupon.created -> coupon_created" in w)
    assert "coupon collection 'WooCommerce'" in coupon
    assert not [w for w in warnings if "abandoned_cart" in w]
    assert "valid (1 site(s), 3 warning(s))" in out.stderr


def test_the_original_config_runs_and_maps_order_completed(tmp_path: Path) -> None:
    """`run` on the file as it is (its own defaults: ./state, dry-run with no Brevo key): a
    completed order brings the order_fulfilled event the file maps to order.completed."""
    config = shutil.copy(ORIGINAL, tmp_path / "config.yaml")
    completed = dict(
        ref("48-order_create_completed.json"),
        date_created_gmt=_now_gmt(-60),
        date_modified_gmt=_now_gmt(),
    )
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"topic": "order.created", "payload": completed}) + "\n")
    stored = cli("ingest", "--config", str(config), "--site", "default", str(events), cwd=tmp_path)
    assert stored.returncode == 0, stored.stderr
    run = cli("run", "--config", str(config), "--until-idle", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "state" / "woobrevo.sqlite3").exists()
    events = [
        json.loads(m.group(1))["event_name"]
        for m in map(EVENT_SENT.search, run.stderr.splitlines())
        if m is not None
    ]
    assert sorted(events) == ["order_fulfilled", "order_placed"], run.stderr
    assert "config: connectors.woocommerce.webhooks[7] (product.created" in run.stderr


def test_order_fulfilled_is_read_as_order_completed(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "connectors": {
                    "woocommerce": {
                        "webhooks": [{"topic": "order.fulfilled", "event": "order_fulfilled"}]
                    }
                }
            }
        )
    )
    (hook,) = load_config(path, env={}).connectors.woocommerce.webhooks
    assert hook.topic == "order.completed"
    # The docs and the example use one name.
    example = (ROOT / "config.example.yaml").read_text()
    assert "order.completed" in example and "order.fulfilled" not in example


def test_blocks_pasted_at_the_top_level_are_told_where_they_belong(tmp_path: Path) -> None:
    original = yaml.safe_load(ORIGINAL.read_text())["connectors"]["woocommerce"]
    pasted = {
        "connectors": {"woocommerce": {"store_url": "https://shop.example"}},
        "customer_mapping": original["customer_mapping"],
        "webhooks": original["webhooks"],
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(pasted, sort_keys=False))
    out = cli("check", "--config", str(config), cwd=tmp_path)
    assert out.returncode == 2
    for key in ("customer_mapping", "webhooks"):
        assert f"{key}: this key belongs to the woocommerce block: nest it under" in out.stderr
    assert "connectors.woocommerce" in out.stderr


# -- 2. enabled: false stops everything for the site, and loses nothing --------------------


def _disabled_config(tmp_path: Path, woo: WooFake, brevo: BrevoFake, enabled: bool) -> Config:
    data = kit.config_data(
        tmp_path,
        sites=[kit.site("a", TOKENS["a"], enabled=enabled, webhook_secret=SECRETS["a"])],
        stream={"stale_after": "1s"},
        agent={"historical_after": "3650d"},
        brevo=kit.live(brevo),
        woocommerce={
            **kit.store(woo),
            "mode": "polling",
            "polling": {"interval": "300ms"},
            "lists": {"all_customers": 50, "buyers": 51},
            "webhooks": [{"topic": "order.created", "event": "order_placed"}],
        },
    )
    return Config.model_validate(data)


async def test_a_disabled_site_sends_nothing_and_keeps_what_arrives(tmp_path: Path) -> None:
    async with WooFake(customers=2, orders=3, products=1, coupons=1) as woo, BrevoFake() as brevo:
        async with App(_disabled_config(tmp_path, woo, brevo, enabled=False)) as app:
            assert "a" not in app.pollers.sites  # no polling
            assert app.forwarder.workers == {}  # no forwarding
            async with client(app) as ws:
                await hello(ws)
                events = [
                    {
                        "id": f"s-{i}",
                        "topic": "order.created",
                        "resource": "order",
                        "resource_id": i,
                        "payload": order(i),
                    }
                    for i in (701, 702)
                ]
                await ws.send(batch("b1", events))
                ack = json.loads(await ws.recv())
            assert ack["accepted"] == ["s-701", "s-702"]  # stored: the plugin may delete them
            body = json.dumps(order(703)).encode()
            headers = {
                "Content-Type": "application/json",
                "X-WC-Webhook-Topic": "order.created",
                "X-WC-Webhook-Signature": sign(body, SECRETS["a"]),
                "X-WC-Webhook-Delivery-ID": "d" * 32,
            }
            hook_url = f"http://127.0.0.1:{app.http.port}/webhooks/woocommerce/a"
            async with (
                aiohttp.ClientSession() as s,
                s.post(hook_url, data=body, headers=headers) as r,
            ):
                assert r.status == 200
            # Nothing is processed, so the agent is idle with the site's events held.
            await app.wait_idle(within=10)
            counts = await app.store.counts()
            assert counts["held"] == 3 and counts["inbox_pending"] == 0
            async with (
                aiohttp.ClientSession() as s,
                s.get(f"http://127.0.0.1:{app.http.port}/status") as r,
            ):
                site: dict[str, Any] = (await r.json())["sites"]["a"]
            assert site["enabled"] is False and site["backlog"]["inbox_depth"] == 3
        assert brevo.requests == []  # zero Brevo calls
        assert woo.requests == []  # zero REST calls

        # Enabled again: everything it kept goes out, once.
        async with App(_disabled_config(tmp_path, woo, brevo, enabled=True)) as app:
            await brevo.wait_for(lambda: {"701", "702", "703"} <= set(brevo.orders), timeout=20)
        posted = [r.json["id"] for r in brevo.requests if r.path == "/orders/status"]
        assert sorted(posted) == ["701", "702", "703"]
        brevo.assert_no_spec_violations()


def test_check_says_what_a_disabled_site_means(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"connectors": {"woocommerce": {"enabled": False}}}, sort_keys=False)
    )
    out = cli("check", "--config", str(config), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "enabled is false: nothing of this site is processed, polled or sent" in out.stderr
    backfill = cli("backfill", "--config", str(config), "--site", "default", cwd=tmp_path)
    assert backfill.returncode == 1
    assert "disabled (enabled: false)" in backfill.stderr


def test_rest_keys_without_the_store_keys_are_warned_about(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "connectors": {"woocommerce": {"store_url": "https://shop.example"}},
                "sites": [
                    {"id": "a", "polling": {"interval": "30s"}, "timeout": "10s"},
                    {"id": "b", "consumer_key": "ck_b", "consumer_secret": "cs_b"},
                ],
            }
        )
    )
    out = cli("check", "--config", str(config), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: sites[0] (a): polling, timeout set how the agent reads the store's REST API"
        " (polling, backfill, doctor), but this site has no store_url/consumer_key/"
        "consumer_secret, so they do nothing: add the keys (or env WC_CONSUMER_KEY /"
        " WC_CONSUMER_SECRET), or remove these lines"
    ]


def test_every_config_key_is_read_by_the_agent_or_warned_about() -> None:
    """A guard for "no silent no-ops": each field of the config tree is read somewhere in the
    agent outside config.py, or is on this list with the reason it need not be."""
    import agent.config as config_module

    not_read_elsewhere = {
        ("SiteEntry", "overrides"): "merged into each site by Config.resolved_sites",
        ("SiteEntry", "override_keys"): "merged into each site by Config.resolved_sites",
        ("Config", "connectors"): "merged into each site by Config.resolved_sites",
    }
    code = "\n".join(p.read_text() for p in (ROOT / "agent").rglob("*.py") if p.name != "config.py")
    models = [
        m
        for m in vars(config_module).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == "agent.config"
    ]
    unread = [
        (m.__name__, name)
        for m in models
        for name in m.model_fields
        if not re.search(rf"\.{name}\b|[\"']{name}[\"']", code)
    ]
    assert sorted(unread) == sorted(not_read_elsewhere)
