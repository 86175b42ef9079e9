"""Abandoned carts end to end: the plugin's cart snapshots → the agent's timers → the Brevo fake.

A shopper's cart is captured in WordPress (wp_scenario.php's cart commands, one request each),
shipped through the outbox and the stream, and timed by the agent with a short `abandon_after`:
abandonment sends the event and the list add exactly once, even across a kill -9 of the agent
at the due moment; an order afterwards recovers the cart; a cart that converts (or is emptied)
before its timer sends nothing at all for carts; a guest's cart is abandoned once the checkout
captured its e-mail, its contact created in Brevo first.
"""

from __future__ import annotations

import calendar
import math
import time
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Php, token
from tests.kit import UNIT, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

WAIT = 60 * UNIT
LIST = 52  # lists.abandoned_cart
# Long enough for a cart (and, when it converts, its order) to reach the agent first.
ABANDON_AFTER = max(4, math.ceil(4 * UNIT))
CARTS = {
    "lists": {"all_customers": 50, "buyers": 51, "abandoned_cart": LIST},
    "carts": {"abandon_after": f"{ABANDON_AFTER}s"},
}


def events_named(brevo: Any, name: str, email: str) -> list[dict[str, Any]]:
    return [
        e
        for e in brevo.events
        if e.get("event_name") == name and (e.get("identifiers") or {}).get("email_id") == email
    ]


def _ok(request: Any) -> bool:
    return request.status is not None and 200 <= request.status < 300


def _contact_bodies(request: Any) -> list[dict[str, Any]]:
    """The contact bodies a successful request wrote (create, update, batch update)."""
    body = request.json if isinstance(request.json, dict) else {}
    if not _ok(request) or request.method not in ("POST", "PUT"):
        return []
    if request.path == "/contacts":
        return [body]
    if request.path == "/contacts/batch":
        return [c for c in body.get("contacts") or [] if isinstance(c, dict)]
    if request.method == "PUT" and request.path.startswith("/contacts/"):
        return [{"email": request.path.removeprefix("/contacts/"), **body}]
    return []


def _names(body: dict[str, Any], email: str) -> bool:
    return str(body.get("email") or "").lower() == email


def list_changes(brevo: Any, email: str, key: str, verb: str) -> int:
    """How many successful requests put `email` in (key listIds, verb add) or took it out of
    (unlinkListIds, remove) the abandoned-cart list, through any endpoint."""
    n = 0
    for r in brevo.requests:
        n += sum(1 for b in _contact_bodies(r) if _names(b, email) and LIST in (b.get(key) or []))
        if _ok(r) and r.path == f"/contacts/lists/{LIST}/contacts/{verb}":
            n += email in [str(e).lower() for e in (r.json or {}).get("emails") or []]
    return n


def list_adds(brevo: Any, email: str) -> int:
    return list_changes(brevo, email, "listIds", "add")


def list_removals(brevo: Any, email: str) -> int:
    return list_changes(brevo, email, "unlinkListIds", "remove")


def cart_traffic(brevo: Any) -> list[str]:
    """Every request that was about carts: their events, or the abandoned-cart list."""
    out = []
    for r in brevo.requests:
        bodies = r.json if isinstance(r.json, list) else [r.json]
        text = str(r.json)
        if (
            any(
                isinstance(b, dict) and str(b.get("event_name", "")).startswith("cart_")
                for b in bodies
            )
            or f"/contacts/lists/{LIST}/" in r.path
            or any(LIST in (b.get("listIds") or []) for b in _contact_bodies(r))
            or any(LIST in (b.get("unlinkListIds") or []) for b in _contact_bodies(r))
            or ("cart_abandoned" in text or "cart_recovered" in text)
        ):
            out.append(f"{r.method} {r.path} {r.status} {text[:300]}")
    return out


