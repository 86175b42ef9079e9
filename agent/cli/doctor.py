"""`woobrevo-agent doctor --site ID`: one check per known failure, each with its fix.

The rows follow the README's troubleshooting table: the store's REST API, TLS, keys (and a host
that strips the Authorization header), permissions, slowness, pagination headers, mapped custom
fields, webhooks, WP-Cron (which delivers them), the plugin's stream,
and on the Brevo side the key, the lists and the attributes (`--fix` creates missing attributes
with the type the agent sends). Verdicts and the table are pure (agent/core/checks.py); this
module makes the requests. Messages for store failures come from the REST client's error tree
(agent/woocommerce/errors.py), which already says what to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from agent.config import Config, SiteConfig
from agent.core.checks import (
    Check,
    Result,
    attribute_problems,
    cron_check,
    mapped_meta_keys,
    missing_lists,
    missing_meta,
    wanted_attributes,
)
from agent.core.protocol import STREAM_PATH
from agent.core.rest import fields_for
from agent.core.webhooks import install_topics, webhook_path, webhook_report
from agent.core.woo import AuthMode, auth_problem
from agent.doors.stream import split_hostport
from agent.forward.brevo import BrevoClient
from agent.store.open import open_store, store_exists
from agent.woocommerce.client import WooClient
from agent.woocommerce.errors import (
    WooAuthError,
    WooError,
    WooPermissionError,
    WooSSLError,
    WooTimeout,
)
from agent.woocommerce.factory import polling_problem, site_client

__all__ = ["agent_status", "run_doctor"]

log = logging.getLogger("agent.doctor")

SLOW_AFTER = 5.0  # seconds for one page of 100 orders; polling asks for one a minute at least
SAMPLE = 20  # newest customers sampled for mapped meta keys
FIX_STREAM = (
    "on the store, open WooCommerce → WooBrevo: check the agent URL ({url}) and the token "
    "(`woobrevo-agent token create --site {site}` makes a new one), press Test connection; the "
    "plugin sends a heartbeat every WP-Cron minute, so WP-Cron must run (a real cron calling "
    "wp-cron.php if DISABLE_WP_CRON is set)"
)


def _now() -> float:
    return time.monotonic()


async def agent_status(cfg: Config, wait: float = 2.0) -> dict[str, Any] | None:
    """A running agent's /status (at `agent.listen.http`), or None when none answers."""
    host, port = split_hostport(cfg.agent.listen.http)
    if port == 0:
        return None
    if host in (None, "", "0.0.0.0", "::"):
        host = "127.0.0.1"
    url = f"http://{host}:{port}/status"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=wait)) as session,
            session.get(url) as resp,
        ):
            if resp.status != 200:
                return None
            data = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def run_doctor(
    cfg: Config,
    site_id: str,
    *,
    fix: bool = False,
    slow_after: float = SLOW_AFTER,
    sample: int = SAMPLE,
    clock: Callable[[], float] = _now,
) -> list[Check]:
    """Every check for one site, in table order."""
    site = cfg.site(site_id)
    status = await agent_status(cfg)
    checks = await _store_checks(cfg, site, slow_after, sample, clock, status)
    checks.append(await _stream_check(cfg, site, status))
    checks.extend(await _brevo_checks(site, fix))
    return checks


# -- the store ----------------------------------------------------------------------------------

_STORE_ROWS = (
    "REST API reachable",
    "TLS certificate",
    "API keys",
    "key permissions",
    "response time",
    "pagination headers",
    "custom fields (meta)",
    "webhooks",
    "WP-Cron",
)


def _skip_rest(checks: list[Check], why: str) -> list[Check]:
    done = {c.name for c in checks}
    return checks + [Check(name, Result.SKIP, why) for name in _STORE_ROWS if name not in done]


def _client(site: SiteConfig, **options: Any) -> WooClient:
    return site_client(
        site,
        rate_limit_per_minute=None,  # a handful of requests; the host's limit is not at stake
        max_retries=1,  # a diagnosis reports the first failure instead of waiting it out
        backoff_max=2.0,
        **options,
    )


