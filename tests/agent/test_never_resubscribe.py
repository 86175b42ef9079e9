"""Never re-subscribe (issue 14, item 2): a person who left in Brevo (blocklisted, or
unsubscribed from a list) stays out after every kind of sync: WooCommerce's native webhooks,
REST polling, a full backfill, and an unsubscription that reaches the agent while that
person's contact job waits. Against the Brevo fake holding blocklisted and unlinked contacts;
everyone else is still synced and joined to the lists, once."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.app import App
from agent.cli.progress import BarProgress
from agent.config import Config
from agent.core.webhooks import sign
from agent.doors.backfill import PREPASS, Backfill, BrevoPrepass
from agent.forward.brevo import BrevoClient, BrevoListError, ContactPages, account_budgets
from agent.store import SqliteStore
from agent.woocommerce.factory import site_client
from tests import kit
from tests.conftest import ROOT, ref
from tests.fakes.brevo import BrevoFake
from tests.fakes.woocommerce import WooFake
from tests.kit import UNIT, until

TOKEN = "token-for-the-never-resubscribe-test-" + "q" * 16
WC_SECRET = "woocommerce-webhook-secret-" + "w" * 16
HOOK_SECRET = "brevo-webhook-secret-" + "b" * 24
ALL, BUYERS = 50, 51
FAST_BREVO = {
    fam: [{"count": 1000, "per": "1s"}]
    for fam in ("contacts", "events", "orders", "products", "other")
}

PLAIN = ("--site", "shop", "--plain")
BLOCKED = "blocked@example.com"  # blocklisted in Brevo (every list)
LEFT = "left@example.com"  # unsubscribed from the all-customers list in Brevo
OUTSIDE = "outside@example.com"  # in Brevo, but in no list of the shop's (backfill's case)
KEEN = ("keen1@example.com", "keen2@example.com")  # new people: synced and joined


def _seed(brevo: BrevoFake) -> None:
    """The Brevo account before the sync: who left, and how."""
    brevo.seed_contact(BLOCKED, blacklisted=True)
    brevo.seed_contact(LEFT, lists=[BUYERS], unsubscribed=[ALL])
    brevo.seed_contact(OUTSIDE, lists=[7])


def _data(tmp: Path, brevo: BrevoFake, woo: WooFake | None = None, **extra: Any) -> dict[str, Any]:
    return kit.config_data(
        tmp,
        sites=[kit.site("shop", TOKEN, webhook_secret=WC_SECRET, **extra)],
        agent={"historical_after": "30d"},
        brevo=kit.live(brevo, webhook_secret=HOOK_SECRET, max_backoff="1s", rate_limits=FAST_BREVO),
        woocommerce={
            **(kit.store(woo) if woo is not None else {}),
            "rate_limit_per_minute": 6000,
            "lists": {"all_customers": ALL, "buyers": BUYERS},
            "customer_mapping": {
                "email": "email",
                "first_name": "FIRSTNAME",
                "last_name": "LASTNAME",
            },
            "polling": {
                "interval": "300ms",
                "overlap": "3s",
                "customer_scan_every": "1s",
                "reconcile_every": "1s",
            },
            "backfill": {"per_page": 20},
        },
    )


def _config(tmp: Path, brevo: BrevoFake, woo: WooFake | None = None, **extra: Any) -> Config:
    return Config.model_validate(_data(tmp, brevo, woo, **extra))


# -- what Brevo saw -----------------------------------------------------------------------------


def _contact_writes(brevo: BrevoFake) -> list[tuple[str, str, dict[str, Any], list[int]]]:
    """Every successful contact write as (path, email, the contact's body, lists it adds)."""
    out: list[tuple[str, str, dict[str, Any], list[int]]] = []
    for r in brevo.requests:
        if (r.status or 999) >= 300 or not isinstance(r.json, dict):
            continue
        body = r.json
        if r.method == "POST" and r.path == "/contacts":
            out.append((r.path, str(body["email"]).lower(), body, list(body.get("listIds") or [])))
        elif r.method == "PUT" and r.path.startswith("/contacts/") and "@" in r.path:
            email = r.path.removeprefix("/contacts/").lower()
            out.append((r.path, email, body, list(body.get("listIds") or [])))
        elif r.path == "/contacts/import":
            lists = list(body.get("listIds") or [])
            for row in body.get("jsonBody") or []:
                out.append((r.path, str(row["email"]).lower(), {**body, **row}, lists))
        elif r.path == "/contacts/batch":
            for item in body.get("contacts") or []:
                email = str(item.get("email", "")).lower()
                out.append((r.path, email, item, list(item.get("listIds") or [])))
    return out


def _assert_nobody_resubscribed(brevo: BrevoFake, *, left: tuple[str, ...] = (LEFT,)) -> None:
    """No write adds a blocklisted person to any list or a person to a list they left, no
    write touches `emailBlacklisted`, and Brevo still holds them as they were."""
    for path, email, body, lists in _contact_writes(brevo):
        assert "emailBlacklisted" not in body, (path, email)
        if email == BLOCKED:
            assert lists == [], (path, lists)
        if email in left:
            assert ALL not in lists, (path, email, lists)
        if email == OUTSIDE and OUTSIDE in left:
            assert BUYERS not in lists, (path, lists)
    blocked = brevo.contacts[BLOCKED]
    assert brevo.contact_flags[blocked["id"]]["emailBlacklisted"] is True
    assert blocked["listIds"] == []
    for email in left:
        assert ALL not in brevo.contacts[email]["listIds"], email
    flags = brevo.contact_flags[brevo.contacts[LEFT]["id"]]
    assert flags["listUnsubscribed"] == [ALL] and not flags["emailBlacklisted"]
    brevo.assert_no_spec_violations()


def _assert_joined(brevo: BrevoFake, emails: tuple[str, ...], *, buyers: bool) -> None:
    """Everyone else is in Brevo, in the lists, written once."""
    writes = Counter(email for _, email, _, _ in _contact_writes(brevo))
    for email in emails:
        assert email in brevo.contacts, email
        lists = set(brevo.contacts[email]["listIds"])
        assert ALL in lists, (email, lists)
        if buyers:
            assert BUYERS in lists, (email, lists)
        assert writes[email] >= 1, email


async def _tell_agent(app: App, *events: dict[str, Any]) -> None:
    """Brevo's marketing webhook reaches the agent (its Brevo door), as Brevo sends it."""
    url = f"http://127.0.0.1:{app.http.port}/webhooks/brevo/shop"
    headers = {"Authorization": f"Bearer {HOOK_SECRET}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s, s.post(url, json=list(events), headers=headers) as r:
        answer = await r.json()
        assert r.status == 200 and answer["recorded"] == len(events), answer


def _unsubscribed(email: str, lists: list[int] | None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": 991,
        "camp_id": 4,
        "email": email,
        "event": "unsubscribe",
        "date_event": "2026-12-06 07:00:00",
        "ts_event": 1_796_000_000,
        "ts": 1_796_000_000,
    }
    if lists is not None:
        event["list_id"] = lists
    return event


async def _learn_who_left(app: App) -> None:
    await _tell_agent(
        app,
        _unsubscribed(LEFT, [ALL]),
        {"id": 992, "email": BLOCKED, "event": "spam", "ts_event": 1_796_000_001},
    )


# -- (a) WooCommerce's native webhooks ----------------------------------------------------------


def _customer(cid: int, email: str) -> dict[str, Any]:
    body = copy.deepcopy(ref("customer.json"))
    body.update(id=cid, email=email, username=email.split("@")[0])
    body["billing"]["email"] = email
    return body


def _order(oid: int, cid: int, email: str) -> dict[str, Any]:
    body = copy.deepcopy(ref("order.json"))
    body.update(id=oid, customer_id=cid, status="processing")
    body["billing"]["email"] = email
    return body


async def _deliver(app: App, topic: str, obj: dict[str, Any]) -> None:
    raw = json.dumps(obj).encode()
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Signature": sign(raw, WC_SECRET),
        "X-WC-Webhook-Delivery-ID": "d" * 32,
    }
    url = f"http://127.0.0.1:{app.http.port}/webhooks/woocommerce/shop"
    async with aiohttp.ClientSession() as s, s.post(url, data=raw, headers=headers) as r:
        answer = await r.json()
        assert r.status == 200 and answer.get("stored"), answer


async def test_native_webhooks_never_resubscribe(tmp_path: Path) -> None:
    async with BrevoFake(check_responses=True) as brevo:
        _seed(brevo)
        async with App(_config(tmp_path, brevo)) as app:
            await _learn_who_left(app)
            people = [BLOCKED, LEFT, *KEEN]
            for n, email in enumerate(people, start=1):
                await _deliver(app, "customer.updated", _customer(100 + n, email))
                await _deliver(app, "order.updated", _order(700 + n, 100 + n, email))
            await app.wait_idle(60 * UNIT)
        _assert_nobody_resubscribed(brevo)
        _assert_joined(brevo, KEEN, buyers=True)
        # The person who left one list still gets what is not that list (the buyers list),
        # and every order reached Brevo, once.
        assert BUYERS in brevo.contacts[LEFT]["listIds"]
        assert set(brevo.orders) >= {str(700 + n) for n in range(1, len(people) + 1)}


# -- (b) REST polling ---------------------------------------------------------------------------


def _as_customer(woo: WooFake, email: str) -> dict[str, Any]:
    made = woo.add_customer(email=email)
    billing = dict(made["billing"], email=email)
    return woo.update_customer(made["id"], billing=billing)


async def test_rest_polling_never_resubscribes(tmp_path: Path) -> None:
    async with (
        WooFake(customers=2, orders=2, products=3, coupons=0, seed=14) as woo,
        BrevoFake(check_responses=True) as brevo,
    ):
        _seed(brevo)
        async with App(_config(tmp_path, brevo, woo, mode="polling")) as app:
            await _learn_who_left(app)
            polling = app.status.site("shop").polling
            assert polling is not None
            await until(lambda: polling.rounds >= 1, 10)
            woo.clock.advance(1)
            orders = []
            for email in (BLOCKED, LEFT, *KEEN):
                customer = _as_customer(woo, email)
                orders.append(woo.add_order(customer_id=customer["id"], status="processing"))
            await brevo.wait_for(
                lambda: all(str(o["id"]) in brevo.orders for o in orders), timeout=30 * UNIT
            )
            await until(
                lambda: all(
                    e in brevo.contacts and ALL in brevo.contacts[e]["listIds"] for e in KEEN
                ),
                30,
            )
            await app.wait_idle(60 * UNIT)
        _assert_nobody_resubscribed(brevo)
        _assert_joined(brevo, KEEN, buyers=True)


# -- (c) a full backfill ------------------------------------------------------------------------


async def test_a_full_backfill_reads_brevo_first_and_never_resubscribes(tmp_path: Path) -> None:
    async with (
        WooFake(customers=0, orders=0, products=4, coupons=0, seed=21) as woo,
        BrevoFake(check_responses=True) as brevo,
    ):
        _seed(brevo)
        # Brevo was not told anything by webhook: the backfill's own look at its contacts
        # is what keeps these people out.
        everyone = (BLOCKED, LEFT, OUTSIDE, *KEEN)
        order_ids = []
        for email in everyone:
            customer = _as_customer(woo, email)
            order_ids.append(woo.add_order(customer_id=customer["id"], status="completed")["id"])
        for _ in range(3):  # and guests, nobody Brevo knows
            order_ids.append(woo.add_order(customer_id=0, status="processing")["id"])
        config = kit.write_config(tmp_path / "c.yaml", _data(tmp_path, brevo, woo))
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "agent.cli", "backfill", "--config", str(config), *PLAIN],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=180 * UNIT,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        lists_read = [r for r in brevo.requests if r.method == "GET" and r.path == "/contacts"]
        assert lists_read and lists_read[0].query.get("limit") == "1000"
        first_write = next(i for i, r in enumerate(brevo.requests) if r.method != "GET")
        assert brevo.requests.index(lists_read[-1]) < first_write  # read before any write
        # OUTSIDE is in Brevo but in neither list: the backfill leaves it so.
        _assert_nobody_resubscribed(brevo, left=(LEFT, OUTSIDE))
        assert not {ALL, BUYERS} & set(brevo.contacts[OUTSIDE]["listIds"])
        assert 7 in brevo.contacts[OUTSIDE]["listIds"]
        _assert_joined(brevo, KEEN, buyers=True)
        assert set(brevo.orders) == {str(i) for i in order_ids}
        assert "backfill brevo contacts 3/3 (100.0%)" in out.stderr, out.stderr
        assert (
            "3 contacts already in Brevo checked: 1 blocklisted, 1 unsubscribed from lists,"
            " 1 outside a marketing list" in out.stdout
        ), out.stdout


