"""The replicas sharing a PostgreSQL store: heartbeats, faster takeover, the cluster view.

Each replica's forwarding process beats every `heartbeat_every` seconds (agent/app.py): one
transaction writes its row of `replicas` (name, host, pid, version, started_at, last_seen on
the server's clock) and renews the leases of the Brevo jobs it holds in flight. Its doors
process writes the sites its stream door holds (`report_sites`). A replica whose last beat is
older than `replica_timeout` (agent.replica_timeout) is stale: the next claim of any other
replica takes its claims over (agent/store/postgres/jobs.py `_take_over_expired`), rather
than waiting for the 120 s lease. A replica that comes back after being stale says so in its
log (its requests then in flight may be sent again by the replica that took them over).

The beat is written on a connection of its own (the "beats" side connection), not through
the group commit: a long queue of writes must not make a live replica look dead. And a
replica sends nothing its heartbeat cannot vouch for (`holds_claims`, the forwarder's fence):
a beat sent at monotonic time s and acknowledged keeps the others off its claims until s +
`replica_timeout` at the earliest, so this replica sends only until s + two thirds of it
(`FENCE`), leaving a third for a request then sent to be answered and recorded. A claim made
before a gap in that coverage (a stalled event loop, a beat the server did not take in time)
is never sent: another replica may hold it already (docs/postgresql.md, "Replicas").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

from agent import __version__
from agent.store.postgres.channels import INBOX_CHANNEL, JOBS_CHANNEL
from agent.store.postgres.jobs import JobsMixin
from agent.store.schema import ERASED_INFLIGHT, INFLIGHT

__all__ = ["ClusterMixin", "beating", "listening"]

log = logging.getLogger("agent.store")

# The server's clock, epoch seconds.
NOW = "extract(epoch FROM clock_timestamp())::float8"

# The share of agent.replica_timeout after a beat is sent during which this replica may still
# send what it claimed: the rest is a request's time to be answered before others take over.
FENCE = 2 / 3

_BEAT = (
    "INSERT INTO replicas (name, host, pid, version, started_at, last_seen)"
    f" VALUES (%(name)s, %(host)s, %(pid)s, %(version)s, %(started)s, {NOW})"
    " ON CONFLICT (name) DO UPDATE SET host=excluded.host, pid=excluded.pid,"
    " version=excluded.version, started_at=excluded.started_at, last_seen=excluded.last_seen"
    " RETURNING (SELECT r.last_seen FROM replicas AS r WHERE r.name=%(name)s), last_seen"
)
# The leases of the jobs this replica holds in flight, renewed when half run out.
_RENEW = (
    "UPDATE jobs SET claimed_until = %s WHERE claimed_by=%s"
    f" AND state IN ({INFLIGHT}, {ERASED_INFLIGHT}) AND claimed_until < %s"
)


class ClusterMixin(JobsMixin):
    """Heartbeats, lease renewal and the cluster view (`Cluster` in agent/store/ports.py).
    `replica_timeout`: seconds without a beat after which a replica's claims are taken over."""

    def __init__(self, dsn: str, **kw: Any) -> None:
        super().__init__(dsn, **kw)
        self._pid = os.getpid()
        self._wants_side("beats")
        # The fence (monotonic seconds): claims made since `_covered_since` may be sent until
        # `_vouched_until`. No beat yet (a tool, the doors process): nothing to fence.
        self._covered_since = float("-inf")
        self._vouched_until = float("inf")

    @property
    def heartbeat_every(self) -> float:
        """Seconds between beats: a third of the timeout, at most 5 s."""
        return min(5.0, self.replica_timeout / 3)

    async def beat(self, started_at: float) -> None:
        """This replica is alive: its row (its own transaction, on the beats connection), then
        its claims' leases renewed; the fence moves on (`holds_claims`)."""
        args = {
            "name": self.owner,
            "host": socket.gethostname(),
            "pid": self._pid,
            "version": __version__,
            "started": started_at,
        }
        sent = time.monotonic()
        async with self._side_tx("beats") as db:
            cur = await db.execute(_BEAT, args)
            row = await cur.fetchone()
        assert row is not None
        before, now = (None if row[0] is None else float(row[0])), float(row[1])
        # This process's first beat follows the doors process's row, or a previous run's:
        # the gap before it is a start, not a pause of a replica holding claims.
        again = self._vouched_until != float("inf")
        self._vouch(sent, time.monotonic())
        if again and before is not None and now - before > self.replica_timeout:
            log.warning(
                "replica %s was not seen for %.1fs (agent.replica_timeout %gs): the other"
                " replicas may have taken its claims over; a request it had in flight may be"
                " sent twice",
                self.owner,
                now - before,
                self.replica_timeout,
            )
        wall = time.time()
        async with self._side_tx("beats") as db:
            await db.execute(_RENEW, (wall + self._lease, self.owner, wall + self._lease / 2))

    def _vouch(self, sent: float, acked: float) -> None:
        """A beat sent at `sent` was written by `acked` (monotonic): the others keep off this
        replica's claims until `sent` + replica_timeout at least, so it may send until `sent`
        + FENCE of it. Acknowledged after the last beat's cover ran out: the claims made
        before may be another replica's now, and are never sent (`holds_claims`)."""
        until = sent + self.replica_timeout * FENCE
        if acked >= self._vouched_until:
            log.warning(
                "replica %s: its heartbeat lapsed for %.1fs (the database or this process was"
                " slow): what it claimed before is handed back unsent, another replica may"
                " hold it now",
                self.owner,
                acked - self._vouched_until,
            )
            self._covered_since = acked
            self._vouched_until = until
        elif self._vouched_until == float("inf"):  # the first beat
            self._covered_since, self._vouched_until = sent, until
        else:
            self._vouched_until = max(self._vouched_until, until)

    def holds_claims(self, claimed_at: float) -> bool:
        """Whether a claim made at monotonic time `claimed_at` may be sent now: the heartbeat
        has vouched for this replica without a gap since then, and still does."""
        return self._covered_since <= claimed_at and time.monotonic() < self._vouched_until

    async def report_sites(self, sites: Collection[str]) -> None:
        """The sites this replica's stream door holds now (for the cluster view)."""
        names = json.dumps(sorted(sites))

        async with self._side_tx("beats") as db:
            await db.execute(
                # A first row is seen now: with 0 the worker's first beat warned that the
                # replica had been away for 56 years, and others took it for stale meanwhile.
                "INSERT INTO replicas (name, host, pid, version, started_at, last_seen, sites,"
                f" sites_at) VALUES (%s, %s, %s, %s, {NOW}, {NOW}, %s, {NOW})"
                f" ON CONFLICT (name) DO UPDATE SET sites=excluded.sites, sites_at={NOW}",
                (self.owner, socket.gethostname(), self._pid, __version__, names),
            )

    async def cluster(self) -> list[dict[str, Any]]:
        """Every replica of the table: last seen, alive or stale, claims held, sites held."""
        cur = await self.db.execute(
            "SELECT r.name, r.host, r.pid, r.version, r.started_at, r.last_seen, r.sites,"
            f" {NOW} - r.last_seen,"
            f" (SELECT COUNT(*) FROM jobs AS j WHERE j.claimed_by = r.name AND j.state={INFLIGHT})"
            " FROM replicas AS r ORDER BY r.name"
        )
        out = []
        for name, host, pid, version, started, seen, sites, age, claims in await cur.fetchall():
            out.append(
                {
                    "name": name,
                    "host": host,
                    "pid": pid,
                    "version": version,
                    "started_at": started,
                    "last_seen": seen,
                    "seen_ago": round(float(age), 3),
                    "state": "alive" if age <= self.replica_timeout else "stale",
                    "claims": int(claims),
                    "sites": json.loads(sites),
                }
            )
        return out


