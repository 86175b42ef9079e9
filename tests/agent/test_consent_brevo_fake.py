"""The Brevo fake's contact state for consent (tests/fakes/brevo/contacts.py): contacts seeded
blocklisted or unsubscribed, re-added by a plain upsert (the danger), listed by GET /contacts,
and the double opt-in request that adds nobody until the person confirms."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.fakes.brevo import BrevoFake


async def call(fake: BrevoFake, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"api-key": fake.api_key}) as session,
        session.request(method, fake.base_url + path, json=body) as response,
    ):
        text = await response.text()
        return response.status, json.loads(text) if text else None


async def test_seeded_contacts_read_as_brevo_shows_them() -> None:
    async with BrevoFake(lists=[50, 51], check_responses=True) as fake:
        fake.seed_contact("left@example.com", lists=[51], unsubscribed=[50])
        fake.seed_contact("blocked@example.com", blacklisted=True, attributes={"FIRSTNAME": "B"})
        fake.seed_contact("plain@example.com", lists=[50])
        status, page = await call(fake, "GET", "/contacts?limit=2&offset=0&sort=asc")
        assert status == 200 and page["count"] == 3
        left, blocked = page["contacts"]
        assert (left["email"], left["listIds"], left["listUnsubscribed"]) == (
            "left@example.com", [51], [50])  # fmt: skip
        assert blocked["emailBlacklisted"] is True and blocked["attributes"] == {"FIRSTNAME": "B"}
        status, rest = await call(fake, "GET", "/contacts?limit=2&offset=2&sort=asc")
        assert [c["email"] for c in rest["contacts"]] == ["plain@example.com"]
        status, one = await call(fake, "GET", "/contacts/left@example.com")
        assert status == 200 and one["listUnsubscribed"] == [50]
        # A plain upsert with listIds puts the person back in the list they left: the danger.
        upsert = {"email": "left@example.com", "listIds": [50], "updateEnabled": True}
        assert (await call(fake, "POST", "/contacts", upsert))[0] == 204
        assert fake.contacts["left@example.com"]["listIds"] == [50, 51]
        batch = {"contacts": [{"email": "left@example.com", "unlinkListIds": [50, 51]}]}
        assert (await call(fake, "POST", "/contacts/batch", batch))[0] == 204
        assert fake.contacts["left@example.com"]["listIds"] == []
        fake.assert_no_spec_violations()


async def test_double_opt_in_adds_nobody_until_confirmed() -> None:
    async with BrevoFake(lists=[50, 51], check_responses=True) as fake:
        body = {"email": "new@example.com", "includeListIds": [50], "templateId": 12,
                "redirectionUrl": "https://shop.example/thanks",
                "attributes": {"FIRSTNAME": "Ann"}}  # fmt: skip
        status, _ = await call(fake, "POST", "/contacts/doubleOptinConfirmation", body)
        assert status == 201 and "new@example.com" not in fake.contacts
        assert fake.doi_requests == [body]
        refused = [
            {**body, "email": "not-an-address"},
            {**body, "includeListIds": [99]},
            {**body, "includeListIds": []},
        ]
        for bad in refused:
            status, answer = await call(fake, "POST", "/contacts/doubleOptinConfirmation", bad)
            assert status == 400 and answer["code"] == "invalid_parameter", bad
        missing = {k: v for k, v in body.items() if k != "templateId"}
        assert (await call(fake, "POST", "/contacts/doubleOptinConfirmation", missing))[0] == 400
        fake.confirm_doi("new@example.com")
        contact = fake.contacts["new@example.com"]
        assert contact["listIds"] == [50] and contact["attributes"]["FIRSTNAME"] == "Ann"
        assert len(fake.doi_requests) == 1