# -- (d) an unsubscription while the contact job waits -------------------------------------------


async def test_an_unsubscription_that_arrives_while_the_job_waits_wins(tmp_path: Path) -> None:
    async with BrevoFake(check_responses=True) as brevo:
        _seed(brevo)
        async with App(_config(tmp_path, brevo)) as app:
            # Someone Brevo had nothing against yet; their job is planned with the list, and
            # Brevo makes it wait (a 429 for the contacts family, 2 seconds).
            brevo.fail_next(
                1, 429, path="/contacts", headers={"x-sib-ratelimit-reset": str(2 * UNIT)}
            )
            await _deliver(app, "customer.updated", _customer(201, KEEN[0]))
            await brevo.wait_for(lambda: any(r.status == 429 for r in brevo.requests), 10 * UNIT)
            # While it waits, Brevo tells the agent that this person unsubscribed.
            await _tell_agent(app, _unsubscribed(KEEN[0], [ALL]))
            await _deliver(app, "customer.updated", _customer(202, KEEN[1]))
            await app.wait_idle(60 * UNIT)
        writes = [(e, lists) for _, e, _, lists in _contact_writes(brevo)]
        assert [lists for e, lists in writes if e == KEEN[0]] == [[]]  # once, without the list
        assert ALL not in brevo.contacts[KEEN[0]]["listIds"]
        _assert_joined(brevo, (KEEN[1],), buyers=False)
        assert [e for e, _ in writes].count(KEEN[1]) == 1
        brevo.assert_no_spec_violations()


