"""Brevo rate budgets shared by the replicas of one PostgreSQL store (issue 17).

Three agents (real `App`s, each its own store connections, state folder and replica name) on
one database forward one backlog of contacts to the Brevo fake, which enforces a small,
time-scaled contacts window and answers 429 beyond it. With the shared budgets
(agent/store/postgres/budgets.py) the fake sees no request beyond the limit and no 429;
each replica metering its own budget (the SQLite agent's way) went over it. Every contact
reaches Brevo, each once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

from agent.app import App
from agent.core.events import Door, Event, parse_event
from agent.core.planner import Budget
from agent.store.postgres import PostgresStore
from tests.conftest import SHOP, ref
from tests.fakes.brevo import BrevoFake
from tests.kit import config_data, live, load, until

# The fake's time runs SCALE times faster: Brevo's contacts window of 5 per 30 s lasts 0.5 s.
SCALE = 60.0
WINDOW = (5, 30.0)
CONTACTS = 45
DEADLINE = 45.0


def _customers(n: int) -> list[Event]:
    base = ref("customer.json")
    out = []
    for i in range(n):
        payload = dict(base, id=9000 + i, email=f"c{i}@example.com")
        payload["date_modified_gmt"] = "2026-11-26T12:00:00"
        ev = parse_event(
            {"id": f"c-{i}", "topic": "customer.updated", "payload": payload}, door=Door.WEBHOOK
        )
        assert isinstance(ev, Event)
        out.append(ev)
    return out


def _config(tmp_path: Path, fake: BrevoFake, dsn: str, name: str) -> dict[str, Any]:
    count, per = WINDOW
    data = config_data(
        tmp_path / name,
        agent={"store": dsn, "replica": name, "historical_after": "3650d"},
        brevo=live(
            fake,
            plan="general",
            rate_limits={"contacts": [{"count": count, "per": f"{per / SCALE * 1000:.0f}ms"}]},
            live_window="3650d",  # single calls: many small requests to meter
            max_backoff="1s",
        ),
    )
    data["connectors"]["woocommerce"] = dict(SHOP, webhooks=[])
    return data


async def _drain(tmp_path: Path, dsn: str, shared: bool) -> BrevoFake:
    async with BrevoFake(
        enforce_limits=True, time_scale=SCALE, limits={"contacts": [WINDOW]}
    ) as fake:
        apps = [
            App(load(tmp_path, _config(tmp_path, fake, dsn, f"r{i}"), f"r{i}.yaml"), doors=False)
            for i in range(3)
        ]
        async with contextlib.AsyncExitStack() as stack:
            for app in apps:
                await stack.enter_async_context(app)
                if not shared:  # each replica meters its own windows, as one SQLite agent
                    for worker in app.forwarder.workers.values():
                        worker.shared = None
            await apps[0].store.ingest("default", _customers(CONTACTS))
            for app in apps:
                app.forwarder.wake()

            async def done() -> bool:
                counts = await apps[0].store.counts()
                return counts["inbox_pending"] == 0 and counts["jobs"] == 0

            await until(done, DEADLINE)
        fake.assert_no_spec_violations()
        return fake


def _contact_writes(fake: BrevoFake) -> Counter[str]:
    return Counter(
        str(r.json["email"])
        for r in fake.requests
        if r.family == "contacts" and r.status is not None and r.status < 300
    )


async def test_three_replicas_never_exceed_one_accounts_limit(tmp_path: Path, pg_dsn: str) -> None:
    fake = await _drain(tmp_path, pg_dsn, shared=True)
    contacts = [r for r in fake.requests if r.family == "contacts"]
    over = [r for r in contacts if r.over_limit]
    print(f"shared budgets: {len(over)} of {len(contacts)} contact requests beyond the limit")
    assert not over, f"{len(over)} of {len(contacts)} contact requests beyond Brevo's limit"
    assert not [r for r in contacts if r.status == 429]
    # nothing lost, nothing doubled
    writes = _contact_writes(fake)
    assert set(writes) == {f"c{i}@example.com" for i in range(CONTACTS)}
    assert max(writes.values()) == 1, writes.most_common(3)


async def test_without_sharing_three_replicas_go_over_the_limit(
    tmp_path: Path, pg_dsn: str
) -> None:
    """The fault the shared budgets remove: three replicas each metering the whole limit."""
    fake = await _drain(tmp_path, pg_dsn, shared=False)
    contacts = [r for r in fake.requests if r.family == "contacts"]
    over = [r for r in contacts if r.over_limit]
    print(f"unshared budgets: {len(over)} of {len(contacts)} contact requests beyond the limit")
    assert over, "three unshared budgets stayed within one account's limit"
    assert set(_contact_writes(fake)) == {f"c{i}@example.com" for i in range(CONTACTS)}


async def test_a_429_seen_by_one_replica_blocks_the_family_for_all(pg_dsn: str) -> None:
    """One replica's block is every replica's; an answer's headers only make it stricter."""
    windows = [(5, 1.0), (100, 60.0)]
    async with PostgresStore(pg_dsn, owner="a") as a, PostgresStore(pg_dsn, owner="b") as b:
        mine, theirs = Budget.of(windows), Budget.of(windows)
        for _ in range(3):
            assert await a.take_budget("acct", "contacts", mine, 1000.0) == 0.0
        assert await b.take_budget("acct", "contacts", theirs, 5000.0) == 0.0
        assert [w.used for w in theirs.windows] == [4, 4]  # a's three, b's one
        # k at once: room for one, not two
        assert await b.take_budget("acct", "contacts", theirs, 5000.0, n=2) > 0
        assert [w.used for w in theirs.windows] == [4, 4]
        # a 429 on a: b waits (b's clock is 4000 s ahead: the wait is in seconds, clock-free)
        await a.block_budget("acct", "contacts", mine, 1000.0, 30.0)
        wait = await b.take_budget("acct", "contacts", theirs, 5000.0)
        assert 29.0 < wait <= 30.0
        assert 5029.0 < theirs.blocked_until <= 5030.0
        # headers saying more room than counted change nothing (b's request may be on the wire)
        await a.observe_budget("acct", "events", mine, 1000.0, (5, 5, 1.0))
        await a.observe_budget("acct", "contacts", mine, 1000.0, (5, 4, 0.5))
        assert mine.windows[0].used == 4
        # other accounts and families are their own
        assert await b.take_budget("other", "contacts", theirs, 5000.0) == 0.0


async def test_replicas_take_the_last_request_of_a_window_once(pg_dsn: str) -> None:
    """Ten takes racing from three stores for a window of five: five get it."""
    windows = [(5, 60.0)]
    async with (
        PostgresStore(pg_dsn, owner="a") as a,
        PostgresStore(pg_dsn, owner="b") as b,
        PostgresStore(pg_dsn, owner="c") as c,
    ):
        stores = [a, b, c]
        waits = await asyncio.gather(
            *(
                stores[i % 3].take_budget("acct", "orders", Budget.of(windows), 1.0)
                for i in range(10)
            )
        )
    assert sum(1 for w in waits if w == 0.0) == 5
    assert all(55.0 < w <= 60.0 for w in waits if w)
