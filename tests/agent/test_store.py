"""The store's own contracts that the pipeline and forwarding tests do not reach directly:
how processing applies the core's rules to what is stored, how a claim picks jobs, and how a
write waits for another process's write."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agent.store.tx as tx_mod
from agent.core.aggregates import order_fact
from agent.core.events import Door, Event, parse_event
from agent.core.jobs import Intent, Kind, Outcome
from agent.core.pipeline import Aggregates, SiteRules, decide
from agent.store import SqliteStore
from tests.agent import storekit
from tests.agent.conftest import OpenStore
from tests.agent.storesql import query, write
from tests.conftest import ref
from tests.kit import load

ACCOUNT = "main"
NOW = 1_795_800_000.0  # 2026-11-27, the recordings' day


def event(n: int) -> Event:
    ev = parse_event(
        {
            "id": f"e-{n}",
            "topic": "product.updated",
            "payload": {"id": n, "date_modified_gmt": "2026-11-27T10:00:00"},
        },
        door=Door.STREAM,
    )
    assert isinstance(ev, Event), ev
    return ev


class Scripted:
    """A pipeline that answers each event with the intents scripted for it (by resource id),
    and remembers the aggregates it was given."""

    def __init__(self) -> None:
        self.intents: dict[int, tuple[Intent, ...]] = {}
        self.seen: dict[int, dict[str, Any]] = {}

    def __call__(
        self, site: str, event: Event, prior: dict[str, Any] | None, agg: Aggregates, _: Any
    ) -> Outcome:
        self.seen[event.resource_id] = agg("ann@example.com", ("completed",))
        return Outcome(account=ACCOUNT, intents=self.intents.get(event.resource_id, ()))


async def run_scripted(
    store: SqliteStore, pipeline: Scripted, n: int, *intents: Intent, topic: str = "product.updated"
) -> None:
    """Store and process one event whose pipeline answer is `intents`."""
    pipeline.intents[n] = intents
    raw = {"id": f"e-{n}-{topic}", "topic": topic, "payload": {"id": n, "status": "completed",
           "billing": {"email": "ann@example.com"}, "total": "5.00",
           "date_modified_gmt": "2026-11-27T10:00:00"}}  # fmt: skip
    if topic.endswith(".deleted"):
        raw["payload"] = {"id": n}
    ev = parse_event(raw, door=Door.STREAM)
    assert isinstance(ev, Event), ev
    await store.ingest("s1", [ev])
    assert await store.process_pending(10, pipeline, lambda s, e: order_fact(e)) == 1


def contact_intent(**attrs: Any) -> Intent:
    body = {"email": "a@x.test", "attributes": attrs, "listIds": [50]}
    return Intent(Kind.CONTACT, "contact:a@x.test", body)


async def test_processing_coalesces_against_the_stored_jobs_and_what_brevo_holds(
    open_store: OpenStore,
) -> None:
    """agent/core/dedupe.py `coalesce`, as the store reads its inputs: the pending job stored
    for the key, whether one is in flight, the `forwarded` record."""
    pipeline = Scripted()
    async with open_store() as store:

        async def bodies() -> list[dict[str, Any]]:
            rows = await query(store, "SELECT body FROM jobs ORDER BY id")
            return [json.loads(r[0]) for r in rows]

        await run_scripted(store, pipeline, 1, contact_intent(FIRSTNAME="Ann"))
        # A later chunk merges into the stored pending job.
        await run_scripted(store, pipeline, 2, contact_intent(X=1))
        assert [b["attributes"] for b in await bodies()] == [{"FIRSTNAME": "Ann", "X": 1}]
        (first,) = await store.claim(ACCOUNT, Kind.CONTACT, 10, NOW)
        await store.complete([first])
        # Brevo holds it now: only what it lacks is queued, or nothing.
        await run_scripted(store, pipeline, 3, contact_intent(FIRSTNAME="Ann", X=1))
        assert await bodies() == []
        await run_scripted(store, pipeline, 4, contact_intent(FIRSTNAME="Ann", X=2))
        assert [b["attributes"] for b in await bodies()] == [{"X": 2}]
        (flying,) = await store.claim(ACCOUNT, Kind.CONTACT, 10, NOW)
        # While X=2 flies, going back to what Brevo's record says (X=1) is still sent, whole,
        # and a later intent merges into that new pending job.
        await run_scripted(store, pipeline, 5, contact_intent(FIRSTNAME="Ann", X=1))
        await run_scripted(store, pipeline, 6, contact_intent(LASTNAME="Lee"))
        assert [b["attributes"] for b in await bodies()] == [
            {"X": 2},
            {"FIRSTNAME": "Ann", "X": 1, "LASTNAME": "Lee"},
        ]
        # Two events of one key are two jobs, and both are claimed together.
        event = Intent(Kind.EVENT, "event:s1:x", {"event_name": "x"})
        await run_scripted(store, pipeline, 7, event, event)
        assert len(await store.claim(ACCOUNT, Kind.EVENT, 10, NOW)) == 2
        assert flying.body["attributes"] == {"X": 2}


async def test_a_deleted_order_stays_as_trash_and_leaves_the_aggregates(
    open_store: OpenStore,
) -> None:
    pipeline = Scripted()
    async with open_store() as store:
        await run_scripted(store, pipeline, 7, topic="order.updated")
        assert pipeline.seen[7]["orders_count"] == 1
        await run_scripted(store, pipeline, 7, topic="order.deleted")
        assert pipeline.seen[7]["orders_count"] == 0
        facts = await query(store, "SELECT order_id, email, status FROM order_facts")
        assert facts == [(7, "ann@example.com", "trash")]


async def test_a_chunk_of_rows_decides_as_one_row_at_a_time(
    open_store: OpenStore, tmp_path: Path, base_config: dict[str, Any]
) -> None:
    """The processor runs the pipeline on a chunk of rows before it writes (the store's
    `Chunk`, agent/store/chunk.py): each row must see what the rows before it changed, exactly as if every row had
    its own transaction. The same events, processed one by one and as one chunk, leave the
    same jobs, object states, order facts and dead letters."""
    cfg = load(tmp_path, base_config)
    site = cfg.resolved_sites()[0]
    base = ref("order.json")
    feed: list[tuple[str, dict[str, Any]]] = []
    for i, status in enumerate(["pending", "processing", "completed", "checkout-draft"]):
        feed.append(("order.created", dict(base, id=700 + i, status=status, total=f"{10 + i}.50",
                     refunds=[], date_created_gmt=f"2026-11-0{i + 1}T00:00:00",
                     date_modified_gmt=f"2026-11-0{i + 1}T00:00:00")))  # fmt: skip
    # The first order moves on twice (a new version each time), one arrives stale, one goes.
    feed.append(("order.updated", dict(feed[0][1], status="processing",
                 date_modified_gmt="2026-11-05T00:00:00")))  # fmt: skip
    feed.append(("order.updated", dict(feed[0][1], status="completed",
                 date_modified_gmt="2026-11-06T00:00:00")))  # fmt: skip
    feed.append(("order.updated", dict(feed[0][1], status="cancelled")))  # stale
    feed.append(("order.deleted", {"id": 701}))
    feed.append(("customer.created", ref("customer.json")))
    feed.append(("customer.updated", dict(ref("customer.json"), first_name="Changed")))
    feed.append(("product.created", ref("product_simple.json")))
    feed.append(("coupon.created", ref("coupon.json")))
    feed.append(("customer.created", dict(ref("customer.json"), id=9999, email="not-an-email")))

    def decide_(s: str, e: Event, prior: Any, agg: Any, consent: Any) -> Any:
        return decide(
            SiteRules.of(site), e, prior, agg, now=NOW, historical_after=30 * 86400, consent=consent
        )

    async def run(chunk: int) -> dict[str, Any]:
        async with open_store() as store:
            for table in ("inbox", "jobs", "objects", "order_facts", "dead_letters"):
                await write(store, f"DELETE FROM {table}")  # the same store, from scratch
            for n, (topic, payload) in enumerate(feed):
                ev = parse_event({"id": f"c-{n}", "topic": topic, "payload": payload},
                                 door=Door.STREAM)  # fmt: skip
                assert isinstance(ev, Event), ev
                await store.ingest(site.id, [ev])
                if chunk == 1:
                    assert await store.process_pending(1, decide_, lambda s, e: order_fact(e)) == 1
            if chunk > 1:
                assert await store.process_pending(
                    chunk, decide_, lambda s, e: order_fact(e)
                ) == len(feed)
            return {
                "jobs": await query(store, "SELECT kind, key, body, historical, state FROM jobs ORDER BY id"),
                "objects": await query(store, "SELECT * FROM objects ORDER BY 1, 2, 3"),
                "facts": await query(store, "SELECT * FROM order_facts ORDER BY 1, 2"),
                "dead": await query(store, "SELECT site, ref, code, message FROM dead_letters ORDER BY id"),
                "pending": await query(store, "SELECT COUNT(*) FROM inbox WHERE state = 0"),
                "versions": await store.object_versions(site.id, "order"),
            }  # fmt: skip

    one = await run(1)
    chunked = await run(100)
    assert one["jobs"] and one["facts"] and one["dead"]
    assert one["versions"][700] == ("2026-11-06T00:00:00", False, "completed")
    assert one["versions"][701][1] is True  # deleted
    assert chunked == one


async def test_a_contact_import_claims_one_list_group_and_leaves_the_rest(
    open_store: OpenStore,
) -> None:
    async with open_store() as store:
        await storekit.add_contact_jobs(
            store,
            ACCOUNT,
            [
                ("a@x.test", [2]),
                ("b@x.test", [1, 3]),
                ("c@x.test", [3, 1]),  # the same lists in another order
                ("d@x.test", []),
                ("e@x.test", [1, 3]),
            ],
        )
        first = await store.claim(ACCOUNT, Kind.CONTACT, 1000, 1.0, single=False, by_lists=True)
        assert [j.body["email"] for j in first] == ["b@x.test", "c@x.test", "e@x.test"]
        # The others were neither claimed nor touched: the next import takes the next group.
        second = await store.claim(ACCOUNT, Kind.CONTACT, 1000, 1.0, single=False, by_lists=True)
        assert [j.body["email"] for j in second] == ["a@x.test"]
        # A group without a list cannot be imported: its first contact goes alone.
        third = await store.claim(ACCOUNT, Kind.CONTACT, 1000, 1.0, single=False, by_lists=True)
        assert [j.body["email"] for j in third] == ["d@x.test"]
        assert await store.claim(ACCOUNT, Kind.CONTACT, 1000, 1.0, by_lists=True) == []
        # Completed and retried jobs leave the in-flight set: what was retried is claimable.
        await store.complete(first)
        await store.retry(second + third, 0.0, "test", count_attempt=False)
        again = await store.claim(ACCOUNT, Kind.CONTACT, 1000, 1.0)
        assert sorted(j.body["email"] for j in again) == ["a@x.test", "d@x.test"]
        assert await store.pending_count(ACCOUNT, Kind.CONTACT, 1.0) == 0
        await store.retry(again, 5.0, "later")
        assert await store.pending_count(ACCOUNT, Kind.CONTACT, 1.0) == 0
        assert await store.pending_count(ACCOUNT, Kind.CONTACT, 5.0) == 2
        assert await store.next_due(ACCOUNT, Kind.CONTACT) == 5.0
        assert await store.next_due(ACCOUNT, Kind.ORDER) is None


async def test_claims_skip_keys_in_flight_and_a_restart_gives_them_back(
    open_store: OpenStore,
) -> None:
    async with open_store() as store:
        await storekit.add_contact_jobs(
            store, ACCOUNT, [("a@x.test", [1]), ("a@x.test", [1]), ("b@x.test", [1])]
        )
        first = await store.claim(ACCOUNT, Kind.CONTACT, 10, 1.0)
        assert [j.body["email"] for j in first] == ["a@x.test", "b@x.test"]
        # a@x.test's second job waits for the first: two jobs of one key never fly together.
        assert await store.claim(ACCOUNT, Kind.CONTACT, 10, 1.0) == []
    # Killed with jobs in flight: the next forwarder gets them all back.
    async with open_store() as store:
        again = await store.claim(ACCOUNT, Kind.CONTACT, 10, 1.0)
        assert [j.id for j in again] == [j.id for j in first]


def hold_write_lock(path: Path, seconds: float, started: threading.Event) -> None:
    """Another process's write transaction, held for `seconds`."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    started.set()
    time.sleep(seconds)
    db.execute("INSERT INTO meta (key, value) VALUES ('other', 'writer')")
    db.execute("COMMIT")
    db.close()


