"""Stream door benchmark: the agent's resident memory with many site connections.

    .venv/bin/python bench/stream_connections.py [--sites 500] [--idle-seconds 10] [--tls]
                                                 [--rate 2500] [--load-seconds 30] [--burst-rounds 3]

Generates a config with `--sites` sites, each with its own token, starts `woobrevo-agent run`
(Brevo dry-run) in a subprocess, opens one websocket per site from this process (hello →
welcome) and samples the agent's memory, its doors process and its worker together (RSS, PSS
and resident pages counted once, from /proc/PID/smaps_rollup; streamkit.memory_mb says why
three), while:

1. idle: every site connected, nothing sent (keepalive pings only), for `--idle-seconds`;
2. spread load: `--rate` events/s in `--batch`-event batches (default 100; REST orders, ~3 KB
   each), the batches
   dealt round-robin over every connection, for `--load-seconds`;
3. burst: every site sends a `--batch`-event batch at the same instant, `--burst-rounds` times (the
   worst case: every connection has a batch in flight at once).

Goal: ≤ 150 MB resident (every page the two processes hold, counted once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from streamkit import (
    batch_message,
    machine,
    memory_mb,
    open_site,
    self_signed,
    start_agent,
    stop_agent,
    write_config,
)
from websockets.asyncio.client import ClientConnection


class Sampler:
    """RSS, PSS and resident memory of the agent (its processes) every 200 ms while running;
    keeps the peaks."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = self.peak_pss = self.peak_resident = 0.0
        self._task: asyncio.Task[None] | None = None

    def _sample(self) -> None:
        rss, pss, resident = memory_mb(self.pid)
        self.peak, self.peak_pss = max(self.peak, rss), max(self.peak_pss, pss)
        self.peak_resident = max(self.peak_resident, resident)

    def peaks(self) -> dict[str, float]:
        return {
            "peak_resident_mb": round(self.peak_resident, 1),
            "peak_rss_mb": round(self.peak, 1),
            "peak_pss_mb": round(self.peak_pss, 1),
        }

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(0.2)

    def __enter__(self) -> Sampler:
        self._sample()
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self._sample()


async def send_and_ack(ws: ClientConnection, text: str) -> float:
    t = time.perf_counter()
    await ws.send(text)
    msg = json.loads(await ws.recv())
    assert msg["type"] == "ack" and len(msg["accepted"]) + len(msg["rejected"]) > 0, msg
    return time.perf_counter() - t


async def main(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        tls = self_signed(Path(tmp)) if args.tls else None
        config, tokens, port, http_port = write_config(
            Path(tmp), args.sites, tls=tls[:2] if tls else None
        )
        client_tls = tls[2] if tls else None
        proc = await start_agent(config, http_port, ingest_only=args.ingest_only)
        try:
            rss, _, resident = memory_mb(proc.pid)
            out["started"] = {"resident_mb": round(resident, 1), "rss_mb": round(rss, 1)}
            t0 = time.perf_counter()
            conns: list[ClientConnection] = []
            for i in range(0, args.sites, 50):
                chunk = list(tokens.values())[i : i + 50]
                conns += await asyncio.gather(*(open_site(port, t, client_tls) for t in chunk))
            out["connect_seconds"] = round(time.perf_counter() - t0, 2)
            with Sampler(proc.pid) as idle:
                await asyncio.sleep(args.idle_seconds)
            out["idle"] = {"connections": len(conns), "rss_mb": round(memory_mb(proc.pid)[0], 1),
                           **idle.peaks()}  # fmt: skip

            # Spread load: one batch every size/rate s, dealt round-robin over the connections.
            size = args.batch
            interval = size / args.rate
            count = int(args.load_seconds / interval)
            latencies: list[float] = []
            with Sampler(proc.pid) as load:
                start = time.perf_counter()
                tasks = []
                for n in range(count):
                    delay = start + n * interval - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    ws = conns[n % len(conns)]
                    if n >= len(conns):  # one batch in flight per connection, as the plugin does
                        latencies.append(await tasks[n - len(conns)])
                    text = batch_message(f"s{n}", n * size, size, f"spread{n % len(conns)}")
                    tasks.append(asyncio.create_task(send_and_ack(ws, text)))
                latencies += await asyncio.gather(*tasks[max(0, count - len(conns)) :])
                elapsed = time.perf_counter() - start
            latencies.sort()
            out["spread_load"] = {
                "events_per_s": round(count * size / elapsed),
                "batches": count,
                "ack_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
                "ack_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
                **load.peaks(),
            }

            # Burst: every connection sends a batch at once.
            rounds = []
            with Sampler(proc.pid) as burst:
                for r in range(args.burst_rounds):
                    texts = [
                        batch_message(f"r{r}", r * size, size, f"burst{i}")
                        for i in range(len(conns))
                    ]
                    t = time.perf_counter()
                    await asyncio.gather(
                        *(send_and_ack(ws, x) for ws, x in zip(conns, texts, strict=True))
                    )
                    rounds.append(time.perf_counter() - t)
                    del texts
            out["burst"] = {
                "batches_per_round": len(conns),
                "round_seconds": [round(x, 2) for x in rounds],
                "events_per_s": round(len(conns) * size * len(rounds) / sum(rounds)),
                **burst.peaks(),
            }
            out["rss_end_mb"], out["pss_end_mb"], out["resident_end_mb"] = (
                round(x, 1) for x in memory_mb(proc.pid)
            )
            await asyncio.gather(*(ws.close() for ws in conns))
        finally:
            await stop_agent(proc)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2500.0, help="events/s of the spread load")
    parser.add_argument("--load-seconds", type=float, default=30.0)
    parser.add_argument("--burst-rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="events per batch")
    parser.add_argument(
        "--ingest-only", action="store_true", help="stop the agent's processor (door + store alone)"
    )
    parser.add_argument(
        "--tls", action="store_true", help="wss://: the agent terminates TLS itself (agent.tls)"
    )
    result = asyncio.run(main(parser.parse_args()))
    result["machine"]["loadavg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
