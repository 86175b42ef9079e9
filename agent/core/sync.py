"""Polling and backfill decisions, pure: which fields to ask for, which topic a listed object
gets, where a poll window starts, what changed or vanished, the stream/polling mode machine,
backfill checkpoints and progress arithmetic.

The shells (agent/doors/poller.py, agent/doors/backfill.py) only fetch pages and store events.
WooCommerce facts used here are in reference/woocommerce/NOTES.md §2 (listing parameters).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from agent.core.events import Door, Event, Rejection, parse_event
from agent.core.times import GMT_FORMAT, gmt, gmt_seconds, read_time
from agent.core.woo import COMPUTED_PATHS, NOT_ORDER_STATUSES, SINGULAR

__all__ = [
    "BACKFILL_ORDER",
    "FIELDS",
    "Checkpoint",
    "Known",
    "Mode",
    "RunSpec",
    "Step",
    "advance",
    "backfill_order",
    "changed_ids",
    "chunks",
    "deleted_events",
    "fields_for",
    "format_bar",
    "format_line",
    "next_mode",
    "parse_since",
    "seconds_until",
    "start_mark",
    "stream_fresh",
    "to_events",
    "topic_for",
    "vanished_ids",
    "window_start",
]

# The fields each resource's consumers read: the pipeline (agent/core/pipeline.py, lifecycle.py)
# and the mapping (agent/core/mapping.py). Asking only for them (`_fields`) halves the bytes of
# an order page; tests/agent/test_backfill.py checks that a trimmed reference object gives the
# pipeline exactly the intents the full one gives, so a new field read there fails that test.
FIELDS: dict[str, tuple[str, ...]] = {
    "customers": (
        "id",
        "email",
        "first_name",
        "last_name",
        "role",
        "billing",
        "shipping",
        "meta_data",
        "date_created_gmt",
        "date_modified_gmt",
    ),
    "orders": (
        "id",
        "parent_id",
        "number",
        "status",
        "currency",
        "total",
        "customer_id",
        "billing",
        "shipping",
        "line_items",
        "coupon_lines",
        "refunds",
        "date_created",
        "date_created_gmt",
        "date_modified_gmt",
    ),
    "products": (
        "id",
        "name",
        "type",
        "status",
        "permalink",
        "sku",
        "price",
        "images",
        "categories",
        "parent_id",
        "stock_quantity",
        "attributes",
        "variations",
        "date_created_gmt",
        "date_modified_gmt",
    ),
    "variations": (
        "id",
        "name",
        "type",
        "status",
        "permalink",
        "sku",
        "price",
        "image",
        "parent_id",
        "stock_quantity",
        "attributes",
        "date_created_gmt",
        "date_modified_gmt",
    ),
    "coupons": ("id", "code", "status", "date_created_gmt", "date_modified_gmt"),
}

# WooCommerce sends variations as product.* (NOTES §1.3).
_TOPIC_BASE = {**SINGULAR, "variations": "product"}

# Products before customers before orders: an order's line items then name products Brevo
# already holds, and a registered buyer's names come from the customer record, not the order.
BACKFILL_ORDER = ("products", "customers", "orders", "coupons")


def fields_for(resource: str, mapping: Mapping[str, str]) -> tuple[str, ...]:
    """`_fields` for a listing: what the pipeline reads plus each mapped customer path's root."""
    fields = list(FIELDS[resource])
    if resource == "customers":
        for path in mapping:
            root = path.split(".", 1)[0]
            if path not in COMPUTED_PATHS and root not in fields:
                fields.append(root)
    return tuple(fields)


def topic_for(resource: str, obj: Mapping[str, Any]) -> str:
    """`created` while the object was never modified after its creation, else `updated`.

    Derived from content only, so the same version listed twice (overlapping windows, a
    backfill and a poll) gets the same content id and is stored once (agent/core/events.py).
    """
    created = obj.get("date_created_gmt")
    fresh = bool(created) and created == obj.get("date_modified_gmt")
    return f"{_TOPIC_BASE[resource]}.{'created' if fresh else 'updated'}"


def to_events(
    resource: str,
    items: Iterable[Mapping[str, Any]],
    *,
    door: Door,
    historical: bool = False,
) -> tuple[list[Event], list[tuple[Rejection, object]]]:
    """Listed REST objects → events (content ids) and rejections (kept as dead letters)."""
    events: list[Event] = []
    rejected: list[tuple[Rejection, object]] = []
    for item in items:
        raw = {"topic": topic_for(resource, item), "resource": SINGULAR[resource], "payload": item}
        parsed = parse_event(raw, door=door, historical=historical)
        if isinstance(parsed, Rejection):
            rejected.append((parsed, raw))
        else:
            events.append(parsed)
    return events, rejected


