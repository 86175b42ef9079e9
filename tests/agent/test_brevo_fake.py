"""The Brevo fake (tests/fakes/brevo/) against a real aiohttp client on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDictProxy

from tests.fakes.brevo import (
    DEFAULT_API_KEY,
    PLAN_LIMITS,
    BrevoFake,
    brevo_fake_fixture,
    family_of,
    format_reset,
    load_spec,
    spec_path,
)

REPO = Path(__file__).resolve().parents[2]

# Every test with this fixture also checks the fake's own answers against the spec.
brevo = brevo_fake_fixture(check_responses=True)

ORDER: dict[str, Any] = {
    "id": "1001",
    "createdAt": "2024-05-01T10:00:00Z",
    "updatedAt": "2024-05-01T10:00:00Z",
    "status": "processing",
    "amount": 42.5,
    "identifiers": {"email_id": "jane@example.com"},
    "products": [{"productId": "17", "price": 20.0, "quantity": 2}],
}

Result = tuple[int, Any, CIMultiDictProxy[str]]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http(brevo: BrevoFake) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"api-key": brevo.api_key}) as session:
        yield session


async def call(
    session: aiohttp.ClientSession,
    fake: BrevoFake,
    method: str,
    path: str,
    body: Any = None,
    **kwargs: Any,
) -> Result:
    async with session.request(method, fake.base_url + path, json=body, **kwargs) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None, response.headers


# ------------------------------------------------------------------ answers as Brevo does


async def test_contacts_lists_and_attributes(brevo: BrevoFake, http: aiohttp.ClientSession) -> None:
    status, _, _ = await call(
        http, brevo, "POST", "/contacts/attributes/normal/ORDER_COUNT", {"type": "float"}
    )
    assert status == 201
    status, body, _ = await call(http, brevo, "GET", "/contacts/attributes")
    assert {"name": "ORDER_COUNT", "category": "normal", "type": "float"} in body["attributes"]
    status, body, _ = await call(
        http, brevo, "POST", "/contacts/lists", {"name": "Buyers", "folderId": 1}
    )
    assert (status, body) == (201, {"id": 1})

    jane = {
        "email": "Jane@Example.com",
        "ext_id": "wc-7",
        "attributes": {"FIRSTNAME": "Jane", "ORDER_COUNT": 2},
        "listIds": [1],
    }
    status, body, _ = await call(http, brevo, "POST", "/contacts", jane)
    assert status == 201
    jane_id = body["id"]
    status, body, _ = await call(http, brevo, "POST", "/contacts", jane)
    assert status == 400
    assert body["code"] == "duplicate_parameter"
    assert body["metadata"] == {"duplicate_identifiers": ["email", "ext_id"]}
    upsert = {**jane, "attributes": {"ORDER_COUNT": 3}, "updateEnabled": True, "forceMerge": True}
    status, body, _ = await call(http, brevo, "POST", "/contacts", upsert)
    assert (status, body) == (204, None)

    update = {"attributes": {"LASTNAME": "Doe"}, "unlinkListIds": [1]}
    params = {"identifierType": "ext_id"}
    status, _, _ = await call(http, brevo, "PUT", "/contacts/wc-7", update, params=params)
    assert status == 204
    status, body, _ = await call(http, brevo, "PUT", "/contacts/nobody@example.com", update)
    assert (status, body) == (
        404,
        {"code": "document_not_found", "message": "Contact does not exist"},
    )
    assert brevo.contacts["jane@example.com"] == {
        "id": jane_id,
        "email": "jane@example.com",
        "attributes": {"FIRSTNAME": "Jane", "ORDER_COUNT": 3, "LASTNAME": "Doe"},
        "listIds": [],
        "ext_id": "wc-7",
    }
    status, body, _ = await call(http, brevo, "GET", "/contacts/jane%40example.com")
    assert status == 200
    assert (body["id"], body["attributes"]["LASTNAME"]) == (jane_id, "Doe")

    # Batch updates only; a value of the wrong type is dropped without a word (NOTES.md §2).
    batch = {
        "contacts": [
            {"email": "jane@example.com", "attributes": {"ORDER_COUNT": "many", "FIRSTNAME": "J"}},
            {"email": "ghost@example.com", "attributes": {"FIRSTNAME": "Casper"}},
        ]
    }
    status, _, _ = await call(http, brevo, "POST", "/contacts/batch", batch)
    assert status == 204
    assert brevo.contacts["jane@example.com"]["attributes"]["ORDER_COUNT"] == 3
    assert brevo.contacts["jane@example.com"]["attributes"]["FIRSTNAME"] == "J"
    assert "ghost@example.com" not in brevo.contacts

    rows = [
        {"email": "al@example.com", "attributes": {"FIRSTNAME": "Al", "UNKNOWN": 1}},
        {"email": "jane@example"},  # skipped, not fatal
    ]
    status, body, _ = await call(
        http, brevo, "POST", "/contacts/import", {"jsonBody": rows, "listIds": [2]}
    )
    assert status == 202
    status, process, _ = await call(http, brevo, "GET", f"/processes/{body['processId']}")
    assert (status, process["status"], process["info"]["import"]["invalid_emails"]) == (
        200,
        "completed",
        1,
    )
    assert brevo.contacts["al@example.com"]["attributes"] == {"FIRSTNAME": "Al"}
    assert brevo.contacts["al@example.com"]["listIds"] == [2]
    csv_import = {"fileBody": "EMAIL;FIRSTNAME\nbo@example.com;Bo\nbad;X", "listIds": [2]}
    assert (await call(http, brevo, "POST", "/contacts/import", csv_import))[0] == 202
    assert brevo.contacts["bo@example.com"]["attributes"] == {"FIRSTNAME": "Bo"}

    # ERRATA: {"emails": [...]} is a valid body although the spec's oneOf refuses it.
    add = {"emails": ["jane@example.com", "ghost@example.com"]}
    status, body, _ = await call(http, brevo, "POST", "/contacts/lists/1/contacts/add", add)
    assert (status, body) == (
        201,
        {"contacts": {"success": ["jane@example.com"], "failure": ["ghost@example.com"]}},
    )
    status, body, _ = await call(
        http, brevo, "POST", "/contacts/lists/1/contacts/remove", {"ids": [jane_id]}
    )
    assert (status, body["contacts"]["success"]) == (201, [jane_id])
    status, body, _ = await call(http, brevo, "GET", "/contacts/lists", params={"limit": "5"})
    assert status == 200
    assert {entry["id"] for entry in body["lists"]} == {1, 2}
    assert brevo.requests[-1].family == "contacts"


async def test_events_and_ecommerce(brevo: BrevoFake, http: aiohttp.ClientSession) -> None:
    assert (await call(http, brevo, "POST", "/ecommerce/activate"))[0] == 200
    assert brevo.ecommerce_activated
    status, body, _ = await call(http, brevo, "GET", "/account")
    assert (status, body["plan"][0]["type"]) == (200, "free")

    event = {
        "event_name": "order_placed",
        "identifiers": {"email_id": "jane@example.com"},
        "event_properties": {"total": 42.5, "gift": False, "items": [{"sku": "A"}]},
    }
    assert (await call(http, brevo, "POST", "/events", event))[0] == 204
    status, body, _ = await call(http, brevo, "POST", "/events/batch", {"events": [event, event]})
    assert (status, body["count"]) == (202, 2)
    assert len(brevo.events) == 3

    category = {"id": "12", "name": "Shoes"}
    status, body, _ = await call(http, brevo, "POST", "/categories", category)
    assert status == 201 and isinstance(body["id"], int)
    status, body, _ = await call(http, brevo, "POST", "/categories", category)
    assert (status, body["code"]) == (400, "duplicate_parameter")
    status, _, _ = await call(
        http, brevo, "POST", "/categories", {**category, "updateEnabled": True}
    )
    assert status == 204
    batch = {
        "categories": [{"id": "12", "name": "Boots"}, {"id": "13", "name": "Hats"}],
        "updateEnabled": True,
    }
    status, body, _ = await call(http, brevo, "POST", "/categories/batch", batch)
    assert (status, body) == (201, {"createdCount": 1, "updatedCount": 1})

    product = {"id": "17", "name": "Boot", "price": 20.0, "categories": ["12"]}
    status, _, _ = await call(http, brevo, "POST", "/products", product)
    assert status == 201
    status, _, _ = await call(
        http, brevo, "POST", "/products", {**product, "price": 18.0, "updateEnabled": True}
    )
    assert status == 204
    many = {"products": [{"id": str(i), "name": f"P{i}"} for i in range(100, 201)]}
    status, body, _ = await call(http, brevo, "POST", "/products/batch", many)
    assert (status, body["code"]) == (400, "out_of_range")  # 101 > 100 when creating
    many["products"].pop()
    status, body, _ = await call(http, brevo, "POST", "/products/batch", many)
    assert (status, body) == (201, {"createdCount": 100, "updatedCount": 0})
    status, body, _ = await call(http, brevo, "GET", "/products/17")
    assert (status, body["price"]) == (200, 18.0)
    assert (await call(http, brevo, "GET", "/products/nope"))[0] == 404

    # ERRATA: quantityFloat instead of quantity.
    order = {**ORDER, "products": [{"productId": "17", "price": 20.0, "quantityFloat": 1.5}]}
    assert (await call(http, brevo, "POST", "/orders/status", order))[0] == 204
    orders = {"orders": [{**ORDER, "id": str(i)} for i in range(3)], "historical": True}
    status, body, _ = await call(http, brevo, "POST", "/orders/status/batch", orders)
    assert (status, body["count"]) == (202, 3)
    assert set(brevo.orders) == {"1001", "0", "1", "2"}

    collection = {"name": "welcome", "defaultCoupon": "WELCOME10"}
    status, body, _ = await call(http, brevo, "POST", "/couponCollections", collection)
    assert status == 201
    collection_id = body["id"]
    codes = {"collectionId": collection_id, "coupons": ["A1", "B2"]}
    assert (await call(http, brevo, "POST", "/coupons", codes))[0] == 204
    assert brevo.coupons[collection_id] == {"A1", "B2"}
    unknown = {**codes, "collectionId": "00000000-0000-4000-8000-000000000000"}
    assert (await call(http, brevo, "POST", "/coupons", unknown))[0] == 404
    status, body, _ = await call(http, brevo, "GET", "/couponCollections")
    assert (status, body["collections"][0]["totalCoupons"]) == (200, 2)


async def test_brevo_checks_beyond_the_schema(http: aiohttp.ClientSession) -> None:
    async with BrevoFake(strict_attributes=True, check_responses=True) as fake:
        contact = {"email": "jane@example.com", "attributes": {"LOYALTY_POINTS": 5}}
        status, body, _ = await call(http, fake, "POST", "/contacts", contact)
        assert (status, body) == (
            400,
            {"code": "invalid_parameter", "message": "Attribute LOYALTY_POINTS does not exist"},
        )
        await call(
            http, fake, "POST", "/contacts/attributes/normal/LOYALTY_POINTS", {"type": "float"}
        )
        assert (await call(http, fake, "POST", "/contacts", contact))[0] == 201
        # Passes the spec's `format: email` (it only wants an @), not Brevo.
        status, body, _ = await call(http, fake, "POST", "/contacts", {"email": "jim@example"})
        assert (status, body) == (
            400,
            {"code": "invalid_parameter", "message": "Invalid email address"},
        )
        status, body, _ = await call(
            http,
            fake,
            "POST",
            "/events",
            {"event_name": "order placed", "identifiers": {"ext_id": "1"}},
        )
        assert (status, body["code"]) == (400, "invalid_parameter")
        assert fake.events == []
    fake.assert_no_spec_violations()


async def test_a_date_attribute_takes_only_yyyy_mm_dd(
    brevo: BrevoFake, http: aiohttp.ClientSession
) -> None:
    """Brevo refuses a date attribute written any other way (400 invalid_parameter), on every
    call that writes attributes; an import is refused whole, naming the attribute."""
    path = "/contacts/attributes/normal/SIGNUP_DATE"
    assert (await call(http, brevo, "POST", path, {"type": "date"}))[0] == 201
    refused = {
        "code": "invalid_parameter",
        "message": "Invalid date format for attribute SIGNUP_DATE",
    }
    jane = {"email": "jane@example.com", "updateEnabled": True}
    for wrong in ("2017-03-21T16:09:28", "21/03/2017", "2017-02-30", "20170321", 1490112568):
        attrs = {"FIRSTNAME": "Jane", "SIGNUP_DATE": wrong}
        status, body, _ = await call(
            http, brevo, "POST", "/contacts", {**jane, "attributes": attrs}
        )
        assert (status, body) == (400, refused), wrong
    assert brevo.contacts == {}

    good = {**jane, "attributes": {"SIGNUP_DATE": "2017-03-21"}}
    assert (await call(http, brevo, "POST", "/contacts", good))[0] == 201
    wrong_update = {"attributes": {"SIGNUP_DATE": "2017-03-22 10:00:00"}}
    status, body, _ = await call(http, brevo, "PUT", "/contacts/jane@example.com", wrong_update)
    assert (status, body) == (400, refused)
    batch = {
        "contacts": [{"email": "jane@example.com", "attributes": {"SIGNUP_DATE": "22.03.2017"}}]
    }
    status, body, _ = await call(http, brevo, "POST", "/contacts/batch", batch)
    assert (status, body) == (400, refused)
    rows = [
        {"email": "al@example.com", "attributes": {"SIGNUP_DATE": "2017-03-23"}},
        {"email": "bo@example.com", "attributes": {"SIGNUP_DATE": "2017-03-23T00:00:00Z"}},
    ]
    status, body, _ = await call(
        http, brevo, "POST", "/contacts/import", {"jsonBody": rows, "listIds": [2]}
    )
    assert (status, body) == (400, refused)
    csv_import = {"fileBody": "EMAIL;SIGNUP_DATE\nbo@example.com;03/23/2017", "listIds": [2]}
    assert (await call(http, brevo, "POST", "/contacts/import", csv_import))[:2] == (400, refused)
    assert set(brevo.contacts) == {"jane@example.com"}  # a refused call changed nothing
    assert brevo.contacts["jane@example.com"]["attributes"] == {"SIGNUP_DATE": "2017-03-21"}

    right_update = {"attributes": {"SIGNUP_DATE": "2017-03-22"}}
    status, _, _ = await call(http, brevo, "PUT", "/contacts/jane@example.com", right_update)
    assert status == 204
    batch = {
        "contacts": [{"email": "jane@example.com", "attributes": {"SIGNUP_DATE": "2017-03-24"}}]
    }
    assert (await call(http, brevo, "POST", "/contacts/batch", batch))[0] == 204
    rows[1]["attributes"]["SIGNUP_DATE"] = "2017-03-23"
    status, _, _ = await call(
        http, brevo, "POST", "/contacts/import", {"jsonBody": rows, "listIds": [2]}
    )
    assert status == 202
    assert {k: c["attributes"]["SIGNUP_DATE"] for k, c in brevo.contacts.items()} == {
        "jane@example.com": "2017-03-24",
        "al@example.com": "2017-03-23",
        "bo@example.com": "2017-03-23",
    }
    # Erasing is not a wrong form; a text attribute takes any text.
    clear = {"attributes": {"SIGNUP_DATE": "", "FIRSTNAME": "2017-03-21T16:09:28"}}
    assert (await call(http, brevo, "PUT", "/contacts/al@example.com", clear))[0] == 204


# ------------------------------------------------------------------ the spec


async def test_spec_refusals_are_400_and_recorded(
    brevo: BrevoFake, http: aiohttp.ClientSession
) -> None:
    no_amount = {k: v for k, v in ORDER.items() if k != "amount"}
    status, body, _ = await call(http, brevo, "POST", "/orders/status", no_amount)
    assert (status, body["code"]) == (400, "invalid_parameter")
    assert "'amount' is a required property" in body["message"]
    product = {"id": "17", "name": "Boot", "price": "20.00"}
    status, body, _ = await call(http, brevo, "POST", "/products", product)
    assert status == 400
    assert body["message"] == "body.price: '20.00' is not of type 'number'"
    assert (await call(http, brevo, "POST", "/contacts/lists/1/contacts/add", {}))[0] == 400
    assert (await call(http, brevo, "GET", "/contacts/lists", params={"limit": "500"}))[0] == 400
    assert (await call(http, brevo, "GET", "/no/such/thing"))[0] == 404
    status, body, _ = await call(http, brevo, "DELETE", "/orders/status")
    assert (status, body["code"]) == (405, "method_not_allowed")
    async with http.post(
        brevo.base_url + "/events", data=b"{nope", headers={"content-type": "application/json"}
    ) as response:
        assert response.status == 400

    assert brevo.orders == {} and brevo.products == {}
    assert len(brevo.spec_violations) == 7
    assert brevo.spec_violations[0].startswith("POST /orders/status: body: 'amount'")
    with pytest.raises(AssertionError, match="brevo fake saw bad requests"):
        brevo.assert_no_spec_violations()
    brevo.spec_violations.clear()  # seen; the fixture checks again at teardown


async def test_a_missing_or_wrong_key_is_401(brevo: BrevoFake) -> None:
    async with aiohttp.ClientSession() as anonymous:
        for headers in ({}, {"api-key": "xkeysib-wrong"}):
            status, body, response_headers = await call(
                anonymous, brevo, "GET", "/account", headers=headers
            )
            assert (status, body) == (401, {"code": "unauthorized", "message": "Key not found"})
            assert "x-sib-ratelimit-limit" in response_headers


def test_the_fast_check_covers_the_bodies_the_agent_sends() -> None:
    spec = load_spec(spec_path())
    for route in (
        "/orders/status",
        "/products",
        "/contacts",
        "/events/batch",
        "/contacts/lists/{listId}/contacts/add",
    ):
        op = spec.operation("POST", route)
        assert op is not None and op.body is not None and op.body.fast is not None, route


BODIES: list[tuple[str, dict[str, Any]]] = [
    ("/orders/status/batch", {"orders": [ORDER], "historical": True}),
    (
        "/contacts",
        {
            "email": "a@b.co",
            "attributes": {"N": 1, "T": ["x"]},
            "listIds": [1],
            "updateEnabled": True,
        },
    ),
    (
        "/products/batch",
        {"products": [{"id": "1", "name": "n", "price": 1.5, "metaInfo": {"k": 1}}]},
    ),
    (
        "/events/batch",
        {
            "events": [
                {"event_name": "e", "identifiers": {"contact_id": 3}, "event_properties": {"a": 1}}
            ]
        },
    ),
    ("/contacts/lists/{listId}/contacts/remove", {"emails": ["a@b.co"]}),
    (
        "/couponCollections",
        {"name": "n", "defaultCoupon": "C", "expirationDate": "2030-01-01T00:00:00Z"},
    ),
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_the_fast_check_says_what_jsonschema_says(data: st.DataObject) -> None:
    """The fast path may only accept what openapi-schema-validator accepts, and should."""
    spec = load_spec(spec_path())
    route, base = data.draw(st.sampled_from(BODIES))
    body = json.loads(json.dumps(base))
    where = data.draw(st.sampled_from(_paths(body)))
    replacement = data.draw(JSON | st.just(None) | st.sampled_from(["2030-01-01", "1", "a@b.co"]))
    if not where:
        body = replacement
    else:
        parent = body
        for step in where[:-1]:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = replacement
    op = spec.operation("POST", route)
    assert op is not None and op.body is not None
    fast, slow = op.body.fast, op.body.slow
    assert fast is not None
    slow_ok = next(iter(slow.iter_errors(body)), None) is None
    assert fast(body) == slow_ok, (route, body)


# ------------------------------------------------------------------ rate limits


def test_families_and_reset_rounding() -> None:
    assert family_of("GET", "/v3/contacts/a@b.com?identifierType=email_id") == "contacts"
    assert family_of("POST", "/contacts/import") == "contacts"
    assert family_of("POST", "/events/batch") == "events"
    assert family_of("POST", "/orders/status") == "orders"
    assert family_of("POST", "/orders/status/batch") == "other"
    assert family_of("POST", "/products") == "products"
    assert family_of("GET", "/products") == "other"
    assert family_of("POST", "/products/batch") == "other"
    assert set(PLAN_LIMITS["general"]) == {"contacts", "events", "orders", "products", "other"}
    assert format_reset(0.2) == "1"
    assert format_reset(2.01) == "3"
    assert format_reset(59.99, 60.0) == "60"
    assert format_reset(0.004, 60.0) == "0.017"  # one whole Brevo second, scaled


def test_family_of_loads_no_aiohttp() -> None:
    code = "import sys, tests.fakes.brevo as b; b.family_of('GET', '/x'); assert 'aiohttp' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


async def test_limits_are_enforced_with_brevo_headers(http: aiohttp.ClientSession) -> None:
    clock = Clock()
    async with BrevoFake(enforce_limits=True, clock=clock) as fake:  # products: 2/s, 7200/h
        product = {"id": "1", "name": "Boot", "updateEnabled": True}
        for remaining in ("1", "0"):
            status, _, headers = await call(http, fake, "POST", "/products", product)
            assert status in (201, 204)
            assert (headers["x-sib-ratelimit-limit"], headers["x-sib-ratelimit-remaining"]) == (
                "2",
                remaining,
            )
            assert headers["x-sib-ratelimit-reset"] == "1"
        status, body, headers = await call(http, fake, "POST", "/products", {**product, "id": "2"})
        assert (status, body["code"]) == (429, "too_many_requests")
        assert (headers["x-sib-ratelimit-remaining"], headers["x-sib-ratelimit-reset"]) == (
            "0",
            "1",
        )
        assert "2" not in fake.products and fake.requests[-1].over_limit
        clock.now += 0.4
        assert (await call(http, fake, "POST", "/products", {**product, "id": "2"}))[0] == 429
        clock.now += 0.6
        assert (await call(http, fake, "POST", "/products", {**product, "id": "2"}))[0] == 201
        # Another family has its own budget.
        assert (await call(http, fake, "POST", "/orders/status", ORDER))[0] == 204
    fake.assert_no_spec_violations()


async def test_the_binding_window_and_scaled_time(http: aiohttp.ClientSession) -> None:
    clock = Clock()
    limits = {"contacts": [(3, 1.0), (5, 3600.0)], "other": [(2, 3600.0)]}
    async with BrevoFake(enforce_limits=True, time_scale=60, limits=limits, clock=clock) as fake:
        seen = [(await call(http, fake, "GET", "/contacts/lists"))[2] for _ in range(3)]
        assert [h["x-sib-ratelimit-remaining"] for h in seen] == ["2", "1", "0"]
        assert {h["x-sib-ratelimit-reset"] for h in seen} == {"0.017"}  # 1 s / 60
        assert (await call(http, fake, "GET", "/contacts/lists"))[0] == 429
        clock.now += 1 / 60
        status, _, headers = await call(http, fake, "GET", "/contacts/lists")
        assert status == 200
        # The hour window binds now: 4 of 5 used, 3599 Brevo seconds left.
        assert (headers["x-sib-ratelimit-limit"], headers["x-sib-ratelimit-remaining"]) == (
            "5",
            "1",
        )
        assert headers["x-sib-ratelimit-reset"] == "59.984"
        assert (await call(http, fake, "GET", "/contacts/lists"))[0] == 200
        clock.now += 1 / 60
        status, _, headers = await call(http, fake, "GET", "/contacts/lists")
        assert (status, headers["x-sib-ratelimit-limit"]) == (429, "5")

        assert (await call(http, fake, "GET", "/account"))[2]["x-sib-ratelimit-reset"] == "60"
        clock.now += 30
        assert (await call(http, fake, "GET", "/account"))[2]["x-sib-ratelimit-reset"] == "30"


async def test_limits_off_still_meter(http: aiohttp.ClientSession) -> None:
    async with BrevoFake(clock=Clock()) as fake:
        statuses = [(await call(http, fake, "POST", "/orders/status", ORDER))[0] for _ in range(6)]
        assert statuses == [204] * 6
        assert [r.over_limit for r in fake.requests] == [False] * 5 + [True]
        assert fake.summary()["over_limit"] == {"orders": 1}


async def test_waiting_the_reset_is_enough(http: aiohttp.ClientSession) -> None:
    async with BrevoFake(enforce_limits=True, time_scale=20) as fake:  # products: 2 per 50 ms
        product = {"id": "1", "name": "Boot", "updateEnabled": True}
        for _ in range(10):
            status, _, headers = await call(http, fake, "POST", "/products", product)
            if status == 429:
                break
        assert status == 429
        await asyncio.sleep(float(headers["x-sib-ratelimit-reset"]))
        assert (await call(http, fake, "POST", "/products", product))[0] in (201, 204)


# ------------------------------------------------------------------ scripted faults


async def test_fail_next(brevo: BrevoFake, http: aiohttp.ClientSession) -> None:
    brevo.fail_next(2, 503, family="contacts")
    contact = {"email": "jane@example.com", "updateEnabled": True}
    assert (await call(http, brevo, "GET", "/account"))[0] == 200  # another family
    for _ in range(2):
        status, body, _ = await call(http, brevo, "POST", "/contacts", contact)
        assert (status, body["code"]) == (503, "service_unavailable")
    assert brevo.contacts == {}
    assert (await call(http, brevo, "POST", "/contacts", contact))[0] == 201

    brevo.fail_next(1, 429, path="/v3/orders/status")
    status, body, headers = await call(http, brevo, "POST", "/orders/status", ORDER)
    assert (status, body["code"]) == (429, "too_many_requests")
    assert (headers["x-sib-ratelimit-remaining"], headers["x-sib-ratelimit-reset"]) == ("0", "1")
    assert brevo.orders == {}

    brevo.fail_next(
        1,
        425,
        path="/contacts/{identifier}",
        body={"code": "x", "message": "y"},
        headers={"x-test": "1"},
    )
    status, body, headers = await call(
        http, brevo, "PUT", "/contacts/jane%40example.com", {"attributes": {"FIRSTNAME": "J"}}
    )
    assert (status, body, headers["x-test"]) == (425, {"code": "x", "message": "y"}, "1")
    assert (
        await call(
            http, brevo, "PUT", "/contacts/jane%40example.com", {"attributes": {"FIRSTNAME": "J"}}
        )
    )[0] == 204
    assert [r.status for r in brevo.requests] == [200, 503, 503, 201, 429, 425, 204]


async def test_outage(http: aiohttp.ClientSession) -> None:
    clock = Clock()
    async with BrevoFake(time_scale=10, clock=clock) as fake:
        fake.outage()
        assert (await call(http, fake, "GET", "/account"))[0] == 503
        fake.end_outage()
        assert (await call(http, fake, "GET", "/account"))[0] == 200
        fake.outage(502, duration=10)  # one real second at time_scale 10
        assert (
            await call(
                http, fake, "POST", "/events", {"event_name": "e", "identifiers": {"ext_id": "1"}}
            )
        )[0] == 502
        clock.now += 0.999
        assert (await call(http, fake, "GET", "/account"))[0] == 502
        clock.now += 0.001
        assert (await call(http, fake, "GET", "/account"))[0] == 200
        assert fake.events == []


async def test_stall_and_release(brevo: BrevoFake, http: aiohttp.ClientSession) -> None:
    brevo.stall(family="orders")
    held = asyncio.create_task(call(http, brevo, "POST", "/orders/status", ORDER))
    await brevo.stalled.wait()
    assert (await call(http, brevo, "GET", "/account"))[0] == 200  # only orders are held
    assert brevo.orders == {} and brevo.stalled_count == 1
    brevo.release()
    assert (await held)[0] == 204
    assert set(brevo.orders) == {"1001"}


async def test_a_stalled_request_given_up_changes_nothing(
    brevo: BrevoFake, http: aiohttp.ClientSession
) -> None:
    brevo.stall(path="/orders/status")
    held = asyncio.create_task(call(http, brevo, "POST", "/orders/status", ORDER))
    await brevo.stalled.wait()
    held.cancel()
    await brevo.wait_for(lambda: any(r.status is None for r in brevo.requests))
    brevo.release()
    assert brevo.orders == {}
    assert (await call(http, brevo, "POST", "/orders/status", ORDER))[0] == 204


async def test_a_request_stalled_after_it_was_applied_stays_applied(
    brevo: BrevoFake, http: aiohttp.ClientSession
) -> None:
    brevo.stall(path="/orders/status", applied=True)
    held = asyncio.create_task(call(http, brevo, "POST", "/orders/status", ORDER))
    await brevo.stalled.wait()
    assert set(brevo.orders) == {"1001"}  # carried out; only the answer is held
    held.cancel()
    await brevo.wait_for(lambda: len(brevo.requests) == 1)
    assert brevo.requests[0].status == 204
    brevo.release()
    assert set(brevo.orders) == {"1001"}


async def test_wait_for(brevo: BrevoFake, http: aiohttp.ClientSession) -> None:
    waiting = asyncio.create_task(brevo.wait_for(lambda: len(brevo.orders) == 3))
    for index in range(3):
        await call(http, brevo, "POST", "/orders/status", {**ORDER, "id": str(index)})
    await waiting
    with pytest.raises(TimeoutError, match="condition not met"):
        await brevo.wait_for(lambda: False, timeout=0.05)


# ------------------------------------------------------------------ the CLI


async def test_cli_serves_and_summarises(tmp_path: Path) -> None:
    port_file, summary_file = tmp_path / "port", tmp_path / "summary.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.brevo",
        "--port", "0",
        "--port-file", str(port_file),
        "--summary", str(summary_file),
        "--enforce-limits",
        "--time-scale", "60",
        "--limit", "other=1/3600",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        port = int(await asyncio.wait_for(process.stdout.readline(), timeout=30))
        assert port_file.read_text() == f"{port}\n"
        async with aiohttp.ClientSession(headers={"api-key": DEFAULT_API_KEY}) as session:
            for expected in (200, 429):
                async with session.get(f"http://127.0.0.1:{port}/v3/account") as response:
                    assert response.status == expected
                    assert response.headers["x-sib-ratelimit-reset"] == "60"
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    summary = json.loads(summary_file.read_text())
    assert summary["families"] == {"other": 2}
    assert summary["paths"] == {"GET /account": 2}
    assert [(r["path"], r["status"]) for r in summary["requests"]] == [
        ("/account", 200),
        ("/account", 429),
    ]
    assert summary["spec_violations"] == []
