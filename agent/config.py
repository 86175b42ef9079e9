"""The configuration: one frozen pydantic tree, loaded once and passed down.

The file keeps the seed's shape (`connectors.woocommerce`) so a config written for the seed
works; the agent's own keys (`agent`, `brevo`, `sites`) sit beside it. See
`config.example.yaml`, README.md ("Connect a store") and docs/doors.md.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import psycopg.conninfo
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.core.minimize import DROPPED_FIELDS, payment_words
from agent.core.pipeline import LIFECYCLE_DEFAULTS
from agent.core.proxies import Network, parse_network
from agent.core.woo import (
    DEFAULT_PAID_STATUSES,
    NOT_ORDER_STATUSES,
    PAYABLE_EXTRA_STATUSES,
    UNPAID_STATUSES,
    AuthMode,
    auth_problem,
)
from agent.errors import ConfigError
from agent.logs import redact
from agent.store.postgres.dsn import is_postgres, password, shown
from agent.store.postgres.dsn import masked as masked_dsn

__all__ = [
    "AgentSection",
    "BackfillSection",
    "BrevoSection",
    "CartsSection",
    "Config",
    "ConfigError",
    "ConsentSection",
    "Duration",
    "PollingSection",
    "SiteConfig",
    "WebhooksSection",
    "WooSection",
    "config_warnings",
    "load_config",
    "parse_duration",
    "secret_values",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """`30s`, `15m`, `2h`, `30d` (also `500ms`) → seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"expected a duration with a unit like 30s, 15m, 2h, 30d; got {value!r}")
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 30s, 15m, 2h, 30d; got {value!r}")
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"expected a duration like 30s, 15m, 2h, 30d; got {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _parse_hostport(value: object) -> str:
    # host:port, :port (every interface), or [IPv6]:port such as [::1]:8765 (RFC 3986 §3.2.2).
    pattern = r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]*):\d{1,5}$"
    if not isinstance(value, str) or not re.match(pattern, value.strip()):
        raise ValueError(f"expected host:port such as 127.0.0.1:8765 or [::1]:8765; got {value!r}")
    return value.strip()


HostPort = Annotated[str, BeforeValidator(_parse_hostport)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Model):
    """Where the agent listens."""

    stream: HostPort = "127.0.0.1:8765"
    http: HostPort = "127.0.0.1:8766"


class Tls(_Model):
    """TLS for the websocket door (the agent can also sit behind a proxy)."""

    cert: Path
    key: Path