@contextlib.asynccontextmanager
async def beating(
    store: ClusterMixin,
    *,
    started_at: float,
    beat: bool,
    sites: Callable[[], Collection[str]] | None,
) -> AsyncIterator[None]:
    """While inside: beat (`beat`: the process that forwards, which holds the claims) and
    report the stream door's sites (`sites`), every `heartbeat_every` seconds, the first at
    once. A failed beat is logged and tried at the next turn (the database's own health shows
    in /readyz)."""

    async def turn() -> None:
        if beat:
            await store.beat(started_at)
        if sites is not None:
            await store.report_sites(sites())

    await turn()

    async def loop() -> None:
        every = store.heartbeat_every
        due = time.monotonic() + every
        while True:
            # On a fixed cadence: a slow turn shortens the next sleep instead of adding to it.
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            late = time.monotonic() - due
            if late > every:
                log.warning(
                    "replica %s: heartbeat %.1fs late (this process's event loop was busy or"
                    " the database slow)",
                    store.owner,
                    late,
                )
            due = max(due + every, time.monotonic())
            try:
                await turn()
            except Exception as exc:
                log.warning("replica %s: heartbeat failed (%s)", store.owner, exc)

    task = asyncio.create_task(loop(), name="replica-heartbeat")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def listening(
    store: ClusterMixin, *, inbox: Callable[[], None], jobs: Callable[[], None]
) -> AsyncIterator[None]:
    """While inside, a connection LISTENs for what the other replicas commit: a batch stored
    calls `inbox` (the processor looks now), jobs planned call `jobs` (the forwarders look),
    rather than waiting for their own timers. A lost connection is opened again after a
    second; meanwhile the timers still find the work."""

    async def listen() -> None:
        while True:
            try:
                conn = await store._connect()
                try:
                    await conn.execute(f"LISTEN {INBOX_CHANNEL}")
                    await conn.execute(f"LISTEN {JOBS_CHANNEL}")
                    async for note in conn.notifies():
                        (inbox if note.channel == INBOX_CHANNEL else jobs)()
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("replica %s: listening for the others failed (%s)", store.owner, exc)
            await asyncio.sleep(1.0)

    task = asyncio.create_task(listen(), name="replica-listen")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
