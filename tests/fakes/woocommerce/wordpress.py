"""PHP and WordPress behaviour the WooCommerce fake copies byte for byte: JSON encoding, query
parsing, ``WP_Error``, parameter validation, ``_fields`` filtering and query building."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote, unquote_plus

from tests.fakes.woocommerce.records import ApiKey


def php_json(value: Any) -> str:
    """``wp_json_encode()`` as WordPress REST sends it: compact, ``\\/`` and ``\\uXXXX`` escapes."""
    # PHP escapes every '/', and '/' only ever occurs inside JSON strings, so replacing it in
    # the encoded text is exact.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/")


def php_empty(value: Any) -> bool:
    """PHP ``empty()`` for request values: unset, "" and "0" are empty."""
    return value is None or value == "" or value == "0" or value == [] or value == {}


def php_var_name(name: str) -> str:
    # php_register_variable_ex(): leading spaces dropped, ' ' and '.' become '_'.
    return name.lstrip(" ").replace(".", "_").replace(" ", "_")


def parse_php_query(query: str, *, plus_is_space: bool = True) -> dict[str, Any]:
    """PHP ``parse_str``/``$_GET``: ``a[]=`` lists, ``a[k]=`` maps, last scalar wins."""
    result: dict[str, Any] = {}
    for part in query.split("&"):
        if not part:
            continue
        raw_key, _, raw_value = part.partition("=")
        decode = unquote_plus if plus_is_space else unquote
        key, value = decode(raw_key), decode(raw_value)
        bracket = key.find("[")
        if bracket <= 0 or "]" not in key[bracket:]:
            result[php_var_name(key.replace("[", "_"))] = value
            continue
        base = php_var_name(key[:bracket])
        subkeys = re.findall(r"\[([^\]]*)\]", key[bracket:])
        node: Any = result.setdefault(base, {})
        if not isinstance(node, dict):
            node = result[base] = {}
        for i, sub in enumerate(subkeys):
            last = i == len(subkeys) - 1
            if sub == "":
                sub = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[sub] = value
            else:
                child = node.get(sub)
                if not isinstance(child, dict):
                    child = node[sub] = {}
                node = child
    return result


def php_list(value: Any) -> list[str]:
    """``wp_parse_list``: an array's values, or a string split on commas and spaces."""
    if isinstance(value, dict):
        return [str(v) for v in value.values()]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [p for p in re.split(r"[\s,]+", str(value)) if p]


def wp_sprintf_l(items: Sequence[str]) -> str:
    """WordPress' ``%l``: "a and b", "a, b, and c"."""
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + ", and " + items[-1]


class WordPressUrls:
    """The site's URLs as WordPress builds them (a base of WooFake's mixins)."""

    host: str
    port: int
    home_path: str
    is_ssl: bool
    pretty_permalinks: bool

    @property
    def home_url(self) -> str:
        """``home_url()`` as WordPress sees it (its scheme follows `is_ssl`)."""
        scheme = "https" if self.is_ssl else "http"
        return f"{scheme}://{self.host}:{self.port}{self.home_path}"

    @property
    def rest_root(self) -> str:
        """``rest_url()`` without the route."""
        if self.pretty_permalinks:
            return f"{self.home_url}/wp-json"
        return f"{self.home_url}/index.php?rest_route="


class WpError(Exception):
    """A ``WP_Error`` on its way to the client as ``{code, message, data:{status,…}}``."""

    def __init__(self, code: str, message: str, status: int, **data: Any) -> None:
        super().__init__(code)
        self.code, self.message, self.status, self.data = code, message, status, data

    def body(self) -> dict[str, Any]:
        """The JSON WordPress sends."""
        return {
            "code": self.code,
            "message": self.message,
            "data": {"status": self.status, **self.data},
        }


@dataclass
class WpRequest:
    method: str
    raw_uri: str  # REQUEST_URI, undecoded
    raw_path: str
    get: dict[str, Any]  # $_GET
    post: dict[str, Any]  # $_POST (form bodies only)
    json: Any
    headers: Mapping[str, str]
    query_pairs: list[tuple[str, str]]  # request order, for Link headers


@dataclass
class Auth:
    user: ApiKey | None = None
    error: WpError | None = None
    method: str = ""


# A parameter spec: its name and schema (routes.py lists them per route).
Spec = tuple[str, dict[str, Any]]

# rest_parse_date(): the only date-time shapes WordPress accepts.
_DATE_RE: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_INT_RE: Final = re.compile(r"^-?\d+$")
_TRUE_FALSE: Final = {"true": True, "1": True, "false": False, "0": False}


def _parse_wp_date(value: str) -> int | None:
    """Seconds since the epoch (site timezone UTC); None when WordPress would refuse it."""
    match = _DATE_RE.match(value)
    if not match:
        return None
    y, mo, d, h, mi, s = (int(g) for g in match.groups()[:6])
    try:
        ts = int(datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp())
    except ValueError:
        return None
    tz = match.group(8)
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + (int(digits[2:4]) * 60 if len(digits) > 2 else 0)
        ts -= sign * offset
    return ts


