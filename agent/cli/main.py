"""`woobrevo-agent`: run, check, ingest, status, deadletters, store check (and the doors' own
commands)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from agent import __version__, systemd
from agent.app import App, Role
from agent.cli.store import migrate_store
from agent.cli.store_copy import add_copy_arguments, copy_command
from agent.cli.sync import add_sync_parsers
from agent.cli.tokens import add_token_parsers
from agent.cli.webhooks import add_webhook_parsers
from agent.config import (
    Config,
    ConfigError,
    config_warnings,
    load_config,
    masked,
    secret_values,
)
from agent.core.events import Door, Event, Rejection, parse_event
from agent.core.storable import loads
from agent.core.times import display_time
from agent.doors.stream import StreamTestHooks, tls_context
from agent.errors import EXIT_CONFIG, EXIT_FAIL, EXIT_OK, AgentError
from agent.logs import FORMATS, QUIET_LIBRARIES, LogFormat, protect, redact, setup_logging
from agent.process.worker import NICE, SILENT_AFTER, read_config, serve_worker
from agent.store.open import Store, check_postgres, open_store, store_info
from agent.store.schema import DAMAGE_CODES, RECOVERY_DOC, check_store

__all__ = ["main"]

log = logging.getLogger("agent.cli")


def _setup_logging(cfg: Config, level: str | None = None, fmt: LogFormat | None = None) -> None:
    """Logs at `level` in `fmt` (the command line's), else the config's (agent/logs.py)."""
    setup_logging(
        level or cfg.agent.log_level, fmt or cfg.agent.log_format, secrets=secret_values(cfg)
    )


def _load(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    protect(secret_values(cfg))  # whatever the command logs or prints from now on
    return cfg


def _store(cfg: Config) -> Store:
    # Operator commands open the store beside a possibly running agent: they must not hand its
    # in-flight Brevo jobs back to the queue (that is the agent's own recovery at start).
    return open_store(cfg.agent, recover=False)


# -- run ----------------------------------------------------------------------------------


async def _run(
    cfg: Config,
    until_idle: bool,
    stream_hooks: StreamTestHooks | None = None,
    worker_argv: Sequence[str] = (),
    log_level: str | None = None,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # SIGHUP (`systemctl reload`): re-read the config (agent/reload.py). Caught from the start,
    # so an early one waits for the agent to be up instead of killing it (SIGHUP's default).
    hup = asyncio.Event()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, hup.set)
    # `processing: process` splits the agent in two (agent/process/worker.py); --until-idle waits for
    # the work itself, so it runs in one process.
    role: Role = "doors" if worker_argv and not until_idle else "all"
    for warning in config_warnings(cfg):
        log.warning("config: %s", warning)
    # Only this process (systemd's MAINPID) speaks sd_notify: the worker is started without
    # NOTIFY_SOCKET (packaging/woobrevo-agent.service, NotifyAccess=main).
    systemd.scrub_child_environment()
    async with App(cfg, stream_hooks=stream_hooks, role=role, worker_argv=worker_argv) as app:
        tune_gc()
        # The doors' threads (event loop, parse, store) hand each batch to one another, and a
        # thread back from a syscall (recv, fsync) waits for the GIL up to the switch interval:
        # 5 ms by default, several times per batch. 1 ms shortens those waits
        # (docs/benchmarks.md, "Stream door").
        sys.setswitchinterval(0.001)
        for site in app.sites.values():
            mode = "dry-run" if site.brevo.is_dry_run else site.brevo.base_url
            log.info("site %s: brevo %s (%s plan)", site.id, mode, site.brevo.plan)
        reloads = asyncio.create_task(_reloads(app, hup, log_level), name="reloads")
        if until_idle:
            idle = asyncio.create_task(app.wait_idle())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({idle, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if idle.done():
                idle.result()
                log.info("idle: every event processed and every Brevo job done")
            else:
                idle.cancel()
        else:
            await _serve(app, stop)
        log.info("stopping")
        reloads.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloads
        # Listeners first; leaving App then lets batches and Brevo calls in flight finish
        # (docs/operations.md, "Stopping").
        await app.stop_accepting()
    return EXIT_OK


async def _serve(app: App, stop: asyncio.Event) -> None:
    """Until `stop`: systemd's READY=1 once the doors listen and the worker answers, STATUS=
    lines, WATCHDOG=1 from this loop (withheld while the worker is stuck), STOPPING=1."""
    worker = app.worker
    wedge = _wedge_hook(os.environ)
    hooks = [] if wedge is None else [asyncio.create_task(_wedge_loop(app, wedge))]

    def healthy(timeout: float) -> bool:
        return worker is None or not worker.wedged(max(SILENT_AFTER, timeout))

    await systemd.serve(
        stop,
        started=None if worker is None else worker.answering,
        status=lambda: _status_line(app),
        healthy=healthy,
    )
    for task in hooks:
        task.cancel()


async def _status_line(app: App) -> str:
    """The STATUS= line: "2 of 3 sites connected, backlog 120 events, 45 Brevo jobs"."""
    per_site = await app.store.status()
    connected = sum(1 for sid in app.sites if app.status.site(sid).stream.connections > 0)
    backlog = sum(int(s.get("inbox_depth", 0)) for s in per_site.values())
    jobs = sum(int(s.get("pending_jobs", 0)) for s in per_site.values())
    return (
        f"{connected} of {len(app.sites)} sites connected, backlog {backlog} events,"
        f" {jobs} Brevo jobs"
    )


def _wedge_hook(env: Mapping[str, str]) -> float | None:
    """WOOBREVO_TEST_WEDGE_LOOP=<seconds> (test only, tests/agent/test_systemd.py): that long
    after the worker answers, block the event loop, as a stuck call would (the watchdog's
    pings must stop)."""
    text = env.get("WOOBREVO_TEST_WEDGE_LOOP", "")
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise AgentError("WOOBREVO_TEST_WEDGE_LOOP takes seconds") from None
    log.warning("WOOBREVO_TEST_WEDGE_LOOP=%g (test only): the event loop will block", seconds)
    return seconds


async def _wedge_loop(app: App, after: float) -> None:
    if app.worker is not None:
        await app.worker.answering.wait()
    await asyncio.sleep(after)
    log.warning("WOOBREVO_TEST_WEDGE_LOOP: blocking the event loop now")
    time.sleep(3600)  # noqa: ASYNC251 - the point: a loop stuck in a blocking call


async def _reloads(app: App, hup: asyncio.Event, log_level: str | None) -> None:
    """Each SIGHUP: reload the config, between systemd's RELOADING=1 and READY=1 (with a
    STATUS= line saying how it went); SIGHUPs during a reload make one more after it."""
    while True:
        await hup.wait()
        hup.clear()
        systemd.notify("RELOADING=1", f"MONOTONIC_USEC={systemd.monotonic_usec()}")
        try:
            result = await app.reload()
        except Exception:  # a loop boundary: the next SIGHUP must still be heard
            log.exception("config reload failed")
            systemd.notify("READY=1", "STATUS=config reload failed; see the log")
            continue
        if result.ok:
            _log_level(app.cfg, log_level)
            for warning in config_warnings(app.cfg):
                log.warning("config: %s", warning)
        # One line: a newline would start another assignment (sd_notify(3)).
        systemd.notify("READY=1", "STATUS=" + " ".join(result.summary().split()))


def _log_level(cfg: Config, pinned: str | None) -> None:
    """A reloaded `agent.log_level`, unless the command line's `--log-level` set it."""
    if pinned is None:
        number = getattr(logging, cfg.agent.log_level.upper(), logging.INFO)
        logging.getLogger().setLevel(number)
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(max(logging.INFO, number))


