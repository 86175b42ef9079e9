"""The chaos scenarios: each makes shop traffic in WordPress under its faults (one at a time, then
combined) and ends with the audit (tests/chaos/audit.py): every object version WordPress holds
is in the Brevo fake with the right values, no event doubled beyond the documented in-flight
case, anything refused in dead letters with its reason. Each writes its scorecard row to
artifacts/reliability/chaos/ (bin/reliability renders docs/reliability.md from them).

Fault moments are drawn from the run's seed (printed in the header and by each test;
WOOBREVO_CHAOS_SEED=N replays them) at points of the traffic's progress, so a slower machine
meets the same faults at the same points of the traffic.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import TRAFFIC, Chaos, MariaDB, Php, Window, run_scenario
from tests.e2e.conftest import free_port

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(900)]


async def run(
    name: str,
    faults: list[str],
    plan: Any,
    wp_env: dict[str, str],
    brevo: Any,
    tmp_path: Path,
    seed: int,
    **options: Any,
) -> None:
    row = await run_scenario(
        name, faults, plan, env=wp_env, brevo=brevo, workdir=tmp_path, run_seed=seed, **options
    )
    assert row["passed"], {
        k: row[k] for k in ("lost", "doubled_other", "recover_seconds", "problems")
    }
    assert row["lost"] == 0 and row["doubled_other"] == 0


# -------------------------------------------------------------------------- the fault plans


async def no_fault(chaos: Chaos) -> None:
    """No fault: the row every other compares with."""


async def agent_kills(chaos: Chaos) -> None:
    """kill -9 of the whole agent (doors and worker) three times, at random moments."""
    for low, high in ((0.1, 0.3), (0.4, 0.6), (0.7, 0.9)):
        await chaos.at_random(low, high)
        await chaos.instant("kill -9 agent", chaos.kill_agent)


async def process_kills(chaos: Chaos) -> None:
    """kill -9 of the worker alone (twice), then of the doors process alone."""
    for low, high in ((0.1, 0.3), (0.35, 0.55)):
        await chaos.at_random(low, high)
        await chaos.instant("kill -9 worker", chaos.kill_worker)
    await chaos.at_random(0.6, 0.9)
    await chaos.instant("kill -9 doors", chaos.kill_doors)


async def stream_faults(chaos: Chaos) -> None:
    """The websocket cut mid-batch, stalled, slowed and refused by the proxy."""
    proxy = chaos.proxy
    await chaos.at_random(0.05, 0.2)
    await chaos.hold(
        "ws cut mid-batch (x3)", lambda: proxy.cut_after(2048), lambda: proxy.cut_after(None), 4.0
    )
    await chaos.at_random(0.3, 0.45)
    await chaos.hold("ws stalled", lambda: proxy.stall(True), lambda: proxy.stall(False), 8.0)
    await chaos.at_random(0.5, 0.65)
    await chaos.hold("ws slow (20 KB/s)", lambda: proxy.slow(20_000), lambda: proxy.slow(None), 6.0)
    await chaos.at_random(0.7, 0.85)
    proxy.cut()
    await chaos.hold("ws refused", lambda: proxy.refuse(True), lambda: proxy.refuse(False), 4.0)


async def brevo_storms(chaos: Chaos) -> None:
    """A 429 storm, then 5xx bursts on each endpoint family."""
    brevo = chaos.brevo
    await chaos.at_random(0.1, 0.3)
    # 429s that say when to come back (x-sib-ratelimit-reset: 2 s), as the per-second
    # windows of contacts, events and orders do. A 429 of an hourly window (the fake's default
    # for a scripted one on `other`, the coupons' family) defers that job to the window's reset,
    # as Brevo asks: an hour, longer than a CI run.
    reset = {"x-sib-ratelimit-reset": "2"}
    await chaos.hold(
        "Brevo 429 storm", lambda: brevo.fail_next(150, 429, headers=reset), lambda: None, 6.0
    )
    for family, status in (("contacts", 502), ("orders", 503), ("events", 500), ("products", 504)):
        await chaos.at_random(0.4, 0.8)
        await chaos.hold(
            f"Brevo {status} burst ({family})",
            lambda f=family, s=status: brevo.fail_next(6, s, family=f),
            lambda: None,
            2.0,
        )


async def brevo_outage(chaos: Chaos) -> None:
    """Slow answers (0.3 s each), then a long outage, then slow again."""
    brevo = chaos.brevo

    def slow(seconds: float) -> Any:
        def apply() -> None:
            brevo.latency = seconds

        return apply

    await chaos.at_random(0.05, 0.2)
    await chaos.hold("Brevo slow answers (0.3 s)", slow(0.3), slow(0.0), 6.0)
    await chaos.at_random(0.3, 0.5)
    await chaos.hold("Brevo long outage (503)", brevo.outage, brevo.end_outage, chaos.size.outage)
    await chaos.at_random(0.6, 0.9)
    await chaos.hold("Brevo slow answers (1 s)", slow(1.0), slow(0.0), 5.0)


async def disk_full(chaos: Chaos) -> None:
    """The agent's state_dir file system full (a tmpfs of its own), twice."""
    disk = chaos.disk
    assert disk is not None
    for low, high in ((0.15, 0.35), (0.55, 0.75)):
        await chaos.at_random(low, high)
        await chaos.hold("agent disk full", disk.fill, disk.free, 6.0)


