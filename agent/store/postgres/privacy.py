"""Erasure and export on PostgreSQL (agent/store/privacy.py on SQLite, whose statements this
runs: `purge_redactions`, `purge_deletes`, `holdings_queries`, through base.py `pg`).

Once Brevo answered an erase job, its email is purged from every table in the transaction
that ends the job. PostgreSQL has no `secure_delete`: the deleted row versions stay in the
table's pages until VACUUM reuses them, and in the WAL until it is recycled
(docs/postgresql.md, "Erasure").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from agent.core.jobs import Job
from agent.core.privacy import erase_job
from agent.store.postgres.base import PROCESS_LOCK, Conn, account_lock, pg, site_lock
from agent.store.postgres.jobs import set_stat
from agent.store.postgres.meta import MetaMixin
from agent.store.privacy import (
    CONSENT_GROUPS,
    ERASURES_PENDING,
    carts_query,
    erased,
    erasure_refused,
    held,
    holdings_queries,
    purge_deletes,
    purge_redactions,
    with_erasures,
)
from agent.store.rows import BUMP

__all__ = ["PrivacyMixin", "purge"]


async def purge(db: Conn, email: str, account: str, sites: Sequence[str]) -> None:
    """Take `email` (any case) out of every table, in the caller's transaction
    (agent/store/privacy.py `purge` says what goes and what stays, redacted)."""
    for r in purge_redactions(email, sites):
        cur = await db.execute(pg(r.select), r.args)
        for row in await cur.fetchall():
            await db.execute(pg(r.update), r.redacted(row))
    for sql, args in purge_deletes(email, account, sites):
        await db.execute(pg(sql), args)
    for table in CONSENT_GROUPS.values():
        await db.execute(f"DELETE FROM {table} WHERE lower(email)=%s", (email.lower(),))


class PrivacyMixin(MetaMixin):
    """The forwarder's end of an erasure (`erasure_finished`), the exporter's read
    (`holdings`), and the erasures /status shows."""

    async def erasure_finished(self, job: Job, refused: tuple[str, str] | None = None) -> None:
        """Brevo answered an erase job (done, or `refused` for good as (code, message)): purge
        its email from the store in the transaction that ends the job."""
        _, site = erase_job(job)
        email, sites = erased(job)

        async def run(db: Conn) -> None:
            await purge(db, email, job.account, sites)
            await db.execute("DELETE FROM jobs WHERE id=%s", (job.id,))
            await db.execute(pg(BUMP), (site, "erasures_done", 1))
            if refused is None:
                await set_stat(db, site, "last_success", time.time())
            else:
                sql, args = erasure_refused(job, refused)
                await db.execute(pg(sql), args)

        # PROCESS_LOCK: no processing pass planned before the purge writes after it (an
        # order fact, an object's state of the erased email back); the group takes it first.
        locks = {PROCESS_LOCK, account_lock(job.account), *map(site_lock, {site, *sites})}
        await self._write(run, locks)

    async def holdings(
        self, account: str, sites: Sequence[str], email: str
    ) -> dict[str, list[dict[str, Any]]]:
        """What the store holds about `email` for a Brevo account and its sites, per group of
        agent/core/privacy.py `export_groups`."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name, sql, args, fields in holdings_queries(account, list(sites), email):
            cur = await self.db.execute(pg(sql), args)
            out[name] = [dict(zip(fields, r, strict=True)) for r in await cur.fetchall()]
        sql, args = carts_query(list(sites), email)
        cur = await self.db.execute(pg(sql), args)
        return held(out, await cur.fetchall())

    async def status(self) -> dict[str, dict[str, Any]]:
        """MetaMixin's /status rows, with each site's erasures done and pending."""
        out = await super().status()
        cur = await self.db.execute(ERASURES_PENDING)
        return with_erasures(out, {str(s): int(n) for s, n in await cur.fetchall()})
