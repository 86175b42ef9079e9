"""`woobrevo-agent backfill` and `woobrevo-agent doctor` (docs/backfill.md, README "Troubleshooting").

Backfill pages through the store (agent/doors/backfill.py) and, unless `--no-forward` or an
agent already runs on the same state directory, runs the pipeline and the forwarder until
everything it stored has reached Brevo.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import time
from datetime import datetime
from typing import Any

from agent.app import App
from agent.cli.doctor import agent_status, run_doctor
from agent.cli.progress import BarProgress, LineProgress
from agent.config import Config, SiteConfig, load_config, secret_values
from agent.core.backfill import backfill_order, parse_since, seconds_until
from agent.core.checks import exit_code, render_table
from agent.doors.backfill import Backfill, BackfillConflict, BrevoPrepass
from agent.errors import EXIT_FAIL, EXIT_OK
from agent.forward.brevo import BrevoClient, BrevoListError, ContactPages, account_budgets
from agent.logs import FORMATS, bind, json_output, setup_logging
from agent.store.open import Store, open_store
from agent.woocommerce.errors import WooError
from agent.woocommerce.factory import polling_problem, site_client

__all__ = ["add_sync_parsers", "cmd_backfill", "cmd_doctor"]

log = logging.getLogger("agent.cli_sync")


# -- backfill ---------------------------------------------------------------------------------


async def _agent_running(cfg: Config) -> bool:
    return await agent_status(cfg, wait=1.0) is not None


async def _drain(app: Any, progress: Any) -> None:
    """Run the pipeline and the forwarder until every job is done, showing what is left."""
    peak = 0
    idle = asyncio.create_task(app.wait_idle())
    try:
        while not idle.done():
            done, _ = await asyncio.wait({idle}, timeout=2.0)
            if done:
                break
            counts = await app.store.counts()
            left = counts["jobs"] + counts["inbox_pending"]
            peak = max(peak, left)
            progress.update("brevo", peak - left, peak)
        await idle
    finally:
        if not idle.done():
            idle.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await idle
    progress.finish("brevo", peak)


def _plan(site: SiteConfig, args: argparse.Namespace) -> tuple[list[str], str | None, float] | str:
    """(resources, since, seconds to wait) from the command line, or why it cannot run."""
    if not site.woo.enabled:
        return (
            f"site {site.id} is disabled (enabled: false): nothing of it is sent to Brevo;"
            " set enabled: true to backfill it"
        )
    problem = polling_problem(site)
    if problem is not None:
        return problem
    requested = (
        [r.strip() for r in args.resources.split(",") if r.strip()] if args.resources else None
    )
    try:
        resources = backfill_order(requested, site.woo.sync.model_dump())
        since = parse_since(args.since) if args.since else None
        wait = seconds_until(args.start_at, datetime.now().astimezone()) if args.start_at else 0.0
    except ValueError as exc:
        return str(exc)
    if not resources:
        return f"site {site.id}: nothing to backfill (check --resources and sync)"
    return resources, since, wait


async def _backfill(cfg: Config, args: argparse.Namespace, progress: Any) -> int:
    site = cfg.site(args.site)
    plan = _plan(site, args)
    if isinstance(plan, str):
        print(plan, file=sys.stderr)
        return EXIT_FAIL
    resources, since, wait = plan
    bind(site=site.id, door="backfill")  # every line of this run names them (agent/logs.py)
    if wait > 0:
        at = datetime.now().astimezone().timestamp() + wait
        when = datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M %Z")
        print(f"backfill of site {site.id} deferred to {when} (--start-at)", file=sys.stderr)
        await asyncio.sleep(wait)
    forward = not args.no_forward
    if forward and await _agent_running(cfg):
        print(
            f"an agent answers on {cfg.agent.listen.http}: it forwards what the backfill stores",
            file=sys.stderr,
        )
        forward = False
    brevo = site.brevo
    async with (
        site_client(site, concurrency=site.woo.backfill.concurrency) as wc,
        # recover=False: a running agent's claimed jobs are not this process's to release.
        open_store(cfg.agent, recover=forward) as store,
        BrevoClient(
            brevo.base_url, brevo.api_key, timeout=brevo.timeout, dry_run=brevo.is_dry_run
        ) as bc,
    ):
        prepass = _prepass(site, bc, store)
        job = Backfill(
            store,
            site,
            wc,
            resources=resources,
            since=since,
            restart=args.restart,
            once=args.once,
            progress=progress,
            prepass=prepass,
        )
        try:
            counts = await job.run()
        except BackfillConflict as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_FAIL
        except BrevoListError as exc:
            print(
                f"site {site.id}: backfill stopped before storing anything: the contacts already"
                f" in Brevo could not be read: {exc}.\nWithout them a backfill could add people"
                " back to lists they left; fix this and run the same command again.",
                file=sys.stderr,
            )
            return EXIT_FAIL
        except WooError as exc:
            print(
                f"site {site.id}: backfill stopped: {exc}\nEvery page stored so far is kept; run "
                "the same command again to resume.",
                file=sys.stderr,
            )
            return EXIT_FAIL
        if job.already_done:
            print(f"site {site.id}: this backfill finished earlier (--once): nothing to do")
            return EXIT_OK
        if job.already_stored:
            print(f"site {site.id}: every page was stored by an earlier run; forwarding")
        if prepass is not None and prepass.checked:
            print(f"site {site.id}: {_prepass_summary(prepass)}")
        if not forward:
            await job.finish()
            print(
                f"site {site.id}: this backfill run stored {_summary(counts)}; "
                "`woobrevo-agent run` forwards it"
            )
            return EXIT_OK
    # Forwarding starts once everything is stored: a contact's updates from all its orders
    # then coalesce into one pending job (agent/core/dedupe.py) instead of one Brevo write
    # per order, and the queue is deep enough for the batch endpoints from the start.
    async with App(cfg, doors=False) as app:
        await _drain(app, progress)
        job.store = app.store
        await job.finish()
        dead = (await app.store.counts())["dead_letters"]
    if job.already_stored:
        print(f"site {site.id}: forwarded what an earlier backfill run stored")
    else:
        print(f"site {site.id}: this backfill run stored and forwarded {_summary(counts)}")
    if dead:
        print(
            f"{dead} dead letter(s): `woobrevo-agent deadletters list --config …`", file=sys.stderr
        )
    return EXIT_OK


def _prepass(site: SiteConfig, client: BrevoClient, store: Store) -> BrevoPrepass | None:
    """Who already left, read from Brevo before anything is stored (never re-subscribe),
    within the same `contacts` budget the forwarder meters its contact calls in; None in
    dry-run (no account to read: the backfill says so and goes on)."""
    brevo = site.brevo
    if brevo.is_dry_run:
        return None
    budget = account_budgets(brevo)["contacts"]
    pages = ContactPages(client, budget, clock=time.time, max_backoff=brevo.max_backoff)
    return BrevoPrepass(pages, store)


def _prepass_summary(prepass: BrevoPrepass) -> str:
    found = prepass.found
    return (
        f"{prepass.checked} contacts already in Brevo checked: {found.get('blocklisted', 0)}"
        f" blocklisted, {found.get('unsubscribed', 0)} unsubscribed from lists,"
        f" {found.get('absent_at_backfill', 0)} outside a marketing list; none of them is"
        " added back"
    )


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items()) or "nothing"


def _progress(args: argparse.Namespace) -> Any:
    tty = sys.stderr.isatty() and not args.plain
    return BarProgress(sys.stderr) if tty else LineProgress(sys.stderr, every=args.progress_every)


def cmd_backfill(args: argparse.Namespace) -> int:
    """Page through the store, feed the core, forward."""
    cfg = load_config(args.config)
    # On a terminal the bars are the report (log lines would tear them); in a log, warnings
    # (an unreadable phone number, a refused write) belong beside the progress lines.
    default = "error" if sys.stderr.isatty() and not args.plain else "warning"
    fmt = args.log_format or cfg.agent.log_format
    setup_logging(args.log_level or default, fmt, secrets=secret_values(cfg))

    async def main() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, lambda: task.cancel() if task else None)
        try:
            return await _backfill(cfg, args, _progress(args))
        except asyncio.CancelledError:
            print("backfill interrupted; run the same command again to resume", file=sys.stderr)
            return EXIT_FAIL

    # With JSON logs, the progress and result lines are JSON lines too (agent/logs.py).
    with json_output("agent.backfill") if fmt == "json" else contextlib.nullcontext():
        return asyncio.run(main())


# -- doctor -----------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    """One row per check with its fix; exit 1 when one fails."""
    cfg = load_config(args.config)
    setup_logging("error", cfg.agent.log_format, secrets=secret_values(cfg))
    checks = asyncio.run(run_doctor(cfg, args.site, fix=args.fix, slow_after=args.slow_after))
    width = shutil.get_terminal_size((110, 20)).columns
    print(f"site {args.site}: {cfg.site(args.site).woo.store_url or '(no store_url)'}")
    print(render_table(checks, width))
    return exit_code(checks)


# -- parsers ----------------------------------------------------------------------------------


def add_sync_parsers(sub: Any) -> None:
    """Add `backfill` and `doctor` to the CLI's subparsers."""
    bf = sub.add_parser(
        "backfill",
        help="copy the store's history into Brevo (resumable)",
        description="Page through the store (products, customers, orders, coupons), store "
        "every object, and forward it to Brevo through its batch endpoints. Killed or "
        "interrupted, the same command resumes where it stopped.",
    )
    bf.add_argument("--config", required=True, help="the YAML config file")
    bf.add_argument("--site", required=True, help="the site id")
    bf.add_argument(
        "--resources",
        help="comma list of customers,orders,products,coupons (default: all that sync enables)",
    )
    bf.add_argument("--since", help="only objects modified since DATE (2025-01-31 or ISO 8601)")
    bf.add_argument("--start-at", metavar="HH:MM", help="wait until this local time (off-peak)")
    bf.add_argument(
        "--no-forward",
        action="store_true",
        help="only store; a running `woobrevo-agent run` forwards",
    )
    bf.add_argument("--restart", action="store_true", help="ignore an unfinished run's checkpoints")
    bf.add_argument(
        "--once",
        action="store_true",
        help="do nothing when the same backfill already finished (for a nightly timer)",
    )
    bf.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    bf.add_argument(
        "--progress-every", type=float, default=10.0, help="seconds between plain progress lines"
    )
    bf.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    bf.add_argument("--log-format", choices=FORMATS, help="text (default) or json lines")
    bf.set_defaults(fn=cmd_backfill)

    dr = sub.add_parser(
        "doctor",
        help="check a site's store, stream and Brevo account; print the fix for each failure",
    )
    dr.add_argument("--config", required=True, help="the YAML config file")
    dr.add_argument("--site", required=True, help="the site id")
    dr.add_argument(
        "--fix", action="store_true", help="create missing Brevo attributes with the right types"
    )
    dr.add_argument(
        "--slow-after",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="a page of 100 orders slower than this fails the response-time check",
    )
    dr.set_defaults(fn=cmd_doctor)