@contextlib.contextmanager
def another_writer(path: Path, seconds: float) -> Iterator[None]:
    """Another process holds the write lock for `seconds` from the start of the block."""
    started = threading.Event()
    other = threading.Thread(target=hold_write_lock, args=(path, seconds, started))
    other.start()
    started.wait()
    try:
        yield
    finally:
        other.join()


async def test_a_write_waits_for_another_writer_then_commits(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SqliteStore(path) as store:
        with another_writer(path, 0.3):
            result = await store.ingest("s1", [event(1)])
        assert result.new == 1
        assert await store.get_meta("other") == "writer"
        assert (await store.counts())["inbox"] == 1


async def test_a_write_blocked_past_the_timeout_fails_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tx_mod, "BUSY_TIMEOUT", 0.2)
    path = tmp_path / "s.db"
    async with SqliteStore(path) as store:
        with (
            another_writer(path, 1.0),
            pytest.raises(sqlite3.OperationalError, match="locked"),
        ):
            await store.ingest("s1", [event(1)])
        # Nothing of the failed batch was stored, and the store still writes.
        assert (await store.counts())["inbox"] == 0
        assert (await store.ingest("s1", [event(1)])).new == 1


async def test_pruning_deletes_old_processed_rows_only_in_short_transactions(
    open_store: OpenStore,
) -> None:
    async with open_store() as store:
        await store.ingest("s2", [event(n) for n in range(1, 11)])  # seq 1-10
        await store.ingest("s1", [event(n) for n in range(1, 2501)])  # seq 11-2510
        day = 86400.0
        now = time.time()

        # s2: 10 rows 10 days old, through the webhook door. s1: 2,000 rows 8 days old
        # (one, a little out of order, 9 days), the 10 oldest not processed yet; 500 recent.
        await write(
            store,
            "UPDATE inbox SET received_at = ?, door = 'webhook' WHERE site = 's2'",
            now - 10 * day,
        )
        await write(
            store,
            "UPDATE inbox SET received_at = ? WHERE site = 's1' AND seq <= 2010",
            now - 8 * day,
        )
        await write(store, "UPDATE inbox SET received_at = ? WHERE seq = 1500", now - 9 * day)
        await write(store, "UPDATE inbox SET state = 1 WHERE seq <= 10 OR seq > 20")
        batches: list[int] = []
        real = store._prune_some

        def counted(*args: Any) -> int:  # each transaction: (the SQL connection,) cutoff, ...
            n = int(real(*args))
            batches.append(n)
            return n

        store._prune_some = counted  # type: ignore[method-assign]
        assert await store.prune_inbox(now - 7 * day, batch=700) == 2000
        assert batches == [700, 700, 600]
        left = await query(store, "SELECT seq, state FROM inbox ORDER BY seq")
        # the old rows not processed yet and the recent ones stay
        assert left == [(s, 0) for s in range(11, 21)] + [(s, 1) for s in range(2011, 2511)]
        # a door's "last seen" outlives its rows
        assert await store.last_received("s2", "webhook") == pytest.approx(now - 10 * day)
        assert await store.last_received("s2", "stream") is None
        assert await store.last_received("s1", "stream") == pytest.approx(now, abs=60)
        # a replay within the window is stored once; one of a deleted row is stored again
        assert (await store.ingest("s1", [event(2100)])).new == 0
        assert (await store.ingest("s1", [event(1800)])).new == 1
        assert await store.prune_inbox(now - 7 * day) == 0
