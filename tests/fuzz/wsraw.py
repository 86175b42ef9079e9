"""A websocket client written byte by byte (RFC 6455), so that the fuzzer can send what no
library would: reserved bits, unknown opcodes, unmasked or lying length headers, invalid UTF-8,
fragments out of order, a frame cut off mid-way. It reads the agent's frames back, answers its
pings, and records its messages and its close code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BINARY", "CLOSE", "CONT", "PING", "PONG", "TEXT", "Frame", "RawSocket", "Transcript"]

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class Frame:
    """One frame as the client sends it. `declared` is a length header that lies (the frame
    then says it is longer than the bytes that follow)."""

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0
    masked: bool = True
    declared: int | None = None

    def encode(self) -> bytes:
        head = bytes([(0x80 if self.fin else 0) | (self.rsv & 0x7) << 4 | (self.opcode & 0xF)])
        size = len(self.payload) if self.declared is None else self.declared
        mask_bit = 0x80 if self.masked else 0
        if size < 126:
            head += bytes([mask_bit | size])
        elif size < 1 << 16:
            head += bytes([mask_bit | 126]) + struct.pack("!H", size)
        else:
            head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
        if not self.masked:
            return head + self.payload
        key = os.urandom(4)
        return head + key + _mask(self.payload, key)


def _mask(data: bytes, key: bytes) -> bytes:
    # XOR with the repeated key (RFC 6455 §5.3), as one big-integer operation.
    if not data:
        return b""
    stream = (key * (len(data) // 4 + 1))[: len(data)]
    n = int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")
    return n.to_bytes(len(data), "big")


def close_frame(code: int = 1000, reason: str = "") -> Frame:
    return Frame(CLOSE, struct.pack("!H", code) + reason.encode())


@dataclass
class Transcript:
    """What the agent sent: its text messages (decoded JSON, or the raw text when it is not
    JSON), whether it sent binary, its close code (None: no close frame) and whether the
    socket ended."""

    messages: list[Any] = field(default_factory=list)
    binary: int = 0
    close_code: int | None = None
    close_reason: str = ""
    eof: bool = False

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if isinstance(m, dict) and m.get("type") == kind]


class RawSocket:
    """One connection: `await open(...)` does the HTTP upgrade by hand and returns the status;
    then `send()` writes bytes, and a reader task fills `transcript` until the socket ends."""

    def __init__(self) -> None:
        self.transcript = Transcript()
        self.changed = asyncio.Event()  # set on every frame received and at the end
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._close_sent = False

    async def open(
        self, port: int, *, path: str = "/v1/stream", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """The upgrade; (status, the raw response head). Reading starts on a 101."""
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape"))
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status == 101:
            self._task = asyncio.create_task(self._read())
        return status, head

    async def send(self, data: bytes) -> bool:
        """Write; False once the agent has closed (what is left is not sent)."""
        assert self._writer is not None
        if self.transcript.close_code is not None or self.transcript.eof:
            return False
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def text(self, obj: Any) -> bool:
        return await self.send(Frame(TEXT, json.dumps(obj).encode()).encode())

    async def wait(self, cond: Any) -> bool:
        """Until `cond(transcript)` holds or the socket ends; True when it holds."""
        while not cond(self.transcript):
            if self.transcript.eof:
                return False
            self.changed.clear()
            await self.changed.wait()
        return True

    async def finish(self, *, close: bool = True) -> None:
        """End the connection: a close frame (`close`) or a half-close of TCP, then read until
        the agent ends it too."""
        assert self._writer is not None
        if close:
            self._close_sent = await self.send(close_frame().encode())
        elif not self.transcript.eof:
            with contextlib.suppress(ConnectionError, OSError):
                self._writer.write_eof()
        await self.wait(lambda t: False)

    async def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.transport.abort()

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while await self._frame(self._reader):
                self.changed.set()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.transcript.eof = True
            self.changed.set()

    async def _frame(self, reader: asyncio.StreamReader) -> bool:
        b0, b1 = await reader.readexactly(2)
        assert not b1 & 0x80, "the agent masked a frame (RFC 6455 §5.1: servers must not)"
        size = b1 & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await reader.readexactly(8))
        payload = await reader.readexactly(size)
        opcode, t = b0 & 0xF, self.transcript
        if opcode == PING:
            await self.send(Frame(PONG, payload).encode())
        elif opcode == CLOSE:
            t.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            t.close_reason = payload[2:].decode("utf-8", "replace")
            if not self._close_sent and self._writer is not None and not self._writer.is_closing():
                self._close_sent = True  # the echo (RFC 6455 §5.5.1)
                self._writer.write(close_frame(1000).encode())
        elif opcode == TEXT:
            text = payload.decode("utf-8")
            try:
                t.messages.append(json.loads(text))
            except ValueError:
                t.messages.append(text)
        elif opcode == BINARY:
            t.binary += 1
        return True
