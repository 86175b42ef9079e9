"""Cart figures on PostgreSQL: one site's for the stream door's `welcome` (the `CartFigures`
port), every site's in /status; the counters and their arithmetic are agent/store/carts.py's."""

from __future__ import annotations

from typing import Any

from agent.store.carts import CART_FIGURES, figures
from agent.store.postgres.meta import MetaMixin

__all__ = ["CartFiguresMixin"]


class CartFiguresMixin(MetaMixin):
    """`cart_figures` and the `carts` entry of each site in `status`."""

    async def cart_figures(self, site: str) -> dict[str, float | None]:
        """One site's cart figures, as `status` has them: open carts, the counters."""
        cur = await self.db.execute(
            "SELECT 'active', COUNT(*) FROM carts"
            " WHERE site=%s AND due IS NOT NULL AND status='active'"
            " UNION ALL SELECT name, value FROM stats WHERE site=%s AND name = ANY(%s)",
            (site, site, list(CART_FIGURES)),
        )
        counters: dict[str, Any] = {str(k): v for k, v in await cur.fetchall()}
        return figures(int(counters.pop("active")), counters)

    async def status(self) -> dict[str, dict[str, Any]]:
        """The other parts' per-site status, each site with its cart figures."""
        out = await super().status()
        cur = await self.db.execute(
            "SELECT site, COUNT(*) FROM carts WHERE status='active' GROUP BY site"
        )
        active = {str(s): int(n) for s, n in await cur.fetchall()}
        for site in set(out) | set(active):
            row = out.setdefault(
                site, {"inbox_depth": 0, "pending_jobs": 0, "dead_letters": 0, "last_success": None}
            )
            row["carts"] = figures(active.get(site, 0), row)
        return out
