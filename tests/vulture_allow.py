"""Names the unused-code check (vulture, in bin/test) cannot see used; each says who reads it.

Not imported by anything: vulture reads this file beside the code (pyproject.toml, [tool.vulture]).
"""

from aiohttp.abc import AbstractStreamWriter

from agent.core.events import Action
from agent.core.protocol import CloseCode
from agent.status import ConfigStatus, PollingStatus, WebhookSeen
from tests.chaos import conftest as chaos_conftest
from tests.chaos import report as chaos_report
from tests.fuzz import conftest as fuzz_conftest

# Looked up by value: the action of a topic (`_ACTION_OF`), never named in code.
_ = (Action.CREATED, Action.UPDATED, Action.RESTORED)
# The close code the websockets library sends for a message over max_message_bytes; documented
# in docs/protocol.md beside the codes we send ourselves.
_ = CloseCode.MESSAGE_TOO_BIG
# Runtime records read whole by /status (`dataclasses.asdict`), field by field by nobody.
_ = (PollingStatus.last_poll, PollingStatus.last_error, WebhookSeen.last_topic)
_ = (ConfigStatus.loaded_at, ConfigStatus.last_reload)
# pytest hooks, called by pytest: the chaos suite's header, and the plugin that records the
# outcome of every attack test for the scorecard (bin/reliability loads it with -p).
_ = chaos_conftest.pytest_report_header
_ = (
    chaos_report.pytest_collection_modifyitems,
    chaos_report.pytest_runtest_logreport,
    chaos_report.pytest_sessionfinish,
)
# The fuzz run's mode and seed, printed again at the end of the report (tests/fuzz/budget.py).
_ = fuzz_conftest.pytest_terminal_summary
# aiohttp reads it: the size written before the answer's own (agent/http.py `_expect`).
_ = AbstractStreamWriter.output_size