class StreamSection(_Model):
    """Limits and timings of the websocket door (docs/protocol.md)."""

    max_batch: int = Field(100, ge=1, le=1000)
    max_message_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    handshake_timeout: Duration = 10.0
    idle_timeout: Duration = 120.0
    ping_interval: Duration = 20.0
    ping_timeout: Duration = 20.0
    stale_after: Duration = 180.0
    max_failed_handshakes_per_minute: int = Field(10, ge=1)
    read_slots: int = Field(
        4,
        ge=1,
        le=256,
        description=(
            "messages read at once over every connection; in a burst the others wait in TCP"
            " (docs/protocol.md, Pipelining)"
        ),
    )
    read_slots_per_site: int | None = Field(
        None,
        ge=1,
        le=256,
        description=(
            "read slots one site's connections may hold at once (default: half of read_slots,"
            " rounded up), so one site's slow writers cannot take every slot"
        ),
    )
    message_timeout: Duration = Field(
        30.0,
        description=(
            "a message must arrive whole within this long of its first byte being read (waiting"
            " for a read slot does not count); else error message_timeout and close 1008"
        ),
    )
    max_pending_handshakes: int = Field(
        256,
        ge=1,
        le=65536,
        description=(
            "connections not upgraded yet; past it the oldest one that sent no request yet is"
            " closed for the newcomer (or the newcomer, when all have sent theirs)"
        ),
    )

    @model_validator(mode="after")
    def _slots_and_deadline(self) -> StreamSection:
        if self.read_slots_per_site is not None and self.read_slots_per_site > self.read_slots:
            raise ValueError(
                f"read_slots_per_site ({self.read_slots_per_site}) is above read_slots"
                f" ({self.read_slots}): a site can never hold more slots than there are; lower"
                " it or raise read_slots"
            )
        if self.message_timeout <= 0:
            raise ValueError(f"message_timeout must be above 0s; got {self.message_timeout:g}s")
        return self

    @property
    def site_slots(self) -> int:
        """The read slots one site may hold: `read_slots_per_site`, or half of `read_slots`
        rounded up (docs/protocol.md, Pipelining)."""
        return self.read_slots_per_site or -(-self.read_slots // 2)


class WebhooksSection(_Model):
    """How the webhook doors read request bodies (docs/doors.md, "Bodies")."""

    body_timeout: Duration = Field(
        10.0,
        description=(
            "longest time a webhook's body may take to arrive; after it the request is answered"
            " 408 and its connection closed"
        ),
    )
    max_pending_bodies: int = Field(
        16,
        ge=1,
        le=1024,
        description=(
            "webhook bodies read at once over both webhook doors (each up to"
            " agent.stream.max_message_bytes); a request beyond it gets 503 with Retry-After"
            " before its body is read"
        ),
    )
    max_pending_bodies_per_address: int = Field(
        4,
        ge=1,
        le=1024,
        description=(
            "webhook bodies read at once from one sender's address (the client's behind a"
            " trusted proxy); beyond it 503, so one sender cannot take every slot"
        ),
    )

    @model_validator(mode="after")
    def _per_address(self) -> WebhooksSection:
        if self.body_timeout <= 0:
            raise ValueError(f"body_timeout must be above 0s; got {self.body_timeout:g}s")
        if self.max_pending_bodies_per_address > self.max_pending_bodies:
            raise ValueError(
                f"max_pending_bodies_per_address ({self.max_pending_bodies_per_address}) is"
                f" above max_pending_bodies ({self.max_pending_bodies}): one address can never"
                " have more bodies read than all of them; lower it or raise max_pending_bodies"
            )
        return self


# A replica's name (agent.replica): what its Brevo job claims are leased under.
REPLICA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# agent.replica_timeout's bounds, seconds.
REPLICA_TIMEOUT = (3.0, 100.0)


def check_store_address(address: str) -> str:
    """`agent.store`'s value, checked: a PostgreSQL address (the SQLite file is the key left
    out). The error names it with its password masked."""
    text = address.strip()
    if not is_postgres(text):
        scheme = text.split("://", 1)[0] if "://" in text else ""
        what = f"a {scheme}:// address" if scheme else "a file path"
        raise ValueError(
            f"{shown(text)!r} is {what}; agent.store takes a PostgreSQL address"
            " (postgresql://user@host:5432/dbname). For the SQLite store leave agent.store out:"
            " its file is agent.state_dir/woobrevo.sqlite3"
        )
    try:
        psycopg.conninfo.conninfo_to_dict(text)
    except psycopg.ProgrammingError as exc:
        raise ValueError(
            f"{shown(text)!r} is not a valid PostgreSQL address ({masked_dsn(str(exc), text)});"
            " the form is postgresql://user@host:5432/dbname?sslmode=require"
        ) from None
    return text


class AgentSection(_Model):
    """The agent's own process-level keys."""

    listen: Listen = Listen()
    public_url: str | None = None
    state_dir: Path = Path("./state")
    store: str | None = Field(
        None,
        description=(
            "the store: left out, the SQLite file in state_dir; or a PostgreSQL database,"
            " postgresql://user@host:port/dbname (password from PGPASSWORD or ~/.pgpass;"
            " docs/postgresql.md)"
        ),
    )
    replica: str = Field(
        default_factory=socket.gethostname,
        description=(
            "this agent's name among the replicas sharing a PostgreSQL store (default the host's"
            " name): its Brevo job claims are leased under it; distinct for each agent"
        ),
    )
    replica_timeout: Duration = Field(
        15.0,
        description=(
            "PostgreSQL store: a replica not seen (heartbeat, every third of this, at most 5s)"
            " for this long is taken as dead, and the other replicas take its Brevo job claims"
            " over (3s to 100s; docs/postgresql.md)"
        ),
    )
    tls: Tls | None = None
    trusted_proxies: tuple[Network, ...] = Field(
        (),
        description=(
            "addresses or networks of reverse proxies in front of the agent: for a request from"
            " one, the client is read from X-Forwarded-For (agent/core/proxies.py)"
        ),
    )
    stream: StreamSection = StreamSection()
    webhooks: WebhooksSection = WebhooksSection()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field(
        "text",
        description=(
            "text: one human line a record; json: one JSON object a line with site, door, event"
            " and job ids, for journald and log shippers (--log-format wins; agent/logs.py)"
        ),
    )
    processing: Literal["process", "inline"] = Field(
        "process",
        description=(
            "process: the pipeline and the Brevo forwarder run in a second, niced process, so"
            " the doors keep a CPU to ack with (agent/process/worker.py); inline: one process"
        ),
    )
    historical_after: Duration = Field(
        2 * 86400.0,
        description="objects last modified longer ago than this fire no Brevo events",
    )
    inbox_retention: Duration = Field(
        7 * 86400.0,
        description=(
            "processed events stored longer ago than this are deleted from the inbox; a replay"
            " of an event within it is recognised and stored once"
        ),
    )

    @property
    def store_path(self) -> Path:
        """The SQLite store's file, under `state_dir` (the one place its name is written)."""
        return self.state_dir / "woobrevo.sqlite3"

    @field_validator("store")
    @classmethod
    def _store(cls, v: str | None) -> str | None:
        return None if v is None else check_store_address(v)

    @field_validator("replica")
    @classmethod
    def _replica(cls, v: str) -> str:
        if not REPLICA_NAME.fullmatch(v):
            raise ValueError(
                f"{v[:80]!r} is not a replica name: 1 to 64 letters, digits and . _ - (the host's"
                " name by default)"
            )
        return v

    @field_validator("replica_timeout")
    @classmethod
    def _replica_timeout(cls, v: float) -> float:
        if not REPLICA_TIMEOUT[0] <= v <= REPLICA_TIMEOUT[1]:
            raise ValueError(
                f"{v:g}s is out of range: agent.replica_timeout is 3s to 100s (a replica beats"
                " every third of it, so shorter takes a slow database for a dead replica; past"
                " 100s the claims' 120s lease takes them over first); 15s is the default"
            )
        return v

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, v: object) -> object:
        if isinstance(v, list | tuple):
            return tuple(parse_network(item) if isinstance(item, str) else item for item in v)
        return v

    @field_validator("inbox_retention")
    @classmethod
    def _retention(cls, v: float) -> float:
        if v < 3600:
            raise ValueError(
                f"must be at least 1h, so that a plugin's or WooCommerce's resent events are still"
                f" recognised as already stored; got {v:g}s"
            )
        return v


BREVO_FAMILIES = ("contacts", "events", "orders", "products", "other")


