"""The opt-in end to end: the plugin's box on each form → the consent record in the payloads →
the agent's consent mode → list membership and events in the Brevo fake.

For each consent mode (`implied`, `required`) and each form (classic checkout, block checkout,
registration, My Account), a person ticks the box or does not; then the marketing lists
(50 all customers, 51 buyers) and the `order_placed` events in the Brevo fake must be what the
mode says: in `implied` everyone joins as before, except a My Account withdrawal; in `required`
only those who ticked. A subscriber who checks out later without ticking stays subscribed
(logged in: the box is not even shown; as a guest: shown and left unticked). The block
checkout's box needs WooCommerce's checkout fields API (8.9+): where it is missing the checkout
shows none, and the person counts as having made no choice.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import Php, token
from tests.kit import UNIT, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

WAIT = 60 * UNIT
ALL, BUYERS = 50, 51
LABEL = "Send me the shop's letter"


@dataclass
class Case:
    """One person's path through a form, and what the Brevo fake must show for them."""

    name: str
    email: str
    orders: int  # orders placed (a buyer joins the buyers list too when they join)
    record: bool | None  # the agent's consent record: subscribed, withdrawn, or no choice


def lists_of(brevo: Any, email: str) -> set[int]:
    contact = brevo.contacts.get(email)
    assert contact is not None, f"no contact {email} in the Brevo fake: {sorted(brevo.contacts)}"
    return set(contact.get("listIds") or [])


def orders_placed(brevo: Any, email: str) -> int:
    return sum(
        1
        for e in brevo.events
        if e.get("event_name") == "order_placed"
        and (e.get("identifiers") or {}).get("email_id") == email
    )


async def idle(agent: Any) -> bool:
    backlog = (await agent.status())["sites"]["default"]["backlog"]
    return bool(backlog == {"inbox_depth": 0, "pending_jobs": 0, "dead_letters": 0})


class Shop:
    """The store actions of one test, with a product to buy."""

    def __init__(self, php: Php, tag: str, product: dict[str, Any]) -> None:
        self.php, self.tag, self.product = php, tag, product

    def email(self, name: str) -> str:
        return f"{name}.{self.tag}@example.com"

    async def customer(self, name: str) -> int:
        made = await self.php("customer", self.email(name), "Sam", "Shopper")
        return int(made["customer_id"])

    async def checkout(self, visitor: str, kind: str, tick: bool) -> dict[str, Any]:
        red = str(self.product["variation_ids"][0])
        await self.php("cart-add", visitor, str(self.product["product_id"]), red, "1")
        return await self.php("checkout", visitor, kind, *(["--subscribe"] if tick else []))

    async def user_checkout(self, name: str, kind: str, tick: bool) -> dict[str, Any]:
        return await self.checkout(f"user:{await self.customer(name)}", kind, tick)

    async def guest_checkout(self, name: str, kind: str, tick: bool) -> dict[str, Any]:
        visitor = f"guest:{name}-{self.tag}"
        red = str(self.product["variation_ids"][0])
        await self.php("cart-add", visitor, str(self.product["product_id"]), red, "1")
        await self.php("cart-email", visitor, self.email(name), "classic")
        return await self.php("checkout", visitor, kind, *(["--subscribe"] if tick else []))


def assert_record(done: dict[str, Any], subscribed: bool, source: str) -> None:
    record = done["record"]
    assert record is not None, done
    assert record["subscribed"] is subscribed and record["source"] == source, record
    assert record["text"] == LABEL and record["time"].endswith("Z"), record


async def checkout_cases(shop: Shop, block_api: bool) -> list[Case]:
    """Classic and block checkouts by logged-in customers, ticked and not; a guest who ticks."""
    cases = []
    for kind, source in (("classic", "checkout_classic"), ("block", "checkout_block")):
        for tick in (True, False):
            name = f"{kind}-{'yes' if tick else 'no'}"
            done = await shop.user_checkout(name, kind, tick)
            shown = kind == "classic" or block_api
            assert done["shown"] is shown, done
            if shown:
                assert_record(done, tick, source)
            else:
                assert done["record"] is None, done
            cases.append(Case(name, shop.email(name), 1, True if tick and shown else None))
    done = await shop.guest_checkout("guest-yes", "classic", True)
    assert_record(done, True, "checkout_classic")
    cases.append(Case("guest-yes", shop.email("guest-yes"), 1, True))
    return cases


