"""The agent's log lines: one setup for every command, two formats, context, and redaction.

- **Formats.** `text` (the default) is one human line a record, as always:
  `2025-01-31 06:00:00,123 WARNING agent.stream: site shop connected from 10.0.0.7`.
  `json` is one JSON object a line, for journald and log shippers: `time` (ISO 8601, UTC),
  `level`, `logger`, `message`, and when known `site`, `door`, `event_id`, `job_id` (and
  `batch`, `jobs`, `account`), plus `exception` with the traceback. Chosen by `--log-format`,
  else `agent.log_format` (docs/doors.md, "Logs").
- **Context.** The doors, the processor and the forwarder say which site, door, event or job
  they are working for with `log_context(...)` (a block) or `bind(...)` (the rest of the
  current task): a contextvar, so every line logged meanwhile carries it, whichever module
  logs it, and call sites keep their plain `log.info(...)`. `extra={"site": …}` works too.
- **Secrets never leave.** Each source is kept clean (the websockets library's debug lines,
  which print the stream's `Authorization: Bearer <token>` header, are off; the HTTP server
  keeps no access log; the WooCommerce client scrubs its errors); as a last line of defence
  every line, exception text included, goes through `redact`: the secret values of the loaded
  config (`protect`, with their URL and Basic-auth encodings) and what looks like a credential
  (`Bearer …`, `Basic …`, `xkeysib-…`, `ck_…`/`cs_…`, `consumer_secret=…`, `token=…`,
  `api-key: …`) become `****`.
- **One record, one line.** Text a client sent (the plugin's `error` message, a webhook's
  topic, an event id) could carry a newline and a forged line after it, or a terminal escape:
  the text format escapes every control character of a message (`\n`, `\x1b`), and the doors
  pass such text through `untrusted` (escaped and length-capped) before they log it. The JSON
  format is safe by its encoding.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Literal, TextIO, cast
from urllib.parse import quote, quote_plus

__all__ = [
    "FORMATS",
    "LogFormat",
    "bind",
    "json_output",
    "log_context",
    "protect",
    "redact",
    "setup_logging",
    "untrusted",
]

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The context keys a JSON line carries, in this order, after time, level, logger and message.
FIELDS = ("site", "door", "event_id", "batch", "job_id", "jobs", "account")
MASK = "****"
# Shorter values are not looked for: replacing a 3-letter word everywhere would garble every
# line and protect nothing (no key or secret the agent takes is that short).
MIN_SECRET = 6
# C0 and C1 control characters, DEL, and Unicode's line and paragraph separators: what could
# end a log line early, forge the next one or drive a terminal (issue 16, finding 6).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# How much of a client's text a log line quotes (`untrusted`).
UNTRUSTED_CHARS = 500

# Libraries whose debug lines carry credentials or personal data: websockets prints every
# handshake header (the stream's `Authorization: Bearer <token>`) and the first bytes of every
# frame (customers' addresses); aiohttp's access and client loggers print URLs (the Brevo
# webhook door's `?token=`). They log at INFO at most, whatever `--log-level` says.
QUIET_LIBRARIES = ("websockets", "aiohttp.access", "aiohttp.client")

_NOTHING: Mapping[str, object] = MappingProxyType({})
_context: ContextVar[Mapping[str, object]] = ContextVar("woobrevo_log_context", default=_NOTHING)

# What looks like a credential, whoever logs it. Each keeps what names the credential and
# masks its value.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # An Authorization header's credentials, or a bearer token anywhere (RFC 6750 §2.1).
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1\2" + MASK),
    # Brevo's API (v3) and SMTP keys.
    (re.compile(r"\b(xkeysib|xsmtpsib)-[A-Za-z0-9-]{6,}"), r"\1-" + MASK),
    # WooCommerce REST API keys (`ck_` / `cs_` and 40 hex digits).
    (re.compile(r"\b(ck|cs)_[A-Za-z0-9]{6,}"), r"\1_" + MASK),
    # Query and form parameters that carry a credential (WooCommerce's `auth: query`, OAuth
    # 1.0a's, the Brevo webhook door's `?token=`).
    (
        re.compile(
            r"(?i)\b(consumer_key|consumer_secret|oauth_consumer_key|oauth_signature|token"
            r"|access_token|api_key|apikey|api-key|webhook_secret|secret|password)"
            r"=[^\s&\"'#<>]{4,}"
        ),
        r"\1=" + MASK,
    ),
    # Headers: Brevo's `api-key: …`, a raw `Authorization: …` without a scheme.
    (
        re.compile(
            r"(?i)\b(api-key|x-api-key|authorization)(\s*:\s*)(?!(?:bearer|basic)\b)"
            r"[^\s\"',}]{4,}"
        ),
        r"\1\2" + MASK,
    ),
    # A mapping dumped as JSON or repr: "consumer_secret": "…", 'api-key': '…'.
    (
        re.compile(
            r"(?i)([\"'](?:consumer_key|consumer_secret|api_key|api-key|webhook_secret|secret"
            r"|token|password|authorization)[\"']\s*:\s*[\"'])[^\"']{4,}(?=[\"'])"
        ),
        r"\1" + MASK,
    ),
)


class _Secrets:
    """The secret values to mask, longest first (a secret that contains another goes whole)."""

    def __init__(self) -> None:
        self.values: tuple[str, ...] = ()

    def add(self, secrets: Iterable[str | None]) -> None:
        found = set(self.values)
        for secret in secrets:
            if not secret or len(secret) < MIN_SECRET:
                continue
            # As written, and as it travels in a URL (WooCommerce's query auth, OAuth).
            found |= {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}
        self.values = tuple(sorted(found, key=len, reverse=True))


_SECRETS = _Secrets()


def protect(secrets: Iterable[str | None]) -> None:
    """Mask these values (a loaded config's secrets, `agent.config.secret_values`) in every
    line from now on; a reloaded config adds its own (none is ever forgotten)."""
    _SECRETS.add(secrets)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret (those `protect`ed, and `secrets`) and everything that
    looks like a credential replaced by ****."""
    for secret in (*_SECRETS.values, *secrets):
        if len(secret) >= MIN_SECRET and secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def one_line(text: str) -> str:
    """`text` with its control characters escaped (`\n`, `\x1b`, `\u2028`): one line."""
    return _CONTROL.sub(_escape, text)


def untrusted(value: object, limit: int = UNTRUSTED_CHARS) -> str:
    """A client's text made safe to log: at most `limit` characters (the rest counted), its
    control characters escaped."""
    text = str(value)
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text) - limit} more characters)"
    return one_line(text)


