"""Reloading the config in place (`systemctl reload`: SIGHUP to the doors process).

What may change while the agent runs, and what needs a restart, is decided here, from the old
and the new config alone; `App.reload()` (agent/app.py) reads the file, asks these, and hands
each component its new part. docs/doors.md, "Reloading the config", is the operator's view.

Keys that need a restart are those the agent binds or opens once: the listening sockets, the
state folder (the store file and the forwarding lock), the process layout, the log format, the
one network size limit the HTTP server is built with, and switching the stream between ws://
and wss:// (a new certificate and key for wss:// reload live). A new config that changes one of
them is refused whole, and the old one stays in force.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import Config, ConfigError, SiteConfig

__all__ = [
    "RESTART_KEYS",
    "Reloaded",
    "describe_changes",
    "file_digest",
    "read_file",
    "restart_needed",
]

# (dotted key, why it cannot change live)
RESTART_KEYS: tuple[tuple[str, str], ...] = (
    ("agent.listen.stream", "the stream door's socket is bound at start"),
    ("agent.listen.http", "the HTTP server's socket is bound at start"),
    ("agent.state_dir", "the store file and the forwarding lock are opened at start"),
    ("agent.store", "the store's database is opened at start"),
    ("agent.replica", "the store's claims are leased under this name from start"),
    ("agent.replica_timeout", "the store and the heartbeat are opened with it at start"),
    ("agent.processing", "the worker process is started (or not) at start"),
    ("agent.log_format", "the log format is set at start"),
    ("agent.stream.max_message_bytes", "the HTTP server's body limit is set at start"),
)


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload did: applied (`ok`, with `changes`, key names only) or refused (`error`,
    secret-free). `sha256` is the digest of the file bytes it read (empty when unreadable)."""

    ok: bool
    at: float
    sha256: str = ""
    error: str | None = None
    changes: tuple[str, ...] = field(default=())

    def record(self) -> dict[str, Any]:
        """The `/status` record of this reload (`config.last_reload`)."""
        return {"at": self.at, "ok": self.ok, "error": self.error}

    def summary(self) -> str:
        """One line for the log and systemd's STATUS=."""
        if not self.ok:
            return f"config reload refused, the previous config stays in force: {self.error}"
        what = "; ".join(self.changes) if self.changes else "nothing changed"
        return f"config reloaded (sha256 {self.sha256[:12]}): {what}"


def read_file(path: str | Path) -> bytes:
    """The config file's bytes; ConfigError when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror}"]) from None


def file_digest(raw: bytes) -> str:
    """The SHA-256 of a config file's bytes, as /status shows it."""
    return hashlib.sha256(raw).hexdigest()


def _value(cfg: Config, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def restart_needed(old: Config, new: Config) -> list[str]:
    """Why `new` cannot be applied live: one line per key that changed and needs a restart."""
    problems = [
        f"{key}: {why}; restart to change {key}"
        for key, why in RESTART_KEYS
        if _value(old, key) != _value(new, key)
    ]
    if (old.agent.tls is None) != (new.agent.tls is None):
        problems.append(
            "agent.tls: switching the stream between ws:// and wss:// rebinds its socket;"
            " restart to change agent.tls (a new cert and key for wss:// reload live)"
        )
    return problems


def _changed_keys(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "", depth: int = 2
) -> list[str]:
    """Dotted names of the keys whose values differ, `depth` levels deep (names only, never
    values: a key may hold a secret)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping) and depth > 1:
            out += _changed_keys(a, b, f"{name}.", depth - 1) or [name]
        else:
            out.append(name)
    return out


def _site_changes(old: SiteConfig, new: SiteConfig) -> list[str]:
    woo = _changed_keys(old.woo.model_dump(), new.woo.model_dump())
    brevo = _changed_keys(old.brevo.model_dump(), new.brevo.model_dump())
    return [*woo, *(f"brevo.{k}" for k in brevo)]


def describe_changes(old: Config, new: Config) -> list[str]:
    """What a reload from `old` to `new` changes, as short secret-free phrases."""
    before = {s.id: s for s in old.resolved_sites()}
    after = {s.id: s for s in new.resolved_sites()}
    out: list[str] = []
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    if added:
        out.append("sites added: " + ", ".join(added))
    if removed:
        out.append("sites removed: " + ", ".join(removed))
    for sid in sorted(set(before) & set(after)):
        keys = _site_changes(before[sid], after[sid])
        if keys:
            out.append(f"site {sid}: " + ", ".join(keys))
    agent = _changed_keys(old.agent.model_dump(), new.agent.model_dump(), "agent.")
    if agent:
        out.append(", ".join(agent))
    return out
