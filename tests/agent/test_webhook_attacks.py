"""Finding 2 of issue 16: unauthenticated memory on the webhook doors.

The attack, as probed: 30 requests to `POST /webhooks/woocommerce/{site}`, each declaring an
8 MiB body and sending it slowly or never finishing. The door read every body whole before it
could check the signature, and no read ever timed out: the acking process grew from 183 to
525 MB and kept it. Now the site, the headers and the declared length are checked before any
byte of the body is read, a body that is read has a deadline (`agent.webhooks.body_timeout`)
and holds one of `max_pending_bodies` slots (`max_pending_bodies_per_address` per sender), and
the memory it took is given back once it is dropped (agent/doors/webhooks.py `BodyGate`).

Every test runs the real `woobrevo-agent run` (`processing: process`: the doors process acks,
a worker process forwards) and speaks raw HTTP/1.1 to it over loopback sockets; the attackers
connect from other loopback addresses (127.0.0.2-4) than the store that delivers honestly
(127.0.0.1). Memory is the doors process's VmRSS from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.config import Config, ConfigError
from agent.core.events import content_event_id
from agent.core.webhooks import sign
from tests import kit
from tests.agent.doorkit import SECRETS, config_data, inbox_ids, order
from tests.conftest import ROOT
from tests.kit import UNIT, until

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MAX_BODY = 8 * MiB  # agent.stream.max_message_bytes, the default
BODY = MAX_BODY - 1024  # what each attacker declares: just inside the limit
BREVO_SECRET = "brevo-hook-secret-" + "z" * 20
ATTACKERS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
FORGED = "A" * 43 + "="  # the shape of a WooCommerce signature, of no body
WOO_HEADERS = {
    "Content-Type": "application/json",
    "X-WC-Webhook-Topic": "order.updated",
    "X-WC-Webhook-Signature": FORGED,
}


# ---------------------------------------------------------------------------- the agent


@dataclass
class Agent:
    """`woobrevo-agent run` in a subprocess, its log kept."""

    config: Path
    proc: asyncio.subprocess.Process | None = None
    lines: list[str] = field(default_factory=list)
    port: int = 0
    _reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WOOBREVO_", "BREVO_"))}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "run", "--config", str(self.config),
            cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stderr is not None
        self._reader = asyncio.create_task(self._read(self.proc.stderr))
        await until(lambda: self._port() or self.proc_died(), 30, what="http listening")
        assert not self.proc_died(), self.text()
        self.port = self._port()

    async def _read(self, pipe: asyncio.StreamReader) -> None:
        while line := await pipe.readline():
            self.lines.append(line.decode("utf-8", "replace"))

    def _port(self) -> int:
        for line in self.lines:
            if m := re.search(r"http listening on 127\.0\.0\.1:(\d+)", line):
                return int(m.group(1))
        return 0

    def proc_died(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    def text(self) -> str:
        return "".join(self.lines)

    def rss_mb(self) -> float:
        """The doors process's resident memory (VmRSS), in MB."""
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kib = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        assert kib is not None
        return int(kib.group(1)) / 1024

    async def stop(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        async with asyncio.timeout(60 * UNIT):
            await self.proc.wait()
            if self._reader is not None:
                await self._reader

    async def metric(self, name: str, **labels: str) -> float:
        """One series of /metrics (0 when absent)."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            text = await r.text()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            name_labels, _, value = line.rpartition(" ")
            if name_labels.startswith(name + "{"):
                got = ",".join(sorted(name_labels[len(name) + 1 : -1].split(",")))
                if got == want:
                    return float(value)
        return 0.0


def _config(tmp_path: Path, **webhooks: Any) -> dict[str, Any]:
    data = config_data(tmp_path, brevo={"webhook_secret": BREVO_SECRET})
    data["agent"]["processing"] = "process"
    data["agent"]["webhooks"] = webhooks
    return data


@contextlib.asynccontextmanager
async def agent(tmp_path: Path, **webhooks: Any) -> AsyncIterator[Agent]:
    """The real agent on loopback port 0, `agent.webhooks` set to `webhooks`."""
    running = Agent(kit.write_config(tmp_path / "c.yaml", _config(tmp_path, **webhooks)))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


# ---------------------------------------------------------------------------- raw HTTP


@dataclass
class Raw:
    """One HTTP/1.1 request written by hand: the headers first, the body when the test says."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(
        cls, port: int, path: str, headers: dict[str, str], *, length: int | None, source: str
    ) -> Raw:
        """Connect from `source` and send the request line and headers; `length` is the
        declared Content-Length (None: a chunked body)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        size = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
        lines = [f"POST {path} HTTP/1.1", "Host: agent", *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join([*lines, size]) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], dict[str, Any]]:
        """The status, headers and JSON body of the answer."""
        status = int((await self.reader.readline()).split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers["content-length"]))
        return status, headers, json.loads(body)

    async def closed(self) -> bool:
        """The agent closed the connection after its answer (end of stream, or a reset)."""
        try:
            async with asyncio.timeout(5 * UNIT):
                return await self.reader.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.writer.close()


async def deliver(port: int, site: str, order_id: int) -> dict[str, Any]:
    """An honest WooCommerce delivery (from 127.0.0.1), answered 200."""
    raw = json.dumps(order(order_id)).encode()
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Source": "https://shop-b.example/",
        "X-WC-Webhook-Topic": "order.updated",
        "X-WC-Webhook-Signature": sign(raw, SECRETS[site]),
        "X-WC-Webhook-Delivery-ID": f"{order_id:032d}",
    }
    url = f"http://127.0.0.1:{port}/webhooks/woocommerce/{site}"
    async with aiohttp.ClientSession() as s, s.post(url, data=raw, headers=headers) as r:
        answer: dict[str, Any] = await r.json()
        assert r.status == 200 and answer["new"], answer
        return answer


async def peak_rss(running: Agent, stop: asyncio.Event) -> float:
    """The highest VmRSS seen until `stop` is set, read every 20 ms."""
    peak = running.rss_mb()
    while not stop.is_set():
        peak = max(peak, running.rss_mb())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.02):
                await stop.wait()
    return max(peak, running.rss_mb())


# ---------------------------------------------------------------------------- the tests


@pytest.mark.attack(
    "2: 30 requests to the webhook door each declare an 8 MiB body and send it slowly or never"
    " finish it; the acking process held every body (183 → 525 MB, not given back)"
)
async def test_slow_8mib_bodies_are_bounded_timed_out_and_given_back(tmp_path: Path) -> None:
    async with agent(tmp_path, body_timeout="4s") as running:
        port = running.port
        stored = [(await deliver(port, "b", 9000))["stored"]]  # warm: every code path loaded
        base = running.rss_mb()
        stop = asyncio.Event()
        sampler = asyncio.create_task(peak_rss(running, stop))

        # 30 requests, 10 from each of three addresses: their headers, none of their bodies.
        opened = asyncio.get_running_loop().time()
        conns = [
            await Raw.open(port, "/webhooks/woocommerce/a", WOO_HEADERS, length=BODY, source=src)
            for src in ATTACKERS
            for _ in range(10)
        ]
        answers = [asyncio.create_task(c.answer()) for c in conns]
        # Beyond 4 a sender (agent.webhooks.max_pending_bodies_per_address): 503 at once, unread.
        await until(lambda: sum(a.done() for a in answers) == 18, 10, what="18 refusals")
        refused = [i for i, a in enumerate(answers) if a.done()]
        for i in refused:
            status, headers, body = answers[i].result()
            assert status == 503 and body["error"] == "busy", body
            assert headers["retry-after"] == "4" and headers["connection"] == "close"
            assert await conns[i].closed()
        held = [i for i, a in enumerate(answers) if not a.done()]
        assert [i // 10 for i in held] == [0] * 4 + [1] * 4 + [2] * 4  # 4 from each address

        # The 12 read: one address drips a byte at a time, the others send all but one byte.
        drips = []
        for i in held:
            if i < 10:
                drips.append(asyncio.create_task(_drip(conns[i])))
            else:
                await conns[i].send(b" " * (BODY - 1))
        # Meanwhile another store delivers, and every delivery is stored.
        for n in range(5):
            stored.append((await deliver(port, "b", 9001 + n))["stored"])
        timed_out = [await answers[i] for i in held]
        waited = asyncio.get_running_loop().time() - opened
        assert [(s, b["error"]) for s, _, b in timed_out] == [(408, "body_timeout")] * 12
        assert "within 4s (agent.webhooks.body_timeout)" in timed_out[0][2]["message"]
        assert 4 <= waited < 4 + 10 * UNIT, waited  # each deadline runs from its headers
        for i in held:
            assert await conns[i].closed()
        for drip in drips:
            drip.cancel()
        for conn in conns:
            conn.close()

        stop.set()
        peak = await sampler
        # Given back: the process returns near where it started.
        await until(lambda: running.rss_mb() < base + 12, 15, what="RSS back near its start")
        after = running.rss_mb()
        log.info(
            "doors process VmRSS: %.1f MB before, %.1f at the peak, %.1f after", base, peak, after
        )
        # 12 bodies of 8 MiB held at most (3 addresses x 4), never the 30.
        assert peak - base < 12 * MAX_BODY / MiB + 40, (base, peak)
        assert (
            await running.metric("woobrevo_webhook_requests_total", site="a", outcome="busy") == 18
        )
        assert (
            await running.metric(
                "woobrevo_webhook_requests_total", site="a", outcome="body_timeout"
            )
            == 12
        )
        # One line about the 18 refusals for want of a slot, not 18.
        assert running.text().count("refused for want of a slot") == 1, running.text()
        cfg = Config.model_validate(_config(tmp_path))
        assert inbox_ids(cfg, "a") == []
    # The audit: every honest delivery stored, each once, nothing else.
    assert [e for _, e in inbox_ids(cfg)] == stored
    assert stored == [content_event_id("order.updated", order(n)) for n in range(9000, 9006)]


async def _drip(conn: Raw) -> None:
    with contextlib.suppress(ConnectionError):  # until the agent closes the connection
        while True:
            await conn.send(b" ")
            await asyncio.sleep(0.1)  # the attack itself: one byte every 100 ms


@pytest.mark.attack(
    "2: requests with no site, no or a malformed signature, no secret, a wrong content type or"
    " an oversized declared length, to both webhook doors, are refused before the body is read"
)
async def test_refusals_come_before_any_byte_of_the_body(tmp_path: Path) -> None:
    woo, brevo = "/webhooks/woocommerce", "/webhooks/brevo"
    bearer = {"Content-Type": "application/json", "Authorization": f"Bearer {BREVO_SECRET}"}
    cases: list[tuple[str, dict[str, str], int, int, str]] = [
        (f"{woo}/nope", WOO_HEADERS, BODY, 404, "unknown_site"),
        (f"{woo}/a", {**WOO_HEADERS, "X-WC-Webhook-Signature": "nope"}, BODY, 401,
         "not a base64 HMAC-SHA256"),
        (f"{woo}/a", {"Content-Type": "application/json", "X-WC-Webhook-Topic": "order.updated"},
         BODY, 401, "X-WC-Webhook-Signature is missing"),
        (f"{woo}/a", {}, BODY, 401, "X-WC-Webhook-Signature is missing"),  # not a ping's size
        (f"{woo}/a", {"X-WC-Webhook-Signature": FORGED}, BODY, 400, "X-WC-Webhook-Topic"),
        (f"{woo}/a", {**WOO_HEADERS, "Content-Type": "text/plain"}, BODY, 415,
         "got 'text/plain'"),
        (f"{woo}/a", WOO_HEADERS, MAX_BODY + 1, 413, f"limited to {MAX_BODY} bytes"),
        (f"{brevo}/nope", bearer, BODY, 404, "unknown_site"),
        (f"{brevo}/a", {"Content-Type": "application/json"}, BODY, 401, "no secret"),
        (f"{brevo}/a", {**bearer, "Authorization": "Bearer guessed"}, BODY, 401, "does not match"),
        (f"{brevo}/a?token=guessed", {"Content-Type": "application/json"}, BODY, 401,
         "does not match"),
        (f"{brevo}/a", {**bearer, "Content-Type": "text/plain"}, BODY, 415, "got 'text/plain'"),
        (f"{brevo}/a", bearer, MAX_BODY + 1, 413, f"limited to {MAX_BODY} bytes"),
    ]  # fmt: skip
    # A body that were read would wait the whole minute of the deadline: every answer below
    # comes without one byte of it being sent.
    async with agent(tmp_path, body_timeout="60s") as running:
        base = running.rss_mb()
        for path, headers, length, status, words in cases * 3:
            conn = await Raw.open(running.port, path, headers, length=length, source=ATTACKERS[0])
            async with asyncio.timeout(10 * UNIT):
                got, answer_headers, body = await conn.answer()
            assert got == status and words in json.dumps(body), (path, headers, got, body)
            assert answer_headers["connection"] == "close"
            assert await conn.closed(), (path, status)
            conn.close()
        assert running.rss_mb() < base + 8, (base, running.rss_mb())
        # WooCommerce's ping (12 bytes, no X-WC header) is still read and answered 200.
        ping = await Raw.open(running.port, f"{woo}/b", {}, length=12, source="127.0.0.1")
        await ping.send(b"webhook_id=7")
        assert (await ping.answer())[::2] == (200, {"ok": True, "ping": True})
        ping.close()
        refusals = running.text().count("webhook refused from 127.0.0.2")
        assert refusals == 3 * (len(cases) - 2), running.text()  # unknown sites are not logged
        assert BREVO_SECRET not in running.text() and "guessed" not in running.text()


@pytest.mark.attack(
    "2: a chunked webhook body that never ends, and one that runs past the size limit"
)
async def test_chunked_bodies_are_capped_while_they_stream_and_timed_out(tmp_path: Path) -> None:
    async with agent(tmp_path, body_timeout="2s") as running:
        path = "/webhooks/woocommerce/a"
        endless = await Raw.open(running.port, path, WOO_HEADERS, length=None, source=ATTACKERS[0])
        await endless.send(b"10\r\n" + b" " * 16 + b"\r\n")  # one chunk, then nothing
        started = asyncio.get_running_loop().time()
        status, _, body = await endless.answer()
        assert (status, body["error"]) == (408, "body_timeout")
        assert 1.5 < asyncio.get_running_loop().time() - started < 2 + 10 * UNIT
        assert await endless.closed()
        endless.close()

        huge = await Raw.open(running.port, path, WOO_HEADERS, length=None, source=ATTACKERS[1])
        chunk = b"%x\r\n%s\r\n" % (MiB, b" " * MiB)
        with contextlib.suppress(ConnectionError):  # the agent stops reading at the limit
            for _ in range(9):
                await huge.send(chunk)
        try:
            status, _, body = await huge.answer()
        except ConnectionResetError:
            # The agent answered and closed with the rest of the body unread: the kernel's
            # reset can overtake its 413 on the way back (seen once in CI under load). The log
            # says what it refused.
            refused = f"webhook refused from {ATTACKERS[1]}: bodies are limited to"
            await until(lambda: refused in running.text(), 10, what="the 413 in the log")
        else:
            assert (status, body["error"]) == (413, "too_large")
            assert await huge.closed()
        huge.close()
        # Senders that leave mid-body give their slots back (4 an address): one warning each.
        for _ in range(4):
            gone = await Raw.open(running.port, path, WOO_HEADERS, length=BODY, source=ATTACKERS[2])
            await gone.send(b" " * 1000)
            gone.close()
        left = "webhook refused from 127.0.0.4: the body ended before it was whole"
        await until(lambda: running.text().count(left) == 4, 10, what="4 senders gone")
        last = await Raw.open(running.port, path, WOO_HEADERS, length=2, source=ATTACKERS[2])
        await last.send(b"{}")
        status, _, body = await last.answer()  # read, not refused as busy
        assert (status, body["message"]) == (401, "signature mismatch")
        last.close()
        assert "Traceback" not in running.text()
        # The door still serves: an honest delivery is stored.
        answer = await deliver(running.port, "b", 77)
        assert answer["stored"] == content_event_id("order.updated", order(77))


def test_the_webhooks_keys_say_what_is_wrong(tmp_path: Path) -> None:
    cfg = kit.load(tmp_path, _config(tmp_path))
    assert (cfg.agent.webhooks.body_timeout, cfg.agent.webhooks.max_pending_bodies) == (10.0, 16)
    assert cfg.agent.webhooks.max_pending_bodies_per_address == 4
    for keys, words in [
        ({"max_pending_bodies": 2, "max_pending_bodies_per_address": 3},
         "max_pending_bodies_per_address (3) is above max_pending_bodies (2)"),
        ({"body_timeout": "0s"}, "body_timeout must be above 0s"),
        ({"body_timeout": 10}, "expected a duration"),
        ({"max_pending_bodies": 0}, "greater than or equal to 1"),
        ({"max_body": 5}, "max_body"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError) as refused:
            kit.load(tmp_path, _config(tmp_path, **keys))
        assert words in str(refused.value) and "agent.webhooks" in str(refused.value), keys
