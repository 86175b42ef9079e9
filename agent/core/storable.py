"""What the store can keep: JSON every door reads, checked before an event is stored.

The inbox writes payloads with orjson and ids into SQLite INTEGER columns. orjson refuses
containers nested past 254 levels, integers outside -2^63..2^64-1, strings holding a lone UTF-16
surrogate and keys that are not strings, and writes NaN and infinities as null. Before issue 16
(finding 3) an event holding one of these parsed, then failed its batch's commit, on every
resend, and nothing behind it shipped. Now `problem` names the first such value so that
`parse_event` refuses that event alone; `loads` reads what orjson refuses to read (NaN,
integers past 64 bits, lone surrogates, nesting past 1,024 levels) without failing the message
around it, and `keepable` makes a refused event fit a dead letter. Pure, and none of it
recurses on the input: a value nested 100,000 levels deep costs time, not the stack.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "MAX_DEPTH",
    "UNSTORABLE",
    "NotJson",
    "Problem",
    "keepable",
    "loads",
    "loads_lenient",
    "problem",
]

# Containers nested in one payload (the payload itself is level 1): far past any REST object
# (an order is 4 levels, a meta value's own arrays add a few) and well inside orjson's 254, so
# what wraps a payload (a dead letter, a Brevo body) is never the level too many. The plugin
# caps its payloads lower (docs/protocol.md, Limits).
MAX_DEPTH = 128
# Integers the store keeps: what orjson writes (int64 and uint64).
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# The rejection codes of this module (the webhook door answers them 422, docs/doors.md).
UNSTORABLE = frozenset(
    {"too_deep", "integer_out_of_range", "invalid_string", "non_finite_number", "not_json_value"}
)
# Where `loads` cuts nesting it cannot read: past any payload's MAX_DEPTH, whatever wraps it
# (a stream frame puts payloads 4 levels down), and far from Python's recursion limit.
_CUT_AT = MAX_DEPTH + 16
# What a cut subtree becomes in the text `loads` hands to the json module: an integer literal
# past 64 bits (so even read as a number it could never be stored), known to `_int` below.
_CUT = "-99999999999999999999999999999999"
_CUT_TEXT = f"[cut: nested deeper than {_CUT_AT} levels]"
# A JSON string (escapes and all) or a bracket: what `_cut_deep` counts.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a value cannot be stored: a rejection code and what was wrong, where."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class NotJson:
    """A value `loads` read that the store cannot keep: a rejection code and the source text.
    Neither orjson nor the json module writes it, so it can never be stored by mistake."""

    code: str
    text: str


# -- reading ------------------------------------------------------------------------------


def loads(data: str | bytes) -> tuple[Any, bool]:
    """JSON text → (value, checked). `checked`: orjson read it, so it holds no NaN, infinity,
    lone surrogate or integer the store cannot write, and nesting past MAX_DEPTH is the only
    thing left for `problem` to find. Otherwise (orjson refused it, or it may hold an integer
    orjson would turn into a float) the json module read it, every value the store cannot keep
    a `NotJson` (nesting past `_CUT_AT` cut first). ValueError: not JSON at all."""
    if not _long_digits(data):
        try:
            return orjson.loads(data), True
        except orjson.JSONDecodeError:
            pass
    return loads_lenient(data), False


# orjson reads an integer past 64 bits as a float, silently (2**64 → 1.8446744073709552e19;
# -2**63-1 too): text with a run of 19 digits anywhere (strings included: a hint, about 0.4 ms
# for a 100-order batch) goes to the json module, which reads every integer exactly.
_TO_ZERO = str.maketrans("123456789", "000000000")
_TO_ZERO_BYTES = bytes.maketrans(b"123456789", b"000000000")


def _long_digits(data: str | bytes) -> bool:
    if isinstance(data, bytes):
        return b"0" * 19 in data.translate(_TO_ZERO_BYTES)
    return "0" * 19 in data.translate(_TO_ZERO)


def loads_lenient(data: str | bytes) -> Any:
    """JSON text → its value as the json module reads it, every value the store cannot keep a
    `NotJson`, nesting past `_CUT_AT` cut (`loads` when orjson refused the text). ValueError:
    not JSON at all."""
    if isinstance(data, bytes):
        text = data.decode(json.detect_encoding(data), "surrogatepass")
    else:
        text = data
    return json.loads(_cut_deep(text), parse_constant=_constant, parse_float=_float, parse_int=_int)


def _constant(text: str) -> NotJson:
    return NotJson("non_finite_number", text)


def _float(text: str) -> float | NotJson:
    value = float(text)
    return value if math.isfinite(value) else NotJson("non_finite_number", text)


def _int(text: str) -> int | NotJson:
    if text == _CUT:
        return NotJson("too_deep", _CUT_TEXT)
    # Past 20 digits it cannot fit; the check also spares int() Python's 4,300-digit limit.
    if len(text) > 21:
        return NotJson("integer_out_of_range", text)
    value = int(text)
    return value if _INT_MIN <= value <= _INT_MAX else NotJson("integer_out_of_range", text)


def _cut_deep(text: str) -> str:
    """`text` with every container deeper than `_CUT_AT` replaced by `_CUT`; as it was when
    nothing is that deep. Strings are skipped whole, so brackets inside them do not count."""
    depth, start, last = 0, -1, 0
    parts: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth == _CUT_AT + 1:
                start = match.start()
        elif token in ("]", "}"):
            if depth == _CUT_AT + 1 and start >= 0:
                parts += (text[last:start], _CUT)
                last, start = match.end(), -1
            depth -= 1
    if not parts:
        return text
    if start >= 0:  # unbalanced: left for json to refuse
        return text
    parts.append(text[last:])
    return "".join(parts)


# -- checking -----------------------------------------------------------------------------


def problem(value: Any, where: str, *, checked: bool = False) -> Problem | None:
    """The first thing in `value` the store cannot keep, or None. `where` names the value in
    the message (`payload`). `checked`: `value` came from orjson (see `loads`)."""
    try:
        dumped = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is one
        return _find(value, where) or Problem("not_json_value", f"{where}: not JSON")
    if checked and dumped.count(b"[") + dumped.count(b"{") <= MAX_DEPTH:
        return None  # fewer brackets than levels allowed, counting those inside strings
    return _find(value, where)


def _clean(value: Any) -> bool:
    """Whether `value` holds nothing `_find` would report: the walk every payload of a door
    other than the stream takes (about 20 µs for an order), without paths or generators."""
    if type(value) is not dict and type(value) is not list:
        return _scalar(value) is None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        is_dict = type(node) is dict
        for key, item in node.items() if is_dict else enumerate(node):
            if is_dict and (type(key) is not str or (not key.isascii() and _scalar(key))):
                return False
            kind = type(item)
            if kind is dict or kind is list:
                stack.append((item, depth + 1))
            elif kind is str:
                if not item.isascii() and _scalar(item) is not None:
                    return False
            elif item is not None and kind is not bool and _scalar(item) is not None:
                return False
    return True


def _find(value: Any, where: str) -> Problem | None:
    if _clean(value):
        return None
    for node, depth, path in _walk(value):
        if depth > MAX_DEPTH:
            return Problem(
                "too_deep",
                f"{_path(where, path)}: nested deeper than {MAX_DEPTH} levels (the agent"
                f" keeps at most {MAX_DEPTH}; docs/protocol.md, Limits)",
            )
        found = _scalar(node) if depth < 0 else None
        if found is not None:  # the path is spelled out only now: the walk stays cheap
            return Problem(found[0], f"{_path(where, path)}: {found[1]}")
    return None


# A path as a linked list of keys, built only as far as the walk goes: (parent, key).
_Path = tuple[Any, Any] | None


def _walk(value: Any) -> Iterator[tuple[Any, int, _Path]]:
    """Every container with its depth, every scalar and key with depth -1, depth first,
    without recursion (the caller stops at the first container past MAX_DEPTH)."""
    stack: list[tuple[Any, int, _Path]] = [(value, 1, None)]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            yield node, depth, path
            for key, item in reversed(node.items()):
                yield _Key(key), -1, (path, key)
                stack.append((item, depth + 1, (path, key)))
        elif isinstance(node, list):
            yield node, depth, path
            for i in range(len(node) - 1, -1, -1):
                stack.append((node[i], depth + 1, (path, i)))
        else:
            yield node, -1, path


@dataclass(frozen=True, slots=True)
class _Key:
    """A dict key as `_walk` yields it (keys have rules of their own)."""

    key: Any


def _scalar(node: Any) -> tuple[str, str] | None:
    """What is wrong with one scalar or key: (code, what), or None."""
    kind = type(node)
    if kind is str:
        return _text(node, "text")
    if node is None or kind is bool:
        return None
    if kind is int:
        if _INT_MIN <= node <= _INT_MAX:
            return None
        shown = str(node) if node.bit_length() < 10_000 else ""  # str() stops at 4,300 digits
        return "integer_out_of_range", _explain("integer_out_of_range", shown)
    if kind is float:
        if math.isfinite(node):
            return None
        return "non_finite_number", _explain("non_finite_number", repr(node))
    if kind is _Key:
        if not isinstance(node.key, str):
            return "not_json_value", "a key that is not a string"
        return _text(node.key, "a key")
    if kind is NotJson:
        return node.code, _explain(node.code, node.text)
    if isinstance(node, str | int | float):  # subclasses (an IntEnum…): as their base
        return _scalar(str(node) if isinstance(node, str) else node.real)
    return "not_json_value", f"a {kind.__name__} is not a JSON value"


def _text(text: str, what: str) -> tuple[str, str] | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid_string", f"{what} holding a lone UTF-16 surrogate (such as \\ud800)"
    return None


def _explain(code: str, text: str) -> str:
    if code == "integer_out_of_range":
        shown = f" {text[:24]}…" if len(text) > 24 else f" {text}" if text else ""
        return f"integer{shown} outside -2^63..2^64-1 (what the agent's store keeps)"
    if code == "non_finite_number":
        return f"{text[:24]} is not a finite number (JSON has no NaN or Infinity)"
    return f"nested deeper than {MAX_DEPTH} levels (the agent keeps at most {MAX_DEPTH})"


def _path(where: str, path: _Path) -> str:
    """`payload.line_items[0].meta_data`: where a value is, its middle left out past 8 keys."""
    keys: list[Any] = []
    while path is not None:
        path, key = path
        keys.append(key)
    keys.reverse()
    parts = [_segment(key) for key in keys]
    if len(parts) > 8:
        parts = [*parts[:6], f"…({len(parts) - 7} levels)…", parts[-1]]
    return where + "".join(parts)


def _segment(key: Any) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    text = str(key)[:40]
    return f".{text}" if text.isidentifier() else f"[{text!r}]"


# -- keeping ------------------------------------------------------------------------------


def keepable(value: Any, depth: int = _CUT_AT) -> Any:
    """A refused raw event as a dead letter can hold it (the json module writes it; the
    store's recursive helpers may walk it): containers past `depth` become a short text, a
    `NotJson` its source text (NaN, a long integer: what was sent) when Python can hold that,
    else the text itself. The input is not changed; without any of these, it is returned."""
    if not _needs_keeping(value, depth):
        return value
    root: list[Any] = [None]
    stack: list[tuple[Any, int, Any, Any]] = [(value, 1, root, 0)]
    while stack:
        node, level, into, slot = stack.pop()
        if isinstance(node, dict | list) and level > depth:
            into[slot] = _CUT_TEXT
        elif isinstance(node, dict):
            copy: dict[Any, Any] = {}
            into[slot] = copy
            for key, item in node.items():
                copy[key] = None
                stack.append((item, level + 1, copy, key))
        elif isinstance(node, list):
            items: list[Any] = [None] * len(node)
            into[slot] = items
            stack.extend((item, level + 1, items, i) for i, item in enumerate(node))
        elif isinstance(node, NotJson):
            into[slot] = _source(node)
        else:
            into[slot] = node
    return root[0]


def _needs_keeping(value: Any, depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, NotJson):
            return True
        if isinstance(node, dict | list):
            if level > depth:
                return True
            items = node.values() if isinstance(node, dict) else node
            stack.extend((item, level + 1) for item in items)
    return False


def _source(node: NotJson) -> Any:
    """What a NotJson stood for, as json.dumps writes it back (NaN stays NaN), when it can."""
    if node.code == "non_finite_number":
        return float(node.text)  # "NaN", "Infinity", "1e400" → nan, inf: written back as is
    if node.code == "integer_out_of_range" and len(node.text) <= 4000:
        return int(node.text)
    return node.text
