"""Consent and suppression through the real agent and the Brevo fake: a contact who left a
list or was blocklisted in Brevo stays out after a sync through the stream door, a checkout
without the box leaves a subscriber subscribed, a suppression that arrives while a job waits
still wins at send time, and a double opt-in goes once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from agent.app import App
from agent.config import Config
from agent.core.events import Door, Event, parse_event
from agent.core.times import gmt
from tests.agent.doorkit import batch, client, config_data, hello, order
from tests.fakes.brevo import BrevoFake
from tests.kit import live, load, until

LEFT, BLOCKED, SUBSCRIBER = "left@example.com", "blocked@example.com", "fan@example.com"
DOI = {"template_id": 12, "redirect_url": "https://shop.example/thanks"}


def _data(tmp_path: Path, fake: BrevoFake, **consent: Any) -> dict[str, Any]:
    data = config_data(
        tmp_path,
        brevo=live(fake, max_backoff="1s"),
        woocommerce={"lists": {"all_customers": 50, "buyers": 51}, "consent": consent},
    )
    data["agent"]["processing"] = "inline"
    return data


def order_event(eid: str, order_id: int, email: str, choice: bool | None = None,
                when: str = "2026-12-06T06:00:00") -> dict[str, Any]:  # fmt: skip
    """A stream event with a paid order from `email`, with the checkout box's choice."""
    body = order(order_id, when)
    body.update(status="processing", customer_id=0, refunds=[])
    body["billing"] = {**body["billing"], "email": email}
    if choice is not None:
        value = {"subscribed": choice, "time": when + "Z", "source": "checkout_classic",
                 "text": "Send me offers"}  # fmt: skip
        body["meta_data"] = [*body["meta_data"], {"id": 1, "key": "_woobrevo_consent", "value": value}]  # fmt: skip
    return {"id": eid, "topic": "order.created", "resource": "order", "resource_id": order_id,
            "payload": body}  # fmt: skip


async def _send(ws: Any, name: str, events: list[dict[str, Any]]) -> None:
    await ws.send(batch(name, events))
    ack = json.loads(await ws.recv())
    assert ack["accepted"] == [e["id"] for e in events], ack


def _lists(fake: BrevoFake, email: str) -> list[int]:
    return list(fake.contacts[email]["listIds"])


def _no_blacklist_sent(fake: BrevoFake) -> None:
    for r in fake.requests:
        assert "emailBlacklisted" not in json.dumps(r.json or {}), (r.method, r.path)


async def test_who_left_in_brevo_stays_out_after_a_stream_sync(tmp_path: Path) -> None:
    async with BrevoFake(lists=[50, 51]) as fake:
        fake.seed_contact(LEFT, lists=[51], unsubscribed=[50])
        fake.seed_contact(BLOCKED, blacklisted=True)
        cfg = Config.model_validate(_data(tmp_path, fake))
        account = cfg.site("a").brevo.account
        async with App(cfg) as app, client(app) as ws:
            welcome = await hello(ws)
            assert welcome["consent"] == {"mode": "implied"}
            # What the Brevo webhook door and backfill record (the ConsentStore port).
            await app.store.suppress(account, LEFT, [50], "unsubscribed", time.time())
            await app.store.suppress(account, BLOCKED, [], "spam", time.time())
            await _send(ws, "b1", [order_event("o-1", 501, LEFT), order_event("o-2", 502, BLOCKED),
                                   order_event("o-3", 503, SUBSCRIBER)])  # fmt: skip
            await app.wait_idle(within=20)
        assert _lists(fake, LEFT) == [51]
        assert fake.contact_flags[fake.contacts[LEFT]["id"]]["listUnsubscribed"] == [50]
        assert _lists(fake, BLOCKED) == []
        assert fake.contact_flags[fake.contacts[BLOCKED]["id"]]["emailBlacklisted"] is True
        assert _lists(fake, SUBSCRIBER) == [50, 51]  # implied mode: as before
        assert fake.contacts[BLOCKED]["attributes"]  # the order's data still reached Brevo
        _no_blacklist_sent(fake)
        fake.assert_no_spec_violations()


async def test_required_mode_and_a_checkout_without_the_box(tmp_path: Path) -> None:
    async with BrevoFake(lists=[50, 51]) as fake:
        cfg = Config.model_validate(_data(tmp_path, fake, mode="required"))
        async with App(cfg) as app, client(app) as ws:
            assert (await hello(ws))["consent"] == {"mode": "required"}
            await _send(ws, "b1", [order_event("o-1", 601, SUBSCRIBER, True),
                                   order_event("o-2", 602, LEFT, False),
                                   order_event("o-3", 603, BLOCKED)])  # fmt: skip
            await app.wait_idle(within=20)
            assert _lists(fake, SUBSCRIBER) == [50, 51]
            assert _lists(fake, LEFT) == [] and _lists(fake, BLOCKED) == []
            # The subscriber buys again without ticking the box: still subscribed.
            await _send(ws, "b2", [order_event("o-4", 604, SUBSCRIBER, False, "2026-12-06T08:00:00")])  # fmt: skip
            await app.wait_idle(within=20)
        assert _lists(fake, SUBSCRIBER) == [50, 51]
        assert not any("unlinkListIds" in json.dumps(r.json or {}) for r in fake.requests), (
            "a checkout without the box must not unsubscribe"
        )
        placed = [e for e in fake.events if e["identifiers"].get("email_id") == LEFT]
        assert placed == []  # no marketing event without consent
        _no_blacklist_sent(fake)
        fake.assert_no_spec_violations()


