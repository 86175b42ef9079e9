"""The job queue: the forwarder claims due jobs, then completes, retries or dead-letters them.

Claims and retries commit without waiting for the disk (docs/durability.md, "Commits that do
not wait for the disk"): a restart hands every claimed job back to the queue anyway.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson

from agent.core.dedupe import claimable, known_after, largest_list_group
from agent.core.jobs import Job, Kind
from agent.store.consent import strip_suppressed
from agent.store.rows import bump, dead_letter_insert, set_stat
from agent.store.schema import ERASED_INFLIGHT, INFLIGHT, PENDING
from agent.store.tx import StoreBase

__all__ = ["JobsMixin"]


class JobsMixin(StoreBase):
    """The forwarder's port (agent/store/ports.py `JobQueue`)."""

    async def pending_count(self, account: str, kind: Kind, now: float) -> int:
        """Claimable jobs of one kind for one Brevo account."""
        return await self._run(
            lambda: self.db.execute(
                "SELECT COUNT(*) FROM jobs WHERE account=? AND state=0 AND kind=?"
                " AND not_before<=?" + self._not_held,
                (account, kind.value, now, *self._held),
            ).fetchone()[0]
        )

    async def next_due(self, account: str, kind: Kind) -> float | None:
        """The earliest not_before among a kind's pending jobs (to sleep until then)."""
        return await self._run(
            lambda: self.db.execute(
                "SELECT MIN(not_before) FROM jobs WHERE account=? AND state=0 AND kind=?"
                + self._not_held,
                (account, kind.value, *self._held),
            ).fetchone()[0]
        )

    async def claim(
        self,
        account: str,
        kind: Kind,
        limit: int,
        now: float,
        *,
        single: bool | None = None,
        by_lists: bool = False,
    ) -> list[Job]:
        """Claim up to `limit` due jobs of a kind, oldest first, skipping keys already in flight
        (agent/core/dedupe.py `claimable`).

        `single`: None any job, False only jobs a batch may carry, True only jobs that must go
        alone (what a failed batch handed back to be found one by one).

        `by_lists` (contacts for `/contacts/import`, which takes one `listIds` for the whole
        file): only the largest group of the due jobs that share their lists, or, when that
        group has no list (import needs one), its first job alone. The others are not claimed,
        so they are neither read in full nor handed back.
        """
        return await self._run(self._claim, account, kind, limit, now, single, by_lists)

    def _claim(
        self,
        account: str,
        kind: Kind,
        limit: int,
        now: float,
        single: bool | None,
        by_lists: bool,
    ) -> list[Job]:
        extra = ""
        if single is not None:
            extra = f" AND single_only = {int(single)}"
        if kind is Kind.ERASE:
            # An erasure waits for its contact's upsert in flight: that one must not land
            # after the erase and re-create the contact.
            # Nor may any call of its email in flight when the erasure came (state 2).
            extra += (
                " AND NOT EXISTS (SELECT 1 FROM jobs AS f WHERE f.account=jobs.account"
                " AND f.state=1 AND f.key='contact:' || json_extract(jobs.body, '$.email'))"
                " AND NOT EXISTS (SELECT 1 FROM jobs AS f WHERE f.account=jobs.account"
                f" AND f.state={ERASED_INFLIGHT})"
            )
        if kind is Kind.EVENT:
            # An event of a contact Brevo does not hold yet waits for the contact's earlier
            # upsert, queued or in flight: Brevo creates the contact (its attributes, its
            # lists) before what the contact did. A contact Brevo holds (a `forwarded` row)
            # does not hold its events back: under a storm of contact 429s they would wait
            # for every attribute change (tests/chaos brevo-429-5xx did not drain in time).
            extra += (
                " AND NOT EXISTS (SELECT 1 FROM jobs AS c INDEXED BY jobs_key"
                " WHERE c.account=jobs.account"
                " AND c.key='contact:' || json_extract(jobs.body, '$.identifiers.email_id')"
                f" AND c.state IN ({PENDING}, {INFLIGHT}) AND c.id < jobs.id"
                " AND NOT EXISTS (SELECT 1 FROM forwarded AS fw"
                " WHERE fw.account=c.account AND fw.key=c.key))"
            )
        # The oldest first by the queue's index (not a sort of every due job), and the keys in
        # flight left out from their own small index, before the LIMIT.
        where = (
            " FROM jobs INDEXED BY jobs_queue"
            " WHERE account=? AND kind=? AND state=0 AND not_before<=?"
            + extra
            + self._not_held
            + " AND key NOT IN (SELECT key FROM jobs INDEXED BY jobs_inflight"
            " WHERE account=? AND state=1)"
            " ORDER BY id LIMIT ?"
        )
        args = (account, kind.value, now, *self._held, account, limit)
        # Not synced: a claim only marks jobs in flight, and a restart puts every claimed job
        # back in the queue anyway (at-least-once). The lock is held for the statements only;
        # the bodies are decoded after the commit.
        with self._tx(sync=False) as db:
            if by_lists:
                ids = largest_list_group(
                    db.execute("SELECT id, key, json_extract(body, '$.listIds')" + where, args)
                )
                rows = db.execute(
                    "SELECT id, site, key, body, historical, attempts, single_only FROM jobs"
                    " WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
                    (orjson.dumps(ids).decode(),),
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT id, site, key, body, historical, attempts, single_only" + where, args
                ).fetchall()
            take = set(claimable(kind, [(r[0], r[2]) for r in rows]))
            taken = [r for r in rows if r[0] in take]
            db.executemany("UPDATE jobs SET state=1 WHERE id=?", [(r[0],) for r in taken])
        jobs = [
            Job(r[0], account, r[1], kind, r[2], json.loads(r[3]), bool(r[4]), r[5], bool(r[6]))
            for r in taken
        ]
        if kind in (Kind.CONTACT, Kind.DOI):
            strip_suppressed(self.db, account, jobs)  # at send time (agent/store/consent.py)
        return jobs

    def holds_claims(self, claimed_at: float) -> bool:
        """One agent owns the file (agent/store/tx.py's lock): its claims are always its own."""
        return True

    async def unclaim(self, account: str) -> None:
        """Put every claimed job of an account back in the queue (on shutdown)."""

        def run() -> None:
            with self._tx() as db:
                db.execute("UPDATE jobs SET state=0 WHERE account=? AND state=1", (account,))
                db.execute(
                    f"DELETE FROM jobs WHERE account=? AND state={ERASED_INFLIGHT}", (account,)
                )

        await self._run(run)

    async def complete(self, jobs: Iterable[Job]) -> None:
        """Brevo took these: forget the jobs, remember what Brevo now holds."""
        done = list(jobs)
        await self._write(lambda db: self._complete(db, done))

    def _complete(self, db: sqlite3.Connection, jobs: list[Job]) -> None:
        if not jobs:
            return
        now = time.time()
        # One read of what Brevo held, then the writes in bulk: this runs under the write lock.
        known: dict[tuple[str, str], Any] = {}
        for account in {j.account for j in jobs}:
            keys = orjson.dumps([j.key for j in jobs if j.account == account]).decode()
            for key, state in db.execute(
                "SELECT key, state FROM forwarded WHERE account=? AND key IN"
                " (SELECT value FROM json_each(?))",
                (account, keys),
            ):
                known[(account, key)] = json.loads(state)
        for job in jobs:  # in order: two event jobs may share a key
            k = (job.account, job.key)
            known[k] = known_after(job.kind, job.body, known.get(k))
        done = Counter((j.site, f"brevo_done_{j.kind.value}") for j in jobs)
        db.executemany("DELETE FROM jobs WHERE id=?", [(j.id,) for j in jobs])
        db.executemany(
            "INSERT INTO forwarded (account, key, state, updated_at) VALUES (?,?,?,?)"
            " ON CONFLICT (account, key) DO UPDATE SET state=excluded.state,"
            " updated_at=excluded.updated_at",
            [(a, key, json.dumps(state), now) for (a, key), state in known.items()],
        )
        for (site, name), n in done.items():
            bump(db, site, name, n)
        for site in {j.site for j in jobs}:
            set_stat(db, site, "last_success", now)

    async def retry(
        self,
        jobs: Iterable[Job],
        not_before: float,
        error: str,
        *,
        single_only: bool = False,
        count_attempt: bool = True,
    ) -> None:
        """Put jobs back in the queue, due at `not_before`."""
        again = list(jobs)

        def run() -> None:
            # Not synced, like a claim: a power cut that undoes it leaves the jobs claimed,
            # and a restart puts claimed jobs back in the queue.
            with self._tx(sync=False) as db:
                db.executemany(
                    "UPDATE jobs SET state=0, not_before=?, attempts=attempts+?, last_error=?,"
                    " single_only=MAX(single_only, ?) WHERE id=? AND state=1",
                    [
                        (not_before, int(count_attempt), error[:500], int(single_only), j.id)
                        for j in again
                    ],
                )
                # An erasure of its email came while it was in flight: dropped.
                db.executemany(
                    f"DELETE FROM jobs WHERE id=? AND state={ERASED_INFLIGHT}",
                    [(j.id,) for j in again],
                )

        await self._run(run)

    async def dead_letter(self, job: Job, code: str, message: str) -> None:
        """Brevo refused this write for good: keep it, with Brevo's code and message."""
        await self._write(lambda db: self._dead_letter(db, job, code, message))

    def _dead_letter(self, db: sqlite3.Connection, job: Job, code: str, message: str) -> None:
        erased = db.execute(
            f"DELETE FROM jobs WHERE id=? AND state={ERASED_INFLIGHT}", (job.id,)
        ).rowcount
        if erased:  # an erasure of its email came while it was in flight: nothing to keep
            return
        db.execute("DELETE FROM jobs WHERE id=?", (job.id,))
        db.execute(
            *dead_letter_insert(
                job.site,
                "job",
                job.key,
                job.kind.value,
                code,
                message,
                json.dumps({"body": job.body, "historical": job.historical}),
                account=job.account,
            )
        )
        bump(db, job.site, "dead_letters", 1)
