"""How the WooCommerce fake authenticates a request, exactly as ``WC_REST_Authentication``
does in 10.0.2: Basic and query-string keys only over HTTPS, one-legged OAuth 1.0a
(HMAC-SHA1/SHA256, ±15 min, nonces per key), and the key's read/write permissions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote, unquote, unquote_plus

from tests.fakes.woocommerce.records import ApiKey, FakeClock
from tests.fakes.woocommerce.wordpress import Auth, WordPressUrls, WpError, WpRequest, php_empty

NONCE_WINDOW: Final = 15 * 60  # WC_REST_Authentication::check_oauth_timestamp_and_nonce()


def _rawurlencode(value: str) -> str:
    return quote(value, safe="")


def _wc_oauth_signature(
    method: str, base_url: str, params: Mapping[str, Any], secret: str, algorithm: str
) -> str:
    """``WC_REST_Authentication::check_oauth_signature()``, nested arrays included."""

    def join(values: Mapping[str, Any], out: list[str], prefix: str = "") -> list[str]:
        # join_with_equals_sign(): nested keys become key%5Bsub%5D, each "k=v" encoded again.
        for key, value in values.items():
            name = f"{prefix}%5B{key}%5D" if prefix else key
            if isinstance(value, dict):
                join(value, out, name)
            else:
                out.append(_rawurlencode(f"{name}={value}"))
        return out

    def normalize(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: normalize(v) for k, v in value.items()}
        return _rawurlencode(str(value))

    ordered = dict(sorted(params.items(), key=lambda kv: kv[0].encode()))  # uksort strcmp
    normalized = {_rawurlencode(k): normalize(v) for k, v in ordered.items()}
    base = f"{method}&{_rawurlencode(base_url)}&{'%26'.join(join(normalized, []))}"
    digest = hashlib.sha256 if algorithm == "HMAC-SHA256" else hashlib.sha1
    mac = hmac.new(f"{secret}&".encode(), base.encode(), digest).digest()
    return base64.b64encode(mac).decode("ascii")


class Authentication(WordPressUrls):
    """WooFake's authentication (a mixin: it reads the fake's keys, clock and URLs)."""

    keys: list[ApiKey]
    clock: FakeClock

    def _authenticate(self, req: WpRequest) -> Auth:
        auth = Auth()
        # is_request_to_rest_api() in 10.0.2: the REQUEST_URI must contain "wp-json/wc/" (or
        # "wp-json/wc-"), so ?rest_route=/wc/v3/… is never authenticated (recording README).
        if "wp-json/wc/" not in req.raw_uri and "wp-json/wc-" not in req.raw_uri:
            return auth
        if self.is_ssl:
            self._basic(req, auth)
            if auth.user is not None:
                return auth
        self._oauth(req, auth)
        return auth

    def _find_key(self, consumer_key: str) -> ApiKey | None:
        wanted = consumer_key.strip()  # sanitize_text_field()
        return next((k for k in self.keys if hmac.compare_digest(k.consumer_key, wanted)), None)

    def _basic(self, req: WpRequest, auth: Auth) -> None:
        auth.method = "basic_auth"
        key = req.get.get("consumer_key")
        secret = req.get.get("consumer_secret")
        if php_empty(key) or php_empty(secret) or not isinstance(key, str):
            key = secret = None
            header = req.headers.get("Authorization", "")
            if header[:6].lower() == "basic ":
                try:
                    user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
                except ValueError:
                    user = password = ""
                if not php_empty(user) and not php_empty(password):
                    key, secret = user, password
        if key is None or secret is None or not isinstance(secret, str):
            return
        found = self._find_key(key)
        if found is None:
            return  # unknown key: no error, the request goes on unauthenticated
        if not hmac.compare_digest(found.consumer_secret, secret):
            auth.error = WpError(
                "woocommerce_rest_authentication_error", "Consumer secret is invalid.", 401
            )
            auth.user = None
            return
        auth.user = found

    def _oauth(self, req: WpRequest, auth: Auth) -> None:
        auth.method = "oauth1"
        params: dict[str, Any] = {**req.get, **req.post}
        header = req.headers.get("Authorization", "").strip()
        if header.startswith("OAuth "):
            for name, quoted, bare in re.findall(
                r'(oauth_[a-z_-]*)=(?::?"([^"]*)"|([^,]*))', header
            ):
                params[name] = unquote_plus(quoted or bare)
        required = (
            "oauth_consumer_key",
            "oauth_timestamp",
            "oauth_nonce",
            "oauth_signature",
            "oauth_signature_method",
        )
        missing = [name for name in required if php_empty(params.get(name))]
        if len(missing) == len(required):
            return  # not trying OAuth at all
        if missing:
            plural = "s" if len(missing) > 1 else ""
            auth.error = WpError(
                "woocommerce_rest_authentication_missing_parameter",
                f"Missing OAuth parameter{plural} {', '.join(missing)}",
                401,
            )
            auth.user = None
            return
        user = self._find_key(str(params["oauth_consumer_key"]))
        if user is None:
            auth.error = WpError(
                "woocommerce_rest_authentication_error", "Consumer key is invalid.", 401
            )
            auth.user = None
            return
        error = self._check_signature(req, user, params) or self._check_nonce(user, params)
        if error is not None:
            auth.error, auth.user = error, None
            return
        auth.user = user

    def _check_signature(
        self, req: WpRequest, user: ApiKey, params: dict[str, Any]
    ) -> WpError | None:
        request_path = req.raw_path
        wp_base = f"{self.home_path}/"
        if request_path.startswith(wp_base):
            request_path = request_path[len(wp_base) :]
        # get_home_url( null, $path, is_ssl() ? 'https' : 'http' ): home URL, not the Host header.
        base_url = f"{self.home_url}/{request_path.lstrip('/')}"
        provided = unquote(str(params["oauth_signature"]).replace(" ", "+"))
        signed = {k: v for k, v in params.items() if k != "oauth_signature"}
        method = signed["oauth_signature_method"]
        if method not in ("HMAC-SHA1", "HMAC-SHA256"):
            return WpError(
                "woocommerce_rest_authentication_error",
                "Invalid signature - signature method is invalid.",
                401,
            )
        expected = _wc_oauth_signature(req.method, base_url, signed, user.consumer_secret, method)
        if not hmac.compare_digest(expected, provided):
            return WpError(
                "woocommerce_rest_authentication_error",
                "Invalid signature - provided signature does not match.",
                401,
            )
        return None

    def _check_nonce(self, user: ApiKey, params: dict[str, Any]) -> WpError | None:
        now = self.clock.now()
        try:
            timestamp = int(float(str(params["oauth_timestamp"])))
        except ValueError:
            timestamp = -(10**12)
        if timestamp < now - NONCE_WINDOW or timestamp > now + NONCE_WINDOW:
            return WpError("woocommerce_rest_authentication_error", "Invalid timestamp.", 401)
        nonce = str(params["oauth_nonce"])
        if nonce in user.nonces.values():
            return WpError(
                "woocommerce_rest_authentication_error",
                "Invalid nonce - nonce has already been used.",
                401,
            )
        # WooCommerce keys stored nonces by timestamp: a second request in the same second
        # overwrites the first one's nonce (so that one could be replayed). Kept as is.
        user.nonces[timestamp] = nonce
        for ts in [t for t in user.nonces if t < now - NONCE_WINDOW]:
            del user.nonces[ts]
        return None

    @staticmethod
    def _check_key_permissions(user: ApiKey, method: str) -> None:
        if method in ("HEAD", "GET"):
            if user.permissions not in ("read", "read_write"):
                raise WpError(
                    "woocommerce_rest_authentication_error",
                    "The API key provided does not have read permissions.",
                    401,
                )
        elif method in ("POST", "PUT", "PATCH", "DELETE"):
            if user.permissions not in ("write", "read_write"):
                raise WpError(
                    "woocommerce_rest_authentication_error",
                    "The API key provided does not have write permissions.",
                    401,
                )
        elif method != "OPTIONS":
            raise WpError("woocommerce_rest_authentication_error", "Unknown request method.", 401)
