"""Every mapped date through the real agent into the Brevo fake, which refuses a wrong form."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.app import App
from agent.core.checks import attribute_problems, wanted_attributes
from agent.core.events import Door, Event, parse_event
from tests.conftest import ref
from tests.fakes.brevo import BrevoFake
from tests.kit import UNIT, load

DATE_MAPPING = {
    "date_created": "SIGNUP_DATE",
    "date_created_gmt": "SIGNUP_DATE_GMT",
    "date_modified": "MODIFIED_DATE",
    "date_modified_gmt": "MODIFIED_DATE_GMT",
    "first_order_date": "FIRST_ORDER_DATE",
    "last_order_date": "LAST_ORDER_DATE",
    "meta_data.birthday": "BIRTHDAY",
    "meta_data.subscribed_at": "SUBSCRIBED_AT",
}
YMD = re.compile(r"\d{4}-\d{2}-\d{2}")


async def create_attributes_as_doctor_fix_does(fake: BrevoFake, mapping: dict[str, str]) -> None:
    """What `doctor --fix` sends (agent/cli/doctor.py): every missing attribute, typed by
    `attribute_type`, over HTTP."""
    async with aiohttp.ClientSession(headers={"api-key": fake.api_key}) as http:
        async with http.get(f"{fake.base_url}/contacts/attributes") as response:
            existing = (await response.json())["attributes"]
        missing, wrong = attribute_problems(wanted_attributes(mapping), existing)
        assert wrong == []
        for name, kind in missing.items():
            url = f"{fake.base_url}/contacts/attributes/normal/{name}"
            async with http.post(url, json={"type": kind}) as response:
                assert response.status == 201, name


def meta(*pairs: tuple[str, Any]) -> list[dict[str, Any]]:
    return [{"id": 900 + i, "key": k, "value": v} for i, (k, v) in enumerate(pairs)]


def customer_events() -> list[tuple[str, dict[str, Any]]]:
    john = ref("customer.json")  # date_created 2017-03-21T16:09:28, local; GMT 19:09
    john["meta_data"] = meta(
        ("birthday", 449884800), ("subscribed_at", "2024-05-01T23:30:00+02:00")
    )
    alice = ref("25-customer_create_1.json")
    alice["meta_data"] += meta(("birthday", "19840405"), ("subscribed_at", "1714521600000"))
    zoe = ref("27-customer_create_3.json")  # WooCommerce's own: birthday "1990-04-01"
    zoe["meta_data"] += meta(("subscribed_at", "2024-05-01 08:00:00"))
    # A store at UTC-3: its calendar date and UTC's differ.
    late = dict(
        ref("customer.json"),
        id=4040,
        email="late@example.com",
        date_created="2026-11-26T22:30:00",
        date_created_gmt="2026-11-27T01:30:00",
        date_modified="2026-11-26T23:59:59",
        date_modified_gmt="2026-11-27T02:59:59",
        meta_data=meta(("birthday", "05/04/1984")),  # unreadable: BIRTHDAY alone is left out
    )
    return [
        ("customer.updated", john),
        ("customer.created", alice),
        ("customer.created", zoe),
        ("customer.created", late),
    ]


ORDERS = [
    "order.json",  # joao, a registered customer: 2017-03-21T19:16:00 GMT
    "48-order_create_completed.json",  # alice
    "49-order_create_processing.json",  # bob
    "53-order_create_guest_on_hold.json",
]


def events() -> list[Event]:
    pairs = customer_events() + [("order.created", ref(name)) for name in ORDERS]
    out = []
    for topic, payload in pairs:
        ev = parse_event({"topic": topic, "payload": payload}, door=Door.WEBHOOK)
        assert isinstance(ev, Event), payload.get("id")
        out.append(ev)
    return out


async def test_every_mapped_date_reaches_brevo_as_yyyy_mm_dd(
    tmp_path: Path, base_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    mapping = base_config["connectors"]["woocommerce"]["customer_mapping"]
    mapping.update(DATE_MAPPING)
    async with BrevoFake(strict_attributes=True) as fake:
        await create_attributes_as_doctor_fix_does(fake, mapping)
        date_attributes = {n for n, a in fake.attributes.items() if a.get("type") == "date"}
        assert date_attributes == set(DATE_MAPPING.values())
        base_config["brevo"] = {
            "api_key": fake.api_key,
            "base_url": fake.base_url,
            "dry_run": False,
            "max_backoff": "2s",
        }
        cfg = load(tmp_path, base_config)
        async with App(cfg, doors=False) as app:
            await app.store.ingest("default", events())
            await app.wait_idle(60 * UNIT)
            assert await app.store.dead_letters() == []
        fake.assert_no_spec_violations()

    refused = [(r.path, r.status) for r in fake.requests if (r.status or 0) >= 400]
    assert refused == []
    sent = [
        (name, value)
        for r in fake.requests
        if r.path in ("/contacts", "/contacts/batch", "/contacts/import")
        for body in (r.json.get("contacts") or r.json.get("jsonBody") or [r.json])
        for name, value in (body.get("attributes") or {}).items()
        if name in date_attributes
    ]
    assert sent and all(isinstance(v, str) and YMD.fullmatch(v) for _, v in sent), sent
    assert {name for name, _ in sent} == date_attributes  # every mapped date went out

    def dates(email: str) -> dict[str, Any]:
        attrs = fake.contacts[email]["attributes"]
        return {k: v for k, v in attrs.items() if k in date_attributes}

    assert dates("john.doe@example.com") == {
        "SIGNUP_DATE": "2017-03-21",
        "SIGNUP_DATE_GMT": "2017-03-21",
        "MODIFIED_DATE": "2017-03-21",
        "MODIFIED_DATE_GMT": "2017-03-21",
        "BIRTHDAY": "1984-04-04",  # unix seconds, UTC
        "SUBSCRIBED_AT": "2024-05-01",  # the date as written in its own offset
    }
    assert dates("alice@example.com") == {
        "SIGNUP_DATE": "2026-11-27",
        "SIGNUP_DATE_GMT": "2026-11-27",
        "MODIFIED_DATE": "2026-11-27",
        "MODIFIED_DATE_GMT": "2026-11-27",
        "FIRST_ORDER_DATE": "2026-11-27",
        "LAST_ORDER_DATE": "2026-11-27",
        "BIRTHDAY": "1984-04-05",  # YYYYMMDD, as ACF's date picker stores it
        "SUBSCRIBED_AT": "2024-05-01",  # unix milliseconds
    }
    assert dates("zoe@example.com")["BIRTHDAY"] == "1990-04-01"
    assert dates("zoe@example.com")["SUBSCRIBED_AT"] == "2024-05-01"
    assert dates("late@example.com") == {
        "SIGNUP_DATE": "2026-11-26",  # the store's own calendar day
        "SIGNUP_DATE_GMT": "2026-11-27",
        "MODIFIED_DATE": "2026-11-26",
        "MODIFIED_DATE_GMT": "2026-11-27",
    }
    assert fake.contacts["late@example.com"]["attributes"]["FIRSTNAME"] == "John"
    assert dates("joao.silva@example.com") == {
        "FIRST_ORDER_DATE": "2017-03-21",
        "LAST_ORDER_DATE": "2017-03-21",
    }
    assert [r.getMessage() for r in caplog.records if "is not a date" in r.getMessage()] == [
        "site default: customer 4040: meta_data.birthday '05/04/1984' is not a date;"
        " BIRTHDAY not sent"
    ]
