"""Read-ahead (agent/store/ahead.py `Ahead`), on both backends: a chunk planned with its rows
read in batches writes what the same chunk planned with one query per read writes; it costs a
number of queries that does not grow with the chunk; an order and an erasure of its email in
one chunk leave no job that names the email but the erase job. And, on PostgreSQL, a pass that
deadlocks runs again, and a cart-timer pass that fires carts tells the forwarders."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from agent.config import Config
from agent.core.events import Event
from agent.process.processor import Processor
from agent.store import SqliteStore
from agent.store.chunk import Chunk, QueuedJob
from agent.store.inbox import Steps, plan_rows, process_row
from agent.store.postgres import PostgresStore
from agent.store.postgres.base import PROCESS_LOCK
from agent.store.postgres.channels import JOBS_CHANNEL
from agent.store.rows import EVENT_COLUMNS, Db, event_from_row
from agent.store.schema import INFLIGHT
from tests.agent.conftest import OpenStore
from tests.agent.storesql import query, write
from tests.agent.test_carts_core import snap
from tests.agent.test_pg_processing import NOW, _event, _processor
from tests.conftest import ref
from tests.kit import config_data, load

T = TypeVar("T")

SITE = "default"
BUYER = "joao.silva@example.com"  # the reference order's billing email; its customer id is 26
CUSTOMER = "john.doe@example.com"  # the reference customer (id 25)


def _config(tmp_path: Path) -> Config:
    lists = {"all_customers": 50, "abandoned_cart": 52}
    data = config_data(tmp_path, woocommerce={"lists": lists, "carts": {"abandon_after": "1h"}})
    return load(tmp_path, data)


def _steps(processor: Processor) -> Steps:
    """The steps `Processor.drain` hands `process_pending`: the real pipeline."""
    return Steps(
        processor._decide, processor._facts, processor._cart_step_or_none, processor._erasure
    )


async def _on_db(store: Any, fn: Callable[[Db], T]) -> T:
    """`fn` on the store's processing connection, on its thread."""
    if isinstance(store, SqliteStore):
        return await store._run(lambda: fn(store.db))
    result: T = await store._on_proc(fn)
    return result


def _order(
    order_id: int, email: str | None, customer_id: int, day: int, **keys: Any
) -> dict[str, Any]:
    base = ref("order.json")
    stamp = f"2026-11-{day:02d}T00:00:00"
    billing = dict(base["billing"], email=email)
    order = dict(
        base,
        id=order_id,
        billing=billing,
        customer_id=customer_id,
        refunds=[],
        date_created_gmt=stamp,
        date_modified_gmt=stamp,
    )
    return {**order, **keys}


def _events(raws: Sequence[tuple[str, dict[str, Any]]], prefix: str) -> list[Event]:
    return [
        _event({"id": f"{prefix}-{n}", "topic": t, "payload": p}) for n, (t, p) in enumerate(raws)
    ]


async def _committed_state(store: Any, processor: Processor) -> str:
    """Committed rows for every read of a chunk: objects and order facts, other orders of an
    email, a consent record and suppressions, open carts by email and by customer id, a
    pending job, a job in flight, what Brevo holds. Returns the account."""
    raws = [
        ("order.created", _order(800, BUYER, 26, 1, status="processing", total="10.00")),
        ("order.created", _order(801, BUYER, 26, 2, status="completed", total="20.00")),
        ("order.created", _order(850, "q@example.org", 41, 3, status="completed", total="5.00")),
        ("customer.created", ref("customer.json")),
        ("cart.updated", snap(5, NOW - 60, email=BUYER)),
        ("cart.updated", snap(6, NOW - 60, email=None, customer_id=41)),
    ]
    await store.ingest(SITE, _events(raws, "before"))
    assert await processor.drain() == len(raws)
    ((account,),) = await query(store, "SELECT DISTINCT account FROM jobs")
    # the customer's contact job is with Brevo; the buyer's waits (the chunk merges into it)
    await write(store, f"UPDATE jobs SET state={INFLIGHT} WHERE key=?", f"contact:{CUSTOMER}")
    pending = await query(store, "SELECT id FROM jobs WHERE key=? AND state=0", f"contact:{BUYER}")
    assert len(pending) == 1
    for key in (f"contact:{CUSTOMER}", "contact:c@example.org"):
        await write(
            store,
            "INSERT INTO forwarded (account, key, state, updated_at) VALUES (?,?,?,0)",
            account,
            key,
            '{"attributes": {"FIRSTNAME": "Old"}, "listIds": [50]}',
        )
    await write(
        store,
        "INSERT INTO consent (account, email, subscribed, since, source, doi) VALUES (?,?,1,?,?,NULL)",
        account,
        BUYER,
        NOW - 86400,
        "checkout_block",
    )
    await store.suppress(account, BUYER, [52], "unsubscribed", NOW - 3600)
    await store.suppress(account, "q@example.org", [], "spam", NOW - 3600)
    return str(account)


