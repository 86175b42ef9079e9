"""A stand-in for Brevo's API v3 (https://api.brevo.com/v3) for the agent's tests and benchmarks.

It listens on 127.0.0.1 (port 0, read back) and:

* checks every request against Brevo's own OpenAPI spec (`tests/fixtures/brevo/openapi.yaml`,
  patched as its `ERRATA.md` says, see `patch_spec`); a refused request gets 400
  `invalid_parameter` and lands in `spec_violations`;
* answers as Brevo does (reference/brevo/NOTES.md §2-§3: 201/202/204 codes, upserts without a
  body, `{"code", "message"}` errors) over in-memory state that tests read;
* meters each endpoint family in fixed windows with `x-sib-ratelimit-*` headers (NOTES.md §4),
  and refuses with 429 when asked to enforce them;
* fails on script: `fail_next`, `outage`, `stall`.

In a test::

    async with BrevoFake(enforce_limits=True) as fake:
        ...  # point the client at fake.base_url with fake.api_key
        await fake.wait_for(lambda: len(fake.orders) == 10)
    fake.assert_no_spec_violations()

In conftest.py, `brevo = brevo_fake_fixture()` gives tests a `brevo` fixture that fails the test
on a spec violation at teardown. In its own process (benchmarks)::

    python -m tests.fakes.brevo --port 0 --port-file PORT --summary SUMMARY.json --time-scale 60

`family_of`, `PLAN_LIMITS` and `format_reset` are plain: importing this module loads neither
aiohttp nor the validators; they load when a fake is built.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import csv
import io
import itertools
import json
import math
import re
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "DEFAULT_API_KEY",
    "FAMILIES",
    "PLAN_LIMITS",
    "BrevoFake",
    "BrevoSpec",
    "RecordedRequest",
    "brevo_fake_fixture",
    "family_of",
    "format_reset",
    "load_spec",
    "main",
    "patch_spec",
    "spec_path",
]

API_PREFIX = "/v3"
DEFAULT_API_KEY = "xkeysib-fake-0000000000000000"

# --------------------------------------------------------------------------- families and limits

FAMILIES = ("contacts", "events", "orders", "products", "other")

Windows = tuple[tuple[int, float], ...]
"""Rate windows of one family: (requests allowed, window length in seconds)."""

# developers.brevo.com/docs/api-limits as transcribed in reference/brevo/NOTES.md §4.
# General covers every plan; Advanced is Professional and Enterprise; Extended is Enterprise.
PLAN_LIMITS: dict[str, dict[str, Windows]] = {
    "general": {
        "contacts": ((10, 1.0), (36_000, 3600.0)),
        "events": ((10, 1.0), (36_000, 3600.0)),
        "orders": ((5, 1.0), (18_000, 3600.0)),
        "products": ((2, 1.0), (7_200, 3600.0)),
        "other": ((100, 3600.0),),
    },
    "advanced": {
        "contacts": ((20, 1.0), (72_000, 3600.0)),
        "events": ((20, 1.0), (72_000, 3600.0)),
        "orders": ((10, 1.0), (36_000, 3600.0)),
        "products": ((4, 1.0), (14_400, 3600.0)),
        "other": ((200, 3600.0),),
    },
    "extended": {
        "contacts": ((60, 1.0),),
        "events": ((60, 1.0),),
        "orders": ((15, 1.0),),
        "products": ((21_600, 3600.0),),
        "other": ((600, 3600.0),),
    },
}


def family_of(method: str, path: str) -> str:
    """The rate-limit family of a request (NOTES.md §4); `path` may carry /v3 and a query."""
    path = path.partition("?")[0]
    if path.startswith(API_PREFIX + "/"):
        path = path[len(API_PREFIX) :]
    if path == "/contacts" or path.startswith("/contacts/"):
        return "contacts"  # "all /v3/contacts/*", lists, attributes, import and batch included
    if method.upper() == "POST":
        # Only the single-object endpoints have their own buckets; /orders/status/batch and
        # /products/batch are "all other endpoints". Whether /events/batch shares the events
        # bucket is UNVERIFIED (NOTES.md §4): metered with /events here.
        if path in ("/events", "/events/batch"):
            return "events"
        if path == "/orders/status":
            return "orders"
        if path == "/products":
            return "products"
    return "other"


def format_reset(seconds: float, time_scale: float = 1.0) -> str:
    """The `x-sib-ratelimit-reset` value for a window that ends in `seconds` of real time.

    Brevo counts whole seconds (docs/limit-headers); rounding up means a client that waits that
    long is past the window. Under a time scale those whole seconds are divided, so the value
    stays real time (a 1 s window at scale 60 reads "0.017").
    """
    whole = max(1, math.ceil(seconds * time_scale - 1e-9))
    if time_scale == 1.0:
        return str(whole)
    scaled = math.ceil(whole / time_scale * 1000 - 1e-6) / 1000
    return f"{scaled:.3f}".rstrip("0").rstrip(".")


@dataclass(slots=True)
class _Window:
    """One fixed window: the first request after the previous window ended opens it."""

    limit: int
    length: float  # real seconds: Brevo's period divided by the time scale
    start: float | None = None
    used: int = 0

    def roll(self, now: float) -> None:
        if self.start is not None and now >= self.start + self.length:
            self.start, self.used = None, 0

    def left(self, now: float) -> float:
        """Real seconds until this window ends; a whole window when none is open."""
        return self.length if self.start is None else self.start + self.length - now


class _Budget:
    """The windows of one family and the `x-sib-ratelimit-*` headers they give."""

    def __init__(self, windows: Windows, time_scale: float) -> None:
        self.windows = [_Window(count, period / time_scale) for count, period in windows]
        self.time_scale = time_scale

    def take(self, now: float) -> bool:
        """Count one request; False (and nothing counted) when a window is full."""
        for window in self.windows:
            window.roll(now)
        if any(w.used >= w.limit for w in self.windows):
            return False
        for window in self.windows:
            if window.start is None:
                window.start = now
            window.used += 1
        return True

    def headers(self, now: float) -> dict[str, str]:
        """Headers for the window that binds: a full one, else the one with least room."""
        for window in self.windows:
            window.roll(now)
        full = [w for w in self.windows if w.used >= w.limit]
        if full:
            # Requests stay refused until the last full window ends.
            window = max(full, key=lambda w: w.left(now))
        else:
            window = min(self.windows, key=lambda w: (w.limit - w.used, w.left(now)))
        return self._headers(window, max(0, window.limit - window.used), now)

    def exhausted(self, now: float) -> dict[str, str]:
        """Headers of a scripted 429: the shortest window, with no room left."""
        window = min(self.windows, key=lambda w: w.length)
        window.roll(now)
        return self._headers(window, 0, now)

    def _headers(self, window: _Window, remaining: int, now: float) -> dict[str, str]:
        return {
            "x-sib-ratelimit-limit": str(window.limit),
            "x-sib-ratelimit-remaining": str(remaining),
            "x-sib-ratelimit-reset": format_reset(window.left(now), self.time_scale),
        }


# --------------------------------------------------------------------------- the spec


def spec_path() -> Path:
    """Brevo's spec as the project saved it, kept in the repo (tests/fixtures/README.md)."""
    return Path(__file__).resolve().parents[1] / "fixtures" / "brevo" / "openapi.yaml"


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


