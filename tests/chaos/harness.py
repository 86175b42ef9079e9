"""The chaos suite's machinery: shop traffic made in WordPress, faults, the drain, the audit and
the scorecard row of one scenario.

A scenario is a fault plan (a coroutine) run beside the traffic. The traffic is two streams of
`wp_traffic.php make` processes (each a few dozen changes, the plugin's shipper ticking every few
changes as other shoppers' requests would, and at each process's shutdown) plus a WP-Cron tick
every two seconds. The plugin ships through `ChaosProxy` to the real agent
(`python -m agent.cli run`, tests/e2e/conftest.py's `Agent`), which forwards to the Brevo fake.
When the traffic and the plan are done the backlog is drained (`flush`, an operator's "ship
now", every 2 s: the plugin's own backoff can reach 5 minutes, longer than a CI run may wait),
then `audit.audit` compares WordPress with Brevo. Times are `time.monotonic`, the clock the
Brevo fake stamps its requests with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.audit import ABANDON_AFTER, CART_LIST, Audit, audit
from tests.chaos.proxy import ChaosProxy
from tests.e2e.conftest import Agent, children_of, token
from tests.kit import until

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TRAFFIC = HERE / "wp_traffic.php"
SCENARIO = REPO / "tests" / "e2e" / "wp_scenario.php"
RESULTS = Path(os.environ.get("WOOBREVO_RELIABILITY_DIR", str(REPO / "artifacts" / "reliability")))

EVENTS = [
    {"topic": "order.created", "event": "order_placed"},
    {"topic": "order.paid", "event": "order_paid"},
    {"topic": "order.cancelled", "event": "order_cancelled"},
]  # order.completed → order_fulfilled and order.refunded → order_refunded are the defaults


@dataclass(frozen=True)
class Size:
    """How much traffic a scenario makes, per stream (two streams)."""

    label: str
    changes: int  # per stream
    chunk: int  # changes per PHP process
    ship_every: int  # the shipper ticks every this many changes inside a process
    drain: float  # seconds the backlog may take to drain after the last fault
    outage: float  # a long Brevo outage or a long hold, seconds


CI = Size("ci", changes=200, chunk=50, ship_every=6, drain=300.0, outage=15.0)
LONG = Size("long", changes=1500, chunk=50, ship_every=8, drain=600.0, outage=120.0)


def size() -> Size:
    """CI-sized unless WOOBREVO_CHAOS=long (or pytest --chaos-long, which sets it)."""
    return LONG if os.environ.get("WOOBREVO_CHAOS", "") == "long" else CI


def seed() -> int:
    """WOOBREVO_CHAOS_SEED, or one drawn now (and printed by the conftest)."""
    given = os.environ.get("WOOBREVO_CHAOS_SEED")
    return int(given) if given else random.SystemRandom().randrange(1, 2**31)


class Php:
    """`php SCRIPT COMMAND ARGS…` against the test WordPress's single site."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, "WOOBREVO_WP_DIR": env["WOOBREVO_WP_SINGLE"]}
        self.env["WOOBREVO_WP_PATH"] = "/"

    async def __call__(self, script: Path, *args: str, limit: float = 180.0) -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            "php",
            str(script),
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), limit)
        except BaseException:  # a timeout, or the scenario cancelled: no PHP left behind
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            raise
        lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise PhpFailed(f"php {script.name} {' '.join(args)} ({proc.returncode}): {err!r}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result


class PhpFailed(Exception):
    """A PHP process failed (expected while MariaDB is down)."""


class MariaDB:
    """The test WordPress's MariaDB (tests/php/run.sh): stopped and started again as it was."""

    def __init__(self, env: dict[str, str]) -> None:
        self.state = Path(env["WOOBREVO_PHP_STATE"])
        self.socket = env["WOOBREVO_DB_SOCKET"]

    def pid(self) -> int:
        return int((self.state / "mysqld.pid").read_text().strip())

    async def restart(self, down: float) -> None:
        """SIGTERM (a clean shutdown, as `systemctl restart mariadb`), `down` seconds without
        a database, then the same command line again; returns once it answers."""
        pid = self.pid()
        argv = _stop(pid)
        await until(lambda: not _alive(pid), 60, what="MariaDB to stop", every=0.1)
        await asyncio.sleep(down)
        _spawn(argv)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ping = await asyncio.create_subprocess_exec(
                "mariadb-admin",
                "--no-defaults",
                f"--socket={self.socket}",
                "-uroot",
                "ping",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            if await ping.wait() == 0:
                return
            await asyncio.sleep(0.2)
        raise AssertionError("MariaDB did not come back within 60 s")


def _stop(pid: int) -> list[str]:
    """The process's command line; then SIGTERM to it."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    os.kill(pid, signal.SIGTERM)
    return [a.decode() for a in argv]


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _spawn(argv: list[str]) -> None:
    """Starts `argv` detached (its own session, not this process's child), as run.sh did."""
    subprocess.run(
        ["sh", "-c", 'setsid "$@" >/dev/null 2>&1 &', "sh", *argv], check=True, timeout=10
    )


class SmallDisk:
    """The agent's state_dir on a tmpfs of its own (`mount -t tmpfs -o size=…`), filled on
    command with a ballast file and freed again."""

    def __init__(self, path: Path, megabytes: int) -> None:
        self.path = path
        self.megabytes = megabytes
        self.mounted = False

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.megabytes}m,mode=0700",
                "tmpfs",
                str(self.path),
            ],
            check=True,
            capture_output=True,
        )
        self.mounted = True

    def fill(self) -> int:
        """Fill every free byte (unbuffered writes, smaller and smaller); returns how many."""
        taken = 0
        fd = os.open(self.path / "ballast", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (256 * 1024, 4096, 512, 1):
                block = b"\0" * size
                with contextlib.suppress(OSError):
                    while True:
                        taken += os.write(fd, block)
        finally:
            os.close(fd)
        return taken

    def free(self) -> None:
        (self.path / "ballast").unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self.mounted = False


@dataclass
class Window:
    """One fault: what, from when to when (monotonic seconds)."""

    label: str
    start: float
    end: float | None = None


@dataclass
class Chaos:
    """One scenario's world: the shop, the proxy, the agent, the Brevo fake, and what happened."""

    name: str
    seed: int
    size: Size
    php: Php
    env: dict[str, str]
    agent: Agent
    proxy: ChaosProxy
    brevo: Any
    rng: random.Random
    disk: SmallDisk | None = None
    kills: list[float] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    made: int = 0  # changes made so far, over both streams
    php_failures: int = 0
    drain_state: str = ""  # why the backlog is not drained yet (the row keeps the last)
    tags: list[str] = field(default_factory=list)  # the traffic streams' tags (`made TAG`)
    progressed: asyncio.Event = field(default_factory=asyncio.Event)  # set when `made` grows

    @property
    def total(self) -> int:
        return 2 * self.size.changes

    async def progress(self, fraction: float) -> None:
        """Wait until this fraction of the traffic was made."""
        while self.made < fraction * self.total:
            self.progressed.clear()
            await self.progressed.wait()

    async def at_random(self, low: float, high: float) -> None:
        """Wait for a random point of the traffic between these fractions (the seeded RNG)."""
        await self.progress(self.rng.uniform(low, high))

    async def hold(
        self, label: str, start: Callable[[], Any], end: Callable[[], Any], seconds: float
    ) -> None:
        """A fault held for `seconds`, recorded as a window."""
        window = Window(label, time.monotonic())
        self.windows.append(window)
        result = start()
        if asyncio.iscoroutine(result):
            await result
        try:
            await asyncio.sleep(seconds)
        finally:
            result = end()
            if asyncio.iscoroutine(result):
                await result
            window.end = time.monotonic()

    async def instant(self, label: str, act: Callable[[], Awaitable[Any]]) -> None:
        """A fault that is over once `act` returns (a kill and its restart)."""
        window = Window(label, time.monotonic())
        self.windows.append(window)
        try:
            await act()
        finally:
            window.end = time.monotonic()

    def fault_times(self) -> list[tuple[float, float | None]]:
        """Every fault window (start, end; None: not over), for the audit's cart rule."""
        return [(w.start, w.end) for w in self.windows]

    # -- the agent's processes -----------------------------------------------------------

    async def kill_agent(self, down: float = 0.5) -> None:
        """kill -9 of the doors and the worker at once, then a restart."""
        self.kills.append(time.monotonic())
        await self.agent.kill()
        await asyncio.sleep(down)
        await self.agent.start()

    async def kill_worker(self) -> None:
        """kill -9 of the worker alone: the doors start another (docs/durability.md)."""
        assert self.agent.proc is not None
        workers = children_of(self.agent.proc.pid)
        self.kills.append(time.monotonic())
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):  # a worker that just ended
                os.kill(pid, signal.SIGKILL)

    async def kill_doors(self) -> None:
        """kill -9 of the doors process alone: its worker finishes what it has in flight and
        exits, and the restarted agent's worker waits for the forwarder lock."""
        assert self.agent.proc is not None
        self.kills.append(time.monotonic())
        self.agent.proc.kill()
        await self.agent.proc.wait()
        self.agent.proc = None
        await self.agent.start()


