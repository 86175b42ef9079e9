"""A site's REST client from its config: the one place the `connectors.woocommerce` keys become
`WooClient` arguments (the poller, backfill, `webhooks` and `doctor` all build it here)."""

from __future__ import annotations

from typing import Any

from agent.config import SiteConfig
from agent.woocommerce.client import WooClient
from agent.woocommerce.errors import KEYS_PAGE

__all__ = ["polling_problem", "site_client"]


def polling_problem(site: SiteConfig) -> str | None:
    """Why this site cannot be polled (None when it can)."""
    woo = site.woo
    if not woo.store_url:
        return f"site {site.id}: polling needs store_url"
    if not (woo.consumer_key and woo.consumer_secret):
        return (
            f"site {site.id}: polling needs consumer_key and consumer_secret (a Read key from "
            f"{KEYS_PAGE})"
        )
    return None


def site_client(site: SiteConfig, *, concurrency: int = 4, **options: Any) -> WooClient:
    """The site's REST client: its URL, keys, auth mode, TLS settings, timeout and budget.

    `options` override WooClient's keyword arguments (the doctor wants no budget, one retry).
    """
    woo = site.woo
    problem = polling_problem(site)
    if problem is not None:
        raise ValueError(problem)
    assert woo.store_url and woo.consumer_key and woo.consumer_secret
    settings: dict[str, Any] = {
        "api_version": woo.api_version,
        "auth": woo.auth,
        "verify_ssl": woo.verify_ssl,
        "ca_file": str(woo.ca_file) if woo.ca_file else None,
        "rate_limit_per_minute": woo.rate_limit_per_minute,
        "concurrency": concurrency,
        "timeout": woo.timeout,
        **options,
    }
    return WooClient(woo.store_url, woo.consumer_key, woo.consumer_secret, **settings)
