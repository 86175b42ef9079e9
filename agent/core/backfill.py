"""Backfill plans and checkpoints, pure: which resources in which order, what a run covers,
where a killed run resumes, and the command line's `--since` and `--start-at`.

The shell is agent/doors/backfill.py (docs/backfill.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from agent.core.times import GMT_FORMAT, read_time

__all__ = [
    "BACKFILL_ORDER",
    "Checkpoint",
    "RunSpec",
    "backfill_order",
    "parse_since",
    "seconds_until",
]

# Products before customers before orders: an order's line items then name products Brevo
# already holds, and a registered buyer's names come from the customer record, not the order.
BACKFILL_ORDER = ("products", "customers", "orders", "coupons")


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
