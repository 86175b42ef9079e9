"""Brevo's endpoint families and their rate windows (NOTES.md §4), and the
`x-sib-ratelimit-*` headers they give. Plain: importing this loads neither aiohttp nor the
validators."""

from __future__ import annotations

import math
from dataclasses import dataclass

API_PREFIX = "/v3"

FAMILIES = ("contacts", "events", "orders", "products", "other")

Windows = tuple[tuple[int, float], ...]
"""Rate windows of one family: (requests allowed, window length in seconds)."""

# developers.brevo.com/docs/api-limits as transcribed in reference/brevo/NOTES.md §4.
# General covers every plan; Advanced is Professional and Enterprise; Extended is Enterprise.
PLAN_LIMITS: dict[str, dict[str, Windows]] = {
    "general": {
        "contacts": ((10, 1.0), (36_000, 3600.0)),
        "events": ((10, 1.0), (36_000, 3600.0)),
        "orders": ((5, 1.0), (18_000, 3600.0)),
        "products": ((2, 1.0), (7_200, 3600.0)),
        "other": ((100, 3600.0),),
    },
    "advanced": {
        "contacts": ((20, 1.0), (72_000, 3600.0)),
        "events": ((20, 1.0), (72_000, 3600.0)),
        "orders": ((10, 1.0), (36_000, 3600.0)),
        "products": ((4, 1.0), (14_400, 3600.0)),
        "other": ((200, 3600.0),),
    },
    "extended": {
        "contacts": ((60, 1.0),),
        "events": ((60, 1.0),),
        "orders": ((15, 1.0),),
        "products": ((21_600, 3600.0),),
        "other": ((600, 3600.0),),
    },
}


def family_of(method: str, path: str) -> str:
    """The rate-limit family of a request (NOTES.md §4); `path` may carry /v3 and a query."""
    path = path.partition("?")[0]
    if path.startswith(API_PREFIX + "/"):
        path = path[len(API_PREFIX) :]
    if path == "/contacts" or path.startswith("/contacts/"):
        return "contacts"  # "all /v3/contacts/*", lists, attributes, import and batch included
    if method.upper() == "POST":
        # Only the single-object endpoints have their own buckets; /orders/status/batch and
        # /products/batch are "all other endpoints". Whether /events/batch shares the events
        # bucket is UNVERIFIED (NOTES.md §4): metered with /events here.
        if path in ("/events", "/events/batch"):
            return "events"
        if path == "/orders/status":
            return "orders"
        if path == "/products":
            return "products"
    return "other"


def format_reset(seconds: float, time_scale: float = 1.0) -> str:
    """The `x-sib-ratelimit-reset` value for a window that ends in `seconds` of real time.

    Brevo counts whole seconds (docs/limit-headers); rounding up means a client that waits that
    long is past the window. Under a time scale those whole seconds are divided, so the value
    stays real time (a 1 s window at scale 60 reads "0.017").
    """
    whole = max(1, math.ceil(seconds * time_scale - 1e-9))
    if time_scale == 1.0:
        return str(whole)
    scaled = math.ceil(whole / time_scale * 1000 - 1e-6) / 1000
    return f"{scaled:.3f}".rstrip("0").rstrip(".")


@dataclass(slots=True)
class _Window:
    """One fixed window: the first request after the previous window ended opens it."""

    limit: int
    length: float  # real seconds: Brevo's period divided by the time scale
    start: float | None = None
    used: int = 0

    def roll(self, now: float) -> None:
        if self.start is not None and now >= self.start + self.length:
            self.start, self.used = None, 0

    def left(self, now: float) -> float:
        """Real seconds until this window ends; a whole window when none is open."""
        return self.length if self.start is None else self.start + self.length - now


class Budget:
    """The windows of one family and the `x-sib-ratelimit-*` headers they give."""

    def __init__(self, windows: Windows, time_scale: float) -> None:
        self.windows = [_Window(count, period / time_scale) for count, period in windows]
        self.time_scale = time_scale

    def take(self, now: float) -> bool:
        """Count one request; False (and nothing counted) when a window is full."""
        for window in self.windows:
            window.roll(now)
        if any(w.used >= w.limit for w in self.windows):
            return False
        for window in self.windows:
            if window.start is None:
                window.start = now
            window.used += 1
        return True

    def headers(self, now: float) -> dict[str, str]:
        """Headers for the window that binds: a full one, else the one with least room."""
        for window in self.windows:
            window.roll(now)
        full = [w for w in self.windows if w.used >= w.limit]
        if full:
            # Requests stay refused until the last full window ends.
            window = max(full, key=lambda w: w.left(now))
        else:
            window = min(self.windows, key=lambda w: (w.limit - w.used, w.left(now)))
        return self._headers(window, max(0, window.limit - window.used), now)

    def exhausted(self, now: float) -> dict[str, str]:
        """Headers of a scripted 429: the shortest window, with no room left."""
        window = min(self.windows, key=lambda w: w.length)
        window.roll(now)
        return self._headers(window, 0, now)

    def _headers(self, window: _Window, remaining: int, now: float) -> dict[str, str]:
        return {
            "x-sib-ratelimit-limit": str(window.limit),
            "x-sib-ratelimit-remaining": str(remaining),
            "x-sib-ratelimit-reset": format_reset(window.left(now), self.time_scale),
        }
