"""The account the Brevo fake keeps in memory, and what its endpoint handlers share.

`BrevoState` holds what tests read (contacts, attributes, lists, the catalogue, orders,
events, coupons, processes) and the indexes that find a contact by id, ext_id or SMS; the
handlers of each family of endpoints (contacts.py, lists.py, events.py, ecommerce.py) are
mixins over it. A handler gets a `Call` and returns an `Answer`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from tests.fakes.brevo.fastcheck import is_number


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: decoded path parameters, query and JSON body."""

    params: dict[str, Any]
    query: dict[str, Any]
    body: Any
    size: int


Answer = tuple[int, Any]  # status and JSON body (None: no body)
Handler = Callable[[Call], Answer]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Attributes of a new account: the name fields and the identifiers that live in
# attributes (NOTES.md §2, Contacts: SMS, WHATSAPP, LANDLINE_NUMBER, EXT_ID).
_DEFAULT_ATTRIBUTES: dict[str, str] = {
    "FIRSTNAME": "text",
    "LASTNAME": "text",
    "SMS": "text",
    "WHATSAPP": "text",
    "LANDLINE_NUMBER": "text",
    "EXT_ID": "text",
}
_PHONE_ATTRIBUTE = {
    "phone_id": "SMS",
    "whatsapp_id": "WHATSAPP",
    "landline_number_id": "LANDLINE_NUMBER",
}


