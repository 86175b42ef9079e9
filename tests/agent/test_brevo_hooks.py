"""The Brevo webhook door (`POST /webhooks/brevo/{site}`): Brevo's marketing webhook bodies →
suppressions, the secret in the header or the query, every refusal with its reason, and no
secret or email in any log line; the config key and the operator's instructions."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.app import App
from agent.config import load_config, masked
from agent.core.brevo_hooks import (
    BrevoHookAction,
    ContactSuppression,
    Ignored,
    contact_suppressions,
    given_token,
    hook_action,
    parse_delivery,
    token_matches,
)
from tests.agent.doorkit import ROOT, config_data, make_config, running
from tests.kit import write_config

SECRET = "brevo-hook-secret-" + "z" * 24
NOW = 1_796_000_000.0

# Brevo's documented marketing webhook bodies (developers.brevo.com, "Marketing webhooks").
UNSUBSCRIBE = {
    "id": 1234567,
    "camp_id": 12,
    "email": "Left.Us@Example.com",
    "campaign name": "November newsletter",
    "date_sent": "2026-11-27 06:00:00",
    "date_event": "2026-11-27 07:00:00",
    "event": "unsubscribe",
    "list_id": [50],
    "tag": "",
    "ts_sent": 1_795_820_400,
    "ts_event": 1_795_824_000,
    "ts": 1_795_827_600,
    "sending_ip": "185.41.28.109",
}
LIST_ADDITION = {
    "id": 1234567,
    "email": "left.us@example.com",
    "event": "list_addition",
    "key": "aBcD1234",
    "list_id": [50],
    "date": "2026-11-28 08:00:00",
    "ts": 1_795_910_400,
}
SPAM = {
    "id": 1234567,
    "camp_id": 12,
    "email": "angry@example.com",
    "campaign name": "November newsletter",
    "date_sent": "2026-11-27 06:00:00",
    "date_event": "2026-11-27 07:30:00",
    "event": "spam",
    "reason": "undesired",
    "tag": "",
    "ts_sent": 1_795_820_400,
    "ts_event": 1_795_825_800,
    "ts": 1_795_829_400,
}
OPENED = {**SPAM, "event": "opened", "email": "reader@example.com"}


# -- the core, values in and out ----------------------------------------------------------------


def test_the_secret_comes_from_the_bearer_header_or_the_query() -> None:
    assert given_token("Bearer abc", None) == "abc"
    assert given_token("bearer   abc ", "other") == "abc"
    assert given_token(None, "q") == "q"
    assert given_token("Basic dXNlcjpwYXNz", "q") == "q"  # not a bearer: the query decides
    assert given_token("Bearer ", None) is None
    assert given_token(None, "") is None
    assert token_matches(SECRET, SECRET)
    assert not token_matches(SECRET + "x", SECRET)
    assert not token_matches(None, SECRET) and not token_matches(SECRET, None)


def test_brevo_events_become_suppressions_and_lifts() -> None:
    assert hook_action(UNSUBSCRIBE, NOW) == BrevoHookAction(
        "suppress", "left.us@example.com", (50,), "unsubscribed", 1_795_824_000.0
    )
    # The API's camelCase names are read too, and a list id given alone.
    camel = {**UNSUBSCRIBE, "event": "unsubscribed", "list_id": 51}
    assert hook_action(camel, NOW) == BrevoHookAction(
        "suppress", "left.us@example.com", (51,), "unsubscribed", 1_795_824_000.0
    )
    # No list named: every list (the store's list 0).
    bare = {k: v for k, v in UNSUBSCRIBE.items() if k != "list_id"}
    assert hook_action(bare, NOW) == BrevoHookAction(
        "suppress", "left.us@example.com", (), "unsubscribed", 1_795_824_000.0
    )
    assert hook_action(SPAM, NOW) == BrevoHookAction(
        "suppress", "angry@example.com", (), "spam", 1_795_825_800.0
    )
    for name in ("list_addition", "listAddition"):
        assert hook_action({**LIST_ADDITION, "event": name}, NOW) == BrevoHookAction(
            "lift", "left.us@example.com", (50,), "list_addition", 1_795_910_400.0
        )


def test_the_event_time_is_brevos_utc_timestamp_never_later_than_now() -> None:
    no_ts = {k: v for k, v in UNSUBSCRIBE.items() if not k.startswith("ts")}
    assert isinstance(got := hook_action(no_ts, NOW), BrevoHookAction) and got.since == NOW
    epoch = {**no_ts, "ts_epoch": 1_795_824_000_500}
    assert isinstance(got := hook_action(epoch, NOW), BrevoHookAction)
    assert got.since == 1_795_824_000.5
    ahead = {**UNSUBSCRIBE, "ts_event": NOW + 3600}
    assert isinstance(got := hook_action(ahead, NOW), BrevoHookAction) and got.since == NOW


def test_what_the_door_does_not_use_is_ignored_with_a_reason_and_no_email() -> None:
    cases = {
        "opened": OPENED,
        "no email": {**UNSUBSCRIBE, "email": "not-an-address"},
        "bad lists": {**UNSUBSCRIBE, "list_id": ["x"]},
        "listAddition without lists": {**LIST_ADDITION, "list_id": []},
        "no event": {"email": "a@example.com"},
    }
    for name, body in cases.items():
        got = hook_action(body, NOW)
        assert isinstance(got, Ignored), name
        assert "@" not in got.reason and "not-an-address" not in got.reason, name
    assert hook_action(["not", "an", "object"], NOW) == Ignored(
        "?", "an event must be a JSON object, got list"
    )


def test_a_delivery_is_one_event_or_an_array_and_an_unreadable_body_says_why() -> None:
    assert parse_delivery(json.dumps(UNSUBSCRIBE).encode(), NOW) == [hook_action(UNSUBSCRIBE, NOW)]
    batch = parse_delivery(json.dumps([UNSUBSCRIBE, OPENED, SPAM]).encode(), NOW)
    assert isinstance(batch, list) and [type(x) for x in batch] == [
        BrevoHookAction,
        Ignored,
        BrevoHookAction,
    ]
    assert parse_delivery(b"[]", NOW) == []
    for body, words in (
        (b"", "empty"),
        (b"{not json", "not JSON"),
        (b'"text"', "got str"),
        (b"\xff\xfe", "not JSON"),
    ):
        why = parse_delivery(body, NOW)
        assert isinstance(why, str) and words in why, (body, why)


def test_a_contact_brevo_holds_becomes_its_suppressions() -> None:
    def contact(**keys: Any) -> dict[str, Any]:
        base = {"email": "Someone@Example.com", "emailBlacklisted": False, "listIds": [50, 51]}
        return {**base, **keys}

    assert contact_suppressions(contact(), [50, 51]) == []
    assert contact_suppressions(contact(emailBlacklisted=True), [50, 51]) == [
        ContactSuppression("someone@example.com", (), "blocklisted")
    ]
    assert contact_suppressions(contact(listIds=[51], listUnsubscribed=[50]), [50, 51]) == [
        ContactSuppression("someone@example.com", (50,), "unsubscribed")
    ]
    assert contact_suppressions(contact(listIds=[7]), [50, 51]) == [
        ContactSuppression("someone@example.com", (50, 51), "absent_at_backfill")
    ]
    assert contact_suppressions({"id": 9, "attributes": {"SMS": "+33612345678"}}, [50]) == []


# -- the door, through the real agent ------------------------------------------------------------


def _config(tmp_path: Path, **brevo: Any) -> Any:
    return make_config(tmp_path, brevo={"webhook_secret": SECRET, **brevo})


async def _post(
    app: App,
    site: str,
    body: bytes,
    *,
    bearer: str | None = None,
    token: str | None = None,
) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{app.http.port}/webhooks/brevo/{site}"
    headers = {"Content-Type": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    params = {"token": token} if token is not None else {}
    async with (
        aiohttp.ClientSession() as s,
        s.post(url, data=body, headers=headers, params=params) as r,
    ):
        return r.status, await r.json()


def _body(*events: dict[str, Any]) -> bytes:
    return json.dumps(events[0] if len(events) == 1 else list(events)).encode()


async def test_the_door_records_suppressions_with_the_secret_in_header_or_query(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(_config(tmp_path)) as app:
        account = app.sites["a"].brevo.account
        status, answer = await _post(app, "a", _body(UNSUBSCRIBE), bearer=SECRET)
        assert (status, answer) == (200, {"ok": True, "recorded": 1, "ignored": []})
        status, answer = await _post(app, "a", _body(SPAM, OPENED), token=SECRET)
        assert status == 200 and answer["recorded"] == 1
        assert answer["ignored"] == [
            {
                "index": 1,
                "event": "opened",
                "reason": "not an event the agent uses (unsubscribed, listAddition, spam)",
            }
        ]
        got = await app.store.suppressed(
            account, ["left.us@example.com", "angry@example.com", "reader@example.com"]
        )
        assert got == {"left.us@example.com": frozenset({50}), "angry@example.com": frozenset({0})}

        # The person rejoins list 50 in Brevo: the suppression of that list is lifted.
        status, answer = await _post(app, "a", _body(LIST_ADDITION), bearer=SECRET)
        assert status == 200 and answer["recorded"] == 1
        got = await app.store.suppressed(account, ["left.us@example.com"])
        assert got == {}

        metrics = app.metrics
        assert metrics.get("woobrevo_brevo_webhook_requests_total", site="a", outcome="stored") == 3
        assert (
            metrics.get(
                "woobrevo_brevo_webhook_events_total",
                site="a",
                event="unsubscribed",
                outcome="recorded",
            )
            == 1
        )
        assert (
            metrics.get(
                "woobrevo_brevo_webhook_events_total", site="a", event="other", outcome="ignored"
            )
            == 1
        )
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{app.http.port}/metrics") as r,
        ):
            text = await r.text()
        assert 'woobrevo_brevo_webhook_requests_total{outcome="stored",site="a"} 3' in text
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{app.http.port}/status") as r,
        ):
            doc = await r.json()
        assert doc["sites"]["a"]["last_brevo_event"] == "list_addition"
        assert isinstance(doc["sites"]["a"]["last_brevo_webhook"], float)
        assert doc["sites"]["b"]["last_brevo_webhook"] is None
        assert SECRET not in json.dumps(doc)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "brevo webhook: 1 event(s) recorded" in logged
    for secret_or_email in (SECRET, "left.us", "angry@", "reader@"):
        assert secret_or_email.lower() not in logged.lower()


async def test_the_door_refuses_a_wrong_secret_an_unknown_site_and_an_unreadable_body(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(_config(tmp_path)) as app:
        body = _body(UNSUBSCRIBE)
        for kwargs, words in (
            ({"bearer": SECRET + "x"}, "does not match"),
            ({"token": "guess"}, "does not match"),
            ({}, "no secret"),
        ):
            status, answer = await _post(app, "a", body, **kwargs)
            assert status == 401 and answer["error"] == "bad_secret", kwargs
            assert words in answer["message"]
        status, answer = await _post(app, "nope", body, bearer=SECRET)
        assert status == 404 and "no site 'nope'" in answer["message"]
        status, answer = await _post(app, "a", b"{not json", bearer=SECRET)
        assert status == 400 and answer["error"] == "unreadable"
        assert "not JSON" in answer["message"]
        status, answer = await _post(app, "a", b"", token=SECRET)
        assert status == 400 and "empty" in answer["message"]
        # Only ignored events: 200, nothing recorded.
        status, answer = await _post(app, "b", _body(OPENED), bearer=SECRET)
        assert status == 200 and answer["recorded"] == 0 and len(answer["ignored"]) == 1
        account = app.sites["a"].brevo.account
        assert await app.store.suppressed(account, ["left.us@example.com"]) == {}
        m = app.metrics
        assert m.get("woobrevo_brevo_webhook_requests_total", site="a", outcome="bad_secret") == 3
        assert m.get("woobrevo_brevo_webhook_requests_total", site="a", outcome="unreadable") == 2
        assert m.get("woobrevo_brevo_webhook_requests_total", site="b", outcome="ignored") == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "brevo webhook refused from 127.0.0.1: the secret does not match" in logged
    for secret_or_email in (SECRET, "guess", "left.us"):
        assert secret_or_email not in logged


async def test_without_a_configured_secret_every_delivery_is_refused(tmp_path: Path) -> None:
    async with running(make_config(tmp_path)) as app:
        status, answer = await _post(app, "a", _body(UNSUBSCRIBE), bearer="anything")
        assert status == 401
        assert answer["message"] == "no brevo.webhook_secret is configured for this site"


# -- config and the operator's instructions ------------------------------------------------------


def test_the_secret_comes_from_the_environment_and_is_masked(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    path = write_config(tmp_path / "c.yaml", data)
    cfg = load_config(path, env={"WOOBREVO_BREVO_WEBHOOK_SECRET": SECRET})
    assert cfg.site("a").brevo.webhook_secret == SECRET
    shown = json.dumps(masked(cfg))
    assert SECRET not in shown and "****" + SECRET[-4:] in shown


def test_the_cli_prints_what_to_paste_into_brevo(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", config_data(tmp_path))

    def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "agent.cli",
                "webhooks",
                "brevo",
                *("--config", str(path)),
                *("--site", "a"),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env},
            timeout=60,
        )

    out = run({})
    assert out.returncode == 1 and "set brevo.webhook_secret first" in out.stdout
    out = run({"WOOBREVO_BREVO_WEBHOOK_SECRET": SECRET})
    assert out.returncode == 0, out.stderr
    assert "URL:            https://agent.example/webhooks/brevo/a" in out.stdout
    assert "unsubscribed, listAddition, spam" in out.stdout
    assert '"auth": {"type": "bearer"' in out.stdout
    assert SECRET not in out.stdout + out.stderr
