"""`woobrevo-agent doctor`, the pure part: results, the Brevo attribute types a mapping needs,
which mapped meta keys a sample lacks, and the table. The requests are in agent/cli/doctor.py."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agent.core.woo import COMPUTED_DATE_PATHS, COMPUTED_PATHS, is_date_path

__all__ = [
    "Check",
    "Result",
    "attribute_problems",
    "attribute_type",
    "cron_check",
    "exit_code",
    "mapped_meta_keys",
    "missing_lists",
    "missing_meta",
    "render_table",
    "wanted_attributes",
]


class Result(StrEnum):
    """A check's outcome; only FAIL makes `doctor` exit 1."""

    PASS = "pass"
    FAIL = "FAIL"
    WARN = "warn"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Check:
    """One row: what was checked, the outcome, and what was seen or how to fix it."""

    name: str
    result: Result
    detail: str


# Computed per-email aggregates (agent/core/woo.py COMPUTED_PATHS): counts and sums are
# numbers; dates (woo.is_date_path, the one rule the mapping also uses) are dates. Brevo drops
# or refuses a value of the wrong type (reference/brevo/NOTES.md, Attributes), so the attribute
# must be created with the type of what the mapping sends.
_FLOAT_PATHS = frozenset(COMPUTED_PATHS) - set(COMPUTED_DATE_PATHS)


def attribute_type(path: str) -> str:
    """The Brevo attribute type for a mapped WooCommerce path: float, date or text."""
    if path in _FLOAT_PATHS:
        return "float"
    if is_date_path(path):
        return "date"
    return "text"


def wanted_attributes(mapping: Mapping[str, str]) -> dict[str, str]:
    """Brevo attribute name → type for every mapped path (the email is the identifier)."""
    return {attr: attribute_type(path) for path, attr in mapping.items() if path != "email"}


def attribute_problems(
    wanted: Mapping[str, str], existing: Iterable[Mapping[str, Any]]
) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """(missing name → type, [(name, type in Brevo, type wanted)]) for the account's attributes."""
    have = {
        str(a.get("name", "")).upper(): str(a.get("type") or a.get("category") or "")
        for a in existing
    }
    missing = {name: kind for name, kind in wanted.items() if name.upper() not in have}
    wrong = [
        (name, have[name.upper()], kind)
        for name, kind in wanted.items()
        # Built-in text attributes (SMS, FIRSTNAME…) are text already; only typed ones can clash.
        if name.upper() in have and kind != "text" and have[name.upper()] != kind
    ]
    return missing, wrong


def mapped_meta_keys(mapping: Mapping[str, str]) -> list[str]:
    """Meta keys named by `meta_data.<key>` paths of the customer mapping."""
    return [p.split(".", 1)[1] for p in mapping if p.startswith("meta_data.") and "." in p]


def missing_meta(keys: Sequence[str], customers: Iterable[Mapping[str, Any]]) -> list[str]:
    """The mapped meta keys found on none of the sampled customers."""
    seen: set[str] = set()
    for customer in customers:
        for meta in customer.get("meta_data") or []:
            if isinstance(meta, dict) and isinstance(meta.get("key"), str):
                seen.add(meta["key"])
    return [k for k in keys if k not in seen]


def missing_lists(
    lists: Mapping[str, int | None], existing: Iterable[int]
) -> list[tuple[str, int]]:
    """(role, id) of configured list ids the Brevo account does not have."""
    have = set(existing)
    return [(role, lid) for role, lid in lists.items() if lid is not None and lid not in have]


def exit_code(checks: Iterable[Check]) -> int:
    """0 when nothing failed, 1 otherwise."""
    return 1 if any(c.result is Result.FAIL for c in checks) else 0


def render_table(checks: Sequence[Check], width: int = 100) -> str:
    """check | result | detail, the detail wrapped to the width."""
    name_w = max([len("check"), *(len(c.name) for c in checks)])
    result_w = 6
    detail_w = max(width - name_w - result_w - 4, 30)
    lines = [f"{'check':<{name_w}}  {'result':<{result_w}}  fix / detail"]
    lines.append(f"{'-' * name_w}  {'-' * result_w}  {'-' * min(detail_w, 40)}")
    for check in checks:
        wrapped = textwrap.wrap(check.detail, detail_w, break_on_hyphens=False) or [""]
        lines.append(f"{check.name:<{name_w}}  {check.result.value:<{result_w}}  {wrapped[0]}")
        pad = " " * (name_w + result_w + 4)
        lines.extend(pad + more for more in wrapped[1:])
    return "\n".join(lines)


# WooCommerce queues every webhook delivery in Action Scheduler, which runs from WP-Cron
# (reference/woocommerce/NOTES.md §1.2); DISABLE_WP_CRON only stops WordPress from spawning
# WP-Cron on page loads, so a server cron calling it (WP-CLI or wp-cron.php) brings it back.
CRON_ADVICE = (
    "Either remove define('DISABLE_WP_CRON', true) from wp-config.php, or run WP-Cron from the "
    "server's cron every minute: `* * * * * wp cron event run --due-now --path=/var/www/html` "
    "(WP-CLI, with the WordPress folder as --path) or "
    "`* * * * * curl -s {site_url}/wp-cron.php?doing_wp_cron >/dev/null`. "
    "`wp action-scheduler run --group=woocommerce-webhooks` delivers the queued webhooks at once."
)


def cron_check(
    wp_cron: object,
    *,
    webhooks_in_use: bool,
    last_delivery_age: float | None,
    site_url: str,
    plugin: bool = False,
) -> Check:
    """The WP-Cron row from system_status' environment.wp_cron (False: DISABLE_WP_CRON is set).

    Native webhooks need WP-Cron, and so do the plugin's retries and heartbeat (`plugin`, mode
    stream); a webhook delivery seen while it is off shows that a server cron runs it instead.
    """
    name = "WP-Cron"
    seen = (
        f"; the last webhook delivery arrived {last_delivery_age:.0f} s ago"
        if last_delivery_age is not None
        else ""
    )
    if wp_cron is True:
        return Check(
            name,
            Result.PASS,
            "on: Action Scheduler delivers WooCommerce's webhooks when site traffic spawns "
            f"WP-Cron{seen}",
        )
    if wp_cron is not False:
        return Check(name, Result.WARN, "system_status does not say whether WP-Cron runs")
    off = "off (DISABLE_WP_CRON is set in wp-config.php)"
    if last_delivery_age is not None:
        return Check(name, Result.PASS, f"{off}, but a server cron runs it{seen}")
    advice = CRON_ADVICE.format(site_url=site_url.rstrip("/"))
    if not webhooks_in_use and plugin:
        return Check(
            name,
            Result.WARN,
            f"{off}: the plugin sends changes as they happen, but its retries and its heartbeat "
            "run on WP-Cron; without a server cron the agent sees the stream as stale and polls "
            "(see stream last seen). " + advice,
        )
    if not webhooks_in_use:
        return Check(
            name,
            Result.SKIP,
            f"{off}; no native webhooks in use (no webhook_secret, none to this site on the "
            "store) and mode polling: nothing the agent needs waits for it",
        )
    return Check(
        name,
        Result.WARN,
        f"{off} and no webhook delivery has reached the agent: WooCommerce queues each "
        "delivery in Action Scheduler, which runs only from WP-Cron, so without a server cron "
        "the webhooks never fire. " + advice,
    )
