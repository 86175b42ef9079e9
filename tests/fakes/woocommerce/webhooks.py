"""The WooCommerce fake's webhooks: ``/wc/v3/webhooks`` (list, create, edit, delete) and the
ping WooCommerce delivers when one is created."""

from __future__ import annotations

import math
import re
from typing import Any

import aiohttp

from tests.fakes.woocommerce.endpoints import RestEndpoints
from tests.fakes.woocommerce.objects import (
    NAMESPACE,
    REST_TOKEN,
    WC_VERSION,
    WEBHOOK_HOOKS,
    WP_VERSION,
)
from tests.fakes.woocommerce.records import FakeClock, wc_date
from tests.fakes.woocommerce.wordpress import WpError, WpRequest


class WebhookEndpoints(RestEndpoints):
    """WooFake's webhook endpoints and ping delivery (a mixin, as RestEndpoints)."""

    clock: FakeClock
    deliver_pings: bool
    pings: list[tuple[str, int | str]]

    async def _webhooks(
        self,
        handler: str,
        match: dict[str, str],
        clean: dict[str, Any],
        params: dict[str, Any],
        req: WpRequest,
    ) -> tuple[int, Any, dict[str, str]]:
        if handler == "list":
            return self._list_webhooks(match, clean, req)
        if handler == "create":
            return await self._create_webhook(params)
        wid = int(match["id"])
        found = self.store.webhooks.get(wid)
        if found is None:
            code = "woocommerce_rest_shop_webhook_invalid_id"
            if handler == "edit":
                raise WpError(code, "ID is invalid.", 400)
            raise WpError(code, "Invalid ID.", 404)
        hook = found
        if handler == "edit":
            self._edit_webhook(wid, hook, params)
        elif handler == "delete":
            if not clean.get("force"):
                raise WpError(
                    "woocommerce_rest_trash_not_supported", "Webhooks do not support trashing.", 501
                )
            del self.store.webhooks[wid]
        return 200, self._webhook_out(hook), {}

    def _list_webhooks(
        self, match: dict[str, str], clean: dict[str, Any], req: WpRequest
    ) -> tuple[int, Any, dict[str, str]]:
        hooks = list(self.store.webhooks.values())
        if clean.get("status", "all") != "all":
            hooks = [h for h in hooks if h["status"] == clean["status"]]
        if clean.get("include"):
            hooks = [h for h in hooks if h["id"] in clean["include"]]
        hooks = [h for h in hooks if h["id"] not in clean.get("exclude", [])]
        desc = clean["order"] == "desc"
        if clean["orderby"] == "id":
            hooks.sort(key=lambda h: h["id"], reverse=desc)
        elif clean["orderby"] == "title":
            hooks.sort(key=lambda h: h["name"], reverse=desc)
        else:
            # ORDER BY date_created_gmt; rows of the same second keep id order (recording 24).
            hooks.sort(key=lambda h: h["id"])
            hooks.sort(key=lambda h: h["date_created_gmt"], reverse=desc)
        per_page, page = clean["per_page"], clean["page"]
        total, pages = len(hooks), math.ceil(len(hooks) / per_page)
        items = [self._webhook_out(h) for h in hooks[(page - 1) * per_page : page * per_page]]
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        link = self._pagination_link("webhooks", req, match, page, pages)
        if link:
            headers["Link"] = link
        return 200, items, headers

    async def _create_webhook(self, params: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        store = self.store
        topic = str(params.get("topic") or "")
        if not topic or not _valid_topic(topic.lower()):
            raise WpError(
                "woocommerce_rest_shop_webhook_invalid_topic",
                "Webhook topic is required and must be valid.",
                400,
            )
        url = str(params.get("delivery_url") or "")
        if not re.match(r"^https?://[^\s/]+", url):
            raise WpError(
                "woocommerce_rest_shop_webhook_invalid_delivery_url",
                "Webhook delivery URL must be a valid URL starting with http:// or https://.",
                400,
            )
        secret = str(params.get("secret") or "") or f"generated-{store.rng.getrandbits(128):032x}"
        status = str(params.get("status") or "active")
        name = str(params.get("name") or f"Webhook created on {wc_date(self.clock.now())}")
        hook = store.add_webhook(name, topic, url, secret, status)
        if self.deliver_pings:
            await self._ping(hook)
        location = f"{self.rest_root}/{NAMESPACE}/webhooks/{hook['id']}"
        return 201, self._webhook_out(hook), {"Location": location}

    def _edit_webhook(self, wid: int, hook: dict[str, Any], params: dict[str, Any]) -> None:
        if params.get("topic"):
            if not _valid_topic(str(params["topic"]).lower()):
                raise WpError(
                    "woocommerce_rest_shop_webhook_invalid_topic",
                    "Webhook topic must be valid.",
                    400,
                )
            resource, _, event = str(params["topic"]).partition(".")
            hook.update(topic=params["topic"], resource=resource, event=event)
            hook["hooks"] = WEBHOOK_HOOKS.get(hook["topic"], hook["hooks"])
        if params.get("status"):
            if params["status"] not in ("active", "paused", "disabled"):
                raise WpError(
                    "woocommerce_rest_shop_webhook_invalid_status",
                    "Webhook status must be valid.",
                    400,
                )
            hook["status"] = params["status"]
        for key in ("name", "delivery_url"):
            if params.get(key):
                hook[key] = params[key]
        if params.get("secret"):
            self.store.webhook_secrets[wid] = str(params["secret"])
        hook["date_modified"] = hook["date_modified_gmt"] = wc_date(self.clock.now())

    @staticmethod
    def _webhook_out(hook: dict[str, Any]) -> dict[str, Any]:
        out = dict(hook)
        base = f"{REST_TOKEN}/{NAMESPACE}/webhooks"
        out["_links"] = {
            "self": [
                {
                    "href": f"{base}/{hook['id']}",
                    "targetHints": {"allow": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                }
            ],
            "collection": [{"href": base}],
        }
        return out

    async def _ping(self, hook: dict[str, Any]) -> None:
        """``WC_Webhook::deliver_ping()``: inside the REST request, unsigned, 5 s timeout."""
        headers = {
            "User-Agent": f"WooCommerce/{WC_VERSION} Hookshot (WordPress/{WP_VERSION})",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    hook["delivery_url"],
                    data=f"webhook_id={hook['id']}",
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as resp,
            ):
                self.pings.append((hook["delivery_url"], resp.status))
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.pings.append((hook["delivery_url"], type(exc).__name__))


def _valid_topic(topic: str) -> bool:
    """``wc_is_webhook_valid_topic()`` as in 10.0.2 (any resource.event pair of the four)."""
    if topic.startswith("action."):
        hook = topic[len("action.") :]
        return hook.startswith(("woocommerce_", "wc_")) and hook not in (
            "woocommerce_login_credentials",
            "woocommerce_product_csv_importer_check_import_file_path",
            "woocommerce_webhook_should_deliver",
        )
    resource, _, event = topic.partition(".")
    return resource in ("coupon", "customer", "order", "product") and event in (
        "created",
        "updated",
        "deleted",
        "restored",
    )
