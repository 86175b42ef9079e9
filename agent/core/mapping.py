"""From normalized WooCommerce REST v3 objects to Brevo request bodies. Pure.

Field choices cite reference/brevo/NOTES.md §2 and the request schemas of openapi.yaml.
Payment details (method, title, transaction id, card meta) are never read here.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Any

from agent.core.normalize import (
    brevo_datetime,
    get_path,
    money,
    phone_e164,
)
from agent.core.woo import COMPUTED_PATHS, is_date_path

__all__ = [
    "calendar_date",
    "category_bodies",
    "contact_attributes",
    "customer_view_of_order",
    "event_body",
    "event_properties",
    "order_body",
    "product_body",
]


# A unix timestamp in seconds, or in milliseconds as JavaScript writes them (docs/mapping.md).
_TIMESTAMP = re.compile(r"-?\d{1,13}(?:\.\d+)?")
_MS_FROM = 100_000_000_000  # as seconds this is the year 5138: larger values are milliseconds


def calendar_date(value: Any) -> str | None:
    """A date value as Brevo's `date` attribute type takes it, YYYY-MM-DD, or None if unreadable.

    ISO 8601 dates and datetimes give the calendar date as written: WooCommerce's `date_created`
    is the store's local time, `date_created_gmt` UTC, and a meta value with an offset is read in
    its own offset. Unix timestamps (numbers, or strings of digits other than eight) give the
    UTC date.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        # Eight digits are ISO 8601's basic form, YYYYMMDD (ACF's date picker stores that).
        if _TIMESTAMP.fullmatch(text) and len(text) != 8:
            return _from_timestamp(float(text))
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            pass
        try:
            # Python 3.11 reads ISO 8601 with "T" or a space, "Z", offsets and fractions.
            return datetime.fromisoformat(text).date().isoformat()
        except ValueError:
            return None
    if isinstance(value, int | float):
        return _from_timestamp(float(value))
    return None


def _from_timestamp(seconds: float) -> str | None:
    if seconds == 0:
        return None  # WordPress writes 0 for "never", not for 1 January 1970
    if abs(seconds) >= _MS_FROM:
        seconds /= 1000
    try:
        return datetime.fromtimestamp(seconds, UTC).date().isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def _attr_value(value: Any) -> Any:
    """Brevo attribute values: number, string, boolean or list of strings (openapi: /contacts)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    # Anything else (objects, mixed lists) is sent as its JSON text rather than dropped.
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def contact_attributes(
    source: dict[str, Any],
    mapping: dict[str, str],
    computed: dict[str, Any],
    *,
    country: str | None,
    only_computed: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """Attributes for a contact, and warnings (e.g. a phone that could not be read)."""
    attrs: dict[str, Any] = {}
    warnings: list[str] = []
    for path, attr in mapping.items():
        if path == "email":
            continue
        if path in COMPUTED_PATHS:
            value = computed.get(path)
        elif only_computed:
            continue
        else:
            value = get_path(source, path)
        if is_date_path(path) and value not in (None, ""):
            # A `date` attribute takes only YYYY-MM-DD (reference/brevo/NOTES.md, Attributes);
            # an unreadable value drops only that attribute, never the contact.
            day = calendar_date(value)
            if day is None:
                warnings.append(f"{path} {value!r} is not a date; {attr} not sent")
                continue
            value = day
        if attr in ("SMS", "WHATSAPP", "LANDLINE_NUMBER") and value not in (None, ""):
            e164 = phone_e164(value, country)
            if e164 is None:
                # Brevo refuses the whole contact over a bad SMS: drop only that attribute.
                warnings.append(
                    f"phone {value!r} is not a valid number for country {country or '?'}; {attr} not sent"
                )
                continue
            value = e164
        value = _attr_value(value)
        if value is not None:
            attrs[attr] = value
    return attrs, warnings


def customer_view_of_order(order: dict[str, Any]) -> dict[str, Any]:
    """A customer-shaped view of an order's billing data, so one mapping serves both."""
    billing = order.get("billing") or {}
    return {
        "id": order.get("customer_id") or 0,
        "email": billing.get("email"),
        "first_name": billing.get("first_name"),
        "last_name": billing.get("last_name"),
        "billing": billing,
        "shipping": order.get("shipping") or {},
        "meta_data": [],
    }


def product_body(
    product: dict[str, Any], id_prefix: str, *, deleted_at: str | None = None
) -> dict[str, Any]:
    """POST /products body (variations carry parentId)."""
    pid = f"{id_prefix}{product['id']}"
    if deleted_at is not None:
        # POST /products requires `name` even for an update (openapi: /products); a deleted
        # object's body ({"id": N}, NOTES §1.3) has none, so the last known one is passed in.
        return {
            "id": pid,
            "name": str(product.get("name") or f"#{product['id']}"),
            "isDeleted": True,
            "deletedAt": deleted_at,
            "updateEnabled": True,
        }
    name: Any = product.get("name")
    if not name:
        attrs = product.get("attributes") or []
        name = (
            ", ".join(f"{a.get('name')}: {a.get('option')}" for a in attrs if isinstance(a, dict))
            or f"#{product['id']}"
        )
    body: dict[str, Any] = {"id": pid, "name": str(name), "updateEnabled": True}
    if product.get("permalink"):
        body["url"] = str(product["permalink"])
    image = product.get("image")
    images = product.get("images") or []
    if isinstance(image, dict) and image.get("src"):
        body["imageUrl"] = str(image["src"])
    elif images and isinstance(images[0], dict) and images[0].get("src"):
        body["imageUrl"] = str(images[0]["src"])
    if product.get("sku"):
        body["sku"] = str(product["sku"])
    price = money(product.get("price"))
    if price is not None:
        body["price"] = price
    cats = [
        f"{id_prefix}{c['id']}"
        for c in product.get("categories") or []
        if isinstance(c, dict) and "id" in c
    ]
    if cats:
        body["categories"] = cats
    parent = product.get("parent_id") or _parent_from_links(product)
    if parent:
        body["parentId"] = f"{id_prefix}{parent}"
    stock = product.get("stock_quantity")
    if isinstance(stock, int | float) and not isinstance(stock, bool):
        body["stock"] = stock
    if product.get("status") == "trash":
        body["isDeleted"] = True
    return body


