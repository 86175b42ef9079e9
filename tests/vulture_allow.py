"""Names the unused-code check (vulture, in bin/test) cannot see used; each says who reads it.

Not imported by anything: vulture reads this file beside the code (pyproject.toml, [tool.vulture]).
"""

from agent.core.events import Action
from agent.core.protocol import CloseCode
from agent.status import ConfigStatus, PollingStatus, WebhookSeen

# Looked up by value: the action of a topic (`_ACTION_OF`), never named in code.
_ = (Action.CREATED, Action.UPDATED, Action.RESTORED)
# The close code the websockets library sends for a message over max_message_bytes; documented
# in docs/protocol.md beside the codes we send ourselves.
_ = CloseCode.MESSAGE_TOO_BIG
# Runtime records read whole by /status (`dataclasses.asdict`), field by field by nobody.
_ = (PollingStatus.last_poll, PollingStatus.last_error, WebhookSeen.last_topic)
_ = (ConfigStatus.loaded_at, ConfigStatus.last_reload)
