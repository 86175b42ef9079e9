"""The plugin, the agent and Brevo together: a shop's changes become the right Brevo calls,
an agent outage loses nothing and duplicates nothing, and multisite keeps sites apart."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import Php, token
from tests.kit import UNIT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

WAIT = 60 * UNIT


def contact(brevo: Any, email: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = brevo.contacts.get(email)
    return found


def events_named(brevo: Any, name: str, email: str) -> list[dict[str, Any]]:
    return [
        e
        for e in brevo.events
        if e.get("event_name") == name and (e.get("identifiers") or {}).get("email_id") == email
    ]


async def shop(php: Php, tag: str) -> dict[str, Any]:
    """A customer, a variable product, a coupon, and an order through its statuses + a refund."""
    email = f"jane.{tag}@example.com"
    customer = await php("customer", email, "Jane", "Doe")
    product = await php("product", f"Shirt {tag}")
    code = f"save{tag}"
    coupon = await php("coupon", code)
    order = await php(
        "order",
        str(customer["customer_id"]),
        str(product["product_id"]),
        str(product["variation_ids"][0]),
        code,
    )
    for status in ("processing", "completed"):
        await php("status", str(order["order_id"]), status)
    refund = await php("refund", str(order["order_id"]), "5.00")
    return {"email": email, "code": code, **customer, **product, **coupon, **order, **refund}


async def test_shop_changes_become_brevo_calls(
    wp_env: dict[str, str], brevo: Any, make_agent: Any
) -> None:
    site_token = token("single")
    agent = await make_agent([("default", site_token)])
    php = Php(wp_env)
    await php("configure", agent.url, site_token)
    tag = uuid.uuid4().hex[:6]
    made = await shop(php, tag)
    # Every action shipped at its own shutdown; a flush finds nothing left.
    flushed = await php("flush")
    assert flushed["depth"] == 0, flushed
    assert flushed["rejected_list"] == [], flushed

    email, order_id = made["email"], str(made["order_id"])
    await brevo.wait_for(
        lambda: (
            order_id in brevo.orders
            and brevo.orders[order_id].get("status") == "completed"
            and len(events_named(brevo, "order_refunded", email)) >= 1
        ),
        timeout=WAIT,
    )
    # The contact, field by field (customer_mapping above; lists 50 all, 51 buyers).
    c = contact(brevo, email)
    assert c is not None, sorted(brevo.contacts)
    assert c["attributes"]["FIRSTNAME"] == "Jane"
    assert c["attributes"]["LASTNAME"] == "Doe"
    assert c["attributes"]["CITY"] == "Lyon"
    assert 50 in c["listIds"] and 51 in c["listIds"]
    # The order.
    o = brevo.orders[order_id]
    assert o["identifiers"]["email_id"] == email
    assert float(o["amount"]) == pytest.approx(float(made["total"]))
    (line,) = o["products"]
    assert str(line["productId"]) == str(made["product_id"])
    assert str(line["variantId"]) == str(made["variation_ids"][0])
    assert line["quantity"] == 2
    # The variable product and its variations (parentId), and the coupon code.
    await brevo.wait_for(
        lambda: all(str(v) in brevo.products for v in made["variation_ids"]),
        timeout=WAIT,
    )
    assert str(made["product_id"]) in brevo.products
    for v in made["variation_ids"]:
        assert str(brevo.products[str(v)].get("parentId")) == str(made["product_id"])
    await brevo.wait_for(
        lambda: any(
            made["code"].lower() in {x.lower() for x in codes} for codes in brevo.coupons.values()
        ),
        timeout=WAIT,
    )
    # Lifecycle events, once each.
    assert len(events_named(brevo, "order_placed", email)) == 1
    assert len(events_named(brevo, "order_fulfilled", email)) == 1
    assert len(events_named(brevo, "order_refunded", email)) == 1
    # Every event the plugin wrote arrived once, as this site.
    inbox = agent.inbox()
    assert {site for site, *_ in inbox} == {"default"}
    assert not [e for e, n in Counter(e for _, e, _, _ in inbox).items() if n > 1]


async def test_agent_down_then_up_delivers_everything_once(
    wp_env: dict[str, str], brevo: Any, make_agent: Any
) -> None:
    site_token = token("outage")
    agent = await make_agent([("default", site_token)])
    php = Php(wp_env)
    await php("configure", agent.url, site_token)
    await agent.stop()

    tag = uuid.uuid4().hex[:6]
    made = await shop(php, tag)
    state = await php("state")
    # customer, product + 2 variations, coupon, order (one row per request for the order)
    assert state["depth"] >= 6, state
    assert state["backoff"]["failures"] >= 1, state
    assert "cannot connect" in state["last_error"]

    await agent.start()
    flushed = await php("flush")
    assert flushed["depth"] == 0, flushed
    assert flushed["acked"] == state["depth"], flushed

    email, order_id = made["email"], str(made["order_id"])
    await brevo.wait_for(
        lambda: order_id in brevo.orders and len(events_named(brevo, "order_refunded", email)) >= 1,
        timeout=WAIT,
    )
    inbox = [row for row in agent.inbox() if row[1].startswith(state["epoch"] + "-")]
    ids = [e for _, e, _, _ in inbox]
    assert len(ids) == len(set(ids)), "an event stored twice"
    assert len(ids) >= state["depth"]
    assert len(events_named(brevo, "order_placed", email)) == 1
    assert len(events_named(brevo, "order_refunded", email)) == 1
    # A second flush has nothing to send, and the agent stores nothing new.
    stored = len(agent.inbox())
    again = await php("flush")
    assert again["sent"] == 0
    assert len(agent.inbox()) == stored


async def test_multisite_two_sites_two_tokens(
    wp_env: dict[str, str], brevo: Any, make_agent: Any
) -> None:
    tok1, tok2 = token("shop1"), token("shop2")
    # One Brevo account: each site prefixes its order and product ids.
    agent = await make_agent(
        [("shop1", tok1, {"brevo_id_prefix": "s1-"}), ("shop2", tok2, {"brevo_id_prefix": "s2-"})]
    )
    site1 = Php(wp_env, "multisite", "/")
    site2 = Php(wp_env, "multisite", "/shop2/")
    assert (await site1("configure", agent.url, tok1))["blog_id"] == 1
    assert (await site2("configure", agent.url, tok2))["blog_id"] == 2
    tag = uuid.uuid4().hex[:6]
    c1 = await site1("customer", f"one.{tag}@example.com", "Una", "First")
    c2 = await site2("customer", f"two.{tag}@example.com", "Dos", "Second")
    p2 = await site2("product", f"Only on shop2 {tag}")
    for site in (site1, site2):
        assert (await site("flush"))["depth"] == 0
    epoch1 = (await site1("state"))["epoch"]
    epoch2 = (await site2("state"))["epoch"]
    assert epoch1 != epoch2

    inbox = agent.inbox()
    by_site: dict[str, list[tuple[str, str, int]]] = {"shop1": [], "shop2": []}
    for site, event_id, topic, rid in inbox:
        by_site[site].append((event_id, topic, rid))
    # Each site's events arrived as that site, and only that site.
    assert by_site["shop1"] and all(e.startswith(epoch1 + "-") for e, _, _ in by_site["shop1"])
    assert by_site["shop2"] and all(e.startswith(epoch2 + "-") for e, _, _ in by_site["shop2"])
    assert ("customer.created", c1["customer_id"]) in {(t, r) for _, t, r in by_site["shop1"]}
    assert ("customer.created", c2["customer_id"]) in {(t, r) for _, t, r in by_site["shop2"]}
    assert ("product.created", p2["product_id"]) in {(t, r) for _, t, r in by_site["shop2"]}
    assert ("product.created", p2["product_id"]) not in {(t, r) for _, t, r in by_site["shop1"]}
    await brevo.wait_for(
        lambda: (
            contact(brevo, f"one.{tag}@example.com") is not None
            and contact(brevo, f"two.{tag}@example.com") is not None
        ),
        timeout=WAIT,
    )
