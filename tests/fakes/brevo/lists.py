"""The Brevo fake's attribute and list endpoints (NOTES.md §2, Attributes and Lists)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from tests.fakes.brevo.state import Answer, BrevoState, Call, error


class ListEndpoints(BrevoState):
    """GET/POST /contacts/attributes…, /contacts/lists and a list's contacts add/remove."""

    def _list_attributes(self, call: Call) -> Answer:
        return 200, {"attributes": [dict(a) for a in self.attributes.values()]}

    def _create_attribute(self, call: Call) -> Answer:
        category = call.params["attributeCategory"]
        name = str(call.params["attributeName"]).upper()
        kind = call.body.get("type")
        if name in self.attributes:
            return error(400, "invalid_parameter", f"Attribute {name} already exists")
        # Which type goes with which category: NOTES.md §2, Attributes.
        if kind == "id" and category != "transactional":
            return error(400, "invalid_parameter", "type id is only for transactional attributes")
        if kind in ("multiple-choice", "user") and category != "normal":
            return error(400, "invalid_parameter", f"type {kind} is only for normal attributes")
        if category == "category" and not call.body.get("enumeration"):
            return error(400, "missing_parameter", "enumeration is required for category")
        attribute: dict[str, Any] = {"name": name, "category": category}
        if category != "category":
            attribute["type"] = kind or "text"
        for option in ("enumeration", "multiCategoryOptions"):
            if option in call.body:
                attribute[option] = call.body[option]
        self.attributes[name] = attribute
        return 201, None

    def _get_lists(self, call: Call) -> Answer:
        limit = call.query.get("limit", 10)
        offset = call.query.get("offset", 0)
        members: Counter[int] = Counter()
        for contact in self.contacts.values():
            members.update(contact["listIds"])
        ordered = sorted(self.lists, reverse=call.query.get("sort", "desc") == "desc")
        page = [
            {
                **self.lists[list_id],
                "totalBlacklisted": 0,
                "totalSubscribers": members[list_id],
                "uniqueSubscribers": members[list_id],
            }
            for list_id in ordered[offset : offset + limit]
        ]
        return 200, {"lists": page, "count": len(self.lists)}

    def _create_list(self, call: Call) -> Answer:
        list_id = max(self.lists, default=0) + 1
        self._add_list(list_id, call.body["name"], call.body["folderId"])
        return 201, {"id": list_id}

    def _missing_list(self, list_id: int) -> Answer | None:
        if list_id not in self.lists:
            if self.strict_lists:
                return error(404, "document_not_found", "List ID does not exist")
            self._add_list(list_id, f"List {list_id}")
        return None

    def _named(self, body: Mapping[str, Any]) -> list[tuple[Any, str | None]]:
        """Each identifier of a list add/remove body with the key of its contact, if any."""
        found = [(e, self._find(e, "email_id")) for e in body.get("emails") or ()]
        found += [(i, self._by_id.get(i)) for i in body.get("ids") or ()]
        found += [(x, self._by_ext.get(x)) for x in body.get("extIds") or ()]
        return found

    def _add_to_list(self, call: Call) -> Answer:
        list_id = call.params["listId"]
        refused = self._missing_list(list_id)
        if refused is not None:
            return refused
        # "failure": contacts that "could be already in/out list and/or doesn't exist" (spec).
        success, failure = [], []
        for identifier, key in self._named(call.body):
            contact = self.contacts[key] if key is not None else None
            if contact is None or list_id in contact["listIds"]:
                failure.append(identifier)
                continue
            contact["listIds"] = sorted([*contact["listIds"], list_id])
            success.append(identifier)
        return 201, {"contacts": {"success": success, "failure": failure}}

    def _remove_from_list(self, call: Call) -> Answer:
        list_id = call.params["listId"]
        refused = self._missing_list(list_id)
        if refused is not None:
            return refused
        if call.body.get("all"):
            # NOTES.md §2, Lists: {all: true} runs as a process.
            removed = 0
            for member in self.contacts.values():
                if list_id in member["listIds"]:
                    member["listIds"] = [i for i in member["listIds"] if i != list_id]
                    removed += 1
            return 201, {"contacts": {"processId": self._new_process(None), "total": removed}}
        success, failure = [], []
        for identifier, key in self._named(call.body):
            contact = self.contacts[key] if key is not None else None
            if contact is None or list_id not in contact["listIds"]:
                failure.append(identifier)
                continue
            contact["listIds"] = [i for i in contact["listIds"] if i != list_id]
            success.append(identifier)
        return 201, {"contacts": {"success": success, "failure": failure}}