# -- context ------------------------------------------------------------------------------


class log_context:
    """`with log_context(site=…, door=…, event_id=…):` every line logged inside carries these
    fields (None values are left out). Cheap: the processor opens one per event."""

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: object) -> None:
        self._fields = fields
        self._token: Token[Mapping[str, object]] | None = None

    def __enter__(self) -> None:
        current = _context.get()
        added = {k: v for k, v in self._fields.items() if v is not None}
        self._token = _context.set({**current, **added} if current else added)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _context.reset(self._token)
            self._token = None


def bind(**fields: object) -> None:
    """Add fields to the current task's context for the rest of it: for the first line of a
    task's coroutine (a connection's handler, a poller's loop, a Brevo request's send). A task
    starts with a copy of its creator's context, so nothing leaks back to the creator."""
    added = {k: v for k, v in fields.items() if v is not None}
    _context.set({**_context.get(), **added})


def _fields_of(record: logging.LogRecord) -> dict[str, object]:
    """The record's context: the task's, then `extra=` keys."""
    found = dict(_context.get())
    for key in FIELDS:
        value = record.__dict__.get(key)
        if value is not None:
            found[key] = value
    return found


# -- formats ------------------------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """The human line (`TEXT_FORMAT`), redacted; its message is one line whatever it quotes
    (a traceback, after it, keeps its own lines)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line (module docstring), redacted field by field before encoding."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in _fields_of(record).items():
            line[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class JsonLines(io.TextIOBase):
    """A text stream that writes each line given to it as one JSON log line (`logger`, level
    info, the current context) on `out`: a command's own report lines, when its logs are JSON,
    so that every line of its output parses (`json_output`)."""

    def __init__(self, out: IO[str], logger: str) -> None:
        self._out, self._logger, self._pending = out, logger, ""
        self._format = JsonFormatter()

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if line.strip():
                record = logging.LogRecord(self._logger, logging.INFO, "", 0, line, None, None)
                self._out.write(self._format.format(record) + "\n")
        return len(text)

    def flush(self) -> None:
        self._out.flush()


@contextlib.contextmanager
def json_output(logger: str) -> Iterator[None]:
    """Inside: what the command prints (stdout and stderr: progress, results, errors) goes out
    as JSON lines named `logger`, like its logs (`backfill --log-format json`)."""
    real = sys.stdout, sys.stderr
    sys.stdout = cast(TextIO, JsonLines(real[0], logger))
    sys.stderr = cast(TextIO, JsonLines(real[1], logger))
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = real


class _AgentHandler(logging.StreamHandler[IO[str]]):
    """The handler `setup_logging` installs (found again, and replaced, by a second call)."""


def setup_logging(
    level: str,
    fmt: LogFormat = "text",
    *,
    secrets: Iterable[str | None] = (),
    stream: IO[str] | None = None,
) -> None:
    """Log to stderr at `level` in `fmt`, masking `secrets` (and every credential-looking
    string). Like `logging.basicConfig`, it leaves alone a root logger that someone else
    (pytest) configured; a second call replaces its own handler."""
    protect(secrets)
    number = getattr(logging, level.upper(), logging.INFO)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.INFO, number))
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _AgentHandler)]
    if root.handlers and not ours:
        return
    for handler in ours:
        root.removeHandler(handler)
        handler.close()
    handler = _AgentHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(number)
