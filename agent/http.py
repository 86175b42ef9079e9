"""The agent's HTTP server: the webhook door, and /healthz, /readyz, /metrics, /status.

One aiohttp `AppRunner` owned by `HttpServer` (opened in `__aenter__`, closed in `__aexit__`).
Nothing here prints a secret: /status is built from runtime state and store counters only,
never from the config's secret keys.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent.core.webhooks import WEBHOOK_ROUTE
from agent.doors.stream import split_hostport
from agent.doors.webhooks import WebhookDoor

if TYPE_CHECKING:
    from agent.app import App

__all__ = ["HttpServer"]

log = logging.getLogger("agent.http")

# Prometheus text exposition format 0.0.4.
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HttpServer:
    """`async with HttpServer(app) as h:` listens on `agent.listen.http`; `h.port` is bound."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.port = 0
        self.webhooks = WebhookDoor(app)
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> HttpServer:
        web_app = web.Application(client_max_size=self.webhooks.max_body)
        web_app.router.add_post(WEBHOOK_ROUTE, self.webhooks.handle)
        web_app.router.add_get("/healthz", self.healthz)
        web_app.router.add_get("/readyz", self.readyz)
        web_app.router.add_get("/metrics", self.metrics)
        web_app.router.add_get("/status", self.status)
        runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            host, port = split_hostport(self.app.cfg.agent.listen.http)
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
            await self.app.store.set_meta("readyz", repr(self.app.clock()))
            checks["store"] = "ok"
        except Exception as exc:  # the probe's whole point is to report any failure
            ready = False
            checks["store"] = f"not writable: {type(exc).__name__}: {exc}"
        # Brevo readiness is the forwarder's, in whichever process it runs (agent/process/worker.py).
        worker = self.app.worker
        ok, why = worker.ready() if worker is not None else self.app.forwarder.ready()
        ready = ready and ok
        checks["brevo"] = why
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text format; store depths are read at scrape time."""
        try:
            per_site = await self.app.store.status()
        except Exception:
            log.exception("store status failed during a scrape")
            per_site = {}
        m = self.app.metrics
        for sid in self.app.sites:
            row = per_site.get(sid, {})
            m.set("woobrevo_inbox_depth", float(row.get("inbox_depth", 0)), site=sid)
            m.set("woobrevo_pending_jobs", float(row.get("pending_jobs", 0)), site=sid)
            m.set("woobrevo_dead_letters_open", float(row.get("dead_letters", 0)), site=sid)
            for mode in ("stream", "polling"):
                m.set("woobrevo_site_mode", float(self._mode(sid) == mode), site=sid, mode=mode)
        also = self.app.worker.metrics() if self.app.worker is not None else []
        return web.Response(
            body=m.render(also).encode("utf-8"), headers={"Content-Type": METRICS_TYPE}
        )

    async def status(self, request: web.Request) -> web.Response:
        """Per site: connection, last seen, mode and backlog, as JSON."""
        return web.json_response(await self.snapshot())

    # -- helpers --------------------------------------------------------------------------

    def _mode(self, sid: str) -> str:
        # The poller (issue 4) writes the effective mode in app.state["mode"]; until it does,
        # the configured one stands.
        modes: dict[str, str] = self.app.state.get("mode", {})
        return modes.get(sid) or self.app.sites[sid].woo.mode

    async def snapshot(self) -> dict[str, Any]:
        """The /status document."""
        app = self.app
        now = app.clock()
        per_site = await app.store.status()
        links: dict[str, dict[str, Any]] = app.state.get("stream", {})
        hooks: dict[str, dict[str, Any]] = app.state.get("webhooks", {})
        polling: dict[str, dict[str, Any]] = app.state.get("polling", {})
        stream = getattr(app, "stream", None)
        stale_after = app.cfg.agent.stream.stale_after
        sites: dict[str, Any] = {}
        for sid in app.sites:
            link = links.get(sid, {})
            row = dict(per_site.get(sid, {}))
            seen = stream.last_seen(sid) if stream is not None else None
            backlog = {k: row.pop(k, 0) for k in ("inbox_depth", "pending_jobs", "dead_letters")}
            sites[sid] = {
                "enabled": app.sites[sid].woo.enabled,
                "mode": self._mode(sid),
                "connected": seen is not None and now - seen <= stale_after,
                "connections": link.get("connections", 0),
                "last_seen": seen,
                "last_seen_age": None if seen is None else round(now - seen, 3),
                "last_hello": link.get("last_hello"),
                "last_events": link.get("last_events"),
                "site_url": link.get("site_url"),
                "blog_id": link.get("blog_id"),
                "plugin_version": link.get("plugin_version"),
                "wp_version": link.get("wp_version"),
                "wc_version": link.get("wc_version"),
                "batches_in_flight_max": link.get("batches_in_flight_max", 0),
                "last_webhook": hooks.get(sid, {}).get("last_delivery"),
                "polling": polling.get(sid),
                "backlog": backlog,
                "last_success": row.pop("last_success", None),
                "counters": row,
            }
        started = getattr(app, "started_at", None)
        return {
            "server_time": now,
            "uptime": None if started is None else round(now - started, 3),
            "sites": sites,
        }
