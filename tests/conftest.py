"""Shared test helpers: where the reference fixtures are, the time unit, config files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"  # data copied into the repo (tests/fixtures/README.md)
REF = FIXTURES / "woocommerce"
DOCS = REF / "docs-examples"
REAL = REF / "real-10.0.2"

# One time unit for every timeout and wait in the tests; CI machines are slow and noisy, so
# it can be stretched with WOOBREVO_TIME_UNIT (seconds).
UNIT = float(os.environ.get("WOOBREVO_TIME_UNIT", "1.0"))


def ref(name: str) -> dict[str, Any]:
    """A reference REST object by file name (docs-examples/ or real-10.0.2/rest/)."""
    for base in (DOCS, REAL / "rest"):
        path = base / name
        if path.exists():
            data: dict[str, Any] = json.loads(path.read_text())
            return data
    raise FileNotFoundError(name)


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write a YAML config and return its path."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def base_config(tmp_path: Path) -> dict[str, Any]:
    """A full single-site config as plain data (tests adjust it, then write it)."""
    return {
        "agent": {
            "listen": {"stream": "127.0.0.1:0", "http": "127.0.0.1:0"},
            "state_dir": str(tmp_path / "state"),
            "historical_after": "30d",
        },
        "brevo": {"dry_run": True, "plan": "general"},
        "connectors": {
            "woocommerce": {
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
        },
    }
