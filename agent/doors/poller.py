"""The polling door: the store's REST API when a site's stream is silent, and always for a site
without the plugin (`mode: polling`). DESIGN.md, data path step 8; docs/backfill.md, "Polling".

A thin shell: agent/core/polling.py decides the mode, the timers, the windows, what changed and
what vanished (`step` returns what to do each tick), and agent/core/rest.py turns listed objects
into events; this module sends the requests, stores what they return through the one entry
point of every door (`store.ingest`), keeps time, and reports to /status and /metrics.

Per site and round: products, coupons and orders changed since a watermark (`modified_after`,
`dates_are_gmt=true`, `orderby=modified`), windows overlapping by `polling.overlap` and walked by
keyset (the last second seen, with the ids already taken in it excluded) so an object saved while
a round pages cannot shift another out of it; the variations of the variable products that
changed; the customers those orders name. In the background, every `customer_scan_every`, a scan
of every customer's `date_modified_gmt` (wc/v3 cannot filter customers by date, NOTES §2.1), and
every `reconcile_every` an id reconciliation that finds permanent deletions (they fire no
webhook, NOTES §1.4) and sweeps every variable product's variations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from agent.config import SiteConfig
from agent.core.events import Door
from agent.core.polling import (
    Action,
    CannotPoll,
    CatchUp,
    CheckJobs,
    Job,
    Mode,
    Poll,
    PollerState,
    PollTiming,
    SaveDue,
    StartJob,
    StopJobs,
    SwitchMode,
    advance,
    caught_up,
    changed_ids,
    due_jobs,
    job_done,
    round_failed,
    round_succeeded,
    start_mark,
    step,
    vanished_ids,
    window_start,
)
from agent.core.rest import chunks, deleted_events, fields_for, to_events
from agent.core.times import gmt, gmt_seconds
from agent.core.woo import SINGULAR
from agent.logs import bind
from agent.metrics import Metrics, count_ingest
from agent.status import PollingStatus, RuntimeStatus
from agent.store.ports import SiteState
from agent.woocommerce.client import ParamValue, WooClient
from agent.woocommerce.errors import WooError, WooNotFound
from agent.woocommerce.factory import polling_problem, site_client

__all__ = ["Pollers", "SitePoller"]

log = logging.getLogger("agent.poller")

PER_PAGE = 100  # WooCommerce's maximum (NOTES §2.1)
# Listed by modified date each round, catalogue first (orders then name known products).
POLLED = ("products", "coupons", "orders")


def _items(body: Any) -> list[dict[str, Any]]:
    return [i for i in body if isinstance(i, dict)] if isinstance(body, list) else []


class Pollers:
    """`async with Pollers(...)`: one `SitePoller` per enabled site."""

    def __init__(
        self,
        sites: Mapping[str, SiteConfig],
        store: SiteState,
        *,
        metrics: Metrics,
        status: RuntimeStatus,
        clock: Callable[[], float],
        stale_after: float,
    ) -> None:
        self._store, self._metrics, self._status, self._clock = store, metrics, status, clock
        self.stale_after = stale_after
        self.sites = {sid: self._poller(site) for sid, site in sites.items() if site.woo.enabled}

    def _poller(self, site: SiteConfig) -> SitePoller:
        return SitePoller(
            site,
            self._store,
            metrics=self._metrics,
            status=self._status,
            clock=self._clock,
            stale_after=self.stale_after,
        )

    async def reconfigure(self, sites: Mapping[str, SiteConfig], *, stale_after: float) -> None:
        """A config reload (agent/reload.py): stop the pollers of sites removed or switched
        off, start those of sites added or switched on, and restart the poller of a site whose
        woocommerce keys changed (its watermarks are in the store: it goes on from them)."""
        wanted = {sid: site for sid, site in sites.items() if site.woo.enabled}
        moved = stale_after != self.stale_after
        self.stale_after = stale_after
        for sid, poller in list(self.sites.items()):
            site = wanted.get(sid)
            if site is None or moved or site.woo != poller.site.woo:
                await self.sites.pop(sid).close()
        for sid, site in wanted.items():
            if sid not in self.sites:
                poller = self._poller(site)
                await poller.start()
                self.sites[sid] = poller
            else:
                self.sites[sid].site = site  # the same woocommerce keys; its brevo block is new

    async def __aenter__(self) -> Pollers:
        try:
            for poller in self.sites.values():
                await poller.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every poller; a page being stored finishes its transaction first."""
        await asyncio.gather(*(p.close() for p in self.sites.values()))


