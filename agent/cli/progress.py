"""Backfill progress on the operator's terminal: bars redrawn in place, or plain lines for logs,
pipes and systemd. The text of a line is a pure function of (done, total, elapsed)."""

from __future__ import annotations

import math
import shutil
import time
from typing import Any, TextIO

__all__ = ["BarProgress", "LineProgress", "format_bar", "format_line"]


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


def format_bar(
    name: str, done: int, total: int | None, elapsed: float, width: int = 80, label: int = 10
) -> str:
    """One terminal line with a bar: `orders    [#######.....] 1200/50000  95.1/s  eta 08:33`;
    names are padded to `label` characters, so the bars of one report line up."""
    rate, eta = _rate_eta(done, total, elapsed)
    count = f"{done}/{total}" if total is not None else f"{done}/?"
    tail = f" {count:>13} {rate:7.1f}/s eta {_duration(eta)}"
    label_text = f"{name:<{label}}"
    room = max(width - len(label_text) - len(tail) - 3, 10)
    filled = room if total == 0 else 0
    if total:
        filled = min(room, int(room * done / total))
    return f"{label_text} [{'#' * filled}{'.' * (room - filled)}]{tail}"


class BarProgress:
    """One bar per resource, redrawn in place (a terminal)."""

    def __init__(self, out: TextIO, clock: Any = time.monotonic) -> None:
        self.out = out
        self.clock = clock
        self.rows: dict[str, tuple[int, int | None, float, float | None]] = {}
        self._drawn = 0
        self._last = 0.0

    def update(self, name: str, done: int, total: int | None) -> None:
        """Record progress; redraw at most 10 times a second."""
        started = self.rows[name][2] if name in self.rows else self.clock()
        self.rows[name] = (done, total, started, None)
        now = self.clock()
        if now - self._last >= 0.1:
            self._last = now
            self._draw()

    def finish(self, name: str, done: int) -> None:
        """Freeze a resource's bar at its final count."""
        now = self.clock()
        started = self.rows[name][2] if name in self.rows else now
        total = self.rows[name][1] if name in self.rows else None
        self.rows[name] = (done, total if total is not None else done, started, now)
        self._draw()

    def _draw(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        now = self.clock()
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F")  # back to the first bar (ECMA-48 CPL)
        # "brevo contacts", the backfill's look at Brevo first, is longer than the resources.
        label = max(10, *(len(name) for name in self.rows))
        for name, (done, total, started, ended) in self.rows.items():
            line = format_bar(name, done, total, (ended or now) - started, width, label)
            self.out.write(f"\x1b[2K{line}\n")
        self._drawn = len(self.rows)
        self.out.flush()


class LineProgress:
    """Plain lines (logs, pipes, systemd): one per resource every `every` seconds and at the end."""

    def __init__(self, out: TextIO, every: float = 10.0, clock: Any = time.monotonic) -> None:
        self.out = out
        self.every = every
        self.clock = clock
        self.started: dict[str, float] = {}
        self.printed: dict[str, float] = {}

    def update(self, name: str, done: int, total: int | None) -> None:
        """Print a line when `every` seconds passed since the last one for this resource."""
        now = self.clock()
        start = self.started.setdefault(name, now)
        if now - self.printed.get(name, start) >= self.every:
            self.printed[name] = now
            print(f"backfill {format_line(name, done, total, now - start)}", file=self.out)
            self.out.flush()

    def finish(self, name: str, done: int) -> None:
        """The final line of a resource."""
        now = self.clock()
        start = self.started.setdefault(name, now)
        if name not in self.printed and now == start:
            line = f"backfill {name} {done}/{done} done (by an earlier run)"
        else:
            line = f"backfill {format_line(name, done, done, now - start)} done"
        self.printed[name] = now
        print(line, file=self.out)
        self.out.flush()
