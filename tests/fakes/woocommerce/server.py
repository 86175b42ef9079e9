"""`WooFake`: the fake store as an HTTP(S) server on 127.0.0.1, and the WordPress request
pipeline it runs (host faults, REST route, authentication, key permissions, parameters,
permission, handler, ``_fields``)."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import math
import random
import shutil
import ssl
import tempfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import unquote, unquote_plus

from aiohttp import web

from tests.fakes.woocommerce.auth import Authentication
from tests.fakes.woocommerce.objects import NAMESPACE
from tests.fakes.woocommerce.records import ApiKey, FakeClock, RequestRecord
from tests.fakes.woocommerce.routes import CRITICAL_ERROR, DEFAULTS, HTML_404, HTML_ERRORS, Route
from tests.fakes.woocommerce.store import FakeStore
from tests.fakes.woocommerce.webhooks import WebhookEndpoints
from tests.fakes.woocommerce.wordpress import (
    Auth,
    WpError,
    WpRequest,
    filter_fields,
    parse_php_query,
    php_json,
    validate,
)


@dataclass
class _Fault:
    status: int
    retry_after: float | None
    body: str | None


class WooFake(Authentication, WebhookEndpoints):
    """The fake store as an HTTP(S) server; ``async with WooFake(...) as fake`` → `fake.url`."""

    def __init__(
        self,
        *,
        customers: int = 10,
        orders: int = 20,
        products: int = 8,
        coupons: int = 3,
        seed: int = 1,
        scheme: Literal["http", "https"] = "http",
        tls: bool | None = None,
        cert_names: Sequence[str] = ("127.0.0.1", "localhost"),
        host: str = "127.0.0.1",
        port: int = 0,
        home_path: str = "",
        clock: FakeClock | None = None,
        keys: Sequence[ApiKey] | None = None,
        delay: float = 0.0,
        max_per_minute: int | None = None,
        rest_enabled: bool = True,
        pretty_permalinks: bool = True,
        deliver_pings: bool = False,
        variable_every: int = 4,
        strip_headers: Sequence[str] = (),
        strip_authorization: bool = False,
        wp_cron: bool = True,
    ) -> None:
        self.clock = clock or FakeClock()
        self.store = FakeStore(self.clock, seed)
        self.store.populate(
            customers=customers,
            products=products,
            coupons=coupons,
            orders=orders,
            variable_every=variable_every,
        )
        key_rng = random.Random(f"keys-{seed}")
        self.keys: list[ApiKey] = (
            list(keys)
            if keys is not None
            else [
                ApiKey(
                    f"ck_{key_rng.getrandbits(160):040x}",
                    f"cs_{key_rng.getrandbits(160):040x}",
                )
            ]
        )
        self.scheme = scheme
        self.is_ssl = scheme == "https"  # what WordPress' is_ssl() says
        self.tls = (
            (scheme == "https" and shutil.which("openssl") is not None) if tls is None else tls
        )
        self.cert_names = tuple(cert_names)
        self.host = host
        self.port = port
        self.home_path = "/" + home_path.strip("/") if home_path.strip("/") else ""
        self.delay = delay
        self.max_per_minute = max_per_minute
        self.rest_enabled = rest_enabled
        self.pretty_permalinks = pretty_permalinks
        self.deliver_pings = deliver_pings
        # A cache or proxy in front of the store that drops headers (e.g. X-WP-TotalPages).
        self.strip_headers = tuple(strip_headers)
        # Apache running PHP as CGI/FastCGI without `CGIPassAuth On` (some shared hosts): the
        # Authorization header never reaches PHP, so Basic auth is never seen; the query is.
        self.strip_authorization = strip_authorization
        # `! DISABLE_WP_CRON` (system_status environment.wp_cron): Action Scheduler, and so
        # webhook delivery, runs only from WP-Cron (reference/woocommerce/NOTES.md §1.2).
        self.wp_cron = wp_cron
        self.requests: list[RequestRecord] = []
        self.pings: list[tuple[str, int | str]] = []
        self.ca_file: str | None = None
        self._faults: deque[_Fault] = deque()
        self._window: deque[float] = deque()
        self._runner: web.AppRunner | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen (port 0 picks a free port) and read the port back."""
        ssl_context: ssl.SSLContext | None = None
        if self.tls:
            ssl_context = await self._make_tls()
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=ssl_context)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        """Stop listening and remove the temporary certificate."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def _make_tls(self) -> ssl.SSLContext:
        """A self-signed certificate for `cert_names`, made by the openssl CLI."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("tls=True needs the openssl command")
        self._tmp = tempfile.TemporaryDirectory(prefix="woofake-")
        cert, key = Path(self._tmp.name, "cert.pem"), Path(self._tmp.name, "key.pem")
        san = ",".join(f"IP:{n}" if _is_ip(n) else f"DNS:{n}" for n in self.cert_names)
        proc = await asyncio.create_subprocess_exec(
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", f"/CN={self.cert_names[0]}", "-addext", f"subjectAltName={san}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"openssl failed: {err.decode(errors='replace')}")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.ca_file = str(cert)
        return context

    # -- what tests read ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The store URL (WordPress' home URL): what the agent's store_url must be."""
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}{self.home_path}"

    @property
    def consumer_key(self) -> str:
        """The first key's consumer key."""
        return self.keys[0].consumer_key

    @property
    def consumer_secret(self) -> str:
        """The first key's consumer secret."""
        return self.keys[0].consumer_secret

    @property
    def bytes_sent(self) -> int:
        """Response body bytes sent so far."""
        return sum(r.bytes_sent for r in self.requests)

    def add_key(
        self,
        permissions: Literal["read", "write", "read_write"] = "read_write",
        capable: bool = True,
    ) -> ApiKey:
        """Another API key (e.g. a read-only one, or one whose user is not a shop manager)."""
        n = len(self.keys)
        key = ApiKey(
            f"ck_{n:04d}" + hashlib.sha1(f"k{n}".encode()).hexdigest()[4:],
            f"cs_{n:04d}" + hashlib.sha1(f"s{n}".encode()).hexdigest()[4:],
            permissions,
            capable,
        )
        self.keys.append(key)
        return key

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` before WordPress runs."""
        for _ in range(count):
            self._faults.append(_Fault(status, retry_after, body))

    def reset_counters(self) -> None:
        """Forget recorded requests."""
        self.requests.clear()

    def ids(self, resource: str) -> list[int]:
        """Ids of stored objects, ascending (trashed ones included)."""
        return sorted(self.store.records[resource])

    def object(self, resource: str, object_id: int) -> dict[str, Any]:
        """The object exactly as ``GET …/{resource}/{id}`` would return it."""
        record = self.store.records[resource][object_id]
        rendered: dict[str, Any] = json.loads(self._render(self._with_links(resource, record)))
        return rendered

    # Mutators (the store does the work; these keep tests short).

    def add_customer(self, **fields: Any) -> dict[str, Any]:
        """Create a customer now."""
        return self.store.add_customer(**fields)

    def add_order(self, **fields: Any) -> dict[str, Any]:
        """Create an order now."""
        return self.store.add_order(**fields)

    def add_product(
        self, kind: Literal["simple", "variable"] = "simple", **fields: Any
    ) -> dict[str, Any]:
        """Create a product now."""
        return self.store.add_product(kind, **fields)

    def add_coupon(self, **fields: Any) -> dict[str, Any]:
        """Create a coupon now."""
        return self.store.add_coupon(**fields)

    def update(self, resource: str, object_id: int, **changes: Any) -> dict[str, Any]:
        """Change an object and bump its ``date_modified_gmt`` to the clock."""
        return self.store.update(resource, object_id, **changes)

    def update_order(self, object_id: int, **changes: Any) -> dict[str, Any]:
        """Change an order (``status=`` also sets the paid/completed dates)."""
        return self.store.update("orders", object_id, **changes)

    def update_customer(self, object_id: int, **changes: Any) -> dict[str, Any]:
        """Change a customer."""
        return self.store.update("customers", object_id, **changes)

    def delete(self, resource: str, object_id: int) -> None:
        """Delete permanently (no webhook fires for this in WooCommerce)."""
        self.store.delete(resource, object_id)

    def trash(self, resource: str, object_id: int) -> dict[str, Any]:
        """Move to the trash."""
        return self.store.trash(resource, object_id)

    # -- the request pipeline -------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        record = RequestRecord(loop.time(), request.method, request.path, request.query_string)
        record.authorization = request.headers.get("Authorization", "").partition(" ")[0]
        self.requests.append(record)
        response = await self._respond(request, record)
        for name in self.strip_headers:
            response.headers.popall(name, None)
        record.status = response.status
        record.bytes_sent = len(response.body) if isinstance(response.body, bytes) else 0
        return response

    async def _respond(self, request: web.Request, record: RequestRecord) -> web.Response:
        # What a shared host does before PHP runs: its request budget, then scripted failures.
        if self.max_per_minute:
            now = record.at
            while self._window and self._window[0] <= now - 60:
                self._window.popleft()
            if len(self._window) >= self.max_per_minute:
                wait = max(1, math.ceil(self._window[0] + 60 - now))
                return self._html(429, HTML_ERRORS[429], {"Retry-After": str(wait)})
            self._window.append(now)
        if self._faults:
            fault = self._faults.popleft()
            extra = (
                {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            )
            if fault.body is not None:
                return self._html(fault.status, fault.body, extra)
            if fault.status == 500:
                return self._json(500, php_json(CRITICAL_ERROR), extra)
            page = HTML_ERRORS.get(fault.status, f"<html><body>{fault.status}</body></html>\n")
            return self._html(fault.status, page, extra)
        if self.delay:
            await asyncio.sleep(self.delay)
        body = await request.read()
        req = WpRequest(
            method=request.method.upper(),
            raw_uri=request.raw_path,
            raw_path=request.raw_path.partition("?")[0],
            get=parse_php_query(request.query_string),
            post={},
            json=None,
            headers=(
                {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
                if self.strip_authorization
                else request.headers
            ),
            query_pairs=[
                (unquote_plus(k), unquote_plus(v))
                for k, _, v in (p.partition("=") for p in request.query_string.split("&") if p)
            ],
        )
        content_type = request.headers.get("Content-Type", "")
        if body and content_type.startswith("application/x-www-form-urlencoded"):
            req.post = parse_php_query(body.decode("utf-8", "replace"))
        elif body and "json" in content_type:
            try:
                req.json = json.loads(body)
            except ValueError:
                return self._error(
                    WpError("rest_invalid_json", "Invalid JSON body passed.", 400, details={}),
                    Auth(),
                )
        return await self._wordpress(req, record)

    def _route_of(self, req: WpRequest) -> str | None:
        """The REST route WordPress serves for this URL, or None for a normal (404) page."""
        path = unquote(req.raw_path)
        if self.home_path and not (path == self.home_path or path.startswith(self.home_path + "/")):
            return None
        rel = path[len(self.home_path) :]
        rest_route = req.get.get("rest_route")
        if isinstance(rest_route, str):
            return "/" + rest_route.strip("/")
        if self.pretty_permalinks and (rel == "/wp-json" or rel.startswith("/wp-json/")):
            return "/" + rel[len("/wp-json") :].strip("/")
        return None

    async def _wordpress(self, req: WpRequest, record: RequestRecord) -> web.Response:
        route_path = self._route_of(req)
        if route_path is None:
            return self._html(404, HTML_404)
        auth = self._authenticate(req)
        record.auth = auth.method
        if auth.error is not None:
            return self._error(auth.error, auth)
        route: Route | None = None
        try:
            # rest_pre_dispatch: WC_REST_Authentication::check_user_permissions().
            if auth.user is not None:
                self._check_key_permissions(auth.user, req.method)
            if route_path == "/":
                return self._json(
                    200, php_json({"name": "Fake Store", "namespaces": [NAMESPACE]}), {}
                )
            route, match, handler_name, perm = self._match(route_path, req.method)
            params: dict[str, Any] = {k: v for k, v in req.get.items() if k != "rest_route"}
            if isinstance(req.json, dict):
                params.update(req.json)
            params.update(req.post)
            clean = {**DEFAULTS.get(route.defaults, {}), **validate(route.params, params)}
            resource = self._resource(route_path)
            self._check_permission(route, resource, match, perm, auth)
            status, data, headers = await self._dispatch(
                resource, handler_name, req, match, clean, params
            )
        except WpError as error:
            allow = {"Allow": route.allow} if route is not None and error.status == 404 else {}
            return self._error(error, auth, allow)
        if "_fields" in req.get:  # rest_post_dispatch, errors excepted (they were raised)
            data = filter_fields(data, req.get["_fields"])
        headers = {**headers, "Allow": route.allow}
        return self._json(status, self._render(data), headers, logged_in=auth.user is not None)

    async def _dispatch(
        self,
        resource: str,
        handler: str,
        req: WpRequest,
        match: dict[str, str],
        clean: dict[str, Any],
        params: dict[str, Any],
    ) -> tuple[int, Any, dict[str, str]]:
        if resource == "system_status":
            return 200, self._system_status(), {}
        if resource == "webhooks":
            return await self._webhooks(handler, match, clean, params, req)
        if handler == "list":
            return self._list(resource, req, match, clean)
        if handler == "create":
            raise WpError("fake_not_implemented", f"The fake does not create {resource}.", 501)
        record = self._record(resource, match)
        if handler == "edit":
            changes = {k: v for k, v in params.items() if k not in ("id", "_fields", "context")}
            self.store.update(resource, int(match["id"]), **changes)
        return 200, self._with_links(resource, record), {}


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
