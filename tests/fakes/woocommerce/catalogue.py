"""The WooCommerce fake's records and the objects it generates: customers, products (with
variations) and coupons; `FakeStore` (store.py) adds orders, refunds, mutators and webhooks."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

from tests.fakes.woocommerce.objects import (
    CITIES,
    COLOURS,
    COUPON,
    CUSTOMER,
    FIRST_NAMES,
    GOODS,
    HOME_TOKEN,
    LAST_NAMES,
    PRODUCT_SIMPLE,
    PRODUCT_VARIABLE,
    RESOURCES,
    SIZES,
    VARIATION,
    as_money,
    clone,
    price_html,
    range_html,
    slugify,
)
from tests.fakes.woocommerce.records import FakeClock, Record, wc_date


class Catalogue:
    """The store's records and id counters, and the customers, products and coupons it makes."""

    def __init__(self, clock: FakeClock, seed: int = 1) -> None:
        self.clock = clock
        self.rng = random.Random(seed)
        self.records: dict[str, dict[int, Record]] = {name: {} for name in RESOURCES}
        self.webhooks: dict[int, dict[str, Any]] = {}
        self.webhook_secrets: dict[int, str] = {}
        self._next_user = 2  # user 1 is the administrator who owns the keys
        self._next_post = 10
        self._next_item = 1
        self._next_meta = 20
        self._next_webhook = 1
        # Ids that generated orders pick from (a list per add, not a scan per order).
        self._pick: dict[str, list[int]] = {"customers": [], "products": []}

    def _post_id(self) -> int:
        self._next_post += 1
        return self._next_post - 1

    def _meta(self, key: str, value: Any, display: bool = False) -> dict[str, Any]:
        self._next_meta += 1
        meta: dict[str, Any] = {"id": self._next_meta, "key": key, "value": value}
        if display:
            meta.update(display_key=key, display_value=value)
        return meta

    @staticmethod
    def _stamp(obj: dict[str, Any], created: int, modified: int) -> None:
        for key, ts in (("date_created", created), ("date_modified", modified)):
            if key in obj:
                obj[key] = wc_date(ts)
            if f"{key}_gmt" in obj:
                obj[f"{key}_gmt"] = wc_date(ts)

    @staticmethod
    def _apply(obj: dict[str, Any], changes: Mapping[str, Any]) -> None:
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(obj.get(key), dict):
                obj[key].update(value)
            else:
                obj[key] = value

    def add_customer(self, *, at: int | None = None, **fields: Any) -> dict[str, Any]:
        """A registered customer (role ``customer``); `fields` override generated values."""
        rng = self.rng
        at = self.clock.now() if at is None else at
        uid = self._next_user
        self._next_user += 1
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        username = f"{slugify(first.encode('ascii', 'ignore').decode()) or 'user'}{uid}"
        email = f"{username}@example.com"
        city, postcode, country = rng.choice(CITIES)
        phone = f"+336{rng.randint(10000000, 99999999)}" if rng.random() < 0.8 else ""
        obj = clone(CUSTOMER)
        address = {
            "first_name": first,
            "last_name": last,
            "company": "",
            "address_1": f"{rng.randint(1, 99)} Rue de Test",
            "address_2": "",
            "city": city,
            "postcode": postcode,
            "country": country,
            "state": "",
            "email": email,
            "phone": phone,
        }
        obj.update(
            id=uid,
            email=email,
            first_name=first,
            last_name=last,
            role="customer",
            username=username,
            is_paying_customer=False,
        )
        obj["billing"] = {k: address[k] for k in CUSTOMER["billing"]}
        obj["shipping"] = {k: address[k] for k in CUSTOMER["shipping"]}
        digest = hashlib.sha256(email.encode()).hexdigest()
        obj["avatar_url"] = f"https://secure.gravatar.com/avatar/{digest}?s=96&d=mm&r=g"
        obj["meta_data"] = [
            self._meta("default_password_nag", "1"),
            self._meta("brevo_opt_in", rng.choice(("yes", "no"))),
        ]
        if rng.random() < 0.3:
            obj["meta_data"].append(self._meta("loyalty_tier", rng.choice(("gold", "silver"))))
        self._apply(obj, fields)
        self._stamp(obj, at, at)
        self.records["customers"][uid] = Record(obj, at, at)
        self._pick["customers"].append(uid)
        return obj

    def add_product(
        self,
        kind: Literal["simple", "variable"] = "simple",
        *,
        at: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A published product; variable ones get 2–4 size variations."""
        rng = self.rng
        at = self.clock.now() if at is None else at
        pid = self._post_id()
        name = f"{rng.choice(COLOURS)} {rng.choice(GOODS)}"
        slug = f"{slugify(name)}-{pid}"
        sku = f"{slugify(name).upper()}-{pid}"
        base = Decimal(rng.randint(5, 120)) + Decimal(rng.choice(("0.00", "0.99", "0.50")))
        template = PRODUCT_VARIABLE if kind == "variable" else PRODUCT_SIMPLE
        obj = clone(template)
        obj.update(
            id=pid,
            name=name,
            slug=slug,
            permalink=f"{HOME_TOKEN}/product/{slug}/",
            sku=sku,
            total_sales=0,
            description=f"<p>{name}, made for tests.</p>\n",
            short_description=f"<p>A {name.lower()}.</p>\n",
            related_ids=[],
            meta_data=[],
        )
        if kind == "simple":
            regular = as_money(base)
            sale = as_money(base * Decimal("0.8")) if rng.random() < 0.2 else ""
            managed = rng.random() < 0.5
            obj.update(
                price=sale or regular,
                regular_price=regular,
                sale_price=sale,
                on_sale=bool(sale),
                manage_stock=managed,
                stock_quantity=rng.randint(0, 80) if managed else None,
                price_html=price_html(regular, sale),
            )
            if rng.random() < 0.3:
                obj["meta_data"] = [self._meta("brand", "Loopback")]
            self._apply(obj, fields)
            self._stamp(obj, at, at)
            self.records["products"][pid] = Record(obj, at, at)
            self._pick["products"].append(pid)
            return obj
        sizes = list(SIZES[: rng.randint(2, 4)])
        obj["attributes"] = [
            {
                "id": 0,
                "name": "Size",
                "slug": "Size",
                "position": 0,
                "visible": True,
                "variation": True,
                "options": sizes,
            }
        ]
        obj["default_attributes"] = [{"id": 0, "name": "Size", "option": sizes[0]}]
        self._stamp(obj, at, at)
        self.records["products"][pid] = Record(obj, at, at)
        self._pick["products"].append(pid)
        variations = [self._add_variation(obj, size, base, at) for size in sizes]
        obj["variations"] = [v["id"] for v in variations]
        self._sync_variable(obj)
        self._apply(obj, fields)
        return obj

    def _add_variation(
        self, parent: dict[str, Any], size: str, base: Decimal, at: int
    ) -> dict[str, Any]:
        rng = self.rng
        vid = self._post_id()
        regular = as_money(base + Decimal(SIZES.index(size)) * 3)
        sale = as_money(Decimal(regular) * Decimal("0.85")) if rng.random() < 0.25 else ""
        obj = clone(VARIATION)
        obj.update(
            id=vid,
            permalink=f"{HOME_TOKEN}/product/{parent['slug']}/?attribute_size={size}",
            sku=f"{parent['sku']}-{size}",
            price=sale or regular,
            regular_price=regular,
            sale_price=sale,
            on_sale=bool(sale),
            attributes=[{"id": 0, "name": "Size", "slug": "size", "option": size}],
            name=size,
            parent_id=parent["id"],
        )
        self._stamp(obj, at, at)
        self.records["variations"][vid] = Record(obj, at, at, parent=parent["id"])
        return obj

    def _sync_variable(self, product: dict[str, Any]) -> None:
        prices = sorted(
            Decimal(self.records["variations"][v].obj["price"]) for v in product["variations"]
        )
        low, high = as_money(prices[0]), as_money(prices[-1])
        product.update(
            price=low,
            on_sale=any(
                self.records["variations"][v].obj["on_sale"] for v in product["variations"]
            ),
            price_html=range_html(low, high),
        )

    def add_coupon(self, *, at: int | None = None, **fields: Any) -> dict[str, Any]:
        """A published coupon, percent or fixed cart."""
        rng = self.rng
        at = self.clock.now() if at is None else at
        cid = self._post_id()
        percent = rng.random() < 0.5
        amount = Decimal(rng.choice((5, 10, 15, 20)))
        obj = clone(COUPON)
        expires = wc_date(at + 365 * 86400) if rng.random() < 0.5 else None
        obj.update(
            id=cid,
            code=f"{'save' if percent else 'off'}{int(amount)}-{cid}",
            amount=as_money(amount),
            discount_type="percent" if percent else "fixed_cart",
            description=f"{int(amount)}{'%' if percent else ' EUR'} off",
            date_expires=expires,
            date_expires_gmt=expires,
            individual_use=rng.random() < 0.3,
            usage_limit_per_user=1 if rng.random() < 0.3 else None,
            minimum_amount="0.00" if percent else "20.00",
        )
        self._apply(obj, fields)
        self._stamp(obj, at, at)
        self.records["coupons"][cid] = Record(obj, at, at)
        return obj
