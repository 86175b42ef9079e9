"""The store's own contracts that the pipeline and forwarding tests do not reach directly:
how a claim picks jobs, and how a write waits for another process's write."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import agent.store.sqlite as store_mod
from agent.core.events import Door, Event, parse_event
from agent.core.jobs import Kind
from agent.store import SqliteStore

ACCOUNT = "main"


async def add_contact_jobs(store: SqliteStore, contacts: list[tuple[str, list[int]]]) -> None:
    """Queue contact jobs (email, lists), oldest first, as the pipeline leaves them."""

    def run() -> None:
        for email, lists in contacts:
            body = {"email": email, "attributes": {"FIRSTNAME": "A"}}
            if lists:
                body["listIds"] = lists
            store.db.execute(
                "INSERT INTO jobs (account, site, kind, key, body, created_at)"
                " VALUES (?, 's1', 'contact', ?, ?, 0)",
                (ACCOUNT, f"contact:{email}", json.dumps(body)),
            )

    await store._run(run)


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


async def test_a_contact_import_claims_one_list_group_and_leaves_the_rest(
    tmp_path: Path,
) -> None:
    async with SqliteStore(tmp_path / "s.db") as store:
        await add_contact_jobs(
            store,
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


async def test_claims_skip_keys_in_flight_and_a_restart_gives_them_back(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SqliteStore(path) as store:
        await add_contact_jobs(store, [("a@x.test", [1]), ("a@x.test", [1]), ("b@x.test", [1])])
        first = await store.claim(ACCOUNT, Kind.CONTACT, 10, 1.0)
        assert [j.body["email"] for j in first] == ["a@x.test", "b@x.test"]
        # a@x.test's second job waits for the first: two jobs of one key never fly together.
        assert await store.claim(ACCOUNT, Kind.CONTACT, 10, 1.0) == []
    # Killed with jobs in flight: the next forwarder gets them all back.
    async with SqliteStore(path) as store:
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
    monkeypatch.setattr(store_mod, "BUSY_TIMEOUT", 0.2)
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
    tmp_path: Path,
) -> None:
    async with SqliteStore(tmp_path / "s.db") as store:
        await store.ingest("s2", [event(n) for n in range(1, 11)])  # seq 1-10
        await store.ingest("s1", [event(n) for n in range(1, 2501)])  # seq 11-2510
        day = 86400.0
        now = time.time()

        def age() -> None:
            db = store.db
            # s2: 10 rows 10 days old, through the webhook door. s1: 2,000 rows 8 days old
            # (one, a little out of order, 9 days), the 10 oldest not processed yet; 500 recent.
            db.execute(
                "UPDATE inbox SET received_at = ?, door = 'webhook' WHERE site = 's2'",
                (now - 10 * day,),
            )
            db.execute(
                "UPDATE inbox SET received_at = ? WHERE site = 's1' AND seq <= 2010",
                (now - 8 * day,),
            )
            db.execute("UPDATE inbox SET received_at = ? WHERE seq = 1500", (now - 9 * day,))
            db.execute("UPDATE inbox SET state = 1 WHERE seq <= 10 OR seq > 20")

        await store._run(age)
        batches: list[int] = []
        real = store._prune_some

        def counted(cutoff: int, before: float, batch: int) -> int:
            n = real(cutoff, before, batch)
            batches.append(n)
            return n

        store._prune_some = counted  # type: ignore[method-assign]
        assert await store.prune_inbox(now - 7 * day, batch=700) == 2000
        assert batches == [700, 700, 600]
        left = await store._run(
            lambda: store.db.execute("SELECT seq, state FROM inbox ORDER BY seq").fetchall()
        )
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