def cmd_run(args: argparse.Namespace) -> int:
    """Forward until stopped (or, with --until-idle, until nothing is pending)."""
    # Whatever the agent (and the worker it starts) creates is its user's alone: the state
    # folder holds whole payloads (agent/store/schema.py also makes the store itself 0600).
    os.umask(0o077)
    cfg = _load(args)
    _setup_logging(cfg, args.log_level, args.log_format)
    stream_hooks = _stream_test_hooks(os.environ)
    worker_argv: list[str] = []
    if cfg.agent.processing == "process":
        worker_argv = [sys.executable, "-m", "agent.cli", "worker", "--config", str(args.config)]
        if args.log_level:  # else the worker takes (and reloads) the config's
            worker_argv += ["--log-level", args.log_level]
        worker_argv += ["--log-format", args.log_format or cfg.agent.log_format]
    return asyncio.run(_run(cfg, args.until_idle, stream_hooks, worker_argv, args.log_level))


def tune_gc() -> None:
    """Once started: move every object alive now out of the collector's sight, and collect
    less often. Each 100-event batch allocates ~15,000 dicts and lists that die by reference
    counting; at the default thresholds they triggered collections that walked the whole
    heap, up to half the stream door's parse time (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def cmd_worker(args: argparse.Namespace) -> int:
    """The worker process of `run` (agent/process/worker.py): started by `run`, not by hand."""
    # The config the doors process runs with comes first on stdin (the file may have changed
    # since, or be half-edited); --config only names it.
    raw, pending = read_config()
    cfg = load_config(args.config, raw=raw)
    protect(secret_values(cfg))
    _setup_logging(cfg, args.log_level, args.log_format)
    with contextlib.suppress(OSError):
        os.nice(NICE)  # before any thread starts: every thread inherits it
    return asyncio.run(_worker(cfg, args.log_level, pending))


async def _worker(cfg: Config, log_level: str | None = None, pending: bytes = b"") -> int:
    loop = asyncio.get_running_loop()
    # Ctrl-C reaches the whole process group: the doors process stops first and closes our
    # stdin, which stops us after in-flight Brevo calls; SIGTERM alone stops us the same way.
    # A reload comes through the pipe from the doors process, never as our own SIGHUP.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    async with App(cfg, role="worker") as app:
        tune_gc()

        async def reload(raw: bytes) -> tuple[bool, str | None]:
            result = await app.reload(raw)
            if result.ok:
                _log_level(app.cfg, log_level)
            return result.ok, result.error

        serving = asyncio.create_task(
            serve_worker(
                ingested=app.store.ingested,
                ready=app.forwarder.ready,
                metrics=app.metrics,
                reload=reload,
                pending=pending,
            )
        )
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, serving.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    return EXIT_OK


def _stream_test_hooks(env: Mapping[str, str]) -> StreamTestHooks | None:
    """The stream door's test-only faults, from WOOBREVO_TEST_* variables (tests/agent/
    test_stream.py, tests/php/integration/ShipperTest.php); None when none is set.

    - WOOBREVO_TEST_CRASH_AFTER_COMMIT=1: die like `kill -9` between a batch's commit and its
      ack (a resend is then stored once and forwarded once);
    - WOOBREVO_TEST_ACK_DELAY=<seconds>: each ack leaves that long after its batch's commit;
    - WOOBREVO_TEST_FAIL_STORE_BATCH=<n>: the n-th `events` batch since start, counted across
      connections, fails to store (nothing of it stored, the connection closes 1011); only that
      one.
    """
    crash = env.get("WOOBREVO_TEST_CRASH_AFTER_COMMIT", "") == "1"
    delay_text = env.get("WOOBREVO_TEST_ACK_DELAY", "")
    fail_text = env.get("WOOBREVO_TEST_FAIL_STORE_BATCH", "")
    if not (crash or delay_text or fail_text):
        return None
    try:
        delay = float(delay_text or 0)
        fail = int(fail_text or 0)
    except ValueError:
        raise AgentError(
            "WOOBREVO_TEST_ACK_DELAY takes seconds, WOOBREVO_TEST_FAIL_STORE_BATCH a batch number"
        ) from None
    if crash:
        log.warning("WOOBREVO_TEST_CRASH_AFTER_COMMIT=1 (test only): the agent kills itself "
                    "after a commit")  # fmt: skip
    if delay:
        log.warning("WOOBREVO_TEST_ACK_DELAY=%g (test only): each stream ack waits", delay)
    if fail:
        log.warning("WOOBREVO_TEST_FAIL_STORE_BATCH=%d (test only): stream batch %d fails to "
                    "store", fail, fail)  # fmt: skip
    return StreamTestHooks(
        after_commit=_crash_after_commit if crash else None,
        before_commit=_fail_store_batch(fail) if fail else None,
        ack_delay=delay,
    )


def _crash_after_commit(site: str, batch: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _fail_store_batch(n: int) -> Callable[[str, Any], None]:
    """Raises on its n-th call (the stream door takes that as a store failure)."""
    calls = itertools.count(1)

    def fail(site: str, batch: Any) -> None:
        if next(calls) == n:
            raise OSError(f"WOOBREVO_TEST_FAIL_STORE_BATCH={n}: this batch fails to store")

    return fail


# -- check --------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config and print it resolved, secrets masked."""
    cfg = _load(args)
    tls_context(cfg)  # the files load (ConfigError otherwise), as `run` will need them
    print(yaml.safe_dump(masked(cfg), sort_keys=False, allow_unicode=True), end="")
    warnings = config_warnings(cfg)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    note = f", {len(warnings)} warning(s)" if warnings else ""
    print(f"# {args.config}: valid ({len(cfg.resolved_sites())} site(s){note})", file=sys.stderr)
    return EXIT_OK


