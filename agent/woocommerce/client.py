"""The agent's WooCommerce REST client: a thin aiohttp shell around pure policies.

The pure parts (OAuth 1.0a signer, rate budget, error classifier; the backoff is core/retry.py)
take data and return data; `WooClient` only sends bytes, sleeps where they say, and raises what `classify_response`
decides. Authentication follows `WC_REST_Authentication` (WooCommerce 10.0.2,
includes/class-wc-rest-authentication.php; reference/woocommerce/NOTES.md §3).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import aiohttp
from yarl import URL

from agent.core.retry import backoff
from agent.core.woo import AuthMode, auth_problem
from agent.errors import AgentError, Permanent, Retryable

__all__ = [
    "AuthMode",
    "Call",
    "Page",
    "RateBudget",
    "Response",
    "WooAuthError",
    "WooBadRequest",
    "WooClient",
    "WooError",
    "WooNoRoute",
    "WooNotFound",
    "WooPermissionError",
    "WooRetryable",
    "WooSSLError",
    "WooStoreError",
    "WooTimeout",
    "auth_problem",
    "classify_response",
    "oauth1_sign",
    "parse_retry_after",
    "rfc3986",
    "signature_base_string",
]

log = logging.getLogger("agent.woocommerce")

ParamValue = str | int | float | bool | Sequence[str | int]
Params = Mapping[str, ParamValue]

USER_AGENT: Final = "WooBrevo-Agent/0.1 (aiohttp)"
KEYS_PAGE: Final = "WooCommerce → Settings → Advanced → REST API"
_METHODS_WITHOUT_SIDE_EFFECTS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


# --------------------------------------------------------------------------------------------
# Errors: one tree; each message says what is wrong and what the store owner can do about it.
# WooCommerce's own code and message are kept on the exception (`code`, `wc_message`).


class WooError(AgentError):
    """Base of every WooCommerce client error; `str()` is the actionable message."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        wc_message: str = "",
        endpoint: str = "",
        retry_after: float | None = None,
    ) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.status = status
        self.code = code
        self.wc_message = wc_message
        self.endpoint = endpoint
        self.retry_after = retry_after
        self.attempts = 1

    def __str__(self) -> str:
        if self.attempts > 1:
            return f"{self.message} (gave up after {self.attempts} attempts)"
        return self.message


class WooAuthError(WooError, Permanent):
    """The store did not accept the credentials (wrong key or secret, clock, transport)."""


class WooStoreError(WooError, Permanent):
    """The store answered something unusable: a redirect, a non-JSON page, an odd status."""


class WooPermissionError(WooError, Permanent):
    """The credentials work but the key or its WordPress user may not do this."""


class WooNotFound(WooError, Permanent):
    """The object does not exist (404 ``woocommerce_rest_*_invalid_id``)."""


class WooNoRoute(WooNotFound):
    """No WooCommerce REST API at this URL: REST off, pretty permalinks off, wrong store_url."""


class WooBadRequest(WooError, Permanent):
    """The store refused the request's parameters (400); a bug on our side, not the store's."""


class WooSSLError(WooError, Permanent):
    """The TLS connection failed: the certificate or the handshake."""


