"""agent/core/times.py: the one reader and the writers of time, data in, data out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.core.times import display_time, gmt, gmt_seconds, parse_time, read_time, utc_stamp

T = datetime(2026, 11, 27, 6, 29, 58, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-27T06:29:58",
        "2026-11-27T06:29:58Z",
        "2026-11-27T07:29:58+01:00",
        " 2026-11-27 06:29:58 ",
    ],
)
def test_iso_8601_in_naive_is_utc(text: str) -> None:
    assert parse_time(text) == T
    assert read_time(text) == T
    assert gmt_seconds(text) == T.timestamp()


@pytest.mark.parametrize("value", ["yesterday", 1795800000, ["2026-11-27"]])
def test_what_is_no_time(value: object) -> None:
    with pytest.raises(ValueError, match="expected an ISO 8601 time"):
        parse_time(value)
    assert read_time(value) is None
    assert gmt_seconds(value) is None


def test_no_value_is_none() -> None:
    assert parse_time(None) is None and parse_time("") is None and gmt_seconds(None) is None


def test_the_formats_out() -> None:
    seconds = T.timestamp()
    assert utc_stamp(seconds) == "2026-11-27T06:29:58Z"
    assert gmt(seconds + 0.9) == "2026-11-27T06:29:58"  # whole seconds, floored
    assert display_time(seconds) == "2026-11-27 06:29:58Z"
