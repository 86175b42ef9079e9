"""The Brevo fake's eCommerce endpoints (NOTES.md §2): products, categories, orders, coupon
collections and coupons, activation, and GET /account."""

from __future__ import annotations

import uuid
from typing import Any

from tests.fakes.brevo.state import Answer, BrevoState, Call, error, now_iso


class EcommerceEndpoints(BrevoState):
    """Catalogue upserts (one and batch), orders, coupons, /ecommerce/activate, /account."""

    def _catalogue_problem(
        self, store: dict[str, dict[str, Any]], items: list[dict[str, Any]], update: bool, what: str
    ) -> Answer | None:
        """Why Brevo would refuse these products or categories, if it would."""
        seen: set[str] = set()
        for item in items:
            item_id = item["id"]
            if item_id in seen:
                return error(400, "invalid_parameter", f"Duplicate {what} id {item_id}")
            seen.add(item_id)
            if item_id in store and not update:
                # NOTES.md §2, Categories: with updateEnabled false an existing id is a 400.
                message = f"{what.capitalize()} {item_id} already exists; set updateEnabled"
                return error(400, "duplicate_parameter", message)
            if item_id not in store and not item.get("name"):
                return error(400, "missing_parameter", f"name is required to create a {what}")
        return None

    def _store_catalogue(
        self, store: dict[str, dict[str, Any]], items: list[dict[str, Any]], what: str
    ) -> int:
        """Create or update items; how many were created."""
        created = 0
        for item in items:
            fields = {k: v for k, v in item.items() if k != "updateEnabled"}
            if item["id"] in store:
                store[item["id"]] = {**store[item["id"]], **fields}
            else:
                created += 1
                store[item["id"]] = fields
                self._internal_ids[f"{what}:{item['id']}"] = next(self._ids)
        return created

    def _upsert_one(self, store: dict[str, dict[str, Any]], call: Call, what: str) -> Answer:
        update = bool(call.body.get("updateEnabled", False))
        refused = self._catalogue_problem(store, [call.body], update, what)
        if refused is not None:
            return refused
        if self._store_catalogue(store, [call.body], what):
            return 201, {"id": self._internal_ids[f"{what}:{call.body['id']}"]}
        return 204, None

    def _upsert_many(
        self, store: dict[str, dict[str, Any]], call: Call, key: str, what: str
    ) -> Answer:
        items = call.body[key]
        update = bool(call.body.get("updateEnabled", False))
        # NOTES.md §2: ≤100 per batch to create, ≤1000 with updateEnabled (products).
        most = 1000 if update and what == "product" else 100
        if len(items) > most:
            return error(400, "out_of_range", f"{key}: at most {most} per request")
        refused = self._catalogue_problem(store, items, update, what)
        if refused is not None:
            return refused
        created = self._store_catalogue(store, items, what)
        return 201, {"createdCount": created, "updatedCount": len(items) - created}

    def _upsert_product(self, call: Call) -> Answer:
        return self._upsert_one(self.products, call, "product")

    def _upsert_products(self, call: Call) -> Answer:
        return self._upsert_many(self.products, call, "products", "product")

    def _get_product(self, call: Call) -> Answer:
        product = self.products.get(call.params["id"])
        if product is None:
            return error(404, "document_not_found", "Product does not exist")
        now = now_iso()
        image = product.get("imageUrl", "")
        return 200, {
            **product,
            "createdAt": now,
            "modifiedAt": now,
            "s3ThumbAnalytics": image,
            "s3ThumbEditor": image,
        }

    def _upsert_category(self, call: Call) -> Answer:
        return self._upsert_one(self.categories, call, "category")

    def _upsert_categories(self, call: Call) -> Answer:
        return self._upsert_many(self.categories, call, "categories", "category")

    def _upsert_order(self, call: Call) -> Answer:
        self.orders[call.body["id"]] = call.body  # upsert by id (NOTES.md §2, Orders)
        return 204, None

    def _upsert_orders(self, call: Call) -> Answer:
        orders = call.body["orders"]
        if len(orders) > 1000:
            return error(400, "out_of_range", "orders: at most 1000 per request")
        for order in orders:
            self.orders[order["id"]] = order
        return 202, {"batchId": next(self._ids), "count": len(orders)}

    def _create_coupon_collection(self, call: Call) -> Answer:
        collection_id = str(uuid.uuid4())
        self.coupon_collections[collection_id] = {
            **call.body,
            "id": collection_id,
            "createdAt": now_iso(),
        }
        self.coupons[collection_id] = set()
        return 201, {"id": collection_id}

    def _get_coupon_collections(self, call: Call) -> Answer:
        # A page of collections; see _UNCHECKED_RESPONSES (fake.py) for why not the spec's shape.
        limit = call.query.get("limit", 50)
        offset = call.query.get("offset", 0)
        collections = [
            {
                **collection,
                "totalCoupons": len(self.coupons[collection_id]),
                "remainingCoupons": len(self.coupons[collection_id]),
            }
            for collection_id, collection in self.coupon_collections.items()
        ]
        return 200, {"collections": collections[offset : offset + limit], "count": len(collections)}

    def _create_coupons(self, call: Call) -> Answer:
        codes = self.coupons.get(call.body["collectionId"])
        if codes is None:
            return error(404, "document_not_found", "Coupon collection not found")
        codes.update(call.body["coupons"])
        return 204, None

    def _activate_ecommerce(self, call: Call) -> Answer:
        self.ecommerce_activated = True
        return 200, None

    def _get_account(self, call: Call) -> Answer:
        return 200, {
            "organization_id": "5f0e3a1b2c4d5e6f7a8b9c0d",
            "user_id": 1,
            "enterprise": False,
            "companyName": "WooBrevo Test Shop",
            "email": "owner@example.com",
            "firstName": "Test",
            "lastName": "Owner",
            "address": {
                "city": "Paris",
                "country": "France",
                "street": "1 rue",
                "zipCode": "75001",
            },
            "dateTimePreferences": {
                "timezone": "Europe/Paris",
                "timeFormat": "24",
                "dateFormat": "dd-mm-yyyy",
            },
            "plan": [{"type": "free", "creditsType": "sendLimit", "credits": 300}],
            "relay": {
                "enabled": True,
                "data": {
                    "userName": "owner@example.com",
                    "relay": "smtp-relay.brevo.com",
                    "port": 587,
                },
            },
            "marketingAutomation": {"enabled": False},
        }
