"""Processing on PostgreSQL (agent/store/postgres/processing.py): the same feed through the real
processor leaves the same rows as on SQLite; two processors (two replicas' workers) on one
database take each row once, in order; a forwarder that claims a job while a chunk merges
into it loses nothing of either."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.core.aggregates import order_fact
from agent.core.events import Door, Event, parse_event
from agent.core.jobs import Intent, Kind, Outcome
from agent.metrics import Metrics
from agent.process.processor import Processor
from agent.store import SqliteStore
from agent.store.postgres import PostgresStore
from agent.store.postgres.inbox import _ingest_one
from tests.agent.storesql import query
from tests.agent.test_carts_core import snap
from tests.conftest import ref
from tests.kit import config_data, load

NOW = 1_795_800_000.0  # 2026-11-27, the recordings' day


def _event(raw: dict[str, Any]) -> Event:
    ev = parse_event(raw, door=Door.STREAM)
    assert isinstance(ev, Event), ev
    return ev


def _config(tmp_path: Path) -> Config:
    data = config_data(
        tmp_path,
        woocommerce={"lists": {"abandoned_cart": 52}, "carts": {"abandon_after": "1h"}},
    )
    return load(tmp_path, data)


def _feed() -> list[Event]:
    """Orders that move on (one stale, one deleted), customers, a cart its buyer then buys,
    another cart left to its timer, and an erasure of a third email."""
    base = ref("order.json")
    email = base["billing"]["email"]
    raws: list[tuple[str, dict[str, Any]]] = []
    for i, status in enumerate(["pending", "processing", "completed"]):
        raws.append(("order.created", dict(base, id=700 + i, status=status, total=f"{10 + i}.50",
                     refunds=[], date_created_gmt=f"2026-11-0{i + 1}T00:00:00",
                     date_modified_gmt=f"2026-11-0{i + 1}T00:00:00")))  # fmt: skip
    raws.append(("order.updated", dict(raws[0][1], status="completed",
                 date_modified_gmt="2026-11-06T00:00:00")))  # fmt: skip
    raws.append(("order.updated", dict(raws[0][1], status="cancelled")))  # stale
    raws.append(("order.deleted", {"id": 701}))
    raws.append(("customer.created", ref("customer.json")))
    raws.append(("customer.created", dict(ref("customer.json"), id=77, email="gone@example.com")))
    raws.append(("cart.updated", snap(5, NOW - 60, email=email)))
    raws.append(("cart.updated", snap(6, NOW - 60, email="left@example.com")))
    raws.append(("order.updated", dict(raws[1][1], status="completed",
                 date_modified_gmt="2026-11-07T00:00:00")))  # fmt: skip
    events = [_event({"id": f"f-{n}", "topic": t, "payload": p}) for n, (t, p) in enumerate(raws)]
    erase = {"id": 3, "email": "gone@example.com", "date_modified_gmt": "2026-11-27T10:00:00"}
    events.append(_event({"id": "f-erase", "topic": "privacy.erase", "resource_id": 3,
                          "payload": erase}))  # fmt: skip
    return events


def _processor(store: Any, cfg: Config, clock: list[float]) -> Processor:
    return Processor(
        store,
        {s.id: s for s in cfg.resolved_sites()},
        metrics=Metrics(),
        clock=lambda: clock[0],
        wake=lambda: None,
        historical_after=30 * 86400,
        inbox_retention=7 * 86400,
    )


async def _everything(store: Any) -> dict[str, Any]:
    async def rows(sql: str) -> list[tuple[Any, ...]]:
        return await query(store, sql)

    return {
        "jobs": await rows(
            "SELECT account, site, kind, key, body, historical, state FROM jobs ORDER BY id"
        ),
        "objects": await rows("SELECT * FROM objects ORDER BY 1, 2, 3"),
        "facts": await rows("SELECT * FROM order_facts ORDER BY 1, 2"),
        "carts": await rows("SELECT * FROM carts ORDER BY 1, 2"),
        "consent": await rows("SELECT * FROM consent ORDER BY 1, 2"),
        "dead": await rows(
            "SELECT site, origin, ref, kind, code, message, body FROM dead_letters ORDER BY id"
        ),
        "stats": await rows(
            "SELECT site, name, value FROM stats WHERE name <> 'events_in' ORDER BY 1, 2"
        ),
        "pending": await rows("SELECT COUNT(*) FROM inbox WHERE state = 0"),
        "versions": await store.object_versions("default", "order"),
        "status": {s: v.get("carts") for s, v in (await store.status()).items()},
        "figures": await store.cart_figures("default"),
    }


async def test_the_same_feed_leaves_the_same_rows_on_both_backends(
    tmp_path: Path, pg_dsn: str
) -> None:
    cfg = _config(tmp_path)
    found = []
    for store in (SqliteStore(tmp_path / "s.sqlite3"), PostgresStore(pg_dsn)):
        clock = [NOW]
        async with store:
            processor = _processor(store, cfg, clock)
            events = _feed()
            await store.ingest("default", events[:4])
            assert await processor.drain() == 4
            await store.ingest("default", events[4:])
            assert await processor.drain() == len(events) - 4
            clock[0] = NOW + 2 * 3600  # the carts left alone are abandoned: their timers fire
            fired = await processor.fire_timers()
            assert await store.next_cart_due() is not None  # its reminder's end
            found.append({**await _everything(store), "fired": fired})
    sqlite, postgres = found
    assert sqlite["jobs"] and sqlite["facts"] and sqlite["carts"] and sqlite["dead"] == []
    assert sqlite["fired"] and sqlite["figures"]["abandoned"] == sqlite["fired"]
    assert not any("gone@example.com" in str(j) for j in sqlite["jobs"] if j[2] != "erase")
    assert sqlite["versions"][700] == ("2026-11-06T00:00:00", False, "completed")
    assert postgres == sqlite


class Recorder:
    """A pipeline that remembers which event it decided, on which thread, in what order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.decided: list[tuple[str, str]] = []

    def __call__(self, site: str, event: Event, prior: Any, agg: Any, consent: Any) -> Outcome:
        with self.lock:
            self.decided.append((site, event.id))
        time.sleep(0.0005)  # some work: two passes would overlap without the lock
        intent = Intent(Kind.EVENT, f"event:{site}:{event.id}", {"event_name": event.id})
        return Outcome(account="main", intents=(intent,))