async def mariadb_restart(chaos: Chaos) -> None:
    """WordPress's MariaDB stopped and started again under the plugin, twice."""
    db = MariaDB(chaos.env)
    for low, high in ((0.2, 0.4), (0.6, 0.8)):
        await chaos.at_random(low, high)
        await chaos.instant("MariaDB restart", lambda: db.restart(2.0))


async def everything(chaos: Chaos) -> None:
    """Faults combined, overlapping: kill -9s, the stream cut and stalled, 429s and 5xx, a
    Brevo outage, MariaDB restarted."""
    await asyncio.gather(agent_kills(chaos), stream_faults(chaos), brevo_storms(chaos))
    db = MariaDB(chaos.env)
    brevo = chaos.brevo
    await asyncio.gather(
        chaos.instant("MariaDB restart", lambda: db.restart(1.0)),
        chaos.hold("Brevo outage (503)", brevo.outage, brevo.end_outage, 5.0),
        chaos.instant("kill -9 worker", chaos.kill_worker),
    )


# The polling scenario's timers (docs/backfill.md, "Polling"; agent/config.py has no minimum for
# them). The plugin's heartbeat comes with every WP-Cron tick, every 2 s here (harness.cron), so a
# 5 s silence is a silent stream; a round every 2 s; a customer scan every 5 s, so customers no
# order names reach Brevo while the stream is silent; the id reconciliation (deletions, which the
# traffic does not make) never within the run.
STALE_AFTER = 5.0
POLLING = {
    "interval": "2s",
    "overlap": "2s",
    "customer_scan_every": "5s",
    "reconcile_every": "1h",
    "concurrency": 2,
}
HERE = Path(__file__).resolve().parent
REST_ROUTER = HERE / "wp_rest_router.php"
REST_KEYS = HERE / "wp_rest.php"


class WpRest:
    """The test WordPress served over HTTP to the agent's poller: `php -S` on a free loopback
    port with wp_rest_router.php (its home is the URL it is served at, as WooCommerce's OAuth
    needs), and a read key made as WooCommerce's REST API screen makes it (wp_rest.php)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.log = logs / "php-server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Serves the single site (returns once it listens)."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "php",
                    "-S",
                    f"127.0.0.1:{self.port}",
                    "-t",
                    self.env["WOOBREVO_WP_SINGLE"],
                    str(REST_ROUTER),
                ],
                # The poller has up to `concurrency` requests in flight.
                env={**os.environ, "WOOBREVO_WP_HOME": self.url, "PHP_CLI_SERVER_WORKERS": "3"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its workers stop with it
            )
        deadline = time.monotonic() + 30
        while not self._listening():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"php -S did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    async def key(self) -> dict[str, Any]:
        """A new read key: consumer_key and consumer_secret, shown once."""
        return await Php(self.env)(REST_KEYS, "api-key", "WooBrevo agent (chaos)", "read")

    def stop(self) -> None:
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


async def _mode(chaos: Chaos, mode: str, seconds: float) -> float:
    """Waits until the agent's /status shows the site in `mode`; returns when it first did."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        site = (await chaos.agent.status())["sites"]["default"]
        if site["mode"] == mode:
            return time.monotonic()
        last = {k: site.get(k) for k in ("mode", "connected", "last_seen_age", "polling")}
        await asyncio.sleep(0.2)
    raise AssertionError(f"the site was not in {mode} mode within {seconds:g}s: {last}")


def _in_brevo(brevo: Any) -> set[str]:
    """Every object Brevo holds, named as `_made` names them."""
    codes = {code.lower() for collection in brevo.coupons.values() for code in collection}
    return (
        {f"order {i}" for i in brevo.orders}
        | {f"product {i}" for i in brevo.products}
        | {f"coupon {c}" for c in codes}
        | {f"customer {e}" for e in brevo.contacts}
    )


async def _made(chaos: Chaos) -> set[str]:
    """Every object the traffic made so far, read back from WordPress."""
    names: set[str] = set()
    for tag in chaos.tags:
        truth = await chaos.php(TRAFFIC, "made", tag)
        names |= {f"order {o['id']}" for o in truth["orders"]}
        names |= {f"product {p['id']}" for p in truth["products"] + truth["variations"]}
        names |= {f"coupon {c['code'].lower()}" for c in truth["coupons"]}
        names |= {f"customer {c['email'].lower()}" for c in truth["customers"]}
    return names