# ------------------------------------------------------------------------- the traffic


def _count(out: dict[str, Any]) -> int:
    """The changes a `make` or `return` process made (PHP writes no change as `[]`)."""
    return sum((out["changes"] or {}).values())


async def stream(chaos: Chaos, tag: str, stream_seed: int) -> None:
    """One stream of `make` processes until it made its share (a failed process is retried:
    MariaDB may be down)."""
    made = 0
    chunk_no = 0
    while made < chaos.size.changes:
        n = min(chaos.size.chunk, chaos.size.changes - made)
        chunk_no += 1
        try:
            out = await chaos.php(
                TRAFFIC,
                "make",
                tag,
                str(stream_seed * 1000 + chunk_no),
                str(n),
                str(chaos.size.ship_every),
            )
        except PhpFailed:
            chaos.php_failures += 1
            await asyncio.sleep(0.5)
            continue
        done = _count(out)
        made += done
        chaos.made += done
        chaos.progressed.set()
    # The shoppers who left carts come back through the restore link once the agent abandoned
    # them, and some check out: recoveries (wp_traffic.php `return`).
    while True:
        try:
            out = await chaos.php(
                TRAFFIC, "return", tag, str(stream_seed), f"{ABANDON_AFTER + 1:g}"
            )
        except PhpFailed:
            chaos.php_failures += 1
            await asyncio.sleep(0.5)
            continue
        chaos.made += _count(out)
        return


