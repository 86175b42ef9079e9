"""The Brevo fake's contact endpoints (NOTES.md §2, Contacts and Import): create (an upsert
with updateEnabled), get, update, delete, batch update, and import with its process."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from tests.fakes.brevo.state import Answer, BrevoState, Call, error

_IMPORT_MAX = 10 * 1024 * 1024  # NOTES.md §2, Import: fileBody/jsonBody max 10 MB


def _new_contact(contact_id: int, email: str | None) -> dict[str, Any]:
    return {"id": contact_id, "email": email, "attributes": {}, "listIds": [], "ext_id": None}


@lru_cache(maxsize=65_536)
def _valid_email(address: str) -> bool:
    """Whether Brevo would take this address; syntax only, no DNS."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


class ContactEndpoints(BrevoState):
    """POST/GET/PUT/DELETE /contacts…, /contacts/batch, /contacts/import, /processes/{id}."""

    unsupported: list[str]  # BrevoFake's: valid calls it does not simulate

    def _apply(self, contact: dict[str, Any], body: Mapping[str, Any]) -> None:
        """Apply a create/update body to a contact that is out of the indexes."""
        self._set_attributes(contact, body.get("attributes") or {})
        if body.get("ext_id") is not None:
            contact["ext_id"] = body["ext_id"]
        lists = set(contact["listIds"]) | set(body.get("listIds") or ())
        contact["listIds"] = sorted(lists - set(body.get("unlinkListIds") or ()))
        # Brevo adds a contact to the lists it is given even after it left them (the danger
        # issue 14 guards against): it is then in the list again, no longer unsubscribed.
        self._resubscribe(contact, body.get("listIds") or ())
        self._touch(
            contact,
            emailBlacklisted=body.get("emailBlacklisted"),
            smsBlacklisted=body.get("smsBlacklisted"),
        )

    def _resubscribe(self, contact: Mapping[str, Any], list_ids: Iterable[int]) -> None:
        flags = self.contact_flags.get(contact["id"])
        if flags and flags.get("listUnsubscribed") and list_ids:
            flags["listUnsubscribed"] = sorted(set(flags["listUnsubscribed"]) - set(list_ids))

    def seed_contact(
        self,
        email: str,
        *,
        lists: Iterable[int] = (),
        blacklisted: bool = False,
        unsubscribed: Iterable[int] = (),
        attributes: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Put a contact in the account as Brevo would hold it after people acted there: in
        `lists`, blocklisted (`emailBlacklisted`), or having left `unsubscribed` (Brevo takes
        them out of those lists and names them in `listUnsubscribed`). For tests."""
        for list_id in (*lists, *unsubscribed):
            if list_id not in self.lists:
                self._add_list(list_id, f"List {list_id}")
        key = email.lower()
        contact = self._drop_contact(key) if key in self.contacts else None
        if contact is None:
            contact = _new_contact(next(self._ids), key)
        contact["attributes"].update(attributes or {})
        gone = set(unsubscribed)
        contact["listIds"] = sorted((set(contact["listIds"]) | set(lists)) - gone)
        self._touch(contact, emailBlacklisted=blacklisted)
        self.contact_flags[contact["id"]]["listUnsubscribed"] = sorted(gone)
        self._put_contact(contact)
        return contact

    def confirm_doi(self, email: str) -> None:
        """The person clicks the double opt-in link of the last DOI request for `email`:
        Brevo creates or updates the contact and adds it to the request's includeListIds."""
        request = next(
            r for r in reversed(self.doi_requests) if r["email"].lower() == email.lower()
        )
        key = email.lower()
        contact = self._drop_contact(key) if key in self.contacts else None
        if contact is None:
            contact = _new_contact(next(self._ids), key)
        self._apply(contact, {"attributes": request.get("attributes") or {},
                              "listIds": request["includeListIds"]})  # fmt: skip
        self._put_contact(contact)

    def _contact_answer(self, contact: Mapping[str, Any]) -> dict[str, Any]:
        """A contact as GET /contacts and GET /contacts/{identifier} show it."""
        flags = self.contact_flags[contact["id"]]
        answer = {
            "id": contact["id"],
            "emailBlacklisted": flags["emailBlacklisted"],
            "smsBlacklisted": flags["smsBlacklisted"],
            "createdAt": flags["createdAt"],
            "modifiedAt": flags["modifiedAt"],
            "attributes": dict(contact["attributes"]),
            "listIds": list(contact["listIds"]),
            "listUnsubscribed": list(flags.get("listUnsubscribed", ())),
        }
        if contact["email"]:
            answer["email"] = contact["email"]
        if contact["ext_id"]:
            answer["attributes"]["EXT_ID"] = contact["ext_id"]
        return answer

    def _list_contacts(self, call: Call) -> Answer:
        """GET /contacts: every contact, newest first unless sort=asc, paged by limit/offset."""
        limit = int(call.query.get("limit", 50))
        offset = int(call.query.get("offset", 0))
        contacts = sorted(self.contacts.values(), key=lambda c: c["id"])
        if call.query.get("sort", "desc") == "desc":
            contacts.reverse()
        page = contacts[offset : offset + limit]
        return 200, {"contacts": [self._contact_answer(c) for c in page], "count": len(contacts)}

    def _double_optin(self, call: Call) -> Answer:
        """POST /contacts/doubleOptinConfirmation: Brevo mails the template; the contact joins
        includeListIds only once the person confirms (`confirm_doi`). Recorded in
        `doi_requests`."""
        body = call.body
        if not _valid_email(body["email"]):
            return error(400, "invalid_parameter", "Invalid email address")
        problem = self._attribute_problem(body.get("attributes") or {}) or self._list_problem(
            body["includeListIds"]
        )
        if problem is not None:
            return error(400, "invalid_parameter", problem)
        if not body["includeListIds"]:
            return error(400, "invalid_parameter", "includeListIds must name at least one list")
        self.doi_requests.append(dict(body))
        return (204, None) if body["email"].lower() in self.contacts else (201, None)

    def _contact_problem(self, body: Mapping[str, Any], email: Any) -> Answer | None:
        """Checks Brevo makes beyond the schema, shared by create and update."""
        if email is not None and not _valid_email(email):
            return error(400, "invalid_parameter", "Invalid email address")
        problem = self._attribute_problem(body.get("attributes") or {})
        if problem is None:
            problem = self._date_problem(body.get("attributes") or {})
        if problem is None:
            problem = self._list_problem(
                [*(body.get("listIds") or ()), *(body.get("unlinkListIds") or ())]
            )
        return None if problem is None else error(400, "invalid_parameter", problem)

    def _owners(self, email: Any, ext_id: Any, sms: Any) -> dict[str, str]:
        """Identifier name → key of the contact that already holds it."""
        owners = {}
        if email is not None and email.lower() in self.contacts:
            owners["email"] = email.lower()
        if ext_id is not None and ext_id in self._by_ext:
            owners["ext_id"] = self._by_ext[ext_id]
        if sms is not None and str(sms) in self._by_sms:
            owners["SMS"] = self._by_sms[str(sms)]
        return owners

    def _merge_into(self, key: str, others: Iterable[str]) -> None:
        """forceMerge: fold other contacts into `key` (lists and unset attributes)."""
        contact = self.contacts[key]
        for other_key in set(others) - {key}:
            other = self._drop_contact(other_key)
            contact["listIds"] = sorted(set(contact["listIds"]) | set(other["listIds"]))
            contact["attributes"] = {**other["attributes"], **contact["attributes"]}

    def _create_contact(self, call: Call) -> Answer:
        body = call.body
        email, ext_id = body.get("email"), body.get("ext_id")
        attributes = body.get("attributes") or {}
        if email is None and ext_id is None and not attributes.get("SMS"):
            return error(400, "missing_parameter", "email, ext_id or attributes.SMS is required")
        refused = self._contact_problem(body, email)
        if refused is not None:
            return refused
        owners = self._owners(email, ext_id, attributes.get("SMS"))
        if owners:
            if not body.get("updateEnabled", False):
                # Seen in the wild (NOTES.md §3), without updateEnabled.
                names = sorted(owners)
                return error(
                    400,
                    "duplicate_parameter",
                    f"Unable to create contact, {names[0]} is already associated with another "
                    "Contact",
                    metadata={"duplicate_identifiers": names},
                )
            key = owners.get("email") or next(iter(owners.values()))
            clashing = sorted(name for name, owner in owners.items() if owner != key)
            if clashing and not body.get("forceMerge", False):
                return error(
                    400,
                    "duplicate_parameter",
                    f"Unable to update contact, {clashing[0]} is already associated with "
                    "another Contact",
                    metadata={"duplicate_identifiers": clashing},
                )
            self._merge_into(key, owners.values())
            contact = self._drop_contact(key)
            if email is not None:
                contact["email"] = email.lower()
            self._apply(contact, body)
            self._put_contact(contact)
            return 204, None  # NOTES.md §2: an upsert that updates answers 204 without a body
        contact = _new_contact(next(self._ids), email.lower() if email is not None else None)
        self._apply(contact, body)
        self._put_contact(contact)
        return 201, {"id": contact["id"]}

    def _identified(self, call: Call) -> str | None:
        return self._find(call.params["identifier"], call.query.get("identifierType"))

    def _get_contact(self, call: Call) -> Answer:
        key = self._identified(call)
        if key is None:
            return error(404, "document_not_found", "Contact does not exist")
        return 200, {**self._contact_answer(self.contacts[key]), "statistics": {}}

    def _update_contact(self, call: Call) -> Answer:
        body = call.body
        key = self._identified(call)
        if key is None:
            return error(404, "document_not_found", "Contact does not exist")
        attributes = body.get("attributes") or {}
        new_email = attributes.get("EMAIL")  # NOTES.md §2: the email changes via attributes.EMAIL
        refused = self._contact_problem(body, new_email)
        if refused is not None:
            return refused
        owners = self._owners(new_email, body.get("ext_id"), attributes.get("SMS"))
        clashing = sorted(name for name, owner in owners.items() if owner != key)
        if clashing and not body.get("forceMerge", False):
            return error(
                400,
                "duplicate_parameter",
                f"Unable to update contact, {clashing[0]} is already associated with another "
                "Contact",
                metadata={"duplicate_identifiers": clashing},
            )
        self._merge_into(key, owners.values())
        contact = self._drop_contact(key)
        if new_email:
            contact["email"] = new_email.lower()
        self._apply(contact, body)
        self._put_contact(contact)
        return 204, None

    def _delete_contact(self, call: Call) -> Answer:
        key = self._identified(call)
        if key is None:
            return error(404, "document_not_found", "Contact does not exist")
        self.contact_flags.pop(self._drop_contact(key)["id"], None)
        return 204, None

    def _update_contacts(self, call: Call) -> Answer:
        items = call.body.get("contacts") or []
        # Everything is checked before anything changes: a refused batch changes nothing.
        for index, item in enumerate(items):
            named = [name for name in ("email", "id", "sms") if name in item]
            if len(named) != 1:
                message = f"contacts[{index}]: exactly one of email, id or sms is required"
                return error(400, "invalid_parameter", message)
            refused = self._contact_problem(item, item.get("email"))
            if refused is not None:
                return refused
        for item in items:
            if "email" in item:
                key = self._find(item["email"], "email_id")
            elif "id" in item:
                key = self._by_id.get(item["id"])
            else:
                key = self._by_sms.get(str(item["sms"]))
            if key is None:
                continue  # NOTES.md §2: batch updates only, it creates nothing
            contact = self._drop_contact(key)
            self._apply(contact, item)
            self._put_contact(contact)
        return 204, None

    def _import_rows(self, body: Mapping[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
        if body.get("jsonBody") is not None:
            return [
                (row.get("email"), dict(row.get("attributes") or {})) for row in body["jsonBody"]
            ]
        # fileBody: CSV with a header line and ";" separators (NOTES.md §2, Import).
        rows = []
        for record in csv.DictReader(io.StringIO(body["fileBody"]), delimiter=";"):
            fields = {k.strip().upper(): v for k, v in record.items() if k}
            email = fields.pop("EMAIL", None)
            rows.append((email, {k: v for k, v in fields.items() if v not in (None, "")}))
        return rows

    def _import_contacts(self, call: Call) -> Answer:
        body = call.body
        if body.get("fileUrl") is not None and body.get("jsonBody") is None:
            self.unsupported.append("POST /contacts/import with fileUrl")
            return error(501, "not_implemented", "the Brevo fake does not fetch fileUrl")
        if body.get("jsonBody") is None and body.get("fileBody") is None:
            return error(
                400, "missing_parameter", "One of fileBody, fileUrl or jsonBody is required"
            )
        if call.size > _IMPORT_MAX:
            return error(400, "out_of_range", "Import bodies are limited to 10 MB; use fileUrl")
        rows = self._import_rows(body)
        for _, attributes in rows:
            # How Brevo's asynchronous import treats a bad date is not recorded (NOTES.md §2);
            # the fake refuses the whole file, naming the attribute, as a contact call would.
            problem = self._date_problem(attributes)
            if problem is not None:
                return error(400, "invalid_parameter", problem)
        list_ids = list(body.get("listIds") or ())
        if body.get("newList") is not None:
            list_id = max(self.lists, default=0) + 1
            self._add_list(list_id, body["newList"].get("listName", f"List {list_id}"))
            list_ids.append(list_id)
        if not list_ids:
            return error(400, "missing_parameter", "listIds or newList is required")
        problem = self._list_problem(list_ids)
        if problem is not None:
            return error(400, "invalid_parameter", problem)
        invalid = 0
        update = body.get("updateExistingContacts", True)
        keep_empty = body.get("emptyContactsAttributes", False)
        for email, attributes in rows:
            # An import skips what it cannot take and reports it in the process.
            if not isinstance(email, str) or not _valid_email(email):
                invalid += 1
                continue
            # Unknown attributes are ignored by an import (NOTES.md §2).
            attributes = {k: v for k, v in attributes.items() if k in self.attributes}
            key = email.lower()
            if key in self.contacts:
                contact = self._drop_contact(key)
                if update:
                    self._set_attributes(contact, attributes, keep_empty=keep_empty)
            else:
                contact = _new_contact(next(self._ids), key)
                self._set_attributes(contact, attributes, keep_empty=keep_empty)
            contact["listIds"] = sorted(set(contact["listIds"]) | set(list_ids))
            self._resubscribe(contact, list_ids)
            self._touch(contact, emailBlacklisted=True if body.get("emailBlacklist") else None)
            self._put_contact(contact)
        process_id = self._new_process({"import": {"invalid_emails": invalid}})
        return 202, {"processId": process_id}

    def _get_process(self, call: Call) -> Answer:
        process = self.processes.get(call.params["processId"])
        if process is None:
            return error(404, "document_not_found", "Process does not exist")
        return 200, process
