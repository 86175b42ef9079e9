"""The agent's HTTP server: the webhook doors (WooCommerce's and Brevo's), and /healthz,
/readyz, /metrics, /status.

One aiohttp `AppRunner` owned by `HttpServer` (opened in `__aenter__`, closed in `__aexit__`).
Nothing here prints a secret: /status is built from runtime state and store counters only,
never from the config's secret keys; there is no access log (`access_log=None`), so the Brevo
door's `?token=` never reaches one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import HttpProcessingError
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
# Seconds aiohttp goes on reading (and dropping) the small unread body of a refused webhook so
# that its sender reads the answer, not a reset (agent/doors/webhooks.py `refuse`); aiohttp's
# default is 10 s, time a sender that never finishes would hold its connection for.
LINGER = 2.0

Series = Sequence[tuple[str, dict[str, str], float]]  # Metrics.series(), another process's

# The door behind each webhook route, named in the log lines of its requests (agent/logs.py).
_DOORS = {WEBHOOK_ROUTE: "webhook", BREVO_HOOK_ROUTE: "brevo_webhook"}


async def _expect(request: web.Request) -> None:
    """aiohttp's answer to `Expect:`, without echoing the header back: a value that is not
    UTF-8 made aiohttp's own handler fail with a 500 and a traceback (tests/fuzz)."""
    if request.version != HttpVersion11:
        return
    if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the body's answer starts afresh, as aiohttp does
        return
    raise web.HTTPExpectationFailed(text="only Expect: 100-continue is understood")


async def _unrouted(request: web.Request) -> web.StreamResponse:
    """Every path no route takes (registered last, so that `_expect` answers there too):
    405 where another method has a route, else 404, as aiohttp answers them."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource:
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
    raise web.HTTPNotFound()


class _MalformedRequests(logging.Filter):
    """aiohttp logs every malformed request (bad request line, chunk framing, data after
    `Connection: close`…) at ERROR with its traceback: anyone could fill the journal. Such a
    record becomes one WARNING line a minute, with how many there were and the last reason."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.every = every
        self.seen = 0
        self.last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        self.seen += 1
        now = time.monotonic()
        if self.last is not None and now - self.last < self.every:
            return False
        self.last = now
        reason = " ".join(str(exc.message or type(exc).__name__).split())[:200]
        record.msg = "refused %d malformed HTTP request(s) (400) in the last %gs; the last: %s"
        record.args = (self.seen, self.every, reason)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        self.seen = 0
        return True


_MALFORMED = _MalformedRequests()
logging.getLogger("aiohttp.server").addFilter(_MALFORMED)


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
        store_info: Mapping[str, str] | None = None,
        cluster: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
    ) -> None:
        self._store = store
        # Every replica sharing the store, this one included (agent/app.py `App.cluster`).
        self._cluster = cluster
        # The store's backend, its address (password masked) and this replica's name.
        self._store_info = dict(store_info or {})
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
            client_max_size=self.webhooks.bodies.max_body, middlewares=[_log_context]
        )
        routes: list[tuple[str, str, Handler]] = [
            ("POST", WEBHOOK_ROUTE, self.webhooks.handle),
            ("POST", BREVO_HOOK_ROUTE, self.brevo_hooks.handle),
            ("GET", "/healthz", self.healthz),
            ("GET", "/readyz", self.readyz),
            ("GET", "/metrics", self.metrics),
            ("GET", "/status", self.status),
            ("*", "/{unrouted:.*}", _unrouted),
        ]
        for method, path, handler in routes:
            if method == "GET":  # and HEAD, as add_get does
                web_app.router.add_get(path, handler, expect_handler=_expect)
            else:
                web_app.router.add_route(method, path, handler, expect_handler=_expect)
        # On stop, requests under way get SHUTDOWN_GRACE seconds (aiohttp's default is 60),
        # part of the stop path that TimeoutStopSec bounds (docs/operations.md, "Stopping").
        runner = web.AppRunner(
            web_app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_GRACE,
            lingering_time=LINGER,
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
        """Ready when the store is sound and Brevo is usable (or dry-run). Writes nothing:
        the store's health is a read-only probe of the file, cached a few seconds, and what
        the agent's own statements met (a damaged page, a write refused by a full disk)."""
        problem = await self._store.health()
        ready = problem is None
        checks = {"store": problem or "ok"}
        # Brevo readiness is the forwarder's, in whichever process it runs (agent/process/worker.py).
        ok, why = self._brevo_ready()
        ready = ready and ok
        checks["brevo"] = why
        body = {"ready": ready, "checks": checks, **self._about()}
        return web.json_response(body, status=200 if ready else 503)

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
        await self._cluster_metrics()
        also = self._worker_metrics() if self._worker_metrics is not None else []
        return web.Response(
            body=m.render(also).encode("utf-8"), headers={"Content-Type": METRICS_TYPE}
        )

    async def status(self, request: web.Request) -> web.Response:
        """Per site: connection, last seen, mode and backlog, as JSON."""
        return web.json_response(await self.snapshot())

    async def _replicas(self) -> list[dict[str, Any]] | None:
        if self._cluster is None:
            return None
        try:
            return await self._cluster()
        except Exception:
            log.exception("reading the replicas failed")
            return None

    async def _cluster_metrics(self) -> None:
        replicas = await self._replicas()
        if replicas is None:
            return
        m = self._metrics
        for state in ("alive", "stale"):
            n = sum(1 for r in replicas if r["state"] == state)
            m.set("woobrevo_cluster_replicas", float(n), state=state)
        for r in replicas:
            if r["claims"] is not None:
                m.set("woobrevo_replica_claims", float(r["claims"]), replica=r["name"])

    async def _cluster_view(self) -> dict[str, Any] | None:
        replicas = await self._replicas()
        if replicas is None:
            return None
        return {
            "alive": sum(1 for r in replicas if r["state"] == "alive"),
            "stale": sum(1 for r in replicas if r["state"] == "stale"),
            "replicas": replicas,
        }

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
            **self._about(),
            "cluster": await self._cluster_view(),
            "sites": sites,
        }

    def _about(self) -> dict[str, Any]:
        """`store` (backend, address with its password masked) and `replica`."""
        info = dict(self._store_info)
        if not info:
            return {}
        replica = info.pop("replica", None)
        return {"store": info, "replica": replica}