def _where(cfg: Config, site: SiteConfig) -> str:
    """Where a woocommerce key of this site goes in the config file."""
    if not cfg.sites:
        return "under `connectors.woocommerce`"
    return f"in the entry of `sites` with id {site.id} (or under `connectors.woocommerce` for all)"


async def _keys_refused(cfg: Config, site: SiteConfig, wc: WooClient, exc: WooAuthError) -> str:
    """The API keys row's detail; tells a host that strips the Authorization header apart.

    Such a host (Apache running PHP as CGI/FastCGI without ``CGIPassAuth On``) hands PHP no
    Basic credentials, so WooCommerce answers as if no key was sent (401
    ``woocommerce_rest_cannot_view``), while the same key in the query string gets through
    (``WC_REST_Authentication::perform_basic_authentication`` reads ``$_GET`` first).
    """
    ignored = exc.code.startswith("woocommerce_rest_cannot_") or exc.code == "rest_forbidden"
    if wc.auth != "basic" or not wc.store_url.startswith("https:") or not ignored:
        return str(exc)
    async with _client(site, auth="query") as probe:
        try:
            await probe.get("orders", {"per_page": 1, "_fields": "id"})
        except WooError:
            return str(exc)  # the key itself is refused: the first message says why
    return (
        f"the host strips the Authorization header: with Basic auth WooCommerce saw no key "
        f'({exc.status} {exc.code}: "{exc.wc_message}"), and the same key in the query string '
        f"was accepted. Set `auth: query` {_where(cfg, site)}. Or have the host pass the header "
        'to PHP (Apache: `CGIPassAuth On`, or `SetEnvIf Authorization "(.*)" '
        "HTTP_AUTHORIZATION=$1` in .htaccess) and keep `auth: auto`: query-string keys end up "
        "in the host's access logs (`auth: oauth1` also works over https and never sends the "
        "secret)"
    )


def _tls_row(site: SiteConfig, auth: AuthMode) -> Check:
    url = site.woo.store_url or ""
    problem = auth_problem(url, auth)
    if problem is not None:
        return Check("TLS certificate", Result.WARN, f"the store is http://: {problem}")
    if not url.startswith("https:"):
        return Check(
            "TLS certificate",
            Result.WARN,
            "the store is http://: the agent signs requests (OAuth 1.0a) so the secret never "
            "travels, but the data does in clear; use https:// when the store has a certificate",
        )
    if not site.woo.verify_ssl:
        return Check(
            "TLS certificate",
            Result.WARN,
            "`verify_ssl: false`: the certificate is not checked (testing only); set `ca_file` to "
            "the CA that signed it instead",
        )
    return Check("TLS certificate", Result.PASS, "certificate verified")


