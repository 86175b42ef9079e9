"""systemd's notify protocol, played by the test: an AF_UNIX datagram socket in a temporary
folder stands in for systemd's, a real `woobrevo-agent run` (doors + worker processes) talks
to it, and the test reads what arrives: READY=1, STATUS= lines, WATCHDOG=1 at half the
timeout, STOPPING=1 on SIGTERM, in that order (agent/systemd.py, docs/operations.md)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import systemd
from agent.config import ConfigError, load_config
from tests.agent.doorkit import UNIT, AgentProcess, config_data, hello
from tests.kit import until, write_config

WATCHDOG_USEC = 2_000_000  # 2 s: a ping each second
STATUS_LINE = re.compile(r"^STATUS=(\d+) of 2 sites connected, backlog \d+ events, \d+ Brevo jobs$")


class NotifySocket:
    """The service manager's end: every datagram received, with the time it came."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock, self.address = sock, address
        self.messages: list[tuple[float, list[str]]] = []

    def lines(self) -> list[str]:
        """Every line received, in order."""
        return [line for _, lines in self.messages for line in lines]

    def times(self, line: str) -> list[float]:
        """When each datagram carrying `line` arrived (monotonic)."""
        return [at for at, lines in self.messages if line in lines]

    async def read(self) -> None:
        """Receive until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            self.messages.append((time.monotonic(), data.decode().split("\n")))


@contextlib.contextmanager
def _notify_socket(abstract: bool = False) -> Iterator[NotifySocket]:
    # A short folder of its own: an AF_UNIX path has to fit in 108 bytes (unix(7)).
    with tempfile.TemporaryDirectory(prefix="sd-") as folder:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            if abstract:
                name = f"woobrevo-test-{os.getpid()}-{id(sock)}"
                sock.bind("\0" + name)
                address = "@" + name
            else:
                address = str(Path(folder) / "notify")
                sock.bind(address)
            sock.setblocking(False)
            yield NotifySocket(sock, address)
        finally:
            sock.close()


def _environ(notify: NotifySocket, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "NOTIFY_SOCKET": notify.address,
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        **extra,
    }


def _worker_pid(agent: AgentProcess) -> int:
    for line in agent.log:
        if m := re.search(r"worker process (\d+) started", line):
            return int(m.group(1))
    raise AssertionError("no worker started:\n" + "".join(agent.log))


def _environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


@pytest.mark.slow
async def test_ready_status_watchdog_then_stopping_in_order(tmp_path: Path) -> None:
    path = write_config(tmp_path / "agent.yaml", config_data(tmp_path))
    with _notify_socket() as notify:
        reader = asyncio.create_task(notify.read())
        try:
            async with AgentProcess(path, _environ(notify)) as agent:
                assert agent.proc is not None
                await until(lambda: "READY=1" in notify.lines(), 30, what="READY=1")
                # The worker was started without the variables (NotifyAccess=main).
                worker_env = _environment_of(_worker_pid(agent))
                assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC"} & worker_env.keys()
                # READY=1 comes with the first status line: no site connected yet.
                ready = next(lines for _, lines in notify.messages if "READY=1" in lines)
                status = [line for line in ready if line.startswith("STATUS=")]
                assert len(status) == 1 and (m := STATUS_LINE.match(status[0]))
                assert m.group(1) == "0"
                # A site connects: the next STATUS= line says so.
                async with agent.connect() as ws:
                    await hello(ws)
                    await until(
                        lambda: any(
                            (m := STATUS_LINE.match(line)) and m.group(1) == "1"
                            for line in notify.lines()
                        ),
                        30,
                        what="a STATUS= line with the site connected",
                    )
                # Pings, one each half timeout, from the doors process only.
                await until(lambda: len(notify.times("WATCHDOG=1")) >= 4, 30, what="4 pings")
                pings = notify.times("WATCHDOG=1")
                gaps = [b - a for a, b in itertools.pairwise(pings)]
                assert max(gaps) < WATCHDOG_USEC / 1e6, gaps
                agent.proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(60 * UNIT):
                    assert await agent.proc.wait() == 0
            lines = notify.lines()
            assert "STOPPING=1" in lines, lines
            first_ping = lines.index("WATCHDOG=1")
            assert lines.index("READY=1") < first_ping < lines.index("STOPPING=1")
            assert "WATCHDOG=1" not in lines[lines.index("STOPPING=1") :]
            assert lines.count("READY=1") == 1
            assert all(STATUS_LINE.match(line) or "stopping" in line
                       for line in lines if line.startswith("STATUS="))  # fmt: skip
        finally:
            reader.cancel()


@pytest.mark.slow
async def test_a_wedged_event_loop_stops_the_pings(tmp_path: Path) -> None:
    """WOOBREVO_TEST_WEDGE_LOOP blocks the doors' loop 2 s after the worker answers, as a
    stuck call would: no WATCHDOG=1 comes after that, and systemd would kill and restart."""
    path = write_config(tmp_path / "agent.yaml", config_data(tmp_path))
    with _notify_socket(abstract=True) as notify:
        reader = asyncio.create_task(notify.read())
        env = _environ(notify, WOOBREVO_TEST_WEDGE_LOOP="2")
        try:
            async with AgentProcess(path, env) as agent:
                assert agent.proc is not None
                worker = _worker_pid(agent)
                await until(lambda: "READY=1" in notify.lines(), 30, what="READY=1")
                await until(
                    lambda: any("blocking the event loop now" in line for line in agent.log),
                    30,
                    what="the loop blocked",
                )
                blocked_at = time.monotonic()
                # Three timeouts later, still no ping since the block (one may have left
                # just before the log line was read).
                await asyncio.sleep(3 * WATCHDOG_USEC / 1e6)
                late = [t for t in notify.times("WATCHDOG=1") if t > blocked_at + 0.5]
                assert late == [], f"{len(late)} ping(s) from a blocked loop"
                assert len(notify.times("WATCHDOG=1")) >= 1  # it pinged before
                # What systemd does then (WatchdogSignal=SIGABRT; SIGKILL here, quieter).
                agent.proc.kill()
                assert await agent.proc.wait() == -signal.SIGKILL
                # Its worker sees its pipe close and stops on its own.
                await until(lambda: not Path(f"/proc/{worker}").exists(), 60, what="worker gone")
        finally:
            reader.cancel()


# -- the protocol functions, against a real socket ------------------------------------


async def test_notify_sends_one_datagram_to_a_path_or_an_abstract_socket() -> None:
    for abstract in (False, True):
        with _notify_socket(abstract=abstract) as notify:
            env = {"NOTIFY_SOCKET": notify.address}
            assert systemd.notify("RELOADING=1", "MONOTONIC_USEC=42", environ=env)
            data = notify.sock.recv(4096)
            assert data == b"RELOADING=1\nMONOTONIC_USEC=42"


def test_notify_without_a_socket_is_a_no_op_and_never_raises(tmp_path: Path) -> None:
    assert systemd.notify("READY=1", environ={}) is False
    assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": "vsock:2:1234"}) is False
    gone = {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}
    assert systemd.notify("READY=1", environ=gone) is False


def test_watchdog_interval_reads_usec_and_honours_the_pid() -> None:
    assert systemd.watchdog_interval({}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "2000000"}) == 2.0
    mine = {"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}
    assert systemd.watchdog_interval(mine) == 0.5
    theirs = {"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert systemd.watchdog_interval(theirs) is None
    for bad in ("0", "-5", "soon"):
        assert systemd.watchdog_interval({"WATCHDOG_USEC": bad}) is None


def test_monotonic_usec_is_the_monotonic_clock_in_microseconds() -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    now = systemd.monotonic_usec()
    assert before <= now <= before + 5_000_000


# -- LoadCredential=: secrets from $CREDENTIALS_DIRECTORY (agent/config.py) -------------


def _credentials(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "credentials"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_a_credential_file_stands_in_for_a_missing_variable(tmp_path: Path) -> None:
    data = config_data(tmp_path, brevo={"dry_run": False, "base_url": "http://127.0.0.1:9/v3"})
    data["connectors"]["woocommerce"]["consumer_secret"] = "${WC_SECRET}"
    path = write_config(tmp_path / "agent.yaml", data)
    folder = _credentials(
        tmp_path, BREVO_API_KEY="xkeysib-from-credential\n", WC_SECRET="cs_from_credential"
    )
    cfg = load_config(path, env={"CREDENTIALS_DIRECTORY": str(folder)})
    site = cfg.resolved_sites()[0]
    assert site.brevo.api_key == "xkeysib-from-credential"  # the file's last newline dropped
    assert site.woo.consumer_secret == "cs_from_credential"
    # The environment wins over the file; without either, the variable is reported missing.
    env = {"CREDENTIALS_DIRECTORY": str(folder), "BREVO_API_KEY": "xkeysib-from-env"}
    assert load_config(path, env=env).resolved_sites()[0].brevo.api_key == "xkeysib-from-env"
    with pytest.raises(ConfigError, match="WC_SECRET is not set"):
        load_config(path, env={})


def test_an_unreadable_credential_is_a_config_error_without_its_content(tmp_path: Path) -> None:
    path = write_config(tmp_path / "agent.yaml", config_data(tmp_path))
    folder = _credentials(tmp_path)
    (folder / "BREVO_API_KEY").write_bytes(b"xkeysib-\xff-secret")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={"CREDENTIALS_DIRECTORY": str(folder)})
    assert "not UTF-8" in str(err.value) and "xkeysib" not in str(err.value)
    # Names not shaped like variables are not read at all.
    (folder / "BREVO_API_KEY").write_text("xkeysib-ok")
    (folder / "some.pem").write_bytes(b"\xff\xfe")
    assert load_config(path, env={"CREDENTIALS_DIRECTORY": str(folder)})
