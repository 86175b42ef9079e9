"""Brevo's rate budgets shared by every replica forwarding for one account (issue 17).

Brevo meters an account, not a process: N replicas each keeping its own budget (the SQLite
agent's in-process `Budget`, agent/core/planner.py) would together send N times the limit.
Here the windows live in the table `rate_windows` (migration 2): per (account, endpoint
family, window period) the window's start, the requests counted in it, and until when a 429
blocks the family. Every take, answer's headers and 429 is one short transaction that locks
the family's rows (`FOR UPDATE`, in period order), runs the pure `Budget` logic on them and
writes them back: two replicas never both take the last request of a window.

Times in the table are the server's clock (`clock_timestamp()`), so the replicas' clocks
may differ; each call copies the shared windows into the caller's `Budget` on its own clock
(shifted by the difference), which the forwarder's planner reads between takes.

The takes do not wait for the disk (`synchronous_commit = off`): a server crash may forget
the last takes of a window, which at worst costs one 429 (and its block), never a job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from agent.core.planner import Budget
from agent.store.postgres.base import PgBase

__all__ = ["BudgetsMixin"]

T = TypeVar("T")

_ENSURE = (
    "INSERT INTO rate_windows (account, family, period)"
    " SELECT %s, %s, p FROM unnest(%s::float8[]) AS t(p) ON CONFLICT DO NOTHING"
)
_LOCK = (
    "SELECT period, start, used, blocked_until, extract(epoch FROM clock_timestamp())::float8"
    " FROM rate_windows WHERE account=%s AND family=%s AND period = ANY(%s::float8[])"
    " ORDER BY period FOR UPDATE"
)
_WRITE = (
    "UPDATE rate_windows AS r SET start=v.start, used=v.used, blocked_until=%s"
    " FROM unnest(%s::float8[], %s::float8[], %s::int[]) AS v(period, start, used)"
    " WHERE r.account=%s AND r.family=%s AND r.period=v.period"
)


class BudgetsMixin(PgBase):
    """The store's `SharedBudgets` port (agent/store/ports.py), on a connection of its own."""

    def __init__(self, dsn: str, **kw: Any) -> None:
        super().__init__(dsn, **kw)
        self._wants_side("budgets")

    async def take_budget(
        self, account: str, family: str, budget: Budget, now: float, n: int = 1
    ) -> float:
        """Take `n` requests of the family's shared windows: 0.0 taken, else seconds to wait."""
        return await self._shared(account, family, budget, now, lambda b, t: b.take_many(t, n))

    async def observe_budget(
        self,
        account: str,
        family: str,
        budget: Budget,
        now: float,
        seen: tuple[int | None, int | None, float | None],
    ) -> None:
        """An answer's `x-sib-ratelimit-*` headers, which only ever make the windows stricter
        (another replica's requests may be on the wire: `Budget.merge_observed`)."""
        limit, remaining, reset = seen
        if remaining is None or reset is None:
            return
        await self._shared(
            account, family, budget, now, lambda b, t: b.merge_observed(t, limit, remaining, reset)
        )

    async def block_budget(
        self, account: str, family: str, budget: Budget, now: float, seconds: float
    ) -> None:
        """A 429 seen by this replica blocks the family on every replica."""
        await self._shared(account, family, budget, now, lambda b, t: b.block(t, seconds))

    async def _shared(
        self,
        account: str,
        family: str,
        budget: Budget,
        now: float,
        change: Callable[[Budget, float], T],
    ) -> T:
        """Lock the family's rows, run `change` on them (at the server's time), write them
        back, and copy them into `budget` on the caller's clock."""
        periods = [w.period for w in budget.windows]
        async with self._side_tx("budgets") as db:
            await db.execute(_ENSURE, (account, family, periods))
            cur = await db.execute(_LOCK, (account, family, periods))
            rows = await cur.fetchall()
            shared = Budget.of([(w.count, w.period) for w in budget.windows])
            server = float(rows[0][4])
            found = {float(r[0]): r for r in rows}
            for w in shared.windows:
                row = found[w.period]
                w.start = None if row[1] is None else float(row[1])
                w.used = int(row[2])
            shared.blocked_until = max(float(r[3]) for r in rows)
            out = change(shared, server)
            for w in shared.windows:
                w.roll(server)
            await db.execute(
                _WRITE,
                (
                    shared.blocked_until,
                    periods,
                    [w.start for w in shared.windows],
                    [w.used for w in shared.windows],
                    account,
                    family,
                ),
            )
        _mirror(shared, budget, now - server)
        return out


def _mirror(shared: Budget, budget: Budget, offset: float) -> None:
    """The shared windows (server time) into this replica's `budget` (its clock)."""
    budget.blocked_until = shared.blocked_until + offset if shared.blocked_until else 0.0
    for mine, theirs in zip(budget.windows, shared.windows, strict=True):
        mine.start = None if theirs.start is None else theirs.start + offset
        mine.used = theirs.used
