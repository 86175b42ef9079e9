"""The job queue on PostgreSQL: the forwarders of one or several agents claim due jobs, then
complete, retry or dead-letter them (agent/store/jobs.py on SQLite; the same rules).

A claim is a lease: it marks the jobs in flight with the claiming replica (`claimed_by`, the
store's `owner`) and until when (`claimed_until`, wall clock, `lease` seconds on). Claims of
one Brevo account are taken one at a time across every replica (a transaction-scoped
advisory lock on the account), so the keys in flight that a claim leaves out
(agent/core/dedupe.py `claimable`) are the committed ones, and two replicas never fly two jobs
of one key; the jobs are locked `FOR UPDATE SKIP LOCKED`, so a claim never waits for a row
another transaction is writing (that job is simply not taken this time). Claims run on their
own connection, in short transactions that do not wait for the disk (as SQLite's claims):
a lost claim leaves jobs pending, and a claim lost after its commit expires.

Giving claims back (`unclaim`, and opening the store with `recover`) hands back this owner's
claims only, and the claims whose lease ran out: other replicas' jobs in flight stay theirs.
A replica that died loses nothing: once its leases run out, the next claim of any replica
(or its own restart, under the same owner name) hands its jobs back to the queue.
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any, Self

from agent.core.dedupe import claimable, known_after, largest_list_group
from agent.core.jobs import Job, Kind
from agent.store.consent import strip_lists, suppressible_emails
from agent.store.postgres.base import Conn, PgBase, account_lock, pg, site_lock
from agent.store.postgres.consent import in_force
from agent.store.rows import BUMP, dead_letter_insert
from agent.store.schema import ERASED_INFLIGHT, INFLIGHT, PENDING

__all__ = ["CLAIM_LEASE", "DEFAULT_REPLICA_TIMEOUT", "JobsMixin", "set_stat"]

# How long a claim holds its jobs (seconds) before another replica may take them over: well
# past a Brevo request's timeout (30 s, agent/forward/brevo.py) and the forwarder's drain.
CLAIM_LEASE = 120.0
# Seconds without a heartbeat after which a replica's claims are taken over (agent.replica_
# timeout; agent/store/postgres/cluster.py): well before its leases run out.
DEFAULT_REPLICA_TIMEOUT = 15.0
# The claims of another replica whose heartbeat is older than the timeout (the server's clock).
_STALE_OWNER = (
    " OR (claimed_by <> %s AND claimed_by IN (SELECT name FROM replicas"
    " WHERE last_seen < extract(epoch FROM clock_timestamp())::float8 - %s))"
)
# pg_advisory_xact_lock's first key for claims ("woob"); the second is the account's hash.
CLAIM_LOCK = 0x776F6F62

_ROW = "id, site, key, body, historical, attempts, single_only"


class JobsMixin(PgBase):
    """The forwarder's port (agent/store/ports.py `JobQueue`).

    `owner` names this replica's claims (default the host's name: a restarted agent finds its
    own claims again; replicas that share a host need names of their own); `lease` is how
    long a claim lasts; `recover=False` (short-lived tools beside a running agent) leaves
    every claim alone when the store opens.
    """

    def __init__(
        self,
        dsn: str,
        *,
        owner: str | None = None,
        lease: float = CLAIM_LEASE,
        replica_timeout: float = DEFAULT_REPLICA_TIMEOUT,
        recover: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(dsn, **kw)
        self.owner = owner or socket.gethostname()
        self._lease = lease
        self.replica_timeout = replica_timeout
        self._recover = recover
        self._wants_side("claims")

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        if self._recover:
            try:
                await self._write(lambda db: _hand_back(db, None, self.owner))
            except BaseException:
                await self.close()
                raise
        return self

    # -- reads ----------------------------------------------------------------------------

    async def pending_count(self, account: str, kind: Kind, now: float) -> int:
        """Claimable jobs of one kind for one Brevo account (with claims whose lease ran out:
        the next claim takes them over)."""
        cur = await self.db.execute(
            "SELECT COUNT(*) FROM jobs WHERE account=%s AND kind=%s"
            " AND NOT (site = ANY(%s::text[]))"
            " AND ((state=0 AND not_before<=%s) OR (state=1 AND (claimed_until<%s"
            + _STALE_OWNER
            + ")))",
            (account, kind.value, self._held, now, time.time(), self.owner, self.replica_timeout),
        )
        row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    async def next_due(self, account: str, kind: Kind) -> float | None:
        """The earliest not_before among a kind's pending jobs (to sleep until then)."""
        cur = await self.db.execute(
            "SELECT MIN(not_before) FROM jobs WHERE account=%s AND state=0 AND kind=%s"
            " AND NOT (site = ANY(%s::text[]))",
            (account, kind.value, self._held),
        )
        row = await cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- claims ---------------------------------------------------------------------------

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
        (agent/store/jobs.py `claim` says what `single` and `by_lists` take)."""
        async with self._side_tx("claims") as db:
            await db.execute(
                "SELECT pg_advisory_xact_lock(%s::int, hashtext(%s))", (CLAIM_LOCK, account)
            )
            rows = await self._claim(db, account, kind, limit, now, single, by_lists)
        jobs = [
            Job(r[0], account, r[1], kind, r[2], json.loads(r[3]), bool(r[4]), r[5], bool(r[6]))
            for r in rows
        ]
        if kind in (Kind.CONTACT, Kind.DOI) and (emails := suppressible_emails(jobs)):
            # At send time (agent/store/consent.py `strip_suppressed`).
            strip_lists(jobs, await in_force(self.db, account, emails))
        return jobs

    async def _claim(
        self,
        db: Conn,
        account: str,
        kind: Kind,
        limit: int,
        now: float,
        single: bool | None,
        by_lists: bool,
    ) -> list[tuple[Any, ...]]:
        wall = time.time()
        await _take_over_expired(db, account, wall, self.owner, self.replica_timeout)
        extra = "" if single is None else f" AND single_only = {int(single)}"
        if kind is Kind.ERASE:
            # An erasure waits for its contact's upsert in flight, and for any call of its
            # email in flight when the erasure came (agent/store/jobs.py).
            extra += (
                " AND NOT EXISTS (SELECT 1 FROM jobs AS f WHERE f.account=jobs.account"
                " AND f.state=1 AND f.key='contact:' || (jobs.body::jsonb ->> 'email'))"
                " AND NOT EXISTS (SELECT 1 FROM jobs AS f WHERE f.account=jobs.account"
                f" AND f.state={ERASED_INFLIGHT})"
            )
        if kind is Kind.EVENT:
            # An event of a contact Brevo does not hold yet waits for the contact's earlier
            # upsert, queued or in flight (agent/store/jobs.py): a guest's abandoned cart
            # reached Brevo before its contact.
            extra += (
                " AND NOT EXISTS (SELECT 1 FROM jobs AS c WHERE c.account=jobs.account"
                " AND c.key='contact:' || (jobs.body::jsonb -> 'identifiers' ->> 'email_id')"
                f" AND c.state IN ({PENDING}, {INFLIGHT}) AND c.id < jobs.id"
                " AND NOT EXISTS (SELECT 1 FROM forwarded AS fw"
                " WHERE fw.account=c.account AND fw.key=c.key))"
            )
        where = (
            " FROM jobs WHERE account=%s AND kind=%s AND state=0 AND not_before<=%s"
            + extra
            + " AND NOT (site = ANY(%s::text[]))"
            " AND key NOT IN (SELECT key FROM jobs WHERE account=%s AND state=1)"
            " ORDER BY id LIMIT %s"
        )
        args = (account, kind.value, now, self._held, account, limit)
        if by_lists:
            cur = await db.execute(
                "SELECT id, key, NULLIF((body::jsonb -> 'listIds')::text, 'null')" + where, args
            )
            wanted = largest_list_group(await cur.fetchall())
        else:
            cur = await db.execute("SELECT id, key" + where, args)
            wanted = claimable(kind, await cur.fetchall())
        if not wanted:
            return []
        # Locked, or skipped when another transaction writes one (a merge into it, an
        # erasure): that one is not taken this time, and no other job of its key instead.
        cur = await db.execute(
            f"SELECT {_ROW} FROM jobs WHERE id = ANY(%s::bigint[]) AND state={PENDING}"
            " ORDER BY id FOR UPDATE SKIP LOCKED",
            (wanted,),
        )
        rows = await cur.fetchall()
        await db.execute(
            f"UPDATE jobs SET state={INFLIGHT}, claimed_by=%s, claimed_until=%s"
            " WHERE id = ANY(%s::bigint[])",
            (self.owner, wall + self._lease, [r[0] for r in rows]),
        )
        return rows

    async def unclaim(self, account: str) -> None:
        """Put this replica's claimed jobs of an account back in the queue (on shutdown)."""
        await self._write(lambda db: _hand_back(db, account, self.owner))

    # -- outcomes -------------------------------------------------------------------------

    async def complete(self, jobs: Iterable[Job]) -> None:
        """Brevo took these: forget the jobs, remember what Brevo now holds."""
        done = list(jobs)
        if done:
            locks = {site_lock(j.site) for j in done} | {account_lock(j.account) for j in done}
            await self._write(lambda db: _complete(db, done), locks)

    async def retry(
        self,
        jobs: Iterable[Job],
        not_before: float,
        error: str,
        *,
        single_only: bool = False,
        count_attempt: bool = True,
    ) -> None:
        """Put jobs this replica claimed back in the queue, due at `not_before` (a job whose
        claim another replica took over meanwhile is that replica's now)."""
        ids = [j.id for j in jobs]
        if not ids:
            return

        async def run(db: Conn) -> None:
            await db.execute(
                "UPDATE jobs SET state=0, not_before=%s, attempts=attempts+%s, last_error=%s,"
                " single_only=GREATEST(single_only, %s), claimed_by=NULL, claimed_until=NULL"
                f" WHERE id = ANY(%s::bigint[]) AND state={INFLIGHT} AND claimed_by=%s",
                (not_before, int(count_attempt), error[:500], int(single_only), ids, self.owner),
            )
            # An erasure of its email came while it was in flight: dropped.
            await db.execute(
                f"DELETE FROM jobs WHERE id = ANY(%s::bigint[]) AND state={ERASED_INFLIGHT}", (ids,)
            )

        await self._write(run)

    async def dead_letter(self, job: Job, code: str, message: str) -> None:
        """Brevo refused this write for good: keep it, with Brevo's code and message."""

        async def run(db: Conn) -> None:
            cur = await db.execute(
                f"DELETE FROM jobs WHERE id=%s AND state={ERASED_INFLIGHT}", (job.id,)
            )
            if cur.rowcount:  # an erasure of its email came while it was in flight
                return
            await db.execute("DELETE FROM jobs WHERE id=%s", (job.id,))
            sql, args = dead_letter_insert(
                job.site,
                "job",
                job.key,
                job.kind.value,
                code,
                message,
                json.dumps({"body": job.body, "historical": job.historical}),
                account=job.account,
            )
            await db.execute(pg(sql), args)
            await db.execute(pg(BUMP), (job.site, "dead_letters", 1))

        await self._write(run, (site_lock(job.site),))


