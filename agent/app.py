"""The agent process and its one composition root: builds the store, the status records, the
metrics, the processor, the forwarder, the worker link and the doors, hands each what it uses,
and owns their lifetimes (one AsyncExitStack; everything started here is closed here).

Nothing else in agent/ imports this module: only the commands that run an agent
(agent/cli/main.py, agent/cli/sync.py) build an `App` (tests/agent/test_layers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Literal

from agent import __version__
from agent.config import Config, ConfigError, SiteConfig, load_config, secret_values
from agent.doors.brevo_hooks import BrevoHookDoor
from agent.doors.poller import Pollers
from agent.doors.stream import StreamServer, StreamTestHooks, tls_context
from agent.doors.webhooks import BodyGate, WebhookDoor
from agent.errors import AgentError
from agent.forward.forwarder import Forwarder
from agent.http import HttpServer
from agent.logs import protect
from agent.metrics import Metrics
from agent.process.processor import Processor
from agent.process.worker import WorkerLink
from agent.reload import Reloaded, describe_changes, file_digest, read_file, restart_needed
from agent.status import ConfigStatus, RuntimeStatus
from agent.store.open import Store, open_store, store_info
from agent.store.postgres.cluster import ClusterMixin, beating, listening
from agent.tokens import TokenRegistry

__all__ = ["App", "Role"]

# all: one process does everything (tests, `run --until-idle`, `processing: inline`);
# doors + worker: the two processes of `processing: process` (agent/process/worker.py).
Role = Literal["all", "doors", "worker"]

LOCK_WAIT = 30.0  # seconds to wait for a previous forwarding process to let go of the state

log = logging.getLogger("agent.app")


class App:
    """One running agent. `async with App(cfg) as app:` starts everything; leaving stops it."""

    def __init__(
        self,
        cfg: Config,
        *,
        clock: Callable[[], float] = time.time,
        doors: bool = True,
        stream_hooks: StreamTestHooks | None = None,
        role: Role = "all",
        worker_argv: Sequence[str] = (),
    ) -> None:
        self.cfg = cfg
        self.role = role
        # The doors process starts the worker with this command line (agent/process/worker.py).
        self.worker_argv = tuple(worker_argv)
        # Test-only faults of the stream door (crash after a commit, slow acks, a failing
        # store); set only by the CLI entry point from WOOBREVO_TEST_* variables.
        self.stream_hooks = stream_hooks
        self.sites: dict[str, SiteConfig] = {s.id: s for s in cfg.resolved_sites()}
        self.metrics = Metrics()
        self.clock = clock
        # Only the process that sends Brevo jobs hands a crash's in-flight jobs back.
        # With two processes the worker lets the doors' writes (acks wait for them) go first,
        # and does the WAL checkpoints (agent/store/schema.py).
        # Sites whose stored events and jobs wait, kept: switched off (`enabled: false`), or
        # removed from the config by a reload since start (`reload`).
        self._held = {s.id for s in self.sites.values() if not s.woo.enabled}
        self._removed: set[str] = set()
        self._reloading = asyncio.Lock()
        # The SQLite file, or the PostgreSQL database of `agent.store` (agent/store/open.py).
        self.store: Store = open_store(
            cfg.agent,
            recover=role != "doors",
            writes="doors" if role == "doors" else "worker" if role == "worker" else "plain",
            held_sites=self._held,
        )
        # Secret-free runtime status: the doors write it, /status reads it (agent/status.py).
        self.status = RuntimeStatus(
            self.sites,
            started_at=clock(),
            config=ConfigStatus(path=cfg.source, sha256=cfg.digest, loaded_at=clock()),
        )
        # Each tells the other one thing: the forwarder lets partial batches fill up while the
        # processor is backlogged, and the processor wakes the forwarder after new jobs.
        self.forwarder = Forwarder(
            self.store,
            self.sites.values(),
            metrics=self.metrics,
            clock=clock,
            backlogged=lambda: self.processor.backlogged,
        )
        self.processor = Processor(
            self.store,
            self.sites,
            metrics=self.metrics,
            clock=clock,
            wake=self.forwarder.wake,
            historical_after=cfg.agent.historical_after,
            inbox_retention=cfg.agent.inbox_retention,
        )
        self.with_doors = doors and role != "worker"
        self.worker: WorkerLink | None = None  # in the doors process
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> App:
        try:
            if self.role != "doors":
                await self._stack.enter_async_context(forwarding_lock(self.cfg.agent.state_dir))
            await self._stack.enter_async_context(self.store)
            if isinstance(self.store, ClusterMixin):
                # The replica's heartbeat (the forwarding process: it renews its claims'
                # leases) and its stream door's sites (agent/store/postgres/cluster.py).
                await self._stack.enter_async_context(
                    beating(
                        self.store,
                        started_at=time.time(),
                        beat=self.role != "doors",
                        sites=self.stream_sites if self.with_doors else None,
                    )
                )
            if self.role == "doors":
                self.worker = await self._stack.enter_async_context(
                    WorkerLink(
                        self.worker_argv,
                        # The bytes the config was loaded from (a Config built in memory:
                        # its file as it is now).
                        config=self.cfg.file_bytes or read_file(self.cfg.source),
                        ingested=self.store.ingested,
                        metrics=self.metrics,
                    )
                )
            else:
                await self._stack.enter_async_context(self.processor)
                await self._stack.enter_async_context(self.forwarder)
                if isinstance(self.store, ClusterMixin):  # woken by the other replicas
                    await self._stack.enter_async_context(
                        listening(
                            self.store, inbox=self.store.ingested.set, jobs=self.forwarder.wake
                        )
                    )
            if self.with_doors:
                await self._start_doors(self._stack)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _start_doors(self, stack: AsyncExitStack) -> None:
        """Start the websocket door, the HTTP server (webhooks, health, metrics, status) and
        the pollers, each as an async context manager on `stack`."""
        cfg, agent = self.cfg, self.cfg.agent
        self.tokens = TokenRegistry(cfg, self.store, sites=self.sites, reload=load_config)
        self.stream = await stack.enter_async_context(
            StreamServer(
                self.store,
                self.tokens,
                self.sites,
                self.status,
                figures=self.store,
                holdings=self.store,
                metrics=self.metrics,
                clock=self.clock,
                listen=agent.listen.stream,
                limits=agent.stream,
                proxies=agent.trusted_proxies,
                tls=tls_context(cfg),
                hooks=self.stream_hooks,
            )
        )
        # One limit for everything the agent reads from the network (docs/protocol.md); one
        # gate over both webhook doors' bodies (agent.webhooks, docs/doors.md).
        self.bodies = bodies = BodyGate(agent.webhooks, max_body=agent.stream.max_message_bytes)
        self.webhooks = webhooks = WebhookDoor(
            self.store,
            self.sites,
            self.status,
            metrics=self.metrics,
            clock=self.clock,
            bodies=bodies,
            proxies=agent.trusted_proxies,
        )
        # Brevo's marketing webhooks: who unsubscribed or rejoined a list (suppressions).
        self.brevo_hooks = brevo_hooks = BrevoHookDoor(
            self.store,
            self.sites,
            self.status,
            metrics=self.metrics,
            clock=self.clock,
            bodies=bodies,
            proxies=agent.trusted_proxies,
        )
        # Brevo readiness and the worker's series come from whichever process forwards.
        worker = self.worker
        self.http = await stack.enter_async_context(
            HttpServer(
                self.store,
                self.sites,
                self.status,
                webhooks,
                brevo_hooks,
                metrics=self.metrics,
                clock=self.clock,
                listen=agent.listen.http,
                stale_after=agent.stream.stale_after,
                brevo_ready=self.forwarder.ready if worker is None else worker.ready,
                worker_metrics=None if worker is None else worker.metrics,
                store_info=store_info(agent).as_dict(),
                cluster=self.cluster,
            )
        )
        self.pollers = await stack.enter_async_context(
            Pollers(
                self.sites,
                self.store,
                metrics=self.metrics,
                status=self.status,
                clock=self.clock,
                stale_after=agent.stream.stale_after,
            )
        )

    def stream_sites(self) -> list[str]:
        """The sites with a websocket open on this replica's stream door."""
        return sorted(sid for sid in self.sites if self.status.site(sid).stream.connections)

    async def cluster(self) -> list[dict[str, Any]]:
        """Every replica sharing the store (PostgreSQL: its `replicas` table; SQLite: this
        agent alone, whose claims are not leased: `claims` None), `this` marking this one."""
        if isinstance(self.store, ClusterMixin):
            replicas = await self.store.cluster()
        else:
            replicas = [
                {
                    "name": self.cfg.agent.replica,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "version": __version__,
                    "started_at": self.status.started_at,
                    "last_seen": self.clock(),
                    "seen_ago": 0.0,
                    "state": "alive",
                    "claims": None,
                    "sites": self.stream_sites(),
                }
            ]
        for r in replicas:
            r["this"] = r["name"] == self.cfg.agent.replica
        return replicas

    async def stop_accepting(self) -> None:
        """A stop's first step: close both listeners, so that nothing new arrives while the
        batches and requests in flight finish (leaving `async with` then closes the rest)."""
        if self.with_doors:
            self.stream.stop_accepting()
            await self.http.stop_accepting()

    async def reload(self, raw: bytes | None = None) -> Reloaded:
        """Re-read the config file (`raw`: its bytes, as the doors process read them) and apply
        it without a restart; refused, with the old config kept, when it is invalid or changes
        a key that needs a restart (agent/reload.py). With two processes, the worker applies it
        first and the doors only once it has. Logged, and recorded for /status."""
        async with self._reloading:
            result = await self._reload(raw)
        config = self.status.config
        if config is not None:
            if result.ok:
                config.sha256, config.loaded_at = result.sha256, result.at
            config.last_reload = result.record()
        if result.ok:
            log.info("%s", result.summary())
        else:
            log.error("%s", result.summary())
        return result

    async def _reload(self, raw: bytes | None) -> Reloaded:
        at = self.clock()
        path = self.cfg.source
        digest = ""
        try:
            if path == "<memory>":
                raise ConfigError(path, ["this agent was not started from a config file"])
            raw = read_file(path) if raw is None else raw
            digest = file_digest(raw)
            new = load_config(path, raw=raw)
            problems = restart_needed(self.cfg, new)
            if problems:
                raise ConfigError(path, problems)
            if self.with_doors:
                tls_context(new)  # the new certificate and key load, or the reload is refused
        except ConfigError as exc:
            return Reloaded(ok=False, at=at, sha256=digest, error=str(exc))
        if self.worker is not None:
            ok, why = await self.worker.reload(raw)
            if not ok:
                error = f"the worker process did not apply it: {why}"
                return Reloaded(ok=False, at=at, sha256=digest, error=error)
        changes = describe_changes(self.cfg, new)
        try:
            await self._apply(new)
        except Exception as exc:  # a loop boundary: the agent must go on, and say so
            log.exception("applying the reloaded config failed half-way")
            error = f"applying it failed half-way ({exc}); restart the agent"
            return Reloaded(ok=False, at=at, sha256=digest, error=error)
        return Reloaded(ok=True, at=at, sha256=digest, changes=tuple(changes))

    async def _apply(self, new: Config) -> None:
        """Hand every component its part of `new` (already checked by `_reload`)."""
        protect(secret_values(new))  # its secrets are masked in every line from now on
        sites = {s.id: s for s in new.resolved_sites()}
        self._removed = (self._removed | (set(self.sites) - set(sites))) - set(sites)
        held = {sid for sid, s in sites.items() if not s.woo.enabled} | self._removed
        # What stops now stops before the rules change; what resumes, once they have.
        await self.store.hold(self._held | held)
        self.cfg = new
        self.sites.clear()
        self.sites.update(sites)  # the doors and /status read this very mapping
        for sid in sites:
            self.status.site(sid)
        agent = new.agent
        if self.role != "doors":
            self.processor.reconfigure(
                sites,
                historical_after=agent.historical_after,
                inbox_retention=agent.inbox_retention,
            )
            await self.forwarder.reconfigure(sites.values())
        if self.with_doors:
            self.tokens.reconfigure(new, sites)
            tls = (agent.tls.cert, agent.tls.key) if agent.tls is not None else None
            await self.stream.reconfigure(
                sites, limits=agent.stream, proxies=agent.trusted_proxies, tls=tls
            )
            self.webhooks.reconfigure(proxies=agent.trusted_proxies)
            self.brevo_hooks.reconfigure(proxies=agent.trusted_proxies)
            self.bodies.reconfigure(agent.webhooks)
            self.http.reconfigure(stale_after=agent.stream.stale_after)
            await self.pollers.reconfigure(sites, stale_after=agent.stream.stale_after)
        await self.store.hold(held)
        self._held = held

    async def wait_idle(self, within: float | None = None) -> None:
        """Return when every stored event is processed and every Brevo job is done or dead
        (TimeoutError after `within` seconds)."""
        async with asyncio.timeout(within):
            while True:
                if self.role != "doors":
                    await self.processor.drain()
                counts = await self.store.counts()
                if counts["inbox_pending"] == 0 and counts["jobs"] == 0:
                    return
                if self.role == "doors":  # the worker process does the work
                    await asyncio.sleep(0.5)
                else:
                    await self.forwarder.wait_progress(1.0)


@contextlib.asynccontextmanager
async def forwarding_lock(state_dir: Path, wait: float = LOCK_WAIT) -> AsyncIterator[None]:
    """One process at a time sends a state folder's Brevo jobs.

    Two forwarders on one store would both send the jobs the other one holds in flight (each
    hands a crash's in-flight jobs back at start). A worker whose doors process was killed
    needs a moment to see its pipe close and stop: a new agent waits for it, up to `wait`.

    On PostgreSQL (`agent.store`) the claims are leased in the database per replica name, so
    replicas on other machines need no lock; it still guards this machine's state folder: two
    agents started here share the default replica name (the host's), and one's start would
    hand back the other's claims in flight (docs/postgresql.md, "Replicas").
    """
    path = state_dir / "forwarder.lock"
    fd = await asyncio.to_thread(_open_lock_file, path)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise AgentError(
                        f"another agent (pid {holder}) is forwarding from {state_dir}; stop it"
                        " first, or give this one its own agent.state_dir"
                    ) from None
                await asyncio.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _open_lock_file(path: Path) -> int:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # private, as the store's
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
