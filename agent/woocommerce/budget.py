"""The per-site request budget of the REST client: a pure pacing policy, the client sleeps."""

from __future__ import annotations

__all__ = ["RateBudget"]


class RateBudget:
    """A per-site request budget: at most `per_minute` request starts per minute, evenly spaced.

    GCRA (the generic cell rate algorithm): one start every ``60/per_minute`` seconds, with up to
    `burst` back to back. Shared hosts count requests per minute and answer 429 (or block the IP)
    above it; spacing requests evenly never trips a windowed counter.
    """

    def __init__(self, per_minute: float | None, burst: int = 1) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.tolerance = self.interval * max(burst - 1, 0)
        self._tat = float("-inf")  # theoretical arrival time of the next conforming start

    def reserve(self, now: float) -> float:
        """Book the next start and return how long to wait for it (0 when it is now)."""
        if self.interval == 0.0:
            return 0.0
        start = max(now, self._tat - self.tolerance)
        self._tat = max(self._tat, start) + self.interval
        return start - now

    def hold(self, until: float) -> None:
        """No start before `until` (after a 429 with Retry-After)."""
        self._tat = max(self._tat, until + self.interval)
