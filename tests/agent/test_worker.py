"""`processing: process`: a real `woobrevo-agent run` as two processes (agent/process/worker.py).

The doors process stores and acks; its worker processes and forwards. Both are real
processes here, killed with SIGKILL where the test says so, against the Brevo fake.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
import yaml

from agent.app import forwarding_lock
from agent.errors import AgentError
from agent.process.worker import NICE
from tests.agent.doorkit import UNIT, AgentProcess, batch, config_data, event, hello, order
from tests.fakes.brevo import BrevoFake

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _config(tmp_path: Path, fake: BrevoFake) -> Path:
    data = config_data(tmp_path)
    data["brevo"] = {"api_key": fake.api_key, "base_url": fake.base_url, "dry_run": False,
                     "max_backoff": "2s"}  # fmt: skip
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _worker_of(agent: AgentProcess) -> int:
    assert agent.proc is not None
    async with asyncio.timeout(10 * UNIT):
        while not (kids := _children(agent.proc.pid)):  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.05)
    assert len(kids) == 1, kids
    return kids[0]


def _thread_nices(pid: int) -> set[int]:
    """The niceness of each of a process's threads (Linux nices threads one by one)."""
    nices = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(") ", 1)[1].split()
        nices.add(int(fields[16]))  # field 19 of proc(5), counted after "pid (comm)"
    return nices


def agent_pid(agent: AgentProcess) -> int:
    assert agent.proc is not None
    return agent.proc.pid


async def _send(agent: AgentProcess, name: str, first: int, n: int) -> None:
    events = [
        {**event(f"{name}-{i}", i), "payload": order(i, "2026-11-27T06:20:00")}
        for i in range(first, first + n)
    ]
    async with agent.connect() as ws:
        await hello(ws)
        await ws.send(batch(name, events))
        ack = json.loads(await ws.recv())
    assert ack["type"] == "ack" and len(ack["accepted"]) == n, ack


async def _get(agent: AgentProcess, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{agent.http_port}{path}") as r,
    ):
        return r.status, await r.text()


async def _until_orders(fake: BrevoFake, ids: set[str]) -> None:
    await fake.wait_for(lambda: ids <= set(fake.orders), timeout=60 * UNIT)


async def _until_idle(agent: AgentProcess) -> None:
    """Every job done and recorded (a kill before that would resend the calls in flight:
    at-least-once, docs/durability.md)."""
    idle = {"inbox_depth": 0, "pending_jobs": 0, "dead_letters": 0}
    async with asyncio.timeout(30 * UNIT):
        while (await agent.status())["sites"]["a"]["backlog"] != idle:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def _writes_once(fake: BrevoFake) -> None:
    writes = Counter(
        json.dumps(r.json, sort_keys=True)
        for r in fake.requests
        if r.path == "/orders/status" and r.status is not None and r.status < 300
    )
    assert all(n == 1 for n in writes.values()), [k for k, n in writes.items() if n > 1]


@pytest.mark.slow
async def test_run_is_two_processes_that_report_as_one(tmp_path: Path) -> None:
    async with BrevoFake() as fake:
        async with AgentProcess(_config(tmp_path, fake), ENV) as agent:
            worker = await _worker_of(agent)
            assert _alive(worker)
            await _send(agent, "b1", 100, 20)
            await _until_orders(fake, {f"a-{i}" for i in range(100, 120)})

            # The worker and every thread of it (the store's thread runs the pipeline) run
            # niced, so the doors win a contended CPU; the doors are not niced.
            (doors_nice,) = _thread_nices(agent_pid(agent))
            assert _thread_nices(worker) == {min(doors_nice + NICE, 19)}
            assert NICE > 0

            # /metrics: the door's counters and the worker's Brevo calls on one page.
            async with asyncio.timeout(10 * UNIT):
                while True:
                    status, text = await _get(agent, "/metrics")
                    if "woobrevo_brevo_calls_total" in text:
                        break
                    await asyncio.sleep(0.2)
            assert status == 200
            assert 'woobrevo_events_in_total{door="stream",site="a"} 20' in text
            status, text = await _get(agent, "/readyz")
            assert status == 200, text
            assert json.loads(text)["checks"] == {"store": "ok", "brevo": "ok"}
        # A clean stop takes the worker with it.
        assert not _alive(worker)
        _writes_once(fake)
        fake.assert_no_spec_violations()


@pytest.mark.slow
async def test_killed_worker_is_restarted_and_nothing_is_lost(tmp_path: Path) -> None:
    async with BrevoFake() as fake:
        async with AgentProcess(_config(tmp_path, fake), ENV) as agent:
            first = await _worker_of(agent)
            await _send(agent, "b1", 200, 10)
            await _until_orders(fake, {f"a-{i}" for i in range(200, 210)})
            await _until_idle(agent)

            os.kill(first, signal.SIGKILL)
            # Acks do not depend on the worker: the door stores while it is down.
            await _send(agent, "b2", 210, 10)
            second = first
            async with asyncio.timeout(20 * UNIT):
                while second == first:
                    await asyncio.sleep(0.1)
                    second = await _worker_of(agent) if _children(agent_pid(agent)) else first
            assert _alive(second)
            await _until_orders(fake, {f"a-{i}" for i in range(200, 220)})
            _, text = await _get(agent, "/metrics")
            assert "woobrevo_worker_restarts_total 1" in text
            assert any("exited with -9; restarting" in line for line in agent.log)
        _writes_once(fake)
        fake.assert_no_spec_violations()


@pytest.mark.slow
async def test_killed_doors_process_takes_its_worker_down(tmp_path: Path) -> None:
    async with BrevoFake() as fake:
        path = _config(tmp_path, fake)
        async with AgentProcess(path, ENV) as agent:
            worker = await _worker_of(agent)
            await _send(agent, "b1", 300, 5)
            await _until_orders(fake, {f"a-{i}" for i in range(300, 305)})
            await _until_idle(agent)
            assert agent.proc is not None
            agent.proc.kill()
            assert await agent.proc.wait() == -signal.SIGKILL
            # Its stdin closed with the doors process: it stops on its own, promptly.
            async with asyncio.timeout(15 * UNIT):
                while _alive(worker):  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.1)
        # A new agent on the same state finishes the work: nothing lost, nothing twice.
        async with AgentProcess(path, ENV) as agent:
            await _send(agent, "b2", 305, 5)
            await _until_orders(fake, {f"a-{i}" for i in range(300, 310)})
        _writes_once(fake)
        fake.assert_no_spec_violations()


async def test_a_second_forwarder_on_one_state_folder_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with forwarding_lock(state):
        with pytest.raises(AgentError) as err:
            async with forwarding_lock(state, wait=0.3):
                pass
        assert f"pid {os.getpid()}" in str(err.value)
        assert "agent.state_dir" in str(err.value)
    async with forwarding_lock(state, wait=0.3):  # released with the first
        pass
