"""The agent's WooCommerce REST client: a thin aiohttp shell around pure policies.

The pure parts take data and return data: the OAuth 1.0a signer (oauth.py), the rate budget
(budget.py), the error classifier (errors.py) and the backoff (agent/core/retry.py). `WooClient`
only sends bytes, sleeps where they say, and raises what `classify_response` decides.
Authentication follows `WC_REST_Authentication` (WooCommerce 10.0.2,
includes/class-wc-rest-authentication.php; reference/woocommerce/NOTES.md §3).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from yarl import URL

from agent import __version__
from agent.core.retry import backoff
from agent.core.storable import loads
from agent.core.woo import AuthMode, auth_problem
from agent.woocommerce.budget import RateBudget
from agent.woocommerce.errors import (
    Call,
    WooRetryable,
    WooSSLError,
    WooStoreError,
    WooTimeout,
    classify_response,
)
from agent.woocommerce.oauth import new_nonce, oauth1_sign, rfc3986

__all__ = ["Page", "ParamValue", "Params", "Response", "WooClient"]

log = logging.getLogger("agent.woocommerce")

ParamValue = str | int | float | bool | Sequence[str | int]
Params = Mapping[str, ParamValue]

USER_AGENT: Final = f"WooBrevo-Agent/{__version__} (aiohttp)"
_METHODS_WITHOUT_SIDE_EFFECTS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class Response:
    """A 2xx answer: status, decoded JSON body and headers."""

    status: int
    json: Any
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a collection, with WooCommerce's X-WP-Total / X-WP-TotalPages.

    `total` is -1 when a proxy stripped X-WP-Total; `total_pages` is then inferred.
    """

    items: list[dict[str, Any]]
    page: int
    total: int
    total_pages: int