_SPEC_URI = "urn:woobrevo:brevo-openapi"
_Check = Callable[[Any], bool]


class _Unsupported(Exception):
    """The fast check cannot mirror this schema exactly; jsonschema alone decides."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _always(_value: Any) -> bool:
    return True


def _never(_value: Any) -> bool:
    return False


def _scalar_equal(one: Any, two: Any) -> bool:
    # jsonschema's `equal` for scalars: True is not 1, 1 is 1.0.
    if isinstance(one, bool) or isinstance(two, bool):
        return one is two
    return bool(one == two)


# The OpenAPI 3.0 type checker of openapi-schema-validator, as plain predicates.
_TYPE_CHECKS: dict[str, _Check] = {
    "string": lambda value: isinstance(value, str),
    "integer": _is_int,
    "number": _is_number,
    "boolean": lambda value: isinstance(value, bool),
    "array": lambda value: isinstance(value, list),
    "object": lambda value: isinstance(value, dict),
}
# Keywords OAS30WriteValidator acts on that the fast check does not mirror.
_REFUSED_KEYWORDS = frozenset(
    {"$ref", "discriminator", "multipleOf", "pattern", "patternProperties"}
)


def _compile(schema: Any, formats: Any, exact: bool = False) -> _Check:
    """A predicate that is True only for instances OAS30WriteValidator accepts.

    jsonschema checks a 1000-order batch in ~0.4 s; this in ~10 ms, and jsonschema then only
    runs to explain a refusal (or when this is not sure). It mirrors
    openapi-schema-validator's OAS 3.0 keywords one by one (keywords jsonschema ignores are
    ignored here too). False may mean "not sure" (uniqueItems on non-strings): the caller then
    asks jsonschema. Under `oneOf` and `not` a "not sure" would flip into a wrong yes, so there
    `exact` demands a sure answer or refuses to compile.
    """
    if not isinstance(schema, dict) or _REFUSED_KEYWORDS.intersection(schema):
        raise _Unsupported
    if schema.get("readOnly"):
        return _never  # write_readOnly: a request may not carry a read-only value
    checks: list[_Check] = []

    kind = schema.get("type")
    nullable = schema.get("nullable") is True
    # A non-nullable object type is checked inside the object's own check (one call less).
    object_checks, typed = _compile_object(
        schema, formats, exact, kind == "object" and not nullable
    )
    if kind is not None and not typed:
        if not isinstance(kind, str) or kind not in _TYPE_CHECKS:
            raise _Unsupported
        is_kind = _TYPE_CHECKS[kind]
        checks.append((lambda value: value is None or is_kind(value)) if nullable else is_kind)

    if "enum" in schema:
        members = schema["enum"]
        if not isinstance(members, list) or not all(
            m is None or isinstance(m, str | int | float) for m in members
        ):
            raise _Unsupported
        if all(isinstance(m, str) for m in members):
            allowed = frozenset(members)
            checks.append(lambda value: isinstance(value, str) and value in allowed)
        else:
            checks.append(lambda value: any(_scalar_equal(value, m) for m in members))

    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in formats.checkers:
        checks.append(lambda value: value is None or formats.conforms(value, fmt))

    if "minLength" in schema:
        min_length = schema["minLength"]
        checks.append(lambda value: not isinstance(value, str) or len(value) >= min_length)
    if "maxLength" in schema:
        max_length = schema["maxLength"]
        checks.append(lambda value: not isinstance(value, str) or len(value) <= max_length)

    if "minimum" in schema:
        low = schema["minimum"]
        if schema.get("exclusiveMinimum", False):
            checks.append(lambda value: not _is_number(value) or value > low)
        else:
            checks.append(lambda value: not _is_number(value) or value >= low)
    if "maximum" in schema:
        high = schema["maximum"]
        if schema.get("exclusiveMaximum", False):
            checks.append(lambda value: not _is_number(value) or value < high)
        else:
            checks.append(lambda value: not _is_number(value) or value <= high)

    if "items" in schema:
        if not isinstance(schema["items"], dict):
            raise _Unsupported
        each = _compile(schema["items"], formats, exact)
        checks.append(lambda value: not isinstance(value, list) or all(map(each, value)))
    if "minItems" in schema:
        min_items = schema["minItems"]
        checks.append(lambda value: not isinstance(value, list) or len(value) >= min_items)
    if "maxItems" in schema:
        max_items = schema["maxItems"]
        checks.append(lambda value: not isinstance(value, list) or len(value) <= max_items)
    if schema.get("uniqueItems"):
        if exact:
            raise _Unsupported
        checks.append(
            lambda value: (
                not isinstance(value, list)
                or (all(isinstance(v, str) for v in value) and len(set(value)) == len(value))
            )
        )

    checks.extend(object_checks)

    for keyword in ("allOf", "anyOf", "oneOf"):
        if keyword in schema and not isinstance(schema[keyword], list):
            raise _Unsupported
    if "allOf" in schema:
        all_of = [_compile(sub, formats, exact) for sub in schema["allOf"]]
        checks.append(lambda value: all(check(value) for check in all_of))
    if "anyOf" in schema:
        any_of = [_compile(sub, formats, exact) for sub in schema["anyOf"]]

        def check_any(value: Any) -> bool:
            for check in any_of:  # noqa: SIM110 - see check_all
                if check(value):
                    return True
            return False

        checks.append(check_any)
    if "oneOf" in schema:
        one_of = [_compile(sub, formats, True) for sub in schema["oneOf"]]
        checks.append(lambda value: sum(1 for check in one_of if check(value)) == 1)
    if "not" in schema:
        negated = _compile(schema["not"], formats, True)
        checks.append(lambda value: not negated(value))

    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]

    def check_all(value: Any) -> bool:
        for check in checks:  # noqa: SIM110 - a loop is twice as fast as all() on a generator
            if not check(value):
                return False
        return True

    return check_all


def _compile_object(
    schema: dict[str, Any], formats: Any, exact: bool, typed: bool
) -> tuple[list[_Check], bool]:
    """The object keywords of `schema` (properties, required, additionalProperties, sizes),
    and whether they also check the `object` type, as asked by `typed`."""
    checks: list[_Check] = []
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise _Unsupported
    known = {name: _compile(sub, formats, exact) for name, sub in properties.items()}
    # write_required skips a missing property that is read-only.
    required = tuple(
        name
        for name in schema.get("required", ())
        if not (properties.get(name) and properties[name].get("readOnly", False))
    )
    extra = schema.get("additionalProperties", True)
    if extra is True:
        other: _Check | None = None
    elif extra is False:
        other = _never
    elif isinstance(extra, dict):
        other = _compile(extra, formats, exact)
    else:
        raise _Unsupported
    typed = typed and bool(known or required or other is not None)
    if known or required or other is not None:

        def check_object(value: Any) -> bool:
            if not isinstance(value, dict):
                return not typed
            for name in required:
                if name not in value:
                    return False
            for name, member in value.items():
                check = known.get(name, other)
                if check is not None and not check(member):
                    return False
            return True

        checks.append(check_object)
    if "minProperties" in schema:
        min_props = schema["minProperties"]
        checks.append(lambda value: not isinstance(value, dict) or len(value) >= min_props)
    if "maxProperties" in schema:
        max_props = schema["maxProperties"]
        checks.append(lambda value: not isinstance(value, dict) or len(value) <= max_props)
    return checks, typed


@dataclass(frozen=True, slots=True)
class _Schema:
    """One schema: a fast exact yes, and jsonschema's validator for every no and its message."""

    fast: _Check | None
    slow: Any

    def problem(self, instance: Any, label: str) -> str | None:
        """None when the instance is valid, else where and what the validator said."""
        if self.fast is not None and self.fast(instance):
            return None
        from jsonschema.exceptions import best_match

        error = best_match(self.slow.iter_errors(instance))
        if error is None:
            return None
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        return f"{label}{where}: {error.message}"


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    location: str  # "path" or "query"
    required: bool
    kind: str | None  # the schema's type, to turn URL text into a JSON value
    items_kind: str | None
    explode: bool
    schema: _Schema


