"""The WooCommerce fake's clock, API keys, stored records and request log."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal


class FakeClock:
    """The store's ``time()``: frozen, moved only by the test (`advance`, `set`)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = int(time.time() if start is None else start)

    def now(self) -> int:
        """Seconds since the epoch, UTC."""
        return self._now

    def advance(self, seconds: float) -> int:
        """Move forward (WordPress dates have one-second granularity)."""
        self._now += math.ceil(seconds)
        return self._now

    def set(self, timestamp: float) -> None:
        """Jump to `timestamp`."""
        self._now = int(timestamp)


def wc_date(ts: int | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class ApiKey:
    """A row of ``wp_woocommerce_api_keys`` and what its WordPress user may do."""

    consumer_key: str
    consumer_secret: str
    permissions: Literal["read", "write", "read_write"] = "read_write"
    capable: bool = True  # the key's user is an Administrator / Shop manager
    nonces: dict[int, str] = field(default_factory=dict)  # timestamp → nonce, as WC stores it


@dataclass
class Record:
    """One stored object with the timestamps the queries filter on."""

    obj: dict[str, Any]
    created: int
    modified: int
    parent: int = 0


@dataclass
class RequestRecord:
    """What the fake saw: arrival time (loop clock), request line, status, body bytes sent.

    `authorization` is the scheme of the Authorization header the client sent ("Basic",
    "OAuth"; "" without one), before a `strip_authorization` host drops it.
    """

    at: float
    method: str
    path: str
    query: str
    status: int = 0
    bytes_sent: int = 0
    auth: str = ""
    authorization: str = ""
