"""The planner and the retry policy: pure, with the clock passed in."""

from __future__ import annotations

import random

from agent.core.jobs import Job, Kind
from agent.core.planner import PLAN_LIMITS, Budget, batch_request, choose, single_request
from agent.core.retry import VerdictKind, backoff_delay, classify


def budgets(plan: str = "general") -> dict[str, Budget]:
    return {fam: Budget.of(limits) for fam, limits in PLAN_LIMITS[plan].items()}


def test_fixed_window_budget() -> None:
    b = Budget.of([(2, 1.0)])
    assert b.delay(0.0) == 0
    b.take(0.0)
    b.take(0.2)
    assert b.delay(0.5) == 0.5  # the window opened at 0.0 ends at 1.0
    assert b.delay(1.0) == 0
    b.take(1.0)
    assert b.headroom(1.1) == 1


def test_budget_adopts_brevo_headers_and_429_blocks() -> None:
    b = Budget.of([(10, 1.0), (36_000, 3600.0)])
    b.observe(100.0, limit=10, remaining=0, reset=0.4)
    assert abs(b.delay(100.0) - 0.4) < 1e-9
    b.block(200.0, 30.0)
    assert b.delay(210.0) == 20.0
    assert b.headroom(210.0) == 0


def test_live_traffic_goes_single_backlog_goes_batch() -> None:
    bs = budgets()
    assert not choose(Kind.ORDER, 1, bs, 0.0, 5.0).batch
    assert not choose(Kind.ORDER, 25, bs, 0.0, 5.0).batch  # 5/s clears 25 within 5 s
    plan = choose(Kind.ORDER, 2000, bs, 0.0, 5.0)
    assert plan.batch and plan.family == "other" and plan.size == 1000
    # with the hourly batch bucket spent, single calls are faster for a small backlog
    other = bs["other"]
    for _ in range(100):
        other.take(0.0)
    assert not choose(Kind.ORDER, 100, bs, 10.0, 5.0).batch
    # … but not for a huge one (20,000 orders take 4,000 s one by one; the bucket resets sooner)
    assert choose(Kind.ORDER, 20_000, bs, 10.0, 5.0).batch
    assert choose(Kind.CATEGORY, 1, bs, 0.0, 5.0).batch  # categories only go in batches
    assert choose(Kind.CONTACT, 200, bs, 0.0, 5.0).family == "contacts"


def job(i: int, kind: Kind, body: dict[str, object], hist: bool = False) -> Job:
    return Job(i, "acct", "default", kind, f"{kind}:{i}", dict(body), hist)


def test_batch_bodies() -> None:
    contacts = [
        job(1, Kind.CONTACT, {"email": "a@x.io", "attributes": {"A": 1}, "listIds": [50, 51]}),
        job(2, Kind.CONTACT, {"email": "b@x.io", "attributes": {}, "listIds": [50]}),
        job(3, Kind.CONTACT, {"email": "c@x.io", "attributes": {"A": 2}, "listIds": [51, 50]}),
    ]
    req = batch_request(contacts)
    assert req.path == "/contacts/import"
    assert req.body["listIds"] == [50, 51]
    assert [r["email"] for r in req.body["jsonBody"]] == ["a@x.io", "c@x.io"]
    assert [j.id for j in req.extra_jobs] == [2]  # another list set waits for its own import

    orders = [
        job(1, Kind.ORDER, {"id": "1"}, hist=True),
        job(2, Kind.ORDER, {"id": "2"}, hist=True),
    ]
    assert batch_request(orders).body == {"orders": [{"id": "1"}, {"id": "2"}], "historical": True}
    orders[1] = job(2, Kind.ORDER, {"id": "2"}, hist=False)
    assert batch_request(orders).body["historical"] is False  # live orders may start automations

    prods = [job(1, Kind.PRODUCT, {"id": "1", "name": "n", "updateEnabled": True})]
    assert batch_request(prods).body == {
        "products": [{"id": "1", "name": "n"}],
        "updateEnabled": True,
    }
    coupon = job(1, Kind.COUPON, {"collection": "WooCommerce", "codes": ["b", "a", "a"]})
    assert single_request(coupon, collection_id="c-1").body == {
        "collectionId": "c-1",
        "coupons": ["a", "b"],
    }


def test_classify_every_status() -> None:
    assert classify(204).kind is VerdictKind.OK
    v = classify(429, {"x-sib-ratelimit-reset": "7"})
    assert v.kind is VerdictKind.RATE_LIMITED and v.wait == 7.0
    assert classify(425).kind is VerdictKind.RETRY
    assert classify(503).kind is VerdictKind.RETRY
    assert classify(None).kind is VerdictKind.RETRY
    for status in (401, 402, 403):
        assert classify(status).kind is VerdictKind.ACCOUNT
    for status in (400, 404, 422):
        assert classify(status).kind is VerdictKind.PERMANENT


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(a, max_delay=60.0, rng=rng) for a in range(12)]
    assert 0.5 <= delays[0] <= 1.0
    assert all(30.0 <= d <= 60.0 for d in delays[7:])
    assert len(set(delays)) == len(delays)
