"""The Brevo webhook door: `POST /webhooks/brevo/{site}`, Brevo's marketing webhooks.

A thin shell around agent/core/brevo_hooks.py: Brevo tells the agent who unsubscribed, who
complained (spam) and who rejoined a list, and the door records it through the `ConsentStore`
port as suppressions of the site's Brevo account (docs/privacy.md). It answers 200 only once
they are stored (Brevo retries a failed delivery), 401 to a wrong secret, 404 to an unknown
site and 400 to a body it cannot read. The secret and the email never reach a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web

from agent.config import SiteConfig
from agent.core.brevo_hooks import (
    BrevoHookAction,
    Ignored,
    given_token,
    parse_delivery,
    token_matches,
)
from agent.core.proxies import Network, client_address
from agent.metrics import Metrics
from agent.status import RuntimeStatus
from agent.store.ports import ConsentStore

__all__ = ["BrevoHookDoor"]

log = logging.getLogger("agent.brevo_hooks")

REQUESTS = "woobrevo_brevo_webhook_requests_total"
EVENTS = "woobrevo_brevo_webhook_events_total"


def _answer(status: int, **body: object) -> web.Response:
    return web.json_response(body, status=status)


class BrevoHookDoor:
    """The request handler; `HttpServer` mounts it at `BREVO_HOOK_ROUTE`. The last delivery
    recorded for a site goes in `status.site(sid).brevo_hook`."""

    def __init__(
        self,
        store: ConsentStore,
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
        self.max_body = max_body
        self.proxies = proxies

    def reconfigure(self, *, proxies: Sequence[Network]) -> None:
        """A config reload (agent/reload.py). `sites` is the App's own mapping, updated in
        place: a site added is served, a removed one answered 404, new secrets checked."""
        self.proxies = proxies

    def _refused(self, site: SiteConfig, given: str | None) -> str | None:
        """Why the request's secret is refused, or None when it is the site's."""
        secret = site.brevo.webhook_secret
        if not secret:
            return "no brevo.webhook_secret is configured for this site"
        if given is None:
            return "no secret: send Authorization: Bearer <brevo.webhook_secret> or ?token=…"
        if not token_matches(given, secret):
            return "the secret does not match brevo.webhook_secret"
        return None

    async def handle(self, request: web.Request) -> web.Response:
        """Check the secret, record what Brevo reports, answer."""
        site_id = request.match_info["site"]
        site = self.sites.get(site_id)
        if site is None:
            return _answer(
                404, error="unknown_site", message=f"no site {site_id!r} in the agent's config"
            )
        given = given_token(request.headers.get("Authorization"), request.query.get("token"))
        why = self._refused(site, given)
        if why is not None:
            self.metrics.inc(REQUESTS, site=site_id, outcome="bad_secret")
            sender = client_address(
                request.remote or "?", request.headers.getall("X-Forwarded-For", []), self.proxies
            )
            log.warning("site %s brevo webhook refused from %s: %s", site_id, sender, why)
            return _answer(401, error="bad_secret", message=why)
        if request.content_length is not None and request.content_length > self.max_body:
            self.metrics.inc(REQUESTS, site=site_id, outcome="too_large")
            return _answer(
                413, error="too_large", message=f"bodies are limited to {self.max_body} bytes"
            )
        # aiohttp stops reading at client_max_size and answers 413 itself (chunked bodies).
        now = self.clock()
        outcomes = parse_delivery(await request.read(), now)
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