class _Invalid(Exception):
    """A parameter WordPress refuses: the code, message and data of its entry in `details`."""

    def __init__(self, code: str, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _as_integer(name: str, spec: dict[str, Any], value: Any) -> int:
    text = str(value) if not isinstance(value, dict) else ""
    if not _INT_RE.match(text):
        raise _Invalid("rest_invalid_type", f"{name} is not of type integer.", {"param": name})
    number = int(text)
    low, high = spec.get("minimum"), spec.get("maximum")
    if low is not None and high is not None and not low <= number <= high:
        raise _Invalid(
            "rest_out_of_bounds",
            f"{name} must be between {low} (inclusive) and {high} (inclusive)",
        )
    if low is not None and high is None and number < low:
        raise _Invalid("rest_out_of_bounds", f"{name} must be greater than or equal to {low}")
    return number


def _as_enum(name: str, spec: dict[str, Any], value: Any) -> Any:
    if value not in spec["enum"]:
        raise _Invalid("rest_not_in_enum", f"{name} is not one of {wp_sprintf_l(spec['enum'])}.")
    return value


def _as_enum_list(name: str, spec: dict[str, Any], value: Any) -> list[str]:
    items = php_list(value)
    bad = [i for i, v in enumerate(items) if v not in spec["enum"]]
    if bad:
        raise _Invalid(
            "rest_not_in_enum", f"{name}[{bad[0]}] is not one of {wp_sprintf_l(spec['enum'])}."
        )
    return items


def _as_id_list(name: str, spec: dict[str, Any], value: Any) -> list[int]:
    items = php_list(value)
    bad = [i for i, v in enumerate(items) if not _INT_RE.match(v)]
    if bad:
        raise _Invalid(
            "rest_invalid_type",
            f"{name}[{bad[0]}] is not of type integer.",
            {"param": f"{name}[{bad[0]}]"},
        )
    return [abs(int(v)) for v in items]


def _as_date(name: str, spec: dict[str, Any], value: Any) -> int:
    ts = _parse_wp_date(str(value))
    if ts is None:
        raise _Invalid("rest_invalid_date", "Invalid date.")
    return ts


def _as_boolean(name: str, spec: dict[str, Any], value: Any) -> bool:
    flag = _TRUE_FALSE.get(str(value).lower())
    if flag is None:
        raise _Invalid("rest_invalid_type", f"{name} is not of type boolean.", {"param": name})
    return flag


def _as_email(name: str, spec: dict[str, Any], value: Any) -> str:
    if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", str(value)):
        raise _Invalid("rest_invalid_email", "Invalid email address.")
    return str(value)


def _as_text(name: str, spec: dict[str, Any], value: Any) -> str:
    return str(value)


_Sanitizer = Callable[[str, dict[str, Any], Any], Any]
# Each spec type's check and sanitizer; a type not listed is kept as text.
_SANITIZE: Final[dict[str, _Sanitizer]] = {
    "integer": _as_integer,
    "enum": _as_enum,
    "enum_list": _as_enum_list,
    "id_list": _as_id_list,
    "date-time": _as_date,
    "boolean": _as_boolean,
    "email": _as_email,
}


def validate(specs: Sequence[Spec], params: Mapping[str, Any]) -> dict[str, Any]:
    """``WP_REST_Request::has_valid_params()`` then ``sanitize_params()`` for our specs."""
    invalid: dict[str, str] = {}
    details: dict[str, Any] = {}
    clean: dict[str, Any] = {}
    for name, spec in specs:
        if name not in params:
            continue
        sanitize: _Sanitizer = _SANITIZE.get(spec["type"], _as_text)
        try:
            clean[name] = sanitize(name, spec, params[name])
        except _Invalid as refused:
            invalid[name] = refused.message
            details[name] = {"code": refused.code, "message": refused.message, "data": refused.data}
    if invalid:
        raise WpError(
            "rest_invalid_param",
            f"Invalid parameter(s): {', '.join(invalid)}",
            400,
            params=invalid,
            details=details,
        )
    return clean


def filter_fields(data: Any, fields_param: Any) -> Any:
    """``rest_filter_response_fields()``: keep only the requested (dotted) fields.

    WooCommerce always *computes* ``id`` (WC_REST_Controller::get_fields_for_response), but this
    WordPress filter runs after it on ``rest_post_dispatch`` and drops ``id`` unless asked for.
    """
    fields = [f.strip() for f in php_list(fields_param) if f.strip()]
    if not fields:
        return data
    tree: dict[str, Any] = {}
    for name in fields:
        parts = name.split(".")
        node = tree
        skip = False
        for part in parts[:-1]:
            if node.get(part) is True:
                skip = True  # the parent is already included whole
                break
            node = node.setdefault(part, {})
        if not skip:
            node[parts[-1]] = True

    def intersect(value: Any, spec: dict[str, Any]) -> Any:
        if isinstance(value, list):
            # array_intersect_key() on a PHP list with string keys keeps nothing.
            return []
        if not isinstance(value, dict):
            return value
        out = {}
        for key, item in value.items():
            if key in spec:
                sub = spec[key]
                out[key] = intersect(item, sub) if isinstance(sub, dict) else item
        return out

    if isinstance(data, list):
        return [intersect(item, tree) for item in data]
    return intersect(data, tree)


def build_query(pairs: Iterable[tuple[str, Any]]) -> str:
    """``build_query()`` via ``add_query_arg()``: values raw, arrays as ``key%5Bi%5D``."""
    out: list[str] = []
    for key, value in pairs:
        if isinstance(value, list | dict):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            out.extend(f"{key}%5B{i}%5D={v}" for i, v in items)
        else:
            out.append(f"{key}={value}")
    return "&".join(out)
