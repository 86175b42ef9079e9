"""Cart timers: the carts that came due fire, in due order, each with its Brevo jobs.

A cart's state and next due time live in `carts` (agent/core/carts.py decides both); a timer
pass reads the carts due by `now` and commits their new states, their jobs and the site's
counters in one transaction, so a kill -9 before the commit fires them again from scratch and
one after it finds them moved on: none lost, none fired twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from agent.core.carts import cart_from_row
from agent.store.chunk import Chunk
from agent.store.meta import MetaMixin
from agent.store.ports import CartFire

__all__ = ["CART_BATCH", "CART_FIGURES", "CartsMixin", "figures", "fire_rows"]

# Carts fired per transaction (a backlog after hours down goes out in several).
CART_BATCH = 200
# The per-site counters the state machine adds to (`stats`), as /status names them.
CART_FIGURES = {
    "carts_abandoned": "abandoned",
    "carts_recovered": "recovered",
    "carts_expired": "expired",
    "carts_converted": "converted",
    "carts_emptied": "emptied",
    "carts_recovered_revenue": "recovered_revenue",
}


def fire_rows(chunk: Chunk, rows: Sequence[Sequence[Any]], fire: CartFire) -> None:
    """Plan the carts that came due, read as (site, state), into the chunk (both backends)."""
    for site, state in rows:
        cart = cart_from_row(orjson.loads(state))
        outcome = fire(site, cart)
        if outcome is not None:
            chunk.set_carts(site, outcome)
        else:  # a site no longer in the config: its timer stops (its events dead-letter)
            chunk.writes.append(
                ("UPDATE carts SET due=NULL WHERE site=? AND cart_id=?", (site, cart.id))
            )


class CartsMixin(MetaMixin):
    """The timer pass (the processor's `CartTimers` port) and the carts' figures (`status`, and
    the stream door's `CartFigures` port)."""

    async def fire_due_carts(self, now: float, fire: CartFire, *, limit: int = CART_BATCH) -> int:
        """Fire up to `limit` carts due by `now`, oldest due first; returns how many fired."""
        return await self._run(self._fire_due, now, fire, limit)

    def _fire_due(self, now: float, fire: CartFire, limit: int) -> int:
        rows = self.db.execute(
            "SELECT site, state FROM carts WHERE due IS NOT NULL AND due <= ?"
            + self._not_held
            + " ORDER BY due, site, cart_id LIMIT ?",
            (now, *self._held, limit),
        ).fetchall()
        if not rows:
            return 0
        chunk = Chunk(self.db)
        fire_rows(chunk, rows, fire)
        with self._tx():
            chunk.apply()
        return len(rows)

    async def next_cart_due(self) -> float | None:
        """When the next cart timer comes due (None: no cart is waiting)."""

        def run() -> float | None:
            row = self.db.execute(
                "SELECT MIN(due) FROM carts WHERE due IS NOT NULL" + self._not_held, self._held
            ).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._run(run)

    async def cart_figures(self, site: str) -> dict[str, float | None]:
        """One site's cart figures, as `status` has them (the stream door's `CartFigures`
        port: each `welcome` carries them). One query: the open carts through their partial
        index, the counters by primary key."""

        def run() -> dict[str, float | None]:
            rows = self.db.execute(
                "SELECT 'active', COUNT(*) FROM carts"
                " WHERE site=? AND due IS NOT NULL AND status='active'"
                " UNION ALL SELECT name, value FROM stats WHERE site=? AND name IN ("
                + ",".join("?" * len(CART_FIGURES))
                + ")",
                (site, site, *CART_FIGURES),
            ).fetchall()
            counters = dict(rows)
            return figures(int(counters.pop("active")), counters)

        return await self._run(run)

    def _status(self) -> dict[str, dict[str, Any]]:
        out = super()._status()
        active: dict[str, int] = dict(
            self.db.execute(
                "SELECT site, COUNT(*) FROM carts WHERE status='active' GROUP BY site"
            ).fetchall()
        )
        for site in set(out) | set(active):
            row = out.setdefault(
                site, {"inbox_depth": 0, "pending_jobs": 0, "dead_letters": 0, "last_success": None}
            )
            row["carts"] = figures(active.get(site, 0), row)
        return out


def figures(active: int, counters: dict[str, Any]) -> dict[str, float | None]:
    """The cart figures from the open carts and the site's counters (taken out of `counters`):
    counts as integers, `recovered_revenue` in the store's currency, `recovery_rate` recovered /
    abandoned (None before the first abandonment)."""
    out: dict[str, float | None] = {"active": active}
    for stat, name in CART_FIGURES.items():
        value = counters.pop(stat, 0)
        out[name] = float(value) if name == "recovered_revenue" else int(value)
    abandoned = out["abandoned"] or 0
    recovered = out["recovered"] or 0
    out["recovery_rate"] = round(recovered / abandoned, 4) if abandoned else None
    return out
