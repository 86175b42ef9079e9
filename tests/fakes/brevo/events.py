"""The Brevo fake's event endpoints (NOTES.md §2, Events): POST /events and /events/batch."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tests.fakes.brevo.state import Answer, BrevoState, Call, error

_EVENT_PROPERTIES_MAX = 50 * 1024  # NOTES.md §2, Events: event_properties ≤ 50 KB
_EVENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")


class EventEndpoints(BrevoState):
    """POST /events, POST /events/batch; contact_properties update the contact."""

    def _event_problem(self, event: Mapping[str, Any]) -> str | None:
        # NOTES.md §2, Events: name ≤255 of [A-Za-z0-9_-], properties ≤50 KB.
        if not _EVENT_NAME.fullmatch(event["event_name"]):
            return "event_name must be 1-255 characters among A-Z, a-z, 0-9, - and _"
        properties = event.get("event_properties")
        if properties is not None and len(json.dumps(properties)) > _EVENT_PROPERTIES_MAX:
            return "event_properties must not exceed 50 KB"
        return None

    def _record_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        # contact_properties update the contact's attributes (POST /events description).
        properties = event.get("contact_properties")
        if not properties:
            return
        identifiers = event["identifiers"]
        for kind in ("contact_id", "email_id", "ext_id", "phone_id"):
            if kind in identifiers:
                key = self._find(identifiers[kind], kind)
                if key is not None:
                    self._set_attributes(self.contacts[key], properties)
                    self._touch(self.contacts[key])
                return

    def _create_event(self, call: Call) -> Answer:
        problem = self._event_problem(call.body)
        if problem is not None:
            return error(400, "invalid_parameter", problem)
        self._record_event(call.body)
        return 204, None

    def _create_events(self, call: Call) -> Answer:
        events = call.body["events"]
        # Brevo answers 207 with per-event results when some fail (NOTES.md §2); their shape is
        # not documented, so the fake refuses the whole batch instead.
        for index, event in enumerate(events):
            problem = self._event_problem(event)
            if problem is not None:
                return error(400, "invalid_parameter", f"events[{index}]: {problem}")
        for event in events:
            self._record_event(event)
        return 202, {"message": "Events accepted for processing", "count": len(events)}
