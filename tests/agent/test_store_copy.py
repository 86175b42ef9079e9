"""`woobrevo-agent store copy` (agent/store/postgres/copy.py, agent/cli/store_copy.py): a real
SQLite store with every kind of row, made through the store's own calls, copied into a real
PostgreSQL database; the target then serves the same state. A copy killed -9 mid-way finishes
on the next run, nothing doubled; a live pass then a final one leaves the target equal to the
source; the refusals."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agent.app import forwarding_lock
from agent.core.jobs import Kind
from agent.errors import AgentError
from agent.store import SqliteStore
from agent.store.postgres import PostgresStore
from agent.store.postgres.copy import PAUSE_ENV, TABLES, copy_store
from agent.store.schema import ERASED_INFLIGHT, INFLIGHT, PENDING
from tests.agent.storesql import query, write
from tests.agent.test_pg_processing import NOW, _config, _event, _feed, _processor

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Sup3rSecretPw"
TOKEN = ("token:default", "tok-1234567890")
EXTRA = 240  # pending inbox rows beyond the feed, for several chunks


def _product(n: int) -> Any:
    return _event(
        {
            "id": f"p-{n:05d}",
            "topic": "product.updated",
            "payload": {"id": n + 1, "date_modified_gmt": "2026-11-27T10:00:00"},
        }
    )


async def _build(path: Path, tmp_path: Path) -> None:
    """Every kind of row: inbox (processed and pending), objects, order facts, jobs (pending,
    one claimed, erased in flight), forwarded, watermarks, meta (a token), a dead letter,
    consent and suppression, carts with timers, stats."""
    cfg = _config(tmp_path)
    clock = [NOW]
    async with SqliteStore(path) as store:
        processor = _processor(store, cfg, clock)
        await store.ingest("default", _feed())
        assert await processor.drain() > 0
        clock[0] = NOW + 2 * 3600
        assert await processor.fire_timers()
        await store.ingest("default", [_product(n) for n in range(EXTRA)])
        await store.set_watermark("default", "orders", "2026-11-27T10:00:00")
        await store.set_meta(*TOKEN)
        await store.suppress("main", "blocked@example.com", [0], "blocklisted", NOW)
        await store.suppress("main", "left@example.com", [52], "unsubscribed", NOW)
        await write(  # a consent record, as the pipeline's consent step leaves it
            store,
            "INSERT INTO consent (account, email, subscribed, since, source, doi)"
            " VALUES ('main', 'ann@example.com', 1, ?, 'checkout', 'confirmed')",
            NOW,
        )
        kinds = await query(store, "SELECT DISTINCT account, kind FROM jobs WHERE state = 0")
        claimed = []
        for account, kind in sorted(kinds):
            claimed += await store.claim(account, Kind(kind), 10, NOW + 3 * 3600)
        assert len(claimed) >= 3, claimed
        await store.complete(claimed[:1])
        await store.dead_letter(claimed[1], "invalid_parameter", "Brevo refused it")
        # the rest stay claimed: in flight, as a crash leaves them
    db = sqlite3.connect(path)
    with db:  # a claim an erasure dropped (the SQLite store's open deletes it)
        db.execute(
            "INSERT INTO jobs (account, site, kind, key, body, state, created_at)"
            " VALUES ('main', 'default', 'contact', 'contact:x@example.com', '{}', ?, 0)",
            (ERASED_INFLIGHT,),
        )
    db.close()


def _source_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What the target must hold: the source's rows, with a crash's claims handed back."""
    db = sqlite3.connect(path)
    out = {}
    for t in TABLES:
        rows = db.execute(f"SELECT * FROM {t.name} WHERE {t.where}").fetchall()
        if t.name == "jobs":
            rows = [(*r[:7], PENDING if r[7] == INFLIGHT else r[7], *r[8:]) for r in rows]
        out[t.name] = sorted(rows, key=repr)
    db.close()
    return out