# -- the pre-pass itself: paging, Brevo's limits, refusals, dry-run ------------------------------


class _Lines:
    """A progress sink that keeps what it was told."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, int, int | None]] = []
        self.finished: list[tuple[str, int]] = []

    def update(self, name: str, done: int, total: int | None) -> None:
        self.updates.append((name, done, total))

    def finish(self, name: str, done: int) -> None:
        self.finished.append((name, done))


async def test_the_pre_pass_pages_through_every_contact_within_the_contacts_budget(
    tmp_path: Path,
) -> None:
    # Brevo's limit for the family, enforced: a call over it would be refused with a 429.
    limits = {"contacts": [(2, 1.0)]}
    async with BrevoFake(check_responses=True, enforce_limits=True, limits=limits) as brevo:
        for n in range(2_050):
            if n % 500 == 0:
                brevo.seed_contact(f"gone{n}@example.com", blacklisted=True)
            else:
                brevo.seed_contact(f"member{n}@example.com", lists=[ALL, BUYERS])
        brevo.seed_contact(LEFT, lists=[BUYERS], unsubscribed=[ALL])
        # Brevo's own pace, once: the page is asked again after the reset, not counted lost.
        brevo.fail_next(1, 429, path="/contacts", headers={"x-sib-ratelimit-reset": "0.2"})
        data = _data(tmp_path, brevo)
        # Two contact calls a second (the account's `contacts` family, as the forwarder's).
        data["brevo"]["rate_limits"] = {"contacts": [{"count": 2, "per": "1s"}]}
        site = Config.model_validate(data).site("shop")
        sink = _Lines()
        async with (
            SqliteStore(tmp_path / "s.sqlite") as store,
            BrevoClient(site.brevo.base_url, site.brevo.api_key) as client,
        ):
            pages = ContactPages(client, account_budgets(site.brevo)["contacts"], clock=time.time)
            prepass = BrevoPrepass(pages, store)
            started = time.monotonic()
            await prepass.run(site, sink)
            took = time.monotonic() - started
            account = site.brevo.account
            got = await store.suppressed(
                account, ["gone0@example.com", "gone2000@example.com", LEFT, "member1@example.com"]
            )
        assert got == {
            "gone0@example.com": frozenset({0}),
            "gone2000@example.com": frozenset({0}),
            LEFT: frozenset({ALL}),
        }
        assert prepass.checked == 2_051
        assert prepass.found == {"blocklisted": 5, "unsubscribed": 1}
        reads = [r for r in brevo.requests if r.path == "/contacts"]
        assert [(r.query["offset"], r.status) for r in reads] == [
            ("0", 429), ("0", 200), ("1000", 200), ("2000", 200)
        ]  # fmt: skip
        assert {(r.query["limit"], r.query["sort"]) for r in reads} == {("1000", "asc")}
        assert not any(r.over_limit for r in reads)
        assert took >= 0.8  # four calls at two a second: the budget held them
        assert sink.updates[-1] == (PREPASS, 2_051, 2_051) and sink.finished == [(PREPASS, 2_051)]
        brevo.assert_no_spec_violations()


async def test_a_refused_listing_stops_the_backfill_before_anything_is_stored(
    tmp_path: Path,
) -> None:
    async with BrevoFake() as brevo:
        brevo.fail_next(1, 401, path="/contacts")
        site = _config(tmp_path, brevo).site("shop")
        async with BrevoClient(site.brevo.base_url, site.brevo.api_key) as client:
            pages = ContactPages(client, account_budgets(site.brevo)["contacts"], clock=time.time)
            with pytest.raises(BrevoListError) as caught:
                await pages.page(0)
        message = str(caught.value)
        assert "401" in message and "check brevo.api_key" in message
        assert brevo.api_key not in message


async def test_dry_run_skips_the_pre_pass_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with WooFake(customers=2, orders=1, products=1, coupons=0) as woo:
        data = kit.config_data(
            tmp_path, woocommerce={**kit.store(woo), "lists": {"all_customers": ALL}}
        )
        site = Config.model_validate(data).site("default")
        assert site.brevo.is_dry_run
        async with SqliteStore(tmp_path / "s.sqlite") as store, site_client(site) as wc:
            job = Backfill(store, site, wc, resources=["customers"], prepass=None)
            assert await job.run() == {"customers": 2}
    assert "brevo is in dry-run (no api_key): the check of the contacts already in brevo" in (
        caplog.text
    )


def test_the_pre_pass_bar_lines_up_with_the_resources() -> None:
    out = io.StringIO()
    bars = BarProgress(out, clock=lambda: 0.0)
    bars.update(PREPASS, 10, 20)
    bars.update("orders", 5, 10)
    bars.finish("orders", 10)
    last = out.getvalue().split("\x1b[2K")[-2:]
    assert last[0].index("[") == last[1].index("[") == len(PREPASS) + 1
