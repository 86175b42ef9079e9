"""The agent's HTTP server: the webhook doors (WooCommerce's and Brevo's), and /healthz,
/readyz, /metrics, /status.

One aiohttp `AppRunner` owned by `HttpServer` (opened in `__aenter__`, closed in `__aexit__`).
Nothing here prints a secret: /status is built from runtime state and store counters only,
never from the config's secret keys; there is no access log (`access_log=None`), so the Brevo
door's `?token=` never reaches one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from agent.config import SiteConfig
from agent.core.brevo_hooks import BREVO_HOOK_ROUTE
from agent.core.webhooks import WEBHOOK_ROUTE
from agent.doors.brevo_hooks import BrevoHookDoor
from agent.doors.stream import split_hostport
from agent.doors.webhooks import WebhookDoor
from agent.logs import log_context
from agent.metrics import Metrics
from agent.status import RuntimeStatus
from agent.store.ports import Status

__all__ = ["HttpServer"]

log = logging.getLogger("agent.http")

# Prometheus text exposition format 0.0.4.
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SHUTDOWN_GRACE = 10.0  # seconds a request under way gets to finish when the agent stops

Series = Sequence[tuple[str, dict[str, str], float]]  # Metrics.series(), another process's

# The door behind each webhook route, named in the log lines of its requests (agent/logs.py).
_DOORS = {WEBHOOK_ROUTE: "webhook", BREVO_HOOK_ROUTE: "brevo_webhook"}


@web.middleware
async def _log_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """While a webhook is handled, every line logged names its door and site."""
    info = request.match_info
    door = _DOORS.get(info.route.resource.canonical) if info.route.resource else None
    if door is None:
        return await handler(request)
    with log_context(site=info.get("site"), door=door):
        return await handler(request)


class HttpServer:
    """`async with HttpServer(...) as h:` listens on `listen` (`agent.listen.http`); `h.port`
    is bound. `brevo_ready` is the forwarder's readiness, in whichever process it runs;
    `worker_metrics` the worker process's series, when there is one (agent/process/worker.py)."""

    def __init__(
        self,
        store: Status,
        sites: Mapping[str, SiteConfig],
        status: RuntimeStatus,
        webhooks: WebhookDoor,
        brevo_hooks: BrevoHookDoor,
        *,
        metrics: Metrics,
        clock: Callable[[], float],
        listen: str,
        stale_after: float,
        brevo_ready: Callable[[], tuple[bool, str]],
        worker_metrics: Callable[[], Series] | None = None,
    ) -> None:
        self._store = store
        self._sites = sites
        self._status = status
        self.webhooks = webhooks
        self.brevo_hooks = brevo_hooks
        self._metrics = metrics
        self._clock = clock
        self._listen = listen
        self._stale_after = stale_after
        self._brevo_ready = brevo_ready
        self._worker_metrics = worker_metrics
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> HttpServer:
        web_app = web.Application(
            client_max_size=self.webhooks.max_body, middlewares=[_log_context]
        )
        web_app.router.add_post(WEBHOOK_ROUTE, self.webhooks.handle)
        web_app.router.add_post(BREVO_HOOK_ROUTE, self.brevo_hooks.handle)
        web_app.router.add_get("/healthz", self.healthz)
        web_app.router.add_get("/readyz", self.readyz)
        web_app.router.add_get("/metrics", self.metrics)
        web_app.router.add_get("/status", self.status)
        # On stop, requests under way get SHUTDOWN_GRACE seconds (aiohttp's default is 60),
        # part of the stop path that TimeoutStopSec bounds (docs/operations.md, "Stopping").
        runner = web.AppRunner(
            web_app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE
        )
        await runner.setup()
        try:
            host, port = split_hostport(self._listen)
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("http listening on %s:%d", host or "*", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def reconfigure(self, *, stale_after: float) -> None:
        """A config reload (agent/reload.py); `sites` is the App's mapping, updated in place."""
        self._stale_after = stale_after

    async def stop_accepting(self) -> None:
        """Close the listening socket; requests under way go on (a stop's first step)."""
        if self._runner is not None:
            for site in self._runner.sites:
                await site.stop()

    async def close(self) -> None:
        """Stop listening; requests in flight finish first (aiohttp's graceful shutdown)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- endpoints ------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        """The process answers."""
        return web.json_response({"ok": True})

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready when the store takes a write and Brevo is usable (or dry-run)."""
        checks: dict[str, str] = {}
        ready = True
        try:
            await self._store.set_meta("readyz", repr(self._clock()))
            checks["store"] = "ok"
        except Exception as exc:  # the probe's whole point is to report any failure
            ready = False
            checks["store"] = f"not writable: {type(exc).__name__}: {exc}"
        # Brevo readiness is the forwarder's, in whichever process it runs (agent/process/worker.py).
        ok, why = self._brevo_ready()
        ready = ready and ok
        checks["brevo"] = why
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text format; store depths are read at scrape time."""
        try:
            per_site = await self._store.status()
        except Exception:
            log.exception("store status failed during a scrape")
            per_site = {}
        m = self._metrics
        for sid in self._sites:
            row = per_site.get(sid, {})
            m.set("woobrevo_inbox_depth", float(row.get("inbox_depth", 0)), site=sid)
            m.set("woobrevo_pending_jobs", float(row.get("pending_jobs", 0)), site=sid)
            m.set("woobrevo_dead_letters_open", float(row.get("dead_letters", 0)), site=sid)
            carts = row.get("carts") or {}
            for state in ("active", "abandoned", "recovered", "expired"):
                m.set("woobrevo_carts", float(carts.get(state) or 0), site=sid, state=state)
            revenue = float(carts.get("recovered_revenue") or 0)
            m.set("woobrevo_carts_recovered_revenue", revenue, site=sid)
            m.set("woobrevo_carts_recovery_rate", float(carts.get("recovery_rate") or 0), site=sid)
            erasures = row.get("erasures") or {}
            for state in ("done", "pending"):
                m.set("woobrevo_erasures", float(erasures.get(state) or 0), site=sid, state=state)
            for mode in ("stream", "polling"):
                m.set("woobrevo_site_mode", float(self._mode(sid) == mode), site=sid, mode=mode)
        also = self._worker_metrics() if self._worker_metrics is not None else []
        return web.Response(
            body=m.render(also).encode("utf-8"), headers={"Content-Type": METRICS_TYPE}
        )

    async def status(self, request: web.Request) -> web.Response:
        """Per site: connection, last seen, mode and backlog, as JSON."""
        return web.json_response(await self.snapshot())

    # -- helpers --------------------------------------------------------------------------

    def _mode(self, sid: str) -> str:
        # The poller writes the effective mode; until it does, the configured one stands.
        return self._status.site(sid).mode or self._sites[sid].woo.mode

    async def snapshot(self) -> dict[str, Any]:
        """The /status document."""
        now = self._clock()
        per_site = await self._store.status()
        sites: dict[str, Any] = {}
        for sid, site in self._sites.items():
            record = self._status.site(sid)
            link = record.stream
            row = dict(per_site.get(sid, {}))
            seen = link.last_seen()
            backlog = {k: row.pop(k, 0) for k in ("inbox_depth", "pending_jobs", "dead_letters")}
            carts = row.pop("carts", None)
            erasures = row.pop("erasures", None)
            sites[sid] = {
                "enabled": site.woo.enabled,
                "mode": self._mode(sid),
                "connected": seen is not None and now - seen <= self._stale_after,
                "connections": link.connections,
                "last_seen": seen,
                "last_seen_age": None if seen is None else round(now - seen, 3),
                "last_hello": link.last_hello,
                "last_events": link.last_events,
                "site_url": link.site_url,
                "blog_id": link.blog_id,
                "plugin_version": link.plugin_version,
                "wp_version": link.wp_version,
                "wc_version": link.wc_version,
                "batches_in_flight_max": link.batches_in_flight_max,
                "last_webhook": record.webhook.last_delivery,
                "last_brevo_webhook": record.brevo_hook.last_delivery,
                "last_brevo_event": record.brevo_hook.last_event,
                "polling": None if record.polling is None else record.polling.as_dict(),
                "backlog": backlog,
                "last_success": row.pop("last_success", None),
                "carts": carts,
                "erasures": erasures,
                "counters": row,
            }
        config = self._status.config
        return {
            "server_time": now,
            "uptime": round(now - self._status.started_at, 3),
            # path, loaded_at, sha256 of the file's bytes, last_reload: never a value from it
            "config": None if config is None else config.as_dict(),
            "sites": sites,
        }