class RateWindow(_Model):
    """`count` requests per `per` (a duration)."""

    count: int = Field(ge=1)
    per: Duration


class BrevoSection(_Model):
    """One Brevo account: key, endpoint, plan and mode."""

    api_key: str | None = None
    base_url: str = "https://api.brevo.com/v3"
    dry_run: bool | None = None
    plan: Literal["general", "advanced", "extended"] = "general"
    rate_limits: dict[str, list[RateWindow]] | None = None
    timeout: Duration = 30.0
    live_window: Duration = Field(
        5.0, description="a backlog single calls clear within this goes out one by one"
    )
    coupon_collection: str = "WooCommerce"
    max_backoff: Duration = Field(
        60.0, description="longest wait between retries of a failing call"
    )
    webhook_secret: str | None = Field(
        None,
        description=(
            "the bearer token Brevo's marketing webhooks present to POST /webhooks/brevo/{site}"
            " (env WOOBREVO_BREVO_WEBHOOK_SECRET)"
        ),
    )

    @field_validator("rate_limits")
    @classmethod
    def _families(cls, v: dict[str, list[RateWindow]] | None) -> dict[str, list[RateWindow]] | None:
        if v is not None:
            for fam in v:
                if fam not in BREVO_FAMILIES:
                    raise ValueError(
                        f"unknown endpoint family {fam!r}; expected one of {', '.join(BREVO_FAMILIES)}"
                    )
        return v

    @property
    def is_dry_run(self) -> bool:
        """Dry-run when asked, or when no key is set and dry_run was not forced off."""
        if self.dry_run is not None:
            return self.dry_run
        return not self.api_key

    @property
    def account(self) -> str:
        """A stable, secret-free id of the Brevo account (budgets are per account)."""
        if self.is_dry_run or not self.api_key:
            return "dry-run"
        return "acct-" + hashlib.sha256(self.api_key.encode()).hexdigest()[:12]


class Sync(_Model):
    """Which resources are forwarded."""

    customers: bool = True
    orders: bool = True
    products: bool = True
    coupons: bool = True


class Lists(_Model):
    """Brevo list ids."""

    all_customers: int | None = Field(None, ge=1)
    buyers: int | None = Field(None, ge=1)
    abandoned_cart: int | None = Field(None, ge=1)


WC_TOPICS = {
    f"{r}.{a}"
    for r in ("customer", "order", "product", "coupon")
    for a in ("created", "updated", "deleted", "restored")
}
# Lifecycle topics the agent derives from state transitions (agent/core/lifecycle.py).
# `order.completed` is WooCommerce's own word for the status (the original connector's config
# uses it); `order.fulfilled`, this agent's earlier name for it, is read as an alias.
LIFECYCLE_TOPICS = {"order.completed", "order.refunded", "order.paid", "order.cancelled"}
TOPIC_ALIASES = {"order.fulfilled": "order.completed"}
_EVENT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


class WebhookEvent(_Model):
    """A WooCommerce topic (or a derived lifecycle topic) and the Brevo event it becomes."""

    topic: str
    event: str

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        v = TOPIC_ALIASES.get(v, v)
        if v not in WC_TOPICS | LIFECYCLE_TOPICS:
            known = ", ".join(sorted(WC_TOPICS | LIFECYCLE_TOPICS))
            raise ValueError(f"unknown topic {v!r}; expected one of: {known}")
        return v

    @field_validator("event")
    @classmethod
    def _event(cls, v: str) -> str:
        if not _EVENT_NAME.match(v):
            raise ValueError(f"Brevo event names are 1-255 of [A-Za-z0-9_-]; got {v!r}")
        return v


# Payment details never leave the agent (issues 2 and 16): a mapping may not name them. The
# fields are the order's payment fields; a meta key is refused by the payment rule itself
# (agent/core/minimize.py), so a mapping cannot ask for what minimization drops.
PAYMENT_FIELDS = DROPPED_FIELDS | {"payment_method", "date_paid", "date_paid_gmt"}


def _payment_path(path: str) -> str | None:
    """Why a mapping path names payment data, or None."""
    parts = path.split(".")
    if parts[-1].lower() in PAYMENT_FIELDS:
        return f"{parts[-1]} is one of the order's payment fields"
    for i, part in enumerate(parts[:-1]):
        if part == "meta_data" and (words := payment_words(parts[i + 1])):
            return f"meta key {parts[i + 1]!r} names a payment record ({', '.join(words)})"
    return None


_ATTRIBUTE = re.compile(r"^[A-Z][A-Z0-9_]{0,49}$")
_PATH = re.compile(r"^[a-z_][a-z0-9_]*(\.[A-Za-z0-9_-]+)*$")


def _check_mapping(v: dict[str, str]) -> dict[str, str]:
    if "email" in v and v["email"] != "email":
        raise ValueError("'email' is the contact identifier: map it as `email: email`")
    for path, attr in v.items():
        if not _PATH.match(path):
            raise ValueError(
                f"{path!r} is not a WooCommerce path (examples: first_name, billing.phone, "
                "meta_data.loyalty_points, orders_count)"
            )
        if why := _payment_path(path):
            raise ValueError(
                f"{path!r} is payment data, which never leaves the agent: {why}. The plugin"
                " and the agent drop it before anything is stored (docs/privacy.md), so it"
                " would never have a value: remove it or map another field"
            )
        if path == "email":
            continue
        if not _ATTRIBUTE.match(attr):
            raise ValueError(
                f"Brevo attribute names are UPPERCASE letters, digits and _ (got {attr!r} for {path!r})"
            )
    return v