@dataclass(frozen=True, slots=True)
class _Operation:
    method: str
    route: str
    params: tuple[_Param, ...]
    body: _Schema | None
    body_required: bool


@dataclass(slots=True)
class _Checked:
    """What the spec made of a request: its decoded parts, or why it is refused."""

    params: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    problem: str | None = None


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _from_text(text: str, kind: str | None) -> Any:
    """URL text as the JSON value its schema describes; unchanged when it is not one."""
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return text
    if kind == "boolean":
        return {"true": True, "false": False}.get(text, text)
    return text


class BrevoSpec:
    """Brevo's OpenAPI document, patched, with routes and per-operation validators cached."""

    def __init__(self, document: dict[str, Any], patches: list[str]) -> None:
        from openapi_schema_validator import (
            OAS30ReadValidator,
            OAS30WriteValidator,
            oas30_format_checker,
        )
        from referencing import Registry
        from referencing.jsonschema import DRAFT4

        self.document = document
        self.patches = patches
        self._formats = oas30_format_checker
        self._write = OAS30WriteValidator
        self._read = OAS30ReadValidator
        self._registry = Registry().with_resource(_SPEC_URI, DRAFT4.create_resource(document))
        self._routes: dict[int, list[tuple[tuple[str, ...], str]]] = {}
        for route in document["paths"]:
            segments = tuple(route.strip("/").split("/"))
            self._routes.setdefault(len(segments), []).append((segments, route))
        for candidates in self._routes.values():
            # Concrete paths match before templated ones (OpenAPI 3.0.3, Paths Object).
            candidates.sort(key=lambda c: [s.startswith("{") for s in c[0]])
        self._operations: dict[tuple[str, str], _Operation | None] = {}
        self._responses: dict[tuple[str, str, int], _Schema | None] = {}

    def route(self, path: str) -> tuple[str, dict[str, str]] | None:
        """The path template matching `path` (below /v3, percent-encoded) and its parameters."""
        segments = path.strip("/").split("/")
        for template, route in self._routes.get(len(segments), ()):
            params: dict[str, str] = {}
            for want, got in zip(template, segments, strict=True):
                if want.startswith("{"):
                    if not got:
                        break
                    params[want[1:-1]] = unquote(got)
                elif want != got:
                    break
            else:
                return route, params
        return None

    def methods(self, route: str) -> list[str]:
        """The methods the spec lists for a path template."""
        return sorted(m.upper() for m in self.document["paths"][route])

    def operation(self, method: str, route: str) -> _Operation | None:
        """The compiled operation, or None when the path has no such method."""
        key = (method.lower(), route)
        if key not in self._operations:
            self._operations[key] = self._compile_operation(*key)
        return self._operations[key]

    def check(
        self,
        method: str,
        route: str,
        raw_params: Mapping[str, str],
        query: Any,
        body: Any,
        has_body: bool,
        json_error: str | None,
    ) -> _Checked:
        """Validate one request: path and query parameters, then the JSON body."""
        op = self.operation(method, route)
        if op is None:
            allowed = ", ".join(self.methods(route))
            return _Checked(status=405, problem=f"{method} is not allowed on {route} ({allowed})")
        checked = _Checked()
        for param in op.params:
            if param.location == "path":
                value: Any = _from_text(raw_params[param.name], param.kind)
                checked.params[param.name] = value
            elif param.name in query:
                if param.kind == "array":
                    texts = list(query.getall(param.name))
                    if not param.explode:
                        texts = [t for text in texts for t in text.split(",")]
                    value = [_from_text(text, param.items_kind) for text in texts]
                else:
                    value = _from_text(query[param.name], param.kind)
                checked.query[param.name] = value
            else:
                if param.required:
                    checked.status = 400
                    checked.problem = f"query parameter {param.name!r} is required"
                    return checked
                continue
            problem = param.schema.problem(value, f"{param.location} parameter {param.name!r}")
            if problem is not None:
                checked.status = 400
                checked.problem = problem
                return checked
        if json_error is not None:
            checked.status, checked.problem = 400, f"body: not valid JSON ({json_error})"
        elif not has_body:
            if op.body_required:
                checked.status, checked.problem = 400, "body: a JSON request body is required"
        elif op.body is not None:
            problem = op.body.problem(body, "body")
            if problem is not None:
                checked.status, checked.problem = 400, problem
        return checked

    def response_problem(self, method: str, route: str, status: int, body: Any) -> str | None:
        """Where the fake's own answer departs from the spec's response schema, if anywhere."""
        key = (method.lower(), route, status)
        if key not in self._responses:
            self._responses[key] = self._compile_response(*key)
        schema = self._responses[key]
        if schema is None:
            return None
        return schema.problem(body, "response")

    def _node(self, pointer: str) -> Any:
        node: Any = self.document
        for token in pointer.lstrip("/").split("/"):
            name = token.replace("~1", "/").replace("~0", "~")
            node = node[int(name)] if isinstance(node, list) else node[name]
        return node

    def _follow(self, pointer: str) -> tuple[str, Any]:
        """The pointer and node after following a `$ref` object at `pointer`."""
        node = self._node(pointer)
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            pointer = node["$ref"].removeprefix("#")
            node = self._node(pointer)
        return pointer, node

    def _inline(self, node: Any, seen: frozenset[str] = frozenset()) -> Any:
        """`node` with every local $ref replaced by its target; _Unsupported on a cycle."""
        if isinstance(node, list):
            return [self._inline(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        rest = {
            key: self._inline(value, seen)
            for key, value in node.items()
            if key not in ("$ref", "description", "example", "examples")
        }
        if ref is None:
            return rest
        if not isinstance(ref, str) or not ref.startswith("#/") or ref in seen:
            raise _Unsupported
        target = self._inline(self._node(ref[1:]), seen | {ref})
        # OAS30 validators apply a $ref's siblings too (no ignore_ref_siblings there).
        return {"allOf": [target], **rest} if rest else target

    def _schema(self, pointer: str, *, write: bool) -> _Schema:
        validator = (self._write if write else self._read)(
            {"$ref": f"{_SPEC_URI}#{pointer}"},
            registry=self._registry,
            format_checker=self._formats,
        )
        try:
            fast: _Check | None = _compile(self._inline(self._node(pointer)), self._formats)
        except _Unsupported:
            fast = None
        return _Schema(fast, validator)

    def _compile_operation(self, method: str, route: str) -> _Operation | None:
        item = self.document["paths"][route].get(method)
        if item is None:
            return None
        base = f"/paths/{_escape(route)}/{method}"
        params = []
        for index in range(len(item.get("parameters", ()))):
            pointer, param = self._follow(f"{base}/parameters/{index}")
            if param.get("in") not in ("path", "query") or "schema" not in param:
                continue
            schema = self._follow(f"{pointer}/schema")[1]
            kind = schema.get("type")
            items_kind = None
            if kind == "array" and "items" in schema:
                items_kind = self._follow(f"{pointer}/schema/items")[1].get("type")
            style = param.get("style", "form")
            params.append(
                _Param(
                    name=param["name"],
                    location=param["in"],
                    required=bool(param.get("required")),
                    kind=kind,
                    items_kind=items_kind,
                    explode=bool(param.get("explode", style == "form")),
                    schema=self._schema(f"{pointer}/schema", write=True),
                )
            )
        body = None
        required = False
        if "requestBody" in item:
            pointer, request_body = self._follow(f"{base}/requestBody")
            required = bool(request_body.get("required"))
            if "application/json" in request_body.get("content", {}):
                body = self._schema(f"{pointer}/content/application~1json/schema", write=True)
        return _Operation(method.upper(), route, tuple(params), body, required)

    def _compile_response(self, method: str, route: str, status: int) -> _Schema | None:
        responses = self.document["paths"][route][method].get("responses", {})
        code = str(status) if str(status) in responses else "default"
        if code not in responses:
            return None
        base = f"/paths/{_escape(route)}/{method}/responses/{code}"
        pointer, response = self._follow(base)
        if "application/json" not in response.get("content", {}):
            return None
        return self._schema(f"{pointer}/content/application~1json/schema", write=False)


@cache
def load_spec(path: Path) -> BrevoSpec:
    """Brevo's spec, parsed and patched once per process (1 MB of YAML takes ~0.6 s)."""
    import yaml

    with path.open("rb") as stream:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        document = yaml.load(stream, Loader=loader)
    return BrevoSpec(document, patch_spec(document))


# --------------------------------------------------------------------------- the fake


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the fake saw; `status` is None when the client went away first."""

    time: float  # the fake's clock (time.monotonic by default) when it arrived
    method: str
    path: str  # below /v3, decoded: "/contacts/a@b.com"
    query: dict[str, str]
    json: Any
    status: int | None
    family: str
    route: str | None = None  # the spec's template: "/contacts/{identifier}"
    over_limit: bool = False  # beyond the family's limit (refused only with enforce_limits)


@dataclass(frozen=True, slots=True)
class _Match:
    """Which requests a script applies to: all of them, a family, a path or a template."""

    family: str | None = None
    path: str | None = None

    def __call__(self, family: str, path: str, route: str | None) -> bool:
        if self.family is not None and self.family != family:
            return False
        return self.path is None or self.path in (path, route)


@dataclass(slots=True)
class _Fault:
    left: int
    status: int
    match: _Match
    body: Any
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Call:
    """What a handler gets: decoded path parameters, query and JSON body."""

    params: dict[str, Any]
    query: dict[str, Any]
    body: Any
    size: int


_Answer = tuple[int, Any]  # status and JSON body (None: no body)
_Handler = Callable[[_Call], _Answer]

# Answers the fake gives in another shape than the spec's: the spec (and the docs page made
# from it) give GET /couponCollections the schema of a single collection; the fake answers a
# page, {"collections": [...], "count": N} (UNVERIFIED against a real account).
_UNCHECKED_RESPONSES = {("GET", "/couponCollections")}

_MAX_BODY = 16 * 1024 * 1024  # above Brevo's 10 MB import limit, so the fake can refuse it
_IMPORT_MAX = 10 * 1024 * 1024  # NOTES.md §2, Import: fileBody/jsonBody max 10 MB
_EVENT_PROPERTIES_MAX = 50 * 1024  # NOTES.md §2, Events: event_properties ≤ 50 KB
_EVENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
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


def _error(status: int, code: str, message: str, **extra: Any) -> _Answer:
    """A Brevo error body (NOTES.md §3): {"code", "message"} and, for contacts, "metadata"."""
    return status, {"code": code, "message": message, **extra}


def _code_for(status: int) -> str:
    """The code of a scripted failure: the status phrase, as in "too_many_requests"."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _new_contact(contact_id: int, email: str | None) -> dict[str, Any]:
    return {"id": contact_id, "email": email, "attributes": {}, "listIds": [], "ext_id": None}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(raw: bytes) -> tuple[Any, str | None]:
    """The body as JSON (NaN and Infinity refused, as a strict parser does) or the error."""
    if not raw:
        return None, None
    try:
        return json.loads(raw, parse_constant=_reject_constant), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, str(exc)


@lru_cache(maxsize=65_536)
def _valid_email(address: str) -> bool:
    """Whether Brevo would take this address; syntax only, no DNS."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


class BrevoFake:
    """Brevo API v3 on 127.0.0.1: spec-checked, stateful, metered and scriptable.

    State (plain dicts, read them in tests): `contacts` (lowercased email, or "#<id>" for a
    contact without one → {"id", "email", "attributes", "listIds", "ext_id"}), `contact_flags`
    (id → blacklist flags and dates), `attributes`, `lists`, `products`, `categories`,
    `orders` (id → last body), `events` (bodies, in order), `coupon_collections`, `coupons`
    (collection id → codes), `processes`. Traffic: `requests`, `spec_violations`,
    `unsupported` (valid calls the fake does not simulate, answered 501).
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        plan: str = "general",
        enforce_limits: bool = False,
        time_scale: float = 1.0,
        limits: Mapping[str, Iterable[tuple[int, float]]] | None = None,
        strict_attributes: bool = False,
        attributes: Mapping[str, str] | None = None,
        lists: Iterable[int] | None = None,
        check_responses: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        spec: BrevoSpec | None = None,
    ) -> None:
        """Options: `plan` picks NOTES.md §4's column; `limits` overrides families' windows
        ({"other": [(100, 3600.0)]}); `time_scale` divides every window and outage length;
        `strict_attributes` refuses contact attributes not created first; `attributes` adds
        account attributes (name → type); `lists` fixes the account's lists (None: any list id
        exists); `check_responses` checks the fake's own answers against the spec."""
        if plan not in PLAN_LIMITS:
            raise ValueError(f"plan must be one of {sorted(PLAN_LIMITS)}, not {plan!r}")
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        windows = dict(PLAN_LIMITS[plan])
        for family, override in (limits or {}).items():
            if family not in FAMILIES:
                raise ValueError(f"unknown family {family!r}; families are {FAMILIES}")
            windows[family] = tuple((int(count), float(period)) for count, period in override)
        self.api_key = api_key
        self.plan = plan
        self.enforce_limits = enforce_limits
        self.time_scale = time_scale
        self.limits: dict[str, Windows] = windows
        self.strict_attributes = strict_attributes
        self.check_responses = check_responses
        self.host = host
        self.port = port
        self.spec = spec if spec is not None else load_spec(spec_path())
        self._clock = clock
        self._budgets = {family: _Budget(w, time_scale) for family, w in windows.items()}

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
        self.ecommerce_activated = False
        self._by_id: dict[int, str] = {}
        self._by_ext: dict[str, str] = {}
        self._by_sms: dict[str, str] = {}
        self._internal_ids: dict[str, int] = {}  # product and category ids → Brevo's numbers
        self._ids = itertools.count(1)

        self.requests: list[RecordedRequest] = []
        self.spec_violations: list[str] = []
        self.unsupported: list[str] = []
        self._faults: list[_Fault] = []
        self._outage: tuple[int, float | None] | None = None
        self._stall: _Match | None = None
        self._stall_applied = False
        self._released = asyncio.Event()
        self.stalled = asyncio.Event()
        """Set while at least one request is held by `stall`."""
        self.stalled_count = 0
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self.started_at: float | None = None  # the clock when start() returned
        self._handlers: dict[tuple[str, str], _Handler] = {
            ("POST", "/contacts"): self._create_contact,
            ("GET", "/contacts/{identifier}"): self._get_contact,
            ("PUT", "/contacts/{identifier}"): self._update_contact,
            ("DELETE", "/contacts/{identifier}"): self._delete_contact,
            ("POST", "/contacts/batch"): self._update_contacts,
            ("POST", "/contacts/import"): self._import_contacts,
            ("GET", "/processes/{processId}"): self._get_process,
            ("GET", "/contacts/attributes"): self._list_attributes,
            ("POST", "/contacts/attributes/{attributeCategory}/{attributeName}"): (
                self._create_attribute
            ),
            ("GET", "/contacts/lists"): self._get_lists,
            ("POST", "/contacts/lists"): self._create_list,
            ("POST", "/contacts/lists/{listId}/contacts/add"): self._add_to_list,
            ("POST", "/contacts/lists/{listId}/contacts/remove"): self._remove_from_list,
            ("POST", "/events"): self._create_event,
            ("POST", "/events/batch"): self._create_events,
            ("POST", "/products"): self._upsert_product,
            ("POST", "/products/batch"): self._upsert_products,
            ("GET", "/products/{id}"): self._get_product,
            ("POST", "/categories"): self._upsert_category,
            ("POST", "/categories/batch"): self._upsert_categories,
            ("POST", "/orders/status"): self._upsert_order,
            ("POST", "/orders/status/batch"): self._upsert_orders,
            ("POST", "/couponCollections"): self._create_coupon_collection,
            ("GET", "/couponCollections"): self._get_coupon_collections,
            ("POST", "/coupons"): self._create_coupons,
            ("POST", "/ecommerce/activate"): self._activate_ecommerce,
            ("GET", "/account"): self._get_account,
        }

    family_of = staticmethod(family_of)

    # ----------------------------------------------------------------- lifetime

    async def __aenter__(self) -> BrevoFake:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen on host:port (port 0 picks one; `port` holds the real one afterwards)."""
        from aiohttp import web

        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # handler_cancellation: a client that gives up on a stalled request cancels it, so
        # it changes nothing (aiohttp keeps handlers running by default since 3.8.4).
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = int(self._runner.addresses[0][1])
        self.started_at = self._clock()

    async def close(self) -> None:
        """Stop listening; stalled requests are let go and answered 503."""
        self._closing = True
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """The API root to give the client, e.g. http://127.0.0.1:PORT/v3."""
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    # ----------------------------------------------------------------- scripting

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        *,
        family: str | None = None,
        path: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next `n` matching requests with `status` (429s carry rate-limit headers).

        `path` matches the path below /v3 ("/orders/status") or its template
        ("/contacts/{identifier}"). The default body is {"code": "<status phrase>", ...}.
        """
        match = _Match(family, None if path is None else path.removeprefix(API_PREFIX))
        self._faults.append(_Fault(n, status, match, body, dict(headers or {})))

    def outage(self, status: int = 503, *, duration: float | None = None) -> None:
        """Fail every request with `status` until `end_outage`, or for `duration` seconds
        (scaled by time_scale)."""
        until = None if duration is None else self._clock() + duration / self.time_scale
        self._outage = (status, until)

    def end_outage(self) -> None:
        """End an outage."""
        self._outage = None

    def stall(
        self, *, family: str | None = None, path: str | None = None, applied: bool = False
    ) -> None:
        """Hold matching requests until `release`; `stalled` is set once one is held.

        By default a request is held before Brevo acts on it, so a client that gives up
        changes nothing. With `applied`, the request is carried out first and only its answer
        is held: a client that dies then has a write Brevo did but never heard of (the
        request is recorded with the status it would have been answered)."""
        self._stall = _Match(family, None if path is None else path.removeprefix(API_PREFIX))
        self._stall_applied = applied
        if self._released.is_set():
            self._released = asyncio.Event()

    def release(self) -> None:
        """Let held requests go on (they are then answered normally) and stop holding."""
        self._stall = None
        self._released.set()
        self.stalled.clear()

    def reset_limits(self) -> None:
        """Forget every open rate window."""
        self._budgets = {f: _Budget(w, self.time_scale) for f, w in self.limits.items()}

    # The timeout argument is the interface tests asked for: one call, one deadline.
    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once `predicate()` holds, checking again after every recorded request."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            last = [f"{r.method} {r.path} {r.status}" for r in self.requests[-5:]]
            raise TimeoutError(
                f"brevo fake: condition not met within {timeout}s; "
                f"{len(self.requests)} requests, last: {last}"
            ) from None

    def assert_no_spec_violations(self) -> None:
        """Fail when a request broke the spec or asked for something the fake cannot do."""
        problems = self.spec_violations + [f"not simulated: {u}" for u in self.unsupported]
        if problems:
            raise AssertionError("brevo fake saw bad requests:\n  " + "\n  ".join(problems))

    def summary(self) -> dict[str, Any]:
        """Counts and the request log, as the CLI writes them."""
        # Times are the fake's clock: time.monotonic, which on Linux other processes share.
        return {
            "started_at": self.started_at,
            "plan": self.plan,
            "time_scale": self.time_scale,
            "enforce_limits": self.enforce_limits,
            "families": dict(Counter(r.family for r in self.requests)),
            "paths": dict(Counter(f"{r.method} {r.route or r.path}" for r in self.requests)),
            "statuses": dict(Counter(str(r.status) for r in self.requests)),
            "over_limit": dict(Counter(r.family for r in self.requests if r.over_limit)),
            "spec_violations": list(self.spec_violations),
            "unsupported": list(self.unsupported),
            "requests": [
                {
                    "time": r.time,
                    "method": r.method,
                    "path": r.path,
                    "family": r.family,
                    "status": r.status,
                    "over_limit": r.over_limit,
                }
                for r in self.requests
            ],
        }

    # ----------------------------------------------------------------- the request path

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        arrived = self._clock()
        path = request.rel_url.path
        raw_path = request.rel_url.raw_path
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            path, raw_path = path[len(API_PREFIX) :], raw_path[len(API_PREFIX) :]
            found = self.spec.route(raw_path)
        else:
            found = None
        route, raw_params = found if found is not None else (None, {})
        family = family_of(request.method, path)
        raw = await request.read()
        body, json_error = _parse_json(raw)
        status: int | None = None
        over_limit = False
        try:
            response, over_limit = await self._answer(
                request, path, route, raw_params, family, raw, body, json_error
            )
            status = response.status
            if self._stall is not None and self._stall_applied and self._stall(family, path, route):
                await self._hold()
            return response
        finally:
            self.requests.append(
                RecordedRequest(
                    time=arrived,
                    method=request.method,
                    path=path,
                    query=dict(request.query),
                    json=body,
                    status=status,
                    family=family,
                    route=route,
                    over_limit=over_limit,
                )
            )
            self._changed.set()

    async def _answer(
        self,
        request: web.Request,
        path: str,
        route: str | None,
        raw_params: dict[str, str],
        family: str,
        raw: bytes,
        body: Any,
        json_error: str | None,
    ) -> tuple[web.Response, bool]:
        """The response, and whether the request was beyond its family's limit."""
        budget = self._budgets[family]
        fault = self._scripted_fault(family, path, route)
        if fault is not None:
            now = self._clock()
            headers = budget.exhausted(now) if fault.status == 429 else budget.headers(now)
            payload = fault.body
            if payload is None:
                payload = {"code": _code_for(fault.status), "message": "scripted failure"}
            return _respond(fault.status, payload, {**headers, **fault.headers}), False

        if self._stall is not None and not self._stall_applied and self._stall(family, path, route):
            await self._hold()
        if self._closing:
            return _respond(503, {"code": "service_unavailable", "message": "closing"}, {}), False

        now = self._clock()
        if request.headers.get("api-key") != self.api_key:
            # NOTES.md §3: 401 unauthorized. Not counted: the limits are per account.
            answer = _error(401, "unauthorized", "Key not found")
            return _respond(*answer, budget.headers(now)), False
        over_limit = not budget.take(now)
        headers = budget.headers(now)
        if over_limit and self.enforce_limits:
            windows = ", ".join(f"{n} per {p:g}s" for n, p in self.limits[family])
            answer = _error(
                429, "too_many_requests", f"Rate limit of {family} ({windows}) exceeded"
            )
            return _respond(*answer, headers), True

        method = request.method
        if route is None:
            problem = f"{method} {path}: no such path in Brevo's API"
            self.spec_violations.append(problem)
            return _respond(*_error(404, "document_not_found", problem), headers), over_limit
        checked = self.spec.check(
            method, route, raw_params, request.query, body, bool(raw), json_error
        )
        if checked.problem is not None:
            self.spec_violations.append(f"{method} {path}: {checked.problem}")
            code = "method_not_allowed" if checked.status == 405 else "invalid_parameter"
            return _respond(*_error(checked.status, code, checked.problem), headers), over_limit

        handler = self._handlers.get((method, route))
        if handler is None:
            self.unsupported.append(f"{method} {route}")
            message = f"the Brevo fake does not simulate {method} {route}"
            return _respond(*_error(501, "not_implemented", message), headers), over_limit
        status, payload = handler(_Call(checked.params, checked.query, body, len(raw)))
        if self.check_responses and (method, route) not in _UNCHECKED_RESPONSES:
            mismatch = self.spec.response_problem(method, route, status, payload)
            if mismatch is not None:
                self.spec_violations.append(f"fake answered {method} {path} {status}: {mismatch}")
        return _respond(status, payload, headers), over_limit

    def _scripted_fault(self, family: str, path: str, route: str | None) -> _Fault | None:
        if self._outage is not None:
            status, until = self._outage
            if until is None or self._clock() < until:
                return _Fault(1, status, _Match(), None, {})
            self._outage = None
        for fault in self._faults:
            if fault.match(family, path, route):
                fault.left -= 1
                if fault.left <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    async def _hold(self) -> None:
        released = self._released
        self.stalled_count += 1
        self.stalled.set()
        self._changed.set()
        try:
            await released.wait()
        finally:
            self.stalled_count -= 1

    # ----------------------------------------------------------------- contacts

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
                (kind == "float" and not _is_number(value))
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
            {"emailBlacklisted": False, "smsBlacklisted": False, "createdAt": _now_iso()},
        )
        meta.update({k: v for k, v in flags.items() if v is not None}, modifiedAt=_now_iso())

    def _apply(self, contact: dict[str, Any], body: Mapping[str, Any]) -> None:
        """Apply a create/update body to a contact that is out of the indexes."""
        self._set_attributes(contact, body.get("attributes") or {})
        if body.get("ext_id") is not None:
            contact["ext_id"] = body["ext_id"]
        lists = set(contact["listIds"]) | set(body.get("listIds") or ())
        contact["listIds"] = sorted(lists - set(body.get("unlinkListIds") or ()))
        self._touch(
            contact,
            emailBlacklisted=body.get("emailBlacklisted"),
            smsBlacklisted=body.get("smsBlacklisted"),
        )

    def _contact_problem(self, body: Mapping[str, Any], email: Any) -> _Answer | None:
        """Checks Brevo makes beyond the schema, shared by create and update."""
        if email is not None and not _valid_email(email):
            return _error(400, "invalid_parameter", "Invalid email address")
        problem = self._attribute_problem(body.get("attributes") or {})
        if problem is None:
            problem = self._date_problem(body.get("attributes") or {})
        if problem is None:
            problem = self._list_problem(
                [*(body.get("listIds") or ()), *(body.get("unlinkListIds") or ())]
            )
        return None if problem is None else _error(400, "invalid_parameter", problem)

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

    def _create_contact(self, call: _Call) -> _Answer:
        body = call.body
        email, ext_id = body.get("email"), body.get("ext_id")
        attributes = body.get("attributes") or {}
        if email is None and ext_id is None and not attributes.get("SMS"):
            return _error(400, "missing_parameter", "email, ext_id or attributes.SMS is required")
        refused = self._contact_problem(body, email)
        if refused is not None:
            return refused
        owners = self._owners(email, ext_id, attributes.get("SMS"))
        if owners:
            if not body.get("updateEnabled", False):
                # Seen in the wild (NOTES.md §3), without updateEnabled.
                names = sorted(owners)
                return _error(
                    400,
                    "duplicate_parameter",
                    f"Unable to create contact, {names[0]} is already associated with another "
                    "Contact",
                    metadata={"duplicate_identifiers": names},
                )
            key = owners.get("email") or next(iter(owners.values()))
            clashing = sorted(name for name, owner in owners.items() if owner != key)
            if clashing and not body.get("forceMerge", False):
                return _error(
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

    def _identified(self, call: _Call) -> str | None:
        return self._find(call.params["identifier"], call.query.get("identifierType"))

    def _get_contact(self, call: _Call) -> _Answer:
        key = self._identified(call)
        if key is None:
            return _error(404, "document_not_found", "Contact does not exist")
        contact = self.contacts[key]
        flags = self.contact_flags[contact["id"]]
        answer = {
            "id": contact["id"],
            "emailBlacklisted": flags["emailBlacklisted"],
            "smsBlacklisted": flags["smsBlacklisted"],
            "createdAt": flags["createdAt"],
            "modifiedAt": flags["modifiedAt"],
            "attributes": dict(contact["attributes"]),
            "listIds": list(contact["listIds"]),
            "listUnsubscribed": [],
            "statistics": {},
        }
        if contact["email"]:
            answer["email"] = contact["email"]
        if contact["ext_id"]:
            answer["attributes"]["EXT_ID"] = contact["ext_id"]
        return 200, answer

    def _update_contact(self, call: _Call) -> _Answer:
        body = call.body
        key = self._identified(call)
        if key is None:
            return _error(404, "document_not_found", "Contact does not exist")
        attributes = body.get("attributes") or {}
        new_email = attributes.get("EMAIL")  # NOTES.md §2: the email changes via attributes.EMAIL
        refused = self._contact_problem(body, new_email)
        if refused is not None:
            return refused
        owners = self._owners(new_email, body.get("ext_id"), attributes.get("SMS"))
        clashing = sorted(name for name, owner in owners.items() if owner != key)
        if clashing and not body.get("forceMerge", False):
            return _error(
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

    def _delete_contact(self, call: _Call) -> _Answer:
        key = self._identified(call)
        if key is None:
            return _error(404, "document_not_found", "Contact does not exist")
        self.contact_flags.pop(self._drop_contact(key)["id"], None)
        return 204, None

    def _update_contacts(self, call: _Call) -> _Answer:
        items = call.body.get("contacts") or []
        # Everything is checked before anything changes: a refused batch changes nothing.
        for index, item in enumerate(items):
            named = [name for name in ("email", "id", "sms") if name in item]
            if len(named) != 1:
                message = f"contacts[{index}]: exactly one of email, id or sms is required"
                return _error(400, "invalid_parameter", message)
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

    def _import_contacts(self, call: _Call) -> _Answer:
        body = call.body
        if body.get("fileUrl") is not None and body.get("jsonBody") is None:
            self.unsupported.append("POST /contacts/import with fileUrl")
            return _error(501, "not_implemented", "the Brevo fake does not fetch fileUrl")
        if body.get("jsonBody") is None and body.get("fileBody") is None:
            return _error(
                400, "missing_parameter", "One of fileBody, fileUrl or jsonBody is required"
            )
        if call.size > _IMPORT_MAX:
            return _error(400, "out_of_range", "Import bodies are limited to 10 MB; use fileUrl")
        rows = self._import_rows(body)
        for _, attributes in rows:
            # How Brevo's asynchronous import treats a bad date is not recorded (NOTES.md §2);
            # the fake refuses the whole file, naming the attribute, as a contact call would.
            problem = self._date_problem(attributes)
            if problem is not None:
                return _error(400, "invalid_parameter", problem)
        list_ids = list(body.get("listIds") or ())
        if body.get("newList") is not None:
            list_id = max(self.lists, default=0) + 1
            self._add_list(list_id, body["newList"].get("listName", f"List {list_id}"))
            list_ids.append(list_id)
        if not list_ids:
            return _error(400, "missing_parameter", "listIds or newList is required")
        problem = self._list_problem(list_ids)
        if problem is not None:
            return _error(400, "invalid_parameter", problem)
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
            self._touch(contact, emailBlacklisted=True if body.get("emailBlacklist") else None)
            self._put_contact(contact)
        process_id = self._new_process({"import": {"invalid_emails": invalid}})
        return 202, {"processId": process_id}

    def _new_process(self, info: dict[str, Any] | None) -> int:
        process_id = next(self._ids)
        now = _now_iso()
        self.processes[process_id] = {
            "id": process_id,
            "name": "IMPORTUSER",
            "status": "completed",  # the fake applies at once; Brevo queues (NOTES.md §2)
            "info": info,
            "created_at": now,
            "completed_at": now,
        }
        return process_id

    def _get_process(self, call: _Call) -> _Answer:
        process = self.processes.get(call.params["processId"])
        if process is None:
            return _error(404, "document_not_found", "Process does not exist")
        return 200, process

    # ----------------------------------------------------------------- attributes and lists

    def _list_attributes(self, call: _Call) -> _Answer:
        return 200, {"attributes": [dict(a) for a in self.attributes.values()]}

    def _create_attribute(self, call: _Call) -> _Answer:
        category = call.params["attributeCategory"]
        name = str(call.params["attributeName"]).upper()
        kind = call.body.get("type")
        if name in self.attributes:
            return _error(400, "invalid_parameter", f"Attribute {name} already exists")
        # Which type goes with which category: NOTES.md §2, Attributes.
        if kind == "id" and category != "transactional":
            return _error(400, "invalid_parameter", "type id is only for transactional attributes")
        if kind in ("multiple-choice", "user") and category != "normal":
            return _error(400, "invalid_parameter", f"type {kind} is only for normal attributes")
        if category == "category" and not call.body.get("enumeration"):
            return _error(400, "missing_parameter", "enumeration is required for category")
        attribute: dict[str, Any] = {"name": name, "category": category}
        if category != "category":
            attribute["type"] = kind or "text"
        for option in ("enumeration", "multiCategoryOptions"):
            if option in call.body:
                attribute[option] = call.body[option]
        self.attributes[name] = attribute
        return 201, None

    def _get_lists(self, call: _Call) -> _Answer:
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

    def _create_list(self, call: _Call) -> _Answer:
        list_id = max(self.lists, default=0) + 1
        self._add_list(list_id, call.body["name"], call.body["folderId"])
        return 201, {"id": list_id}

    def _missing_list(self, list_id: int) -> _Answer | None:
        if list_id not in self.lists:
            if self.strict_lists:
                return _error(404, "document_not_found", "List ID does not exist")
            self._add_list(list_id, f"List {list_id}")
        return None

    def _named(self, body: Mapping[str, Any]) -> list[tuple[Any, str | None]]:
        """Each identifier of a list add/remove body with the key of its contact, if any."""
        found = [(e, self._find(e, "email_id")) for e in body.get("emails") or ()]
        found += [(i, self._by_id.get(i)) for i in body.get("ids") or ()]
        found += [(x, self._by_ext.get(x)) for x in body.get("extIds") or ()]
        return found

    def _add_to_list(self, call: _Call) -> _Answer:
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

    def _remove_from_list(self, call: _Call) -> _Answer:
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

    # ----------------------------------------------------------------- events

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

    def _create_event(self, call: _Call) -> _Answer:
        problem = self._event_problem(call.body)
        if problem is not None:
            return _error(400, "invalid_parameter", problem)
        self._record_event(call.body)
        return 204, None

    def _create_events(self, call: _Call) -> _Answer:
        events = call.body["events"]
        # Brevo answers 207 with per-event results when some fail (NOTES.md §2); their shape is
        # not documented, so the fake refuses the whole batch instead.
        for index, event in enumerate(events):
            problem = self._event_problem(event)
            if problem is not None:
                return _error(400, "invalid_parameter", f"events[{index}]: {problem}")
        for event in events:
            self._record_event(event)
        return 202, {"message": "Events accepted for processing", "count": len(events)}

    # ----------------------------------------------------------------- eCommerce

    def _catalogue_problem(
        self, store: dict[str, dict[str, Any]], items: list[dict[str, Any]], update: bool, what: str
    ) -> _Answer | None:
        """Why Brevo would refuse these products or categories, if it would."""
        seen: set[str] = set()
        for item in items:
            item_id = item["id"]
            if item_id in seen:
                return _error(400, "invalid_parameter", f"Duplicate {what} id {item_id}")
            seen.add(item_id)
            if item_id in store and not update:
                # NOTES.md §2, Categories: with updateEnabled false an existing id is a 400.
                message = f"{what.capitalize()} {item_id} already exists; set updateEnabled"
                return _error(400, "duplicate_parameter", message)
            if item_id not in store and not item.get("name"):
                return _error(400, "missing_parameter", f"name is required to create a {what}")
        return None

    def _store_catalogue(
        self, store: dict[str, dict[str, Any]], items: list[dict[str, Any]], what: str
    ) -> int:
        """Create or update items; how many were created."""
        created = 0
        for item in items:
            fields = {k: v for k, v in item.items() if k != "updateEnabled"}
            if item["id"] in store:
                store[item["id"]] = {**store[item["id"]], **fields}
            else:
                created += 1
                store[item["id"]] = fields
                self._internal_ids[f"{what}:{item['id']}"] = next(self._ids)
        return created

    def _upsert_one(self, store: dict[str, dict[str, Any]], call: _Call, what: str) -> _Answer:
        update = bool(call.body.get("updateEnabled", False))
        refused = self._catalogue_problem(store, [call.body], update, what)
        if refused is not None:
            return refused
        if self._store_catalogue(store, [call.body], what):
            return 201, {"id": self._internal_ids[f"{what}:{call.body['id']}"]}
        return 204, None

    def _upsert_many(
        self, store: dict[str, dict[str, Any]], call: _Call, key: str, what: str
    ) -> _Answer:
        items = call.body[key]
        update = bool(call.body.get("updateEnabled", False))
        # NOTES.md §2: ≤100 per batch to create, ≤1000 with updateEnabled (products).
        most = 1000 if update and what == "product" else 100
        if len(items) > most:
            return _error(400, "out_of_range", f"{key}: at most {most} per request")
        refused = self._catalogue_problem(store, items, update, what)
        if refused is not None:
            return refused
        created = self._store_catalogue(store, items, what)
        return 201, {"createdCount": created, "updatedCount": len(items) - created}

    def _upsert_product(self, call: _Call) -> _Answer:
        return self._upsert_one(self.products, call, "product")

    def _upsert_products(self, call: _Call) -> _Answer:
        return self._upsert_many(self.products, call, "products", "product")

    def _get_product(self, call: _Call) -> _Answer:
        product = self.products.get(call.params["id"])
        if product is None:
            return _error(404, "document_not_found", "Product does not exist")
        now = _now_iso()
        image = product.get("imageUrl", "")
        return 200, {
            **product,
            "createdAt": now,
            "modifiedAt": now,
            "s3ThumbAnalytics": image,
            "s3ThumbEditor": image,
        }

    def _upsert_category(self, call: _Call) -> _Answer:
        return self._upsert_one(self.categories, call, "category")

    def _upsert_categories(self, call: _Call) -> _Answer:
        return self._upsert_many(self.categories, call, "categories", "category")

    def _upsert_order(self, call: _Call) -> _Answer:
        self.orders[call.body["id"]] = call.body  # upsert by id (NOTES.md §2, Orders)
        return 204, None

    def _upsert_orders(self, call: _Call) -> _Answer:
        orders = call.body["orders"]
        if len(orders) > 1000:
            return _error(400, "out_of_range", "orders: at most 1000 per request")
        for order in orders:
            self.orders[order["id"]] = order
        return 202, {"batchId": next(self._ids), "count": len(orders)}

    def _create_coupon_collection(self, call: _Call) -> _Answer:
        collection_id = str(uuid.uuid4())
        self.coupon_collections[collection_id] = {
            **call.body,
            "id": collection_id,
            "createdAt": _now_iso(),
        }
        self.coupons[collection_id] = set()
        return 201, {"id": collection_id}

    def _get_coupon_collections(self, call: _Call) -> _Answer:
        # A page of collections; see _UNCHECKED_RESPONSES for why not the spec's shape.
        limit = call.query.get("limit", 50)
        offset = call.query.get("offset", 0)
        collections = [
            {
                **collection,
                "totalCoupons": len(self.coupons[collection_id]),
                "remainingCoupons": len(self.coupons[collection_id]),
            }
            for collection_id, collection in self.coupon_collections.items()
        ]
        return 200, {"collections": collections[offset : offset + limit], "count": len(collections)}

    def _create_coupons(self, call: _Call) -> _Answer:
        codes = self.coupons.get(call.body["collectionId"])
        if codes is None:
            return _error(404, "document_not_found", "Coupon collection not found")
        codes.update(call.body["coupons"])
        return 204, None

    def _activate_ecommerce(self, call: _Call) -> _Answer:
        self.ecommerce_activated = True
        return 200, None

    def _get_account(self, call: _Call) -> _Answer:
        return 200, {
            "organization_id": "5f0e3a1b2c4d5e6f7a8b9c0d",
            "user_id": 1,
            "enterprise": False,
            "companyName": "WooBrevo Test Shop",
            "email": "owner@example.com",
            "firstName": "Test",
            "lastName": "Owner",
            "address": {
                "city": "Paris",
                "country": "France",
                "street": "1 rue",
                "zipCode": "75001",
            },
            "dateTimePreferences": {
                "timezone": "Europe/Paris",
                "timeFormat": "24",
                "dateFormat": "dd-mm-yyyy",
            },
            "plan": [{"type": "free", "creditsType": "sendLimit", "credits": 300}],
            "relay": {
                "enabled": True,
                "data": {
                    "userName": "owner@example.com",
                    "relay": "smtp-relay.brevo.com",
                    "port": 587,
                },
            },
            "marketingAutomation": {"enabled": False},
        }


def _respond(status: int, payload: Any, headers: Mapping[str, str]) -> web.Response:
    from aiohttp import web

    if payload is None:
        return web.Response(status=status, headers=headers)
    return web.json_response(payload, status=status, headers=headers)


# --------------------------------------------------------------------------- pytest and CLI


def brevo_fake_fixture(name: str = "brevo", **options: Any) -> Any:
    """A pytest fixture yielding a started BrevoFake; a spec violation fails it at teardown.

    In conftest.py: `brevo = brevo_fake_fixture()`. Options per test:
    `@pytest.mark.parametrize("brevo", [{"enforce_limits": True}], indirect=True)`.
    """
    import pytest_asyncio

    @pytest_asyncio.fixture(name=name)
    async def fixture(request: Any) -> AsyncIterator[BrevoFake]:
        async with BrevoFake(**{**options, **getattr(request, "param", {})}) as fake:
            yield fake
        fake.assert_no_spec_violations()

    return fixture


def _parse_limit(text: str) -> tuple[str, Windows]:
    """--limit other=100/3600,10/1 → ("other", ((100, 3600.0), (10, 1.0)))."""
    family, _, spec = text.partition("=")
    windows = []
    for part in spec.split(","):
        count, _, period = part.partition("/")
        windows.append((int(count), float(period)))
    return family, tuple(windows)


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file so a reader never sees half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    fake = BrevoFake(
        api_key=args.api_key,
        plan=args.plan,
        enforce_limits=args.enforce_limits,
        time_scale=args.time_scale,
        limits=dict(_parse_limit(text) for text in args.limit),
        strict_attributes=args.strict_attributes,
        host=args.host,
        port=args.port,
    )
    async with fake:
        if args.port_file is not None:
            _write_atomic(args.port_file, f"{fake.port}\n")
        # The port on stdout is this tool's interface to the process that started it.
        sys.stdout.write(f"{fake.port}\n")
        sys.stdout.flush()
        await stop.wait()
    if args.summary is not None:
        _write_atomic(args.summary, json.dumps(fake.summary(), indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Serve the fake until SIGTERM; then write the summary."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.brevo", description="Serve the Brevo API v3 fake."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    parser.add_argument("--summary", type=Path, help="write a JSON summary here on SIGTERM")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--plan", choices=sorted(PLAN_LIMITS), default="general")
    parser.add_argument("--enforce-limits", action="store_true", help="answer 429 over limits")
    parser.add_argument("--time-scale", type=float, default=1.0, help="divides every window")
    parser.add_argument("--strict-attributes", action="store_true")
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="FAMILY=COUNT/SECONDS[,...]",
        help="override a family's windows, e.g. other=100/3600",
    )
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
