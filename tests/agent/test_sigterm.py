"""SIGTERM, as `systemctl stop` sends it (KillMode=mixed: to the doors process only), in the
middle of a 5,000-event stream while Brevo answers are held back: the agent stops accepting,
lets the batches in flight commit and ack and the Brevo calls in flight be answered and
recorded, and exits 0 well within TimeoutStopSec. Restarted, it takes what the client had not
seen acked, and every event reaches Brevo exactly once (docs/operations.md, "Stopping")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.agent.doorkit import ROOT, UNIT, AgentProcess, batch, config_data, event, hello
from tests.fakes.brevo import BrevoFake
from tests.kit import live, until, write_config

EVENTS = 5_000
PER_BATCH = 100
WINDOW = 4  # batches sent and not yet acked, as a pipelining plugin keeps them
# Buyers the orders come from: contact writes follow the plan's contacts budget (about ten a
# second), so the orders share fifty of them.
BUYERS = 50
UNITFILE = ROOT / "packaging" / "woobrevo-agent.service"


def _stop_timeout() -> float:
    """TimeoutStopSec of the shipped unit, in seconds."""
    m = re.search(r"^TimeoutStopSec=(\d+)s?$", UNITFILE.read_text(), re.MULTILINE)
    assert m, "the unit sets TimeoutStopSec in seconds"
    return float(m.group(1))


def _batches() -> list[tuple[str, str]]:
    """(name, message) of 50 batches of 100 orders from BUYERS guest buyers."""
    out = []
    for b in range(EVENTS // PER_BATCH):
        events = []
        for i in range(b * PER_BATCH, (b + 1) * PER_BATCH):
            e = event(f"ev-{i}", 10_000 + i)
            e["payload"]["billing"]["email"] = f"buyer-{i % BUYERS}@example.com"
            e["payload"]["customer_id"] = 0
            events.append(e)
        out.append((f"b-{b}", batch(f"b-{b}", events)))
    return out


class Plugin:
    """The plugin's side: send batches with up to WINDOW unacked; remember what was acked."""

    def __init__(self, batches: list[tuple[str, str]]) -> None:
        self.batches = batches
        self.acked: set[str] = set()

    def unacked(self) -> list[tuple[str, str]]:
        return [(name, msg) for name, msg in self.batches if name not in self.acked]

    async def stream(
        self, agent: AgentProcess, *, pause_after: int = 0, resume: asyncio.Event | None = None
    ) -> None:
        """Send every unacked batch; after sending `pause_after` of them wait for `resume`,
        then go on at a plugin's pace. Returns once all are acked or the agent closed the link
        (a 1001 on stop)."""
        todo = self.unacked()
        async with agent.connect() as ws:
            await hello(ws)
            window = asyncio.Semaphore(WINDOW)

            async def reader() -> None:
                try:
                    while len(self.acked) < len(self.batches):
                        ack = json.loads(await ws.recv())
                        assert ack["type"] == "ack", ack
                        assert not ack["rejected"], ack
                        self.acked.add(ack["batch"])
                        window.release()
                except ConnectionClosed:
                    for _ in range(WINDOW):
                        window.release()  # the sender stops waiting for a slot

            reading = asyncio.create_task(reader())
            with contextlib.suppress(ConnectionClosed):
                for n, (_name, message) in enumerate(todo):
                    if n == pause_after and resume is not None:
                        await resume.wait()
                    await window.acquire()
                    if reading.done():
                        break
                    await ws.send(message)
                    if resume is not None and n >= pause_after:
                        await asyncio.sleep(0.05)
            await reading


def _order_sends(fake: BrevoFake) -> Counter[str]:
    """How many times Brevo answered 2xx to a write of each order id."""
    sent: Counter[str] = Counter()
    for r in fake.requests:
        if r.method != "POST" or r.status is None or r.status >= 300:
            continue
        if r.path == "/orders/status":
            sent[str(r.json["id"])] += 1
        elif r.path == "/orders/status/batch":
            sent.update(str(o["id"]) for o in r.json["orders"])
    return sent


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_sigterm_mid_stream_with_brevo_calls_in_flight_loses_nothing_doubles_nothing(
    tmp_path: Path,
) -> None:
    async with BrevoFake() as fake:
        data = config_data(tmp_path, brevo=live(fake))
        assert data["agent"].get("processing", "process") == "process"
        path = write_config(tmp_path / "agent.yaml", data)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        plugin = Plugin(_batches())
        # Brevo carries out order writes but holds their answers: requests stay in flight,
        # and the jobs behind them pile up (a backlog).
        fake.stall(path="/orders/status/batch", applied=True)
        resume = asyncio.Event()

        async with AgentProcess(path, env) as agent:
            assert agent.proc is not None
            streaming = asyncio.create_task(plugin.stream(agent, pause_after=10, resume=resume))
            await until(lambda: len(plugin.acked) >= 10, 60, what="10 batches acked")
            await fake.wait_for(lambda: fake.stalled_count >= 1, timeout=60 * UNIT)
            resume.set()
            await until(lambda: len(plugin.acked) >= 20, 60, what="20 batches acked")
            assert not streaming.done(), "the stream should still be going"
            held = fake.stalled_count
            assert held >= 1
            stopped_at = time.monotonic()
            agent.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60 * UNIT):
                await streaming  # the agent closed the link (1001) after the last acks
            # Brevo's answers come while the agent stops: they are recorded, not dropped.
            await asyncio.sleep(1.0)
            fake.release()
            async with asyncio.timeout(_stop_timeout()):
                code = await agent.proc.wait()
            took = time.monotonic() - stopped_at
        log = "".join(agent.log)
        assert code == 0, log
        assert took < _stop_timeout() / 2, f"stopped in {took:.1f}s"
        assert "waiting for" in log and "request(s) in flight" in log, log
        assert "Traceback" not in log, log
        acked_before = len(plugin.acked)
        assert 20 <= acked_before < len(plugin.batches)

        # Restarted: the plugin sends again what it has no ack for.
        async with AgentProcess(path, env) as agent:
            await plugin.stream(agent)
            assert len(plugin.acked) == len(plugin.batches)

            async def idle() -> bool:
                backlog = (await agent.status())["sites"]["a"]["backlog"]
                return bool(backlog == {"inbox_depth": 0, "pending_jobs": 0, "dead_letters": 0})

            await until(idle, 300, what="every event forwarded", every=0.5)
            await fake.wait_for(lambda: len(fake.orders) >= EVENTS, timeout=60 * UNIT)

        orders = _order_sends(fake)
        expected = {f"a-{10_000 + i}" for i in range(EVENTS)}
        assert set(orders) == expected, sorted(set(orders) ^ expected)[:10]
        doubled = {oid: n for oid, n in orders.items() if n != 1}
        assert doubled == {}, f"{len(doubled)} orders sent more than once"
        # Every buyer is a contact (their writes are upserts: a repeat would change nothing).
        emails = {f"buyer-{i}@example.com" for i in range(BUYERS)}
        assert emails <= set(fake.contacts)
        fake.assert_no_spec_violations()