def _chunk_raws() -> list[tuple[str, dict[str, Any]]]:
    """Customers, orders of the emails above, cart events, and an order of an email seen
    nowhere before."""
    customer = ref("customer.json")
    return [
        (
            "order.updated",
            _order(
                800,
                BUYER,
                26,
                1,
                status="completed",
                total="10.00",
                date_modified_gmt="2026-11-05T00:00:00",
            ),
        ),
        ("order.created", _order(802, BUYER, 26, 4, status="processing", total="7.00")),
        (
            "customer.updated",
            dict(customer, first_name="Johnny", date_modified_gmt="2026-11-26T00:00:00"),
        ),
        ("customer.created", dict(customer, id=90, email="c@example.org", first_name="Cee")),
        ("cart.updated", snap(5, NOW - 30, email=BUYER)),
        ("cart.updated", snap(7, NOW - 30, email="cart@example.org")),
        ("order.created", _order(851, None, 41, 6, status="processing", total="9.00")),
        ("order.created", _order(900, "new@example.org", 0, 7, status="processing", total="3.00")),
        ("order.created", _order(901, "q@example.org", 0, 8, status="completed", total="4.00")),
    ]


async def _pending_rows(store: Any) -> list[tuple[Any, ...]]:
    return await query(store, f"SELECT {EVENT_COLUMNS} FROM inbox WHERE state = 0 ORDER BY seq")


class Counting:
    """A `Db` that counts the statements sent through it."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.dialect = getattr(db, "dialect", "sqlite")
        self.n = 0

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        self.n += 1
        return self.db.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> object:
        self.n += 1
        return self.db.executemany(sql, parameters)


def _ahead(db: Db, rows: Sequence[Sequence[Any]], steps: Steps) -> tuple[Chunk, int]:
    counting = Counting(db)
    chunk = Chunk(counting)
    plan_rows(chunk, rows, steps)
    return chunk, counting.n


def _row_by_row(db: Db, rows: Sequence[Sequence[Any]], steps: Steps) -> tuple[Chunk, int]:
    """The chunk planned without read-ahead: `foresee` not called, and each intent coalesced
    on its key's own reads (`settle` without its batched read)."""
    counting = Counting(db)
    chunk = Chunk(counting)
    for row in rows:
        process_row(chunk, str(row[1]), event_from_row(row), steps)
        chunk.done.append(int(row[0]))
    intents, chunk.intents = chunk.intents, []
    for account, site, intent in intents:
        chunk._coalesce(account, site, intent)
    return chunk, counting.n


async def test_read_ahead_writes_what_the_per_row_reads_write(
    open_store: OpenStore, tmp_path: Path
) -> None:
    clock = [NOW]
    async with open_store() as store:
        processor = _processor(store, _config(tmp_path), clock)
        account = await _committed_state(store, processor)
        await store.ingest(SITE, _events(_chunk_raws(), "chunk"))
        rows = await _pending_rows(store)
        steps = _steps(processor)
        ahead, n_ahead = await _on_db(store, lambda db: _ahead(db, rows, steps))
        alone, n_alone = await _on_db(store, lambda db: _row_by_row(db, rows, steps))
        # the state is the same: planning writes nothing
        assert await _pending_rows(store) == rows
        assert ahead._statements(NOW) == alone._statements(NOW)
        assert ahead.done == alone.done and len(ahead.done) == len(rows)
        # every read was read ahead, and found what the committed state holds
        seen = ahead.ahead
        assert seen.objects[(SITE, "order", 800)] is not None
        assert seen.facts[(SITE, 800)] is not None and seen.facts[(SITE, 900)] is None
        assert set(seen.email_facts[(SITE, BUYER)]) == {800, 801}
        assert seen.consent[(account, BUYER)].subscribed
        assert seen.suppressions[(account, BUYER)] == [(52, NOW - 3600)]
        assert {cid for cid, _, _ in seen.open[SITE]} == {5, 6}
        assert seen.carts[(SITE, 7)] is None
        queued = {k[1]: row for k, row in seen.jobs.items() if row is not None}
        assert queued[f"contact:{BUYER}"][3] == 0 and queued[f"contact:{CUSTOMER}"][3] == INFLIGHT
        assert seen.known[(account, "contact:c@example.org")] is not None
        # the buyer's job merged into; the customer's in flight: a new one
        merged = {w.key for w in ahead.writes if isinstance(w, QueuedJob) and w.id is not None}
        assert f"contact:{BUYER}" in merged and f"contact:{CUSTOMER}" not in merged
        assert alone.ahead.objects == {} and alone.ahead.jobs == {}
        assert n_ahead < n_alone


