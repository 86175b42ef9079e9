"""`FakeStore`: the WooCommerce fake's data, no sockets: generated orders (with refunds), the
mutators tests use, and webhooks."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tests.fakes.woocommerce.catalogue import Catalogue
from tests.fakes.woocommerce.objects import (
    CITIES,
    HOME_TOKEN,
    ORDER,
    ORDER_STATUSES,
    REFUND,
    STATUS_WEIGHTS,
    WEBHOOK,
    WEBHOOK_HOOKS,
    as_money,
    as_number,
    as_plain,
    clone,
)
from tests.fakes.woocommerce.records import Record, wc_date


class FakeStore(Catalogue):
    """Customers, products (with variations), coupons, orders (with refunds) and webhooks."""

    # -- generation -----------------------------------------------------------------------

    def populate(
        self,
        *,
        customers: int,
        products: int,
        coupons: int,
        orders: int,
        variable_every: int = 4,
        spacing: int = 37,
    ) -> None:
        """Fill the store; objects are dated before now, one every ~`spacing` seconds."""
        now = self.clock.now()
        posts = products + coupons + orders
        t = now - (posts + customers + 1) * spacing
        for _ in range(customers):
            t += spacing
            self.add_customer(at=t)
        for i in range(products):
            t += spacing
            variable = variable_every and i % variable_every == variable_every - 1
            self.add_product("variable" if variable else "simple", at=t)
        for _ in range(coupons):
            t += spacing
            self.add_coupon(at=t)
        for _ in range(orders):
            t += self.rng.randint(spacing // 2, spacing * 3 // 2)
            self.add_order(at=min(t, now))

    def add_order(self, *, at: int | None = None, **fields: Any) -> dict[str, Any]:
        """An order of 1–3 products from the store, by a customer or a guest."""
        rng = self.rng
        at = self.clock.now() if at is None else at
        oid = self._post_id()
        users = self._pick["customers"]
        customer = (
            self.records["customers"][rng.choice(users)].obj
            if users and rng.random() < 0.8
            else None
        )
        if "customer_id" in fields:  # a given customer (0: a guest)
            chosen = fields.pop("customer_id")
            customer = self.records["customers"][chosen].obj if chosen else None
        if customer is not None:
            billing = {k: customer["billing"].get(k, "") for k in ORDER["billing"]}
            shipping = {k: customer["shipping"].get(k, "") for k in ORDER["shipping"]}
        else:
            city, postcode, country = rng.choice(CITIES)
            guest = rng.randint(1000, 9999)
            billing = dict.fromkeys(ORDER["billing"], "")
            billing.update(
                first_name="Guest",
                last_name=f"Buyer{guest}",
                address_1="12 Rue de Test",
                city=city,
                postcode=postcode,
                country=country,
                email=f"guest{guest}@example.com",
                phone="+33600000000",
            )
            shipping = dict.fromkeys(ORDER["shipping"], "")
        status = fields.pop("status", None) or rng.choices(ORDER_STATUSES, STATUS_WEIGHTS)[0]
        lines = self._order_lines(rng.randint(1, 3))
        subtotal = sum((Decimal(line["subtotal"]) for line in lines), Decimal(0))
        coupon_lines, discount = self._order_coupon(lines, subtotal)
        shipping_total = Decimal("4.90") if rng.random() < 0.7 else Decimal(0)
        total = subtotal - discount + shipping_total
        obj = clone(ORDER)
        key = "wc_order_" + "".join(
            rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789", k=13)
        )
        obj.update(
            id=oid,
            status=status,
            discount_total=as_money(discount),
            shipping_total=as_money(shipping_total),
            total=as_money(total),
            customer_id=customer["id"] if customer else 0,
            order_key=key,
            billing=billing,
            shipping=shipping,
            created_via=rng.choice(("checkout", "rest-api")),
            number=str(oid),
            meta_data=[self._meta("_brevo_test", f"o{oid}")] if rng.random() < 0.2 else [],
            line_items=lines,
            shipping_lines=[self._shipping_line(shipping_total)] if shipping_total else [],
            coupon_lines=coupon_lines,
            refunds=[],
            payment_url=f"{HOME_TOKEN}/checkout/order-pay/{oid}/?pay_for_order=true&key={key}",
        )
        self._stamp(obj, at, at)
        self.records["orders"][oid] = Record(obj, at, at)
        self._set_status(obj, status, at)
        if status == "refunded":
            self._refund(obj, at)
        self._apply(obj, fields)
        return obj

    def _order_lines(self, count: int) -> list[dict[str, Any]]:
        rng = self.rng
        ids = self._pick["products"]
        picked = [self.records["products"][i].obj for i in rng.sample(ids, min(count, len(ids)))]
        lines: list[dict[str, Any]] = []
        template = ORDER["line_items"][0]
        for product in (p for p in picked if p["status"] == "publish"):
            line = clone(template)
            variation: dict[str, Any] | None = None
            if product["type"] == "variable" and product["variations"]:
                variation = self.records["variations"][rng.choice(product["variations"])].obj
            item = variation or product
            quantity = rng.randint(1, 3)
            price = Decimal(item["price"] or "0")
            amount = price * quantity
            self._next_item += 1
            line.update(
                id=self._next_item,
                name=f"{product['name']} - {variation['name']}" if variation else product["name"],
                product_id=product["id"],
                variation_id=variation["id"] if variation else 0,
                quantity=quantity,
                subtotal=as_money(amount),
                total=as_money(amount),
                meta_data=(
                    [self._meta("size", variation["name"], display=True)] if variation else []
                ),
                sku=item["sku"],
                price=as_number(price),
                image={"id": 0, "src": ""} if variation else {"id": "", "src": ""},
                parent_name=product["name"] if variation else None,
            )
            if variation:
                line["meta_data"][0]["display_key"] = "Size"
            lines.append(line)
        return lines

    def _order_coupon(
        self, lines: list[dict[str, Any]], subtotal: Decimal
    ) -> tuple[list[dict[str, Any]], Decimal]:
        coupons = [r.obj for r in self.records["coupons"].values()]
        if not coupons or not lines or self.rng.random() >= 0.25:
            return [], Decimal(0)
        coupon = self.rng.choice(coupons)
        amount = Decimal(coupon["amount"])
        percent = coupon["discount_type"] == "percent"
        discount = (subtotal * amount / 100) if percent else min(amount, subtotal)
        discount = discount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        left = discount
        for i, line in enumerate(lines):
            share = (
                left
                if i == len(lines) - 1
                else (Decimal(line["subtotal"]) * discount / subtotal).quantize(
                    Decimal("0.01"), rounding=ROUND_HALF_UP
                )
            )
            left -= share
            line["total"] = as_money(Decimal(line["subtotal"]) - share)
            line["price"] = as_number(
                (Decimal(line["total"]) / line["quantity"]).quantize(Decimal("0.01"))
            )
        info = json.dumps(
            [coupon["id"], coupon["code"], "percent" if percent else None, as_number(amount)],
            separators=(",", ":"),
        )
        self._next_item += 1
        line = clone(ORDER["coupon_lines"][0])
        line.update(
            id=self._next_item,
            code=coupon["code"],
            discount=as_plain(discount),
            discount_tax="0",
            meta_data=[self._meta("coupon_info", info, display=True)],
            discount_type=coupon["discount_type"],
            nominal_amount=as_number(amount),
        )
        return [line], discount

    def _shipping_line(self, total: Decimal) -> dict[str, Any]:
        self._next_item += 1
        line: dict[str, Any] = clone(ORDER["shipping_lines"][0])
        line.update(id=self._next_item, total=as_money(total))
        return line

    def _set_status(self, obj: dict[str, Any], status: str, at: int) -> None:
        obj["status"] = status
        paid = status in ("processing", "completed", "refunded")
        if paid and obj["date_paid"] is None:
            obj["date_paid"] = obj["date_paid_gmt"] = wc_date(at)
        if not paid and status in ("pending", "on-hold", "failed"):
            obj["date_paid"] = obj["date_paid_gmt"] = None
        if status == "completed" and obj["date_completed"] is None:
            obj["date_completed"] = obj["date_completed_gmt"] = wc_date(at)
        elif status != "completed":
            obj["date_completed"] = obj["date_completed_gmt"] = None
        # WC_Order::is_editable(), needs_payment() (NOTES §2.2, newer order fields).
        obj["is_editable"] = status in ("pending", "on-hold", "auto-draft")
        obj["needs_payment"] = status in ("pending", "failed") and Decimal(obj["total"]) > 0
        obj["needs_processing"] = True

    def _refund(self, order: dict[str, Any], at: int) -> dict[str, Any]:
        rid = self._post_id()
        refund = clone(REFUND)
        lines = []
        for item in order["line_items"]:
            line = clone(item)
            self._next_item += 1
            line.update(
                id=self._next_item,
                quantity=-item["quantity"],
                subtotal=as_money(-Decimal(item["total"])),
                total=as_money(-Decimal(item["total"])),
                meta_data=[self._meta("_refunded_item_id", str(item["id"]), display=True)],
            )
            lines.append(line)
        reason = self.rng.choice(("Customer changed mind", "Damaged in transit", ""))
        refund.update(
            id=rid,
            amount=order["total"],
            reason=reason,
            refunded_by=1,
            refunded_payment=False,
            meta_data=[],
            line_items=lines,
            shipping_lines=[],
            tax_lines=[],
            fee_lines=[],
        )
        self._stamp(refund, at, at)
        self.records["refunds"][rid] = Record(refund, at, at, parent=order["id"])
        order["refunds"].append({"id": rid, "reason": reason, "total": f"-{order['total']}"})
        return refund

    # -- mutators used by tests -----------------------------------------------------------

    def update(self, resource: str, object_id: int, **changes: Any) -> dict[str, Any]:
        """Change top-level fields (dicts are merged) and bump ``date_modified`` to now."""
        record = self.records[resource][object_id]
        now = self.clock.now()
        if resource == "orders" and "status" in changes:
            self._set_status(record.obj, changes.pop("status"), now)
        self._apply(record.obj, changes)
        record.modified = now
        self._stamp(record.obj, record.created, now)
        if resource == "variations":
            parent = self.records["products"].get(record.parent)
            if parent is not None:
                self._sync_variable(parent.obj)
        return record.obj

    def delete(self, resource: str, object_id: int) -> None:
        """Delete permanently (``force=true``): no trash, no webhook, gone from every list."""
        self.records[resource].pop(object_id)
        if object_id in self._pick.get(resource, []):
            self._pick[resource].remove(object_id)
        children = {"orders": "refunds", "products": "variations"}.get(resource)
        if children:
            for child in [i for i, r in self.records[children].items() if r.parent == object_id]:
                del self.records[children][child]
        if resource == "variations":
            for parent in self.records["products"].values():
                if object_id in parent.obj.get("variations", []):
                    parent.obj["variations"].remove(object_id)

    def trash(self, resource: str, object_id: int) -> dict[str, Any]:
        """Move a post to the trash (what WooCommerce calls "deleted"); lists skip it."""
        return self.update(resource, object_id, status="trash")

    def refund(self, order_id: int) -> dict[str, Any]:
        """Fully refund an order now: a refund object, status refunded, modified bumped."""
        order = self.update("orders", order_id, status="refunded")
        return self._refund(order, self.clock.now())

    def add_webhook(
        self, name: str, topic: str, delivery_url: str, secret: str, status: str = "active"
    ) -> dict[str, Any]:
        """A webhook row as ``POST /webhooks`` stores it (date_modified null until saved again)."""
        wid = self._next_webhook
        self._next_webhook += 1
        now = wc_date(self.clock.now())
        hook = clone(WEBHOOK)
        resource, _, event = topic.partition(".")
        hook.update(
            id=wid,
            name=name,
            status=status,
            topic=topic,
            resource=resource,
            event=event,
            hooks=WEBHOOK_HOOKS.get(topic, [f"{event}" if resource == "action" else topic]),
            delivery_url=delivery_url,
            date_created=now,
            date_created_gmt=now,
            date_modified=None,
            date_modified_gmt=None,
        )
        self.webhooks[wid] = hook
        self.webhook_secrets[wid] = secret
        return hook