class WooRetryable(WooError, Retryable):
    """Try again later: 429, 5xx or a network error; `retry_after` when the store said so."""

    def __init__(self, message: str, *, processed: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        # False when the store cannot have acted on the request (refused before PHP ran), so
        # even a POST may be sent again without creating a duplicate.
        self.processed = processed


class WooTimeout(WooRetryable):
    """The store did not answer within the timeout."""


# --------------------------------------------------------------------------------------------
# OAuth 1.0a one-legged, exactly as WC_REST_Authentication::check_oauth_signature() checks it.


def rfc3986(value: str) -> str:
    """PHP ``rawurlencode``: percent-encode UTF-8 bytes except ``A-Za-z0-9-._~`` (RFC 3986 §2.3)."""
    # wc_rest_urlencode_rfc3986() also maps '+'→' ' and '%7E'→'~', which rawurlencode never
    # produces, so plain RFC 3986 encoding is byte-identical.
    return quote(value, safe="")


def _php_param_name(name: str) -> str:
    """The key PHP puts in ``$_GET`` for a query name: '.' and ' ' become '_' (php_register_variable)."""
    if "[" in name:
        # PHP would parse it as an array and WooCommerce signs the nested keys; the client never
        # needs that (WordPress takes comma lists), so refuse rather than sign something else.
        raise ValueError(f"query parameter {name!r}: use a comma-separated list, not name[]")
    return name.lstrip(" ").replace(".", "_").replace(" ", "_")


def signature_base_string(method: str, base_url: str, params: Mapping[str, str]) -> str:
    """The string WooCommerce signs: ``METHOD&enc(url)&`` then each encoded ``k=v`` encoded again.

    Params are sorted by their raw (unencoded) key with strcmp (``uksort($params, 'strcmp')``),
    keys and values are RFC 3986-encoded, each ``k=v`` pair is encoded again and the pairs are
    joined by ``%26`` (``join_with_equals_sign`` + ``implode('%26', …)``).
    """
    pairs = sorted(params.items(), key=lambda kv: kv[0].encode())
    joined = "%26".join(rfc3986(f"{rfc3986(k)}={rfc3986(v)}") for k, v in pairs)
    return f"{method.upper()}&{rfc3986(base_url)}&{joined}"


def oauth1_sign(
    method: str,
    url: str,
    params: Mapping[str, str],
    consumer_key: str,
    consumer_secret: str,
    *,
    timestamp: int | float,
    nonce: str,
    algorithm: Literal["HMAC-SHA1", "HMAC-SHA256"] = "HMAC-SHA256",
) -> dict[str, str]:
    """The ``oauth_*`` query parameters (signature included) for one request.

    `url` is the store URL of the endpoint as sent; its query, if any, is merged into `params`
    (PHP sees both in ``$_GET``) and dropped from the base URL, which WooCommerce rebuilds from
    its home URL and the request path. JSON bodies are not signed; form bodies would be, and
    the client sends none. The key is ``consumer_secret + "&"`` (no token secret).
    """
    parts = urlsplit(url)
    base_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    signed: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        signed[_php_param_name(key)] = value
    for key, value in params.items():
        signed[_php_param_name(key)] = value
    oauth = {
        "oauth_consumer_key": consumer_key,
        "oauth_nonce": nonce,
        "oauth_signature_method": algorithm,
        "oauth_timestamp": str(int(timestamp)),
    }
    signed.update(oauth)
    digest = hashlib.sha256 if algorithm == "HMAC-SHA256" else hashlib.sha1
    base = signature_base_string(method, base_url, signed)
    mac = hmac.new(f"{consumer_secret}&".encode(), base.encode(), digest).digest()
    oauth["oauth_signature"] = base64.b64encode(mac).decode("ascii")
    return oauth


def _new_nonce() -> str:
    # WooCommerce keeps used nonces per key for 15 minutes; 128 random bits never repeat.
    return secrets.token_hex(16)


# --------------------------------------------------------------------------------------------
# Pacing policies: pure, the shell sleeps.


class RateBudget:
    """A per-site request budget: at most `per_minute` request starts per minute, evenly spaced.

    GCRA (the generic cell rate algorithm): one start every ``60/per_minute`` seconds, with up to
    `burst` back to back. Shared hosts count requests per minute and answer 429 (or block the IP)
    above it; spacing requests evenly never trips a windowed counter.
    """

    def __init__(self, per_minute: float | None, burst: int = 1) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.tolerance = self.interval * max(burst - 1, 0)
        self._tat = float("-inf")  # theoretical arrival time of the next conforming start

    def reserve(self, now: float) -> float:
        """Book the next start and return how long to wait for it (0 when it is now)."""
        if self.interval == 0.0:
            return 0.0
        start = max(now, self._tat - self.tolerance)
        self._tat = max(self._tat, start) + self.interval
        return start - now

    def hold(self, until: float) -> None:
        """No start before `until` (after a 429 with Retry-After)."""
        self._tat = max(self._tat, until + self.interval)


# --------------------------------------------------------------------------------------------
# The classifier: one function turns any non-2xx answer into the exception to raise.


@dataclass(frozen=True, slots=True)
class Call:
    """What `classify_response` needs to know about the request (no secrets in it)."""

    method: str
    endpoint: str  # e.g. "GET /wp-json/wc/v3/orders?page=2" (never carries credentials)
    path: str  # the path below the namespace, e.g. "orders/19"
    auth: Literal["basic", "query", "oauth1"]
    store_url: str
    api_version: str = "wc/v3"

    @property
    def https(self) -> bool:
        """Whether the request went over TLS."""
        return self.store_url.startswith("https:")


def _error_body(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("code"), str):
        return data
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form only; dates are ignored)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(seconds, 0.0)


def _resource_and_id(path: str) -> tuple[str, str | None]:
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) >= 2 and parts[-1].isdigit():
        return "/".join(parts[:-1]), parts[-1]
    return "/".join(parts), None


