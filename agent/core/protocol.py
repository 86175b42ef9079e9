"""Stream protocol v1, without sockets: parse what the plugin sends, build what the agent answers.

docs/protocol.md is the authority; every rule below is one of its lines. The websocket shell
(agent/doors/stream.py) feeds text frames in and writes out what these functions return.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from agent.core.events import EVENT_ID, Door, Event, Rejection, parse_event
from agent.core.normalize import normalize_email
from agent.core.storable import loads, problem
from agent.core.times import utc_stamp

__all__ = [
    "MAX_BATCH_ID",
    "PROTOCOL_VERSION",
    "RESOURCES",
    "STREAM_PATH",
    "CloseCode",
    "ErrorCode",
    "Events",
    "Export",
    "HandshakeThrottle",
    "Hello",
    "Message",
    "PeerError",
    "ProtocolError",
    "ack_message",
    "bearer_token",
    "error_message",
    "export_result_message",
    "parse_message",
    "watch_meta",
    "welcome_message",
]

PROTOCOL_VERSION = 1
STREAM_PATH = "/v1/stream"  # the stream door's path (docs/protocol.md)
MAX_BATCH_ID = 128
# The resources whose meta the plugin can watch (docs/protocol.md, `welcome.watch_meta`).
RESOURCES = ("customer", "order", "product", "coupon")
_MAX_TEXT = 2048  # site_url and versions: generous, but bounded before they reach /status


class ErrorCode(StrEnum):
    """The `code` of an agent `error` message."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    PROTOCOL_VERSION = "protocol_version"
    HELLO_REQUIRED = "hello_required"
    BATCH_TOO_LARGE = "batch_too_large"
    BINARY_FRAME = "binary_frame"
    TOKEN_REVOKED = "token_revoked"
    MESSAGE_TIMEOUT = "message_timeout"


class CloseCode(IntEnum):
    """Close codes the agent uses (RFC 6455 §7.4.1)."""

    NORMAL = 1000  # idle timeout
    GOING_AWAY = 1001  # shutting down
    UNSUPPORTED_DATA = 1003  # a binary frame
    POLICY_VIOLATION = 1008  # any other protocol error
    MESSAGE_TOO_BIG = 1009  # over max_message_bytes (closed by the websockets library)
    INTERNAL_ERROR = 1011  # the store failed: nothing was acked


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A message that is not valid protocol v1: send `error`, then close with `close_code`."""

    code: ErrorCode
    message: str

    @property
    def close_code(self) -> CloseCode:
        """1003 for binary frames, 1008 for everything else (docs/protocol.md, `error`)."""
        if self.code is ErrorCode.BINARY_FRAME:
            return CloseCode.UNSUPPORTED_DATA
        return CloseCode.POLICY_VIOLATION


@dataclass(frozen=True, slots=True)
class Hello:
    """The plugin's `hello`: who it says it is (recorded for /status, never used for routing)."""

    site_url: str
    blog_id: int
    plugin_version: str
    wp_version: str
    wc_version: str


