"""`woobrevo-agent webhooks install|status`: the store's native webhooks pointing at the agent;
`woobrevo-agent webhooks brevo`: what to paste into Brevo so it tells the agent who left.

The plan and the report are pure (agent/core/webhooks.py); this module only talks to the store
through agent/woocommerce/client.py and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from agent.config import Config, SiteConfig, load_config
from agent.core.brevo_hooks import BREVO_HOOK_EVENTS, brevo_hook_path
from agent.core.webhooks import install_topics, plan_install, webhook_path, webhook_report
from agent.errors import EXIT_FAIL, EXIT_OK
from agent.woocommerce.client import WooClient
from agent.woocommerce.errors import WooError
from agent.woocommerce.factory import site_client

__all__ = [
    "add_webhook_parsers",
    "brevo_hook_url",
    "delivery_url",
    "webhooks_brevo",
    "webhooks_install",
    "webhooks_status",
]


def delivery_url(cfg: Config, site: str) -> str | None:
    """Where WooCommerce delivers this site's webhooks: `agent.public_url` + the door's path."""
    base = cfg.agent.public_url
    return None if not base else base.rstrip("/") + webhook_path(site)


def brevo_hook_url(cfg: Config, site: str) -> str | None:
    """Where Brevo delivers this site's marketing webhooks: `agent.public_url` + the door's path."""
    base = cfg.agent.public_url
    return None if not base else base.rstrip("/") + brevo_hook_path(site)


def webhooks_brevo(args: argparse.Namespace) -> int:
    """Print the Brevo webhook to create for a site (the secret itself is never printed)."""
    cfg = load_config(args.config)
    site = cfg.site(args.site)
    url = brevo_hook_url(cfg, site.id)
    if url is None:
        print("set agent.public_url (the agent's address as Brevo reaches it, https://…)")
        return EXIT_FAIL
    if not site.brevo.webhook_secret:
        print(
            f"site {site.id}: set brevo.webhook_secret first (or env"
            " WOOBREVO_BREVO_WEBHOOK_SECRET): any long random string, e.g. the output of"
            " `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
        return EXIT_FAIL
    api_body = {
        "type": "marketing",
        "url": url,
        "events": list(BREVO_HOOK_EVENTS),
        "auth": {"type": "bearer", "token": "<the value of brevo.webhook_secret>"},
    }
    print(
        f"site {site.id}: in Brevo → Settings → Webhooks → Add a new webhook (Marketing):\n"
        f"  URL:            {url}\n"
        f"  events:         {', '.join(BREVO_HOOK_EVENTS)}"
        " (Unsubscribed, Contact added to list, Marked as spam)\n"
        "  authentication: Bearer token = the value of brevo.webhook_secret\n"
        f"Or through Brevo's API: POST {site.brevo.base_url.rstrip('/')}/webhooks with\n"
        f"  {json.dumps(api_body)}\n"
        "The agent then never adds back to a list anyone who left it in Brevo."
    )
    return EXIT_OK


def _client(site: SiteConfig) -> WooClient:
    return site_client(site)


def _prepare(args: argparse.Namespace) -> tuple[SiteConfig, str, list[str]] | str:
    cfg = load_config(args.config)
    site = cfg.site(args.site)
    url = delivery_url(cfg, site.id)
    if url is None:
        return "set agent.public_url (the agent's address as the store reaches it, https://…)"
    woo = site.woo
    if not (woo.store_url and woo.consumer_key and woo.consumer_secret):
        return (
            f"site {site.id}: webhooks need store_url, consumer_key and consumer_secret "
            "(a key with read/write permission)"
        )
    topics = install_topics(woo.sync.model_dump(), [w.topic for w in woo.webhooks])
    return site, url, topics


def webhooks_install(args: argparse.Namespace) -> int:
    """Register the site's topics on the store, reusing webhooks that already point here."""
    prepared = _prepare(args)
    if isinstance(prepared, str):
        print(prepared)
        return EXIT_FAIL
    site, url, topics = prepared
    secret = site.woo.webhook_secret
    if not secret:
        print(
            f"site {site.id}: set webhook_secret first (any long random string, e.g. the output of "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`), so the agent can "
            "check WooCommerce's signatures"
        )
        return EXIT_FAIL

    async def run() -> int:
        async with _client(site) as wc:
            existing = await wc.list_webhooks()
            plan = plan_install(existing, topics, url, secret, name=f"WooBrevo {site.id}")
            for step in plan:
                if step.kind == "create":
                    made = await wc.create_webhook(
                        step.fields["name"], step.topic, url, secret, status="active"
                    )
                    print(f"created  {step.topic:<18} #{made.get('id')} → {url}")
                elif step.kind == "update" and step.webhook_id is not None:
                    await wc.update_webhook(step.webhook_id, **step.fields)
                    print(f"reused   {step.topic:<18} #{step.webhook_id} (secret set, active)")
                else:
                    print(
                        f"duplicate {step.topic:<17} #{step.webhook_id}: also delivers here; "
                        "delete it in WooCommerce → Settings → Advanced → Webhooks"
                    )
        return EXIT_OK

    try:
        return asyncio.run(run())
    except WooError as exc:
        print(f"site {site.id}: {exc}")
        return EXIT_FAIL


def webhooks_status(args: argparse.Namespace) -> int:
    """Each wanted topic's webhook and its state; exit 1 when one is missing or not active."""
    prepared = _prepare(args)
    if isinstance(prepared, str):
        print(prepared)
        return EXIT_FAIL
    site, url, topics = prepared

    async def run() -> list[Any]:
        async with _client(site) as wc:
            return webhook_report(await wc.list_webhooks(), topics, url, site.id)

    try:
        rows = asyncio.run(run())
    except WooError as exc:
        print(f"site {site.id}: {exc}")
        return EXIT_FAIL
    print(f"site {site.id}: webhooks delivering to {url}")
    for row in rows:
        wid = f"#{row.webhook_id}" if row.webhook_id is not None else "-"
        print(
            f"  {row.topic:<18} {wid:<6} {row.status:<9}{'  ' + row.advice if row.advice else ''}"
        )
    return EXIT_OK if all(r.ok for r in rows) else EXIT_FAIL


def add_webhook_parsers(sub: Any) -> None:
    """Add `webhooks install|status` to the CLI's subparsers."""
    wh = sub.add_parser("webhooks", help="register or check the store's webhooks to the agent")
    wsub = wh.add_subparsers(dest="webhooks_command", required=True)
    for name, fn, help_text in (
        ("install", webhooks_install, "register the site's topics (reusing existing webhooks)"),
        (
            "status",
            webhooks_status,
            "show each webhook's state (WooCommerce disables failing ones)",
        ),
    ):
        p = wsub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="the YAML config file")
        p.add_argument("--site", required=True, help="the site id")
        p.set_defaults(fn=fn)
    br = wsub.add_parser(
        "brevo",
        help="print the Brevo marketing webhook to create (who unsubscribed or rejoined a list)",
    )
    br.add_argument("--config", required=True, help="the YAML config file")
    br.add_argument("--site", required=True, help="the site id")
    br.set_defaults(fn=webhooks_brevo)