async def cron(chaos: Chaos, stop: asyncio.Event) -> None:
    """WP-Cron's minute tick, every two seconds (the backoff applies)."""
    while not stop.is_set():
        with contextlib.suppress(PhpFailed, TimeoutError):
            await chaos.php(TRAFFIC, "cron", limit=60)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2.0)


def store_backlog(state_dir: Path) -> int:
    """Inbox rows not processed plus Brevo jobs not done, in the agent's store."""
    path = state_dir / "woobrevo.sqlite3"
    if not path.exists():
        return -1
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        inbox = db.execute("SELECT COUNT(*) FROM inbox WHERE state = 0").fetchone()[0]
        jobs = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        return int(inbox) + int(jobs)
    except sqlite3.OperationalError:
        return -1
    finally:
        db.close()


async def drain(
    chaos: Chaos, tags: list[str], deadline: float
) -> tuple[float | None, list[dict[str, Any]]]:
    """Ship what the outbox holds and wait for the audit to pass; returns when it did (None:
    not before the deadline) and the truths read back from WordPress."""
    truths = [await chaos.php(TRAFFIC, "made", tag) for tag in tags]
    state_dir = chaos.agent.state / "state"
    while time.monotonic() < deadline:
        try:
            flushed = await chaos.php(SCENARIO, "flush", limit=90)
        except (PhpFailed, TimeoutError) as exc:
            chaos.drain_state = f"flush failed: {exc}"[:300]
        else:
            backlog = store_backlog(state_dir)
            chaos.drain_state = (
                f"outbox {flushed['depth']} ({flushed['error']}), agent backlog {backlog}"
            )
            if flushed["depth"] == 0 and backlog == 0:
                result = audit(truths, chaos.brevo, chaos.kills, state_dir, chaos.fault_times())
                if result.lost == 0:
                    return time.monotonic(), truths
                chaos.drain_state = f"{result.lost} not in Brevo yet"
        await asyncio.sleep(2.0)
    return None, truths


# ------------------------------------------------------------------------- one scenario


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


Plan = Callable[[Chaos], Awaitable[None]]