# -- store --------------------------------------------------------------------------------


def cmd_store(args: argparse.Namespace) -> int:
    """`store check`: SQLite's integrity and foreign key checks of the state file;
    `store migrate`: the store's schema brought up to this agent's (agent/cli/store.py);
    `store copy`: a SQLite store into a PostgreSQL one (agent/cli/store_copy.py)."""
    if args.action == "copy":
        return copy_command(args)
    if not args.config:
        raise AgentError(f"store {args.action} needs --config FILE (the agent's YAML config)")
    cfg = _load(args)
    if args.action == "migrate":
        return migrate_store(args, cfg)
    path = store_info(cfg.agent).address
    dsn = cfg.agent.store
    # PostgreSQL: the server answers, at this agent's schema, every migration applied.
    problems = (
        check_store(cfg.agent.store_path) if dsn is None else asyncio.run(check_postgres(dsn))
    )
    if not problems:
        print(f"{path}: ok")
        return EXIT_OK
    print(f"{path}: {len(problems)} problem(s)")
    for problem in problems:
        print(f"  {problem}")
    doc = RECOVERY_DOC if dsn is None else "docs/postgresql.md"
    what = "will not start on it" if dsn is None else "cannot use it as it is"
    print(f"the agent {what}; the recovery steps: {doc}", file=sys.stderr)
    return EXIT_FAIL


