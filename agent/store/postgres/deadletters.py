"""Dead letters on PostgreSQL: listed, sent again and dropped as the SQLite store does
(agent/store/deadletters.py, whose `job_again` and `event_id_of` this shares).

A retry or a drop changes its letters' rows and, for a retry, their sites' inbox rows (a
job's letter only adds a job): rows of the sites' `site_lock` (base.py), which the write
names, so its group commit never waits in a cycle with another replica's (an ingest, a
purge, a retry or drop of the same letters). The sites are read first; a letter of another
site stored meanwhile is left for the next retry or drop, as the SQLite store leaves the
letters stored after its read."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from agent.core.events import Event
from agent.store.deadletters import event_id_of, job_again
from agent.store.ports import DeadLetter
from agent.store.postgres.base import Conn, PgBase, pg, site_lock
from agent.store.postgres.inbox import _insert_events

__all__ = ["DeadLettersMixin"]


class DeadLettersMixin(PgBase):
    """The operator's port (agent/store/ports.py `DeadLetters`)."""

    async def dead_letters(self, state: str = "open", site: str | None = None) -> list[DeadLetter]:
        """Kept failures, oldest first."""
        cur = await self.db.execute(
            _SELECT + " WHERE state=%s AND (%s::text IS NULL OR site=%s) ORDER BY id",
            (state, site or None, site or None),
        )
        return [_letter(r) for r in await cur.fetchall()]

    async def retry_dead_letters(
        self, ids: Sequence[int] | None, reparse: Callable[[Any], Event | None]
    ) -> tuple[int, list[str]]:
        """Send dead letters again: jobs go back to the queue, events back to the inbox
        (agent/store/deadletters.py `retry_dead_letters`)."""
        wanted = None if ids is None else list(ids)
        sites = await self._open_sites(wanted)
        if not sites:
            return 0, []

        async def run(db: Conn) -> tuple[int, list[str]]:
            # Read and locked in the transaction that sends them: another agent's or
            # operator's retry or drop at the same time waits, then finds them retried.
            cur = await db.execute(
                _SELECT + _OPEN + " ORDER BY id FOR UPDATE", (wanted, wanted, sites)
            )
            now = time.time()
            done, problems = 0, []
            for r in map(_letter, await cur.fetchall()):
                problem = await _send_again(db, r, reparse, now)
                if problem is not None:
                    problems.append(f"dead letter {r.id}: {problem}")
                    continue
                await db.execute("UPDATE dead_letters SET state='retried' WHERE id=%s", (r.id,))
                done += 1
            return done, problems

        done, problems = await self._write(run, [site_lock(s) for s in sites])
        if done:
            self.ingested.set()
        return done, problems

    async def drop_dead_letters(self, ids: Sequence[int] | None) -> int:
        """Mark dead letters as dropped (kept for the record, never resent)."""
        wanted = None if ids is None else list(ids)
        sites = await self._open_sites(wanted)
        if not sites:
            return 0

        async def run(db: Conn) -> int:
            cur = await db.execute(
                "UPDATE dead_letters SET state='dropped'" + _OPEN, (wanted, wanted, sites)
            )
            return cur.rowcount

        count: int = await self._write(run, [site_lock(s) for s in sites])
        return count

    async def _open_sites(self, wanted: list[int] | None) -> list[str]:
        """The sites of the open letters among `wanted` (None: all), whose locks a retry or
        drop of them names."""
        cur = await self.db.execute(
            "SELECT DISTINCT site FROM dead_letters WHERE state='open'"
            " AND (%s::bigint[] IS NULL OR id = ANY(%s::bigint[]))",
            (wanted, wanted),
        )
        return [str(r[0]) for r in await cur.fetchall()]


_SELECT = (
    "SELECT id, site, origin, ref, kind, account, code, message, body, created_at, state"
    " FROM dead_letters"
)
# The open letters among the ids given (None: all) of the sites whose locks the write took.
_OPEN = (
    " WHERE state='open' AND (%s::bigint[] IS NULL OR id = ANY(%s::bigint[]))"
    " AND site = ANY(%s::text[])"
)


def _letter(r: tuple[Any, ...]) -> DeadLetter:
    """A dead letter as `_SELECT` reads it."""
    return DeadLetter(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]), r[9], r[10])


async def _send_again(
    db: Conn, r: DeadLetter, reparse: Callable[[Any], Event | None], now: float
) -> str | None:
    """Queue a dead letter's job again, or put its event back in the inbox; None when done,
    else why it could not be."""
    if r.origin == "job" and r.account:
        sql, args = job_again(r, now)
        await db.execute(pg(sql), args)
        return None
    cur = await db.execute(
        "UPDATE inbox SET state=0 WHERE site=%s AND event_id=%s", (r.site, event_id_of(r))
    )
    if cur.rowcount:
        return None
    event = reparse(r.body)
    if event is None:
        return f"the event is still invalid ({r.message})"
    if (await _insert_events(db, r.site, [event], now))[1]:
        return "the store still cannot write the event"
    return None