async def _store_checks(
    cfg: Config,
    site: SiteConfig,
    slow_after: float,
    sample: int,
    clock: Callable[[], float],
    status: dict[str, Any] | None,
) -> list[Check]:
    problem = polling_problem(site)
    if problem is not None:
        return _skip_rest(
            [
                Check(
                    "REST API reachable",
                    Result.FAIL,
                    f"{problem}; doctor, polling and backfill need it",
                )
            ],
            "needs the store's URL and keys",
        )
    checks: list[Check] = []
    async with _client(site) as wc:
        fields = ",".join(fields_for("orders", site.woo.customer_mapping))
        started = clock()
        try:
            page = await wc.get("orders", {"per_page": 100, "page": 1, "_fields": fields})
        except WooSSLError as exc:
            checks.append(Check("REST API reachable", Result.SKIP, "no TLS connection"))
            checks.append(Check("TLS certificate", Result.FAIL, str(exc)))
            return _skip_rest(checks, "the TLS connection failed")
        except WooAuthError as exc:
            checks.append(Check("REST API reachable", Result.PASS, "WooCommerce answered"))
            checks.append(_tls_row(site, wc.auth))
            checks.append(Check("API keys", Result.FAIL, await _keys_refused(cfg, site, wc, exc)))
            return _skip_rest(checks, "needs valid API keys")
        except WooPermissionError as exc:
            checks.append(Check("REST API reachable", Result.PASS, "WooCommerce answered"))
            checks.append(_tls_row(site, wc.auth))
            checks.append(Check("API keys", Result.PASS, f"accepted ({wc.auth})"))
            checks.append(Check("key permissions", Result.FAIL, str(exc)))
            return _skip_rest(checks, "needs a key that may read")
        except WooTimeout as exc:
            checks.append(Check("REST API reachable", Result.FAIL, str(exc)))
            checks.append(Check("response time", Result.FAIL, str(exc)))
            return _skip_rest(checks, "the store did not answer")
        except WooError as exc:
            checks.append(Check("REST API reachable", Result.FAIL, str(exc)))
            return _skip_rest(checks, "the REST API is not reachable")
        elapsed = clock() - started
        count = len(page.json) if isinstance(page.json, list) else 0
        checks.append(
            Check(
                "REST API reachable", Result.PASS, f"{site.woo.store_url}/wp-json/{wc.api_version}"
            )
        )
        checks.append(_tls_row(site, wc.auth))
        checks.append(Check("API keys", Result.PASS, f"accepted ({wc.auth})"))
        checks.append(await _permissions(wc, site))
        checks.append(_response_time(elapsed, count, slow_after, wc.timeout))
        checks.append(_pagination(page.headers))
        checks.append(await _meta(wc, site, sample))
        hooks_row, hooks = await _webhooks(cfg, wc, site)
        checks.append(hooks_row)
        checks.append(await _wp_cron(cfg, wc, site, hooks, status))
    return checks


async def _permissions(wc: WooClient, site: SiteConfig) -> Check:
    sync = site.woo.sync
    wanted = [r for r, on in (("customers", sync.customers), ("products", sync.products)) if on]
    if sync.coupons:
        wanted.append("coupons")
    for resource in wanted:
        try:
            await wc.get(resource, {"per_page": 1, "_fields": "id"})
        except WooError as exc:
            return Check("key permissions", Result.FAIL, str(exc))
    return Check("key permissions", Result.PASS, f"reads orders, {', '.join(wanted)}")


def _response_time(elapsed: float, count: int, slow_after: float, timeout: float) -> Check:
    what = f"{elapsed:.2f} s for a page of {count} orders"
    if elapsed > slow_after:
        return Check(
            "response time",
            Result.FAIL,
            f"slow store: {what} (more than {slow_after:g} s). Backfill and polling ask for pages "
            f"like this one and give up after {timeout:g} s: lower `backfill.per_page`, raise "
            "`connectors.woocommerce.timeout`, and ask the host about PHP workers and an object "
            "cache (Redis or Memcached) for WordPress",
        )
    return Check("response time", Result.PASS, what)


def _pagination(headers: Any) -> Check:
    missing = [h for h in ("X-WP-Total", "X-WP-TotalPages") if h not in headers]
    if missing:
        return Check(
            "pagination headers",
            Result.FAIL,
            f"the answer lacks {' and '.join(missing)}: a cache, CDN or proxy in front of the store "
            "strips them. Let X-WP-* headers through (or exempt /wp-json/ from the cache); "
            "without them backfill shows no totals and fetches pages one at a time",
        )
    return Check(
        "pagination headers",
        Result.PASS,
        f"X-WP-Total {headers['X-WP-Total']}, X-WP-TotalPages {headers['X-WP-TotalPages']}",
    )