async def test_two_processors_on_one_database_take_each_row_once_in_order(pg_dsn: str) -> None:
    sites, per_site = ("a", "b", "c"), 120
    recorder = Recorder()
    async with PostgresStore(pg_dsn) as one, PostgresStore(pg_dsn) as two:
        for n in range(per_site):  # interleaved: a site's events in its own order
            for site in sites:
                ev = {"id": f"{site}-{n:04d}", "topic": "product.updated",
                      "payload": {"id": n + 1, "date_modified_gmt": "2026-11-27T10:00:00"}}  # fmt: skip
                await (one if n % 2 else two).ingest(site, [_event(ev)])

        async def worker(store: PostgresStore) -> int:
            total = 0
            while n := await store.process_pending(7, recorder, lambda s, e: order_fact(e)):
                total += n
            return total

        done = await asyncio.gather(worker(one), worker(two), worker(one), worker(two))
        assert sum(done) == len(sites) * per_site
        assert all(done[:2]) or all(done[2:])  # both stores took part
        ((jobs,),) = await query(one, "SELECT COUNT(*) FROM jobs")
        ((pending,),) = await query(one, "SELECT COUNT(*) FROM inbox WHERE state = 0")
    # nothing lost, nothing doubled: each event decided once, one job each
    assert len(recorder.decided) == len(set(recorder.decided)) == len(sites) * per_site
    assert jobs == len(sites) * per_site and pending == 0
    for site in sites:  # and each site's events in the order they were stored
        mine = [eid for s, eid in recorder.decided if s == site]
        assert mine == sorted(mine)
    assert [eid for _, eid in recorder.decided] == [
        f"{site}-{n:04d}" for n in range(per_site) for site in sites
    ]


