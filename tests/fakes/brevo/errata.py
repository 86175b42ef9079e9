"""Where Brevo's saved OpenAPI spec lives, and the patches that make it accept what Brevo
accepts (tests/fixtures/brevo/ERRATA.md)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any


def spec_path() -> Path:
    """Brevo's spec as the project saved it, kept in the repo (tests/fixtures/README.md)."""
    return Path(__file__).resolve().parents[2] / "fixtures" / "brevo" / "openapi.yaml"


def patch_spec(spec: dict[str, Any]) -> list[str]:
    """Make the saved spec accept what Brevo accepts (ERRATA.md); returns what was changed."""
    paths = spec["paths"]

    def body(path: str, method: str = "post") -> dict[str, Any]:
        schema: dict[str, Any] = paths[path][method]["requestBody"]["content"]["application/json"]
        return schema["schema"]  # type: ignore[no-any-return]

    notes = []
    # ERRATA: no branch of these oneOf bodies requires its property, so every body matches
    # every branch and oneOf refuses all of them. anyOf of branches that each require their
    # own property takes every body Brevo takes and still refuses `{}` and `{"emails": []}`.
    for action in ("add", "remove"):
        schema = body(f"/contacts/lists/{{listId}}/contacts/{action}")
        branches = schema.pop("oneOf")
        for branch in branches:
            branch["required"] = sorted(branch["properties"])
        schema["anyOf"] = branches
        notes.append(
            f"POST /contacts/lists/{{listId}}/contacts/{action}: oneOf -> anyOf, each "
            "branch requiring its property (ERRATA)"
        )

    # ERRATA and NOTES.md §1: fields newer than this copy of the spec.
    for path, method in (("/contacts", "post"), ("/contacts/{identifier}", "put")):
        body(path, method)["properties"]["forceMerge"] = {"type": "boolean"}
    notes.append("forceMerge (boolean) on POST /contacts and PUT /contacts/{identifier} (ERRATA)")
    item = spec["components"]["schemas"]["order"]["properties"]["products"]["items"]
    item["properties"]["quantityFloat"] = {"type": "number"}
    # Newer docs: quantity is "required if quantityFloat empty" (NOTES.md §2, Orders).
    item["required"] = [name for name in item["required"] if name != "quantity"]
    item["anyOf"] = [{"required": ["quantity"]}, {"required": ["quantityFloat"]}]
    notes.append(
        "order products: quantityFloat (number); quantity or quantityFloat required (ERRATA)"
    )

    # Beyond ERRATA: schemas that refuse the spec's own description and example.
    # POST /events says event_properties take "string, number, boolean (true/false), date" and
    # its example has "autoplayed": false, but the value schema lists only string, integer,
    # object and array.
    event = body("/events")
    event["properties"]["event_properties"]["additionalProperties"]["anyOf"] += [
        {"type": "number"},
        {"type": "boolean"},
    ]
    notes.append("POST /events event_properties values: number and boolean allowed (own example)")
    # POST /categories(/batch) declares the category id `format: email`; its example is
    # "CAT123" and shops number their categories.
    for schema in (
        body("/categories"),
        body("/categories/batch")["properties"]["categories"]["items"],
    ):
        schema["properties"]["id"].pop("format", None)
    notes.append("POST /categories and /categories/batch: id loses `format: email` (own example)")

    # The answer to those list calls has the same overlap: an empty `failure` list is both a
    # list of emails and a list of ids, and the extIds example ("ext123") is neither. Only the
    # fake's own answers are checked against it (check_responses).
    answer = spec["components"]["schemas"]["postContactInfo"]["properties"]["contacts"]
    for name in ("success", "failure"):
        branches = answer["properties"][name].pop("oneOf")
        answer["properties"][name]["anyOf"] = [
            *branches,
            {"type": "array", "items": {"type": "string"}},
        ]
    notes.append(
        "postContactInfo success/failure: oneOf -> anyOf, plus extIds strings (own example)"
    )

    # ERRATA and NOTES.md §2 (Events): added 2026-03-03, same items as POST /events.
    paths["/events/batch"] = {
        "post": {
            "operationId": "createBatchEvents",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["events"],
                            "properties": {
                                "events": {"type": "array", "items": copy.deepcopy(event)}
                            },
                        }
                    }
                },
            },
            "responses": {
                "202": {
                    "description": "Events accepted",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["message", "count"],
                                "properties": {
                                    "message": {"type": "string"},
                                    "count": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
                "207": {"description": "Some events were refused"},
                "400": {"$ref": "#/components/responses/errorModel"},
            },
        }
    }
    notes.append("POST /events/batch added: {events: [<POST /events body>]} -> 202 (ERRATA)")
    return notes
