"""Personal data end to end: an erasure made with WordPress's own tools reaches Brevo and leaves
no trace of the e-mail in the agent's store (on SQLite its files, WAL included, read byte for
byte after the agent stopped; on PostgreSQL every row of every table); an order paid through the WooCommerce double's card gateway leaves no payment
field and no card number in any request Brevo received nor in the agent's store; the exporter
lists what the plugin and the agent keep."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Agent, Php, token
from tests.kit import UNIT, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

WAIT = 60 * UNIT

# What the card gateway leaves on the order (tests/php/wc-double/wc-double-card.php), by name.
PAYMENT_NAMES = (
    "payment_method_title",
    "transaction_id",
    "payment_url",
    "customer_ip_address",
    "customer_user_agent",
    "_stripe_source_id",
    "_stripe_customer_id",
    "_wcd_card_number",
    "Credit card (WCD)",
    "203.0.113.42",
    "WCD-Card-Test",
    "ch_wcd_",
)

CARD_LIKE = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def card_numbers(text: str) -> list[str]:
    """Card-like numbers in a text: 13-19 digits (single spaces or dashes between), Luhn-valid."""
    found = []
    for m in CARD_LIKE.finditer(text):
        digits = re.sub(r"[^0-9]", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn(digits):
            found.append(m.group(0))
    return found


def store_files(agent: Agent) -> dict[str, bytes]:
    """What the agent keeps, as bytes (conftest.py `Agent.stored`): every file of its state
    folder (on SQLite the database, its -wal and -shm) and, on PostgreSQL, every table's rows."""
    files = agent.stored()
    if agent.store is None:
        assert "woobrevo.sqlite3" in files, sorted(files)
    else:
        assert not any(name.startswith("woobrevo.sqlite3") for name in files), sorted(files)
        assert {"table inbox", "table jobs", "table objects"} <= set(files), sorted(files)
    return files


def brevo_traffic(brevo: Any) -> str:
    """Every request the Brevo fake received: method, path, query and body, as one text."""
    return "\n".join(
        f"{r.method} {r.path} {json.dumps(r.query)} {json.dumps(r.json)}" for r in brevo.requests
    )


async def a_customer_with_an_order(php: Php, email: str, tag: str) -> dict[str, Any]:
    customer = await php("customer", email, "Erin", "Rase")
    product = await php("product", f"Mug {tag}")
    order = await php(
        "order",
        str(customer["customer_id"]),
        str(product["product_id"]),
        str(product["variation_ids"][0]),
        "",
    )
    return {**customer, **product, **order}


async def test_erasure_in_wordpress_reaches_brevo_and_leaves_no_trace_in_the_agent(
    wp_env: dict[str, str], brevo: Any, make_agent: Any
) -> None:
    site_token = token("privacy-erase")
    agent = await make_agent([("default", site_token)])
    php = Php(wp_env)
    await php("configure", agent.url, site_token)
    tag = uuid.uuid4().hex[:6]
    email = f"erin.{tag}@example.com"
    made = await a_customer_with_an_order(php, email, tag)
    await php("status", str(made["order_id"]), "processing")
    await php(
        "cart-add",
        f"user:{made['customer_id']}",
        str(made["product_id"]),
        str(made["variation_ids"][1]),
        "1",
    )
    flushed = await php("flush")
    assert flushed["depth"] == 0 and flushed["rejected_list"] == [], flushed
    await brevo.wait_for(lambda: email in brevo.contacts, timeout=WAIT)
    assert any(email in json.dumps(r.json) for r in brevo.requests)
    needle = email.lower().encode()
    assert any(needle in data.lower() for data in store_files(agent).values()), (
        "before the erasure the agent's store holds the e-mail"
    )

    # Tools → Erase Personal Data, for a request the admin confirmed.
    erased = await php("erase", email.upper())
    assert erased["status"] == "request-completed", erased
    (answer,) = erased["responses"]["woobrevo"]
    assert answer["done"] and answer["items_removed"], answer
    assert [t["topic"] for t in erased["topics"]] == ["privacy.erase"], erased["topics"]
    flushed = await php("flush")
    assert flushed["depth"] == 0 and flushed["rejected_list"] == [], flushed

    # Brevo: the contact is deleted.
    await brevo.wait_for(lambda: email not in brevo.contacts, timeout=WAIT)
    assert any(
        r.method == "DELETE" and r.path.lower() == f"/contacts/{email}" for r in brevo.requests
    ), [f"{r.method} {r.path}" for r in brevo.requests if r.method == "DELETE"]

    # The agent says so without the e-mail, then forgets it everywhere.
    erasure = erased["topics"][0]["resource_id"]

    def logged() -> bool:
        return f"erasure {erasure} for site default done" in agent.log.read_text()

    await until(logged, WAIT, what="the agent to log the erasure")
    # Running (after its checkpoint), with the -wal and -shm files beside the database; then stopped.
    running = store_files(agent)
    if agent.store is None:
        assert {"woobrevo.sqlite3-wal", "woobrevo.sqlite3-shm"} <= set(running), sorted(running)
    await agent.stop()
    for name, data in [*running.items(), *store_files(agent).items()]:
        assert needle not in data.lower(), f"the e-mail is still in {name}"
    assert email.lower() not in agent.log.read_text().lower(), "the agent logged the e-mail"
    # Restarted, the agent has nothing to send again about this person.
    await agent.start()
    await php("flush")
    assert email not in brevo.contacts