async def account_cases(shop: Shop) -> list[Case]:
    """Registration with and without the box; My Account subscribe, and subscribe then withdraw."""
    cases = []
    for tick in (True, False):
        name = f"register-{'yes' if tick else 'no'}"
        done = await shop.php("register", shop.email(name), *(["--subscribe"] if tick else []))
        assert done["shown"] is True, done
        assert done["record"]["subscribed"] is tick and done["record"]["source"] == "registration"
        cases.append(Case(name, shop.email(name), 0, True if tick else None))
    joined = await shop.customer("account-on")
    done = await shop.php("account-optin", str(joined), "on")
    assert done["shown"] is True and done["record"]["subscribed"] is True, done
    cases.append(Case("account-on", shop.email("account-on"), 0, True))
    left = await shop.customer("account-off")
    await shop.php("account-optin", str(left), "on")
    await asyncio.sleep(1.1)  # a later choice: records are to the second, the newer one wins
    done = await shop.php("account-optin", str(left), "off")
    assert done["record"]["subscribed"] is False and done["record"]["source"] == "my_account"
    cases.append(Case("account-off", shop.email("account-off"), 0, False))
    return cases


async def stays_subscribed_cases(shop: Shop) -> list[Case]:
    """Subscribers who check out again without ticking: logged in (no box shown), and a guest
    (box shown, left unticked)."""
    registered = await shop.php("register", shop.email("loyal"), "--subscribe")
    await asyncio.sleep(1.1)
    done = await shop.checkout(f"user:{registered['customer_id']}", "classic", False)
    assert done["shown"] is False and done["record"] is None, done
    await shop.guest_checkout("loyal-guest", "classic", True)
    await asyncio.sleep(1.1)
    done = await shop.guest_checkout("loyal-guest", "classic", False)
    assert done["shown"] is True, done
    assert_record(done, False, "checkout_classic")
    return [
        Case("loyal", shop.email("loyal"), 1, True),
        Case("loyal-guest", shop.email("loyal-guest"), 2, True),
    ]


def joins(case: Case, mode: str) -> bool:
    """Marketing lists and events: with a subscription; with no choice known only when implied."""
    return case.record is True or (case.record is None and mode == "implied")


def expected_lists(case: Case, mode: str) -> set[int]:
    if not joins(case, mode):
        return set()
    return {ALL, BUYERS} if case.orders else {ALL}


def expected_events(case: Case, mode: str) -> int:
    return case.orders if joins(case, mode) else 0


@pytest.mark.parametrize("mode", ["implied", "required"])
async def test_each_form_with_and_without_the_box(
    wp_env: dict[str, str], brevo: Any, make_agent: Any, mode: str
) -> None:
    site_token = token(f"consent-{mode}")
    agent = await make_agent([("default", site_token)], {"consent": {"mode": mode}})
    php = Php(wp_env)
    await php("configure", agent.url, site_token)
    settings = await php("optin-settings", "on", LABEL)
    assert settings["enabled"] == "1" and settings["label"] == LABEL, settings
    tag = uuid.uuid4().hex[:6]
    shop = Shop(php, tag, await php("product", f"Mug {tag}"))

    cases = await checkout_cases(shop, bool(settings["block"]))
    cases += await account_cases(shop)
    cases += await stays_subscribed_cases(shop)
    flushed = await php("flush")
    assert flushed["depth"] == 0 and flushed["rejected_list"] == [], flushed

    await until(lambda: idle(agent), WAIT, what="the agent to be idle", every=0.1)
    for case in cases:
        await brevo.wait_for(lambda c=case: c.email in brevo.contacts, timeout=WAIT)
    await until(lambda: idle(agent), WAIT, what="the agent to be idle", every=0.1)
    wrong = [
        (c.name, sorted(lists_of(brevo, c.email) & {ALL, BUYERS}), sorted(expected_lists(c, mode)))
        for c in cases
        if lists_of(brevo, c.email) & {ALL, BUYERS} != expected_lists(c, mode)
    ]
    assert wrong == [], f"{mode}: (case, lists, expected) {wrong}"
    events = [
        (c.name, orders_placed(brevo, c.email), expected_events(c, mode))
        for c in cases
        if orders_placed(brevo, c.email) != expected_events(c, mode)
    ]
    assert events == [], f"{mode}: (case, order_placed events, expected) {events}"
    # The welcome told the plugin the agent's mode (the status panel shows it).
    assert (await php("optin-settings", "on", LABEL))["mode"] == mode
