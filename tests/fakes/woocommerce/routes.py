"""The WooCommerce fake's REST routes (wc/v3) with their parameter specs and defaults, and the
errors and pages WordPress and a shared host answer with."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from tests.fakes.woocommerce.objects import NAMESPACE, ORDER_STATUSES
from tests.fakes.woocommerce.wordpress import Spec

# Parameter specs, in registration order (WordPress validates and lists them in this order).
_CONTEXT: Final[Spec] = ("context", {"type": "enum", "enum": ["view", "edit"]})
_PAGE: Final[Spec] = ("page", {"type": "integer", "minimum": 1})
_PER_PAGE: Final[Spec] = ("per_page", {"type": "integer", "minimum": 1, "maximum": 100})
_OFFSET: Final[Spec] = ("offset", {"type": "integer"})
_ORDER_DIR: Final[Spec] = ("order", {"type": "enum", "enum": ["asc", "desc"]})
_CRUD_PARAMS: Final[list[Spec]] = [
    _CONTEXT,
    _PAGE,
    _PER_PAGE,
    ("search", {"type": "string"}),
    ("after", {"type": "date-time"}),
    ("before", {"type": "date-time"}),
    ("modified_after", {"type": "date-time"}),
    ("modified_before", {"type": "date-time"}),
    ("dates_are_gmt", {"type": "boolean"}),
    ("exclude", {"type": "id_list"}),
    ("include", {"type": "id_list"}),
    _OFFSET,
    _ORDER_DIR,
    ("orderby", {"type": "enum", "enum": ["date", "id", "include", "title", "slug", "modified"]}),
]
_ORDER_STATUS_ENUM: Final = ["any", "trash", "auto-draft", *ORDER_STATUSES, "checkout-draft"]
_ORDERS_PARAMS: Final[list[Spec]] = [
    *_CRUD_PARAMS,
    ("status", {"type": "enum_list", "enum": _ORDER_STATUS_ENUM}),
    ("customer", {"type": "integer"}),
    ("product", {"type": "integer"}),
    ("dp", {"type": "integer"}),
]
_PRODUCTS_PARAMS: Final[list[Spec]] = [
    *_CRUD_PARAMS[:-1],
    (
        "orderby",
        {
            "type": "enum",
            "enum": [
                "date",
                "id",
                "include",
                "title",
                "slug",
                "modified",
                "price",
                "popularity",
                "rating",
            ],
        },
    ),
    (
        "status",
        {
            "type": "enum",
            "enum": ["any", "future", "trash", "draft", "pending", "private", "publish"],
        },
    ),
    ("type", {"type": "enum", "enum": ["simple", "grouped", "external", "variable"]}),
    ("sku", {"type": "string"}),
]
_COUPONS_PARAMS: Final[list[Spec]] = [*_CRUD_PARAMS, ("code", {"type": "string"})]
_CUSTOMERS_PARAMS: Final[list[Spec]] = [
    _CONTEXT,
    _PAGE,
    _PER_PAGE,
    ("search", {"type": "string"}),
    ("exclude", {"type": "id_list"}),
    ("include", {"type": "id_list"}),
    _OFFSET,
    _ORDER_DIR,
    ("orderby", {"type": "enum", "enum": ["id", "include", "name", "registered_date"]}),
    ("email", {"type": "email"}),
    (
        "role",
        {
            "type": "enum",
            "enum": [
                "all",
                "administrator",
                "editor",
                "author",
                "contributor",
                "subscriber",
                "customer",
                "shop_manager",
            ],
        },
    ),
]
_WEBHOOKS_PARAMS: Final[list[Spec]] = [
    _CONTEXT,
    _PAGE,
    _PER_PAGE,
    ("search", {"type": "string"}),
    ("after", {"type": "date-time"}),
    ("before", {"type": "date-time"}),
    ("exclude", {"type": "id_list"}),
    ("include", {"type": "id_list"}),
    _OFFSET,
    _ORDER_DIR,
    ("orderby", {"type": "enum", "enum": ["date", "id", "title"]}),
    ("status", {"type": "enum", "enum": ["all", "active", "paused", "disabled"]}),
]
DEFAULTS: Final[dict[str, dict[str, Any]]] = {
    "crud": {"page": 1, "per_page": 10, "order": "desc", "orderby": "date"},
    "customers": {"page": 1, "per_page": 10, "order": "asc", "orderby": "name", "role": "customer"},
    "webhooks": {"page": 1, "per_page": 10, "order": "desc", "orderby": "date", "status": "all"},
}


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    methods: dict[str, tuple[str, str]]  # METHOD → (handler name, permission kind)
    params: list[Spec] = field(default_factory=list)
    defaults: str = "crud"

    @property
    def allow(self) -> str:
        return ", ".join(self.methods)


_READ = {"GET": ("list", "list")}
_ITEM = {
    "GET": ("item", "read"),
    "POST": ("edit", "edit"),
    "PUT": ("edit", "edit"),
    "PATCH": ("edit", "edit"),
}


def _routes() -> list[Route]:
    ns = re.escape(NAMESPACE)

    def r(path: str) -> re.Pattern[str]:
        return re.compile(f"^/{ns}/{path}$")

    collection = {**_READ, "POST": ("create", "create")}
    return [
        Route(r("customers"), collection, _CUSTOMERS_PARAMS, "customers"),
        Route(r(r"customers/(?P<id>\d+)"), _ITEM, [_CONTEXT]),
        Route(r("orders"), collection, _ORDERS_PARAMS),
        Route(r(r"orders/(?P<id>\d+)"), _ITEM, [_CONTEXT]),
        Route(r(r"orders/(?P<parent>\d+)/refunds"), collection, _CRUD_PARAMS),
        Route(
            r(r"orders/(?P<parent>\d+)/refunds/(?P<id>\d+)"), {"GET": ("item", "read")}, [_CONTEXT]
        ),
        Route(r("products"), collection, _PRODUCTS_PARAMS),
        Route(r(r"products/(?P<id>\d+)"), _ITEM, [_CONTEXT]),
        Route(r(r"products/(?P<parent>\d+)/variations"), collection, _CRUD_PARAMS),
        Route(r(r"products/(?P<parent>\d+)/variations/(?P<id>\d+)"), _ITEM, [_CONTEXT]),
        Route(r("coupons"), collection, _COUPONS_PARAMS),
        Route(r(r"coupons/(?P<id>\d+)"), _ITEM, [_CONTEXT]),
        Route(r("webhooks"), collection, _WEBHOOKS_PARAMS, "webhooks"),
        Route(
            r(r"webhooks/(?P<id>\d+)"),
            {**_ITEM, "DELETE": ("delete", "delete")},
            [_CONTEXT, ("force", {"type": "boolean"})],
        ),
        Route(r("system_status"), _READ, [_CONTEXT]),
    ]


ROUTES: Final = _routes()
PERMISSION_ERRORS: Final = {
    "list": ("woocommerce_rest_cannot_view", "Sorry, you cannot list resources."),
    "read": ("woocommerce_rest_cannot_view", "Sorry, you cannot view this resource."),
    "create": ("woocommerce_rest_cannot_create", "Sorry, you are not allowed to create resources."),
    "edit": ("woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource."),
    "delete": (
        "woocommerce_rest_cannot_delete",
        "Sorry, you are not allowed to delete this resource.",
    ),
}
INVALID_ID: Final = {
    "customers": ("wc_user_invalid_id", "Invalid user ID."),
    "orders": ("woocommerce_rest_shop_order_invalid_id", "Invalid ID."),
    "products": ("woocommerce_rest_product_invalid_id", "Invalid ID."),
    "variations": ("woocommerce_rest_product_variation_invalid_id", "Invalid ID."),
    "coupons": ("woocommerce_rest_shop_coupon_invalid_id", "Invalid ID."),
    "refunds": ("woocommerce_rest_shop_order_refund_invalid_id", "Invalid ID."),
    "webhooks": ("woocommerce_rest_shop_webhook_invalid_id", "Invalid ID."),
}
HTML_404: Final = (
    '<!DOCTYPE html>\n<html lang="en-US"><head><meta charset="UTF-8" />'
    "<title>Page not found &#8211; Fake Store</title></head>"
    '<body class="error404"><h1>Page not found</h1></body></html>\n'
)
HTML_ERRORS: Final = {
    429: "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n"
    "<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n",
    502: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n",
    503: "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>"
    "\r\n</body>\r\n</html>\r\n",
}
# What WordPress answers on a fatal PHP error inside a REST request (wp_die JSON handler).
CRITICAL_ERROR: Final = {
    "code": "internal_server_error",
    "message": '<p>There has been a critical error on this website.</p><p><a href="https://'
    'wordpress.org/documentation/article/faq-troubleshooting/">Learn more about troubleshooting '
    "WordPress.</a></p>",
    "data": {"status": 500},
    "additional_errors": [],
}
