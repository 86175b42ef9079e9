"""Erasure (issue 14): a `privacy.erase` through the stream door → the contact deleted (or
blocklisted) in the Brevo fake → no trace of the email in the store's files, WAL included,
read byte for byte."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.app import App
from agent.config import Config
from agent.core.events import Door, Event, Rejection, Resource, parse_event
from agent.core.times import gmt
from tests.agent.doorkit import AgentProcess, batch, client, config_data, hello, order
from tests.agent.test_carts_core import snap
from tests.fakes.brevo import BrevoFake
from tests.kit import live, until, write_config

EMAIL = "Erase.Me+shop@Example.com"  # as a customer typed it; the agent keeps it lowercased
LOW = EMAIL.lower()
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _data(tmp_path: Path, fake: BrevoFake, erasure: str = "delete") -> dict[str, Any]:
    data = config_data(
        tmp_path,
        brevo=live(fake, max_backoff="1s"),
        woocommerce={"privacy": {"erasure": erasure}, "lists": {"all_customers": 50}},
    )
    data["agent"]["processing"] = "inline"
    return data


def order_event(eid: str, order_id: int, email: str = EMAIL) -> dict[str, Any]:
    body = order(order_id, gmt(time.time()))
    body["status"] = "processing"
    body["billing"] = {**body["billing"], "email": email, "first_name": "Erin"}
    body["customer_id"] = 0
    consent = {"subscribed": True, "time": gmt(time.time()) + "Z", "source": "checkout_classic",
               "text": "Send me news"}  # fmt: skip
    body["meta_data"] = [*body["meta_data"], {"id": 99, "key": "_woobrevo_consent",
                                              "value": consent}]  # fmt: skip
    return {"id": eid, "topic": "order.created", "resource": "order", "resource_id": order_id,
            "payload": body}  # fmt: skip


def cart_event(eid: str, email: str = EMAIL) -> dict[str, Any]:
    return {"id": eid, "topic": "cart.updated", "resource": "cart", "resource_id": 7,
            "payload": snap(7, time.time(), email=email)}  # fmt: skip


def erase_event(eid: str, number: int, email: str = EMAIL) -> dict[str, Any]:
    payload = {"id": number, "email": email, "date_modified_gmt": gmt(time.time())}
    return {"id": eid, "topic": "privacy.erase", "resource_id": number, "payload": payload}


async def send(ws: Any, name: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    await ws.send(batch(name, events))
    ack: dict[str, Any] = json.loads(await ws.recv())
    return ack


def traces(cfg: Config, needle: str = LOW) -> list[str]:
    """The store files (database, -wal, -shm) that hold `needle`, in any case."""
    found = []
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{cfg.agent.store_path}{suffix}")
        if path.exists() and needle.lower().encode() in path.read_bytes().lower():
            found.append(path.name)
    return found


def _rows(cfg: Config, table: str) -> int:
    db = sqlite3.connect(f"file:{cfg.agent.store_path}?mode=ro", uri=True)
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def _erasures(snapshot: dict[str, Any]) -> dict[str, int]:
    erasures: dict[str, int] = snapshot["sites"]["a"]["erasures"] or {}
    return erasures


async def _known(app: App, fake: BrevoFake, cfg: Config) -> None:
    """The email is everywhere: Brevo, the inbox, order facts, a cart, `forwarded`."""
    async with client(app) as ws:
        await hello(ws)
        ack = await send(ws, "b1", [order_event("o-1", 901), cart_event("c-1")])
        assert ack["accepted"] == ["o-1", "c-1"], ack
    await fake.wait_for(lambda: LOW in fake.contacts, timeout=15)
    await app.wait_idle(within=15)
    # and a suppression (a Brevo webhook would have written it: agent/store/consent.py)
    await app.store.suppress(cfg.site("a").brevo.account, LOW, [50], "unsubscribed", time.time())
    assert traces(cfg)  # before the erasure, the store holds the email
    assert _rows(cfg, "suppression") == 1 and _rows(cfg, "consent") == 1


@pytest.mark.parametrize("erasure", ["delete", "blocklist"])
async def test_erase_removes_the_contact_and_every_trace(
    tmp_path: Path, erasure: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with BrevoFake(attributes={"FIRSTNAME": "text", "LOYALTY_POINTS": "float"}) as fake:
        cfg = Config.model_validate(_data(tmp_path, fake, erasure))
        async with App(cfg) as app:
            await _known(app, fake, cfg)
            assert fake.contacts[LOW]["attributes"]["FIRSTNAME"] == "Erin"
            async with client(app) as ws:
                await hello(ws)
                ack = await send(ws, "b2", [erase_event("e-1", 1)])
                assert ack["accepted"] == ["e-1"] and ack["rejected"] == []
            await until(lambda: _done(app), 15, what="the erasure done")
            if erasure == "delete":
                assert LOW not in fake.contacts
                (call,) = [r for r in fake.requests if r.method == "DELETE"]
                assert call.query == {"identifierType": "email_id"} and call.status == 204
            else:
                contact = fake.contacts[LOW]
                assert fake.contact_flags[contact["id"]]["emailBlacklisted"] is True
                assert contact["attributes"]["FIRSTNAME"] == ""
                (call,) = [r for r in fake.requests if r.method == "PUT"]
                assert call.json["emailBlacklisted"] is True
                assert call.json["attributes"] == {"FIRSTNAME": "", "LOYALTY_POINTS": ""}
            assert traces(cfg) == []  # read while the agent runs
            assert _rows(cfg, "suppression") == _rows(cfg, "consent") == 0
            snapshot = await app.http.snapshot()
            assert _erasures(snapshot) == {"done": 1, "pending": 0}
            url = f"http://127.0.0.1:{app.http.port}/metrics"
            async with aiohttp.ClientSession() as s, s.get(url) as r:
                text = await r.text()
            assert 'woobrevo_erasures{site="a",state="done"} 1' in text
            assert 'woobrevo_erasures_total{outcome="done",site="a"} 1' in text
            assert LOW not in text.lower()
        assert traces(cfg) == []  # and once it closed
        fake.assert_no_spec_violations()
    said = [r.getMessage() for r in caplog.records]
    assert "erasure 1 for site a done" in said
    assert not [m for m in said if LOW in m.lower()]


async def _done(app: App, n: int = 1) -> bool:
    return _erasures(await app.http.snapshot()).get("done") == n


async def test_erase_cancels_the_jobs_waiting_for_that_email(tmp_path: Path) -> None:
    async with BrevoFake() as fake:
        cfg = Config.model_validate(_data(tmp_path, fake))
        async with App(cfg) as app:
            fake.outage(503)
            async with client(app) as ws:
                await hello(ws)
                await send(ws, "b1", [order_event("o-1", 901), cart_event("c-1")])
                await fake.wait_for(lambda: any(r.path == "/contacts" for r in fake.requests), 15)
                await send(ws, "b2", [erase_event("e-1", 7)])
            await until(lambda: _pending(app), 15, what="the erase job queued")
            fake.end_outage()
            await until(lambda: _done(app), 15, what="the erasure done")
            await app.wait_idle(within=15)
            assert traces(cfg) == []
        assert LOW not in fake.contacts
        after = [r for r in fake.requests if r.status is not None and r.status < 300]
        assert not [r for r in after if LOW in json.dumps(r.json).lower()], after
        (delete,) = [r for r in fake.requests if r.method == "DELETE"]
        assert delete.status == 404  # the contact never reached Brevo: already gone = done


@pytest.mark.parametrize("answer", [503, 204])
async def test_a_call_in_flight_when_the_erasure_comes_never_lands_after_it(
    tmp_path: Path, answer: int
) -> None:
    """The order's Brevo call is on the wire when the erasure is processed. Answered 503, it
    is dropped, not queued again; answered 204, it stands. Either way the erase waits for that
    answer, so nothing re-creates the contact after the DELETE and the store keeps no trace."""
    async with BrevoFake() as fake:
        cfg = Config.model_validate(_data(tmp_path, fake))
        async with App(cfg) as app:
            fake.stall(path="/orders/status")  # held before Brevo acts on it
            async with client(app) as ws:
                await hello(ws)
                await send(ws, "b1", [order_event("o-1", 902)])
                await fake.wait_for(lambda: fake.stalled_count >= 1, 15)
                await send(ws, "b2", [erase_event("e-1", 8)])
            await until(lambda: _pending(app), 15, what="the erase job queued")
            await asyncio.sleep(0.3)  # time for a wrong erase to go out before the answer
            assert not [r for r in fake.requests if r.method == "DELETE"]
            if answer == 503:  # Brevo fails the call on the wire
                fake.fail_next(1, 503, path="/orders/status")
            fake.release()
            await until(lambda: _done(app), 15, what="the erasure done")
            await app.wait_idle(within=15)
            assert traces(cfg) == []
            assert (await app.store.counts())["jobs"] == 0
        assert LOW not in fake.contacts
        (delete,) = [r for r in fake.requests if r.method == "DELETE"]
        orders = [r for r in fake.requests if r.path == "/orders/status"]
        assert [r.status for r in orders] == [answer]  # sent once: a 503 is not retried
        assert all(r.time < delete.time for r in fake.requests if r is not delete)
        fake.assert_no_spec_violations()


async def _pending(app: App) -> bool:
    return _erasures(await app.http.snapshot()).get("pending") == 1


async def test_erase_of_an_email_the_agent_never_saw(tmp_path: Path) -> None:
    async with BrevoFake() as fake:
        cfg = Config.model_validate(_data(tmp_path, fake))
        async with App(cfg) as app:
            async with client(app) as ws:
                await hello(ws)
                await send(ws, "b1", [erase_event("e-9", 9, "nobody.here@example.org")])
            await until(lambda: _done(app), 15, what="the erasure done")
            assert traces(cfg, "nobody.here@example.org") == []
        (call,) = fake.requests
        assert (call.method, call.status) == ("DELETE", 404)
        assert call.path == "/contacts/nobody.here@example.org"


async def test_an_unusable_erase_is_refused_per_event(tmp_path: Path) -> None:
    cfg = Config.model_validate(config_data(tmp_path))
    async with App(cfg) as app, client(app) as ws:
        await hello(ws)
        bad = erase_event("e-bad", 3, "not-an-address")
        ack = await send(ws, "b1", [bad, erase_event("e-ok", 4, "fine@example.com")])
        assert ack["accepted"] == ["e-ok"]
        (rejected,) = ack["rejected"]
        assert rejected["id"] == "e-bad" and rejected["code"] == "invalid_payload"
        assert "payload.email" in rejected["message"]
        assert "not-an-address" not in rejected["message"]
    assert traces(cfg, "not-an-address") == []


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.slow
async def test_a_kill_between_brevos_answer_and_the_purge_still_purges(tmp_path: Path) -> None:
    async with BrevoFake() as fake:
        data = _data(tmp_path, fake)
        data["agent"]["processing"] = "process"
        path = write_config(tmp_path / "agent.yaml", data)
        cfg = Config.model_validate(data)
        async with AgentProcess(path, ENV) as agent:
            async with agent.connect() as ws:
                await hello(ws)
                await send(ws, "b1", [order_event("o-1", 901)])
                await fake.wait_for(lambda: LOW in fake.contacts, timeout=30)
                # Brevo deletes the contact, and its answer never reaches the agent.
                fake.stall(path="/contacts/{identifier}", applied=True)
                await send(ws, "b2", [erase_event("e-1", 5)])
            await fake.wait_for(lambda: fake.stalled.is_set(), timeout=30)
            assert LOW not in fake.contacts
            assert agent.proc is not None
            for child in _children(agent.proc.pid):
                os.kill(child, signal.SIGKILL)
            agent.proc.kill()
            assert await agent.proc.wait() == -signal.SIGKILL
        assert traces(cfg)  # the purge never ran
        fake.release()
        async with AgentProcess(path, ENV) as agent:

            async def done() -> bool:
                return bool((await agent.status())["sites"]["a"]["erasures"]["done"] == 1)

            await until(done, 30, what="the erasure done after the restart")
            # the WAL is truncated right after the purge's commit
            await until(lambda: traces(cfg) == [], 10, what="no trace of the email")
            logged = "erasure 5 for site a done"
            await until(lambda: any(logged in line for line in agent.log), 10, what=logged)
        deletes = [r.status for r in fake.requests if r.method == "DELETE"]
        assert deletes[-1] == 404  # asked again: already gone = done
        assert traces(cfg) == []
        assert not [line for line in agent.log if LOW in line.lower()]


def test_only_the_stream_door_takes_an_erasure() -> None:
    raw = erase_event("e-1", 1)
    event = parse_event(raw, door=Door.STREAM)
    assert isinstance(event, Event) and event.resource is Resource.PRIVACY
    assert (event.topic, event.resource_id) == ("privacy.erase", 1)
    for door in (Door.WEBHOOK, Door.POLL, Door.BACKFILL, Door.FILE):
        refused = parse_event(raw, door=door)
        assert isinstance(refused, Rejection) and refused.code == "unsupported_door", door
        assert "erasure requests ride only the plugin's stream" in refused.message


@pytest.mark.parametrize(
    ("change", "code", "says"),
    [
        ({"topic": "privacy.export"}, "invalid_event", "a privacy topic is one of privacy.erase"),
        ({"resource": "order"}, "invalid_event", "does not match topic"),
        ({"payload": {"id": 1, "date_modified_gmt": "2026-12-06T06:29:58"}}, "invalid_payload",
         "payload.email"),
        ({"payload": {"id": 1, "email": "x@y", "date_modified_gmt": "2026-12-06T06:29:58"}},
         "invalid_payload", "payload.email"),
        ({"payload": {"id": 1, "email": EMAIL}}, "invalid_payload", "date_modified_gmt"),
        ({"payload": {"id": 0, "email": EMAIL, "date_modified_gmt": "x"}}, "invalid_payload",
         "payload.id"),
    ],
)  # fmt: skip
def test_an_unusable_erasure_is_refused_with_the_reason(
    change: dict[str, Any], code: str, says: str
) -> None:
    raw = {**erase_event("e-1", 1), **change}
    if "payload" in change:
        raw.pop("resource_id")
    refused = parse_event(raw, door=Door.STREAM)
    assert isinstance(refused, Rejection) and refused.code == code, refused
    assert says in refused.message and LOW not in refused.message.lower()


async def test_brevo_refusing_an_erase_still_purges_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with BrevoFake() as fake:
        cfg = Config.model_validate(_data(tmp_path, fake))
        async with App(cfg) as app:
            await _known(app, fake, cfg)
            refusal = {"code": "invalid_parameter", "message": f"Contact {LOW} is locked"}
            fake.fail_next(status=400, path="/contacts/{identifier}", body=refusal)
            async with client(app) as ws:
                await hello(ws)
                await send(ws, "b2", [erase_event("e-1", 3)])
            await until(lambda: _done(app), 15, what="the erasure finished")
            assert traces(cfg) == []
            (dead,) = await app.store.dead_letters()
            assert (dead.kind, dead.code, dead.ref) == ("erase", "invalid_parameter", "a:erasure-3")
            assert "erase it there by hand" in dead.message and "[erased]" in dead.message
            assert dead.body == {"erasure": 3, "mode": "delete"}
            assert await app.store.retry_dead_letters([dead.id], lambda _: None) == (
                0,
                [f"dead letter {dead.id}: the event is still invalid ({dead.message})"],
            )
        assert LOW in fake.contacts  # Brevo kept it: the operator was told
    said = [r.getMessage() for r in caplog.records]
    assert any("erasure 3 for site a done in the agent's store, but Brevo refused" in m
               for m in said)  # fmt: skip
    assert not [m for m in said if LOW in m.lower()]
