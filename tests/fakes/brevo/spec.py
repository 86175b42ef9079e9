"""Brevo's OpenAPI document as the fake checks requests against it: routes, per-operation
validators (compiled once, cached), and the response schemas the fake's own answers meet."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tests.fakes.brevo.errata import patch_spec
from tests.fakes.brevo.fastcheck import Check, Unsupported, compile_schema

_SPEC_URI = "urn:woobrevo:brevo-openapi"


@dataclass(frozen=True, slots=True)
class _Schema:
    """One schema: a fast exact yes, and jsonschema's validator for every no and its message."""

    fast: Check | None
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


def _query_value(param: _Param, query: Any) -> Any:
    """A query parameter's URL text as the JSON value its schema describes."""
    if param.kind != "array":
        return _from_text(query[param.name], param.kind)
    texts = list(query.getall(param.name))
    if not param.explode:
        texts = [t for text in texts for t in text.split(",")]
    return [_from_text(text, param.items_kind) for text in texts]


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
                value = _query_value(param, query)
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
        """`node` with every local $ref replaced by its target; Unsupported on a cycle."""
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
            raise Unsupported
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
            fast: Check | None = compile_schema(self._inline(self._node(pointer)), self._formats)
        except Unsupported:
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