class SitePoller:
    """One site's polling rounds, driven by the pure mode machine. `tick()` is the run-once mode."""

    def __init__(
        self,
        site: SiteConfig,
        store: SiteState,
        *,
        metrics: Metrics,
        status: RuntimeStatus,
        clock: Callable[[], float],
        stale_after: float,
    ) -> None:
        self.site = site
        self.sid = site.id
        self.store = store
        self.metrics = metrics
        self.runtime = status
        self.clock = clock
        self.stale_after = stale_after
        self.overlap = site.woo.polling.overlap
        self.timing = PollTiming.of(site, stale_after)
        self.problem = polling_problem(site)
        self.client: WooClient | None = None
        # A sleep between ticks short enough to notice the stream's return within a second.
        self.tick_seconds = max(0.05, min(1.0, self.timing.interval / 4, stale_after / 4))
        record = status.site(self.sid)
        if record.polling is None:
            record.polling = PollingStatus()
        self.status: PollingStatus = record.polling
        self.state = PollerState.initial(site.woo.mode, clock())
        self._show_mode()
        self._task: asyncio.Task[None] | None = None
        self._background: dict[Job, asyncio.Task[None]] = {}

    # -- lifetime -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the REST client (when the site has keys) and start the loop."""
        if self.problem is None:
            self.client = site_client(self.site, concurrency=self.site.woo.polling.concurrency)
            await self.client.__aenter__()
        elif self.site.woo.mode == "polling":
            log.error("%s; the site is not polled", self.problem)
        stored = {job: await self.store.get_watermark(self.sid, f"{job}:due") for job in Job}
        self.state = replace(
            self.state, stored={job: text for job, text in stored.items() if text is not None}
        )
        self._task = asyncio.create_task(self._loop(), name=f"poller-{self.sid}")

    async def close(self) -> None:
        """Cancel the loop and background work, then close the client."""
        tasks = [t for t in (self._task, *self._background.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._background.clear()
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def _loop(self) -> None:
        bind(site=self.sid, door="poll")  # this task's lines, and its background jobs'
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug must not end polling for good: logged, tried again a round later.
                log.exception("poller of site %s failed", self.sid)
                await asyncio.sleep(self.timing.interval)
            await asyncio.sleep(self.tick_seconds)

    # -- the mode machine's actions ---------------------------------------------------------

    async def tick(self) -> None:
        """Decide the mode from the stream's last sign of life; poll when due."""
        self.state, actions = step(
            self.state,
            self.clock(),
            stream_last_seen=self.runtime.site(self.sid).stream.last_seen(),
            started_at=self.runtime.started_at,
            timing=self.timing,
            can_poll=self.client is not None,
            problem=self.problem,
        )
        await self._perform(actions)

    async def _perform(self, actions: Iterable[Action]) -> None:
        for action in actions:
            match action:
                case SwitchMode(mode=mode, silent_for=silent):
                    self._switched(mode, silent)
                case Poll():
                    await self._round()
                case CatchUp():
                    if await self._round():
                        self.state, then = caught_up(self.state, self.clock())
                        await self._perform(then)
                case CheckJobs():
                    self.state, jobs = due_jobs(
                        self.state, self.clock(), timing=self.timing, running=self._running()
                    )
                    await self._perform(jobs)
                case CannotPoll(problem=problem, warn=warn):
                    if warn:
                        log.warning(
                            "site %s: stream silent but it cannot be polled: %s", self.sid, problem
                        )
                    self.status.last_error = problem
                case SaveDue(job=job, due=due):
                    await self.store.set_watermark(self.sid, f"{job}:due", repr(due))
                case StartJob(job=job):
                    self._background[job] = asyncio.create_task(
                        self._background_job(job), name=f"poller-{job}-{self.sid}"
                    )
                case StopJobs():
                    await self._stop_background()

    def _show_mode(self) -> None:
        """/status and the mode gauges follow the machine's mode."""
        mode = self.state.mode
        self.runtime.site(self.sid).mode = mode.value
        for m in Mode:
            self.metrics.set("woobrevo_site_mode", float(m is mode), site=self.sid, mode=m)
        self.status.mode_since = self.state.mode_since

    def _switched(self, mode: Mode, silent: float) -> None:
        if mode is Mode.POLLING:
            log.warning(
                "site %s: no stream batch or heartbeat for %.0fs; polling the store every %gs",
                self.sid,
                silent,
                self.timing.interval,
            )
        self._show_mode()
        self.metrics.inc("woobrevo_mode_changes_total", site=self.sid, mode=mode.value)
        if mode is Mode.STREAM:
            log.info("site %s: stream is back; polling stopped after a catch-up", self.sid)

    # -- one round ------------------------------------------------------------------------

    def _enabled(self, resource: str) -> bool:
        sync = self.site.woo.sync
        return bool(getattr(sync, resource))  # polled collections are named like sync's keys

    async def _round(self) -> bool:
        """Poll every resource once; False (logged, kept in /status) when the store failed."""
        try:
            changed: dict[str, list[dict[str, Any]]] = {}
            starts: dict[str, str | None] = {}
            for resource in POLLED:
                if self._enabled(resource):
                    starts[resource], changed[resource] = await self._poll_modified(resource)
            parents = [p["id"] for p in changed.get("products", []) if p.get("type") == "variable"]
            if parents:
                await self._variations(parents, starts.get("products"))
            if self.site.woo.sync.customers:
                buyers = {
                    o.get("customer_id") for o in changed.get("orders", []) if o.get("customer_id")
                }
                await self._fetch_customers(sorted(i for i in buyers if isinstance(i, int)))
        except WooError as exc:
            self._failed(exc)
            return False
        self.state = round_succeeded(self.state)
        self.status.last_poll = self.clock()
        self.status.last_error = None
        self.status.rounds += 1
        self.metrics.inc("woobrevo_poll_rounds_total", site=self.sid)
        return True

    def _failed(self, exc: WooError) -> None:
        message = str(exc)
        self.state, warn = round_failed(self.state, message)
        self.status.last_error = message
        self.metrics.inc("woobrevo_poll_errors_total", site=self.sid)
        if warn:  # once per distinct problem, not every minute
            log.warning("site %s: polling failed: %s", self.sid, message)

    async def _ingest(self, resource: str, items: Sequence[Mapping[str, Any]]) -> None:
        if not items:
            return
        events, rejected = to_events(resource, items, door=Door.POLL)
        result = await self.store.ingest(self.sid, events, rejected)
        count_ingest(
            self.metrics,
            Door.POLL.value,
            self.sid,
            events=len(events),
            new=result.new,
            rejected=len(rejected),
        )
        self.status.events += result.new

    def _client(self) -> WooClient:
        assert self.client is not None
        return self.client

    async def _newest(self, resource: str) -> str | None:
        """The store's newest `date_modified_gmt` of a resource (one request)."""
        response = await self._client().get(
            resource,
            {
                "orderby": "modified",
                "order": "desc",
                "dates_are_gmt": True,
                "per_page": 1,
                "_fields": "id,date_modified_gmt",
            },
        )
        return advance(None, _items(response.json))

    async def _start_of(self, resource: str, singular: str) -> str | None:
        name = f"poll:{resource}"
        mark = await self.store.get_watermark(self.sid, name)
        if self.state.fresh_start:
            # After a healthy stream the poll mark is old; the newest version any door stored
            # is where the gap starts (minus one stale window: rows the plugin had captured but
            # not shipped when it went silent).
            known = await self.store.object_versions(self.sid, singular)
            newest = max((v for v, _, _ in known.values() if v), default=None)
            mark = start_mark(mark, newest, self.stale_after + self.overlap)
        if mark is None:
            # Nothing known at all: changes from now on (history is `backfill`'s job).
            mark = await self._newest(resource)
        if mark is not None:
            await self.store.set_watermark(self.sid, name, mark)
        return mark

    async def _poll_modified(self, resource: str) -> tuple[str | None, list[dict[str, Any]]]:
        """Everything of `resource` modified since its watermark; returns (window start, items)."""
        mark = await self._start_of(resource, SINGULAR[resource])
        after = window_start(mark, self.overlap) if mark else None
        first_after = after
        fields = ",".join(fields_for(resource, self.site.woo.customer_mapping))
        got: list[dict[str, Any]] = []
        edge: str | None = None
        at_edge: set[int] = set()
        while True:
            params: dict[str, ParamValue] = {
                "orderby": "modified",
                "order": "asc",
                "dates_are_gmt": True,
                "per_page": PER_PAGE,
                "page": 1,
                "_fields": fields,
            }
            if after:
                params["modified_after"] = after
            if at_edge:
                params["exclude"] = sorted(at_edge)
            response = await self._client().get(resource, params)
            items = _items(response.json)
            await self._ingest(resource, items)
            got.extend(items)
            for item in items:
                stamp = item.get("date_modified_gmt")
                if not isinstance(stamp, str):
                    continue
                if edge is None or stamp > edge:
                    edge, at_edge = stamp, {int(item["id"])}
                elif stamp == edge:
                    at_edge.add(int(item["id"]))
            new_mark = advance(mark, items)
            if new_mark is not None and new_mark != mark:
                mark = new_mark
                await self.store.set_watermark(self.sid, f"poll:{resource}", mark)
            edge_seconds = gmt_seconds(edge)
            if len(items) < PER_PAGE or edge_seconds is None:
                return first_after, got
            # Keyset, not page numbers: `after` is exclusive at one-second granularity, so
            # "after edge-1s" is "in or after the edge second", minus the ids already taken.
            after = gmt(edge_seconds - 1)

    async def _variations(self, parents: Iterable[int], after: str | None) -> None:
        """Variations of these variable products modified since `after` (all when None)."""
        fields = fields_for("variations", {})
        client = self._client()
        for parent in parents:
            params: dict[str, ParamValue] = {"orderby": "modified", "order": "asc"}
            if after:
                params.update(modified_after=after, dates_are_gmt=True)
            try:
                async for page in client.iter_pages(
                    f"products/{int(parent)}/variations", params, fields=fields, per_page=PER_PAGE
                ):
                    for item in page.items:
                        # Older wc/v3 variation bodies have no parent_id (docs example 732).
                        item.setdefault("parent_id", parent)
                    await self._ingest("variations", page.items)
                    mark = advance(
                        await self.store.get_watermark(self.sid, "poll:variations"),
                        page.items,
                    )
                    if mark:
                        await self.store.set_watermark(self.sid, "poll:variations", mark)
            except WooNotFound:
                continue  # the product went away between the listing and now

    async def _fetch_customers(self, ids: Sequence[int], *, role: str = "all") -> None:
        """Full customer objects by id, 100 a request (`include`)."""
        fields = ",".join(fields_for("customers", self.site.woo.customer_mapping))
        for chunk in chunks(ids, PER_PAGE):
            response = await self._client().get(
                "customers",
                {
                    "include": chunk,
                    "per_page": PER_PAGE,
                    "orderby": "include",
                    # A buyer may be a subscriber or a shop manager; the default role is
                    # `customer` only (NOTES §2.1, customers).
                    "role": role,
                    "_fields": fields,
                },
            )
            await self._ingest("customers", _items(response.json))

    # -- background work: customer scan, id reconciliation ----------------------------------

    def _running(self) -> set[Job]:
        return {job for job, task in self._background.items() if not task.done()}

    async def _background_job(self, job: Job) -> None:
        try:
            await (self.scan_customers() if job is Job.SCAN else self.reconcile())
        except WooError as exc:
            self._failed(exc)
            return
        self.state, save = job_done(self.state, job, self.clock(), self.timing)
        await self._perform((save,))

    async def _stop_background(self) -> None:
        tasks = list(self._background.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()

    async def scan_customers(self) -> None:
        """Every customer's `date_modified_gmt`; fetch the ones newer than what the agent holds."""
        known = await self.store.object_versions(self.sid, "customer")
        remote: dict[int, str] = {}
        async for page in self._client().iter_pages(
            "customers", {"orderby": "id", "order": "asc"}, fields=["date_modified_gmt"]
        ):
            for item in page.items:
                if isinstance(item.get("id"), int):
                    remote[item["id"]] = str(item.get("date_modified_gmt") or "")
        ids = changed_ids(remote, known)
        log.info(
            "site %s: customer scan: %d customers, %d changed", self.sid, len(remote), len(ids)
        )
        await self._fetch_customers(ids, role="customer")
        self.status.last_customer_scan = self.clock()

    async def reconcile(self) -> None:
        """Find objects deleted for good (or trashed) and sweep every variation."""
        client = self._client()
        for resource in POLLED:
            if not self._enabled(resource):
                continue
            known = await self.store.object_versions(self.sid, SINGULAR[resource])
            remote: list[int] = []
            variable: list[int] = []
            fields = ["type"] if resource == "products" else ["id"]
            async for page in client.iter_pages(
                resource, {"orderby": "id", "order": "asc"}, fields=fields
            ):
                for item in page.items:
                    if isinstance(item.get("id"), int):
                        remote.append(item["id"])
                        if item.get("type") == "variable":
                            variable.append(item["id"])
            gone = vanished_ids(remote, known)
            # Pages are offsets: a deletion during the listing shifts an object out of it.
            # Ask for the candidates by id before calling them gone.
            for chunk in chunks(gone, PER_PAGE):
                response = await client.get(
                    resource, {"include": chunk, "per_page": PER_PAGE, "_fields": "id"}
                )
                still = {i.get("id") for i in _items(response.json)}
                confirmed = [i for i in chunk if i not in still]
                if confirmed:
                    log.info(
                        "site %s: %d %s gone from the store: %s",
                        self.sid,
                        len(confirmed),
                        resource,
                        ", ".join(map(str, confirmed[:20])),
                    )
                    events = deleted_events(resource, confirmed, door=Door.POLL)
                    await self.store.ingest(self.sid, events)
                    self.status.events += len(events)
            if resource == "products" and variable:
                mark = await self.store.get_watermark(self.sid, "poll:variations")
                after = window_start(mark, self.overlap) if mark else None
                await self._variations(variable, after)
        self.status.last_reconcile = self.clock()
