"""The sd_notify protocol, written against `$NOTIFY_SOCKET` directly (no dependency).

systemd hands a `Type=notify` service the path of an AF_UNIX datagram socket in `NOTIFY_SOCKET`
(a leading `@` means the Linux abstract namespace); the service sends newline-separated
`KEY=value` assignments to it, one datagram per message (sd_notify(3), "Notes"). With
`WatchdogSec=` set, systemd also exports `WATCHDOG_USEC` (and `WATCHDOG_PID`) and kills the
service when no `WATCHDOG=1` arrives within that interval (sd_watchdog_enabled(3)).

Only the doors process (the unit's MAINPID) talks to the socket: the unit says
`NotifyAccess=main`, and `scrub_child_environment` keeps the variables away from the worker
process so it cannot even try. Without `NOTIFY_SOCKET` (a terminal, a test, another supervisor)
every call here is a cheap no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

__all__ = [
    "monotonic_usec",
    "notify",
    "scrub_child_environment",
    "serve",
    "status_loop",
    "watchdog_interval",
    "watchdog_loop",
]

log = logging.getLogger("agent.systemd")

# The variables systemd sets for the notify protocol; a child must not inherit them
# (sd_notify(3) `unset_environment`, for the same reason).
_NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
# A datagram to systemd's socket never waits long; the cap keeps a stuck manager from
# stalling the event loop that sends it.
_SEND_TIMEOUT = 1.0
STATUS_EVERY = 5.0  # seconds between STATUS= lines (sent only when the line changed)

_send_error_logged = False
# What scrub_child_environment() took out of os.environ; notify() keeps using it.
_saved: dict[str, str] | None = None


def _environment(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    if environ is not None:
        return environ
    return os.environ if _saved is None else _saved


def _address(raw: str) -> str | None:
    """The socket address for a `NOTIFY_SOCKET` value, or None when it is not AF_UNIX."""
    if raw.startswith("@"):
        return "\0" + raw[1:]  # the abstract namespace (unix(7))
    if raw.startswith("/"):
        return raw
    return None  # e.g. "vsock:…" for VMs; not a place this agent runs


def notify(*lines: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send `KEY=value` lines as one datagram; False (and nothing sent) without a socket.

    Never raises on a send error: the service keeps running and the first failure is logged
    at debug (systemd going away during shutdown is ordinary).
    """
    global _send_error_logged
    env = _environment(environ)
    raw = env.get("NOTIFY_SOCKET", "")
    if not raw or not lines:
        return False
    address = _address(raw)
    if address is None:
        return False
    message = "\n".join(lines).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(_SEND_TIMEOUT)
            sock.sendto(message, address)
    except OSError as exc:
        if not _send_error_logged:
            _send_error_logged = True
            log.debug("sd_notify to %s failed: %s", raw, exc)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout in seconds from `WATCHDOG_USEC`, or None when not asked for.

    `WATCHDOG_PID`, when set, names the process the timeout is meant for; any other process
    (a forked child that inherited the environment) gets None (sd_watchdog_enabled(3)).
    """
    env = _environment(environ)
    raw = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    try:
        usec = int(raw)
        if pid and int(pid) != os.getpid():
            return None
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 1_000_000


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, for `RELOADING=1` + `MONOTONIC_USEC=` (systemd 253+)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def scrub_child_environment() -> None:
    """Drop the notify variables from this process's environment before starting children.

    notify() and watchdog_interval() go on using the saved copy in this process; the worker,
    started afterwards, inherits an environment without them. Idempotent.
    """
    global _saved
    if _saved is None:
        _saved = {name: os.environ[name] for name in _NOTIFY_VARIABLES if name in os.environ}
    for name in _NOTIFY_VARIABLES:
        os.environ.pop(name, None)


async def watchdog_loop(
    interval: float,
    healthy: Callable[[], bool] = lambda: True,
    *,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Send `WATCHDOG=1` at half the timeout, from the event loop, while `healthy()` holds.

    The ping rides the loop on purpose: a loop wedged by a blocking call stops pinging and
    systemd restarts the service (sd_watchdog_enabled(3) suggests half the interval).
    """
    period = interval / 2
    while True:
        if healthy():
            notify("WATCHDOG=1", environ=environ)
        else:
            log.warning("watchdog ping withheld: the agent is not healthy")
        await asyncio.sleep(period)


async def status_loop(
    render: Callable[[], Awaitable[str]],
    every: float,
    *,
    shown: str = "",
    environ: Mapping[str, str] | None = None,
) -> None:
    """Send `STATUS=<render()>` every `every` seconds when it changed since the last one
    (`shown`: the line sent before this loop started); `systemctl status` shows it."""
    last = shown
    while True:
        await asyncio.sleep(every)
        try:
            line = await render()
        except Exception as exc:  # a loop boundary: a status line must never stop the agent
            log.debug("status line not rendered: %s", exc)
        else:
            if line != last:
                notify(f"STATUS={line}", environ=environ)
                last = line


async def serve(
    stop: asyncio.Event,
    *,
    started: asyncio.Event | None,
    status: Callable[[], Awaitable[str]],
    healthy: Callable[[float], bool],
    every: float = STATUS_EVERY,
) -> None:
    """The service's side of the protocol until `stop` is set: READY=1 once `started` is set
    (None: at once), then STATUS= lines and, when systemd asked for it, WATCHDOG=1 while
    `healthy(timeout)` holds; STOPPING=1 as soon as `stop` is set, before anything closes.

    No-ops without `NOTIFY_SOCKET`, apart from waiting for `stop`.
    """
    waiting = asyncio.create_task(stop.wait())
    try:
        if started is not None:
            ready = asyncio.create_task(started.wait())
            await asyncio.wait({ready, waiting}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
        if not stop.is_set():
            await _serve_ready(waiting, status, healthy, every)
    finally:
        waiting.cancel()
    notify("STOPPING=1", "STATUS=stopping: finishing batches and Brevo calls in flight")


async def _serve_ready(
    stopped: asyncio.Task[bool],
    status: Callable[[], Awaitable[str]],
    healthy: Callable[[float], bool],
    every: float,
) -> None:
    line = "ready"
    with contextlib.suppress(Exception):  # the first status line is a nicety, READY is not
        line = await status()
    notify("READY=1", f"STATUS={line}")
    tasks = [asyncio.create_task(status_loop(status, every, shown=line), name="systemd-status")]
    interval = watchdog_interval()
    if interval is not None:
        check = interval  # bound before the lambda: mypy sees a float
        tasks.append(
            asyncio.create_task(watchdog_loop(interval, lambda: healthy(check)), name="watchdog")
        )
        log.info("systemd watchdog: a ping every %.1fs (timeout %.1fs)", interval / 2, interval)
    try:
        await stopped
    finally:
        # systemd disarms the watchdog when the stop begins (TimeoutStopSec bounds it instead).
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