async def _meta(wc: WooClient, site: SiteConfig, sample: int) -> Check:
    keys = mapped_meta_keys(site.woo.customer_mapping)
    if not keys:
        return Check(
            "custom fields (meta)", Result.SKIP, "`customer_mapping` names no meta_data.* key"
        )
    response = await wc.get(
        "customers",
        {
            "per_page": sample,
            "orderby": "registered_date",
            "order": "desc",
            "_fields": "id,meta_data",
        },
    )
    customers = [c for c in response.json or [] if isinstance(c, dict)]
    if not customers:
        return Check("custom fields (meta)", Result.WARN, "no customers to sample yet")
    absent = missing_meta(keys, customers)
    if not absent:
        return Check(
            "custom fields (meta)",
            Result.PASS,
            f"{', '.join(keys)} found on the {len(customers)} newest customers",
        )
    seen = sorted(
        {
            m["key"]
            for c in customers
            for m in c.get("meta_data") or []
            if isinstance(m, dict) and isinstance(m.get("key"), str)
        }
    )
    hidden = [k for k in absent if k.startswith("_")]
    # Protected keys are expected to be missing here; the plugin sends them on the stream.
    verdict = Result.WARN if len(hidden) == len(absent) else Result.FAIL
    why = (
        f" Keys starting with _ ({', '.join(hidden)}) are protected: the REST API never shows "
        "them, only the plugin can send them."
        if hidden
        else ""
    )
    return Check(
        "custom fields (meta)",
        verdict,
        f"meta key(s) {', '.join(absent)} (`customer_mapping` meta_data.*) on none of the "
        f"{len(customers)} newest customers. Check the spelling against the keys the store has "
        f"({', '.join(seen[:12]) or 'none'}), or the plugin that writes them.{why}",
    )


async def _webhooks(
    cfg: Config, wc: WooClient, site: SiteConfig
) -> tuple[Check, list[dict[str, Any]] | None]:
    """The webhooks row, and the store's webhooks when they were listed."""
    if not site.woo.webhook_secret:
        return Check(
            "webhooks",
            Result.SKIP,
            "not used (no `webhook_secret`): the plugin's stream or polling brings changes",
        ), None
    base = cfg.agent.public_url
    if not base:
        return Check(
            "webhooks",
            Result.FAIL,
            "`webhook_secret` is set but `agent.public_url` is not: set it to the agent's address "
            "as the store reaches it (https://…), then `woobrevo-agent webhooks install --site "
            f"{site.id}`",
        ), None
    url = base.rstrip("/") + webhook_path(site.id)
    topics = install_topics(site.woo.sync.model_dump(), [w.topic for w in site.woo.webhooks])
    try:
        hooks = await wc.list_webhooks()
    except WooError as exc:
        return Check("webhooks", Result.FAIL, str(exc)), None
    rows = webhook_report(hooks, topics, url, site.id)
    bad = [r for r in rows if not r.ok]
    if bad:
        # One line per distinct problem, with the topics it concerns.
        groups: dict[tuple[str, str], list[str]] = {}
        for r in bad:
            groups.setdefault((r.status, r.advice or ""), []).append(r.topic)
        advice = "; ".join(
            f"{', '.join(topics)}: {status}{' — ' + fix if fix else ''}"
            for (status, fix), topics in groups.items()
        )
        check = Check("webhooks", Result.FAIL, f"{len(bad)} of {len(rows)} not active. {advice}")
        return check, hooks
    return Check("webhooks", Result.PASS, f"{len(rows)} active, delivering to {url}"), hooks


# System status fields the WP-Cron row reads (environment.wp_cron is `! DISABLE_WP_CRON`).
_CRON_FIELDS = ("environment.wp_cron", "environment.site_url")


async def _wp_cron(
    cfg: Config,
    wc: WooClient,
    site: SiteConfig,
    hooks: list[dict[str, Any]] | None,
    status: dict[str, Any] | None,
) -> Check:
    """WP-Cron on the store, when native webhooks (or the plugin) depend on it."""
    in_use = bool(site.woo.webhook_secret)
    if not in_use and hooks is None:
        try:
            hooks = await wc.list_webhooks()
        except WooError:
            hooks = []  # a key without manage_woocommerce: the webhooks row says so when used
    door = webhook_path(site.id)
    in_use = in_use or any(str(h.get("delivery_url", "")).endswith(door) for h in hooks or [])
    try:
        environment = (await wc.system_status(_CRON_FIELDS)).get("environment") or {}
    except WooError as exc:
        needed = in_use or site.woo.mode == "stream"
        verdict = Result.WARN if needed else Result.SKIP
        return Check("WP-Cron", verdict, f"cannot read the store's system status: {exc}")
    last = await _last_delivery(cfg, site, status)
    return cron_check(
        environment.get("wp_cron") if isinstance(environment, dict) else None,
        webhooks_in_use=in_use,
        last_delivery_age=None if last is None else max(time.time() - last, 0.0),
        site_url=str(environment.get("site_url") or site.woo.store_url or ""),
        plugin=site.woo.mode == "stream",
    )


