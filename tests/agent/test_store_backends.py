"""The store's ports that both backends implement, on SQLite and on PostgreSQL (the
`open_store` fixture, tests/agent/conftest.py): the same calls, the same answers. And what is
PostgreSQL's own: its numbered migrations, a newer schema refused, the password never shown."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent.cli.main import main
from agent.core.events import Action, Event, EventId, Rejection, Resource
from agent.errors import AgentError
from agent.store.postgres import SCHEMA_VERSION, PostgresStore, is_postgres, migrate, shown
from agent.store.postgres.schema import MIGRATIONS, Migration
from tests import kit
from tests.agent.conftest import OpenStore


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


async def test_a_batch_is_stored_once_and_a_resend_is_acked_again(open_store: OpenStore) -> None:
    events = [_event(f"e-{i}", i) for i in range(1, 6)]
    async with open_store() as store:
        first = await store.ingest("a", events)
        assert first.accepted == [e.id for e in events] and first.new == 5
        assert store.ingested.is_set()
        again = await store.ingest("a", [*events[3:], _event("e-6", 6)])
        assert again.accepted == ["e-4", "e-5", "e-6"] and again.new == 1
        other = await store.ingest("b", events[:1])  # another site: its own id space
        assert other.new == 1
    async with open_store() as store:  # committed: still there once reopened
        counts = await store.counts()
        assert counts["inbox"] == 7 and counts["inbox_pending"] == 7 and counts["jobs"] == 0
        status = await store.status()
        assert (
            status["a"]["inbox_depth"] == 6 and status["a"]["events_in"] == 8
        )  # every accepted one
        assert status["b"]["inbox_depth"] == 1 and status["b"]["dead_letters"] == 0
        assert await store.last_received("a", "stream") is not None
        assert await store.last_received("a", "webhook") is None
        assert await store.health() is None


async def test_concurrent_batches_share_commits_and_all_land(open_store: OpenStore) -> None:
    async with open_store() as store:
        results = await asyncio.gather(
            *(
                store.ingest(f"s{n % 4}", [_event(f"c-{n}-{i}", n * 10 + i) for i in range(5)])
                for n in range(40)
            )
        )
        assert sum(r.new for r in results) == 200
        assert (await store.counts())["inbox"] == 200


async def test_one_event_the_database_cannot_hold_is_refused_alone(
    open_store: OpenStore,
) -> None:
    events = [
        _event("s-1", 1),
        _event("s-2", 2, note="caf\ud800"),  # JSON cannot carry it
        _event("s-3", 2**63, note="past 64 bits"),  # neither database holds it
        _event("s-4", 4),
    ]
    refused = (Rejection("r-1", "bad_topic", "line 3: no such topic"), {"topic": "x"})
    async with open_store() as store:
        result = await store.ingest("a", events, [refused])
        assert result.accepted == ["s-1", "s-4"] and result.new == 2
        assert [(r.id, r.code) for r in result.rejected] == [
            ("r-1", "bad_topic"),
            ("s-2", "store_refused"),
            ("s-3", "store_refused"),
        ]
        again = await store.ingest("a", events, [refused])  # a resend: nothing doubled
        assert again.new == 0
        dead = await store.dead_letters()
        assert await store.dead_letters(site="b") == []
        assert (await store.counts())["inbox"] == 2
    assert [(d.ref, d.code) for d in dead] == [
        ("a:r-1", "bad_topic"),
        ("a:s-2", "store_refused"),
        ("a:s-3", "store_refused"),
    ]
    assert dead[1].body["payload"]["note"] == "caf\ud800"  # kept as it came


async def test_keyed_values_and_watermarks(open_store: OpenStore) -> None:
    async with open_store() as store:
        assert await store.get_meta("token:a") is None
        await store.set_meta("token:a", "1")
        await store.set_meta("token:a", "2")
        await store.set_meta("token:b", "3")
        await store.set_meta("tokens", "not under the prefix")
        await store.set_meta("x%_", "wildcards are plain text")
        assert await store.meta_items("token:") == {"token:a": "2", "token:b": "3"}
        assert await store.meta_items("x%") == {"x%_": "wildcards are plain text"}
        await store.set_watermark("a", "orders", "2026-11-27T06:00:00")
        await store.set_watermark("a", "orders", "2026-11-28T06:00:00")
        assert await store.get_watermark("a", "orders") == "2026-11-28T06:00:00"
        assert await store.get_watermark("b", "orders") is None
        assert await store.object_versions("a", "order") == {}
    async with open_store() as store:
        assert await store.get_meta("token:a") == "2"


async def test_held_sites_wait_counted_apart(open_store: OpenStore) -> None:
    async with open_store(held_sites=["off"]) as store:
        await store.ingest("on", [_event("h-1", 1)])
        await store.ingest("off", [_event("h-2", 2), _event("h-3", 3)])
        counts = await store.counts()
        assert counts["inbox_pending"] == 1 and counts["held"] == 2 and counts["inbox"] == 3
        await store.hold([])
        counts = await store.counts()
        assert counts["inbox_pending"] == 3 and counts["held"] == 0


# -- PostgreSQL's own ----------------------------------------------------------------------


async def test_migrations_apply_once_in_order_and_a_newer_schema_is_refused(pg_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as db:
        assert [m.version for m in await migrate(db, "test")] == [m.version for m in MIGRATIONS]
        assert await migrate(db, "test") == []  # applied once
        later = (*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "a later one", "CREATE TABLE t2 ()"))
        assert [m.version for m in await migrate(db, "test", later)] == [SCHEMA_VERSION + 1]
    # this agent knows up to SCHEMA_VERSION: the database a newer one migrated is refused
    with pytest.raises(
        AgentError, match=rf"newer WooBrevo agent \(store schema {SCHEMA_VERSION + 1}"
    ):
        async with PostgresStore(pg_dsn):
            pass


async def test_an_unmigrated_database_is_refused_without_migrate(pg_dsn: str) -> None:
    with pytest.raises(AgentError, match="store migrate"):
        async with PostgresStore(pg_dsn, migrate=False):
            pass
    async with PostgresStore(pg_dsn) as store:  # the default migrates, as the SQLite store
        assert await store.get_meta("x") is None
    async with PostgresStore(pg_dsn, migrate=False) as store:
        assert await store.health() is None


async def test_the_password_is_in_no_message(tmp_path: Any) -> None:
    secret = "S3cret-pw-for-the-test"
    url = f"postgresql://agent:{secret}@/woobrevo?host={tmp_path}&port=1"
    words = f"host={tmp_path} port=1 user=agent password={secret} dbname=woobrevo"
    assert is_postgres(url) and not is_postgres("state/woobrevo.sqlite3")
    for dsn in (url, words):
        assert secret not in shown(dsn) and "***" in shown(dsn)
        store = PostgresStore(dsn)
        assert secret not in repr(store)
        with pytest.raises(AgentError) as caught:
            async with store:
                pass
        text = str(caught.value)
        assert "cannot connect to the PostgreSQL store" in text and secret not in text
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_store_migrate_applies_once_and_shows_no_password(
    pg_dsn: str, base_config: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(kit.write_config(tmp_path / "c.yaml", base_config))
    secret = "not-checked-by-trust-auth-pw"  # the test server trusts its socket: any password
    dsn = pg_dsn.replace("//postgres@", f"//postgres:{secret}@")
    assert secret in dsn
    argv = ["store", "migrate", "--config", config, "--database", dsn]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "applied migration 1 (" in first.out and secret not in first.out + first.err
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert f"at schema {SCHEMA_VERSION}, nothing to apply" in again and secret not in again
    assert main(["store", "migrate", "--config", config]) == 0  # the config's SQLite file
    assert "at schema" in capsys.readouterr().out
    assert main([*argv[:-1], "postgresql://postgres@/x?host=/nonexistent"]) == 1
    assert "cannot migrate the PostgreSQL store" in capsys.readouterr().err