def _is_brevo_date(value: Any) -> bool:
    """A value Brevo's `date` attribute type takes: a real day written YYYY-MM-DD."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def error(status: int, code: str, message: str, **extra: Any) -> Answer:
    """A Brevo error body (NOTES.md §3): {"code", "message"} and, for contacts, "metadata"."""
    return status, {"code": code, "message": message, **extra}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BrevoState:
    """Brevo's side of an account: plain dicts, read them in tests (see BrevoFake)."""

    def __init__(
        self,
        *,
        strict_attributes: bool,
        attributes: Mapping[str, str] | None,
        lists: Iterable[int] | None,
    ) -> None:
        self.strict_attributes = strict_attributes
        self.contacts: dict[str, dict[str, Any]] = {}
        self.contact_flags: dict[int, dict[str, Any]] = {}
        self.attributes: dict[str, dict[str, Any]] = {}
        for name, kind in {**_DEFAULT_ATTRIBUTES, **(attributes or {})}.items():
            self.attributes[name] = {"name": name, "category": "normal", "type": kind}
        self.strict_lists = lists is not None
        self.lists: dict[int, dict[str, Any]] = {}
        for list_id in lists or ():
            self._add_list(list_id, f"List {list_id}")
        self.products: dict[str, dict[str, Any]] = {}
        self.categories: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.coupon_collections: dict[str, dict[str, Any]] = {}
        self.coupons: dict[str, set[str]] = {}
        self.processes: dict[int, dict[str, Any]] = {}
        self.doi_requests: list[dict[str, Any]] = []
        self.ecommerce_activated = False
        self._by_id: dict[int, str] = {}
        self._by_ext: dict[str, str] = {}
        self._by_sms: dict[str, str] = {}
        self._internal_ids: dict[str, int] = {}  # product and category ids → Brevo's numbers
        self._ids = itertools.count(1)

    def _key(self, contact: Mapping[str, Any]) -> str:
        email = contact["email"]
        return email.lower() if email else f"#{contact['id']}"

    def _put_contact(self, contact: dict[str, Any]) -> str:
        key = self._key(contact)
        self.contacts[key] = contact
        self._by_id[contact["id"]] = key
        if contact["ext_id"]:
            self._by_ext[contact["ext_id"]] = key
        sms = contact["attributes"].get("SMS")
        if sms:
            self._by_sms[str(sms)] = key
        return key

    def _drop_contact(self, key: str) -> dict[str, Any]:
        contact = self.contacts.pop(key)
        self._by_id.pop(contact["id"], None)
        if contact["ext_id"]:
            self._by_ext.pop(contact["ext_id"], None)
        self._by_sms.pop(str(contact["attributes"].get("SMS")), None)
        return contact

    def _find(self, identifier: Any, kind: str | None) -> str | None:
        """The key of the contact an identifier names (NOTES.md §2: identifierType)."""
        text = str(identifier)
        if kind is None:
            # Without identifierType Brevo guesses: an email, a contact id, else an ext_id.
            if "@" in text:
                kind = "email_id"
            elif text.isdigit():
                kind = "contact_id"
            elif text.startswith("+"):
                kind = "phone_id"
            else:
                kind = "ext_id"
        if kind == "email_id":
            return text.lower() if text.lower() in self.contacts else None
        if kind == "contact_id":
            return self._by_id.get(int(text)) if text.isdigit() else None
        if kind == "ext_id":
            return self._by_ext.get(text)
        if kind == "phone_id":
            return self._by_sms.get(text)
        attribute = _PHONE_ATTRIBUTE[kind]
        for key, contact in self.contacts.items():
            if str(contact["attributes"].get(attribute)) == text:
                return key
        return None

    def _attribute_problem(self, attributes: Mapping[str, Any]) -> str | None:
        if not self.strict_attributes:
            return None
        for name in attributes:
            if name not in self.attributes and name != "EMAIL":
                return f"Attribute {name} does not exist"
        return None

    def _date_problem(self, attributes: Mapping[str, Any]) -> str | None:
        """A date attribute given anything but YYYY-MM-DD: Brevo answers 400 invalid_parameter,
        "invalid date format" (seen in the wild, studiomitte/brevo#10, 2023), although its docs
        say a value of the wrong type is ignored (NOTES.md §2). Empty values clear the attribute."""
        for name, value in attributes.items():
            kind = self.attributes.get(name, {}).get("type")
            if kind == "date" and value not in ("", None) and not _is_brevo_date(value):
                return f"Invalid date format for attribute {name}"
        return None

    def _set_attributes(
        self, contact: dict[str, Any], attributes: Mapping[str, Any], *, keep_empty: bool = True
    ) -> None:
        """Store attribute values; Brevo drops a value of the wrong type without a word
        (NOTES.md §2, Contacts and Attributes)."""
        for name, value in attributes.items():
            if name == "EMAIL" or (not keep_empty and value in ("", None)):
                continue
            kind = self.attributes.get(name, {}).get("type")
            if (
                (kind == "float" and not is_number(value))
                or (kind == "boolean" and not isinstance(value, bool))
                or (kind == "date" and not _is_brevo_date(value))
            ):
                continue
            contact["attributes"][name] = value

    def _add_list(self, list_id: int, name: str, folder_id: int = 1) -> None:
        self.lists[list_id] = {"id": list_id, "name": name, "folderId": folder_id}

    def _list_problem(self, list_ids: Iterable[int]) -> str | None:
        """Unknown lists: refused when the account's lists are fixed, else made on the fly."""
        for list_id in list_ids:
            if list_id not in self.lists:
                if self.strict_lists:
                    return f"List ID {list_id} does not exist"
                self._add_list(list_id, f"List {list_id}")
        return None

    def _touch(self, contact: Mapping[str, Any], **flags: Any) -> None:
        meta = self.contact_flags.setdefault(
            contact["id"],
            {"emailBlacklisted": False, "smsBlacklisted": False, "createdAt": now_iso()},
        )
        meta.update({k: v for k, v in flags.items() if v is not None}, modifiedAt=now_iso())

    def _new_process(self, info: dict[str, Any] | None) -> int:
        process_id = next(self._ids)
        now = now_iso()
        self.processes[process_id] = {
            "id": process_id,
            "name": "IMPORTUSER",
            "status": "completed",  # the fake applies at once; Brevo queues (NOTES.md §2)
            "info": info,
            "created_at": now,
            "completed_at": now,
        }
        return process_id
