"""Export (issue 14): the plugin's personal-data exporter asks the agent over the websocket what
it holds about an email; the exporter's connection leaves the shipper's link as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.core.privacy import export_groups
from tests.agent.doorkit import HELLO, client, config_data, hello, running
from tests.agent.test_erasure import EMAIL, LOW, cart_event, order_event, send
from tests.fakes.brevo import BrevoFake
from tests.kit import live, until


async def _export(ws: Any, request: str, email: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "export", "request": request, "email": email}))
    answer: dict[str, Any] = json.loads(await ws.recv())
    return answer


async def _processed(app: Any) -> bool:
    backlog = (await app.http.snapshot())["sites"]["a"]["backlog"]
    return bool(backlog["inbox_depth"] == 0 and backlog["pending_jobs"] > 0)


def _values(group: dict[str, Any]) -> list[dict[str, str]]:
    return [{d["name"]: d["value"] for d in item["data"]} for item in group["items"]]


async def _exports(cfg: Config) -> tuple[list[dict[str, Any]], Any, Any, dict[str, Any]]:
    """The shipper sends events, then an exporter asks three times; /status meanwhile."""
    async with running(cfg) as app, client(app) as shipper:
        await hello(shipper)
        await send(shipper, "b1", [order_event("o-1", 901), cart_event("c-1")])
        await until(lambda: _processed(app), 15, what="both events processed")
        before = await app.http.snapshot()
        link = {k: before["sites"]["a"][k] for k in ("connections", "last_hello", "site_url")}
        assert link["connections"] == 1

        async with client(app) as exporter:
            other = {**HELLO, "site_url": "https://exporter.example/"}
            await exporter.send(json.dumps(other))
            assert json.loads(await exporter.recv())["type"] == "welcome"
            answer = await _export(exporter, "r-1", EMAIL)
            nobody = await _export(exporter, "r-2", "nobody@example.org")
            bad = await _export(exporter, "r-3", "not an address")
            during = await app.http.snapshot()
        after = await app.http.snapshot()
    return [answer, nobody, bad], during, after, link


async def test_export_lists_what_the_agent_holds(tmp_path: Path) -> None:
    async with BrevoFake() as fake:
        fake.outage(503)  # the Brevo writes wait: the export lists them
        data = config_data(tmp_path, brevo=live(fake, max_backoff="1s"))
        data["agent"]["processing"] = "inline"
        cfg = Config.model_validate(data)
        answers, during, after, link = await _exports(cfg)
    answer, nobody, bad = answers

    assert answer["type"] == "export_result" and answer["request"] == "r-1"
    groups = {g["id"]: g for g in answer["groups"]}
    assert set(groups) == {
        "woobrevo-agent-consent",
        "woobrevo-agent-events",
        "woobrevo-agent-jobs",
        "woobrevo-agent-carts",
        "woobrevo-agent-orders",
    }
    (consent,) = _values(groups["woobrevo-agent-consent"])
    assert consent["subscribed"] == "yes" and consent["source"] == "checkout_classic"
    events = _values(groups["woobrevo-agent-events"])
    assert [(e["event"], e["topic"]) for e in events] == [
        ("o-1", "order.created"),
        ("c-1", "cart.updated"),
    ]
    assert all(e["received"].endswith("Z") for e in events)
    (fact,) = _values(groups["woobrevo-agent-orders"])
    assert fact["order"] == "901" and fact["status"] == "processing"
    (cart,) = _values(groups["woobrevo-agent-carts"])
    assert cart["cart"] == "7" and cart["status"] == "active" and cart["currency"] == "EUR"
    assert {j["kind"] for j in _values(groups["woobrevo-agent-jobs"])} >= {"contact", "order"}
    for group in answer["groups"]:
        assert group["label"] and group["items"]
        for item in group["items"]:
            assert all(isinstance(d["value"], str) for d in item["data"])
    assert LOW not in json.dumps(answer).lower()  # the exporter knows the address already

    assert nobody == {"type": "export_result", "request": "r-2", "groups": []}
    assert bad["groups"] == [] and "email" in bad["error"]
    # the shipper's link keeps its own hello while the exporter is there and after it left
    for snap in (during, after):
        assert snap["sites"]["a"]["site_url"] == link["site_url"] == HELLO["site_url"]
        assert snap["sites"]["a"]["last_hello"] == link["last_hello"]
    for snap in (during, after):  # the exporter's connection is never counted as the link
        assert snap["sites"]["a"]["connections"] == 1


async def test_export_before_hello_is_a_protocol_error(tmp_path: Path) -> None:
    async with running(Config.model_validate(config_data(tmp_path))) as app, client(app) as ws:
        answer = await _export(ws, "r-1", EMAIL)
        assert answer == {"type": "error", "code": "hello_required",
                          "message": "send hello before export"}  # fmt: skip


def test_export_groups_are_strings_in_the_exporters_shape() -> None:
    groups = export_groups(
        {
            "consent": [
                {"subscribed": True, "since": 1_796_000_000.0, "source": "my_account", "doi": None}
            ],
            "suppressions": [{"list_id": 0, "reason": "spam", "since": 1_796_000_000.5}],
            "events": [],
        }
    )
    assert groups == [
        {
            "id": "woobrevo-agent-consent",
            "label": "Marketing consent (WooBrevo agent)",
            "items": [
                {
                    "id": "woobrevo-agent-consent-1",
                    "data": [
                        {"name": "subscribed", "value": "yes"},
                        {"name": "since", "value": "2026-11-30T00:53:20Z"},
                        {"name": "source", "value": "my_account"},
                    ],
                }
            ],
        },
        {
            "id": "woobrevo-agent-suppressions",
            "label": "Brevo list suppressions (WooBrevo agent)",
            "items": [
                {
                    "id": "woobrevo-agent-suppressions-1",
                    "data": [
                        {"name": "list_id", "value": "0"},
                        {"name": "reason", "value": "spam"},
                        {"name": "since", "value": "2026-11-30T00:53:20Z"},
                    ],
                }
            ],
        },
    ]