async def stream_silent(chaos: Chaos) -> None:
    """The stream silent (every connection refused) until the poller takes over; the traffic
    made meanwhile reaches Brevo through polling while the stream is still silent; then the
    stream comes back and takes over again (the plugin ships its outbox: the same changes
    again, which the agent must not send twice)."""
    proxy = chaos.proxy
    await chaos.at_random(0.1, 0.2)
    before = _in_brevo(chaos.brevo)
    silent = Window("stream silent (refused)", time.monotonic())
    chaos.windows.append(silent)
    proxy.refuse(True)
    proxy.cut()
    try:
        took = await _mode(chaos, "polling", STALE_AFTER + 30)
        chaos.windows.append(Window("polling took over (from the silence)", silent.start, took))
        await chaos.progress(0.7)
        # Everything made while the stream was silent (and what the plugin had not shipped
        # when it fell silent) is in Brevo before the stream is back: only polling brought it.
        wanted = await _made(chaos) - before
        missing = wanted

        def arrived() -> bool:
            nonlocal missing
            missing = wanted - _in_brevo(chaos.brevo)
            return not missing

        deadline = time.monotonic() + 90
        while not arrived():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(missing)} of {len(wanted)} objects made while the stream was silent"
                    f" never reached Brevo through polling: {sorted(missing)[:20]}"
                )
            await asyncio.sleep(0.5)
        silent.label = f"stream silent (refused): {len(wanted)} objects polled to Brevo"
    finally:
        proxy.refuse(False)
        silent.end = time.monotonic()
    back = await _mode(chaos, "stream", 120)
    chaos.windows.append(Window("stream back in charge (from its return)", silent.end, back))


# -------------------------------------------------------------------------- the scenarios


async def test_baseline(
    wp_env: dict[str, str], brevo: Any, tmp_path: Path, chaos_seed: int
) -> None:
    await run("baseline", [], no_fault, wp_env, brevo, tmp_path, chaos_seed)


async def test_agent_kill_9(
    wp_env: dict[str, str], brevo: Any, tmp_path: Path, chaos_seed: int
) -> None:
    await run(
        "agent-kill-9", ["kill -9 agent x3"], agent_kills, wp_env, brevo, tmp_path, chaos_seed
    )


async def test_worker_and_doors_kill_9(
    wp_env: dict[str, str], brevo: Any, tmp_path: Path, chaos_seed: int
) -> None:
    faults = ["kill -9 worker x2", "kill -9 doors"]
    await run("process-kill-9", faults, process_kills, wp_env, brevo, tmp_path, chaos_seed)


async def test_websocket_cut_stall_slow(
    wp_env: dict[str, str], brevo: Any, tmp_path: Path, chaos_seed: int
) -> None:
    faults = ["ws cut mid-batch", "ws stalled", "ws slow", "ws refused"]
    await run("websocket", faults, stream_faults, wp_env, brevo, tmp_path, chaos_seed)


async def test_brevo_429_and_5xx(
    wp_env: dict[str, str], brevo: Any, tmp_path: Path, chaos_seed: int
) -> None:
    faults = ["Brevo 429 storm", "Brevo 5xx bursts"]
    await run("brevo-429-5xx", faults, brevo_storms, wp_env, brevo, tmp_path, chaos_seed)


async def test_brevo_outage_and_slow(
    wp_env: dict[str, str], brevo: Any, tmp_path: Path, chaos_seed: int
) -> None:
    faults = ["Brevo long outage", "Brevo slow answers"]
    await run("brevo-outage-slow", faults, brevo_outage, wp_env, brevo, tmp_path, chaos_seed)


async def test_agent_disk_full(
    wp_env: dict[str, str], brevo: Any, tmp_path: Path, chaos_seed: int
) -> None:
    faults = ["agent disk full x2"]
    await run("disk-full", faults, disk_full, wp_env, brevo, tmp_path, chaos_seed, disk_mb=64)


async def test_mariadb_restart(
    wp_env: dict[str, str], brevo: Any, tmp_path: Path, chaos_seed: int
) -> None:
    faults = ["MariaDB restart x2"]
    await run("mariadb-restart", faults, mariadb_restart, wp_env, brevo, tmp_path, chaos_seed)


async def test_combined(
    wp_env: dict[str, str], brevo: Any, tmp_path: Path, chaos_seed: int
) -> None:
    faults = ["kill -9", "ws cut/stall/slow/refused", "Brevo 429/5xx/outage", "MariaDB restart"]
    await run("combined", faults, everything, wp_env, brevo, tmp_path, chaos_seed)


async def test_stream_silent_polling(
    wp_env: dict[str, str], brevo: Any, tmp_path: Path, chaos_seed: int
) -> None:
    rest = WpRest(wp_env, tmp_path)
    try:
        rest.start()
        key = await rest.key()
        woo = {
            "store_url": rest.url,
            "consumer_key": key["consumer_key"],
            "consumer_secret": key["consumer_secret"],
            "rate_limit_per_minute": 6000,  # rounds every 2 s, not a store's minute budget
            "polling": POLLING,
        }
        await run(
            "stream-silent-polling",
            ["stream silent until polling takes over", "stream back"],
            stream_silent,
            wp_env,
            brevo,
            tmp_path,
            chaos_seed,
            stream_config={"stale_after": f"{STALE_AFTER:g}s"},
            woo_config=woo,
        )
    finally:
        rest.stop()