def due_of(cart: dict[str, Any]) -> float:
    """When the agent's timer for this snapshot comes due: its own time + abandon_after."""
    taken = time.strptime(cart["snapshot"]["date_modified_gmt"], "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(taken) + ABANDON_AFTER


async def idle(agent: Any) -> bool:
    """Nothing left for the agent to do: every event processed, every Brevo job done."""
    backlog = (await agent.status())["sites"]["default"]["backlog"]
    return bool(backlog == {"inbox_depth": 0, "pending_jobs": 0, "dead_letters": 0})


async def setup_shop(php: Php, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A customer and a variable product (Red 20.00, Blue 22.00)."""
    customer = await php("customer", f"sam.{tag}@example.com", "Sam", "Shopper")
    product = await php("product", f"Scarf {tag}")
    return customer, product


def assert_abandonment_event(event: dict[str, Any], cart: dict[str, Any]) -> None:
    """The abandonment event carries what the reminder needs, from the cart's last snapshot."""
    snap = cart["snapshot"]
    props = event["event_properties"]
    assert props["cart_id"] == cart["cart_id"]
    assert props["currency"] == snap["currency"]
    assert props["total"] == snap["totals"]["total"]
    assert props["restore_url"] == snap["restore_url"]
    items = [
        (i["product_id"], i["variation_id"], i["name"], i["quantity"], i["price"])
        for i in props["cart"]["items"]
    ]
    expected = [
        (i["product_id"], i["variation_id"], i["name"], i["quantity"], float(i["price"]))
        for i in snap["items"]
    ]
    assert items == expected
    assert props["item_count"] == sum(i["quantity"] for i in snap["items"])


async def test_abandonment_once_across_a_kill_at_the_due_moment_then_recovery(
    wp_env: dict[str, str], brevo: Any, make_agent: Any
) -> None:
    site_token = token("carts")
    agent = await make_agent([("default", site_token)], CARTS)
    php = Php(wp_env)
    await php("configure", agent.url, site_token)
    tag = uuid.uuid4().hex[:6]
    customer, product = await setup_shop(php, tag)
    email, visitor = f"sam.{tag}@example.com", f"user:{customer['customer_id']}"
    red, blue = product["variation_ids"]

    await php("cart-add", visitor, str(product["product_id"]), str(red), "1")
    cart = await php("cart-add", visitor, str(product["product_id"]), str(blue), "2")
    assert cart["topics"] == ["cart.updated"], cart
    assert cart["snapshot"]["email"] == email
    assert cart["snapshot"]["totals"]["total"] == "64.00", cart
    cart_id, due = cart["cart_id"], due_of(cart)
    # The agent has the cart, its timer set, before the due moment.
    await until(
        lambda: agent.carts().get(cart_id, ("", 0.0)) == ("active", pytest.approx(due)),
        WAIT,
        what=f"the agent to time cart {cart_id} for {due}",
    )
    assert time.time() < due, "the cart reached the agent after its due time: raise ABANDON_AFTER"

    # kill -9 right as the cart comes due, then start again.
    await until(lambda: time.time() >= due, ABANDON_AFTER + 5, what="the due moment", every=0.002)
    await agent.kill()
    await agent.start()

    await brevo.wait_for(lambda: events_named(brevo, "cart_abandoned", email), timeout=WAIT)
    await until(lambda: idle(agent), WAIT, what="the agent to be idle", every=0.1)
    (event,) = events_named(brevo, "cart_abandoned", email)
    assert list_adds(brevo, email) == 1, cart_traffic(brevo)
    assert LIST in brevo.contacts[email]["listIds"]
    assert_abandonment_event(event, cart)
    # The restore link the reminder carries names this cart, and the plugin accepts it.
    assert (await php("restore-link", event["event_properties"]["restore_url"]))["cart_id"] == (
        cart_id
    )
    status = (await agent.status())["sites"]["default"]["carts"]
    assert status["abandoned"] == 1 and status["active"] == 0, status

    # An order from that e-mail, placed after the abandonment, recovers the cart.
    order = await php(
        "order", str(customer["customer_id"]), str(product["product_id"]), str(blue), ""
    )
    await brevo.wait_for(
        lambda: (
            events_named(brevo, "cart_recovered", email)
            and LIST not in brevo.contacts[email]["listIds"]
        ),
        timeout=WAIT,
    )
    await until(lambda: idle(agent), WAIT, what="the agent to be idle", every=0.1)
    (recovered,) = events_named(brevo, "cart_recovered", email)
    props = recovered["event_properties"]
    assert props["cart_id"] == cart_id
    assert props["order_id"] == order["order_id"]
    assert props["amount"] == f"{float(order['total']):.2f}"
    assert list_removals(brevo, email) == 1, cart_traffic(brevo)
    assert len(events_named(brevo, "cart_abandoned", email)) == 1
    assert list_adds(brevo, email) == 1
    status = (await agent.status())["sites"]["default"]["carts"]
    assert status["recovered"] == 1 and status["recovery_rate"] == 1.0, status
    assert status["recovered_revenue"] == pytest.approx(float(order["total"])), status


async def test_carts_that_convert_or_empty_before_the_timer_send_nothing(
    wp_env: dict[str, str], brevo: Any, make_agent: Any
) -> None:
    site_token = token("converts")
    agent = await make_agent([("default", site_token)], CARTS)
    php = Php(wp_env)
    await php("configure", agent.url, site_token)
    tag = uuid.uuid4().hex[:6]
    customer, product = await setup_shop(php, tag)
    email, visitor = f"sam.{tag}@example.com", f"user:{customer['customer_id']}"
    red = product["variation_ids"][0]

    # A cart that converts: the order placed from it, before its timer.
    cart = await php("cart-add", visitor, str(product["product_id"]), str(red), "1")
    placed = await php("checkout", visitor, "classic")
    assert placed["topics"] == ["cart.emptied"], placed
    assert placed["cart_id"] == cart["cart_id"]
    assert placed["snapshot"]["order_id"] == placed["order_id"]
    # Then a new cart, emptied before its timer.
    other = await php("cart-add", visitor, str(product["product_id"]), str(red), "3")
    assert other["cart_id"] != cart["cart_id"], other
    emptied = await php("cart-empty", visitor)
    assert (emptied["cart_id"], emptied["topics"]) == (other["cart_id"], ["cart.emptied"])

    await until(
        lambda: (
            agent.carts().get(cart["cart_id"], ("",))[0] == "converted"
            and agent.carts().get(other["cart_id"], ("",))[0] == "emptied"
        ),
        WAIT,
        what="the agent to see one cart converted and one emptied",
    )
    assert time.time() < due_of(cart), "converted after its due time: raise ABANDON_AFTER"
    # The order itself reached Brevo; let both carts' abandonment times pass (nothing to wait
    # on: what is proved is that nothing happens), then wait for the agent to be idle.
    await brevo.wait_for(lambda: str(placed["order_id"]) in brevo.orders, timeout=WAIT)
    last_due = max(due_of(cart), due_of(other)) + 1.0
    await until(lambda: time.time() >= last_due, ABANDON_AFTER + 10, what="the timers to pass")
    await until(lambda: idle(agent), WAIT, what="the agent to be idle", every=0.1)

    assert cart_traffic(brevo) == []
    assert events_named(brevo, "cart_abandoned", email) == []
    assert LIST not in brevo.contacts[email]["listIds"]
    status = (await agent.status())["sites"]["default"]["carts"]
    assert status["converted"] == 1 and status["emptied"] == 1, status
    assert status["abandoned"] == 0 and status["active"] == 0, status


@pytest.mark.parametrize("checkout", ["classic", "block"])
async def test_guest_cart_abandoned_once_its_email_is_known_then_recovered(
    wp_env: dict[str, str], brevo: Any, make_agent: Any, checkout: str
) -> None:
    site_token = token(f"guest-{checkout}")
    agent = await make_agent([("default", site_token)], CARTS)
    php = Php(wp_env)
    await php("configure", agent.url, site_token)
    tag = uuid.uuid4().hex[:6]
    product = await php("product", f"Mittens {tag}")
    email, visitor = f"guest.{tag}@example.com", f"guest:{tag}"
    red = product["variation_ids"][0]

    added = await php("cart-add", visitor, str(product["product_id"]), str(red), "2")
    assert added["topics"] == [], "a guest without an e-mail is not captured"
    cart = await php("cart-email", visitor, email, checkout)
    assert cart["captured"] is True, cart
    assert cart["topics"] == ["cart.updated"], cart
    assert (cart["snapshot"]["email"], cart["snapshot"]["customer_id"]) == (email, 0)
    assert email not in brevo.contacts

    await brevo.wait_for(lambda: events_named(brevo, "cart_abandoned", email), timeout=WAIT)
    await until(lambda: idle(agent), WAIT, what="the agent to be idle", every=0.1)
    (event,) = events_named(brevo, "cart_abandoned", email)
    assert_abandonment_event(event, cart)
    assert list_adds(brevo, email) == 1, cart_traffic(brevo)
    assert LIST in brevo.contacts[email]["listIds"]
    # The contact was created before the event named it.
    created = next(
        i for i, r in enumerate(brevo.requests) if any(_names(b, email) for b in _contact_bodies(r))
    )
    sent = next(
        i
        for i, r in enumerate(brevo.requests)
        if _ok(r) and r.path.startswith("/events") and email in str(r.json)
    )
    assert created < sent, cart_traffic(brevo)

    # The guest comes back and orders from the same cart: recovered.
    placed = await php("checkout", visitor, checkout)
    assert placed["topics"] == ["cart.emptied"], placed
    await brevo.wait_for(
        lambda: (
            events_named(brevo, "cart_recovered", email)
            and LIST not in brevo.contacts[email]["listIds"]
        ),
        timeout=WAIT,
    )
    await until(lambda: idle(agent), WAIT, what="the agent to be idle", every=0.1)
    (recovered,) = events_named(brevo, "cart_recovered", email)
    assert recovered["event_properties"]["order_id"] == placed["order_id"]
    assert recovered["event_properties"]["amount"] == f"{float(placed['total']):.2f}"
    assert len(events_named(brevo, "cart_abandoned", email)) == 1
    status = (await agent.status())["sites"]["default"]["carts"]
    assert status["abandoned"] == 1 and status["recovered"] == 1, status
