"""The polling door: the store's REST API when a site's stream is silent, and always for a site
without the plugin (`mode: polling`). DESIGN.md, data path step 8; docs/backfill.md, "Polling".

A thin shell: agent/core/sync.py decides the mode, the windows, what changed and what vanished;
this module sends the requests, stores what they return through the one entry point of every
door (`store.ingest`), and keeps time.

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
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agent.config import SiteConfig
from agent.core.events import Door
from agent.core.sync import (
    Mode,
    Step,
    advance,
    changed_ids,
    chunks,
    deleted_events,
    fields_for,
    next_mode,
    start_mark,
    stream_fresh,
    to_events,
    vanished_ids,
    window_start,
)
from agent.core.times import gmt, gmt_seconds
from agent.core.woo import SINGULAR
from agent.woocommerce.client import ParamValue, WooClient, WooError, WooNotFound

if TYPE_CHECKING:
    from agent.app import App

__all__ = ["Pollers", "SitePoller", "polling_problem", "site_client"]

log = logging.getLogger("agent.poller")

PER_PAGE = 100  # WooCommerce's maximum (NOTES §2.1)
# Listed by modified date each round, catalogue first (orders then name known products).
POLLED = ("products", "coupons", "orders")


def polling_problem(site: SiteConfig) -> str | None:
    """Why this site cannot be polled (None when it can)."""
    woo = site.woo
    if not woo.store_url:
        return f"site {site.id}: polling needs store_url"
    if not (woo.consumer_key and woo.consumer_secret):
        return (
            f"site {site.id}: polling needs consumer_key and consumer_secret (a Read key from "
            "WooCommerce → Settings → Advanced → REST API)"
        )
    return None


def site_client(site: SiteConfig, *, concurrency: int = 4, **options: Any) -> WooClient:
    """The site's REST client: its URL, keys, auth mode, TLS settings, timeout and budget.

    `options` override WooClient's keyword arguments (the doctor wants no budget, one retry).
    """
    woo = site.woo
    problem = polling_problem(site)
    if problem is not None:
        raise ValueError(problem)
    assert woo.store_url and woo.consumer_key and woo.consumer_secret
    settings: dict[str, Any] = {
        "api_version": woo.api_version,
        "auth": woo.auth,
        "verify_ssl": woo.verify_ssl,
        "ca_file": str(woo.ca_file) if woo.ca_file else None,
        "rate_limit_per_minute": woo.rate_limit_per_minute,
        "concurrency": concurrency,
        "timeout": woo.timeout,
        **options,
    }
    return WooClient(woo.store_url, woo.consumer_key, woo.consumer_secret, **settings)


def _items(body: Any) -> list[dict[str, Any]]:
    return [i for i in body if isinstance(i, dict)] if isinstance(body, list) else []


class Pollers:
    """`async with Pollers(app)`: one `SitePoller` per enabled site."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.sites = {
            sid: SitePoller(app, site) for sid, site in app.sites.items() if site.woo.enabled
        }

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
    """One site's mode machine and polling rounds. `tick()` is the run-once mode."""

    def __init__(self, app: App, site: SiteConfig) -> None:
        self.app = app
        self.site = site
        self.sid = site.id
        self.timing = site.woo.polling
        self.stale_after = app.cfg.agent.stream.stale_after
        self.problem = polling_problem(site)
        self.client: WooClient | None = None
        self.mode = Mode.POLLING if site.woo.mode == "polling" else Mode.STREAM
        # A sleep between ticks short enough to notice the stream's return within a second.
        self.tick_seconds = max(0.05, min(1.0, self.timing.interval / 4, self.stale_after / 4))
        self.status: dict[str, Any] = app.state.setdefault("polling", {}).setdefault(
            self.sid,
            {
                "mode_since": None,
                "last_poll": None,
                "last_error": None,
                "rounds": 0,
                "events": 0,
                "last_customer_scan": None,
                "last_reconcile": None,
            },
        )
        self._set_mode(self.mode, initial=True)
        self._next_poll = 0.0
        self._failing = False
        self._fresh_start = True  # next round resumes from what any door stored, not only polls
        self._warned: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._background: dict[str, asyncio.Task[None]] = {}
        self._due: dict[str, float] = {}
        self._period_start: float | None = None

    # -- lifetime -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the REST client (when the site has keys) and start the loop."""
        if self.problem is None:
            self.client = site_client(self.site, concurrency=self.timing.concurrency)
            await self.client.__aenter__()
        elif self.site.woo.mode == "polling":
            log.error("%s; the site is not polled", self.problem)
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

    # -- the mode machine -----------------------------------------------------------------

    def _last_seen(self) -> float | None:
        stream = getattr(self.app, "stream", None)
        return None if stream is None else stream.last_seen(self.sid)

    def _set_mode(self, mode: Mode, *, initial: bool = False) -> None:
        changed = mode is not self.mode or initial
        self.mode = mode
        self.app.state.setdefault("mode", {})[self.sid] = mode.value
        for m in Mode:
            self.app.metrics.set("woobrevo_site_mode", float(m is mode), site=self.sid, mode=m)
        if changed:
            self.status["mode_since"] = self.app.clock()
        if changed and not initial:
            self.app.metrics.inc("woobrevo_mode_changes_total", site=self.sid, mode=mode.value)

    async def tick(self) -> Step:
        """Decide the mode from the stream's last sign of life; poll when due."""
        now = self.app.clock()
        fresh = stream_fresh(self._last_seen(), self.app.started_at, now, self.stale_after)
        mode, step = next_mode(self.site.woo.mode, self.mode, fresh)
        if step is Step.IDLE:
            return step
        if self.client is None:
            if self._warned != self.problem:
                self._warned = self.problem
                log.warning(
                    "site %s: stream silent but it cannot be polled: %s", self.sid, self.problem
                )
            self.status["last_error"] = self.problem
            return Step.IDLE
        if mode is Mode.POLLING and self.mode is Mode.STREAM:
            seen = self._last_seen()
            silent = now - (seen if seen is not None else self.app.started_at)
            log.warning(
                "site %s: no stream batch or heartbeat for %.0fs; polling the store every %gs",
                self.sid,
                silent,
                self.timing.interval,
            )
            self._set_mode(Mode.POLLING)
            self._fresh_start = True
            self._next_poll = now
            # A stream outage shorter than a scan or reconciliation period triggers neither:
            # the plugin's outbox still holds what happened and ships it when it is back.
            self._period_start = now
            self._due.clear()
        if step is Step.POLL:
            if now >= self._next_poll:
                await self._round()
                self._next_poll = now + self.timing.interval
            await self._start_due_background(self.app.clock())
            return step
        # The stream is back: one last round covers changes made since the previous one.
        if self._failing and now < self._next_poll:
            return step
        if await self._round():
            await self._stop_background()
            self._set_mode(Mode.STREAM)
            log.info("site %s: stream is back; polling stopped after a catch-up", self.sid)
        else:
            self._next_poll = now + self.timing.interval
        return step

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
        self._fresh_start = False
        self._failing = False
        self._warned = None
        self.status.update(last_poll=self.app.clock(), last_error=None)
        self.status["rounds"] += 1
        self.app.metrics.inc("woobrevo_poll_rounds_total", site=self.sid)
        return True

    def _failed(self, exc: WooError) -> None:
        self._failing = True
        message = str(exc)
        self.status["last_error"] = message
        self.app.metrics.inc("woobrevo_poll_errors_total", site=self.sid)
        if self._warned != message:  # once per distinct problem, not every minute
            self._warned = message
            log.warning("site %s: polling failed: %s", self.sid, message)

    async def _ingest(self, resource: str, items: Sequence[Mapping[str, Any]]) -> None:
        if not items:
            return
        events, rejected = to_events(resource, items, door=Door.POLL)
        result = await self.app.store.ingest(self.sid, events, rejected)
        metrics = self.app.metrics
        metrics.inc("woobrevo_events_in_total", len(events), door="poll", site=self.sid)
        if len(events) > result.new:
            metrics.inc(
                "woobrevo_events_replayed_total",
                len(events) - result.new,
                door="poll",
                site=self.sid,
            )
        if rejected:
            metrics.inc("woobrevo_rejected_total", len(rejected), door="poll", site=self.sid)
        self.status["events"] += result.new

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
        mark = await self.app.store.get_watermark(self.sid, name)
        if self._fresh_start:
            # After a healthy stream the poll mark is old; the newest version any door stored
            # is where the gap starts (minus one stale window: rows the plugin had captured but
            # not shipped when it went silent).
            known = await self.app.store.object_versions(self.sid, singular)
            newest = max((v for v, _, _ in known.values() if v), default=None)
            mark = start_mark(mark, newest, self.stale_after + self.timing.overlap)
        if mark is None:
            # Nothing known at all: changes from now on (history is `backfill`'s job).
            mark = await self._newest(resource)
        if mark is not None:
            await self.app.store.set_watermark(self.sid, name, mark)
        return mark

    async def _poll_modified(self, resource: str) -> tuple[str | None, list[dict[str, Any]]]:
        """Everything of `resource` modified since its watermark; returns (window start, items)."""
        mark = await self._start_of(resource, SINGULAR[resource])
        after = window_start(mark, self.timing.overlap) if mark else None
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
                await self.app.store.set_watermark(self.sid, f"poll:{resource}", mark)
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
                        await self.app.store.get_watermark(self.sid, "poll:variations"),
                        page.items,
                    )
                    if mark:
                        await self.app.store.set_watermark(self.sid, "poll:variations", mark)
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

    async def _start_due_background(self, now: float) -> None:
        jobs: tuple[tuple[str, float, Callable[[], Awaitable[None]]], ...] = (
            ("scan", self.timing.customer_scan_every, self.scan_customers),
            ("reconcile", self.timing.reconcile_every, self.reconcile),
        )
        for name, every, run in jobs:
            if name == "scan" and not self.site.woo.sync.customers:
                continue
            task = self._background.get(name)
            if task is not None and not task.done():
                continue
            due = self._due.get(name)
            if due is None:
                stored = await self.app.store.get_watermark(self.sid, f"{name}:due")
                # First time: one period after polling began, so a short outage does not
                # trigger a full scan.
                due = float(stored) if stored else now + every
                if self._period_start is not None:
                    due = max(due, self._period_start + every)
                if not stored:
                    await self.app.store.set_watermark(self.sid, f"{name}:due", repr(due))
                self._due[name] = due
            if now >= due:
                self._background[name] = asyncio.create_task(
                    self._background_job(name, every, run), name=f"poller-{name}-{self.sid}"
                )

    async def _background_job(
        self, name: str, every: float, run: Callable[[], Awaitable[None]]
    ) -> None:
        try:
            await run()
        except WooError as exc:
            self._failed(exc)
            return
        due = self.app.clock() + every
        self._due[name] = due
        await self.app.store.set_watermark(self.sid, f"{name}:due", repr(due))

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
        known = await self.app.store.object_versions(self.sid, "customer")
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
        self.status["last_customer_scan"] = self.app.clock()

    async def reconcile(self) -> None:
        """Find objects deleted for good (or trashed) and sweep every variation."""
        client = self._client()
        for resource in POLLED:
            if not self._enabled(resource):
                continue
            known = await self.app.store.object_versions(self.sid, SINGULAR[resource])
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
                    await self.app.store.ingest(self.sid, events)
                    self.status["events"] += len(events)
            if resource == "products" and variable:
                mark = await self.app.store.get_watermark(self.sid, "poll:variations")
                after = window_start(mark, self.timing.overlap) if mark else None
                await self._variations(variable, after)
        self.status["last_reconcile"] = self.app.clock()