# -- ingest -------------------------------------------------------------------------------


def read_events_file(
    path: Path, *, historical: bool
) -> tuple[list[Event], list[tuple[Rejection, object]], list[str]]:
    """Parse a JSONL file of `{topic, payload, id?, occurred_at?}` lines."""
    events: list[Event] = []
    rejected: list[tuple[Rejection, object]] = []
    errors: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw, checked = loads(line)  # deep nesting, NaN…: that line alone refused
            except json.JSONDecodeError as exc:
                errors.append(f"{path}:{n}: not JSON ({exc.msg} at column {exc.colno})")
                continue
            parsed = parse_event(raw, door=Door.FILE, historical=historical, json_checked=checked)
            if isinstance(parsed, Rejection):
                rejected.append(
                    (Rejection(parsed.id, parsed.code, f"line {n}: {parsed.message}"), raw)
                )
            else:
                events.append(parsed)
    return events, rejected, errors


async def _ingest(
    cfg: Config, site: str, events: list[Event], rejected: list[tuple[Rejection, object]]
) -> tuple[int, int]:
    new = 0
    async with _store(cfg) as store:
        for i in range(0, max(len(events), 1), 1000):
            chunk = events[i : i + 1000]
            res = await store.ingest(site, chunk, rejected if i == 0 else ())
            new += res.new
    return len(events), new


