"""The processor: turns stored events into Brevo jobs, in arrival order, as they come in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.config import SiteConfig
from agent.core.aggregates import OrderFact, order_fact
from agent.core.carts import Cart, CartOutcome, CartSite
from agent.core.consent import ConsentView
from agent.core.events import Event
from agent.core.jobs import Outcome
from agent.core.pipeline import SiteRules, decide
from agent.core.privacy import Erasure, ErasureRules, erasure_of
from agent.metrics import Metrics
from agent.store.ports import CartStep, InboxQueue

__all__ = ["Processor"]

log = logging.getLogger("agent.processor")

OTHER_WRITERS_EVERY = 5.0  # seconds between looks for rows another process stored
# Rows per chunk: the pipeline runs on a chunk outside any transaction, then its writes
# commit at once (agent/store/chunk.py); ingest waits at most one chunk for the
# store thread (one process) or one chunk's writes for the write lock (agent/process/worker.py).
BATCH = 50
PRUNE_EVERY = 600.0  # seconds between deletions of old processed inbox rows


class Processor:
    """Owns one background task; `drain()` is its run-once mode. `wake` tells the forwarder
    that new jobs may be waiting."""

    def __init__(
        self,
        store: InboxQueue,
        sites: Mapping[str, SiteConfig],
        *,
        metrics: Metrics,
        clock: Callable[[], float],
        wake: Callable[[], None],
        historical_after: float,
        inbox_retention: float,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self._wake = wake
        self.historical_after = historical_after
        self.inbox_retention = inbox_retention
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # True while stored events wait to be processed: more jobs are on their way, so the
        # forwarder lets partial batches fill up (agent/forward/forwarder.py).
        self.backlogged = False
        self._pruner: asyncio.Task[None] | None = None
        self._rules: dict[str, SiteRules] = {}
        self._carts: dict[str, CartSite] = {}
        self._privacy: dict[str, ErasureRules] = {}
        self._cart_step_or_none: CartStep | None = None
        self.reconfigure(sites, historical_after=historical_after, inbox_retention=inbox_retention)

    def reconfigure(
        self, sites: Mapping[str, SiteConfig], *, historical_after: float, inbox_retention: float
    ) -> None:
        """Take these sites' rules (at start, and on a config reload: the next chunk uses them;
        agent/reload.py)."""
        self.historical_after = historical_after
        self.inbox_retention = inbox_retention
        # What the pipeline reads of each site's config, built once (agent/core/pipeline.py).
        self._rules = {sid: SiteRules.of(site) for sid, site in sites.items()}
        self._carts = {sid: CartSite.of(site) for sid, site in sites.items()}
        self._privacy = {sid: ErasureRules.of(site, sites.values()) for sid, site in sites.items()}
        # No site tracks carts: an order costs no look-up of its buyer's open carts.
        self._cart_step_or_none = (
            self._cart_step if any(c.rules.enabled for c in self._carts.values()) else None
        )

    async def __aenter__(self) -> Processor:
        self._task = asyncio.create_task(self._loop(), name="processor")
        # Its own task: a first deletion on a large store takes minutes, and new events must
        # not wait for it (the two share the store's thread batch by batch).
        self._pruner = asyncio.create_task(self._prune_loop(), name="inbox-pruner")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the loop; a row being processed finishes its transaction or rolls back."""
        for task in (self._task, self._pruner):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._pruner = None

    def _decide(
        self,
        site_id: str,
        event: Event,
        prior: dict[str, Any] | None,
        aggregates: Any,
        consent: ConsentView,
    ) -> Outcome:
        rules = self._rules.get(site_id)
        if rules is None:
            return Outcome(
                dead=(("unknown_site", f"site {site_id!r} is not in the config any more"),)
            )
        outcome = decide(
            rules,
            event,
            prior,
            aggregates,
            now=self.clock(),
            historical_after=self.historical_after,
            consent=consent,
        )
        for warning in outcome.warnings:  # each names its event (agent/logs.py)
            ids = {"site": site_id, "door": event.door.value, "event_id": event.id}
            log.warning("site %s: %s", site_id, warning, extra=ids)
        return outcome

    def _facts(self, site_id: str, event: Event) -> OrderFact | None:
        return order_fact(event) if site_id in self._rules else None

    def _erasure(self, site_id: str, event: Event) -> Erasure | None:
        rules = self._privacy.get(site_id)
        return None if rules is None else erasure_of(rules, event)

    def _cart_step(self, site_id: str, event: Event, carts: Sequence[Cart]) -> CartOutcome | None:
        site = self._carts.get(site_id)
        return None if site is None else site.on_event(event, carts, self.clock())

    async def fire_timers(self) -> int:
        """Fire every cart timer due by now, oldest first (agent/store/carts.py); returns how
        many carts moved on."""
        now = self.clock()

        def fire(site_id: str, cart: Cart) -> CartOutcome | None:
            site = self._carts.get(site_id)
            return None if site is None else site.on_due(cart, now)

        total = 0
        async with self._lock:
            while n := await self.store.fire_due_carts(now, fire):
                total += n
        if total:
            self._wake()
        return total

    async def _timers(self) -> float:
        """Fire the cart timers due by now; return how long the loop may wait for new rows:
        until the next timer, at most OTHER_WRITERS_EVERY. One read when nothing is due (the
        common case, after every drain)."""
        due = await self.store.next_cart_due()
        if due is not None and due <= self.clock():
            await self.fire_timers()
            due = await self.store.next_cart_due()
        if due is None:
            return OTHER_WRITERS_EVERY
        return min(OTHER_WRITERS_EVERY, max(0.0, due - self.clock()) + 0.01)

    async def drain(self) -> int:
        """Process everything stored so far; returns how many events were processed."""
        total = 0
        async with self._lock:
            while True:
                n = await self.store.process_pending(
                    BATCH,
                    self._decide,
                    self._facts,
                    carts=self._cart_step_or_none,
                    privacy=self._erasure,
                )
                total += n
                self.backlogged = n == BATCH
                if n < BATCH:
                    break
                if total % (BATCH * 20) == 0:
                    self._wake()
        if total:
            self._wake()
        return total

    async def prune(self) -> int:
        """Delete processed inbox rows older than `agent.inbox_retention`."""
        # received_at is the store's wall-clock time, not the app's (test) clock
        before = time.time() - self.inbox_retention
        n = await self.store.prune_inbox(before)
        if n:
            log.info("deleted %d processed inbox events stored before the retention window", n)
            self.metrics.inc("woobrevo_inbox_pruned_total", n)
        return n

    async def _prune_loop(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception:
                log.exception("deleting old inbox events failed; trying again in %gs", PRUNE_EVERY)
            await asyncio.sleep(PRUNE_EVERY)

    async def _loop(self) -> None:
        store = self.store
        while True:
            store.ingested.clear()
            try:
                await self.drain()
                idle = await self._timers()
            except Exception:
                # One bad row must not stop the agent; it stays pending and is retried.
                log.exception("processing failed; retrying in 5s")
                await asyncio.sleep(5)
                continue
            # Rows stored by another process (`backfill` or `ingest` beside a running agent)
            # set no event here: look again every few seconds.
            # asyncio.timeout, not wait_for (which can swallow close()'s cancel on 3.11).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle):
                    await store.ingested.wait()