async def _hand_back(db: Conn, account: str | None, owner: str) -> None:
    """Claims back to the queue: `owner`'s, those whose lease ran out and those of no owner
    (an account's, or every account's when None); jobs an erasure dropped in flight go."""
    mine = (
        " AND (claimed_by=%(owner)s OR claimed_by IS NULL"
        " OR COALESCE(claimed_until, 0) < %(wall)s)"
        " AND (%(account)s::text IS NULL OR account=%(account)s)"
    )
    args = {"owner": owner, "wall": time.time(), "account": account}
    await db.execute(
        f"UPDATE jobs SET state={PENDING}, claimed_by=NULL, claimed_until=NULL"
        f" WHERE state={INFLIGHT}" + mine,
        args,
    )
    await db.execute(f"DELETE FROM jobs WHERE state={ERASED_INFLIGHT}" + mine, args)


async def _take_over_expired(
    db: Conn, account: str, wall: float, owner: str, replica_timeout: float
) -> None:
    """The account's claims whose lease ran out, or whose replica's heartbeat is older than
    `replica_timeout` (it died), back to the queue, in the claim's transaction; those another
    transaction is writing are left for the next claim."""
    cur = await db.execute(
        f"SELECT id, state FROM jobs WHERE account=%s AND state IN ({INFLIGHT}, {ERASED_INFLIGHT})"
        " AND (claimed_until < %s" + _STALE_OWNER + ") FOR UPDATE SKIP LOCKED",
        (account, wall, owner, replica_timeout),
    )
    expired = await cur.fetchall()
    if not expired:
        return
    back = [i for i, state in expired if state == INFLIGHT]
    gone = [i for i, state in expired if state == ERASED_INFLIGHT]
    await db.execute(
        f"UPDATE jobs SET state={PENDING}, claimed_by=NULL, claimed_until=NULL"
        " WHERE id = ANY(%s::bigint[])",
        (back,),
    )
    await db.execute("DELETE FROM jobs WHERE id = ANY(%s::bigint[])", (gone,))


