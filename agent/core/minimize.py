"""Minimization: payment details never enter the agent's store (issues 14 and 16,
docs/privacy.md "What travels, and what does not").

Every door's events pass through `agent.core.events.parse_event`, which applies `minimize` to
the payload before anything is stored; what a door refuses goes through `minimize_value`
before it is kept as a dead letter (agent/store/inbox.py). Pure, and it never fails: what is
not a dict, list or string is left as it is.

The payment rule is a rule, not a list of gateways (a list is outgrown by the next gateway):

- a `meta_data` entry is dropped when its key names a payment concept (`is_payment_meta`):
  the key is cut into words (at `_`, `-`, spaces, dots and camelCase humps) and one word is a
  payment word (`payment`, `stripe`, `token`, `card`, `transaction`, `intent`…), or begins or
  ends with `pay` (`wcpay`, `razorpay`, `payer`; not `payload`), or two neighbours make one
  (`account number`, `source id`, `billing agreement`, `order key`), or the key begins with a
  gateway's own name (`square_`, `amazon_`, `authorize_`, also after `wc_`);
- a `meta_data` entry is dropped when its key begins with the id of the order's own gateway
  (`payment_method`: `wcd_card` drops `_wcd_card_number`, and its stem `wcd_` drops
  `wcd_payment_note`), so a gateway nobody has heard of yet is still caught; the plugin also
  drops the keys of every gateway registered in WooCommerce (wp-plugin/…-payloads.php);
- the order fields of DROPPED_FIELDS are dropped wherever they are;
- any card-like number (13-19 digits, single spaces or dashes between them, Luhn-valid) in
  any string becomes REMOVED (not digits inside a word: a hex token or a hash), except the
  catalogue codes a shop writes itself: the `sku` and `global_unique_id` (GTIN, UPC, EAN,
  ISBN) fields and meta values whose key names a barcode (`_gtin`, `ean_code`…). An EAN-13 can pass the Luhn check; a shopper cannot write a SKU.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from itertools import pairwise
from typing import Any

import orjson

__all__ = [
    "CATALOGUE_FIELDS",
    "DROPPED_FIELDS",
    "REMOVED",
    "is_payment_meta",
    "minimize",
    "minimize_value",
    "payment_words",
]

# Order fields the agent never maps and never needs (REST v3 orders). `order_key` is the
# order's secret: with the order id it opens the order's pay and received pages.
DROPPED_FIELDS = frozenset(
    {
        "payment_method_title",
        "transaction_id",
        "payment_url",
        "customer_ip_address",
        "customer_user_agent",
        "order_key",
    }
)
# Fields that hold the catalogue's own codes (products, variations, an order's line items):
# never taken for a card number.
CATALOGUE_FIELDS = frozenset({"sku", "global_unique_id"})
REMOVED = "[removed]"

# -- the payment rule (the plugin's WooBrevo_Payloads::is_payment_meta is the same rule) ----

# One word of a key that makes it a payment key wherever it stands.
_WORDS = frozenset(
    {
        # what a payment is made of
        "pay", "payment", "payments", "payer", "payee", "payout", "payouts", "transaction",
        "transactions", "txn", "charge", "charges", "chargeback", "capture", "captured",
        "authorization", "intent", "intents", "intention", "mandate", "mandates", "receipt",
        "gateway", "refundable",
        # cards, banks and their codes
        "card", "cards", "creditcard", "cc", "cvv", "cvc", "cvv2", "last4", "iban", "sepa",
        "bic", "bank", "routing", "ach",
        # secrets
        "token", "tokens", "secret", "secrets", "fingerprint", "nonce",
        # gateways, by the names they write (more begin or end with "pay": see _is_pay_word)
        "stripe", "paypal", "ppcp", "ppec", "wcpay", "woopayments", "mollie", "braintree",
        "authnet", "authorizenet", "klarna", "kco", "afterpay", "clearpay", "affirm", "adyen",
        "razorpay", "sofort", "giropay", "bancontact", "przelewy24", "sezzle", "skrill",
        "bluesnap", "eway", "opayo", "sagepay", "worldpay", "mercadopago", "paystack",
    }
)  # fmt: skip
# Two neighbouring words that make a payment key together.
_PAIRS = frozenset(
    {
        ("account", "number"), ("account", "four"), ("routing", "number"), ("sort", "code"),
        ("source", "id"), ("billing", "agreement"), ("authorize", "net"), ("last", "four"),
        ("last", "4"), ("order", "key"), ("customer", "profile"),
    }
)  # fmt: skip
# Gateways whose name is also a common word: payment keys only when the key begins with it
# (after `wc_`): Square (`_wc_square_credit_card_trans_id`, `wc_square_customer_id`), Amazon
# Pay (`amazon_charge_permission_id`, `amazon_reference_id`), Authorize.Net
# (`wc_authorize_net_cim_customer_profile_id`), Elavon, CyberSource, Moneris, Heartland.
_LEADING = frozenset(
    {"square", "amazon", "authorize", "elavon", "cybersource", "moneris", "heartland"}
)
# "pay…" words that are not payment data: a payload, and WooCommerce's `paying_customer` flag.
_NOT_PAY = frozenset({"payload", "payloads", "paying"})
# Words a gateway id often ends in (`acme_gateway`, `klarna_payments`, `wcd_card`): its stem
# (`acme`, `klarna`, `wcd`) prefixes its keys as well.
_GENERIC_ID_WORDS = frozenset(
    {"gateway", "payment", "payments", "pay", "credit", "card", "cc", "checkout", "method"}
)
# Meta keys whose value is a barcode (products): never taken for a card number.
_BARCODE_WORDS = frozenset({"gtin", "ean", "upc", "isbn", "barcode", "mpn", "jan"})
_BARCODE_VALUES = ("value", "display_value")

_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def _words(key: str) -> list[str]:
    """`_wcpayCustomer-ID x` → ["wcpay", "customer", "id", "x"]."""
    return [w for w in _NOT_WORD.split(_HUMP.sub("_", key).lower()) if w]


def _is_pay_word(word: str) -> bool:
    return word in _WORDS or (
        len(word) > 3 and (word.startswith("pay") or word.endswith("pay")) and word not in _NOT_PAY
    )


def _named_payment(key: str) -> bool:
    """Whether a key names a payment concept by its own words (no gateway ids needed)."""
    return _key(key)[0] if len(key) <= _CACHED_KEY else _read_key(key)[0]


def _flat(text: str) -> str:
    """A key or a gateway id as compared with each other: lower case, its runs of letters and
    digits joined by `_` (`_wc-NorthWind x` → `wc_northwind_x`)."""
    return _key(text)[1] if len(text) <= _CACHED_KEY else _read_key(text)[1]


def _read_key(key: str) -> tuple[bool, str]:
    # Compared with gateway ids without cutting at humps: `NorthWind` is `_northwind_`'s id.
    flat = "_".join(w for w in _NOT_WORD.split(key.lower()) if w)
    return bool(_reasons(_words(key))), flat


def _reasons(words: list[str]) -> list[str]:
    """The words (or pairs, or leading gateway name) that make a payment key of these."""
    found = [w for w in words if _is_pay_word(w)]
    found += [f"{a}_{b}" for a, b in pairwise(words) if (a, b) in _PAIRS]
    first = words[1] if words[:1] == ["wc"] and len(words) > 1 else (words or [""])[0]
    if first in _LEADING:
        found.append(first)
    return found


# Keys repeat from event to event (a store writes the same few dozen): their reading is kept
# for keys up to a meta key's length in WordPress (255), at most 4,096 of them.
_CACHED_KEY = 255
_key = lru_cache(maxsize=4096)(_read_key)


@lru_cache(maxsize=1024)
def gateway_prefixes(gateway_id: str) -> tuple[str, ...]:
    """The key prefixes of a gateway id: the id itself and its stem (`wcd_card` → `wcd_card`,
    `wcd`; `ppcp-gateway` → `ppcp_gateway`, `ppcp`). Prefixes under 3 characters are not used
    (too many keys would match)."""
    flat = _flat(gateway_id[:100])
    words = flat.split("_") if flat else []
    while words and words[0] in ("wc", "woocommerce"):
        words = words[1:]
    stem = list(words)
    while stem and stem[-1] in _GENERIC_ID_WORDS:
        stem.pop()
    out = {p for p in (flat, "_".join(words), "_".join(stem)) if len(p) >= 3}
    return tuple(sorted(out))


def _prefixed(key: str, prefixes: Iterable[str]) -> bool:
    flat = _flat(key)
    bare = flat[3:] if flat.startswith("wc_") else flat
    return any(k == p or k.startswith(p + "_") for p in prefixes for k in (flat, bare))


def is_payment_meta(key: object, gateways: Iterable[str] = ()) -> bool:
    """Whether a `meta_data` key is payment data: it names a payment concept, or it begins
    with the id (or the id's stem) of one of `gateways` (see the module docstring)."""
    if not isinstance(key, str):
        return False
    if _named_payment(key):
        return True
    prefixes = [p for g in gateways for p in gateway_prefixes(g)]
    return bool(prefixes) and _prefixed(key, prefixes)


def payment_words(key: str) -> list[str]:
    """The words of `key` that make it a payment key (for an error message): empty when
    none does."""
    return _reasons(_words(key))


def _is_barcode(key: object) -> bool:
    return isinstance(key, str) and any(w in _BARCODE_WORDS for w in _words(key))


# -- card numbers ---------------------------------------------------------------------------

# 13-19 digits, single spaces or dashes allowed between them, not inside a longer run of digits
# nor a word: digits inside a hex token or a hash are no card number (tests/chaos: a cart's random
# token lost its middle to the plugin's copy of this rule).
_CARD = re.compile(r"(?<![0-9A-Za-z])[0-9](?:[ -]?[0-9]){12,18}(?![0-9A-Za-z])")
_SEPARATOR = re.compile(r"[ -]")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    """A card number replaced: the whole run when it passes Luhn, else the longest span of
    whole groups that does ("4242 4242 4242 4242 123": the card, then a code)."""
    text = match.group(0)
    if _luhn(text.replace(" ", "").replace("-", "")):
        return REMOVED
    groups = _SEPARATOR.split(text)
    seps = _SEPARATOR.findall(text)
    for size in range(len(groups) - 1, 0, -1):
        for start in range(len(groups) - size + 1):
            digits = "".join(groups[start : start + size])
            if 13 <= len(digits) <= 19 and _luhn(digits):
                before = "".join(g + s for g, s in zip(groups[:start], seps, strict=False))
                after = "".join(
                    s + g
                    for s, g in zip(seps[start + size - 1 :], groups[start + size :], strict=False)
                )
                return before + REMOVED + after
    return text


def _scrub(text: str) -> str:
    """A string with every card-like number (Luhn-valid) replaced by REMOVED."""
    if len(text) < 13 or _CARD.search(text) is None:
        return text
    return _CARD.sub(_card, text)


# -- the walk -------------------------------------------------------------------------------


def minimize_value(value: Any) -> Any:
    """Any JSON value with payment meta entries dropped, DROPPED_FIELDS dropped and card
    numbers replaced, at any depth. An object's `payment_method` (a string) adds that gateway
    to the rule for everything inside the object. Returns new containers (the input is not
    changed) and strings as they are when nothing matched."""
    return _walk(value, ())


def _walk(value: Any, gateways: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _scrub(value)
    if isinstance(value, list):
        return [_walk(v, gateways) for v in value]
    if isinstance(value, dict):
        return _minimize_dict(value, gateways)
    return value


def _minimize_dict(obj: dict[Any, Any], gateways: tuple[str, ...]) -> dict[Any, Any]:
    method = obj.get("payment_method")
    if isinstance(method, str) and method and method not in gateways:
        gateways = (*gateways, method)
    out: dict[Any, Any] = {}
    for key, value in obj.items():
        if key in DROPPED_FIELDS:
            continue
        if key in CATALOGUE_FIELDS and isinstance(value, str):
            out[key] = value
        elif key == "meta_data" and isinstance(value, list):
            out[key] = _minimize_meta(value, gateways)
        else:
            out[key] = _walk(value, gateways)
    return out


def _minimize_meta(entries: list[Any], gateways: tuple[str, ...]) -> list[Any]:
    kept = []
    for entry in entries:
        if not isinstance(entry, dict):
            kept.append(_walk(entry, gateways))
            continue
        key = entry.get("key")
        if is_payment_meta(key, gateways):
            continue
        barcode = _is_barcode(key)
        kept.append(
            {
                k: v
                if barcode and k in _BARCODE_VALUES and isinstance(v, str)
                else _walk(v, gateways)
                for k, v in entry.items()
                if k not in DROPPED_FIELDS
            }
        )
    return kept


# -- the shortcut ---------------------------------------------------------------------------

# The same rules, asked first of the payload's JSON (as orjson writes it: no spaces, only `"`,
# `\` and control characters escaped) with byte searches: most payloads hold no card-like
# number and no payment meta, and then only the dropped fields at the top need removing. A
# hint is loose on purpose: it only sends a payload to the walk, which decides.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_THIRTEEN_DIGITS = b"0" * 13  # with spaces and dashes deleted: no card shorter than this
_KEY = re.compile(rb'"key":"((?:[^"\\]|\\.)*)"')
_METHOD = re.compile(rb'"payment_method":"((?:[^"\\]|\\.)*)"')
_FIELD_NAMES = tuple(f'"{f}":'.encode() for f in sorted(DROPPED_FIELDS))


def _needs_walk(raw: bytes, top_fields: int) -> bool:
    """Whether the JSON of a payload may hold anything below the top to remove (about 10 µs
    for an order, where the walk costs 40)."""
    if _THIRTEEN_DIGITS in raw.translate(_DIGITS_TO_ZERO, b" -"):
        return True
    keys = _KEY.findall(raw)
    if keys:
        methods = [m.decode(errors="replace") for m in _METHOD.findall(raw)]
        for key in keys:
            if b"\\" in key or is_payment_meta(key.decode(errors="replace"), methods):
                return True
    return sum(raw.count(name) for name in _FIELD_NAMES) != top_fields


def minimize(payload: dict[str, Any]) -> dict[str, Any]:
    """An event payload as the agent keeps it (see module docstring)."""
    top = [k for k in payload if k in DROPPED_FIELDS]
    try:
        walk = _needs_walk(orjson.dumps(payload), len(top))
    except TypeError:  # not JSON as orjson writes it (an integer past 64 bits): walk it all
        walk = True
    if walk:
        return _minimize_dict(payload, ())
    return {k: v for k, v in payload.items() if k not in DROPPED_FIELDS} if top else payload
