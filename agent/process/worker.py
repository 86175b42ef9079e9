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
pipes: the worker's stdin brings it first the config, as one line (`{"config": <the file's
bytes, base64>}`: the bytes the doors run with, however the file has changed since), then is
its doorbell and lifeline (an empty line = "new rows"; end of file = "the doors process is
gone: stop"), and its stdout carries a status line each second
(its metrics and Brevo readiness) that /metrics and /readyz merge. Logs go to stderr, shared.

A config reload (`systemctl reload`, agent/reload.py) rides the same pipes: the doors process
writes `{"reload": n, "config": <the file's bytes, base64>}` as one line, the worker applies
exactly those bytes and answers `{"reloaded": n, "ok": …, "error": …}` on its stdout; the
doors apply the new config only once the worker has.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from agent.core.retry import backoff_delay
from agent.errors import AgentError
from agent.metrics import Metrics

__all__ = ["NICE", "REPORT_EVERY", "WorkerLink", "read_config", "serve_worker"]

log = logging.getLogger("agent.worker")

REPORT_EVERY = 1.0  # seconds between the worker's status lines
SILENT_AFTER = 10.0  # a worker not heard from for this long is reported not ready
STOP_GRACE = 30.0  # seconds the worker gets to finish its Brevo calls on shutdown
# Seconds the doors wait for the worker to apply a reload: an account it stops first lets its
# Brevo calls in flight be answered (agent/forward/forwarder.py DRAIN_GRACE).
RELOAD_WAIT = 60.0
LINE_LIMIT = 16 * 1024 * 1024  # the longest line either side reads (a report, a config)
# The worker's niceness, added to the doors' before its first thread starts (Linux nices each
# thread: the store's thread, which runs the pipeline, inherits it only if it starts after), so
# that the doors win a contended CPU.
NICE = 10


class WorkerLink:
    """In the doors process: start the worker, ring it when rows arrive, read its reports,
    restart it if it dies, and stop it on the way out. `ingested` is the store's signal that
    rows were stored (agent/store/ports.py `Ingest`): each time it is set, the worker is rung."""

    def __init__(
        self, argv: Sequence[str], *, config: bytes, ingested: asyncio.Event, metrics: Metrics
    ) -> None:
        self.argv = list(argv)
        # The config file's bytes in force: each worker started is handed these (a reload
        # replaces them once the worker has applied the new ones).
        self.config = config
        self.ingested = ingested
        self._metrics = metrics  # ours (restarts); `metrics()` reads the worker's
        self.proc: asyncio.subprocess.Process | None = None
        self.report: dict[str, Any] = {}
        self.heard_at: float | None = None
        # Set at the worker's first report: it is up and its loop turns (systemd's READY=1
        # waits for it, agent/cli/main.py).
        self.answering = asyncio.Event()
        self._spawned_at = 0.0
        self.restarts = 0
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._reloads: dict[int, asyncio.Future[tuple[bool, str | None]]] = {}
        self._reload_number = 0

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

    def wedged(self, after: float) -> bool:
        """The worker runs but has not reported for `after` seconds: its loop is stuck (a dead
        worker is restarted by `_supervise`; a stuck one only the watchdog catches)."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return False
        last = self.heard_at if self.heard_at is not None else self._spawned_at
        return time.monotonic() - last > after

    async def reload(self, raw: bytes, within: float = RELOAD_WAIT) -> tuple[bool, str | None]:
        """Have the worker apply the config file `raw` (its bytes); (True, None) once it has,
        else (False, why)."""
        proc = self.proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            return False, "it is not running (being restarted); reload again in a moment"
        self._reload_number += 1
        number = self._reload_number
        answer: asyncio.Future[tuple[bool, str | None]] = asyncio.get_running_loop().create_future()
        self._reloads[number] = answer
        try:
            proc.stdin.write(_config_line(raw, reload=number))
            await proc.stdin.drain()
            async with asyncio.timeout(within):
                ok, why = await answer
        except (BrokenPipeError, ConnectionResetError):
            return False, "it went away during the reload"
        except TimeoutError:
            return False, (
                f"it did not answer within {within:g}s; its config is unknown: restart the agent"
            )
        finally:
            self._reloads.pop(number, None)
        if ok:
            self.config = raw  # a worker started from now on runs this config
        return ok, why

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
            limit=LINE_LIMIT,  # a report line with many sites' series
        )
        self._spawned_at = time.monotonic()
        log.info("worker process %d started", self.proc.pid)
        assert self.proc.stdin is not None
        self.proc.stdin.write(_config_line(self.config))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await self.proc.stdin.drain()  # one that dies at once is restarted by _supervise
        # The dead worker's reader has ended with its pipe: keep only live tasks.
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(self._read(self.proc), name="worker-read"))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            try:
                report = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("worker wrote a line that is not a report: %.200r", line)
                continue
            if isinstance(report, dict) and "reloaded" in report:
                answer = self._reloads.get(report["reloaded"])
                if answer is not None and not answer.done():
                    answer.set_result((bool(report.get("ok")), report.get("error")))
                continue
            self.report = report
            self.heard_at = time.monotonic()
            self.answering.set()

    async def _supervise(self) -> None:
        while True:
            proc = self.proc
            assert proc is not None
            code = await proc.wait()
            if self._closing:
                return
            for answer in self._reloads.values():
                if not answer.done():
                    answer.set_result((False, f"it exited ({code}) during the reload"))
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
                proc.stdin.write(b"\n")  # an empty line: a ring (a reload is a line of JSON)
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # it died; _supervise restarts it and rings again


Reload = Callable[[bytes], Awaitable[tuple[bool, str | None]]]


def _config_line(raw: bytes, **more: int) -> bytes:
    return orjson.dumps({**more, "config": base64.b64encode(raw).decode("ascii")}) + b"\n"


def read_config(fd: int = 0) -> tuple[bytes, bytes]:
    """In the worker process, before anything else reads stdin: the config file's bytes the
    doors process sent as its first line, and the bytes read after that line (rings, a reload
    request: `serve_worker` takes them first)."""
    got = b""
    while b"\n" not in got:
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AgentError("the doors process closed the link before sending the config")
        got += chunk
    line, rest = got.split(b"\n", 1)
    try:
        return base64.b64decode(orjson.loads(line)["config"]), rest
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise AgentError("the first line from the doors process is not the config") from None


async def serve_worker(
    *,
    ingested: asyncio.Event,
    ready: Callable[[], tuple[bool, str]],
    metrics: Metrics,
    reload: Reload | None = None,
    pending: bytes = b"",
) -> None:
    """In the worker process: run until stdin closes (the doors process stopped or died).
    Each ring sets `ingested` (the processor looks for new rows); each report says `ready()`
    (the forwarder's Brevo readiness) and the `metrics` series; a reload request is handed to
    `reload` (the file's bytes → applied or not, and why) and answered. `pending`: what
    `read_config` read past the config line."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    reader.feed_data(pending)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    report = asyncio.create_task(_report(ready, metrics), name="worker-report")
    reloads: set[asyncio.Task[None]] = set()
    try:
        while line := await reader.readline():
            ingested.set()
            if line.strip():
                task = asyncio.create_task(_reload(line, reload), name="worker-reload")
                reloads.add(task)
                task.add_done_callback(reloads.discard)
    finally:
        for task in (report, *reloads):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    log.info("the doors process closed the link; stopping")


async def _reload(line: bytes, reload: Reload | None) -> None:
    """Apply one reload request and answer it on stdout."""
    try:
        request = orjson.loads(line)
        number, raw = int(request["reload"]), base64.b64decode(request["config"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.error("the doors process wrote a line that is not a reload request; ignored")
        return
    ok: bool
    error: str | None
    if reload is None:
        ok, error = False, "this worker cannot reload"
    else:
        ok, error = await reload(raw)
    answer = {"reloaded": number, "ok": ok, "error": error, "pid": os.getpid()}
    out = sys.stdout.buffer
    out.write(orjson.dumps(answer) + b"\n")
    out.flush()


async def _report(ready: Callable[[], tuple[bool, str]], metrics: Metrics) -> None:
    out = sys.stdout.buffer
    while True:
        line = {"ready": ready(), "metrics": metrics.series(), "pid": os.getpid()}
        out.write(orjson.dumps(line) + b"\n")
        out.flush()
        await asyncio.sleep(REPORT_EVERY)