@dataclass(frozen=True, slots=True)
class Events:
    """An `events` batch: usable events, and rejected ones with their raw form (dead letters)."""

    batch: str
    ids: tuple[str, ...]
    events: tuple[Event, ...]
    rejected: tuple[tuple[Rejection, object], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class PeerError:
    """An `error` the plugin sent us (logged; the plugin closes the connection)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Export:
    """An `export` request (a WordPress personal-data exporter): what the agent holds about
    `email` (None: the frame's address is not one; the answer says so)."""

    request: str
    email: str | None


Message = Hello | Events | PeerError | Export


def _text(
    obj: Mapping[str, Any], key: str, where: str, limit: int = _MAX_TEXT
) -> str | ProtocolError:
    value = obj.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        return ProtocolError(
            ErrorCode.BAD_MESSAGE, f"{where}.{key}: expected a string of 1-{limit} characters"
        )
    return value


def _parse_hello(obj: Mapping[str, Any]) -> Hello | ProtocolError:
    version = obj.get("protocol")
    if isinstance(version, bool) or not isinstance(version, int):
        return ProtocolError(ErrorCode.BAD_MESSAGE, "hello.protocol: expected the integer 1")
    if version != PROTOCOL_VERSION:
        return ProtocolError(
            ErrorCode.PROTOCOL_VERSION,
            f"hello.protocol: this agent speaks protocol {PROTOCOL_VERSION}, not {version}",
        )
    blog_id = obj.get("blog_id")
    if isinstance(blog_id, bool) or not isinstance(blog_id, int) or blog_id < 1:
        return ProtocolError(ErrorCode.BAD_MESSAGE, "hello.blog_id: expected a positive integer")
    texts: dict[str, str] = {}
    for key in ("site_url", "plugin_version", "wp_version", "wc_version"):
        value = _text(obj, key, "hello")
        if isinstance(value, ProtocolError):
            return value
        texts[key] = value
    return Hello(blog_id=blog_id, **texts)


def _parse_events(obj: Mapping[str, Any], max_batch: int, checked: bool) -> Events | ProtocolError:
    batch = obj.get("batch")
    if not isinstance(batch, str) or not 0 < len(batch) <= MAX_BATCH_ID or not _utf8(batch):
        return ProtocolError(
            ErrorCode.BAD_MESSAGE, f"events.batch: expected a string of 1-{MAX_BATCH_ID} characters"
        )
    raw_events = obj.get("events")
    if not isinstance(raw_events, list) or not raw_events:
        return ProtocolError(ErrorCode.BAD_MESSAGE, "events.events: expected a non-empty array")
    if len(raw_events) > max_batch:
        return ProtocolError(
            ErrorCode.BATCH_TOO_LARGE,
            f"events.events: {len(raw_events)} events; at most {max_batch} per batch (welcome.max_batch)",
        )
    # Ids are checked before anything is stored: an event the ack cannot name could never
    # leave the plugin's outbox, so a missing or malformed id fails the whole message.
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_events):
        if not isinstance(raw, dict):
            return ProtocolError(ErrorCode.BAD_MESSAGE, f"events[{i}]: expected an object")
        eid = raw.get("id")
        if not isinstance(eid, str) or not EVENT_ID.match(eid):
            return ProtocolError(
                ErrorCode.BAD_MESSAGE,
                f"events[{i}].id: expected 1-128 characters of [A-Za-z0-9._:-]",
            )
        if eid in seen:
            return ProtocolError(
                ErrorCode.BAD_MESSAGE, f"events[{i}].id: {eid!r} repeats events[{seen[eid]}].id"
            )
        seen[eid] = i
    events: list[Event] = []
    rejected: list[tuple[Rejection, object]] = []
    for i, raw in enumerate(raw_events):
        parsed = parse_event(raw, door=Door.STREAM, index=i, json_checked=checked)
        if isinstance(parsed, Rejection):
            rejected.append((parsed, raw))
        else:
            events.append(parsed)
    return Events(batch, tuple(seen), tuple(events), tuple(rejected))


def parse_message(
    text: str | bytes, *, hello_seen: bool, max_batch: int
) -> Message | ProtocolError:
    """One frame from the plugin → a message, or the protocol error to report before closing."""
    if isinstance(text, bytes):
        return ProtocolError(
            ErrorCode.BINARY_FRAME, "binary frames are not part of protocol v1; send text"
        )
    read = _read(text)
    if isinstance(read, ProtocolError):
        return read
    obj, checked = read
    if not isinstance(obj, dict):
        return ProtocolError(
            ErrorCode.BAD_JSON, f"expected a JSON object, got {type(obj).__name__}"
        )
    kind = obj.get("type")
    if kind == "hello":
        return _parse_hello(obj)
    if kind == "events":
        if not hello_seen:
            return ProtocolError(ErrorCode.HELLO_REQUIRED, "send hello before events")
        return _parse_events(obj, max_batch, checked)
    if kind == "export":
        if not hello_seen:
            return ProtocolError(ErrorCode.HELLO_REQUIRED, "send hello before export")
        request = _text(obj, "request", "export", MAX_BATCH_ID)
        if isinstance(request, ProtocolError):
            return request
        return Export(request, normalize_email(obj.get("email")))
    if kind == "error":
        code, message = obj.get("code"), obj.get("message")
        return PeerError(str(code)[:200], str(message)[:2000])
    if not isinstance(kind, str):
        return ProtocolError(
            ErrorCode.BAD_MESSAGE, "type: missing (expected hello, events, export or error)"
        )
    return ProtocolError(
        ErrorCode.BAD_MESSAGE,
        f"type: unknown {kind[:64]!r} (expected hello, events, export or error)",
    )


def _read(text: str) -> tuple[Any, bool] | ProtocolError:
    """A frame's JSON and whether orjson read it (agent/core/storable.py `loads`).

    orjson (twice the stdlib's speed on a 100-order batch) unless it refuses the text or would
    turn an integer past 64 bits into a float: then the json module, so that an events batch
    holding one event the store cannot keep (NaN, such an integer, a lone surrogate, nesting
    past 1,024 levels) loses only that event. Any other message holding one is refused whole.
    """
    try:
        obj, checked = loads(text)
    except ValueError as exc:
        return ProtocolError(ErrorCode.BAD_JSON, f"not JSON: {exc}")
    if not checked and not (isinstance(obj, dict) and obj.get("type") == "events"):
        found = problem(obj, "message")
        if found is not None:
            return ProtocolError(ErrorCode.BAD_JSON, f"not JSON the agent takes: {found.message}")
    return obj, checked


def _utf8(text: str) -> bool:
    """Whether `text` is Unicode text (no lone surrogate: it goes into logs and the ack)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def watch_meta(
    customer_mapping: Mapping[str, str], order_mapping: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """Meta keys per resource that the mapping reads (`meta_data.KEY[.sub]` paths → KEY)."""
    out: dict[str, list[str]] = {r: [] for r in RESOURCES}
    for resource, mapping in (("customer", customer_mapping), ("order", order_mapping or {})):
        keys = {
            p.split(".")[1] for p in mapping if p.startswith("meta_data.") and p.count(".") >= 1
        }
        out[resource] = sorted(keys)
    return out


def welcome_message(
    site: str,
    *,
    max_batch: int,
    max_message_bytes: int,
    watch: dict[str, list[str]],
    now: float,
    carts: tuple[bool, float] = (True, 7 * 86400.0),
    figures: Mapping[str, float | None] | None = None,
    consent_mode: str = "implied",
) -> str:
    """The agent's answer to each `hello`. `carts` is (enabled, link_lifetime in seconds): the
    plugin captures carts when enabled and signs restore links to expire after the lifetime.
    `figures`, the site's cart figures as /status has them, go along while carts are enabled
    (the plugin's status panel shows them). `consent_mode` is the site's `consent.mode`
    (implied | required), for the plugin's settings page."""
    enabled, lifetime = carts
    cart_settings: dict[str, Any] = {"enabled": enabled, "link_lifetime": int(lifetime)}
    if enabled and figures is not None:
        cart_settings["figures"] = dict(figures)
    return json.dumps(
        {
            "type": "welcome",
            "site": site,
            "protocol": PROTOCOL_VERSION,
            "max_batch": max_batch,
            "max_message_bytes": max_message_bytes,
            "watch_meta": watch,
            "server_time": utc_stamp(now),
            "carts": cart_settings,
            "consent": {"mode": consent_mode},
        }
    )


def ack_message(batch: str, accepted: list[str], rejected: list[Rejection]) -> str:
    """The `ack` of a committed batch."""
    return json.dumps(
        {
            "type": "ack",
            "batch": batch,
            "accepted": accepted,
            "rejected": [{"id": r.id, "code": r.code, "message": r.message} for r in rejected],
        }
    )


def export_result_message(
    request: str,
    groups: list[dict[str, Any]] | None,
    error: str = "email: expected the address to export, such as person@example.com",
) -> str:
    """The answer to an `export`: the groups (agent/core/privacy.py `export_groups`), or, when
    there are none to give (None), no group and an `error` saying why."""
    message: dict[str, Any] = {"type": "export_result", "request": request, "groups": groups or []}
    if groups is None:
        message["error"] = error
    return json.dumps(message)


def error_message(err: ProtocolError) -> str:
    """The `error` sent before closing."""
    return json.dumps({"type": "error", "code": err.code.value, "message": err.message})


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None.

    The scheme is case-insensitive (RFC 7235 §2.1); the token is RFC 6750 §2.1's b64token.
    """
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not re.fullmatch(r"[A-Za-z0-9\-._~+/]+=*", token):
        return None
    return token


class HandshakeThrottle:
    """Refused handshakes per address in a sliding window; past `limit`, refuse with 429.

    A token is checked only once a check is begun (`begin`), and at most `limit` checks of an
    address are counted at a time, refused or still under way: 1,000 handshakes at once from
    one address see at most `limit` token checks, not as many as get past the first look
    (issue 16). `end` says how each ended.

    Pure: the caller passes the time. Memory is bounded by `max_addresses` (oldest evicted), so
    a scan from many addresses cannot grow it without limit; the checks under way are bounded
    by the connections open.
    """

    def __init__(self, limit: int, window: float = 60.0, max_addresses: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._fails: dict[str, deque[float]] = {}
        self._checking: dict[str, int] = {}

    def retry_after(self, addr: str, now: float) -> float | None:
        """Seconds until `addr` may try again, or None when it is not throttled."""
        fails = self._recent(addr, now)
        if fails is None or len(fails) < self.limit:
            return None
        return max(fails[0] + self.window - now, 1.0)

    def begin(self, addr: str, now: float) -> bool:
        """Count one token check from `addr` under way, if refusals and checks under way leave
        room for it; False: wait until one of those ends (`end`), then ask again."""
        fails = self._recent(addr, now)
        checking = self._checking.get(addr, 0)
        if (len(fails) if fails else 0) + checking >= self.limit:
            return False
        self._checking[addr] = checking + 1
        return True

    def end(self, addr: str, now: float, *, refused: bool) -> None:
        """A check `begin` counted is over; a refused token counts as a refused handshake."""
        left = self._checking.pop(addr, 1) - 1
        if left > 0:
            self._checking[addr] = left
        if refused:
            self.failure(addr, now)

    def failure(self, addr: str, now: float) -> None:
        """Count one refused handshake from `addr`."""
        fails = self._fails.pop(addr, None)
        if fails is None:
            fails = deque(maxlen=self.limit)
            if len(self._fails) >= self.max_addresses:
                del self._fails[next(iter(self._fails))]
        fails.append(now)
        self._fails[addr] = fails  # re-inserted last: dict order is least recently failed first

    def _recent(self, addr: str, now: float) -> deque[float] | None:
        """`addr`'s refusals within the window (older ones dropped), or None."""
        fails = self._fails.get(addr)
        if fails is None:
            return None
        while fails and fails[0] <= now - self.window:
            fails.popleft()
        if not fails:
            del self._fails[addr]
            return None
        return fails
