"""OAuth 1.0a one-legged, exactly as WC_REST_Authentication::check_oauth_signature() checks it.

Pure: the client (agent/woocommerce/client.py) passes the time and a nonce and sends what
`oauth1_sign` returns. reference/woocommerce/NOTES.md §3.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Literal
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

__all__ = ["new_nonce", "oauth1_sign", "rfc3986", "signature_base_string"]


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


def new_nonce() -> str:
    """A fresh nonce: WooCommerce keeps used ones per key for 15 minutes; 128 random bits
    never repeat."""
    return secrets.token_hex(16)