def _target_rows(dsn: str, source: Path) -> dict[str, list[tuple[Any, ...]]]:
    names = sqlite3.connect(source)
    out = {}
    with psycopg.connect(dsn) as db:
        for t in TABLES:
            cols = [r[1] for r in names.execute(f"PRAGMA table_info({t.name})")]
            rows = db.execute(f"SELECT {', '.join(cols)} FROM {t.name}").fetchall()
            out[t.name] = sorted((tuple(r) for r in rows), key=repr)
    names.close()
    return out


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "store", "copy", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _with_password(dsn: str) -> str:
    """The tests' DSN with a password (the unix socket's trust auth ignores it)."""
    assert dsn.startswith("postgresql://postgres@"), dsn
    return dsn.replace("postgres@", f"postgres:{SECRET}@", 1)


async def test_a_copy_serves_the_same_state_on_postgres(tmp_path: Path, pg_dsn: str) -> None:
    path = tmp_path / "state" / "woobrevo.sqlite3"
    await _build(path, tmp_path)
    want = _source_rows(path)
    assert [t.name for t in TABLES if not want[t.name]] == [], {k: len(v) for k, v in want.items()}
    async with SqliteStore(path) as before:  # the SQLite store's own view, after its recovery
        pending_before = await before.counts()
        letters_before = await before.dead_letters("open", None)
    want = _source_rows(path)  # (opening it handed the claims back, as the copy does)

    done = _cli("--from", str(path), "--to", _with_password(pg_dsn), "--chunk-rows", "50")
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert SECRET not in out and "***" in out
    assert "verified" in out and "counts and checksums" in out
    assert sum(line.startswith("copy inbox ") for line in out.splitlines()) == 1  # not a tty
    assert _target_rows(pg_dsn, path) == want

    async with PostgresStore(pg_dsn) as pg:
        assert await pg.get_meta(TOKEN[0]) == TOKEN[1]
        assert await pg.get_watermark("default", "orders") == "2026-11-27T10:00:00"
        assert await pg.counts() == pending_before
        letters = await pg.dead_letters("open", None)
        assert [(d.id, d.ref, d.code) for d in letters] == [
            (d.id, d.ref, d.code) for d in letters_before
        ]
        assert await pg.suppressed("main", ["blocked@example.com"]) == {
            "blocked@example.com": frozenset({0})
        }
        assert await pg.next_cart_due() is not None
        queued = await query(pg, "SELECT account, kind, COUNT(*) FROM jobs GROUP BY 1, 2")
        # Every job claimable, none left in flight; the contacts first, sent: an event of a
        # contact Brevo does not hold yet waits for its creation (docs/mapping.md).
        for account, kind, n in sorted(queued, key=lambda q: q[1] != Kind.CONTACT.value):
            got = await pg.claim(account, Kind(kind), 100, NOW + 4 * 3600)
            assert len(got) == n, (account, kind)
            if kind == Kind.CONTACT.value:
                await pg.complete(got)
        # the identities go on past the source's: a new event takes a new seq
        res = await pg.ingest("default", [_product(EXTRA + 1), _product(0)])
        assert res.new == 1
    with psycopg.connect(pg_dsn) as db:
        (top,) = db.execute("SELECT MAX(seq) FROM inbox").fetchone() or (0,)
    assert top == max(r[0] for r in want["inbox"]) + 1