async def run_scenario(
    name: str,
    faults: list[str],
    plan: Plan,
    *,
    env: dict[str, str],
    brevo: Any,
    workdir: Path,
    run_seed: int,
    disk_mb: int | None = None,
    stream_config: dict[str, Any] | None = None,
    woo_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs one scenario and returns (and writes) its scorecard row; the test asserts on it."""
    chaos_size = size()
    rng = random.Random(f"{run_seed}:{name}")
    # Unique per run, not drawn from the seed: a replayed seed must not find the objects of
    # the run it replays (the truth is everything made under the tag).
    tag = f"{name.replace('-', '')[:6]}{uuid.uuid4().hex[:6]}"
    site_token = token(f"chaos-{tag}")
    import hashlib

    entries = [{"id": "default", "token_sha256": hashlib.sha256(site_token.encode()).hexdigest()}]
    state = workdir / "agent"
    state.mkdir(parents=True, exist_ok=True)
    agent = Agent(state, entries, brevo, {"webhooks": EVENTS})
    config = json.loads(agent.config.read_text())
    config["brevo"]["max_backoff"] = "5s"
    # Cart timers short enough that the traffic's carts are abandoned within the run.
    woo = config["connectors"]["woocommerce"]
    woo["lists"]["abandoned_cart"] = CART_LIST
    woo["carts"] = {"abandon_after": f"{ABANDON_AFTER:g}s"}
    if stream_config:
        config["agent"]["stream"] = stream_config
    # e.g. the store's REST keys and polling timers (the polling scenario)
    config["connectors"]["woocommerce"].update(woo_config or {})
    agent.config.write_text(json.dumps(config, indent=2))
    disk = None
    if disk_mb is not None:
        disk = SmallDisk(state / "state", disk_mb)
        disk.mount()
    proxy = ChaosProxy(agent.port)
    chaos = Chaos(name, run_seed, chaos_size, Php(env), env, agent, proxy, brevo, rng, disk)
    started = time.monotonic()
    stop_cron = asyncio.Event()
    result, drained, faults_end, error = Audit(), None, started, None
    cron_task: asyncio.Task[None] | None = None
    try:
        await proxy.start()
        await agent.start()
        await chaos.php(SCENARIO, "configure", proxy.url, site_token)
        tags = chaos.tags = [f"{tag}a", f"{tag}b"]
        cron_task = asyncio.create_task(cron(chaos, stop_cron))
        # A failure of one (a fault that could not be made) cancels the others and their PHP.
        async with asyncio.TaskGroup() as group:
            group.create_task(stream(chaos, tags[0], rng.randrange(1, 10**6)))
            group.create_task(stream(chaos, tags[1], rng.randrange(1, 10**6)))
            group.create_task(plan(chaos))
        traffic_end = time.monotonic()
        stop_cron.set()
        await cron_task
        faults_end = max([w.end or traffic_end for w in chaos.windows], default=traffic_end)
        drained, truths = await drain(chaos, tags, max(traffic_end, faults_end) + chaos_size.drain)
        await asyncio.sleep(1.0)  # a late duplicate would land now
        result = audit(truths, brevo, chaos.kills, state / "state", chaos.fault_times())
    except Exception as exc:
        # The scenario broke before its audit: its row says so (and the test fails), naming
        # what failed inside a task group rather than the group.
        error = "; ".join(f"{type(e).__name__}: {e}" for e in _leaves(exc))
        raise
    finally:
        stop_cron.set()
        if cron_task is not None:
            cron_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cron_task
        await agent.stop()
        await proxy.close()
        row = scorecard_row(chaos, faults, result, drained, faults_end, started)
        if error is not None:
            row["passed"] = False
            row["problems"] = [error[:500], *row["problems"]]
        write_row(row)
        if not row["passed"]:  # the evidence, before a tmpfs state_dir goes away
            shutil.copy(agent.log, RESULTS / "chaos" / f"{name}.agent.log")
            shutil.copytree(
                state / "state",
                RESULTS / "chaos" / f"{name}.state",
                ignore=shutil.ignore_patterns("ballast"),
                dirs_exist_ok=True,
            )
        if disk is not None:
            disk.unmount()
    return row


def scorecard_row(
    chaos: Chaos,
    faults: list[str],
    result: Audit,
    drained: float | None,
    faults_end: float,
    started: float,
) -> dict[str, Any]:
    return {
        "scenario": chaos.name,
        "faults": faults,
        "size": chaos.size.label,
        "seed": chaos.seed,
        "changes_made": chaos.made,
        "objects": result.objects,
        "events_expected": result.events_expected,
        "delivered": result.delivered,
        "lost": result.lost,
        "doubled_in_flight": result.doubled_in_flight,
        "doubled_other": result.doubled_other,
        "dead_lettered": result.dead_letters,
        "dead_letter_reasons": result.dead_letter_reasons,
        "carts": dict(sorted(result.carts.items())),
        "kills": len(chaos.kills),
        "fault_windows": [
            {"fault": w.label, "seconds": round((w.end or w.start) - w.start, 2)}
            for w in chaos.windows
        ],
        "recover_seconds": None if drained is None else round(max(0.0, drained - faults_end), 1),
        "duration_seconds": round(time.monotonic() - started, 1),
        "php_failures": chaos.php_failures,
        "proxy_connections": chaos.proxy.connections,
        "proxy_resets": chaos.proxy.resets,
        "passed": result.ok and drained is not None,
        "drain_state": "drained" if drained is not None else chaos.drain_state,
        "problems": result.problems[:20],
    }


def write_row(row: dict[str, Any]) -> Path:
    folder = RESULTS / "chaos"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{row['scenario']}.json"
    path.write_text(json.dumps(row, indent=1, sort_keys=True) + "\n")
    return path
