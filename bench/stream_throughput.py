"""Stream door benchmark: durable-ack throughput and ack latency through the real agent.

    .venv/bin/python bench/stream_throughput.py [--seconds 15] [--connections 1] [--window 4]
                                                [--latency-seconds 30] [--tls]

Starts `woobrevo-agent run` (Brevo dry-run, so the processor and forwarder run too) in a
subprocess, and drives it over loopback with the websockets client from this process:

1. sustained: `--connections` sites, each pipelining up to `--window` batches of 100 REST-sized
   events (the reference order, ~3 KB each) for `--seconds`; every event counts once its ack
   (sent only after the commit) comes back. Goal ≥ 5,000 events/s.
2. latency: one site sending 100-event batches at 1,000 events/s (one batch every 100 ms,
   open loop) for `--latency-seconds`; send-to-ack time per batch. Goal p99 ≤ 100 ms. Also
   10-event batches every 10 ms (the same rate, in smaller pieces).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from streamkit import (
    batch_message,
    machine,
    open_site,
    percentile,
    self_signed,
    start_agent,
    start_brevo_fake,
    stop_agent,
    write_config,
)
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

Site = Callable[[str], Awaitable[ClientConnection]]  # a token → that site's open connection


async def sustained(
    ws: ClientConnection, prefix: str, seconds: float, window: int
) -> tuple[int, list[float]]:
    """Pipeline batches for `seconds`; returns (events acked, latencies)."""
    slots = asyncio.Semaphore(window)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    acked = 0
    stop_at = time.perf_counter() + seconds
    # Messages are built ahead so the client's own JSON work stays off the clock.
    ready = [batch_message(f"{prefix}-b{i}", i * 100, 100, prefix) for i in range(window * 2)]
    n = 0

    async def reader() -> None:
        nonlocal acked
        while True:
            msg = json.loads(await ws.recv())
            assert msg["type"] == "ack", msg
            latencies.append(time.perf_counter() - sent.pop(msg["batch"]))
            acked += len(msg["accepted"]) + len(msg["rejected"])
            slots.release()

    task = asyncio.create_task(reader())
    while time.perf_counter() < stop_at:
        await slots.acquire()
        name = f"{prefix}-b{n}"
        text = ready[n] if n < len(ready) else batch_message(name, n * 100, 100, prefix)
        sent[name] = time.perf_counter()
        await ws.send(text)
        n += 1
    for _ in range(window):  # every batch in flight is acked
        await slots.acquire()
    task.cancel()
    return acked, latencies


async def paced(
    ws: ClientConnection, prefix: str, seconds: float, size: int, interval: float
) -> list[float]:
    """Open loop: one `size`-event batch every `interval` s, whatever the acks do."""
    count = int(seconds / interval)
    messages = [batch_message(f"{prefix}-b{i}", i * size, size, prefix) for i in range(count)]
    sent: dict[str, float] = {}
    latencies: list[float] = []

    async def reader() -> None:
        while len(latencies) < count:
            msg = json.loads(await ws.recv())
            latencies.append(time.perf_counter() - sent.pop(msg["batch"]))

    task = asyncio.create_task(reader())
    start = time.perf_counter()
    try:
        for i, text in enumerate(messages):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[f"{prefix}-b{i}"] = time.perf_counter()
            await ws.send(text)
        await task
    finally:
        task.cancel()
    return latencies


@contextlib.asynccontextmanager
async def fresh_agent(args: argparse.Namespace) -> AsyncIterator[tuple[Site, dict[str, str], int]]:
    """A new agent on a new state folder: each phase starts with an empty inbox, so the
    latency phases are not measured while the worker still processes the sustained phase.
    Yields a function that opens a site's connection, the tokens and the HTTP port."""
    with tempfile.TemporaryDirectory() as tmp:
        fake, base_url = (None, None)
        if args.brevo == "fake":
            fake, base_url = await start_brevo_fake(Path(tmp))
        tls = self_signed(Path(tmp)) if args.tls else None
        try:
            config, tokens, port, http_port = write_config(
                Path(tmp),
                max(args.connections, 2),
                args.processing,
                base_url,
                tls=tls[:2] if tls else None,
            )
            proc = await start_agent(config, http_port, ingest_only=args.ingest_only)

            def site(token: str) -> Awaitable[ClientConnection]:
                return open_site(port, token, tls[2] if tls else None)

            try:
                yield site, tokens, http_port
            finally:
                await stop_agent(proc)
        finally:
            if fake is not None:
                await stop_agent(fake)


async def backlog(http_port: int) -> dict[str, int]:
    """Events stored but not processed, and Brevo jobs not sent, over every site."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{http_port}/status") as r,
    ):
        doc = await r.json()
    sites = doc["sites"].values()
    return {
        "events": sum(site["backlog"]["inbox_depth"] for site in sites),
        "jobs": sum(site["backlog"]["pending_jobs"] for site in sites),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    async with fresh_agent(args) as (site, tokens, http_port):
        sites = list(tokens)[: args.connections]
        conns = [await site(tokens[s]) for s in sites]
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(sustained(ws, f"t{i}", args.seconds, args.window) for i, ws in enumerate(conns))
        )
        elapsed = time.perf_counter() - t0
        events = sum(r[0] for r in results)
        lat = [x for r in results for x in r[1]]
        out["sustained"] = {
            "events": events,
            "seconds": round(elapsed, 2),
            "events_per_s": round(events / elapsed),
            "ack_p50_ms": round(percentile(lat, 50) * 1000, 1),
            "ack_p99_ms": round(percentile(lat, 99) * 1000, 1),
            # not processed yet when the last ack came: the inbox absorbs the burst
            "backlog_at_end": await backlog(http_port),
        }
        for ws in conns:
            await ws.close()
    for size, interval in ((100, 0.1), (10, 0.01)):
        key = f"latency_{size}x{round(1 / interval)}"
        async with fresh_agent(args) as (site, tokens, http_port):
            ws = await site(tokens[list(tokens)[-1]])
            try:
                lat = await paced(ws, f"p{size}", args.latency_seconds, size, interval)
            except ConnectionClosed as exc:
                # The agent could not keep up with the paced load: it stopped reading
                # (backpressure) and closed on the keepalive; say so instead of a figure.
                out[key] = {"events_per_s": round(size / interval), "failed": str(exc)}
                continue
            out[key] = {
                "events_per_s": round(size / interval),
                "batches": len(lat),
                "p50_ms": round(percentile(lat, 50) * 1000, 1),
                "p99_ms": round(percentile(lat, 99) * 1000, 1),
                "max_ms": round(max(lat) * 1000, 1),
                # did the pipeline and the forwarder keep up with 1,000 events/s?
                "backlog_at_end": await backlog(http_port),
            }
            await ws.close()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--brevo",
        choices=["dry-run", "fake"],
        default="dry-run",
        help="dry-run (the forwarder sends as fast as it can, nowhere) or the Brevo fake with"
        " the general plan's real rate limits (the pace of a real account)",
    )
    parser.add_argument(
        "--processing",
        choices=["process", "inline"],
        default="process",
        help="agent.processing: a worker process (default) or one process",
    )
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument(
        "--ingest-only", action="store_true", help="stop the agent's processor (door + store alone)"
    )
    parser.add_argument(
        "--tls", action="store_true", help="wss://: the agent terminates TLS itself (agent.tls)"
    )
    result = asyncio.run(main(parser.parse_args()))
    result["machine"]["loadavg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
