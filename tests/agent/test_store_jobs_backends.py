"""The forwarder's, the consent, the privacy and the operator's ports on both backends (the
`open_store` fixture, tests/agent/conftest.py): a job's claim, completion, retry and dead
letter, suppressions stripped at claim time, an erasure's purge and an export's read, dead
letters sent again and dropped; the same calls, the same answers. Then what only PostgreSQL
has: several replicas claiming from one database, with leases."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from agent.core.events import Action, Event, EventId, Rejection, Resource
from agent.core.jobs import Job, Kind
from agent.store.postgres import PostgresStore
from tests.agent import storekit
from tests.agent.conftest import OpenStore
from tests.agent.storesql import query, write

A = "main"
EMAIL = "Ann.Lee@Example.com"
LOW = EMAIL.lower()


def _event(eid: str, rid: int, **payload: Any) -> Event:
    return Event(
        id=EventId(eid),
        topic="order.updated",
        resource=Resource.ORDER,
        action=Action.UPDATED,
        resource_id=rid,
        payload={"id": rid, "date_modified_gmt": "2026-11-27T06:00:00", **payload},
        occurred_at=datetime(2026, 11, 27, tzinfo=UTC),
    )


async def _states(store: Any) -> list[tuple[str, int]]:
    return [
        (str(k), int(s)) for k, s in await query(store, "SELECT key, state FROM jobs ORDER BY id")
    ]


async def test_complete_retry_and_dead_letter_a_claimed_job(open_store: OpenStore) -> None:
    async with open_store() as store:
        await storekit.add_contact_jobs(store, A, [("a@x.test", [1]), ("b@x.test", [2])])
        await storekit.add_job(store, A, "s1", "event", "event:1", {"event": "x", "n": 1})
        await storekit.add_job(store, A, "s1", "event", "event:1", {"event": "x", "n": 2})
        a, b = await store.claim(A, Kind.CONTACT, 10, 1.0)
        events = await store.claim(A, Kind.EVENT, 10, 1.0)
        assert len(events) == 2  # events never coalesce: both fly
        assert await store.pending_count(A, Kind.CONTACT, 1.0) == 0
        await store.complete([a, *events])
        ((state,),) = await query(store, "SELECT state FROM forwarded WHERE key='contact:a@x.test'")
        assert json.loads(state) == {"attributes": {"FIRSTNAME": "A"}, "listIds": [1]}
        await store.retry([b], 5.0, "503 from Brevo", single_only=True)
        assert await store.pending_count(A, Kind.CONTACT, 4.0) == 0
        (again,) = await store.claim(A, Kind.CONTACT, 10, 5.0, single=True)
        assert (again.id, again.attempts, again.single_only) == (b.id, 1, True)
        await store.dead_letter(again, "invalid_parameter", "email is not valid")
        assert await _states(store) == []
        (letter,) = await store.dead_letters()
        assert (letter.origin, letter.ref, letter.account, letter.code) == (
            "job",
            "contact:b@x.test",
            A,
            "invalid_parameter",
        )
        assert letter.body["body"]["email"] == "b@x.test"
        status = await store.status()
        assert status["s1"]["brevo_done_contact"] == 1 and status["s1"]["brevo_done_event"] == 2
        assert status["s1"]["dead_letters"] == 1 and status["s1"]["last_success"] > 0
        # Sent again: the job goes back to the queue, alone, and can be claimed again.
        assert await store.retry_dead_letters([letter.id], lambda raw: None) == (1, [])
        assert await store.dead_letters() == []
        (back,) = await store.claim(A, Kind.CONTACT, 10, 1.0, single=True)
        assert back.body == b.body and back.single_only
        # Nothing more to send again; a second retry finds nothing open.
        assert await store.retry_dead_letters(None, lambda raw: None) == (0, [])


async def test_dead_letters_of_events_go_back_to_the_inbox_or_say_why(
    open_store: OpenStore,
) -> None:
    async with open_store() as store:
        refused = [
            (Rejection("r-1", "bad_payload", "no id"), {"id": "r-1", "topic": "order.updated"}),
            (Rejection("r-2", "bad_payload", "no id"), {"id": "r-2", "topic": "order.updated"}),
            (Rejection("r-3", "bad_payload", "no id"), {"id": "r-3", "topic": "order.updated"}),
        ]
        await store.ingest("s1", [], refused)
        one, two, three = await store.dead_letters()
        fixed = {"r-1": _event("r-1", 11)}

        def reparse(raw: Any) -> Event | None:
            return fixed.get(raw["id"])

        done, problems = await store.retry_dead_letters([one.id, two.id], reparse)
        assert done == 1 and len(problems) == 1 and problems[0].startswith(f"dead letter {two.id}:")
        assert "still invalid" in problems[0]
        assert (await store.counts())["inbox_pending"] == 1
        assert [d.id for d in await store.dead_letters("retried")] == [one.id]
        # Dropped: kept for the record, never sent again; a second drop changes nothing.
        assert await store.drop_dead_letters([two.id, two.id, 9999]) == 1
        assert await store.drop_dead_letters(None) == 1
        assert await store.drop_dead_letters(None) == 0
        assert {d.id for d in await store.dead_letters("dropped")} == {two.id, three.id}
        assert await store.retry_dead_letters(None, reparse) == (0, [])


async def test_an_event_waits_for_its_contacts_earlier_upsert(open_store: OpenStore) -> None:
    # tests/e2e (a guest's abandoned cart, on PostgreSQL): the event reached Brevo before the
    # contact it is about, whose attributes and lists it relies on.
    async with open_store() as store:
        await storekit.add_contact_jobs(store, A, [("a@x.test", [52])])
        cart = {"event_name": "cart_abandoned", "identifiers": {"email_id": "a@x.test"}}
        await storekit.add_job(store, A, "s1", "event", "event:cart:1", cart)
        other = {"event_name": "order_placed", "identifiers": {"email_id": "b@x.test"}}
        await storekit.add_job(store, A, "s1", "event", "event:order:2", other)
        assert [j.key for j in await store.claim(A, Kind.EVENT, 10, 1.0)] == ["event:order:2"]
        (contact,) = await store.claim(A, Kind.CONTACT, 10, 1.0)
        assert await store.claim(A, Kind.EVENT, 10, 1.0) == []  # its contact is in flight
        await store.complete([contact])
        assert [j.key for j in await store.claim(A, Kind.EVENT, 10, 1.0)] == ["event:cart:1"]
        # A contact change queued after the event does not hold it back.
        await storekit.add_job(store, A, "s1", "event", "event:cart:3", cart)
        await storekit.add_contact_jobs(store, A, [("a@x.test", [52])])
        assert [j.key for j in await store.claim(A, Kind.EVENT, 10, 1.0)] == ["event:cart:3"]
        # Nor, once Brevo holds the contact, one queued before it: only a creation comes first.
        await storekit.add_contact_jobs(store, A, [("a@x.test", [53])])
        await storekit.add_job(store, A, "s1", "event", "event:cart:4", cart)
        assert [j.key for j in await store.claim(A, Kind.EVENT, 10, 1.0)] == ["event:cart:4"]


async def test_a_claim_strips_the_lists_a_suppression_took_away(open_store: OpenStore) -> None:
    async with open_store() as store:
        await storekit.add_contact_jobs(store, A, [("a@x.test", [50, 51]), ("b@x.test", [50])])
        await storekit.add_job(
            store, A, "s1", "doi", "doi:c@x.test", {"email": "c@x.test", "includeListIds": [50]}
        )
        # Arrived while the jobs waited: the claim reads them, just before the send.
        await store.suppress(A, "a@x.test", [50], "unsubscribed", 10.0)
        await store.suppress(A, "c@x.test", [], "spam", 10.0)
        a, b = await store.claim(A, Kind.CONTACT, 10, 1.0)
        assert a.body["listIds"] == [51] and b.body["listIds"] == [50]
        assert "emailBlacklisted" not in a.body
        (doi,) = await store.claim(A, Kind.DOI, 10, 1.0)
        assert not doi.body.get("includeListIds")


async def test_an_erase_waits_for_its_contact_in_flight(open_store: OpenStore) -> None:
    async with open_store() as store:
        await storekit.add_contact_jobs(store, A, [(LOW, [1])])
        (contact,) = await store.claim(A, Kind.CONTACT, 10, 1.0)
        await storekit.add_job(
            store, A, "s1", "erase", f"erase:{LOW}", {"email": LOW, "erasure": 7, "site": "s1"}
        )
        assert await store.claim(A, Kind.ERASE, 10, 1.0) == []  # the upsert would re-create it
        await store.complete([contact])
        (erase,) = await store.claim(A, Kind.ERASE, 10, 1.0)
        assert erase.body["erasure"] == 7


async def _seed_person(store: Any) -> None:
    """What the store may hold about EMAIL: an event, a job, Brevo's record, consent, a
    suppression, a dead letter, an order fact, a cart, a keyed value."""
    await store.ingest("s1", [_event("o-1", 1, billing={"email": EMAIL})])
    await store.ingest("s2", [_event("o-2", 2, billing={"email": "someone@else.test"})])
    await storekit.add_contact_jobs(store, A, [(LOW, [1]), ("keep@x.test", [1])])
    await write(
        store,
        "INSERT INTO forwarded (account, key, state, updated_at) VALUES (?, ?, '{}', 0)",
        A,
        f"contact:{LOW}",
    )
    await write(
        store,
        "INSERT INTO consent (account, email, subscribed, since, source) VALUES (?, ?, 1, 5, 'x')",
        A,
        LOW,
    )
    await store.suppress(A, LOW, [9], "unsubscribed", 1.0)
    await write(
        store,
        "INSERT INTO order_facts (site, order_id, email, status, total, created_at)"
        " VALUES ('s1', 1, ?, 'completed', 12.5, '2026-11-27')",
        LOW,
    )
    cart = json.dumps({"snapshot": {"totals": {"total": "9.90"}, "currency": "EUR"}})
    await write(
        store,
        "INSERT INTO carts (site, cart_id, status, due, email, state)"
        " VALUES ('s1', 3, 'active', 100, ?, ?)",
        LOW,
        cart,
    )
    await write(
        store,
        "INSERT INTO dead_letters (site, origin, ref, kind, code, message, body, created_at)"
        " VALUES ('s1', 'job', ?, 'contact', 'bad', 'refused', ?, 1)",
        f"contact:{LOW}",
        json.dumps({"body": {"email": LOW}}),
    )
    await store.set_meta(f"brevo:id:{LOW}", "42")


async def test_export_reads_and_an_erasure_purges_every_trace(open_store: OpenStore) -> None:
    async with open_store() as store:
        await _seed_person(store)
        held = await store.holdings(A, ["s1"], EMAIL)
        assert held["consent"] == [{"subscribed": True, "since": 5.0, "source": "x", "doi": None}]
        assert held["suppressions"] == [{"list_id": 9, "reason": "unsubscribed", "since": 1.0}]
        assert [e["event"] for e in held["events"]] == ["o-1"]
        assert [j["kind"] for j in held["jobs"]] == ["contact"]
        assert [d["code"] for d in held["dead_letters"]] == ["bad"]
        assert held["orders"] == [
            {"order": 1, "status": "completed", "total": 12.5, "created": "2026-11-27"}
        ]
        assert held["carts"] == [
            {"cart": 3, "status": "active", "total": "9.90", "currency": "EUR", "changed": None}
        ]
        assert (await store.holdings(A, [], EMAIL))["events"] == []  # no site: no event
        await storekit.add_job(
            store, A, "s1", "erase", f"erase:{LOW}", {"email": LOW, "erasure": 7, "site": "s1"}
        )
        (erase,) = await store.claim(A, Kind.ERASE, 10, 1.0)
        await store.erasure_finished(erase)
        after = await store.holdings(A, ["s1", "s2"], EMAIL)
        assert all(rows == [] for rows in after.values()), after
        # The inbox row stays (a replay is still deduped), without the address.
        ((payload,),) = await query(store, "SELECT payload FROM inbox WHERE event_id='o-1'")
        assert LOW not in payload.lower() and "o-1" not in payload
        assert await store.get_meta(f"brevo:id:{LOW}") is None
        assert [k for k, _ in await _states(store)] == ["contact:keep@x.test"]
        assert (await store.ingest("s1", [_event("o-1", 1)])).new == 0
        status = await store.status()
        assert status["s1"]["erasures"] == {"done": 1, "pending": 0}


async def test_an_erase_brevo_refused_still_purges_and_is_kept_without_the_address(
    open_store: OpenStore,
) -> None:
    async with open_store() as store:
        await _seed_person(store)
        job = Job(0, A, "s1", Kind.ERASE, f"erase:{LOW}", {"email": LOW, "erasure": 8}, False)
        await store.erasure_finished(job, ("bad_request", f"contact {EMAIL} is locked"))
        (letter,) = await store.dead_letters()
        assert letter.ref == "s1:erasure-8" and letter.code == "bad_request"
        assert LOW not in letter.message.lower() and "erase it there by hand" in letter.message
        assert all(rows == [] for rows in (await store.holdings(A, ["s1"], EMAIL)).values())


# -- several replicas on one PostgreSQL database -----------------------------------------------


@pytest.fixture
def replicas(pg_dsn: str) -> Any:
    """Opens a replica's store on the test's database: `replicas(owner, lease=…)`."""
    return lambda owner, **kw: PostgresStore(pg_dsn, owner=owner, **kw)


async def test_replicas_claiming_at_once_never_fly_one_key_twice(replicas: Any) -> None:
    async with replicas("r1") as one, replicas("r2") as two, replicas("r3") as three:
        # 40 keys, 3 jobs each: every claim of every replica at once, for a while.
        contacts = [(f"p{i}@x.test", [1]) for i in range(40)]
        await storekit.add_contact_jobs(one, A, contacts * 3)
        flying: dict[str, str] = {}
        sent: list[str] = []

        async def work(store: PostgresStore) -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                jobs = await store.claim(A, Kind.CONTACT, 7, 1.0)
                if not jobs:
                    if await store.pending_count(A, Kind.CONTACT, 1.0) == 0:
                        return
                    await asyncio.sleep(0.005)
                    continue
                for j in jobs:
                    assert j.key not in flying, f"{j.key} flies on {flying.get(j.key)} too"
                    flying[j.key] = store.owner
                await asyncio.sleep(0.002)  # the request to Brevo
                for j in jobs:
                    del flying[j.key]
                    sent.append(j.key)
                await store.complete(jobs)

        await asyncio.gather(work(one), work(two), work(three))
        assert sorted(sent) == sorted(f"contact:{e}" for e, _ in contacts * 3)  # none lost
        assert (await one.counts())["jobs"] == 0


async def test_a_replica_hands_back_only_its_own_claims_and_takes_over_expired_ones(
    replicas: Any,
) -> None:
    async with replicas("r1", lease=0.5) as one, replicas("r2") as two:
        await storekit.add_contact_jobs(one, A, [("a@x.test", [1]), ("b@x.test", [1])])
        (a,) = await one.claim(A, Kind.CONTACT, 1, 1.0)
        (b,) = await two.claim(A, Kind.CONTACT, 1, 1.0)
        # r2 stops: its claim goes back, r1's stays in flight (its request still runs).
        await two.unclaim(A)
        (b2,) = await two.claim(A, Kind.CONTACT, 10, 1.0)
        assert b2.id == b.id
        await two.retry([a], 0.0, "not mine")  # another replica's claim: left alone
        assert await two.claim(A, Kind.CONTACT, 10, 1.0) == []
        # r1 dies with a@x.test in flight; once its lease ran out, r2 takes the job over.
        deadline = time.monotonic() + 10
        while await two.pending_count(A, Kind.CONTACT, 1.0) == 0:
            assert time.monotonic() < deadline, "the dead replica's claim never expired"
            await asyncio.sleep(0.05)
        (taken,) = await two.claim(A, Kind.CONTACT, 10, 1.0)
        assert taken.id == a.id
        rows = await query(two, "SELECT claimed_by FROM jobs ORDER BY id")
        assert rows == [("r2",), ("r2",)]
    # A replica restarting under its name gets its claims back; another's stay theirs.
    async with replicas("r3") as three:
        await storekit.add_contact_jobs(three, A, [("c@x.test", [1])])
        (c,) = await three.claim(A, Kind.CONTACT, 10, 1.0)
    async with replicas("r2") as two:
        again = await two.claim(A, Kind.CONTACT, 10, 1.0)
        assert sorted(j.id for j in again) == sorted([a.id, b.id])
        rows = await query(two, "SELECT claimed_by FROM jobs WHERE id=?", c.id)
        assert rows == [("r3",)]