DEFAULT_MAPPING = {
    "email": "email",
    "first_name": "FIRSTNAME",
    "last_name": "LASTNAME",
    "billing.phone": "SMS",
}


class PollingSection(_Model):
    """Timings of the polling door (issue 4; docs/backfill.md, "Polling")."""

    interval: Duration = 60.0
    overlap: Duration = 10.0
    customer_scan_every: Duration = 3600.0
    reconcile_every: Duration = 6 * 3600.0
    concurrency: int = Field(2, ge=1, le=16, description="REST requests in flight while polling")


class BackfillSection(_Model):
    """How `woobrevo-agent backfill` pages through the store (docs/backfill.md)."""

    concurrency: int = Field(
        4, ge=1, le=16, description="pages in flight; rate_limit_per_minute still caps the pace"
    )
    per_page: int = Field(100, ge=1, le=100, description="WooCommerce caps per_page at 100")
    fields: bool = Field(
        True, description="ask only for the fields the mapping reads (_fields), ~2x fewer bytes"
    )


class CartsSection(_Model):
    """Abandoned carts (docs/carts.md): the timers of the state machine and the Brevo events."""

    enabled: bool = Field(
        True, description="capture carts in the plugin and run the timers (false: nothing)"
    )
    abandon_after: Duration = Field(
        3600.0, description="a cart with no order this long after its last change is abandoned"
    )
    expire_after: Duration = Field(
        30 * 86400.0, description="a cart unchanged this long is forgotten (expired)"
    )
    attribution_window: Duration = Field(
        7 * 86400.0, description="an order this long after the abandonment still recovers it"
    )
    event: str = "cart_abandoned"
    recovered_event: str = "cart_recovered"
    link_lifetime: Duration = Field(
        7 * 86400.0, description="how long the plugin's signed restore link stays valid"
    )

    @field_validator("event", "recovered_event")
    @classmethod
    def _event_name(cls, v: str) -> str:
        if not _EVENT_NAME.match(v):
            raise ValueError(f"Brevo event names are 1-255 of [A-Za-z0-9_-]; got {v!r}")
        return v

    @field_validator("abandon_after", "expire_after", "attribution_window", "link_lifetime")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v < 1:
            raise ValueError(f"must be at least 1s; got {v:g}s")
        return v

    @model_validator(mode="after")
    def _order(self) -> CartsSection:
        if self.expire_after <= self.abandon_after:
            raise ValueError(
                f"expire_after ({self.expire_after:g}s) must be longer than abandon_after"
                f" ({self.abandon_after:g}s)"
            )
        return self


class DoubleOptIn(_Model):
    """Brevo double opt-in for new subscribers (POST /contacts/doubleOptinConfirmation)."""

    template_id: int = Field(ge=1, description="the Brevo DOI template (its id in Brevo)")
    redirect_url: str = Field(description="where Brevo sends the person after confirming")

    @field_validator("redirect_url")
    @classmethod
    def _url(cls, v: str) -> str:
        parsed = urlsplit(v)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"expected an http(s) URL such as https://shop.example/thanks; got {v!r}"
            )
        return v


class ConsentSection(_Model):
    """Marketing consent (docs/privacy.md): who joins the marketing lists and gets events."""

    mode: Literal["implied", "required"] = Field(
        "implied",
        description=(
            "implied: every customer joins the lists (as before); required: only those whose"
            " consent record says subscribed"
        ),
    )
    transactional_events: tuple[str, ...] = Field(
        (),
        description="Brevo event names still sent, in required mode, to contacts who did not opt in",
    )
    double_opt_in: DoubleOptIn | None = None

    @field_validator("transactional_events")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if not _EVENT_NAME.match(name):
                raise ValueError(f"Brevo event names are 1-255 of [A-Za-z0-9_-]; got {name!r}")
        return tuple(dict.fromkeys(v))


class PrivacySection(_Model):
    """What a `privacy.erase` from the plugin does in Brevo (docs/privacy.md)."""

    erasure: Literal["delete", "blocklist"] = Field(
        "delete",
        description=(
            "delete: DELETE the contact in Brevo; blocklist: keep it blocklisted (so it is"
            " never mailed again) with its mapped attributes emptied"
        ),
    )