async def test_a_suppression_stored_after_the_job_was_queued_still_wins(tmp_path: Path) -> None:
    async with BrevoFake(lists=[50, 51]) as fake:
        data = _data(tmp_path, fake)
        cfg = load(tmp_path, data)
        account = cfg.resolved_sites()[0].brevo.account
        raw = order_event("o-1", 701, LEFT)
        ev = parse_event({"topic": "order.created", "payload": raw["payload"]}, door=Door.WEBHOOK)
        assert isinstance(ev, Event)
        fake.outage(503)  # the contact job waits, queued with listIds [50, 51]
        async with App(cfg, doors=False) as app:
            await app.store.ingest("a", [ev])
            await app.processor.drain()
            await until(lambda: len(fake.requests) >= 1, 10, what="a first try")
            await app.store.suppress(account, LEFT, [50], "unsubscribed", time.time())
            fake.end_outage()
            await app.wait_idle(within=20)
        assert _lists(fake, LEFT) == [51]
        fake.assert_no_spec_violations()


async def test_double_opt_in_goes_once_and_the_lists_wait_for_it(tmp_path: Path) -> None:
    async with BrevoFake(lists=[50, 51]) as fake:
        cfg = Config.model_validate(_data(tmp_path, fake, mode="required", double_opt_in=DOI))
        account = cfg.site("a").brevo.account
        async with App(cfg) as app, client(app) as ws:
            await hello(ws)
            await _send(ws, "b1", [order_event("o-1", 801, SUBSCRIBER, True)])
            await app.wait_idle(within=20)
            await _send(ws, "b2", [order_event("o-2", 802, SUBSCRIBER, True, "2026-12-06T07:00:00")])  # fmt: skip
            await app.wait_idle(within=20)
            (request,) = fake.doi_requests
            assert request["includeListIds"] == [50, 51] and request["templateId"] == 12
            assert _lists(fake, SUBSCRIBER) == []  # not before the person confirms
            fake.confirm_doi(SUBSCRIBER)
            # Brevo's listAddition webhook, as the webhook door records it.
            await app.store.lift(account, SUBSCRIBER, [50, 51])
            record = await app.store.consent_of(account, SUBSCRIBER)
            assert record is not None and record.doi == "confirmed"
            await _send(ws, "b3", [order_event("o-3", 803, SUBSCRIBER, None, "2026-12-06T09:00:00")])  # fmt: skip
            await app.wait_idle(within=20)
        assert _lists(fake, SUBSCRIBER) == [50, 51]
        assert len(fake.doi_requests) == 1
        fake.assert_no_spec_violations()


async def test_who_left_comes_back_only_by_opting_in_again(tmp_path: Path) -> None:
    async with BrevoFake(lists=[50, 51]) as fake:
        cfg = Config.model_validate(_data(tmp_path, fake, mode="required"))
        account = cfg.site("a").brevo.account
        async with App(cfg) as app, client(app) as ws:
            await hello(ws)
            await _send(ws, "b1", [order_event("o-1", 901, SUBSCRIBER, True)])
            await app.wait_idle(within=20)
            assert _lists(fake, SUBSCRIBER) == [50, 51]
            # They unsubscribe from list 50 in Brevo; the webhook door records it.
            fake.seed_contact(SUBSCRIBER, unsubscribed=[50])
            await app.store.suppress(account, SUBSCRIBER, [50], "unsubscribed", time.time())
            await _send(ws, "b2", [order_event("o-2", 902, SUBSCRIBER, None, "2026-12-06T01:00:00")])  # fmt: skip
            await app.wait_idle(within=20)
            assert _lists(fake, SUBSCRIBER) == [51]
            # A ticked box given after leaving brings them back.
            later = gmt(time.time() + 60)
            await _send(ws, "b3", [order_event("o-3", 903, SUBSCRIBER, True, later)])
            await app.wait_idle(within=20)
        assert _lists(fake, SUBSCRIBER) == [50, 51]
        fake.assert_no_spec_violations()


async def test_a_double_opt_in_for_lists_left_meanwhile_is_not_asked(tmp_path: Path) -> None:
    async with BrevoFake(lists=[50, 51]) as fake:
        data = _data(tmp_path, fake, mode="required", double_opt_in=DOI)
        cfg = load(tmp_path, data)
        account = cfg.site("a").brevo.account
        raw = order_event("o-1", 951, SUBSCRIBER, True)
        ev = parse_event({"topic": "order.created", "payload": raw["payload"]}, door=Door.WEBHOOK)
        assert isinstance(ev, Event)
        fake.outage(503)
        async with App(cfg, doors=False) as app:
            await app.store.ingest("a", [ev])
            await app.processor.drain()
            await until(
                lambda: any(r.path.endswith("doubleOptinConfirmation") for r in fake.requests),
                10,
                what="a first try of the DOI",
            )
            await app.store.suppress(account, SUBSCRIBER, [], "spam", time.time() + 3600)
            fake.end_outage()
            await app.wait_idle(within=20)
        assert fake.doi_requests == []
        assert _lists(fake, SUBSCRIBER) == []
