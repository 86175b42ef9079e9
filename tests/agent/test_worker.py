"""`processing: process`: a real `woobrevo-agent run` as two processes (agent/process/worker.py).

The doors process stores and acks; its worker processes and forwards. Both are real
processes here, killed with SIGKILL where the test says so, against the Brevo fake.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from agent.app import forwarding_lock
from agent.errors import AgentError
from agent.process.worker import NICE
from tests.agent.doorkit import AgentProcess, batch, config_data, event, hello, order
from tests.fakes.brevo import BrevoFake
from tests.kit import live, until, write_config

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _config(tmp_path: Path, fake: BrevoFake) -> Path:
    data = config_data(tmp_path, brevo=live(fake, max_backoff="2s"))
    return write_config(tmp_path / "agent.yaml", data)


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
    pid = agent_pid(agent)
    await until(lambda: _children(pid), 10, what="the worker process", every=0.05)
    kids = _children(pid)
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


async def _idle(agent: AgentProcess) -> bool:
    """Every job done and recorded (a kill before that would resend the calls in flight:
    at-least-once, docs/durability.md)."""
    backlog = (await agent.status())["sites"]["a"]["backlog"]
    return bool(backlog == {"inbox_depth": 0, "pending_jobs": 0, "dead_letters": 0})


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
            await until(lambda: {f"a-{i}" for i in range(100, 120)} <= set(fake.orders), 60)

            # The worker and every thread of it (the store's thread runs the pipeline) run
            # niced, so the doors win a contended CPU; the doors are not niced.
            (doors_nice,) = _thread_nices(agent_pid(agent))
            assert _thread_nices(worker) == {min(doors_nice + NICE, 19)}
            assert NICE > 0

            # /metrics: the door's counters and the worker's Brevo calls on one page.
            async def brevo_calls_shown() -> bool:
                return "woobrevo_brevo_calls_total" in (await _get(agent, "/metrics"))[1]

            await until(brevo_calls_shown, 10, every=0.2)
            status, text = await _get(agent, "/metrics")
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
            await until(lambda: {f"a-{i}" for i in range(200, 210)} <= set(fake.orders), 60)
            await until(lambda: _idle(agent), 30, every=0.1)

            os.kill(first, signal.SIGKILL)
            # Acks do not depend on the worker: the door stores while it is down.
            await _send(agent, "b2", 210, 10)
            await until(lambda: _children(agent_pid(agent)) not in ([], [first]), 20, every=0.1)
            second = await _worker_of(agent)
            assert _alive(second)
            await until(lambda: {f"a-{i}" for i in range(200, 220)} <= set(fake.orders), 60)
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
            await until(lambda: {f"a-{i}" for i in range(300, 305)} <= set(fake.orders), 60)
            await until(lambda: _idle(agent), 30, every=0.1)
            assert agent.proc is not None
            agent.proc.kill()
            assert await agent.proc.wait() == -signal.SIGKILL
            # Its stdin closed with the doors process: it stops on its own, promptly.
            await until(lambda: not _alive(worker), 15, every=0.1)
        # A new agent on the same state finishes the work: nothing lost, nothing twice.
        async with AgentProcess(path, ENV) as agent:
            await _send(agent, "b2", 305, 5)
            await until(lambda: {f"a-{i}" for i in range(300, 310)} <= set(fake.orders), 60)
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
