"""The worker process: the processor and the Brevo forwarder, beside the doors' process.

`woobrevo-agent run` starts two processes when `agent.processing` is `process` (the default):

- the **doors** process (the one systemd started): websocket, webhooks, polling, HTTP; it
  stores events and acks them;
- the **worker** (`woobrevo-agent worker`, started and watched by `WorkerLink` below): it turns
  stored events into Brevo jobs and sends them.

Why two: the doors and the pipeline are both Python, and one process runs Python on one core
at a time. Under a burst, processing held the interpreter the doors needed to parse and ack,
so acks slowed to the pipeline's pace (docs/benchmarks.md, "Stream door"). In two processes
the doors keep a core of their own: events are acked as soon as they are stored, and
processing catches up behind them (the inbox is the buffer, docs/durability.md). The worker
runs `nice`d, so that on a busy machine the kernel gives the doors the CPU first: the pipeline
runs outside any transaction and takes the write lock only to write a chunk's results
(agent/store/chunk.py), so a worker kept waiting never holds the doors up.

The two share only the SQLite file (WAL; one writer at a time, `busy_timeout` waits) and two
pipes: the worker's stdin is its doorbell and lifeline (a byte = "new rows"; end of file =
"the doors process is gone: stop"), and its stdout carries a status line each second (its
metrics and Brevo readiness) that /metrics and /readyz merge. Logs go to stderr, shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from agent.core.retry import backoff_delay
from agent.metrics import Metrics

__all__ = ["NICE", "REPORT_EVERY", "WorkerLink", "serve_worker"]

log = logging.getLogger("agent.worker")

REPORT_EVERY = 1.0  # seconds between the worker's status lines
SILENT_AFTER = 10.0  # a worker not heard from for this long is reported not ready
STOP_GRACE = 30.0  # seconds the worker gets to finish its Brevo calls on shutdown
# The worker's niceness, added to the doors' before its first thread starts (Linux nices each
# thread: the store's thread, which runs the pipeline, inherits it only if it starts after), so
# that the doors win a contended CPU.
NICE = 10


class WorkerLink:
    """In the doors process: start the worker, ring it when rows arrive, read its reports,
    restart it if it dies, and stop it on the way out. `ingested` is the store's signal that
    rows were stored (agent/store/ports.py `Ingest`): each time it is set, the worker is rung."""

    def __init__(self, argv: Sequence[str], *, ingested: asyncio.Event, metrics: Metrics) -> None:
        self.argv = list(argv)
        self.ingested = ingested
        self._metrics = metrics  # ours (restarts); `metrics()` reads the worker's
        self.proc: asyncio.subprocess.Process | None = None
        self.report: dict[str, Any] = {}
        self.heard_at: float | None = None
        self.restarts = 0
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> WorkerLink:
        await self._spawn()
        self._tasks += [
            asyncio.create_task(self._supervise(), name="worker-supervise"),
            asyncio.create_task(self._doorbell(), name="worker-doorbell"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the worker's stdin (it finishes what it is doing and exits), then wait."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(STOP_GRACE):
                await proc.wait()
        except TimeoutError:
            log.warning("worker %d did not stop within %gs; terminating", proc.pid, STOP_GRACE)
            proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()

    # -- what the doors process reads -----------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        """For /readyz: the worker answers and its Brevo accounts are usable."""
        if self.heard_at is None or time.monotonic() - self.heard_at > SILENT_AFTER:
            return False, "the worker process is not reporting (see the agent's log)"
        ok, why = self.report.get("ready", (False, "no report yet"))
        return bool(ok), str(why)

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        """The worker's counters and gauges, as of its last report."""
        series = self.report.get("metrics", [])
        return [(str(n), dict(labels), float(v)) for n, labels, v in series]

    # -- internals ------------------------------------------------------------------------

    async def _spawn(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024,  # a report line with many sites' series
        )
        log.info("worker process %d started", self.proc.pid)
        # The dead worker's reader has ended with its pipe: keep only live tasks.
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(self._read(self.proc), name="worker-read"))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            try:
                self.report = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("worker wrote a line that is not a report: %.200r", line)
                continue
            self.heard_at = time.monotonic()

    async def _supervise(self) -> None:
        while True:
            proc = self.proc
            assert proc is not None
            code = await proc.wait()
            if self._closing:
                return
            delay = backoff_delay(self.restarts, initial=1.0, max_delay=30.0)
            self.restarts += 1
            self._metrics.inc("woobrevo_worker_restarts_total")
            log.error("worker process %d exited with %s; restarting in %gs", proc.pid, code, delay)
            self.heard_at = None
            await asyncio.sleep(delay)
            await self._spawn()
            self.ingested.set()  # whatever arrived meanwhile

    async def _doorbell(self) -> None:
        """One byte per wake-up, however many batches were stored meanwhile."""
        ingested = self.ingested
        while True:
            await ingested.wait()
            ingested.clear()
            proc = self.proc
            if proc is None or proc.stdin is None or proc.returncode is not None:
                continue
            try:
                proc.stdin.write(b"\n")
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # it died; _supervise restarts it and rings again


async def serve_worker(
    *, ingested: asyncio.Event, ready: Callable[[], tuple[bool, str]], metrics: Metrics
) -> None:
    """In the worker process: run until stdin closes (the doors process stopped or died).
    Each ring sets `ingested` (the processor looks for new rows); each report says `ready()`
    (the forwarder's Brevo readiness) and the `metrics` series."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    report = asyncio.create_task(_report(ready, metrics), name="worker-report")
    try:
        while await reader.read(4096):
            ingested.set()
    finally:
        report.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await report
    log.info("the doors process closed the link; stopping")


async def _report(ready: Callable[[], tuple[bool, str]], metrics: Metrics) -> None:
    out = sys.stdout.buffer
    while True:
        line = {"ready": ready(), "metrics": metrics.series(), "pid": os.getpid()}
        out.write(orjson.dumps(line) + b"\n")
        out.flush()
        await asyncio.sleep(REPORT_EVERY)
