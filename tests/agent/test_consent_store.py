"""The store's consent records and suppressions (agent/store/consent.py, the `ConsentStore`
port): the migration that adds them, suppress and lift, and the pipeline's record written in
its event's transaction."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from agent.core.consent import ConsentRecord
from agent.core.events import Door, Event, parse_event
from agent.core.pipeline import SiteRules, decide
from agent.store.schema import SCHEMA_VERSION
from agent.store.sqlite import SqliteStore
from tests.agent.conftest import OpenStore
from tests.agent.storesql import query, write
from tests.conftest import ref
from tests.kit import config_data, load

A = "acct"


async def test_an_older_store_gains_the_consent_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    db.commit()
    db.close()
    async with SqliteStore(path) as store:
        assert await store.get_meta("schema_version") == str(SCHEMA_VERSION) == "3"
        assert await store.suppressed(A, ["a@x.test"]) == {}
        assert await store.consent_of(A, "a@x.test") is None


async def test_suppress_lift_and_what_is_in_force(open_store: OpenStore) -> None:
    async with open_store() as store:
        await store.suppress(A, "a@x.test", [50, 51], "unsubscribed", 100.0)
        await store.suppress(A, "b@x.test", [], "spam", 100.0)
        await store.suppress("other", "a@x.test", [52], "unsubscribed", 100.0)
        got = await store.suppressed(A, ["a@x.test", "b@x.test", "c@x.test"])
        assert got == {"a@x.test": {50, 51}, "b@x.test": {0}}
        await store.lift(A, "a@x.test", [50])
        assert await store.suppressed(A, ["a@x.test"]) == {"a@x.test": {51}}
        # many emails at once (more than one query's worth of parameters)
        emails = [f"p{i}@x.test" for i in range(1200)]
        for e in emails[::300]:
            await store.suppress(A, e, [7], "absent_at_backfill", 1.0)
        assert set(await store.suppressed(A, emails)) == set(emails[::300])


async def test_a_suppression_forgets_that_brevo_held_the_list(open_store: OpenStore) -> None:
    """So that a later subscription, which lifts it, adds the list again (agent/core/dedupe.py
    would otherwise judge the list already held)."""
    async with open_store() as store:
        await write(
            store,
            "INSERT INTO forwarded (account, key, state, updated_at) VALUES (?,?,?,0)",
            A,
            "contact:a@x.test",
            '{"attributes": {"X": 1}, "listIds": [50, 51]}',
        )
        await store.suppress(A, "a@x.test", [50], "unsubscribed", 1.0)
        await store.suppress(A, "b@x.test", [], "spam", 1.0)  # nothing forwarded: nothing to do
    async with open_store() as store:
        ((state,),) = await query(store, "SELECT state FROM forwarded")
    assert json.loads(state) == {"attributes": {"X": 1}, "listIds": [51]}


async def run_pipeline(store: Any, tmp_path: Path, payload: dict[str, Any], n: int) -> None:
    cfg = load(tmp_path, config_data(tmp_path, woocommerce={"lists": {"all_customers": 50}}))
    rules = SiteRules.of(cfg.resolved_sites()[0])
    ev = parse_event({"id": f"e-{n}", "topic": "customer.updated", "payload": payload},
                     door=Door.STREAM)  # fmt: skip
    assert isinstance(ev, Event)
    await store.ingest("default", [ev])

    def decide_(site: str, e: Event, prior: Any, agg: Any, consent: Any) -> Any:
        return decide(rules, e, prior, agg, now=2e9, historical_after=1e10, consent=consent)

    assert await store.process_pending(10, decide_, lambda s, e: None) == 1


async def test_the_pipeline_keeps_the_record_and_a_later_subscription_lifts(
    tmp_path: Path, open_store: OpenStore
) -> None:
    cfg = load(tmp_path, config_data(tmp_path))
    account = cfg.resolved_sites()[0].brevo.account
    email = "john.doe@example.com"
    async with open_store() as store:
        await store.suppress(account, email, [50], "unsubscribed", 1_700_000_000.0)
        payload = ref("customer.json")
        value = {"subscribed": True, "time": "2026-12-06T06:29:58Z", "source": "my_account",
                 "text": "News"}  # fmt: skip
        payload["meta_data"] = [{"id": 1, "key": "_woobrevo_consent", "value": value}]
        await run_pipeline(store, tmp_path, payload, 1)
        record = await store.consent_of(account, email)
        assert record == ConsentRecord(True, 1796538598.0, "my_account", None)
        assert await store.suppressed(account, [email]) == {}  # subscribed after leaving
        await store.suppress(account, email, [50], "unsubscribed", 1_900_000_000.0)
        assert await store.suppressed(account, [email]) == {email: {50}}  # left again since
