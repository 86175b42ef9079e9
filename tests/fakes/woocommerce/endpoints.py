"""The WooCommerce fake's REST endpoints: route matching and permission checks, listings
(filters, order, pagination links), single objects with their ``_links``, system_status, and
how answers are rendered (PHP's JSON, WordPress' headers)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.fakes.woocommerce.objects import HOME_TOKEN, NAMESPACE, REST_TOKEN, SYSTEM_STATUS, clone
from tests.fakes.woocommerce.records import Record
from tests.fakes.woocommerce.routes import INVALID_ID, PERMISSION_ERRORS, ROUTES, Route
from tests.fakes.woocommerce.store import FakeStore
from tests.fakes.woocommerce.wordpress import (
    Auth,
    WordPressUrls,
    WpError,
    WpRequest,
    build_query,
    php_json,
    php_list,
    php_var_name,
)

_Test = Callable[[Record], bool]


class RestEndpoints(WordPressUrls):
    """WooFake's wc/v3 endpoints but webhooks (a mixin: it reads the fake's store and URLs)."""

    store: FakeStore
    rest_enabled: bool
    wp_cron: bool

    def _match(self, route_path: str, method: str) -> tuple[Route, dict[str, str], str, str]:
        if self.rest_enabled:
            for route in ROUTES:
                match = route.pattern.match(route_path)
                if match is None:
                    continue
                wanted = "GET" if method == "HEAD" else method
                if wanted in route.methods:
                    handler, perm = route.methods[wanted]
                    return route, match.groupdict(), handler, perm
        raise WpError(
            "rest_no_route", "No route was found matching the URL and request method.", 404
        )

    @staticmethod
    def _resource(route_path: str) -> str:
        parts = route_path.strip("/").split("/")[2:]
        names = [p for p in parts if not p.isdigit()]
        return names[-1] if names else ""

    def _check_permission(
        self, route: Route, resource: str, match: dict[str, str], perm: str, auth: Auth
    ) -> None:
        allowed = auth.user is not None and auth.user.capable
        if allowed:
            return
        # CRUD item checks look the object up first: a missing object passes, then 404s
        # (WC_REST_CRUD_Controller::get_item_permissions_check).
        crud = resource in ("orders", "products", "variations", "coupons", "refunds")
        if crud and "id" in match and int(match["id"]) not in self.store.records[resource]:
            return
        code, message = PERMISSION_ERRORS[perm]
        # rest_authorization_required_code(): 401 when nobody is logged in, else 403.
        raise WpError(code, message, 403 if auth.user is not None else 401)

    def _record(self, resource: str, match: dict[str, str]) -> Record:
        record = self.store.records[resource].get(int(match["id"]))
        parent = match.get("parent")
        if record is None or (parent is not None and record.parent != int(parent)):
            code, message = INVALID_ID[resource]
            raise WpError(code, message, 404)
        return record

    def _list(
        self, resource: str, req: WpRequest, match: dict[str, str], p: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        records = list(self.store.records[resource].values())
        if "parent" in match:
            records = [r for r in records if r.parent == int(match["parent"])]
        tests = self._predicates(resource, p)
        records = [r for r in records if all(test(r) for test in tests)]
        records = self._sort(resource, records, p)
        per_page, page = p["per_page"], p["page"]
        offset = p.get("offset") or (page - 1) * per_page
        total = len(records)
        pages = math.ceil(total / per_page)
        items = [self._with_links(resource, r) for r in records[offset : offset + per_page]]
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        link = self._pagination_link(resource, req, match, page, pages)
        if link:
            headers["Link"] = link
        return 200, items, headers

    @staticmethod
    def _predicates(resource: str, p: dict[str, Any]) -> list[_Test]:
        """The query's filters, built once per request (a listing scans every record)."""
        tests = _id_tests(p)
        if resource == "customers":
            return tests + _customer_tests(p)
        by_kind = _order_tests(p) if resource == "orders" else _post_tests(p)
        return tests + by_kind + _date_tests(p)

    def _sort(self, resource: str, records: list[Record], p: dict[str, Any]) -> list[Record]:
        orderby, reverse = p.get("orderby", "date"), p.get("order", "desc") == "desc"
        if orderby == "include" and p.get("include"):
            position = {oid: i for i, oid in enumerate(p["include"])}
            return sorted(records, key=lambda r: position.get(r.obj["id"], 0), reverse=reverse)
        keys: dict[str, Callable[[Record], Any]] = {
            "date": lambda r: (r.created, r.obj["id"]),
            "registered_date": lambda r: (r.created, r.obj["id"]),
            "modified": lambda r: (r.modified, r.obj["id"]),
            "title": lambda r: (
                str(r.obj.get("name") or r.obj.get("code") or r.obj["id"]),
                r.obj["id"],
            ),
            "slug": lambda r: (
                str(r.obj.get("slug") or r.obj.get("code") or r.obj["id"]),
                r.obj["id"],
            ),
            # WP_User_Query orderby name is display_name, which defaults to the login.
            "name": lambda r: (str(r.obj.get("username", "")), r.obj["id"]),
            "price": lambda r: (Decimal(r.obj.get("price") or "0"), r.obj["id"]),
        }
        key = keys.get(orderby, lambda r: r.obj["id"])
        return sorted(records, key=key, reverse=reverse)

    def _pagination_link(
        self, resource: str, req: WpRequest, match: dict[str, str], page: int, pages: int
    ) -> str:
        # add_query_arg( $request->get_query_params(), rest_url( … ) ), then page=prev/next.
        query: dict[str, Any] = {}
        for key, value in req.query_pairs:
            if key == "rest_route":
                continue
            name = key.partition("[")[0]
            query[name] = req.get.get(php_var_name(name), value)
        if resource == "orders":
            # The orders controller writes its defaults back into the query params (recording 55).
            status = query.get("status", ["any"])
            query["status"] = php_list(status)
            query.setdefault("dp", "2")
            query.setdefault("context", "view")
        base_path = "/" + "/".join(
            [NAMESPACE, *(p for p in self._rest_base(resource, match).split("/") if p)]
        )
        links = []
        for rel, target in (("prev", min(page - 1, pages)), ("next", page + 1)):
            if (rel == "prev" and page > 1) or (rel == "next" and pages > page):
                q = dict(query)
                q["page"] = str(target)
                sep = "&" if "?" in self.rest_root else "?"
                url = f"{self.rest_root}{base_path}{sep}{build_query(q.items())}"
                links.append(f'<{url}>; rel="{rel}"')
        return ", ".join(links)

    @staticmethod
    def _rest_base(resource: str, match: dict[str, str]) -> str:
        if resource == "variations":
            return f"products/{match['parent']}/variations"
        if resource == "refunds":
            return f"orders/{match['parent']}/refunds"
        return resource

    def _with_links(self, resource: str, record: Record) -> dict[str, Any]:
        obj = dict(record.obj)
        oid = obj["id"]
        allow = {"allow": ["GET", "POST", "PUT", "PATCH", "DELETE"]}
        if resource == "variations":
            base = f"{REST_TOKEN}/{NAMESPACE}/products/{record.parent}"
            obj["_links"] = {
                "self": [{"href": f"{base}/variations/{oid}", "targetHints": allow}],
                "collection": [{"href": f"{base}/variations"}],
                "up": [{"href": base}],
            }
            return obj
        if resource == "refunds":
            base = f"{REST_TOKEN}/{NAMESPACE}/orders/{record.parent}"
            obj["_links"] = {
                "self": [
                    {"href": f"{base}/refunds/{oid}", "targetHints": {"allow": ["GET", "DELETE"]}}
                ],
                "collection": [{"href": f"{base}/refunds"}],
                "up": [{"href": base}],
            }
            return obj
        collection = f"{REST_TOKEN}/{NAMESPACE}/{resource}"
        links: dict[str, Any] = {
            "self": [{"href": f"{collection}/{oid}", "targetHints": allow}],
            "collection": [{"href": collection}],
        }
        if resource == "orders":
            links["email_templates"] = [
                {"embeddable": True, "href": f"{collection}/{oid}/actions/email_templates"}
            ]
            if obj.get("customer_id"):
                links["customer"] = [
                    {"href": f"{REST_TOKEN}/{NAMESPACE}/customers/{obj['customer_id']}"}
                ]
        obj["_links"] = links
        return obj

    def _system_status(self) -> dict[str, Any]:
        status = clone(SYSTEM_STATUS)
        status["security"]["secure_connection"] = self.is_ssl
        status["environment"]["wp_cron"] = self.wp_cron
        status["post_type_counts"] = [
            {"type": "product", "count": str(len(self.store.records["products"]))},
            {"type": "shop_coupon", "count": str(len(self.store.records["coupons"]))},
        ]
        return status

    def _render(self, data: Any) -> str:
        body = php_json(data)
        return body.replace(HOME_TOKEN, self.home_url.replace("/", "\\/")).replace(
            REST_TOKEN, self.rest_root.replace("/", "\\/")
        )

    def _base_headers(self, logged_in: bool) -> dict[str, str]:
        headers = {
            "X-Robots-Tag": "noindex",
            "Link": f'<{self.rest_root}/>; rel="https://api.w.org/"',
            "X-Content-Type-Options": "nosniff",
            "Access-Control-Expose-Headers": "X-WP-Total, X-WP-TotalPages, Link",
            "Access-Control-Allow-Headers": (
                "Authorization, X-WP-Nonce, Content-Disposition, Content-MD5, Content-Type"
            ),
        }
        if logged_in:
            # rest_send_nocache_headers() only for a logged-in user (recordings 15 vs 01).
            headers["Expires"] = "Wed, 11 Jan 1984 05:00:00 GMT"
            headers["Cache-Control"] = "no-cache, must-revalidate, max-age=0, no-store, private"
        else:
            headers["Vary"] = "Origin"
        return headers

    def _json(
        self, status: int, body: str, extra: Mapping[str, str], *, logged_in: bool = False
    ) -> web.Response:
        headers = self._base_headers(logged_in)
        headers.update(extra)  # a pagination Link replaces the api.w.org one, as in PHP
        return web.Response(
            status=status,
            body=body.encode(),
            headers=headers,
            content_type="application/json",
            charset="UTF-8",
        )

    def _error(
        self, error: WpError, auth: Auth, extra: Mapping[str, str] | None = None
    ) -> web.Response:
        return self._json(
            error.status, php_json(error.body()), extra or {}, logged_in=auth.user is not None
        )

    @staticmethod
    def _html(status: int, page: str, extra: Mapping[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status,
            body=page.encode(),
            headers=dict(extra or {}),
            content_type="text/html",
            charset="UTF-8",
        )


def _id_tests(p: dict[str, Any]) -> list[_Test]:
    tests: list[_Test] = []
    if p.get("include"):
        include = set(p["include"])
        tests.append(lambda r: r.obj["id"] in include)
    if p.get("exclude"):
        exclude = set(p["exclude"])
        tests.append(lambda r: r.obj["id"] not in exclude)
    return tests


def _customer_tests(p: dict[str, Any]) -> list[_Test]:
    tests: list[_Test] = []
    role = p.get("role", "customer")
    if role != "all":
        tests.append(lambda r: r.obj["role"] == role)
    if "email" in p:
        email = p["email"].lower()
        tests.append(lambda r: r.obj["email"].lower() == email)
    if "search" in p:
        needle = p["search"].lower()
        fields = ("email", "username", "first_name", "last_name")
        tests.append(lambda r: needle in " ".join(r.obj[k] for k in fields).lower())
    return tests


def _order_tests(p: dict[str, Any]) -> list[_Test]:
    tests: list[_Test] = []
    wanted = set(p.get("status", ["any"]))
    if "any" in wanted:
        hidden = {"trash", "auto-draft", "checkout-draft"}
        tests.append(lambda r: r.obj["status"] not in hidden)
    else:
        tests.append(lambda r: r.obj["status"] in wanted)
    if "customer" in p:
        customer = p["customer"]
        tests.append(lambda r: r.obj["customer_id"] == customer)
    if "product" in p:
        product = p["product"]
        tests.append(
            lambda r: any(
                product in (li["product_id"], li["variation_id"]) for li in r.obj["line_items"]
            )
        )
    if "search" in p:
        needle = p["search"].lower()
        tests.append(lambda r: needle in json.dumps(r.obj["billing"]).lower())
    return tests


def _post_tests(p: dict[str, Any]) -> list[_Test]:
    """Products, variations, coupons and refunds: status, type, sku, code, search."""
    tests: list[_Test] = []
    status = p.get("status", "any")
    if status == "any":
        tests.append(lambda r: r.obj.get("status") not in ("trash", "auto-draft"))
    else:
        tests.append(lambda r: r.obj.get("status") == status)
    if "type" in p:
        kind = p["type"]
        tests.append(lambda r: r.obj.get("type") == kind)
    if "sku" in p:
        skus = set(php_list(p["sku"]))
        tests.append(lambda r: r.obj.get("sku") in skus)
    if "code" in p:
        code = p["code"].lower()
        tests.append(lambda r: r.obj.get("code") == code)
    if "search" in p:
        needle = p["search"].lower()
        tests.append(
            lambda r: (
                needle
                in f"{r.obj.get('name', '')} {r.obj.get('code', '')} {r.obj.get('sku', '')}".lower()
            )
        )
    return tests


def _date_tests(p: dict[str, Any]) -> list[_Test]:
    # WP_Date_Query after/before: exclusive, one-second granularity. The site is UTC, so
    # dates_are_gmt picks a column with the same values.
    tests: list[_Test] = []
    if "after" in p:
        after = p["after"]
        tests.append(lambda r: r.created > after)
    if "before" in p:
        before = p["before"]
        tests.append(lambda r: r.created < before)
    if "modified_after" in p:
        modified_after = p["modified_after"]
        tests.append(lambda r: r.modified > modified_after)
    if "modified_before" in p:
        modified_before = p["modified_before"]
        tests.append(lambda r: r.modified < modified_before)
    return tests