async def test_an_order_then_the_erasure_of_its_email_in_one_chunk(
    open_store: OpenStore, tmp_path: Path
) -> None:
    """The order's jobs are settled before the erasure cancels the email's pending jobs: none
    is left to re-create the contact after the erase (nor the one queued before the chunk)."""
    gone = "gone@example.org"
    clock = [NOW]
    async with open_store() as store:
        processor = _processor(store, _config(tmp_path), clock)
        await store.ingest(
            SITE, _events([("order.created", _order(700, gone, 0, 1, status="completed"))], "early")
        )
        assert await processor.drain() == 1
        before = await query(store, "SELECT key FROM jobs WHERE state = 0")
        assert f"contact:{gone}" in {k for (k,) in before}
        erase = {"id": 3, "email": gone, "date_modified_gmt": "2026-11-27T10:00:00"}
        events = [
            *_events(
                [
                    ("order.created", _order(701, gone, 0, 2, status="processing")),
                    ("order.created", _order(702, "stays@example.org", 0, 2, status="processing")),
                ],
                "late",
            ),
            _event({"id": "erase", "topic": "privacy.erase", "resource_id": 3, "payload": erase}),
        ]
        await store.ingest(SITE, events)
        assert await processor.drain() == 3
        jobs = await query(store, "SELECT kind, key, body FROM jobs WHERE state = 0 ORDER BY id")
        dead = await query(store, "SELECT code FROM dead_letters")
    naming = [(kind, key) for kind, key, body in jobs if gone in key or gone in body]
    assert [kind for kind, _ in naming] == ["erase"]
    assert any(key == "contact:stays@example.org" for _, key, _ in jobs)
    assert dead == []


async def _jobs_after(
    store: Any, processor: Processor, chunks: Sequence[Sequence[Event]]
) -> list[tuple[Any, ...]]:
    for events in chunks:
        await store.ingest(SITE, list(events))
        assert await processor.drain() == len(events)
    return await query(store, "SELECT kind, key, state FROM jobs ORDER BY id")


async def test_an_order_after_the_erasure_of_its_email_in_one_chunk_is_queued(
    open_store: OpenStore, tmp_path: Path
) -> None:
    """An erasure, then an order of the same email, in one chunk, queue what the two rows
    queue each in a chunk of its own (the `Chunk` docstring: reads see what the chunk's
    earlier rows wrote). The order's contact intent must not merge into the email's pending
    job committed before the chunk: the erasure's DELETE, earlier in the same chunk, removes
    it (`Chunk.erased`). Before that fix the contact job was lost: `_queued` returned that row,
    from `Ahead.jobs` or from its own query alike."""
    gone = "gone@example.org"
    erase = {"id": 3, "email": gone, "date_modified_gmt": "2026-11-27T10:00:00"}
    found = []
    for split in (False, True):
        clock = [NOW]
        async with open_store() as store:
            await write(store, "DELETE FROM jobs")  # the same PostgreSQL database twice
            await write(store, "DELETE FROM inbox")
            await write(store, "DELETE FROM objects")
            await write(store, "DELETE FROM order_facts")
            processor = _processor(store, _config(tmp_path), clock)
            first = _events(
                [("order.created", _order(700, gone, 0, 1, status="completed"))], f"e{split}"
            )
            then = [
                _event(
                    {
                        "id": f"erase{split}",
                        "topic": "privacy.erase",
                        "resource_id": 3,
                        "payload": erase,
                    }
                ),
                *_events(
                    [("order.created", _order(701, gone, 0, 2, status="processing"))], f"l{split}"
                ),
            ]
            chunks = [first, *([e] for e in then)] if split else [first, then]
            found.append(await _jobs_after(store, processor, chunks))
    one_chunk, row_by_row = found
    assert ("contact", f"contact:{gone}", 0) in row_by_row
    assert one_chunk == row_by_row


def _orders(n: int, first: int) -> list[tuple[str, dict[str, Any]]]:
    """`n` orders, each of its own email and buyer."""
    return [
        (
            "order.created",
            _order(
                first + i,
                f"buyer{first + i}@example.org",
                first + i,
                1 + i % 20,
                status="processing",
                total=f"{i}.00",
            ),
        )
        for i in range(n)
    ]


