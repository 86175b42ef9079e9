"""Consent records and suppressions on PostgreSQL (the `ConsentStore` port; the rules of
agent/store/consent.py, whose pure parts this shares: `forgotten_lists`, `strip_lists`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from agent.core.consent import EVERY_LIST, ConsentRecord
from agent.store.consent import forgotten_lists
from agent.store.postgres.base import Conn, PgBase, account_lock

__all__ = ["ConsentMixin", "in_force"]

# Suppressions in force: those no subscription newer than them lifted.
_IN_FORCE = (
    "SELECT s.email, s.list_id FROM suppression s LEFT JOIN consent c"
    " ON c.account = s.account AND c.email = s.email"
    " WHERE s.account = %s AND s.email = ANY(%s::text[])"
    " AND NOT COALESCE(c.subscribed = 1 AND c.since > s.since, false)"
)


async def in_force(db: Conn, account: str, emails: Collection[str]) -> dict[str, frozenset[int]]:
    """email → its suppressed lists in force (0: every list); emails without any are absent."""
    cur = await db.execute(_IN_FORCE, (account, sorted(set(emails))))
    out: dict[str, set[int]] = {}
    for email, list_id in await cur.fetchall():
        out.setdefault(str(email), set()).add(int(list_id))
    return {email: frozenset(ids) for email, ids in out.items()}


class ConsentMixin(PgBase):
    """The `ConsentStore` port."""

    async def suppress(
        self, account: str, email: str, list_ids: Sequence[int], reason: str, since: float
    ) -> None:
        """Suppress lists for an email (none named: every list, 0); a suppression already
        kept takes the later `since` and the new reason; what the agent records Brevo holding
        for the contact loses those lists (agent/store/consent.py `suppress`)."""
        ids = sorted(set(list_ids)) or [EVERY_LIST]

        async def write(db: Conn) -> None:
            async with db.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO suppression (account, email, list_id, reason, since)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (account, email, list_id)"
                    " DO UPDATE SET reason=excluded.reason,"
                    " since=GREATEST(suppression.since, excluded.since)",
                    [(account, email, i, reason, since) for i in ids],
                )
            key = f"contact:{email}"
            cur = await db.execute(
                "SELECT state FROM forwarded WHERE account=%s AND key=%s FOR UPDATE",
                (account, key),
            )
            found = await cur.fetchone()
            state = None if found is None else forgotten_lists(str(found[0]), ids)
            if state is not None:
                await db.execute(
                    "UPDATE forwarded SET state=%s WHERE account=%s AND key=%s",
                    (state, account, key),
                )

        await self._write(write, (account_lock(account),))

    async def lift(self, account: str, email: str, list_ids: Sequence[int]) -> None:
        """A Brevo `listAddition`: the person is in those lists again, so their suppressions
        go, and a double opt-in waiting for that confirmation is confirmed."""

        async def write(db: Conn) -> None:
            await db.execute(
                "DELETE FROM suppression WHERE account=%s AND email=%s"
                " AND list_id = ANY(%s::bigint[])",
                (account, email, sorted(set(list_ids))),
            )
            await db.execute(
                "UPDATE consent SET doi='confirmed'"
                " WHERE account=%s AND email=%s AND doi='pending'",
                (account, email),
            )

        await self._write(write, (account_lock(account),))

    async def suppressed(self, account: str, emails: Collection[str]) -> dict[str, frozenset[int]]:
        """email → its suppressed lists in force (0: every list); emails without any are absent."""
        return await in_force(self.db, account, emails) if emails else {}

    async def consent_of(self, account: str, email: str) -> ConsentRecord | None:
        """The email's consent record on the account, or None."""
        cur = await self.db.execute(
            "SELECT subscribed, since, source, doi FROM consent WHERE account=%s AND email=%s",
            (account, email),
        )
        row = await cur.fetchone()
        return None if row is None else ConsentRecord(bool(row[0]), row[1], row[2], row[3])
