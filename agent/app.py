"""The agent process: wires the store, the processor, the forwarders and the doors, and owns
their lifetimes (one AsyncExitStack; everything started here is closed here)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from agent.config import Config, SiteConfig
from agent.forwarder import Forwarder
from agent.metrics import Metrics
from agent.processor import Processor
from agent.store import SqliteStore

__all__ = ["App"]

log = logging.getLogger("agent.app")


class App:
    """One running agent. `async with App(cfg) as app:` starts everything; leaving stops it."""

    def __init__(
        self,
        cfg: Config,
        *,
        clock: Callable[[], float] = time.time,
        doors: bool = True,
        after_commit: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.cfg = cfg
        # Test-only hook of the stream door, called between a batch's commit and its ack
        # (the crash test kills the process there); set only by the CLI entry point.
        self.after_commit = after_commit
        self.sites: dict[str, SiteConfig] = {s.id: s for s in cfg.resolved_sites()}
        self.metrics = Metrics()
        self.clock = clock
        self.store = SqliteStore(cfg.agent.state_dir / "woobrevo.sqlite3")
        self.processor = Processor(self)
        self.forwarder = Forwarder(self)
        self.with_doors = doors
        self.started_at = clock()
        self.state: dict[str, Any] = {}  # shared, secret-free runtime state (/status)
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> App:
        try:
            await self._stack.enter_async_context(self.store)
            await self._stack.enter_async_context(self.processor)
            await self._stack.enter_async_context(self.forwarder)
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
        from agent.doors.stream import StreamServer
        from agent.http import HttpServer

        self.stream = await stack.enter_async_context(
            StreamServer(self, after_commit=self.after_commit)
        )
        self.http = await stack.enter_async_context(HttpServer(self))
        with contextlib.suppress(ImportError):
            from agent.doors.poller import Pollers

            self.pollers = await stack.enter_async_context(Pollers(self))

    async def wait_idle(self, within: float | None = None) -> None:
        """Return when every stored event is processed and every Brevo job is done or dead
        (TimeoutError after `within` seconds)."""
        async with asyncio.timeout(within):
            while True:
                await self.processor.drain()
                counts = await self.store.counts()
                if counts["inbox_pending"] == 0 and counts["jobs"] == 0:
                    return
                await self.forwarder.wait_progress(1.0)
