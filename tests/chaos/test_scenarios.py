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
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import Chaos, MariaDB, run_scenario

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
