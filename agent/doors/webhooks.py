"""The webhook door: `POST /webhooks/woocommerce/{site}`, WooCommerce's native webhooks.

A thin shell around agent/core/webhooks.py. WooCommerce counts 200-302 as delivered and
anything else as a failure, and never retries (NOTES §1.1), so the answer is 200 only after
the commit, and 200 too for a verified body the agent cannot use (it is kept as a dead letter:
a non-2xx would only get the webhook disabled, and the poller has the object anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web

from agent.config import SiteConfig
from agent.core.proxies import Network, client_address
from agent.core.webhooks import Ignored, delivery_event, is_ping, verify_signature
from agent.metrics import Metrics, count_ingest
from agent.status import RuntimeStatus
from agent.store.ports import Ingest

__all__ = ["WebhookDoor"]

log = logging.getLogger("agent.webhooks")


def _answer(status: int, **body: object) -> web.Response:
    return web.json_response(body, status=status)


class WebhookDoor:
    """The request handler; `HttpServer` mounts it at `WEBHOOK_ROUTE`. The last delivery
    stored for a site goes in `status.site(sid).webhook`."""

    def __init__(
        self,
        store: Ingest,
        sites: Mapping[str, SiteConfig],
        status: RuntimeStatus,
        *,
        metrics: Metrics,
        clock: Callable[[], float],
        max_body: int,
        proxies: Sequence[Network] = (),
    ) -> None:
        self.store = store
        self.sites = sites
        self.status = status
        self.metrics = metrics
        self.clock = clock
        # One limit for everything the agent reads from the network (docs/protocol.md, Limits):
        # `agent.stream.max_message_bytes`.
        self.max_body = max_body
        self.proxies = proxies

    def reconfigure(self, *, proxies: Sequence[Network]) -> None:
        """A config reload (agent/reload.py). `sites` is the App's own mapping, updated in
        place: a site added is served, a removed one answered 404, new secrets checked."""
        self.proxies = proxies

    async def handle(self, request: web.Request) -> web.Response:
        """Verify, store, answer."""
        site_id = request.match_info["site"]
        metrics = self.metrics
        site = self.sites.get(site_id)
        if site is None:
            return _answer(
                404, error="unknown_site", message=f"no site {site_id!r} in the agent's config"
            )
        if request.content_length is not None and request.content_length > self.max_body:
            metrics.inc("woobrevo_webhook_requests_total", site=site_id, outcome="too_large")
            return _answer(
                413, error="too_large", message=f"bodies are limited to {self.max_body} bytes"
            )
        # aiohttp stops reading at client_max_size and answers 413 itself (chunked bodies).
        body = await request.read()
        topic = request.headers.get("X-WC-Webhook-Topic")
        signature = request.headers.get("X-WC-Webhook-Signature")
        if is_ping(topic, signature, body):
            # Unsigned by WooCommerce's design; it wants exactly 200 (NOTES §1.5).
            metrics.inc("woobrevo_webhook_requests_total", site=site_id, outcome="ping")
            log.info("site %s webhook ping (%s)", site_id, body.decode("ascii", "replace"))
            return _answer(200, ok=True, ping=True)
        secret = site.woo.webhook_secret
        if not secret or not verify_signature(body, secret, signature):
            metrics.inc("woobrevo_webhook_requests_total", site=site_id, outcome="bad_signature")
            why = (
                "no webhook_secret is configured for this site"
                if not secret
                else "signature mismatch"
            )
            sender = client_address(
                request.remote or "?", request.headers.getall("X-Forwarded-For", []), self.proxies
            )
            log.warning("site %s webhook refused from %s: %s", site_id, sender, why)
            return _answer(401, error="bad_signature", message=why)
        if not topic:
            metrics.inc("woobrevo_webhook_requests_total", site=site_id, outcome="no_topic")
            return _answer(400, error="no_topic", message="X-WC-Webhook-Topic is missing")
        outcome = delivery_event(
            topic,
            body,
            delivery_id=request.headers.get("X-WC-Webhook-Delivery-ID"),
            now=self.clock(),
        )
        if isinstance(outcome, Ignored):
            metrics.inc("woobrevo_webhook_requests_total", site=site_id, outcome="ignored")
            return _answer(200, ok=True, ignored=outcome.reason)
        try:
            if isinstance(outcome, tuple):
                rejection, raw = outcome
                await self.store.ingest(site_id, [], rejected=[(rejection, raw)])
            else:
                result = await self.store.ingest(site_id, [outcome])
        except Exception:
            # WooCommerce will not resend; the poller catches the object up.
            log.exception("site %s webhook %s could not be stored", site_id, topic)
            metrics.inc("woobrevo_webhook_requests_total", site=site_id, outcome="store_failed")
            return _answer(503, error="store_failed", message="could not store the delivery")
        if isinstance(outcome, tuple):
            count_ingest(metrics, "webhook", site_id, events=0, new=0, rejected=1)
            metrics.inc("woobrevo_webhook_requests_total", site=site_id, outcome="rejected")
            log.warning(
                "site %s webhook %s kept as a dead letter: %s", site_id, topic, rejection.message
            )
            return _answer(
                200, ok=True, rejected={"code": rejection.code, "message": rejection.message}
            )
        count_ingest(metrics, "webhook", site_id, events=1, new=result.new, rejected=0)
        metrics.inc("woobrevo_webhook_requests_total", site=site_id, outcome="stored")
        seen = self.status.site(site_id).webhook
        seen.last_delivery, seen.last_topic = self.clock(), topic
        return _answer(200, ok=True, stored=outcome.id, new=bool(result.new))