def cmd_ingest(args: argparse.Namespace) -> int:
    """Feed a JSONL file of events through the same entry point as every door."""
    cfg = _load(args)
    _setup_logging(cfg)
    cfg.site(args.site)  # unknown site → ConfigError naming the known ones
    events, rejected, errors = read_events_file(Path(args.file), historical=args.historical)
    for e in errors:
        print(e, file=sys.stderr)
    if errors and not args.skip_bad_lines:
        print("nothing stored: fix these lines (or pass --skip-bad-lines)", file=sys.stderr)
        return EXIT_FAIL
    total, new = asyncio.run(_ingest(cfg, args.site, events, rejected))
    for rej, _ in rejected:
        print(
            f"rejected {rej.id}: {rej.code}: {rej.message} (kept as a dead letter)", file=sys.stderr
        )
    print(
        f"{args.file}: {total} events read, {new} new, {total - new} already stored, "
        f"{len(rejected)} rejected; `woobrevo-agent run` forwards them"
    )
    return EXIT_OK


# -- status -------------------------------------------------------------------------------


async def _status(cfg: Config) -> dict[str, Any]:
    async with _store(cfg) as store:
        per_site = await store.status()
    out = {}
    for site in cfg.resolved_sites():
        s = per_site.get(site.id, {})
        out[site.id] = {
            "inbox_depth": int(s.get("inbox_depth", 0)),
            "pending_jobs": int(s.get("pending_jobs", 0)),
            "dead_letters": int(s.get("dead_letters", 0)),
            "last_success": s.get("last_success"),
            "events_in": int(s.get("events_in", 0)),
            "brevo": "dry-run" if site.brevo.is_dry_run else site.brevo.account,
            "carts": s.get("carts") or {},
        }
    return out


def _print_carts(data: dict[str, Any]) -> None:
    """The abandoned carts table (docs/carts.md), when a site has any."""
    if not any(any(s["carts"].get(k) for k in ("active", "abandoned")) for s in data.values()):
        return
    print(
        f"\n{'carts':<16} {'active':>7} {'abandoned':>9} {'recovered':>9} {'expired':>7}"
        f" {'revenue':>11} {'rate':>6}"
    )
    for site, s in data.items():
        c = s["carts"]
        rate = "-" if c.get("recovery_rate") is None else f"{c['recovery_rate']:.0%}"
        print(
            f"{site:<16} {int(c.get('active') or 0):>7} {int(c.get('abandoned') or 0):>9}"
            f" {int(c.get('recovered') or 0):>9} {int(c.get('expired') or 0):>7}"
            f" {float(c.get('recovered_revenue') or 0):>11.2f} {rate:>6}"
        )


def cmd_status(args: argparse.Namespace) -> int:
    """Per site: inbox depth, pending Brevo jobs, dead letters, last success."""
    cfg = _load(args)
    data = asyncio.run(_status(cfg))
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"{'site':<16} {'inbox':>7} {'jobs':>7} {'dead':>6}  last success")
    for site, s in data.items():
        last = display_time(s["last_success"]) if s["last_success"] else "never"
        print(
            f"{site:<16} {s['inbox_depth']:>7} {s['pending_jobs']:>7} {s['dead_letters']:>6}  {last}"
        )
    _print_carts(data)
    return EXIT_OK


# -- dead letters -------------------------------------------------------------------------


async def _deadletters(
    cfg: Config, action: str, ids: Sequence[int] | None, site: str | None
) -> int:
    async with _store(cfg) as store:
        if action == "list":
            rows = await store.dead_letters("open", site)
            if not rows:
                print("no dead letters")
            for r in rows:
                when = display_time(r.created_at)
                print(
                    f"#{r.id} {when} site={r.site} {r.origin}/{r.kind} {r.ref}\n    {r.code}: {r.message}"
                )
            return EXIT_OK
        if action == "retry":

            def reparse(raw: Any) -> Event | None:
                parsed = parse_event(raw, door=Door.FILE)
                return parsed if isinstance(parsed, Event) else None

            n, problems = await store.retry_dead_letters(ids, reparse)
            for p in problems:
                print(p, file=sys.stderr)
            print(f"{n} dead letter(s) queued again; `woobrevo-agent run` sends them")
            return EXIT_OK if not problems else EXIT_FAIL
        n = await store.drop_dead_letters(ids)
        print(f"{n} dead letter(s) dropped")
        return EXIT_OK


