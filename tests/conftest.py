"""Where the reference fixtures are, and the pytest fixtures every test folder shares. The
config builder, the wait and the time unit are in tests/kit.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import pgserver
from tests.kit import config_data

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"  # data copied into the repo (tests/fixtures/README.md)
REF = FIXTURES / "woocommerce"
DOCS = REF / "docs-examples"
REAL = REF / "real-10.0.2"


def ref(name: str) -> dict[str, Any]:
    """A reference REST object by file name (docs-examples/ or real-10.0.2/rest/)."""
    for base in (DOCS, REAL / "rest"):
        path = base / name
        if path.exists():
            data: dict[str, Any] = json.loads(path.read_text())
            return data
    raise FileNotFoundError(name)


SHOP: dict[str, Any] = {
    "store_url": "https://shop.example",
    "lists": {"all_customers": 50, "buyers": 51},
    "customer_mapping": {
        "email": "email",
        "first_name": "FIRSTNAME",
        "last_name": "LASTNAME",
        "billing.phone": "SMS",
        "orders_count": "ORDER_COUNT",
        "total_spent": "TOTAL_SPENT",
        "first_order_date": "FIRST_ORDER_DATE",
        "last_order_date": "LAST_ORDER_DATE",
        "meta_data.loyalty_points": "LOYALTY_POINTS",
    },
    "webhooks": [
        {"topic": "order.created", "event": "order_placed"},
        {"topic": "customer.created", "event": "customer_registered"},
    ],
}
"""The woocommerce block of `base_config`: one shop, its lists, a mapping of every kind."""


@pytest.fixture
def base_config(tmp_path: Path) -> dict[str, Any]:
    """A full single-site config as plain data (tests adjust it, then write it)."""
    return config_data(
        tmp_path, agent={"historical_after": "30d"}, brevo={"plan": "general"}, woocommerce=SHOP
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The session's PostgreSQL (its admin DSN, tests/pgserver.py), one for every test folder;
    fails every PostgreSQL case when none starts."""
    try:
        with pgserver.server() as dsn:
            yield dsn
    except pgserver.NoServer as exc:
        pytest.fail(f"PostgreSQL for the tests: {exc}", pytrace=False)


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A fresh, empty database of the tests' server."""
    try:
        database = pgserver.fresh_database(pg_server)
        dsn = database.__enter__()
    except pgserver.NoServer as exc:
        pytest.fail(f"PostgreSQL for the tests: {exc}", pytrace=False)
    try:
        yield dsn
    finally:
        database.__exit__(None, None, None)
