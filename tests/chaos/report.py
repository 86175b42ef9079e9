"""A pytest plugin (`-p tests.chaos.report`, bin/reliability loads it) that writes the outcome
of every test marked `@pytest.mark.attack("<finding>: <the attack>")` to
$WOOBREVO_RELIABILITY_DIR/attacks.json (default artifacts/reliability/), for the scorecard."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chaos.harness import RESULTS

_texts: dict[str, str] = {}
_outcomes: dict[str, str] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("attack")
        if marker is not None:
            _texts[item.nodeid] = str(marker.args[0]) if marker.args else item.name


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid not in _texts:
        return
    # A failed setup or teardown fails the attack's test too; the first failure stays.
    decisive = report.when == "call" or report.outcome != "passed"
    if decisive and _outcomes.get(report.nodeid) in (None, "passed"):
        _outcomes[report.nodeid] = report.outcome


def pytest_sessionfinish(session: Any) -> None:
    del session
    rows = [
        {"test": nodeid, "attack": _texts[nodeid], "outcome": _outcomes.get(nodeid, "not run")}
        for nodeid in _texts
        if nodeid in _outcomes
    ]
    if not rows:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "attacks.json").write_text(json.dumps(rows, indent=1) + "\n")