class WooSection(_Model):
    """The seed's `connectors.woocommerce` block; every key can be overridden per site."""

    enabled: bool = True
    store_url: str | None = None
    consumer_key: str | None = None
    consumer_secret: str | None = None
    auth: AuthMode = Field(
        "auto",
        description=(
            "how REST requests carry the keys: auto (Basic over https, OAuth 1.0a over http),"
            " basic, query (consumer_key/consumer_secret in the URL, for hosts that strip the"
            " Authorization header) or oauth1 (signed; WooCommerce accepts it over http and"
            " https). WooCommerce ignores basic and query over http (docs/backfill.md, Doctor)"
        ),
    )
    api_version: Literal["wc/v3"] = "wc/v3"
    verify_ssl: bool = True
    sync: Sync = Sync()
    lists: Lists = Lists()
    paid_statuses: tuple[str, ...] = Field(
        DEFAULT_PAID_STATUSES,
        description=(
            "order statuses that count as paid: only such an order makes a buyer (lists.buyers)"
            " and counts in orders_count and total_spent; add on-hold for bank transfers"
        ),
    )
    customer_mapping: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_MAPPING))
    webhooks: list[WebhookEvent] = Field(default_factory=list)
    token_sha256: str | None = None
    webhook_secret: str | None = None
    mode: Literal["stream", "polling"] = "stream"
    brevo_id_prefix: str = Field("", pattern=r"^[A-Za-z0-9_-]{0,20}$")
    rate_limit_per_minute: int = Field(60, ge=1)
    timeout: Duration = Field(30.0, description="longest wait for one WooCommerce REST answer")
    ca_file: Path | None = Field(
        None, description="CA bundle that signed the store's certificate (self-signed stores)"
    )
    polling: PollingSection = PollingSection()
    backfill: BackfillSection = BackfillSection()
    carts: CartsSection = CartsSection()
    consent: ConsentSection = ConsentSection()
    privacy: PrivacySection = PrivacySection()

    @field_validator("customer_mapping")
    @classmethod
    def _mapping(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_mapping(v)

    @field_validator("paid_statuses")
    @classmethod
    def _paid(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("name at least one status, e.g. [processing, completed]")
        for status in v:
            if status.startswith("wc-"):
                raise ValueError(
                    f"write statuses as the REST API does, without the wc- prefix:"
                    f" {status.removeprefix('wc-')!r} instead of {status!r}"
                )
            if status in UNPAID_STATUSES or status in NOT_ORDER_STATUSES:
                raise ValueError(
                    f"an order in status {status!r} is not paid; paid statuses are"
                    f" {', '.join(DEFAULT_PAID_STATUSES + PAYABLE_EXTRA_STATUSES)} or a custom"
                    " status a plugin adds after payment"
                )
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,30}", status):
                raise ValueError(f"{status!r} is not an order status slug (e.g. on-hold)")
        return tuple(dict.fromkeys(v))

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, v: str | None) -> str | None:
        # Not quoted back: a URL copied with its ?consumer_key=…&consumer_secret=… would
        # print them (agent/logs.py).
        if v is not None and (urlsplit(v.strip()).query or urlsplit(v.strip()).fragment):
            raise ValueError(
                "expected the store's home URL without a query or fragment; the REST keys go"
                " in consumer_key and consumer_secret, never in the URL"
            )
        return v

    @field_validator("token_sha256")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError(
                "expected the SHA-256 of the token as 64 lowercase hex characters "
                "(`woobrevo-agent token create` prints it)"
            )
        return v


_WOO_KEYS = set(WooSection.model_fields)


class SiteEntry(_Model):
    """One entry of `sites:`: an id, its own secrets, and overrides of the woocommerce block."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    brevo: BrevoSection | None = None
    overrides: WooSection = WooSection()
    override_keys: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        own = {k: data[k] for k in ("id", "brevo") if k in data}
        rest = {k: v for k, v in data.items() if k not in ("id", "brevo")}
        unknown = sorted(set(rest) - _WOO_KEYS)
        if unknown:
            allowed = ", ".join(["id", "brevo", *sorted(_WOO_KEYS)])
            raise ValueError(f"unknown key {unknown[0]!r} in a site; expected one of: {allowed}")
        own["overrides"] = rest
        own["override_keys"] = tuple(rest)
        return own


class Connectors(_Model):
    """The seed's connectors block."""

    woocommerce: WooSection = WooSection()


class SiteConfig(_Model):
    """A site as the rest of the agent sees it: the woocommerce block with overrides applied."""

    id: str
    woo: WooSection
    brevo: BrevoSection


class Config(_Model):
    """The whole configuration file."""

    agent: AgentSection = AgentSection()
    brevo: BrevoSection = BrevoSection()
    connectors: Connectors = Connectors()
    sites: list[SiteEntry] | None = None
    source: str = Field("<memory>", exclude=True)
    # The file's bytes as loaded, and their SHA-256 (set by load_config): the worker process
    # gets these very bytes (agent/process/worker.py), /status shows the digest.
    file_bytes: bytes = Field(b"", exclude=True, repr=False)
    digest: str = Field("", exclude=True)

    @model_validator(mode="after")
    def _unique_sites(self) -> Config:
        ids = [s.id for s in self.sites or []]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"site ids must be unique; repeated: {', '.join(sorted(dup))}")
        return self

    def resolved_sites(self) -> list[SiteConfig]:
        """Every site with the woocommerce block's defaults and its own overrides merged."""
        base = self.connectors.woocommerce
        if not self.sites:
            return [SiteConfig(id="default", woo=base, brevo=self.brevo)]
        out = []
        for entry in self.sites:
            update = {k: getattr(entry.overrides, k) for k in entry.override_keys}
            woo = base.model_copy(update=update)
            out.append(SiteConfig(id=entry.id, woo=woo, brevo=entry.brevo or self.brevo))
        return out

    def site(self, site_id: str) -> SiteConfig:
        """The resolved site with this id, or a ConfigError naming the known ids."""
        for s in self.resolved_sites():
            if s.id == site_id:
                return s
        known = ", ".join(s.id for s in self.resolved_sites())
        raise ConfigError(self.source, [f"no site {site_id!r}; known sites: {known}"])


_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
_CREDENTIAL_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
SECRET_KEYS = {"api_key", "consumer_key", "consumer_secret", "webhook_secret", "token_sha256"}


