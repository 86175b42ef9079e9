"""Fixtures of the chaos suite: the test WordPress (tests/e2e/conftest.py's `wp_env`), a Brevo
fake per scenario, the run's seed (printed; WOOBREVO_CHAOS_SEED replays it) and a folder per
scenario. The size is CI's unless WOOBREVO_CHAOS=long (`bin/reliability --long`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.core.checks import wanted_attributes
from tests.chaos.harness import seed, size
from tests.e2e.conftest import wp_env

__all__ = ["wp_env"]

_SEED = seed()


def pytest_report_header() -> list[str]:
    return [f"chaos: seed {_SEED} (WOOBREVO_CHAOS_SEED={_SEED} replays it), size {size().label}"]


@pytest.fixture
def chaos_seed() -> int:
    print(f"chaos seed {_SEED}")
    return _SEED


@pytest.fixture
async def brevo() -> AsyncIterator[Any]:
    from tests.fakes.brevo import BrevoFake

    # The account as `woobrevo-agent doctor --fix` leaves it: the mapped attributes exist
    # (an import drops attributes the account lacks, as Brevo's does).
    mapping = {"billing.city": "CITY", "orders_count": "ORDER_COUNT"}  # tests/e2e/conftest.py
    async with BrevoFake(attributes=wanted_attributes(mapping)) as fake:
        yield fake
    fake.assert_no_spec_violations()