def classify_response(call: Call, status: int, body: bytes, headers: Mapping[str, str]) -> WooError:
    """The exception for a non-2xx answer, with a message a store owner can act on."""
    error = _error_body(body)
    code = error["code"] if error else ""
    wc_message = str(error.get("message", "")) if error else ""
    quoted = f'{status} {code}: "{wc_message}"' if error else f"HTTP {status}"
    common: dict[str, Any] = {
        "status": status,
        "code": code,
        "wc_message": wc_message,
        "endpoint": call.endpoint,
    }
    resource, object_id = _resource_and_id(call.path)

    if 300 <= status < 400:
        target = headers.get("Location", "another address")
        return WooStoreError(
            f"{call.endpoint}: the store redirects ({status} to {target}). Set `store_url` to the "
            "address the store redirects to (scheme, www and path included): credentials are not "
            "sent across redirects and WooCommerce checks signatures against its home URL.",
            **common,
        )

    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return WooRetryable(
            f"{call.endpoint}: the store (or its host) says too many requests ({quoted}). "
            "Lower `rate_limit_per_minute` for this site to stay under the host's limit.",
            processed=False,
            retry_after=retry_after,
            **common,
        )

    if status >= 500 and status != 501:
        return WooRetryable(
            f"{call.endpoint}: the store failed with {quoted} (a PHP error, maintenance mode or "
            "an overloaded host). The agent retries; if it persists, check the store's PHP error "
            "log and WooCommerce → Status → Logs.",
            retry_after=parse_retry_after(headers.get("Retry-After")),
            **common,
        )

    if status == 404:
        if code == "rest_no_route":
            return WooNoRoute(
                f"{call.endpoint}: the store has no REST route for {call.api_version}/{call.path} "
                f"({quoted}). Check that WooCommerce is active, that no security plugin "
                "disables the REST API, and that pretty permalinks are on (Settings → "
                "Permalinks: anything but 'Plain'). "
                "Without them WordPress answers only on ?rest_route=/wc/v3/…, where WooCommerce "
                "10.x does not accept API keys (401).",
                **common,
            )
        if error is None:
            return WooNoRoute(
                f"{call.endpoint}: 404 with a web page instead of the REST API. Check that "
                f"`store_url` ({call.store_url}) is the WordPress home URL (Settings → General → "
                "Site Address), and turn on pretty permalinks (Settings → Permalinks: anything "
                "but 'Plain'): without them /wp-json/ does not exist, and WooCommerce 10.x does "
                "not accept API keys on the ?rest_route= form (401).",
                **common,
            )
        what = f"{resource} {object_id}" if object_id else resource
        return WooNotFound(
            f"{what} does not exist on the store ({quoted}); it was deleted or never existed.",
            **common,
        )

    if status in (401, 403):
        return _classify_denied(call, status, error, quoted, common, resource)

    if status == 400:
        detail = wc_message
        params = error.get("data", {}).get("params") if error else None
        if isinstance(params, dict) and params:
            detail = "; ".join(str(v) for v in params.values())
        return WooBadRequest(
            f"{call.endpoint}: the store refused the request ({status} {code}: {detail}).",
            **common,
        )

    return WooStoreError(f"{call.endpoint}: unexpected answer {quoted}.", **common)