async def test_read_ahead_costs_queries_per_chunk_not_per_row(
    open_store: OpenStore, tmp_path: Path
) -> None:
    clock = [NOW]
    async with open_store() as store:
        processor = _processor(store, _config(tmp_path), clock)
        await _committed_state(store, processor)
        steps = _steps(processor)
        counts: dict[int, int] = {}
        for n, first in ((10, 1000), (50, 2000)):
            await store.ingest(SITE, _events(_orders(n, first), f"o{n}"))
            rows = await _pending_rows(store)
            assert len(rows) == n

            def ahead(db: Db, rows: list[tuple[Any, ...]] = rows) -> tuple[Chunk, int]:
                return _ahead(db, rows, steps)

            def alone(db: Db, rows: list[tuple[Any, ...]] = rows) -> tuple[Chunk, int]:
                return _row_by_row(db, rows, steps)

            chunk, counts[n] = await _on_db(store, ahead)
            _, counts[-n] = await _on_db(store, alone)
            assert len(chunk.done) == n
            assert await processor.drain() == n  # the next chunk's orders alone are pending
    # objects, facts, the emails' facts, consent and suppressions, open carts by email and
    # by customer, queued jobs, what Brevo holds: one query each, whatever the rows
    assert counts[10] == counts[50] <= 10
    assert counts[-50] >= 50 * 5 and counts[-10] >= 10 * 5


# -- PostgreSQL only -----------------------------------------------------------------------


async def _wait_blocked(watch: psycopg.AsyncConnection[Any], query_part: str) -> None:
    """Until a backend waits on a lock while running a statement that contains `query_part`."""
    for _ in range(500):
        cur = await watch.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE %s AND pid <> pg_backend_pid()",
            (f"%{query_part}%",),
        )
        row = await cur.fetchone()
        if row is not None and row[0]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no backend waits on a lock in {query_part!r}")


async def test_a_pass_that_deadlocks_runs_again(
    pg_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real deadlock, made by the server: another transaction holds the row lock of the job
    the chunk merges into (the pass's `FOR UPDATE` waits for it) and then asks for the
    processing lock the pass holds. The pass waited first, so its deadlock check runs first
    and PostgreSQL aborts it (40P01); the other transaction then gets the lock and commits;
    the pass runs again and processes its row once.

    (psycopg 3's `TransactionRollback` is SQLSTATE 40000 alone: its `DeadlockDetected`, 40P01,
    and `SerializationFailure`, 40001, derive from `OperationalError`, so
    agent/store/postgres/processing.py `_RUN_AGAIN` names them; with `TransactionRollback`
    alone, this deadlock escaped `process_pending`.)"""
    caplog.set_level(logging.DEBUG, logger="agent.store")
    clock = [NOW]
    async with PostgresStore(pg_dsn) as store:
        processor = _processor(store, _config(tmp_path), clock)
        customer = ref("customer.json")
        await store.ingest(SITE, _events([("customer.created", customer)], "first"))
        assert await processor.drain() == 1
        ((job_id, first_body),) = await query(store, "SELECT id, body FROM jobs")
        update = dict(customer, first_name="Johnny", date_modified_gmt="2026-11-26T00:00:00")
        await store.ingest(SITE, _events([("customer.updated", update)], "second"))
        async with (
            await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as other,
            await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as watch,
        ):
            async with other.transaction():
                await other.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
                passing = asyncio.create_task(processor.drain())
                await _wait_blocked(watch, "FOR UPDATE")  # the pass, at its merged job
                await other.execute("SELECT pg_advisory_xact_lock(%s)", (PROCESS_LOCK,))
            assert await passing == 1
        jobs = await query(store, "SELECT key, body, state FROM jobs ORDER BY id")
        inbox = await query(store, "SELECT state, COUNT(*) FROM inbox GROUP BY state")
        dead = await query(store, "SELECT code FROM dead_letters")
    assert any("runs again: DeadlockDetected" in r.getMessage() for r in caplog.records)
    ((key, body, state),) = jobs  # merged once into the pending job: not lost, not doubled
    assert key == f"contact:{CUSTOMER}" and state == 0
    assert (
        json.loads(body)["attributes"]["FIRSTNAME"]
        == "Johnny"
        != json.loads(first_body)["attributes"]["FIRSTNAME"]
    )
    assert inbox == [(1, 2)] and dead == []


async def test_a_cart_timer_pass_that_fires_carts_notifies_the_forwarders(
    pg_dsn: str, tmp_path: Path
) -> None:
    clock = [NOW]
    async with PostgresStore(pg_dsn) as store:
        processor = _processor(store, _config(tmp_path), clock)
        await store.ingest(
            SITE, _events([("cart.updated", snap(9, NOW - 60, email="l@example.org"))], "c")
        )
        assert await processor.drain() == 1
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as listener:
            await listener.execute(f"LISTEN {JOBS_CHANNEL}")
            assert await processor.fire_timers() == 0  # nothing due yet: nothing said
            assert [n async for n in listener.notifies(timeout=0.3)] == []
            clock[0] = NOW + 2 * 3600
            started = time.monotonic()
            assert await processor.fire_timers() == 1
            heard = [n async for n in listener.notifies(timeout=5, stop_after=1)]
        jobs = await query(store, "SELECT kind FROM jobs WHERE state = 0")
    assert [n.channel for n in heard] == [JOBS_CHANNEL]
    assert time.monotonic() - started < 5
    assert jobs