def _interpolate(node: Any, env: Mapping[str, str], path: str, problems: list[str]) -> Any:
    """Replace `${VAR}` in strings by the environment's value; a missing variable is a problem."""
    if isinstance(node, dict):
        return {
            k: _interpolate(v, env, f"{path}.{k}" if path else str(k), problems)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(v, env, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                problems.append(
                    f"{path}: environment variable {name} is not set (the file says ${{{name}}})"
                )
                return ""
            return env[name]

        return _ENV_REF.sub(sub, node)
    return node


def _with_credentials(env: Mapping[str, str]) -> Mapping[str, str]:
    """`env`, plus systemd's credentials where `env` lacks the name: the unit's
    `LoadCredential=BREVO_API_KEY:/etc/woobrevo/brevo-key` puts a file named BREVO_API_KEY in
    `$CREDENTIALS_DIRECTORY` (systemd.exec(5), "Credentials"), and it then serves `${NAME}` and
    the variables of `_env_defaults` as the variable would. Only names shaped like variables."""
    folder = env.get("CREDENTIALS_DIRECTORY")
    if not folder:
        return env
    found: dict[str, str] = {}
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError as exc:
        raise ConfigError(folder, [f"cannot list $CREDENTIALS_DIRECTORY: {exc.strerror}"]) from None
    for entry in entries:
        if entry.name in env or not _CREDENTIAL_NAME.fullmatch(entry.name):
            continue
        try:
            found[entry.name] = entry.read_text(encoding="utf-8").removesuffix("\n")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(str(entry), [f"cannot read the credential: {why}"]) from None
    return {**found, **env}


def _env_defaults(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """Well-known variables fill secrets the file leaves out (so the file can be committed)."""
    brevo = data.setdefault("brevo", {}) if isinstance(data.get("brevo", {}), dict) else None
    if brevo is not None and not brevo.get("api_key") and env.get("BREVO_API_KEY"):
        brevo["api_key"] = env["BREVO_API_KEY"]
    hook_secret = env.get("WOOBREVO_BREVO_WEBHOOK_SECRET")
    if brevo is not None and not brevo.get("webhook_secret") and hook_secret:
        brevo["webhook_secret"] = hook_secret
    conn = data.get("connectors")
    woo = conn.get("woocommerce") if isinstance(conn, dict) else None
    if isinstance(woo, dict):
        for key, var in (
            ("consumer_key", "WC_CONSUMER_KEY"),
            ("consumer_secret", "WC_CONSUMER_SECRET"),
            ("webhook_secret", "WOOBREVO_WEBHOOK_SECRET"),
        ):
            if not woo.get(key) and env.get(var):
                woo[key] = env[var]


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("overrides",):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _explain(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        where = _loc(loc)
        kind = e["type"]
        if kind == "extra_forbidden" and len(loc) == 1 and loc[0] in _WOO_KEYS:
            # The original connector's docs show these blocks on their own; pasted at the top
            # level they belong to the woocommerce block.
            problems.append(
                f"{where}: this key belongs to the woocommerce block: nest it under"
                f" connectors.woocommerce (connectors:\n  woocommerce:\n    {where}: …),"
                " as config.example.yaml shows"
            )
        elif kind == "extra_forbidden":
            parent_loc = loc[:-1]
            problems.append(f"{where}: unknown key{_allowed_hint(parent_loc)}")
        elif kind == "missing":
            problems.append(f"{where}: required key is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}")
    return problems


def _allowed_hint(parent_loc: tuple[int | str, ...]) -> str:
    model: Any = Config
    for part in parent_loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return ""
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        nxt = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            args = [getattr(a, "__args__", ()) for a in inner]
            nxt = next(
                (
                    x
                    for group in args
                    for x in group
                    if isinstance(x, type) and issubclass(x, BaseModel)
                ),
                None,
            )
        if nxt is None:
            return ""
        model = nxt
    keys = [
        k for k in model.model_fields if k not in ("source", "file_bytes", "digest", "overrides")
    ]
    return f" (expected one of: {', '.join(keys)})" if keys else ""


def _semantic_checks(cfg: Config) -> list[str]:
    """What a model cannot say alone: secrets each site needs for what it is asked to do."""
    problems = []
    sites = cfg.resolved_sites()
    for i, site in enumerate(sites):
        where = "connectors.woocommerce" if not cfg.sites else f"sites[{i}]"
        woo = site.woo
        if woo.mode == "polling" and not (woo.consumer_key and woo.consumer_secret):
            problems.append(
                f"{where}: mode polling needs consumer_key and consumer_secret "
                "(or env WC_CONSUMER_KEY / WC_CONSUMER_SECRET)"
            )
        if woo.mode == "polling" and not woo.store_url:
            problems.append(f"{where}.store_url: mode polling needs the store's URL")
        if site.brevo.dry_run is False and not site.brevo.api_key:
            bwhere = f"sites[{i}].brevo" if cfg.sites and cfg.sites[i].brevo else "brevo"
            problems.append(
                f"{bwhere}.api_key: missing secret (set it, or env BREVO_API_KEY, or dry_run: true)"
            )
    by_account: dict[tuple[str, str], str] = {}
    for site in sites:
        if site.brevo.is_dry_run:
            continue
        key = (site.brevo.account, site.woo.brevo_id_prefix)
        if key in by_account:
            problems.append(
                f"sites {by_account[key]!r} and {site.id!r} share a Brevo account and the same "
                "brevo_id_prefix, so their order and product ids would collide; give each site "
                "its own brevo_id_prefix (e.g. `brevo_id_prefix: shop2-`)"
            )
        by_account[key] = site.id
    return problems + _shared_tokens(cfg, sites)


def _shared_tokens(cfg: Config, sites: list[SiteConfig]) -> list[str]:
    """A token names one site: the same token_sha256 on two would send one site's events
    to the other (the handshake takes the last), so it is refused here and at reload."""
    problems = []
    by_hash: dict[str, tuple[int, str]] = {}
    for i, site in enumerate(sites):
        digest = site.woo.token_sha256
        if not digest:
            continue
        if digest in by_hash:
            j, first = by_hash[digest]
            own = cfg.sites is not None and "token_sha256" in cfg.sites[i].override_keys
            inherited = "" if own else " (inherited from connectors.woocommerce.token_sha256)"
            problems.append(
                f"sites[{j}] {first!r} and sites[{i}] {site.id!r} have the same token_sha256"
                f"{inherited}: a token names one site, and a plugin sending it would be taken"
                f" for {site.id!r} only; give each site its own token (`woobrevo-agent token"
                f" create --site {site.id}`)"
            )
        else:
            by_hash[digest] = (i, site.id)
    return problems


# Keys that only shape the WooCommerce REST client: without the store's URL and keys, no client.
_REST_KEYS = frozenset(
    {"polling", "backfill", "rate_limit_per_minute", "timeout", "ca_file", "verify_ssl"}
)


def config_warnings(cfg: Config) -> list[str]:
    """Keys that are valid but will not do what they seem to: each says why and what to do.

    `check` prints them and `run` logs them at start (no key is a silent no-op).
    """
    warnings: list[str] = []
    for i, site in enumerate(cfg.resolved_sites()):
        where = "connectors.woocommerce" if not cfg.sites else f"sites[{i}] ({site.id})"
        woo = site.woo
        if not woo.enabled:
            warnings.append(
                f"{where}: enabled is false: nothing of this site is processed, polled or sent"
                " to Brevo; what its doors receive is kept in the inbox until it is enabled"
                " again (or remove the site)"
            )
        for j, hook in enumerate(woo.webhooks):
            resource = hook.topic.split(".", 1)[0]
            line = f"{where}.webhooks[{j}] ({hook.topic} -> {hook.event})"
            if resource == "product":
                what = (
                    "products go to Brevo's ecommerce catalogue (POST /products) instead"
                    if woo.sync.products
                    else "and sync.products is off, so products are not sent at all"
                )
                warnings.append(
                    f"{line}: sends no Brevo event: a Brevo event needs a contact and a product"
                    f" has none; {what}. Remove the line to silence this warning"
                    " (docs/mapping.md, Events)"
                )
            elif resource == "coupon":
                what = (
                    f"coupon codes go into the coupon collection"
                    f" {site.brevo.coupon_collection!r} instead"
                    if woo.sync.coupons
                    else "and sync.coupons is off, so coupons are not sent at all"
                )
                warnings.append(
                    f"{line}: sends no Brevo event: a Brevo event needs a contact and a coupon"
                    f" has none; {what}. Remove the line to silence this warning"
                    " (docs/mapping.md, Events)"
                )
            elif resource == "order" and not woo.sync.orders:
                warnings.append(f"{line}: sends nothing: sync.orders is off")
            elif resource == "customer" and not woo.sync.customers:
                warnings.append(f"{line}: sends nothing: sync.customers is off")
        explicit = set(cfg.connectors.woocommerce.model_fields_set)
        if cfg.sites:
            explicit |= set(cfg.sites[i].override_keys)
        rest_only = sorted(explicit & _REST_KEYS)
        if rest_only and not (woo.store_url and woo.consumer_key and woo.consumer_secret):
            warnings.append(
                f"{where}: {', '.join(rest_only)} set how the agent reads the store's REST API"
                " (polling, backfill, doctor), but this site has no"
                " store_url/consumer_key/consumer_secret, so they do nothing: add the keys"
                " (or env WC_CONSUMER_KEY / WC_CONSUMER_SECRET), or remove these lines"
            )
        problem = auth_problem(woo.store_url, woo.auth) if woo.store_url else None
        if problem is not None:
            warnings.append(f"{where}: {problem}")
        warnings += _cart_warnings(where, woo)
        warnings += _consent_warnings(where, woo)
    return warnings


def _consent_warnings(where: str, woo: WooSection) -> list[str]:
    """A transactional event that no topic maps to is never sent: the name is likely a typo."""
    sent = {hook.event for hook in woo.webhooks} | set(LIFECYCLE_DEFAULTS.values())
    if woo.carts.enabled:
        sent |= {woo.carts.event, woo.carts.recovered_event}
    return [
        f"{where}.consent.transactional_events: {name!r} is no event this site sends (none of"
        f" webhooks, the lifecycle defaults or the cart events maps to it), so it changes"
        f" nothing; check the spelling or remove it"
        for name in woo.consent.transactional_events
        if name not in sent
    ]


def _cart_warnings(where: str, woo: WooSection) -> list[str]:
    """Carts ride only the plugin's stream: WooCommerce's REST API and webhooks have none."""
    if not woo.carts.enabled:
        return []
    if woo.mode == "polling":
        door = "mode is polling (no plugin)"
    elif woo.webhook_secret and not woo.token_sha256:
        door = (
            "this site has a webhook_secret and no token_sha256 in the config (webhooks only,"
            " unless its token was stored with `token create --store`)"
        )
    else:
        return []
    return [
        f"{where}.carts: {door}: abandoned carts ride only the plugin's stream (WooCommerce's"
        " REST API and webhooks carry no carts), so none are tracked until the plugin connects;"
        " set carts.enabled: false to silence this (docs/carts.md)"
    ]


# A config's YAML may share blocks with anchors and aliases (`<<: *defaults`), but not make
# a few hundred bytes stand for billions of values (an alias bomb ran `check` for minutes and
# over 1 GB, issue 16 finding 7): these bound the document as its aliases expand it.
MAX_YAML_ALIASES = 1_000
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 64


class _YamlBudget(yaml.YAMLError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, counting each node's values with its aliases expanded (an alias
    counts as the whole node it names) and refusing the document past the budgets above."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
        alias = self.check_event(yaml.AliasEvent)
        if alias:
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _YamlBudget(line, f"more than {MAX_YAML_ALIASES:,} aliases (*name)")
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _YamlBudget(line, f"nested more than {MAX_YAML_DEPTH} levels deep")
        node = super().compose_node(parent, index)
        self._depth -= 1
        if alias and id(node) not in self._sizes:  # its node is still being read
            raise _YamlBudget(line, "an alias (*name) inside the value it names: a loop")
        if id(node) not in self._sizes:  # new (an alias gives back a node already counted)
            items = node.value if isinstance(node, yaml.CollectionNode) else []
            flat = [
                part for item in items for part in (item if isinstance(item, tuple) else [item])
            ]
            size = 1 + sum(self._sizes.get(id(child), 1) for child in flat)
            if size > MAX_YAML_VALUES:
                raise _YamlBudget(
                    line,
                    f"its aliases expand this value to more than {MAX_YAML_VALUES:,} values"
                    " (a YAML alias bomb?); write the blocks out, or share fewer of them",
                )
            self._sizes[id(node)] = size
        return node


def load_config(
    path: str | Path, env: Mapping[str, str] | None = None, *, raw: bytes | None = None
) -> Config:
    """Read, interpolate and validate a config file; ConfigError says what and where. `raw`:
    the file's bytes, already read (a reload hands the worker process the doors' copy)."""
    env = _with_credentials(os.environ if env is None else env)
    file = str(path)
    try:
        raw = Path(path).read_bytes() if raw is None else raw
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ConfigError(file, [f"cannot read the file: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(file, [f"not UTF-8 text (byte {exc.start}: {exc.reason})"]) from None
    try:
        data = yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader, bounded
    except _YamlBudget as exc:
        raise ConfigError(file, [f"YAML refused at {exc}"]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        raise ConfigError(file, [f"YAML syntax error at {where}: {exc.problem}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(file, [f"YAML syntax error: {exc}"]) from exc
    except RecursionError:
        raise ConfigError(
            file, [f"YAML nested too deep (at most {MAX_YAML_DEPTH} levels)"]
        ) from None
    except (ValueError, KeyError, AttributeError, TypeError, OverflowError) as exc:
        # A tag YAML cannot apply to its value (`!!int x`, `!!bool x`, `!!timestamp x`).
        raise ConfigError(
            file, [f"YAML value refused: a tag (!!…) that does not fit its value ({exc!r:.200})"]
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            file, ["the top level must be a mapping of keys (agent, brevo, connectors, sites)"]
        )
    problems: list[str] = []
    data = _interpolate(data, env, "", problems)
    if problems:
        raise ConfigError(file, problems)
    _env_defaults(data, env)
    data["source"] = file
    data["file_bytes"], data["digest"] = raw, hashlib.sha256(raw).hexdigest()
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        # A value quoted back (a host:port that is in fact an API key) is masked.
        raise ConfigError(file, _hide_secrets(_explain(exc), data)) from None
    problems = _semantic_checks(cfg)
    if problems:
        raise ConfigError(file, _hide_secrets(problems, data))
    return cfg


def _hide_secrets(problems: list[str], data: Any) -> list[str]:
    """`problems` with the file's secret values, and anything credential-like, masked."""
    found: list[str] = []

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif key in SECRET_KEYS and isinstance(node, str):
            found.append(node)
        elif key == "store" and isinstance(node, str):
            found.append(password(node) or "")

    walk(data)
    return [redact(p, found) for p in problems]


def secret_values(cfg: Config) -> set[str]:
    """Every secret the config holds, as written and as sent (Basic auth's base64 of
    key:secret): what no log line may show (agent/logs.py masks them)."""
    woos = [cfg.connectors.woocommerce, *(s.woo for s in cfg.resolved_sites())]
    brevos = [cfg.brevo, *(s.brevo for s in cfg.resolved_sites())]
    found = {b.api_key for b in brevos} | {b.webhook_secret for b in brevos}
    if cfg.agent.store is not None:
        found.add(password(cfg.agent.store))
    for woo in woos:
        found |= {woo.consumer_key, woo.consumer_secret, woo.webhook_secret}
        if woo.consumer_key and woo.consumer_secret:
            pair = f"{woo.consumer_key}:{woo.consumer_secret}".encode()
            found.add(base64.b64encode(pair).decode("ascii"))
    return {value for value in found if value}


def masked(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain data with every secret masked (for `check` and /status)."""

    def mask(node: Any, key: str = "") -> Any:
        if isinstance(node, dict):
            return {k: mask(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [mask(v) for v in node]
        if key in SECRET_KEYS and node:
            s = str(node)
            return "****" + s[-4:] if len(s) > 12 and key != "token_sha256" else "****"
        return node

    out = cfg.model_dump(mode="json", exclude={"source"})
    if cfg.agent.store is not None:
        out["agent"]["store"] = shown(cfg.agent.store)
    out["resolved_sites"] = [
        {
            "id": s.id,
            "woocommerce": s.woo.model_dump(mode="json"),
            "brevo": {
                **s.brevo.model_dump(mode="json"),
                "dry_run_effective": s.brevo.is_dry_run,
                "account": s.brevo.account,
            },
        }
        for s in cfg.resolved_sites()
    ]
    result: dict[str, Any] = mask(out)
    return result