def _classify_denied(
    call: Call,
    status: int,
    error: dict[str, Any] | None,
    quoted: str,
    common: dict[str, Any],
    resource: str,
) -> WooError:
    code = error["code"] if error else ""
    wc_message = str(error.get("message", "")) if error else ""

    if error is None:
        cls: type[WooError] = WooAuthError if status == 401 else WooPermissionError
        return cls(
            f"{call.endpoint}: {status} with a web page, not WooCommerce: something in front of "
            "WordPress refused the request (HTTP password protection on a staging site, a "
            "security plugin or a firewall such as Wordfence, Cloudflare or ModSecurity). Allow "
            "the agent's address for /wp-json/wc/ there.",
            **common,
        )

    if code == "woocommerce_rest_authentication_error":
        if "read permissions" in wc_message or "write permissions" in wc_message:
            reading = "read permissions" in wc_message
            need, lacks = ("Read", "read") if reading else ("Read/Write", "write")
            why = "" if reading else " (creating and updating webhooks needs write)"
            return WooPermissionError(
                f"{call.endpoint}: the API key lacks {lacks} permission ({quoted}). Edit "
                f"the key in {KEYS_PAGE} and set Permissions to {need}{why}.",
                **common,
            )
        if wc_message == "Consumer secret is invalid.":
            return WooAuthError(
                f"{call.endpoint}: the consumer key is known to the store but the consumer secret "
                f"is wrong ({quoted}). Copy `consumer_secret` again (it is shown only once, when "
                f"the key is created; if it is lost, create a new key in {KEYS_PAGE}).",
                **common,
            )
        if wc_message == "Consumer key is invalid.":
            return WooAuthError(
                f"{call.endpoint}: the store does not know this consumer key ({quoted}). Check "
                f"`consumer_key` against {KEYS_PAGE}: it may be mistyped, revoked, or from another "
                "store.",
                **common,
            )
        if wc_message.startswith("Invalid signature - provided signature"):
            return WooAuthError(
                f"{call.endpoint}: the OAuth 1.0a signature does not match ({quoted}). The "
                "consumer key is known, so the consumer secret is most likely wrong. If it is "
                "right, `store_url` must be exactly the WordPress home URL (Settings → General → "
                "Site Address: same scheme, host, port and path), because WooCommerce rebuilds "
                "the signed URL from it.",
                **common,
            )
        if wc_message == "Invalid timestamp.":
            return WooAuthError(
                f"{call.endpoint}: the store refused the OAuth timestamp ({quoted}): the clocks "
                "of this machine and the store differ by more than 15 minutes. Synchronise both "
                "with NTP.",
                **common,
            )
        if wc_message.startswith("Invalid nonce"):
            return WooAuthError(
                f"{call.endpoint}: the store has seen this OAuth nonce before ({quoted}). "
                "Something replayed the request (a proxy or CDN retrying it) or another process "
                "signs with the same nonce source; use an https:// `store_url` with `auth: basic` "
                "(or `auth: auto`) to avoid nonces.",
                **common,
            )
        if wc_message.startswith("Invalid signature - signature method"):
            return WooAuthError(
                f"{call.endpoint}: the store refused the OAuth signature method ({quoted}).",
                **common,
            )
        if "cannot be used to access this endpoint" in wc_message:
            return WooPermissionError(
                f"{call.endpoint}: WooCommerce API keys may not be used on this endpoint "
                f"({quoted}); the request went outside the wc/ namespace.",
                **common,
            )
        return WooAuthError(f"{call.endpoint}: the store refused the key ({quoted}).", **common)

    if code == "woocommerce_rest_authentication_missing_parameter":
        return WooAuthError(
            f"{call.endpoint}: the store received only part of the OAuth parameters ({quoted}). "
            "A proxy, cache or security plugin strips query parameters: exempt /wp-json/wc/ "
            "from it, or use an https:// `store_url` with `auth: basic`.",
            **common,
        )

    if code.startswith("woocommerce_rest_cannot_") and status == 403:
        return WooPermissionError(
            f"{call.endpoint}: the key authenticated, but its WordPress user may not access "
            f"{resource} ({quoted}). Create the key for a user with the Administrator or Shop "
            f"manager role in {KEYS_PAGE}.",
            **common,
        )

    if code.startswith("woocommerce_rest_cannot_") or code == "rest_forbidden":
        # WooCommerce answers as if no credentials were sent: the key was ignored, not refused.
        if call.auth in ("basic", "query") and not call.https:
            return WooAuthError(
                f"{call.endpoint}: the store ignored the API key ({quoted}): WooCommerce accepts "
                "Basic and query-string keys only over HTTPS. Use an https:// `store_url`, or "
                "`auth: oauth1` (`auth: auto` picks OAuth 1.0a for http:// stores).",
                **common,
            )
        if call.auth in ("basic", "query"):
            return WooAuthError(
                f"{call.endpoint}: the store answered as if no key was sent ({quoted}). "
                "WooCommerce treats an unknown consumer key like no key at all, so `consumer_key` "
                f"is probably wrong or revoked: check it in {KEYS_PAGE}. If it is right, "
                "WordPress may not see the request as HTTPS (a proxy or CDN terminating TLS "
                "without X-Forwarded-Proto handling), so it ignores Basic auth: fix that. Some "
                "hosts also drop the Authorization header before PHP sees it: then set "
                "`auth: query` (`woobrevo-agent doctor` tells the two apart).",
                **common,
            )
        return WooAuthError(
            f"{call.endpoint}: the store answered as if no credentials were sent ({quoted}). A "
            "proxy, cache or security plugin probably strips the oauth_* query parameters, or "
            "`store_url` points at a URL WooCommerce does not authenticate (keys are checked only "
            "on /wp-json/wc/… URLs, never on ?rest_route=).",
            **common,
        )

    cls = WooAuthError if status == 401 else WooPermissionError
    return cls(f"{call.endpoint}: access refused ({quoted}).", **common)


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


# --------------------------------------------------------------------------------------------
# The shell.


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
        nonce: Callable[[], str] = _new_nonce,
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
            return json.loads(body)
        except ValueError:
            kind = headers.get("Content-Type", "unknown content type")
            raise WooStoreError(
                f"{call.endpoint}: the store answered {status} but not with JSON ({kind}). A "
                "cache, maintenance-mode or security plugin intercepts /wp-json/: exempt "
                "/wp-json/wc/ from it.",
                status=status,
                endpoint=call.endpoint,
            ) from None