async def _complete(db: Conn, jobs: list[Job]) -> None:
    now = time.time()
    known: dict[tuple[str, str], Any] = {}
    for account in sorted({j.account for j in jobs}):
        keys = sorted({j.key for j in jobs if j.account == account})
        # Locked in key order: a suppression rewriting one of these records waits (no lost
        # update), and two writers lock in the same order.
        cur = await db.execute(
            "SELECT key, state FROM forwarded WHERE account=%s AND key = ANY(%s::text[])"
            ' ORDER BY key COLLATE "C" FOR UPDATE',
            (account, keys),
        )
        for key, state in await cur.fetchall():
            known[(account, key)] = json.loads(state)
    for job in jobs:  # in order: two event jobs may share a key
        k = (job.account, job.key)
        known[k] = known_after(job.kind, job.body, known.get(k))
    await db.execute("DELETE FROM jobs WHERE id = ANY(%s::bigint[])", ([j.id for j in jobs],))
    async with db.cursor() as cur:
        await cur.executemany(
            "INSERT INTO forwarded (account, key, state, updated_at) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (account, key) DO UPDATE SET state=excluded.state,"
            " updated_at=excluded.updated_at",
            [(a, key, json.dumps(state), now) for (a, key), state in sorted(known.items())],
        )
        done = Counter((j.site, f"brevo_done_{j.kind.value}") for j in jobs)
        await cur.executemany(pg(BUMP), [(site, name, n) for (site, name), n in done.items()])
    for site in sorted({j.site for j in jobs}):
        await set_stat(db, site, "last_success", now)


async def set_stat(db: Conn, site: str, name: str, value: float) -> None:
    """Set a site's figure (`stats`), as agent/store/rows.py `set_stat`."""
    await db.execute(
        "INSERT INTO stats (site, name, value) VALUES (%s, %s, %s) ON CONFLICT (site, name)"
        " DO UPDATE SET value=excluded.value",
        (site, name, value),
    )
