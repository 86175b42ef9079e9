"""Dead letters: kept failures, listed, sent again or dropped by the operator.

An event a door or the pipeline refused, or a write Brevo refused for good, is kept here
(rows.py `dead_letter_insert`, from the inbox and the job queue) until the operator acts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from agent.core.events import Event
from agent.core.jobs import canonical
from agent.store.ports import DeadLetter
from agent.store.rows import insert_events
from agent.store.tx import StoreBase

__all__ = ["DeadLettersMixin", "event_id_of", "job_again"]


def job_again(r: DeadLetter, now: float) -> tuple[str, tuple[Any, ...]]:
    """The INSERT that queues a job's dead letter again, alone (`single_only`): SQL both
    backends run (agent/store/postgres/base.py `pg`)."""
    return (
        "INSERT INTO jobs (account, site, kind, key, body, historical, created_at, single_only)"
        " VALUES (?,?,?,?,?,?,?,1)",
        (
            r.account,
            r.site,
            r.kind,
            r.ref,
            canonical(r.body["body"]),
            int(r.body.get("historical", False)),
            now,
        ),
    )


def event_id_of(r: DeadLetter) -> str:
    """The inbox id of an event's dead letter (its ref is `site:id`)."""
    return r.ref.split(":", 1)[1] if ":" in r.ref else r.ref


class DeadLettersMixin(StoreBase):
    """The operator's port (agent/store/ports.py `DeadLetters`)."""

    async def dead_letters(self, state: str = "open", site: str | None = None) -> list[DeadLetter]:
        """Kept failures, oldest first."""
        return await self._run(self._dead_letters, state, site)

    def _dead_letters(self, state: str, site: str | None) -> list[DeadLetter]:
        sql = "SELECT id, site, origin, ref, kind, account, code, message, body, created_at, state FROM dead_letters WHERE state=?"
        args: list[Any] = [state]
        if site:
            sql += " AND site=?"
            args.append(site)
        rows = self.db.execute(sql + " ORDER BY id", args).fetchall()
        return [
            DeadLetter(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]), r[9], r[10]
            )
            for r in rows
        ]

    async def retry_dead_letters(
        self, ids: Sequence[int] | None, reparse: Callable[[Any], Event | None]
    ) -> tuple[int, list[str]]:
        """Send dead letters again: jobs go back to the queue, events back to the inbox.

        `reparse(raw)` turns an event refused at a door into an Event (None: still invalid).
        Returns how many went back, and why the others could not.
        """
        return await self._run(self._retry_dead, ids, reparse)

    def _retry_dead(
        self, ids: Sequence[int] | None, reparse: Callable[[Any], Event | None]
    ) -> tuple[int, list[str]]:
        rows = self._dead_letters("open", None)
        if ids is not None:
            wanted = set(ids)
            rows = [r for r in rows if r.id in wanted]
        now = time.time()
        done, problems = 0, []
        with self._tx() as db:
            for r in rows:
                if r.origin == "job" and r.account:
                    db.execute(*job_again(r, now))
                else:
                    back = db.execute(
                        "UPDATE inbox SET state=0 WHERE site=? AND event_id=?",
                        (r.site, event_id_of(r)),
                    ).rowcount
                    if not back:
                        event = reparse(r.body)
                        if event is None:
                            problems.append(
                                f"dead letter {r.id}: the event is still invalid ({r.message})"
                            )
                            continue
                        if insert_events(db, r.site, [event], now)[1]:
                            problems.append(
                                f"dead letter {r.id}: the store still cannot write the event"
                            )
                            continue
                db.execute("UPDATE dead_letters SET state='retried' WHERE id=?", (r.id,))
                done += 1
        if done:
            self.ingested.set()
        return done, problems

    async def drop_dead_letters(self, ids: Sequence[int] | None) -> int:
        """Mark dead letters as dropped (kept for the record, never resent)."""

        def run() -> int:
            with self._tx() as db:
                if ids is None:
                    return db.execute(
                        "UPDATE dead_letters SET state='dropped' WHERE state='open'"
                    ).rowcount
                return sum(
                    db.execute(
                        "UPDATE dead_letters SET state='dropped' WHERE id=? AND state='open'", (i,)
                    ).rowcount
                    for i in ids
                )

        return await self._run(run)