async def test_a_job_claimed_while_a_chunk_merges_into_it_loses_nothing(pg_dsn: str) -> None:
    """A forwarder of another replica claims the pending job of a key after the chunk read it
    (to merge into it) and before the chunk wrote: the chunk is planned again (the job is in
    flight now), so the claimed job goes as it was and the new attributes wait in a job of
    their own."""
    loop = asyncio.get_running_loop()
    claimed: list[Any] = []
    attributes = {"m-1": {"FIRSTNAME": "Ann"}, "m-2": {"X": 2}, "m-3": {"Y": 3}}

    async with PostgresStore(pg_dsn) as processing, PostgresStore(pg_dsn) as forwarder:

        def pipeline(site: str, event: Event, prior: Any, agg: Any, consent: Any) -> Outcome:
            if event.id == "m-3" and not claimed:  # m-2 merged into the pending job: claim it
                claim = forwarder.claim("main", Kind.CONTACT, 10, NOW)
                claimed.extend(asyncio.run_coroutine_threadsafe(claim, loop).result(10))
            body = {"email": "a@x.test", "attributes": attributes[event.id]}
            intent = Intent(Kind.CONTACT, "contact:a@x.test", body)
            return Outcome(account="main", intents=(intent,))

        def ev(eid: str) -> Event:
            payload = {"id": 1, "date_modified_gmt": "2026-11-27T10:00:00"}
            return _event({"id": eid, "topic": "product.updated", "payload": payload})

        await processing.ingest("s1", [ev("m-1")])
        assert await processing.process_pending(10, pipeline, lambda s, e: None) == 1
        await processing.ingest("s1", [ev("m-2"), ev("m-3")])
        assert await processing.process_pending(10, pipeline, lambda s, e: None) == 2
        rows = await query(processing, "SELECT body, state FROM jobs ORDER BY id")
    assert [j.body["attributes"] for j in claimed] == [{"FIRSTNAME": "Ann"}]
    # the claimed job is in flight as claimed; X and Y wait in a new pending job
    assert [(json.loads(r[0])["attributes"], r[1]) for r in rows] == [
        ({"FIRSTNAME": "Ann"}, 1),
        ({"X": 2, "Y": 3}, 0),
    ]


async def test_a_batch_committed_late_on_another_replica_is_processed_in_order(
    pg_dsn: str,
) -> None:
    """Replica A stores one event of a site and its transaction is still open when replica B
    stores the site's next event: B's commit waits for A's (both add to the site's
    `events_in` counter, one row: its lock is held to the commit), so the processor never
    meets the later event (a higher seq, committed first) before the earlier one."""
    recorder = Recorder()
    gate, inserted = asyncio.Event(), asyncio.Event()

    def ev(eid: str) -> Event:
        payload = {"id": 1, "date_modified_gmt": "2026-11-27T10:00:00"}
        return _event({"id": eid, "topic": "product.updated", "payload": payload})

    async with PostgresStore(pg_dsn) as a, PostgresStore(pg_dsn) as b:

        async def slow(db: Any) -> None:  # A's group commit, held open after its insert
            await _ingest_one(db, "x", [ev("first")], (), time.time())
            inserted.set()
            await gate.wait()

        held = asyncio.create_task(a._write(slow))
        await inserted.wait()  # A holds seq 1, not committed
        later = asyncio.create_task(b.ingest("x", [ev("second")]))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(later), 0.5)
        assert not later.done()  # B waits for A's commit
        await b.process_pending(10, recorder, lambda s, e: None)  # what is committed so far
        gate.set()
        await held
        await later
        while await b.process_pending(10, recorder, lambda s, e: None):
            pass
    assert recorder.decided == [("x", "first"), ("x", "second")]