async def _last_delivery(
    cfg: Config, site: SiteConfig, status: dict[str, Any] | None
) -> float | None:
    """When a webhook delivery last reached the agent: its /status, else the state store."""
    seen: list[float] = []
    row = ((status or {}).get("sites") or {}).get(site.id) or {}
    if isinstance(row.get("last_webhook"), int | float):
        seen.append(float(row["last_webhook"]))
    if store_exists(cfg.agent):
        async with open_store(cfg.agent) as store:
            stored = await store.last_received(site.id, "webhook")
        if stored is not None:
            seen.append(stored)
    return max(seen, default=None)


# -- the stream ---------------------------------------------------------------------------------


def stream_url(cfg: Config) -> str:
    """The agent URL to set in the plugin. `agent.public_url` is the webhook address: behind
    a proxy (another port than `agent.listen.http`) the proxy forwards the stream path there
    too; without one, the stream has its own listener (`agent.listen.stream`)."""
    agent = cfg.agent
    public = urlsplit(agent.public_url) if agent.public_url else None
    if public is not None and public.port != split_hostport(agent.listen.http)[1]:
        scheme = "wss" if public.scheme == "https" else "ws"
        return f"{scheme}://{public.netloc}{public.path.rstrip('/')}{STREAM_PATH}"
    host, port = split_hostport(agent.listen.stream)
    if public is not None and public.hostname:
        host = public.hostname
    if host in (None, "0.0.0.0", "::"):
        host = "<this host>"
    elif ":" in host:
        host = f"[{host}]"
    scheme = "wss" if agent.tls is not None else "ws"
    return f"{scheme}://{host}:{port}{STREAM_PATH}"


async def _stream_check(cfg: Config, site: SiteConfig, status: dict[str, Any] | None) -> Check:
    name = "stream last seen"
    if site.woo.mode == "polling":
        return Check(name, Result.SKIP, "mode polling: no plugin, the agent polls the store")
    fix = FIX_STREAM.format(url=stream_url(cfg), site=site.id)
    if status is not None:
        row = (status.get("sites") or {}).get(site.id) or {}
        age = row.get("last_seen_age")
        if row.get("connected"):
            return Check(
                name,
                Result.PASS,
                f"{age:.0f} s ago (plugin {row.get('plugin_version') or '?'})",
            )
        when = "never since the agent started" if age is None else f"{age:.0f} s ago"
        return Check(
            name,
            Result.FAIL,
            f"{when}; the agent polls meanwhile (mode {row.get('mode', '?')}). Fix: {fix}",
        )
    last = None
    if store_exists(cfg.agent):
        async with open_store(cfg.agent) as store:
            last = await store.last_received(site.id, "stream")
    if last is None:
        return Check(
            name,
            Result.FAIL,
            f"no agent answers on {cfg.agent.listen.http} and no stream event was ever stored: "
            f"start the agent (`woobrevo-agent run`), then {fix}",
        )
    ago = time.time() - last
    return Check(
        name,
        Result.WARN,
        f"no agent answers on {cfg.agent.listen.http} (not running?); the last stream event was "
        f"stored {ago:.0f} s ago",
    )


# -- Brevo --------------------------------------------------------------------------------------