def _param_str(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    # WordPress parses comma lists for array parameters (wp_parse_list / wp_parse_id_list).
    return ",".join(str(v) for v in value)


def _fields_param(fields: Sequence[str]) -> str:
    # rest_filter_response_fields() (WordPress) keeps only what is asked: id too must be asked.
    wanted = ["id", *(f for f in fields if f != "id")]
    return ",".join(wanted)


def _query(pairs: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{rfc3986(k)}={rfc3986(v)}" for k, v in pairs)


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, ValueError):
        return None


def _ssl_error(call: Call, exc: aiohttp.ClientSSLError) -> WooSSLError:
    host = urlsplit(call.store_url).netloc
    hostname = urlsplit(call.store_url).hostname or host
    testing_only = (
        "`verify_ssl: false` turns the check off and is for testing only: anyone in the middle "
        "could then read the API keys."
    )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        reason = getattr(cert_error, "verify_message", None) or str(cert_error)
        if "hostname mismatch" in reason.lower() or "not valid for" in reason.lower():
            fix = (
                f"the certificate does not cover {hostname!r} (hostname mismatch): set `store_url` to "
                "a host name the certificate is issued for, or reissue the certificate."
            )
        else:
            fix = (
                "give the store a certificate from a public CA (e.g. Let's Encrypt), or point "
                "`ca_file` at the CA that signed it."
            )
        return WooSSLError(
            f"{call.endpoint}: TLS certificate check failed for {host} "
            f"(certificate verify failed: {reason}). Fix: {fix} {testing_only}",
            endpoint=call.endpoint,
        )
    return WooSSLError(
        f"{call.endpoint}: TLS handshake with {host} failed ({exc}). Is the store really "
        "serving HTTPS on this port? Check the scheme and port in `store_url`.",
        endpoint=call.endpoint,
    )


class WooClient:
    """WooCommerce REST client for one store: auth, budget, retries, actionable errors.

    Use ``async with WooClient(...) as wc:``; it owns its ClientSession unless one is passed.
    `auth` (the config's ``auth`` key): ``basic`` sends an ``Authorization: Basic`` header only,
    ``query`` sends ``consumer_key``/``consumer_secret`` in the query string only, ``oauth1``
    signs every request (OAuth 1.0a, parameters in the query string, the secret never sent),
    and ``auto`` picks ``basic`` for https:// and ``oauth1`` for http:// stores.
    """

    def __init__(
        self,
        store_url: str,
        consumer_key: str,
        consumer_secret: str,
        *,
        api_version: str = "wc/v3",
        verify_ssl: bool = True,
        ca_file: str | None = None,
        auth: AuthMode = "auto",
        rate_limit_per_minute: float | None = 60,
        concurrency: int = 4,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        user_agent: str = USER_AGENT,
        oauth_algorithm: Literal["HMAC-SHA1", "HMAC-SHA256"] = "HMAC-SHA256",
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = new_nonce,
        rand: Callable[[], float] = random.random,
    ) -> None:
        parts = urlsplit(store_url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"store_url must start with http:// or https://, got {store_url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"store_url must not carry a query or fragment: {store_url!r}")
        self.store_url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self.api_version = api_version.strip("/")
        https = parts.scheme == "https"
        self.auth: Literal["basic", "query", "oauth1"] = (
            ("basic" if https else "oauth1") if auth == "auto" else auth
        )
        if auth_problem(self.store_url, self.auth) is not None:
            log.warning(
                "woocommerce %s auth over plain http: WooCommerce ignores it; use https or oauth1",
                self.auth,
            )
        if not verify_ssl and https:
            log.warning(
                "woocommerce tls certificate checks are off for %s (testing only)", parts.netloc
            )
        self._key = consumer_key
        self._secret = consumer_secret
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_file) if verify_ssl else False
        )
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.timeout = timeout
        self._max_retries = max_retries
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._user_agent = user_agent
        self._algorithm: Literal["HMAC-SHA1", "HMAC-SHA256"] = oauth_algorithm
        self._session = session
        self._owns_session = session is None
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self.budget = RateBudget(rate_limit_per_minute)
        self._clock = clock
        self._nonce = nonce
        self._rand = rand

    async def __aenter__(self) -> Self:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._concurrency)
            self._session = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- public API ---------------------------------------------------------------------------

    async def get(self, path: str, params: Params | None = None) -> Response:
        """GET ``/wp-json/{api_version}/{path}`` with query `params`."""
        return await self.request("GET", path, params)

    async def request(
        self,
        method: str,
        path: str,
        params: Params | None = None,
        json_body: Any = None,
    ) -> Response:
        """One request with the budget, retries and error mapping; 2xx returns a Response."""
        method = method.upper()
        pairs = [(k, _param_str(v)) for k, v in (params or {}).items()]
        rel = path.strip("/")
        endpoint_query = f"?{_query(pairs)}" if pairs else ""
        call = Call(
            method=method,
            endpoint=f"{method} {self._path_prefix()}/{rel}{endpoint_query}",
            path=rel,
            auth=self.auth,
            store_url=self.store_url,
            api_version=self.api_version,
        )
        delays = backoff(self._backoff_initial, self._backoff_max, rand=self._rand)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(call, pairs, json_body)
            except WooRetryable as exc:
                exc.attempts = attempt
                may_resend = method in _METHODS_WITHOUT_SIDE_EFFECTS or not exc.processed
                if attempt > self._max_retries or not may_resend:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else next(delays)
                if delay > self._backoff_max:
                    raise  # the store asks for a longer pause than we wait inline
                log.warning(
                    "woocommerce %s on %s; retry %d/%d in %.1fs",
                    exc.status or type(exc).__name__,
                    call.endpoint,
                    attempt,
                    self._max_retries,
                    delay,
                )
                await asyncio.sleep(delay)

    async def iter_pages(
        self,
        resource: str,
        params: Params | None = None,
        fields: Sequence[str] | None = None,
        per_page: int = 100,
        start_page: int = 1,
    ) -> AsyncIterator[Page]:
        """Pages of a collection from `start_page`, until X-WP-TotalPages (or a short page)."""
        page = start_page
        while True:
            query: dict[str, ParamValue] = dict(params or {})
            query["per_page"] = per_page
            query["page"] = page
            if fields:
                query["_fields"] = _fields_param(fields)
            response = await self.get(resource, query)
            items = response.json if isinstance(response.json, list) else []
            total = _header_int(response.headers, "X-WP-Total")
            total_pages = _header_int(response.headers, "X-WP-TotalPages")
            if total_pages is None:
                # Some caches strip the X-WP-* headers: fall back to "a full page means more".
                total_pages = page + 1 if len(items) == per_page else page
            yield Page(items, page, total if total is not None else -1, total_pages)
            if page >= total_pages or not items:
                return
            page += 1

    async def get_object(
        self, resource: str, object_id: int, fields: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """One object, e.g. ``get_object("orders", 19)``; raises WooNotFound when it is gone."""
        params: dict[str, ParamValue] = {"_fields": _fields_param(fields)} if fields else {}
        response = await self.get(f"{resource}/{int(object_id)}", params)
        return self._object(response)

    async def count(self, resource: str, params: Params | None = None) -> int:
        """How many objects match, from X-WP-Total of a one-item page."""
        query: dict[str, ParamValue] = dict(params or {})
        query.update({"per_page": 1, "page": 1, "_fields": "id"})
        response = await self.get(resource, query)
        total = _header_int(response.headers, "X-WP-Total")
        if total is None:
            raise WooStoreError(
                f"GET {self._path_prefix()}/{resource}: the answer has no X-WP-Total header; a "
                "proxy or cache in front of the store strips it. Let X-WP-* headers through."
            )
        return total

    async def list_webhooks(self) -> list[dict[str, Any]]:
        """Every webhook of the store (needs a key whose user has manage_woocommerce)."""
        hooks: list[dict[str, Any]] = []
        async for page in self.iter_pages("webhooks"):
            hooks.extend(page.items)
        return hooks

    async def create_webhook(
        self,
        name: str,
        topic: str,
        delivery_url: str,
        secret: str,
        status: Literal["active", "paused", "disabled"] = "active",
    ) -> dict[str, Any]:
        """Create a webhook; always pass our own secret (WooCommerce would invent one)."""
        body = {
            "name": name,
            "topic": topic,
            "delivery_url": delivery_url,
            "secret": secret,
            "status": status,
        }
        return self._object(await self.request("POST", "webhooks", None, body))

    async def update_webhook(self, webhook_id: int, **fields: Any) -> dict[str, Any]:
        """Change a webhook (status, delivery_url, secret, topic, name)."""
        response = await self.request("PUT", f"webhooks/{int(webhook_id)}", None, fields)
        return self._object(response)

    async def system_status(self, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """WooCommerce → Status as JSON (versions, home URL, settings, WP-Cron).

        `fields` such as ``environment.wp_cron`` make WooCommerce compute only those sections
        (``get_item_mappings_per_fields``, since 3.9), sparing its slower checks.
        """
        params: dict[str, ParamValue] = {"_fields": ",".join(fields)} if fields else {}
        return self._object(await self.get("system_status", params))

    # -- internals ----------------------------------------------------------------------------

    def _path_prefix(self) -> str:
        return f"{urlsplit(self.store_url).path}/wp-json/{self.api_version}"

    def _object(self, response: Response) -> dict[str, Any]:
        if not isinstance(response.json, dict):
            raise WooStoreError(f"expected a JSON object from the store, got {type(response.json)}")
        return response.json

    def _prepare(self, call: Call, pairs: list[tuple[str, str]]) -> tuple[URL, dict[str, str]]:
        url = f"{self.store_url}/wp-json/{self.api_version}/{call.path}"
        headers = {"User-Agent": self._user_agent, "Accept": "application/json"}
        query = list(pairs)
        if self.auth == "basic":
            token = base64.b64encode(f"{self._key}:{self._secret}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        elif self.auth == "query":
            query += [("consumer_key", self._key), ("consumer_secret", self._secret)]
        else:
            oauth = oauth1_sign(
                call.method,
                url,
                dict(pairs),
                self._key,
                self._secret,
                timestamp=self._clock(),
                nonce=self._nonce(),
                algorithm=self._algorithm,
            )
            query += list(oauth.items())
        full = f"{url}?{_query(query)}" if query else url
        # encoded=True: send exactly the bytes we signed; yarl must not re-quote them.
        return URL(full, encoded=True), headers

    async def _attempt(self, call: Call, pairs: list[tuple[str, str]], json_body: Any) -> Response:
        session = self._session
        if session is None:
            raise RuntimeError("WooClient used outside 'async with' and without a session")
        loop = asyncio.get_running_loop()
        async with self._slots:
            wait = self.budget.reserve(loop.time())
            if wait > 0:
                await asyncio.sleep(wait)
            url, headers = self._prepare(call, pairs)
            data: bytes | None = None
            if json_body is not None:
                data = json.dumps(json_body).encode()
                headers["Content-Type"] = "application/json"
            try:
                async with session.request(
                    call.method,
                    url,
                    headers=headers,
                    data=data,
                    ssl=self._ssl,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as resp:
                    body = await resp.read()
                    status = resp.status
                    resp_headers = resp.headers
            # aiohttp puts the full URL in some messages (ConnectionTimeoutError), and with
            # auth: query that URL holds the secret: such errors are scrubbed and not chained.
            except TimeoutError as exc:
                raise WooTimeout(
                    f"{call.endpoint}: no complete answer within {self.timeout:g} s "
                    f"({type(exc).__name__}). The store is slow or overloaded: raise `timeout`, "
                    "lower `backfill.per_page`, or ask the host.",
                    endpoint=call.endpoint,
                ) from None
            except aiohttp.ClientSSLError as exc:
                raise _ssl_error(call, exc) from exc
            except aiohttp.ClientConnectorError as exc:
                raise WooRetryable(
                    f"{call.endpoint}: cannot reach the store at {exc.host}:{exc.port} "
                    f"({exc.os_error.strerror or exc.os_error}). Check `store_url` and that the "
                    "site is up.",
                    processed=False,
                    endpoint=call.endpoint,
                ) from exc
            except aiohttp.ClientError as exc:
                raise WooRetryable(
                    f"{call.endpoint}: the connection failed "
                    f"({type(exc).__name__}: {self._scrub(str(exc))}).",
                    endpoint=call.endpoint,
                ) from None
        log.debug("woocommerce %s -> %d (%d bytes)", call.endpoint, status, len(body))
        if 200 <= status < 300:
            return Response(status, self._decode(call, status, body, resp_headers), resp_headers)
        error = classify_response(call, status, body, resp_headers)
        if status == 429:
            pause = error.retry_after if error.retry_after is not None else self._backoff_initial
            self.budget.hold(loop.time() + pause)
        raise error

    def _scrub(self, text: str) -> str:
        for credential in (self._secret, self._key):
            if credential:
                text = text.replace(credential, "***").replace(rfc3986(credential), "***")
        return text

    def _decode(self, call: Call, status: int, body: bytes, headers: Mapping[str, str]) -> Any:
        if not body:
            return None
        try:
            # One object the store cannot keep (nested past 1,024 levels, NaN…) must not fail
            # the page: read, it is refused alone and dead-lettered (agent/core/storable.py).
            return loads(body)[0]
        except ValueError:
            kind = headers.get("Content-Type", "unknown content type")
            raise WooStoreError(
                f"{call.endpoint}: the store answered {status} but not with JSON ({kind}). A "
                "cache, maintenance-mode or security plugin intercepts /wp-json/: exempt "
                "/wp-json/wc/ from it.",
                status=status,
                endpoint=call.endpoint,
            ) from None
