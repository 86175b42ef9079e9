"""Shared by bench/stream_throughput.py and bench/stream_connections.py: a generated config, the
real agent (`woobrevo-agent run`) in a subprocess, REST-sized events, and the machine's facts."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.tokens import new_token, token_hash  # noqa: E402
from tests.certs import self_signed_cert  # noqa: E402

ORDER: dict[str, Any] = json.loads(
    (ROOT / "tests/fixtures/woocommerce/docs-examples/order.json").read_text()
)
HELLO = {
    "type": "hello", "protocol": 1, "site_url": "https://bench.example/", "blog_id": 1,
    "plugin_version": "0.1.0", "wp_version": "6.8.8", "wc_version": "10.0.2",
}  # fmt: skip


async def open_site(port: int, token: str, tls: ssl.SSLContext | None = None) -> ClientConnection:
    """A site's websocket to the agent, past hello → welcome (the plugin's first exchange);
    `wss://` with `tls` (the context that trusts the agent's certificate)."""
    ws = await connect(
        f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/v1/stream",
        ssl=tls,
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        max_size=None,
        open_timeout=60,  # 500 sites connecting at once on a loaded machine
    )
    await ws.send(json.dumps(HELLO))
    assert json.loads(await ws.recv())["type"] == "welcome"
    return ws


def free_port() -> int:
    """A port the kernel just gave out (closed again; a tiny race a benchmark can live with)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path, ssl.SSLContext]:
    """A certificate and key for 127.0.0.1 (tests/certs.py), and a client context that trusts
    it: the agent then terminates TLS itself (`agent.tls`)."""
    cert, key = self_signed_cert(directory)
    return cert, key, ssl.create_default_context(cafile=str(cert))


def write_config(
    directory: Path,
    sites: int,
    processing: str = "process",
    brevo: str | None = None,
    tls: tuple[Path, Path] | None = None,
) -> tuple[Path, dict[str, str], int, int]:
    """A config with `sites` sites (s0, s1…), each with its own token; `processing` as
    `agent.processing` (process: doors and worker in two processes); Brevo dry-run, or the
    Brevo fake at `brevo` (its base URL; see `start_brevo_fake`); `tls`: (cert, key) for
    `agent.tls`."""
    tokens = {f"s{i}": new_token() for i in range(sites)}
    stream_port, http_port = free_port(), free_port()
    data = {
        "agent": {
            "listen": {"stream": f"127.0.0.1:{stream_port}", "http": f"127.0.0.1:{http_port}"},
            "state_dir": str(directory / "state"),
            "log_level": "warning",
            "processing": processing,
            **({"tls": {"cert": str(tls[0]), "key": str(tls[1])}} if tls else {}),
        },
        "brevo": (
            {"dry_run": True}
            if brevo is None
            else {"dry_run": False, "base_url": brevo, "api_key": BREVO_FAKE_KEY}
        ),
        # One Brevo account for every site: each needs its own id prefix (agent/config.py).
        "sites": [
            {"id": sid, "token_sha256": token_hash(tok), "brevo_id_prefix": f"{sid}-"}
            for sid, tok in tokens.items()
        ],
    }
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, tokens, stream_port, http_port


BREVO_FAKE_KEY = "xkeysib-bench-0000000000000000000000000000000000000000"


async def start_brevo_fake(directory: Path) -> tuple[asyncio.subprocess.Process, str]:
    """The Brevo fake (tests/fakes/brevo/) in its own process, answering as Brevo does with
    the general plan's real limits (429 past them); returns it and the base URL to use."""
    port_file = directory / "brevo.port"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.brevo", "--port", "0", "--port-file", str(port_file),
        "--api-key", BREVO_FAKE_KEY, "--plan", "general", "--enforce-limits",
        cwd=ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    async with asyncio.timeout(60):
        while not port_file.exists():
            if proc.returncode is not None:
                raise RuntimeError("the Brevo fake did not start")
            await asyncio.sleep(0.1)
    return proc, f"http://127.0.0.1:{port_file.read_text().strip()}/v3"


def agent_command(config: Path, *, ingest_only: bool = False) -> list[str]:
    """`woobrevo-agent run`; or, with `ingest_only`, the same App with its processor stopped
    (`serve` below), to measure the door and the store without the processing behind them."""
    if ingest_only:
        return [sys.executable, str(Path(__file__).resolve()), "serve", str(config)]
    return [sys.executable, "-m", "agent.cli", "run", "--config", str(config),
            "--log-level", "warning"]  # fmt: skip


async def start_agent(
    config: Path, http_port: int, *, ingest_only: bool = False
) -> asyncio.subprocess.Process:
    """The agent in a subprocess, returned once /healthz answers."""
    import aiohttp

    cmd = agent_command(config, ingest_only=ingest_only)
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    async with asyncio.timeout(60), aiohttp.ClientSession() as s:
        while True:
            try:
                async with s.get(f"http://127.0.0.1:{http_port}/healthz") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            if proc.returncode is not None:
                raise RuntimeError("the agent did not start")
            await asyncio.sleep(0.05)


async def serve_ingest_only(config: Path) -> None:
    """The real App (doors, store, forwarder) with the processor stopped, until SIGTERM."""
    import logging
    import signal

    from agent.app import App
    from agent.config import load_config

    logging.basicConfig(level=logging.WARNING)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with App(load_config(config)) as app:
        await app.processor.close()
        await stop.wait()


async def stop_agent(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM and wait."""
    if proc.returncode is None:
        proc.terminate()
    try:
        async with asyncio.timeout(30):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()


def memory_mb(pid: int) -> tuple[float, float, float]:
    """(RSS, PSS, resident) in MB of a process plus its children (the agent's worker process).

    RSS counts a page each time a process maps it: the libraries both processes load (Python,
    SQLite, OpenSSL) twice. PSS divides each page among every process mapping it, including
    ones that are not the agent (this benchmark's own Python maps the same libpython), so it
    counts less than the agent holds. `resident` counts each page the agent's processes hold
    once: their private pages plus the larger of their shared sets (the pages they share are,
    but for a few, the same libraries; checked against the page frames in /proc/PID/pagemap:
    85.2 against 85.3 MB for an idle agent). It is the goal's measure.
    """
    kids = Path(f"/proc/{pid}/task/{pid}/children")
    pids = [pid, *(int(p) for p in kids.read_text().split())] if kids.exists() else [pid]
    rss = pss = private = shared = 0.0
    for one in pids:
        try:
            roll = _rollup(Path(f"/proc/{one}/smaps_rollup"))
        except FileNotFoundError:  # a child that just exited
            continue
        rss += roll["Rss"] / 1024
        pss += roll["Pss"] / 1024
        private += (roll["Private_Clean"] + roll["Private_Dirty"]) / 1024
        shared = max(shared, (roll["Shared_Clean"] + roll["Shared_Dirty"]) / 1024)
    return rss, pss, private + shared


def _rollup(path: Path) -> dict[str, int]:
    """The kB counters of /proc/PID/smaps_rollup."""
    out = {}
    for line in path.read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        value = rest.split()
        if value and value[0].isdigit():
            out[key] = int(value[0])
    return out


_ORDER_TAIL = json.dumps(
    {k: v for k, v in ORDER.items() if k not in ("id", "billing")}
    | {"date_modified_gmt": "2026-11-27T06:00:00"}
)[1:]
_BILLING = json.dumps({k: v for k, v in ORDER["billing"].items() if k != "email"})[1:]


def batch_message(name: str, first_id: int, n: int, prefix: str) -> str:
    """One `events` message of `n` REST orders (~3 KB each), each its own id, order id and
    customer e-mail (one shopper per 5 orders, as a store's traffic looks).

    Built by string formatting around the order's JSON (serialized once), so the client's own
    work stays small beside the agent's.
    """
    events = ",".join(
        f'{{"id":"{prefix}-{i}","topic":"order.updated","resource":"order","resource_id":{i + 1},'
        f'"occurred_at":"2026-11-27T06:29:58Z","payload":{{"id":{i + 1},'
        f'"billing":{{"email":"{prefix}-c{i // 5}@example.com",{_BILLING},{_ORDER_TAIL}}}'
        for i in range(first_id, first_id + n)
    )
    return f'{{"type":"events","batch":"{name}","events":[{events}]}}'


def machine() -> dict[str, Any]:
    """nproc, the CPU model, Python and the kernel."""
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "loadavg_1m": os.getloadavg()[0],  # other work on the machine skews every figure
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    asyncio.run(serve_ingest_only(Path(sys.argv[2])))