def _kill_mid_copy(path: Path, pg_dsn: str) -> None:
    """A copy killed -9 once its fourth chunk committed (the test-only pause hook)."""
    args = [sys.executable, "-m", "agent.cli", "store", "copy", "--from", str(path)]
    proc = subprocess.Popen(
        [*args, "--to", pg_dsn, "--chunk-rows", "20"],
        cwd=ROOT,
        env={**os.environ, PAUSE_ENV: "4"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:  # the fourth chunk committed
            if line.strip() == "paused" or time.monotonic() > deadline:
                break
        assert line.strip() == "paused"
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def test_a_copy_killed_mid_way_finishes_on_the_next_run(tmp_path: Path, pg_dsn: str) -> None:
    path = tmp_path / "state" / "woobrevo.sqlite3"
    await _build(path, tmp_path)
    _kill_mid_copy(path, pg_dsn)
    with psycopg.connect(pg_dsn) as db:
        (partial,) = db.execute("SELECT COUNT(*) FROM inbox").fetchone() or (0,)
    assert 0 < partial < len(_source_rows(path)["inbox"])  # stopped in the middle

    done = _cli("--from", str(path), "--to", pg_dsn, "--chunk-rows", "20")
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout and "resumed from the last checkpoint" in done.stdout
    # resumed: the inbox's rows copied before the kill were not written again
    (inbox_line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("copy inbox ")]
    written = int(inbox_line.rsplit(": ", 1)[1].split()[0])
    assert written == len(_source_rows(path)["inbox"]) - partial
    assert _target_rows(pg_dsn, path) == _source_rows(path)  # nothing lost, nothing doubled

    again = _cli("--from", str(path), "--to", pg_dsn)  # a finished copy: verified again
    assert again.returncode == 0 and "nothing written" in again.stdout


async def test_a_live_pass_then_the_final_one_match_the_source(tmp_path: Path, pg_dsn: str) -> None:
    path = tmp_path / "state" / "woobrevo.sqlite3"
    await _build(path, tmp_path)
    async with forwarding_lock(path.parent):  # an agent runs on the file
        refused = _cli("--from", str(path), "--to", pg_dsn)
        assert refused.returncode != 0 and "is running on" in refused.stderr
        result = copy_store(path, pg_dsn, chunk=30, live=True)
        assert result.counts is None  # not verified: the source moves
        # the agent goes on: jobs sent and deleted, events processed, new ones stored
        cfg = _config(tmp_path)
        async with SqliteStore(path, recover=False) as store:
            await store.ingest("default", [_product(EXTRA + n) for n in range(25)])
            assert await _processor(store, cfg, [NOW + 3 * 3600]).drain() > 0
            for kind in (Kind.CONTACT, Kind.EVENT):
                await store.complete(await store.claim("main", kind, 5, NOW + 3 * 3600))
            await store.set_watermark("default", "orders", "2026-11-28T00:00:00")
    # stopped: the final pass
    done = _cli("--from", str(path), "--to", pg_dsn, "--chunk-rows", "30")
    assert done.returncode == 0, done.stderr
    assert _target_rows(pg_dsn, path) == _source_rows(path)


async def test_refusals(tmp_path: Path, pg_dsn: str) -> None:
    path = tmp_path / "state" / "woobrevo.sqlite3"
    await _build(path, tmp_path)
    # a target that holds other data
    async with PostgresStore(pg_dsn) as pg:
        await pg.ingest("other", [_product(1)])
    refused = _cli("--from", str(path), "--to", _with_password(pg_dsn))
    assert refused.returncode != 0
    assert "already holds data (inbox" in refused.stderr and SECRET not in refused.stderr
    with psycopg.connect(pg_dsn) as db:  # untouched
        assert db.execute("SELECT COUNT(*) FROM inbox").fetchone() == (1,)
        db.execute("TRUNCATE inbox, stats")
    # a finished copy the agent then wrote to is verified, never overwritten
    assert copy_store(path, pg_dsn).counts
    async with PostgresStore(pg_dsn) as pg:
        await pg.ingest("default", [_product(EXTRA + 5)])
    with pytest.raises(AgentError, match="does not match its source: inbox"):
        copy_store(path, pg_dsn)
    # another store's copy
    other = tmp_path / "other" / "woobrevo.sqlite3"
    async with SqliteStore(other):
        pass
    with pytest.raises(AgentError, match="a copy of another store"):
        copy_store(other, pg_dsn)
    # a store a newer agent wrote
    with sqlite3.connect(other) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    refused = _cli("--from", str(other), "--to", pg_dsn)
    assert refused.returncode != 0 and "newer WooBrevo agent (store schema 99" in refused.stderr
    # not a store at all
    (tmp_path / "empty.sqlite3").write_bytes(b"")
    refused = _cli("--from", str(tmp_path / "empty.sqlite3"), "--to", pg_dsn)
    assert refused.returncode != 0 and "not a WooBrevo store" in refused.stderr
