"""The agent under fuzz: `woobrevo-agent run` in a subprocess (its worker process too), its
log in a file, its resident memory read from /proc.

After each input a target calls `healthy()`: the process is alive, its log since the last
call holds no traceback, and the door process's resident set is under `RSS_BUDGET_MB` above
what it used at start (a leak or an unbounded buffer shows there long before the machine
notices).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.agent.doorkit import ROOT, SECRETS, TOKENS, config_data
from tests.kit import UNIT, write_config

__all__ = ["BREVO_SECRET", "MAX_BATCH", "MAX_MESSAGE", "SECRETS", "TOKENS", "FuzzAgent"]

# Small limits, so that the fuzzer reaches them often and each input stays cheap.
MAX_BATCH = 50
MAX_MESSAGE = 256 * 1024
BREVO_SECRET = "brevo-hook-secret-" + "f" * 24
# What the door process may grow by over the whole run (its store's page cache, the parse
# pool, the websockets buffers): measured +5 MB over a CI run and +11 MB over 4,000 stream
# inputs (from ~56 MB). A message or body kept per input (up to 256 KiB each) passes it within
# a few hundred inputs.
RSS_BUDGET_MB = 100.0
TRACEBACK = re.compile(r"Traceback \(most recent call last\)")


class FuzzAgent:
    """`with FuzzAgent(folder) as agent:` runs the agent on loopback ports (read back from its
    log) with sites `a` and `b` (tests/agent/doorkit.py), the Brevo webhook secret and the
    small limits above."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = config_data(
            folder,
            brevo={"webhook_secret": BREVO_SECRET},
            max_batch=MAX_BATCH,
            max_message_bytes=MAX_MESSAGE,
            handshake_timeout="3s",
            # The handshake fuzz sends bad tokens by the hundred; the throttle has its own tests.
            max_failed_handshakes_per_minute=1_000_000,
        )
        self.config = write_config(folder / "config.yaml", self.data)
        self.log_path = folder / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.stream_port = self.http_port = 0
        self.baseline_mb = 0.0
        self.peak_mb = 0.0
        self._read = 0  # log bytes already checked

    def __enter__(self) -> FuzzAgent:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WOOBREVO_", "BREVO_"))}
        env["PYTHONUNBUFFERED"] = "1"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "run", "--config", str(self.config),
                 "--log-level", "info"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            self._wait_for_ports()
        except BaseException:
            self._stop()
            raise
        self.baseline_mb = self.peak_mb = self.rss_mb()
        return self

    def _wait_for_ports(self) -> None:
        give_up = time.monotonic() + 30 * UNIT
        while not (self.stream_port and self.http_port):
            assert self.proc is not None
            text = self.log()
            assert self.proc.poll() is None, "the agent exited:\n" + text
            assert time.monotonic() < give_up, "the agent did not listen within 30s:\n" + text
            if m := re.search(r"stream listening on 127\.0\.0\.1:(\d+)/v1/stream", text):
                self.stream_port = int(m.group(1))
            if m := re.search(r"http listening on 127\.0\.0\.1:(\d+)", text):
                self.http_port = int(m.group(1))
            time.sleep(0.05)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()
        if kind is None:  # the whole log, shutdown included, holds no traceback
            self._read = 0
            self._no_traceback("the agent's shutdown")

    def _stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30 * UNIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the agent did not stop within 30s of SIGTERM") from None

    # -- what a target checks ------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_mb(self) -> float:
        """The door process's resident set (the worker is a child with its own)."""
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        assert m, status
        return int(m.group(1)) / 1024

    def healthy(self, after: str) -> None:
        """Alive, no traceback logged since the last call, memory within budget."""
        assert self.proc is not None
        self._no_traceback(after)
        if self.proc.poll() is not None:
            raise AssertionError(f"the agent exited ({self.proc.returncode}) after {after}")
        rss = self.rss_mb()
        self.peak_mb = max(self.peak_mb, rss)
        assert rss - self.baseline_mb <= RSS_BUDGET_MB, (
            f"the agent grew from {self.baseline_mb:.0f} MB to {rss:.0f} MB after {after}"
        )

    def _no_traceback(self, after: str) -> None:
        text = self.log()
        fresh, self._read = text[self._read :], len(text)
        if m := TRACEBACK.search(fresh):
            start = fresh.rfind("\n", 0, max(m.start() - 300, 0)) + 1
            raise AssertionError(
                f"traceback in the agent's log after {after} (or the input before it):\n"
                + fresh[start:][:4000]
            )

    def inbox(self, site: str) -> list[str]:
        """The event ids stored for `site`, in order (read through a separate connection)."""
        db = sqlite3.connect(self.folder / "state" / "woobrevo.sqlite3")
        try:
            rows: list[Any] = db.execute(
                "SELECT event_id FROM inbox WHERE site = ? ORDER BY seq", (site,)
            ).fetchall()
        finally:
            db.close()
        return [r[0] for r in rows]