def _parent_from_links(product: dict[str, Any]) -> int | None:
    """Variations in older wc/v3 bodies carry no parent_id, only `_links.up` (docs example 732)."""
    links = product.get("_links")
    if not isinstance(links, dict) or "/variations/" not in str(
        (links.get("self") or [{}])[0].get("href", "")
    ):
        return None
    up = links.get("up") or []
    href = up[0].get("href", "") if up and isinstance(up[0], dict) else ""
    tail = str(href).rstrip("/").rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def category_bodies(product: dict[str, Any], id_prefix: str) -> list[dict[str, Any]]:
    """POST /categories bodies for a product's categories."""
    out = []
    for c in product.get("categories") or []:
        if isinstance(c, dict) and "id" in c and c.get("name"):
            out.append(
                {"id": f"{id_prefix}{c['id']}", "name": str(c["name"]), "updateEnabled": True}
            )
    return out


def order_body(order: dict[str, Any], email: str | None, id_prefix: str) -> dict[str, Any]:
    """POST /orders/status body: status, amount, products, coupons, billing (no payment data)."""
    billing = order.get("billing") or {}
    created = brevo_datetime(order.get("date_created_gmt")) or brevo_datetime(
        order.get("date_created")
    )
    updated = brevo_datetime(order.get("date_modified_gmt")) or created
    products = []
    for item in order.get("line_items") or []:
        if not isinstance(item, dict):
            continue
        qty = item.get("quantity") or 0
        price = money(item.get("price"))
        if price is None:
            total = money(item.get("total")) or 0.0
            price = round(total / qty, 2) if qty else total
        line: dict[str, Any] = {
            "productId": f"{id_prefix}{item.get('product_id')}",
            "quantity": qty,
            "price": price,
        }
        if item.get("variation_id"):
            line["variantId"] = f"{id_prefix}{item['variation_id']}"
        products.append(line)
    body: dict[str, Any] = {
        "id": f"{id_prefix}{order['id']}",
        "createdAt": created,
        "updatedAt": updated,
        "status": str(order.get("status") or "unknown"),
        "amount": money(order.get("total")) or 0.0,
        "products": products,
    }
    if email:
        body["identifiers"] = {"email_id": email}
    coupons = [
        str(c["code"])
        for c in order.get("coupon_lines") or []
        if isinstance(c, dict) and c.get("code")
    ]
    if coupons:
        body["coupons"] = coupons
    bill: dict[str, Any] = {}
    address = ", ".join(str(billing[k]) for k in ("address_1", "address_2") if billing.get(k))
    for key, value in (
        ("address", address),
        ("city", billing.get("city")),
        ("countryCode", billing.get("country")),
        ("postCode", billing.get("postcode")),
        ("region", billing.get("state")),
        ("phone", phone_e164(billing.get("phone"), billing.get("country")) or billing.get("phone")),
    ):
        if value:
            bill[key] = str(value)
    if bill:
        body["billing"] = bill
    return body


def event_body(
    name: str, email: str, properties: dict[str, Any], *, when: str | None
) -> dict[str, Any]:
    """POST /events body, with the object's `event_properties` (the same for every topic of
    one change: computed once by the caller)."""
    body: dict[str, Any] = {
        "event_name": name,
        "identifiers": {"email_id": email},
        "event_properties": properties,
    }
    if when:
        body["event_date"] = when
    return body


def event_properties(resource: str, obj: dict[str, Any], id_prefix: str) -> dict[str, Any]:
    """The `event_properties` of an object's Brevo events: its id, and for an order its status,
    currency and the nested `order` (amounts, items, coupons, refunded). Top-level properties
    may only be string or integer (openapi: /events), so amounts go inside `order`."""
    props: dict[str, Any] = {f"{resource}_id": int(obj.get("id") or 0)}
    if resource == "order":
        props["status"] = str(obj.get("status") or "")
        if obj.get("currency"):
            props["currency"] = str(obj["currency"])
        props["order"] = {
            "id": f"{id_prefix}{obj.get('id')}",
            "number": str(obj.get("number") or obj.get("id")),
            "total": money(obj.get("total")) or 0.0,
            "items": [
                {
                    "product_id": f"{id_prefix}{i.get('product_id')}",
                    "name": str(i.get("name") or ""),
                    "quantity": i.get("quantity") or 0,
                    "price": money(i.get("price")) or 0.0,
                }
                for i in obj.get("line_items") or []
                if isinstance(i, dict)
            ],
            "coupons": [
                str(c.get("code")) for c in obj.get("coupon_lines") or [] if isinstance(c, dict)
            ],
            "refunded": round(
                sum(
                    abs(money(r.get("total")) or 0.0)
                    for r in obj.get("refunds") or []
                    if isinstance(r, dict)
                ),
                2,
            ),
        }
    return props
