"""WooCommerce's own vocabulary, written once: order statuses, computed fields, date paths. Pure.

Every other module (the pipeline, the store's aggregates, the sync code, the mapping and
doctor's checks) imports these instead of spelling them again.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

__all__ = [
    "COMPUTED_DATE_PATHS",
    "COMPUTED_PATHS",
    "DATE_FIELDS",
    "DEFAULT_PAID_STATUSES",
    "DRAFT_STATUSES",
    "NOT_ORDER_STATUSES",
    "PAYABLE_EXTRA_STATUSES",
    "PLURAL",
    "SINGULAR",
    "UNPAID_STATUSES",
    "AuthMode",
    "auth_problem",
    "is_date_path",
]

# An order in one of these has not left checkout yet: not an order for marketing, no event,
# no count (reference/woocommerce/NOTES.md §4, orders; "new" is the block checkout's draft).
DRAFT_STATUSES = frozenset({"checkout-draft", "auto-draft", "draft", "new"})
# Drafts and trashed orders are not orders: listings with status "any" leave them out, and
# they count for nothing in a customer's aggregates.
NOT_ORDER_STATUSES = DRAFT_STATUSES | {"trash"}
# The statuses WooCommerce itself calls paid (`wc_get_is_paid_statuses()`): only an order in
# one of them makes a buyer, counts in ORDER_COUNT and adds to TOTAL_SPENT (docs/mapping.md).
DEFAULT_PAID_STATUSES = ("processing", "completed")
# What a store may add to the paid statuses (`paid_statuses`): an on-hold order waits for a
# manual payment (bank transfer, cheque) that most such stores count as a sale.
PAYABLE_EXTRA_STATUSES = ("on-hold",)
# Statuses of orders that were never paid, or whose payment was given back.
UNPAID_STATUSES = frozenset({"pending", "failed", "cancelled", "refunded"})

# REST collections (`/wc/v3/{collection}`) and the resource each holds, and back.
SINGULAR = {
    "customers": "customer",
    "orders": "order",
    "products": "product",
    "variations": "variation",
    "coupons": "coupon",
}
PLURAL = {resource: collection for collection, resource in SINGULAR.items()}

# Fields the agent computes per email from the orders it has seen (not WooCommerce fields).
COMPUTED_PATHS = ("orders_count", "total_spent", "first_order_date", "last_order_date")
COMPUTED_DATE_PATHS = ("first_order_date", "last_order_date")

# WooCommerce's own date fields on the objects a customer mapping reads (REST v3 customer and
# order schemas): store-local time without an offset, and the same instant in UTC (`_gmt`).
DATE_FIELDS = frozenset({"date_created", "date_created_gmt", "date_modified", "date_modified_gmt"})

# A meta value is free text, so only its key can say it holds a date (docs/mapping.md, "Dates"):
# a key ending in the word `date` (`birth_date`, `expiry-date`, `signupDate`, `date`), ending
# in `_at` (`subscribed_at`), or one of the usual birthday names.
_DATE_META_KEY = re.compile(r"(?i:(?:^|[_-])date|[_-]at)$|[a-z0-9]Date$")
_DATE_META_NAMES = frozenset({"birthday", "birthdate", "date_of_birth", "dob"})


@lru_cache(maxsize=4096)  # a site's few mapped paths, asked about for every contact
def is_date_path(path: str) -> bool:
    """Whether a mapped path holds a date, sent to a Brevo `date` attribute as YYYY-MM-DD."""
    if path in COMPUTED_DATE_PATHS:
        return True
    parts = path.split(".")
    if parts[-1] in DATE_FIELDS:
        return True
    if len(parts) >= 2 and parts[-2] == "meta_data":
        key = parts[-1].lstrip("_")
        return bool(_DATE_META_KEY.search(key)) or key.lower() in _DATE_META_NAMES
    return False


# How REST requests carry the store's keys (`connectors.woocommerce.auth`, agent/woocommerce/client.py).
AuthMode = Literal["auto", "basic", "query", "oauth1"]


def auth_problem(store_url: str, auth: AuthMode) -> str | None:
    """Why `auth` cannot work for `store_url` (None when it can): the advice `check` prints.

    WooCommerce reads Basic and query-string keys only when ``is_ssl()`` and ignores them over
    http (recorded probes 02 and 03: 401 ``woocommerce_rest_cannot_view``). OAuth 1.0a is tried
    whenever no Basic credentials arrived, over http and https alike
    (``WC_REST_Authentication::authenticate()``), so `oauth1` works with either scheme.
    """
    if auth in ("basic", "query") and urlsplit(store_url.strip()).scheme == "http":
        return (
            f"`auth: {auth}` with an http:// `store_url`: WooCommerce accepts Basic and "
            "query-string keys only over HTTPS and ignores them over http, so every REST request "
            "would be refused (401). Use an https:// `store_url`, or `auth: oauth1` (or "
            "`auth: auto`, which signs with OAuth 1.0a over http). Only a store whose WordPress "
            "forces HTTPS on behind a proxy takes them; keep it then."
        )
    return None
