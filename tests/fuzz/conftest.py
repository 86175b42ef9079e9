"""The fuzz run's mode and seed (at the top and at the end of pytest's report), and the agent
every door target fuzzes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.agentproc import FuzzAgent
from tests.fuzz.budget import header


def pytest_report_header() -> str:
    return header()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Again at the end, where `-q` (bin/test) shows it too: the seed to replay a long run."""
    terminalreporter.write_line(header())


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzAgent]:
    """`woobrevo-agent run` in a subprocess, shared by one file's examples (it must keep
    serving after all of them); stopped, and its log checked, at the end."""
    folder: Path = tmp_path_factory.mktemp("fuzz-agent")
    with FuzzAgent(folder) as running:
        yield running
