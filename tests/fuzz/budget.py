"""How much each fuzz target runs, and with which seed.

* CI (the default): `max_examples` as each target asks (~100-300), derandomized (the same
  inputs on every run, so a red CI is reproducible), no example database.
* `WOOBREVO_FUZZ=long`: `LONG_FACTOR` times as many, from a seed that is printed in pytest's
  header (tests/fuzz/conftest.py); `WOOBREVO_FUZZ_SEED=N` runs with that seed again.

A failing example is printed by hypothesis (`print_blob`): the shrunk input is the reproducer.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, seed, settings

from tests.kit import UNIT

LONG = os.environ.get("WOOBREVO_FUZZ", "").lower() == "long"
LONG_FACTOR = 20
# pytest-timeout's limit for one fuzz test (pyproject's 120 s is for the CI budget).
TIMEOUT = 4 * 3600 if LONG else 120
SEED = int(os.environ.get("WOOBREVO_FUZZ_SEED") or random.SystemRandom().randrange(2**32))

F = TypeVar("F", bound=Callable[..., Any])


def header() -> str:
    """The line pytest prints at the top of the run."""
    if LONG:
        return f"fuzz: long run (x{LONG_FACTOR}), seed {SEED} (replay: WOOBREVO_FUZZ_SEED={SEED})"
    return "fuzz: CI budget, derandomized (WOOBREVO_FUZZ=long for thousands of inputs)"


def fuzz(examples: int, deadline: float) -> Callable[[F], F]:
    """The hypothesis settings of one target: `examples` inputs in CI, `deadline` seconds (in
    time units) per input."""

    def apply(test: F) -> F:
        configured = settings(
            max_examples=examples * LONG_FACTOR if LONG else examples,
            deadline=deadline * UNIT * 1000,
            derandomize=not LONG,
            database=None,
            print_blob=True,
            # The agent outlives the examples (a module fixture): that is the point.
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
        )(test)
        return configured if not LONG else seed(SEED)(configured)

    return apply