async def test_card_payments_leave_no_payment_detail_in_brevo_or_the_agent(
    wp_env: dict[str, str], brevo: Any, make_agent: Any
) -> None:
    site_token = token("privacy-card")
    agent = await make_agent([("default", site_token)])
    php = Php(wp_env)
    await php("configure", agent.url, site_token)
    tag = uuid.uuid4().hex[:6]
    email = f"card.payer.{tag}@example.com"
    made = await a_customer_with_an_order(php, email, tag)
    paid = await php("pay", str(made["order_id"]))
    assert paid["result"] == "success" and paid["status"] == "processing", paid
    flushed = await php("flush")
    assert flushed["depth"] == 0 and flushed["rejected_list"] == [], flushed
    order_id = str(made["order_id"])
    await brevo.wait_for(
        lambda: order_id in brevo.orders and brevo.orders[order_id].get("status") == "processing",
        timeout=WAIT,
    )

    traffic = brevo_traffic(brevo)
    assert order_id in traffic
    for name in (*PAYMENT_NAMES, paid["transaction_id"]):
        assert name not in traffic, f"Brevo received {name!r}"
    assert card_numbers(traffic) == []

    running = store_files(agent)  # With its -wal and -shm files; then stopped (checkpointed).
    await agent.stop()
    for file, data in [*running.items(), *store_files(agent).items()]:
        text = data.decode("latin-1")
        for name in (*PAYMENT_NAMES, paid["transaction_id"]):
            assert name not in text, f"{name!r} is in the agent's {file}"
        assert card_numbers(text) == [], f"a card-like number is in the agent's {file}"
    await agent.start()


async def test_export_lists_what_the_plugin_and_the_agent_keep(
    wp_env: dict[str, str], brevo: Any, make_agent: Any
) -> None:
    site_token = token("privacy-export")
    agent = await make_agent([("default", site_token)])
    php = Php(wp_env)
    await php("configure", agent.url, site_token)
    tag = uuid.uuid4().hex[:6]
    email = f"export.me.{tag}@example.com"
    await a_customer_with_an_order(php, email, tag)
    flushed = await php("flush")
    assert flushed["depth"] == 0, flushed

    exported = await php("export", email)
    groups = {item["group_id"] for item in exported["data"]}
    assert "woobrevo-agent" not in groups, exported["data"]
    assert any(g.startswith("woobrevo-agent-") for g in groups), groups
    assert "customer." in json.dumps(exported["data"]), "the agent lists the e-mail's events"

    await agent.stop()
    exported = await php("export", email)
    unavailable = [i for i in exported["data"] if i["group_id"] == "woobrevo-agent"]
    assert len(unavailable) == 1, exported["data"]
    assert "could not be fetched" in unavailable[0]["data"][0]["value"]


def test_card_like_numbers_are_found() -> None:
    assert card_numbers("paid with 4242 4242 4242 4242 today") == ["4242 4242 4242 4242"]
    assert card_numbers("4242-4242-4242-4241 is not Luhn-valid") == []
    assert card_numbers("+33 6 12 34 56 78") == []