def cmd_deadletters(args: argparse.Namespace) -> int:
    """list | retry | drop."""
    cfg = _load(args)
    ids = args.id or None
    if args.action in ("retry", "drop") and ids is None and not args.all:
        print("name the dead letters with --id N (repeatable) or pass --all", file=sys.stderr)
        return EXIT_FAIL
    return asyncio.run(_deadletters(cfg, args.action, ids, args.site))


# -- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    p = argparse.ArgumentParser(prog="woobrevo-agent", description="WooCommerce → Brevo sync agent")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", required=True, help="the YAML config file")
        return sp

    run = with_config(sub.add_parser("run", help="forward events to Brevo until stopped"))
    run.add_argument("--until-idle", action="store_true", help="exit 0 once nothing is pending")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", choices=FORMATS, help="text (default) or json lines")
    run.set_defaults(fn=cmd_run)
    worker = with_config(sub.add_parser("worker", help="(started by `run`) the worker process"))
    worker.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    worker.add_argument("--log-format", choices=FORMATS)
    worker.set_defaults(fn=cmd_worker)

    chk = with_config(
        sub.add_parser("check", help="validate the config; print it with secrets masked")
    )
    chk.set_defaults(fn=cmd_check)

    ing = with_config(sub.add_parser("ingest", help="store events from a JSONL file"))
    ing.add_argument("--site", required=True)
    ing.add_argument(
        "--historical", action="store_true", help="past data: no Brevo events, no automations"
    )
    ing.add_argument("--skip-bad-lines", action="store_true")
    ing.add_argument("file")
    ing.set_defaults(fn=cmd_ingest)

    st = with_config(sub.add_parser("status", help="per-site backlog and health"))
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)

    dl = with_config(sub.add_parser("deadletters", help="list, retry or drop dead letters"))
    dl.add_argument("action", choices=["list", "retry", "drop"])
    dl.add_argument("--id", type=int, action="append")
    dl.add_argument("--all", action="store_true")
    dl.add_argument("--site")
    dl.set_defaults(fn=cmd_deadletters)

    sto = sub.add_parser("store", help="check the state file, migrate it, or copy it")
    sto.add_argument("--config", help="check, migrate: the YAML config file")
    sto.add_argument("action", choices=["check", "migrate", "copy"])
    add_copy_arguments(sto)
    sto.add_argument(
        "--database", help="migrate: a PostgreSQL store's address (docs/postgresql.md)"
    )
    sto.set_defaults(fn=cmd_store)

    for add in (add_token_parsers, add_webhook_parsers, add_sync_parsers):
        add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    # Until a command sets its own (with its config's secrets): warnings, credentials masked.
    setup_logging("warning")
    try:
        code: int = args.fn(args)
    except ConfigError as exc:
        print(redact(str(exc)), file=sys.stderr)
        return EXIT_CONFIG
    except AgentError as exc:
        print(f"woobrevo-agent: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_FAIL
    except Exception as exc:
        sqlite_code = getattr(exc, "sqlite_errorcode", None)
        if sqlite_code is not None and sqlite_code & 0xFF in DAMAGE_CODES:  # past the open
            print(
                f"woobrevo-agent: the store is damaged: SQLite says {exc}; `woobrevo-agent"
                f" store check --config FILE` lists what is wrong ({RECOVERY_DOC})",
                file=sys.stderr,
            )
            return EXIT_FAIL
        # A bug: its traceback goes through the log (masked, one line in json).
        log.exception("woobrevo-agent %s failed", args.command)
        return EXIT_FAIL
    return code


if __name__ == "__main__":
    sys.exit(main())
