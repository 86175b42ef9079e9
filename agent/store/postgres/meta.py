"""Small state on PostgreSQL: keyed values, polling watermarks, what the pipeline has seen of
each object, and the counters and depths /status reads (agent/store/meta.py on SQLite)."""

from __future__ import annotations

from typing import Any

from agent.store.postgres.base import Conn, PgBase

__all__ = ["MetaMixin"]


class MetaMixin(PgBase):
    """The ports agent/store/ports.py calls `MetaStore`, `SiteState` (with ingest) and `Status`."""

    # -- keyed values ---------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        """A value from the key/value table."""
        cur = await self.db.execute("SELECT value FROM meta WHERE key=%s", (key,))
        row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str) -> None:
        """Set a value in the key/value table."""

        async def run(db: Conn) -> None:
            await db.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

        await self._write(run)

    async def meta_items(self, prefix: str) -> dict[str, str]:
        """Every key/value of the key/value table whose key starts with `prefix`."""
        cur = await self.db.execute(
            'SELECT key, value FROM meta WHERE left(key, %s) = %s ORDER BY key COLLATE "C"',
            (len(prefix), prefix),
        )
        return {str(k): str(v) for k, v in await cur.fetchall()}

    # -- per site -------------------------------------------------------------------------

    async def get_watermark(self, site: str, name: str) -> str | None:
        """A polling watermark."""
        cur = await self.db.execute(
            "SELECT value FROM watermarks WHERE site=%s AND name=%s", (site, name)
        )
        row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def set_watermark(self, site: str, name: str, value: str) -> None:
        """Move a polling watermark."""

        async def run(db: Conn) -> None:
            await db.execute(
                "INSERT INTO watermarks (site, name, value) VALUES (%s, %s, %s)"
                " ON CONFLICT (site, name) DO UPDATE SET value=excluded.value",
                (site, name, value),
            )

        await self._write(run)

    async def object_versions(
        self, site: str, resource: str
    ) -> dict[int, tuple[str, bool, str | None]]:
        """Every object of a resource the pipeline has seen: id → (date_modified_gmt, deleted,
        order status or None), as agent/store/meta.py reads them on SQLite."""
        cur = await self.db.execute(
            "SELECT resource_id, state::jsonb ->> 'version', state::jsonb -> 'deleted',"
            " state::jsonb ->> 'status' FROM objects WHERE site=%s AND resource=%s",
            (site, resource),
        )
        return {
            int(r[0]): (str(r[1] or ""), bool(r[2]), None if r[3] is None else str(r[3]))
            for r in await cur.fetchall()
        }

    async def last_received(self, site: str, door: str) -> float | None:
        """When an event last arrived through a door (stored time), or None."""
        cur = await self.db.execute(
            "SELECT GREATEST((SELECT MAX(received_at) FROM inbox WHERE site=%s AND door=%s),"
            " (SELECT value FROM stats WHERE site=%s AND name=%s))",
            (site, door, site, f"last_received_{door}"),
        )
        row = await cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- status ---------------------------------------------------------------------------

    async def status(self) -> dict[str, dict[str, Any]]:
        """Per site: inbox depth, pending jobs, open dead letters, last success, counters."""
        out: dict[str, dict[str, Any]] = {}

        def site(s: str) -> dict[str, Any]:
            return out.setdefault(
                s, {"inbox_depth": 0, "pending_jobs": 0, "dead_letters": 0, "last_success": None}
            )

        db = self.db
        cur = await db.execute("SELECT site, COUNT(*) FROM inbox WHERE state=0 GROUP BY site")
        for s, n in await cur.fetchall():
            site(s)["inbox_depth"] = int(n)
        cur = await db.execute("SELECT site, COUNT(*) FROM jobs GROUP BY site")
        for s, n in await cur.fetchall():
            site(s)["pending_jobs"] = int(n)
        cur = await db.execute(
            "SELECT site, COUNT(*) FROM dead_letters WHERE state='open' GROUP BY site"
        )
        for s, n in await cur.fetchall():
            site(s)["dead_letters"] = int(n)
        cur = await db.execute("SELECT site, name, value FROM stats")
        for s, name, v in await cur.fetchall():
            site(s)[name] = v
        return out

    async def counts(self) -> dict[str, int]:
        """Whole-store totals; what waits for held sites is counted apart (`held`)."""
        held = self._held
        cur = await self.db.execute(
            "SELECT (SELECT COUNT(*) FROM inbox),"
            " (SELECT COUNT(*) FROM inbox WHERE state=0 AND NOT (site = ANY(%(held)s))),"
            " (SELECT COUNT(*) FROM jobs WHERE NOT (site = ANY(%(held)s))),"
            " (SELECT COUNT(*) FROM inbox WHERE state=0 AND site = ANY(%(held)s))"
            " + (SELECT COUNT(*) FROM jobs WHERE site = ANY(%(held)s)),"
            " (SELECT COUNT(*) FROM dead_letters WHERE state='open')",
            {"held": held},
        )
        row = await cur.fetchone()
        assert row is not None
        names = ("inbox", "inbox_pending", "jobs", "held", "dead_letters")
        return {name: int(v) for name, v in zip(names, row, strict=True)}
