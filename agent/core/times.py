"""Time, read and written once: ISO 8601 in, epoch seconds, and the two formats out. Pure.

Brevo and the stream protocol write UTC as `YYYY-MM-DDTHH:MM:SSZ`; WooCommerce's `*_gmt`
fields are the same instant without the zone (`YYYY-MM-DDTHH:MM:SS`), and a naive time is UTC.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

__all__ = [
    "GMT_FORMAT",
    "UTC_FORMAT",
    "display_time",
    "gmt",
    "gmt_seconds",
    "parse_time",
    "read_time",
    "utc_stamp",
]

UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # Brevo (NOTES.md, eCommerce → orders), protocol v1
GMT_FORMAT = "%Y-%m-%dT%H:%M:%S"  # WooCommerce's date_*_gmt


def parse_time(value: object) -> datetime | None:
    """ISO 8601 time → aware UTC datetime (naive values are UTC); None for no value, and a
    ValueError that says what was wrong for anything else."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 time, got {type(value).__name__}")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 time, got {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def read_time(value: object) -> datetime | None:
    """`parse_time` for data that may hold anything: None where it holds no time."""
    try:
        return parse_time(value)
    except ValueError:
        return None


def utc_stamp(seconds: float) -> str:
    """Epoch seconds → `YYYY-MM-DDTHH:MM:SSZ`."""
    return datetime.fromtimestamp(seconds, UTC).strftime(UTC_FORMAT)


def gmt(seconds: float) -> str:
    """Epoch seconds → WooCommerce's `date_modified_gmt` format (UTC, no zone, whole seconds)."""
    return datetime.fromtimestamp(math.floor(seconds), UTC).strftime(GMT_FORMAT)


# WooCommerce's `*_gmt` form, read as `parse_time` reads it (naive: UTC) in fewer steps: its
# distance from the naive epoch is the aware time's from the aware one (the same timedelta).
_GMT_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
_NAIVE_EPOCH = datetime(1970, 1, 1)


def gmt_seconds(text: object) -> float | None:
    """`date_modified_gmt` (or any ISO 8601 time, naive = UTC) → epoch seconds; None if none."""
    if type(text) is str and _GMT_TEXT.fullmatch(text):  # every order has two
        try:
            return (datetime.fromisoformat(text) - _NAIVE_EPOCH).total_seconds()
        except ValueError:
            return None  # no such day: what `read_time` answers
    dt = read_time(text)
    return None if dt is None else dt.timestamp()


def display_time(seconds: float) -> str:
    """Epoch seconds → `YYYY-MM-DD HH:MM:SSZ`, for people (the CLI's tables)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
