"""Small state: keyed values, polling watermarks, what the pipeline has seen of each object,
and the counters and depths /status reads."""

from __future__ import annotations

from typing import Any

from agent.store.tx import StoreBase

__all__ = ["MetaMixin"]


class MetaMixin(StoreBase):
    """The ports agent/store/ports.py calls `MetaStore`, `SiteState` (with ingest) and `Status`."""

    # -- keyed values ---------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        """A value from the key/value table."""
        row = await self._run(
            lambda: self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        )
        return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str) -> None:
        """Set a value in the key/value table."""

        def run() -> None:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                    (key, value),
                )

        await self._run(run)

    async def meta_items(self, prefix: str) -> dict[str, str]:
        """Every key/value of the key/value table whose key starts with `prefix`."""

        def run() -> dict[str, str]:
            rows = self.db.execute(
                "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix),
            ).fetchall()
            return {str(k): str(v) for k, v in rows}

        return await self._run(run)

    # -- per site -------------------------------------------------------------------------

    async def get_watermark(self, site: str, name: str) -> str | None:
        """A polling watermark."""
        row = await self._run(
            lambda: self.db.execute(
                "SELECT value FROM watermarks WHERE site=? AND name=?", (site, name)
            ).fetchone()
        )
        return None if row is None else str(row[0])

    async def set_watermark(self, site: str, name: str, value: str) -> None:
        """Move a polling watermark."""

        def run() -> None:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO watermarks (site, name, value) VALUES (?,?,?)"
                    " ON CONFLICT (site, name) DO UPDATE SET value=excluded.value",
                    (site, name, value),
                )

        await self._run(run)

    async def object_versions(
        self, site: str, resource: str
    ) -> dict[int, tuple[str, bool, str | None]]:
        """Every object of a resource the pipeline has seen: id → (date_modified_gmt, deleted,
        order status or None). The poller compares these with the store's listings (customer
        scan, id reconciliation)."""

        def run() -> dict[int, tuple[str, bool, str | None]]:
            rows = self.db.execute(
                "SELECT resource_id, json_extract(state, '$.version'),"
                " json_extract(state, '$.deleted'), json_extract(state, '$.status')"
                " FROM objects WHERE site=? AND resource=?",
                (site, resource),
            ).fetchall()
            return {
                int(r[0]): (str(r[1] or ""), bool(r[2]), None if r[3] is None else str(r[3]))
                for r in rows
            }

        return await self._run(run)

    async def last_received(self, site: str, door: str) -> float | None:
        """When an event last arrived through a door (stored time), or None."""
        row = await self._run(
            lambda: self.db.execute(
                "SELECT MAX(at) FROM (SELECT MAX(received_at) AS at FROM inbox"
                " WHERE site=? AND door=? UNION ALL SELECT value FROM stats WHERE site=?"
                " AND name=?)",
                (site, door, site, f"last_received_{door}"),
            ).fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    # -- status ---------------------------------------------------------------------------

    async def status(self) -> dict[str, dict[str, Any]]:
        """Per site: inbox depth, pending jobs, open dead letters, last success, counters."""
        return await self._run(self._status)

    def _status(self) -> dict[str, dict[str, Any]]:
        db = self.db
        out: dict[str, dict[str, Any]] = {}

        def site(s: str) -> dict[str, Any]:
            return out.setdefault(
                s, {"inbox_depth": 0, "pending_jobs": 0, "dead_letters": 0, "last_success": None}
            )

        for s, n in db.execute("SELECT site, COUNT(*) FROM inbox WHERE state=0 GROUP BY site"):
            site(s)["inbox_depth"] = n
        for s, n in db.execute("SELECT site, COUNT(*) FROM jobs GROUP BY site"):
            site(s)["pending_jobs"] = n
        for s, n in db.execute(
            "SELECT site, COUNT(*) FROM dead_letters WHERE state='open' GROUP BY site"
        ):
            site(s)["dead_letters"] = n
        for s, name, v in db.execute("SELECT site, name, value FROM stats"):
            site(s)[name] = v
        return out

    async def counts(self) -> dict[str, int]:
        """Whole-store totals (for tests and `status`); what waits for held sites is counted
        apart (`held`), since nothing will process or send it."""

        def run() -> dict[str, int]:
            db = self.db
            held = self._held
            marks = ",".join("?" * len(held))

            def count(sql: str, *args: Any) -> int:
                return int(db.execute(sql, args).fetchone()[0])

            return {
                "inbox": count("SELECT COUNT(*) FROM inbox"),
                "inbox_pending": count(
                    "SELECT COUNT(*) FROM inbox WHERE state=0" + self._not_held, *held
                ),
                "jobs": count("SELECT COUNT(*) FROM jobs WHERE 1" + self._not_held, *held),
                "held": sum(
                    count(f"SELECT COUNT(*) FROM {table} WHERE {where}site IN ({marks})", *held)
                    for table, where in (("inbox", "state=0 AND "), ("jobs", ""))
                )
                if held
                else 0,
                "dead_letters": count("SELECT COUNT(*) FROM dead_letters WHERE state='open'"),
            }

        return await self._run(run)
