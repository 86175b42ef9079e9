"""A fast, exact "yes" for the spec's schemas: each schema compiled to a plain predicate that
accepts only what openapi-schema-validator's OAS 3.0 write validator accepts (see
`compile_schema`); jsonschema then runs only to explain a refusal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]


class Unsupported(Exception):
    """The fast check cannot mirror this schema exactly; jsonschema alone decides."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
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
_TYPE_CHECKS: dict[str, Check] = {
    "string": lambda value: isinstance(value, str),
    "integer": _is_int,
    "number": is_number,
    "boolean": lambda value: isinstance(value, bool),
    "array": lambda value: isinstance(value, list),
    "object": lambda value: isinstance(value, dict),
}
# Keywords OAS30WriteValidator acts on that the fast check does not mirror.
_REFUSED_KEYWORDS = frozenset(
    {"$ref", "discriminator", "multipleOf", "pattern", "patternProperties"}
)


def compile_schema(schema: Any, formats: Any, exact: bool = False) -> Check:
    """A predicate that is True only for instances OAS30WriteValidator accepts.

    jsonschema checks a 1000-order batch in ~0.4 s; this in ~10 ms, and jsonschema then only
    runs to explain a refusal (or when this is not sure). It mirrors
    openapi-schema-validator's OAS 3.0 keywords one by one (keywords jsonschema ignores are
    ignored here too). False may mean "not sure" (uniqueItems on non-strings): the caller then
    asks jsonschema. Under `oneOf` and `not` a "not sure" would flip into a wrong yes, so there
    `exact` demands a sure answer or refuses to compile.
    """
    if not isinstance(schema, dict) or _REFUSED_KEYWORDS.intersection(schema):
        raise Unsupported
    if schema.get("readOnly"):
        return _never  # write_readOnly: a request may not carry a read-only value
    nullable = schema.get("nullable") is True
    # A non-nullable object type is checked inside the object's own check (one call less).
    object_checks, typed = _compile_object(
        schema, formats, exact, schema.get("type") == "object" and not nullable
    )
    checks = [
        *([] if typed else _type_checks(schema, nullable)),
        *_enum_checks(schema),
        *_bound_checks(schema, formats),
        *_array_checks(schema, formats, exact),
        *object_checks,
        *_combined_checks(schema, formats, exact),
    ]
    return _every(checks)


def _type_checks(schema: dict[str, Any], nullable: bool) -> list[Check]:
    kind = schema.get("type")
    if kind is None:
        return []
    if not isinstance(kind, str) or kind not in _TYPE_CHECKS:
        raise Unsupported
    is_kind = _TYPE_CHECKS[kind]
    return [(lambda value: value is None or is_kind(value)) if nullable else is_kind]


def _enum_checks(schema: dict[str, Any]) -> list[Check]:
    if "enum" not in schema:
        return []
    members = schema["enum"]
    if not isinstance(members, list) or not all(
        m is None or isinstance(m, str | int | float) for m in members
    ):
        raise Unsupported
    if all(isinstance(m, str) for m in members):
        allowed = frozenset(members)
        return [lambda value: isinstance(value, str) and value in allowed]
    return [lambda value: any(_scalar_equal(value, m) for m in members)]


def _bound_checks(schema: dict[str, Any], formats: Any) -> list[Check]:
    """`format`, and the bounds of strings (lengths) and numbers (minimum, maximum)."""
    checks: list[Check] = []
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
            checks.append(lambda value: not is_number(value) or value > low)
        else:
            checks.append(lambda value: not is_number(value) or value >= low)
    if "maximum" in schema:
        high = schema["maximum"]
        if schema.get("exclusiveMaximum", False):
            checks.append(lambda value: not is_number(value) or value < high)
        else:
            checks.append(lambda value: not is_number(value) or value <= high)
    return checks


def _array_checks(schema: dict[str, Any], formats: Any, exact: bool) -> list[Check]:
    checks: list[Check] = []
    if "items" in schema:
        if not isinstance(schema["items"], dict):
            raise Unsupported
        each = compile_schema(schema["items"], formats, exact)
        checks.append(lambda value: not isinstance(value, list) or all(map(each, value)))
    if "minItems" in schema:
        min_items = schema["minItems"]
        checks.append(lambda value: not isinstance(value, list) or len(value) >= min_items)
    if "maxItems" in schema:
        max_items = schema["maxItems"]
        checks.append(lambda value: not isinstance(value, list) or len(value) <= max_items)
    if schema.get("uniqueItems"):
        if exact:
            raise Unsupported
        checks.append(
            lambda value: (
                not isinstance(value, list)
                or (all(isinstance(v, str) for v in value) and len(set(value)) == len(value))
            )
        )
    return checks


def _combined_checks(schema: dict[str, Any], formats: Any, exact: bool) -> list[Check]:
    """allOf, anyOf, oneOf and not."""
    checks: list[Check] = []
    for keyword in ("allOf", "anyOf", "oneOf"):
        if keyword in schema and not isinstance(schema[keyword], list):
            raise Unsupported
    if "allOf" in schema:
        all_of = [compile_schema(sub, formats, exact) for sub in schema["allOf"]]
        checks.append(lambda value: all(check(value) for check in all_of))
    if "anyOf" in schema:
        any_of = [compile_schema(sub, formats, exact) for sub in schema["anyOf"]]

        def check_any(value: Any) -> bool:
            for check in any_of:  # noqa: SIM110 - see _every
                if check(value):
                    return True
            return False

        checks.append(check_any)
    if "oneOf" in schema:
        one_of = [compile_schema(sub, formats, True) for sub in schema["oneOf"]]
        checks.append(lambda value: sum(1 for check in one_of if check(value)) == 1)
    if "not" in schema:
        negated = compile_schema(schema["not"], formats, True)
        checks.append(lambda value: not negated(value))
    return checks


def _every(checks: list[Check]) -> Check:
    """One predicate that holds when each of `checks` does."""
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
) -> tuple[list[Check], bool]:
    """The object keywords of `schema` (properties, required, additionalProperties, sizes),
    and whether they also check the `object` type, as asked by `typed`."""
    checks: list[Check] = []
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise Unsupported
    known = {name: compile_schema(sub, formats, exact) for name, sub in properties.items()}
    # write_required skips a missing property that is read-only.
    required = tuple(
        name
        for name in schema.get("required", ())
        if not (properties.get(name) and properties[name].get("readOnly", False))
    )
    other = _extra_check(schema.get("additionalProperties", True), formats, exact)
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


def _extra_check(extra: Any, formats: Any, exact: bool) -> Check | None:
    """The check of properties `properties` does not name (None: anything goes)."""
    if extra is True:
        return None
    if extra is False:
        return _never
    if isinstance(extra, dict):
        return compile_schema(extra, formats, exact)
    raise Unsupported