def deleted_events(resource: str, ids: Iterable[int], *, door: Door) -> list[Event]:
    """`<resource>.deleted` events for objects that vanished from the store's listings."""
    out = []
    for oid in ids:
        raw = {"topic": f"{_TOPIC_BASE[resource]}.deleted", "payload": {"id": oid}}
        raw["resource"] = SINGULAR[resource]
        parsed = parse_event(raw, door=door)
        if isinstance(parsed, Event):
            out.append(parsed)
    return out


# -- polling windows, in WooCommerce's GMT format (agent/core/times.py) -------------------------


def window_start(mark: str, overlap: float) -> str:
    """`modified_after` for a poll: the mark minus the overlap.

    WP_Date_Query's `after` is exclusive with one-second granularity (NOTES §2.1), and a save
    in the second the last poll ran may commit after it: windows overlap, repeats dedupe.
    """
    seconds = gmt_seconds(mark)
    if seconds is None:
        raise ValueError(f"not a WooCommerce GMT time: {mark!r}")
    return gmt(seconds - overlap)


def advance(mark: str | None, items: Iterable[Mapping[str, Any]]) -> str | None:
    """The newest `date_modified_gmt` among the mark and the items (same format: string max)."""
    newest = mark
    for item in items:
        stamp = item.get("date_modified_gmt")
        if isinstance(stamp, str) and stamp and (newest is None or stamp > newest):
            newest = stamp
    return newest


def start_mark(poll_mark: str | None, known_newest: str | None, lookback: float) -> str | None:
    """Where polling resumes: the poller's own mark, or — when another door kept the site up to
    date since — the newest version any door stored minus `lookback` (rows the plugin had not
    shipped yet when its stream went silent). None: nothing known, start from the store's now."""
    candidates = [poll_mark] if poll_mark else []
    seconds = gmt_seconds(known_newest)
    if seconds is not None:
        candidates.append(gmt(seconds - lookback))
    return max(candidates) if candidates else None


# What the agent holds of an object: (date_modified_gmt, deleted, order status or None), as
# SqliteStore.object_versions returns it. Listings with status "any" leave drafts and trash out
# (NOT_ORDER_STATUSES), so an object last seen in one of them is not counted as gone.
Known = Mapping[int, tuple[str, bool, str | None]]


def changed_ids(remote: Mapping[int, str], known: Known) -> list[int]:
    """Ids whose listed `date_modified_gmt` is newer than the version the agent holds."""
    out = []
    for oid, version in remote.items():
        have = known.get(oid)
        if have is None or have[1] or (version and version > have[0]):
            out.append(oid)
    return sorted(out)


def vanished_ids(remote: Iterable[int], known: Known) -> list[int]:
    """Ids the agent holds as live that the store no longer lists (deleted or trashed).

    Permanent deletions fire no webhook and no hook the stream could miss-handle (NOTES §1.4),
    so only a listing shows them. Objects the agent last saw in a status the listing hides
    (drafts) are not counted as gone.
    """
    present = set(remote)
    return sorted(
        oid
        for oid, (_, deleted, status) in known.items()
        if not deleted and status not in NOT_ORDER_STATUSES and oid not in present
    )


# -- the mode machine ---------------------------------------------------------------------------


class Mode(StrEnum):
    """How a site's changes reach the agent right now (/status, /metrics)."""

    STREAM = "stream"
    POLLING = "polling"


class Step(StrEnum):
    """What the poller does on this tick."""

    IDLE = "idle"  # the stream is healthy
    POLL = "poll"  # poll the store (when due)
    CATCHUP = "catchup"  # the stream is back: one last poll now, then stop


def stream_fresh(
    last_seen: float | None, started_at: float, now: float, stale_after: float
) -> bool:
    """Heard from within `stale_after`; before the first hello the agent's start counts, so a
    restart does not poll while the plugin is about to reconnect (WP-Cron ticks every minute)."""
    reference = last_seen if last_seen is not None else started_at
    return now - reference <= stale_after


def next_mode(configured: str, current: Mode, fresh: bool) -> tuple[Mode, Step]:
    """stream → (silent for stale_after) → polling → (stream back) → one catch-up → stream.

    A site configured with `mode: polling` has no plugin and is polled whatever happens.
    """
    if configured == Mode.POLLING:
        return Mode.POLLING, Step.POLL
    if current is Mode.STREAM:
        return (Mode.STREAM, Step.IDLE) if fresh else (Mode.POLLING, Step.POLL)
    return (Mode.STREAM, Step.CATCHUP) if fresh else (Mode.POLLING, Step.POLL)


# -- backfill -----------------------------------------------------------------------------------


