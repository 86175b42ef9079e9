"""The agent's runtime status: typed records the doors write and /status reads.

Each door owns its part of a site's record (the stream door its `StreamLink`, the webhook door
its `WebhookSeen`, the Brevo webhook door its `BrevoHookSeen`, the poller its `PollingStatus`);
`http.py` only reads. Nothing here holds a secret: no token, key, payload or email, only times,
counts, versions and the peer's address.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "BrevoHookSeen",
    "ConfigStatus",
    "PollingStatus",
    "RuntimeStatus",
    "SiteStatus",
    "StreamLink",
    "WebhookSeen",
]


@dataclass(slots=True)
class StreamLink:
    """A site's websocket link: open connections and what its last `hello` said."""

    connections: int = 0
    remote: str | None = None
    last_hello: float | None = None
    last_events: float | None = None
    site_url: str | None = None
    blog_id: int | None = None
    plugin_version: str | None = None
    wp_version: str | None = None
    wc_version: str | None = None
    batches_in_flight_max: int = 0

    def last_seen(self) -> float | None:
        """When the site last sent a `hello` or `events` (clock seconds), or None."""
        seen = [t for t in (self.last_hello, self.last_events) if t is not None]
        return max(seen) if seen else None


@dataclass(slots=True)
class WebhookSeen:
    """The last native webhook delivery the webhook door stored for a site."""

    last_delivery: float | None = None
    last_topic: str | None = None


@dataclass(slots=True)
class BrevoHookSeen:
    """The last Brevo marketing webhook the Brevo door recorded for a site (no email)."""

    last_delivery: float | None = None
    last_event: str | None = None


@dataclass(slots=True)
class PollingStatus:
    """A site's poller: the mode it is in and what its rounds did."""

    mode_since: float | None = None
    last_poll: float | None = None
    last_error: str | None = None
    rounds: int = 0
    events: int = 0
    last_customer_scan: float | None = None
    last_reconcile: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class SiteStatus:
    """Everything the running agent knows of one site beyond the store's counters."""

    stream: StreamLink = field(default_factory=StreamLink)
    webhook: WebhookSeen = field(default_factory=WebhookSeen)
    brevo_hook: BrevoHookSeen = field(default_factory=BrevoHookSeen)
    polling: PollingStatus | None = None  # None: no poller runs for the site
    mode: str | None = None  # the poller's effective mode; None: the configured one stands


@dataclass(slots=True)
class ConfigStatus:
    """The config in force: its file, when it was loaded, the SHA-256 of its bytes, and how
    the last reload went (`systemctl reload`, agent/reload.py). Never a value from the file."""

    path: str
    sha256: str
    loaded_at: float
    last_reload: dict[str, Any] | None = None  # {"at", "ok", "error"}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RuntimeStatus:
    """One record per configured site, created up front; a reload adds the new sites' (and
    keeps a removed site's, which its closing connections still write)."""

    def __init__(
        self, sites: Iterable[str], started_at: float, config: ConfigStatus | None = None
    ) -> None:
        self.started_at = started_at
        self.sites: dict[str, SiteStatus] = {sid: SiteStatus() for sid in sites}
        self.config = config

    def site(self, sid: str) -> SiteStatus:
        return self.sites.setdefault(sid, SiteStatus())
