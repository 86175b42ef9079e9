"""The WooCommerce client's errors and the classifier that picks one for any non-2xx answer.

One tree; each message says what is wrong and what the store owner can do about it, and
WooCommerce's own code and message are kept on the exception (`code`, `wc_message`). Pure: the
client (agent/woocommerce/client.py) raises what `classify_response` returns. Authentication
follows `WC_REST_Authentication` (WooCommerce 10.0.2; reference/woocommerce/NOTES.md §3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from agent.errors import AgentError, Permanent, Retryable

__all__ = [
    "KEYS_PAGE",
    "Call",
    "WooAuthError",
    "WooBadRequest",
    "WooError",
    "WooNoRoute",
    "WooNotFound",
    "WooPermissionError",
    "WooRetryable",
    "WooSSLError",
    "WooStoreError",
    "WooTimeout",
    "classify_response",
    "parse_retry_after",
]

KEYS_PAGE: Final = "WooCommerce → Settings → Advanced → REST API"


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
        # Without its query: a redirect may carry the request's own (`auth: query` keys).
        target = headers.get("Location", "another address").partition("?")[0]
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
    """401 and 403: which of WooCommerce's checks refused the key, or what stood in front."""
    if error is None:
        cls: type[WooError] = WooAuthError if status == 401 else WooPermissionError
        return cls(
            f"{call.endpoint}: {status} with a web page, not WooCommerce: something in front of "
            "WordPress refused the request (HTTP password protection on a staging site, a "
            "security plugin or a firewall such as Wordfence, Cloudflare or ModSecurity). Allow "
            "the agent's address for /wp-json/wc/ there.",
            **common,
        )
    code = error["code"]

    if code == "woocommerce_rest_authentication_error":
        return _key_refused(call, str(error.get("message", "")), quoted, common)

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


def _key_refused(call: Call, wc_message: str, quoted: str, common: dict[str, Any]) -> WooError:
    """`woocommerce_rest_authentication_error`: WooCommerce's message says which check failed."""
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