async def _brevo_checks(site: SiteConfig, fix: bool) -> list[Check]:
    b = site.brevo
    if b.is_dry_run:
        why = "dry-run: no Brevo key (set `brevo.api_key` or BREVO_API_KEY)"
        return [
            Check("Brevo API key", Result.WARN, why),
            Check("Brevo lists", Result.SKIP, why),
            Check("Brevo attributes", Result.SKIP, why),
        ]
    async with BrevoClient(b.base_url, b.api_key, timeout=min(b.timeout, 15.0)) as client:
        account = await client.request("GET", "/account")
        if account.status != 200:
            if account.status is None:
                detail = f"cannot reach {b.base_url}: {account.message}"
            else:
                detail = (
                    f"Brevo refused the key ({account.status} {account.code}: {account.message}). "
                    "Create an API v3 key in Brevo (SMTP & API → API keys) and set `brevo.api_key` "
                    "or BREVO_API_KEY"
                )
            why = "needs a valid Brevo key"
            return [
                Check("Brevo API key", Result.FAIL, detail),
                Check("Brevo lists", Result.SKIP, why),
                Check("Brevo attributes", Result.SKIP, why),
            ]
        body = account.body if isinstance(account.body, dict) else {}
        who = body.get("companyName") or body.get("email") or "the account"
        checks = [Check("Brevo API key", Result.PASS, f"valid ({who}, plan {b.plan})")]
        checks.append(await _lists(client, site))
        checks.append(await _attributes(client, site, fix))
    return checks


async def _lists(client: BrevoClient, site: SiteConfig) -> Check:
    wanted = {role: lid for role, lid in site.woo.lists.model_dump().items() if lid}
    if not wanted:
        return Check("Brevo lists", Result.SKIP, "no lists configured")
    existing: list[int] = []
    offset = 0
    while True:
        resp = await client.request("GET", f"/contacts/lists?limit=50&offset={offset}")
        if resp.status != 200 or not isinstance(resp.body, dict):
            return Check(
                "Brevo lists", Result.FAIL, f"cannot list lists: {resp.status} {resp.message}"
            )
        page = [x for x in resp.body.get("lists") or [] if isinstance(x, dict)]
        existing.extend(int(x["id"]) for x in page if isinstance(x.get("id"), int))
        offset += 50
        if len(page) < 50 or offset >= int(resp.body.get("count") or 0):
            break
    absent = missing_lists(wanted, existing)
    if absent:
        names = ", ".join(f"{lid} (lists.{role})" for role, lid in absent)
        return Check(
            "Brevo lists",
            Result.FAIL,
            f"list {names} not in this Brevo account: create it under Contacts → Lists and put "
            "its id in the config",
        )
    return Check("Brevo lists", Result.PASS, ", ".join(f"{r} {i}" for r, i in wanted.items()))


async def _attributes(client: BrevoClient, site: SiteConfig, fix: bool) -> Check:
    name = "Brevo attributes"
    wanted = wanted_attributes(site.woo.customer_mapping)
    resp = await client.request("GET", "/contacts/attributes")
    if resp.status != 200 or not isinstance(resp.body, dict):
        return Check(name, Result.FAIL, f"cannot list attributes: {resp.status} {resp.message}")
    existing = [a for a in resp.body.get("attributes") or [] if isinstance(a, dict)]
    missing, wrong = attribute_problems(wanted, existing)
    created: list[str] = []
    failed: list[str] = []
    if fix:
        for attr, kind in missing.items():
            made = await client.request(
                "POST", f"/contacts/attributes/normal/{attr}", {"type": kind}
            )
            if made.status is not None and 200 <= made.status < 300:
                created.append(f"{attr} ({kind})")
                log.info("created brevo attribute %s (%s)", attr, kind)
            else:
                failed.append(f"{attr}: {made.status} {made.message}")
        missing = {}
    problems = []
    if missing:
        problems.append(
            "missing: "
            + ", ".join(f"{a} ({k})" for a, k in missing.items())
            + f"; run `woobrevo-agent doctor --site {site.id} --fix` to create them"
        )
    if failed:
        problems.append("could not create " + "; ".join(failed))
    if wrong:
        problems.append(
            "wrong type: "
            + ", ".join(
                f"{a} is {have} in Brevo, the agent sends {want}" for a, have, want in wrong
            )
            + " (Brevo drops values of the wrong type): delete it under Contacts → Settings → "
            "Contact attributes, then run doctor --fix"
        )
    if problems:
        return Check(name, Result.FAIL, "; ".join(problems))
    detail = f"all {len(wanted)} mapped attributes exist"
    if created:
        detail += f" (created {', '.join(created)})"
    return Check(name, Result.PASS, detail)
