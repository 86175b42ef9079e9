"""The Brevo webhook door: `POST /webhooks/brevo/{site}`, Brevo's marketing webhooks.

A thin shell around agent/core/brevo_hooks.py: Brevo tells the agent who unsubscribed, who
complained (spam) and who rejoined a list, and the door records it through the `ConsentStore`
port as suppressions of the site's Brevo account (docs/privacy.md). It answers 200 only once
they are stored (Brevo retries a failed delivery), 401 to a wrong secret, 404 to an unknown
site and 400 to a body it cannot read. The secret and the email never reach a log line.
The site, the secret and the Content-Type are checked before any of the body is read, and the
body is read through the `BodyGate` the WooCommerce door uses (agent/doors/webhooks.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiohttp import web

from agent.config import SiteConfig
from agent.core.brevo_hooks import (
    BrevoHookAction,
    Ignored,
    given_token,
    parse_delivery,
    token_matches,
)
from agent.core.proxies import client_address
from agent.doors.webhooks import HttpDoor, Refusal, json_refusal, refuse
from agent.store.ports import ConsentStore

__all__ = ["BrevoHookDoor"]

log = logging.getLogger("agent.brevo_hooks")

REQUESTS = "woobrevo_brevo_webhook_requests_total"
EVENTS = "woobrevo_brevo_webhook_events_total"


def _answer(status: int, **body: object) -> web.Response:
    return web.json_response(body, status=status)


class BrevoHookDoor(HttpDoor[ConsentStore]):
    """The request handler; `HttpServer` mounts it at `BREVO_HOOK_ROUTE`. The last delivery
    recorded for a site goes in `status.site(sid).brevo_hook`."""

    def _refused(self, site: SiteConfig, given: str | None) -> Refusal | None:
        """Why the request's secret is refused, or None when it is the site's."""
        secret = site.brevo.webhook_secret
        if not secret:
            why = "no brevo.webhook_secret is configured for this site"
        elif given is None:
            why = "no secret: send Authorization: Bearer <brevo.webhook_secret> or ?token=…"
        elif not token_matches(given, secret):
            why = "the secret does not match brevo.webhook_secret"
        else:
            return None
        return Refusal(401, "bad_secret", why, "bad_secret")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Check the site, the secret and the headers, read the body, record what Brevo
        reports, answer."""
        site_id = request.match_info["site"]
        site = self.sites.get(site_id)
        if site is None:
            message = f"no site {site_id[:60]!r} in the agent's config"
            return await refuse(request, Refusal(404, "unknown_site", message, "unknown_site"))
        given = given_token(request.headers.get("Authorization"), request.query.get("token"))
        sender = client_address(
            request.remote or "?", request.headers.getall("X-Forwarded-For", []), self.proxies
        )
        refusal = self._refused(site, given)
        refusal = refusal or json_refusal(request, "Brevo")
        read = await self.bodies.read(request, sender) if refusal is None else refusal
        if isinstance(read, Refusal):
            self.metrics.inc(REQUESTS, site=site_id, outcome=read.outcome)
            if read.outcome != "busy":  # the gate logs those, at a bounded rate
                log.warning(
                    "site %s brevo webhook refused from %s: %s", site_id, sender, read.message
                )
            return await refuse(request, read)
        now = self.clock()
        outcomes = parse_delivery(read, now)
        if isinstance(outcomes, str):
            self.metrics.inc(REQUESTS, site=site_id, outcome="unreadable")
            log.warning("site %s brevo webhook unreadable: %s", site_id, outcomes)
            return _answer(400, error="unreadable", message=outcomes)
        actions = [o for o in outcomes if isinstance(o, BrevoHookAction)]
        try:
            await self._record(site, actions)
        except Exception:
            # Brevo delivers the webhook again; nothing is half-kept (each call is an upsert).
            log.exception("site %s brevo webhook could not be stored", site_id)
            self.metrics.inc(REQUESTS, site=site_id, outcome="store_failed")
            return _answer(503, error="store_failed", message="could not store the delivery")
        return self._stored(site_id, outcomes, now)

    async def _record(self, site: SiteConfig, actions: Sequence[BrevoHookAction]) -> None:
        account = site.brevo.account
        for action in actions:
            if action.kind == "suppress":
                await self.store.suppress(
                    account, action.email, action.list_ids, action.reason, action.since
                )
            else:
                await self.store.lift(account, action.email, action.list_ids)

    def _stored(
        self, site_id: str, outcomes: Sequence[BrevoHookAction | Ignored], now: float
    ) -> web.Response:
        ignored: list[dict[str, object]] = []
        recorded = 0
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Ignored):
                self.metrics.inc(EVENTS, site=site_id, event="other", outcome="ignored")
                ignored.append({"index": index, "event": outcome.event, "reason": outcome.reason})
            else:
                recorded += 1
                self.metrics.inc(EVENTS, site=site_id, event=outcome.reason, outcome="recorded")
                seen = self.status.site(site_id).brevo_hook
                seen.last_delivery, seen.last_event = now, outcome.reason
        self.metrics.inc(REQUESTS, site=site_id, outcome="stored" if recorded else "ignored")
        log.info(
            "site %s brevo webhook: %d event(s) recorded, %d ignored",
            site_id,
            recorded,
            len(ignored),
        )
        return _answer(200, ok=True, recorded=recorded, ignored=ignored)