def backfill_order(requested: Iterable[str] | None, enabled: Mapping[str, bool]) -> list[str]:
    """The resources to backfill, in BACKFILL_ORDER, keeping those `sync` enables."""
    wanted = set(BACKFILL_ORDER if requested is None else requested)
    unknown = wanted - set(BACKFILL_ORDER)
    if unknown:
        raise ValueError(
            f"unknown resource {sorted(unknown)[0]!r}; expected some of {', '.join(BACKFILL_ORDER)}"
        )
    return [r for r in BACKFILL_ORDER if r in wanted and enabled.get(r, True)]


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What a backfill run covers; a run is resumed only by the same command."""

    resources: tuple[str, ...]
    since: str | None

    def dump(self) -> str:
        """JSON for the store's meta table."""
        return json.dumps({"resources": list(self.resources), "since": self.since})

    @classmethod
    def load(cls, text: str) -> RunSpec:
        """The inverse of `dump`."""
        data = json.loads(text)
        return cls(tuple(data["resources"]), data.get("since"))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A resource's progress: every page before `next_page` is stored."""

    next_page: int = 1
    total_pages: int | None = None
    total: int | None = None
    done_items: int = 0
    finished: bool = False
    last_page_items: int = 0  # of done_items, how many the last stored page brought
    # Variable products whose variations are still to fetch (products only).
    parents: tuple[int, ...] = ()

    def dump(self) -> str:
        """JSON for the watermarks table."""
        return json.dumps(asdict(self))

    @classmethod
    def load(cls, text: str | None) -> Checkpoint:
        """The inverse of `dump`; a missing checkpoint is page 1."""
        if not text:
            return cls()
        data = json.loads(text)
        data["parents"] = tuple(data.get("parents", ()))
        return cls(**data)

    def resume_page(self) -> int:
        """Where a resumed run starts: one page back, because objects deleted since shift every
        later page left by one slot per deletion (pages are offsets, not keys); repeats dedupe."""
        return max(1, self.next_page - 1) if self.next_page > 1 else 1

    def resume_done(self) -> int:
        """`done_items` before the page `resume_page` fetches again."""
        return self.done_items - self.last_page_items if self.next_page > 1 else 0


def parse_since(text: str) -> str:
    """`--since 2025-01-31` or an ISO 8601 time → WooCommerce's GMT format."""
    dt = read_time(text)
    if dt is None:
        raise ValueError(
            f"--since: expected a date like 2025-01-31 or 2025-01-31T12:00:00Z, got {text!r}"
        )
    return dt.strftime(GMT_FORMAT)


def seconds_until(hhmm: str, now: datetime) -> float:
    """Seconds from `now` (local, aware or naive) to the next `HH:MM` on the same clock."""
    try:
        hour, minute = (int(p) for p in hhmm.split(":"))
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError
    except ValueError:
        raise ValueError(f"--start-at: expected HH:MM (24-hour), got {hhmm!r}") from None
    target = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    return (target - now).total_seconds()


# -- progress -----------------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None or math.isinf(seconds) or math.isnan(seconds):
        return "--:--"
    whole = int(seconds + 0.5)  # half up: an ETA of 2.5 s shows 00:03
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _rate_eta(done: int, total: int | None, elapsed: float) -> tuple[float, float | None]:
    rate = done / elapsed if elapsed > 0 else 0.0
    if total is None or rate <= 0:
        return rate, None
    return rate, max(total - done, 0) / rate


def format_line(name: str, done: int, total: int | None, elapsed: float) -> str:
    """A plain progress line (logs, pipes): `orders 1200/50000 (2.4%) 95.1/s eta 08:33`."""
    rate, eta = _rate_eta(done, total, elapsed)
    if total is None:
        return f"{name} {done}/? {rate:.1f}/s elapsed {_duration(elapsed)}"
    pct = 100.0 * done / total if total else 100.0
    return f"{name} {done}/{total} ({pct:.1f}%) {rate:.1f}/s eta {_duration(eta)}"


def format_bar(name: str, done: int, total: int | None, elapsed: float, width: int = 80) -> str:
    """One terminal line with a bar: `orders    [#######.....] 1200/50000  95.1/s  eta 08:33`."""
    rate, eta = _rate_eta(done, total, elapsed)
    count = f"{done}/{total}" if total is not None else f"{done}/?"
    tail = f" {count:>13} {rate:7.1f}/s eta {_duration(eta)}"
    label = f"{name:<10}"
    room = max(width - len(label) - len(tail) - 3, 10)
    filled = room if total == 0 else 0
    if total:
        filled = min(room, int(room * done / total))
    return f"{label} [{'#' * filled}{'.' * (room - filled)}]{tail}"


def chunks(ids: Sequence[int], size: int) -> list[list[int]]:
    """`ids` in lists of at most `size` (WooCommerce's `include` takes up to per_page ids)."""
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]
