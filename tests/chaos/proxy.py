"""A TCP proxy between the plugin and the agent's stream door that misbehaves on command.

The plugin's agent URL names the proxy; the proxy forwards each connection to the agent. Faults:

- `cut()`: every open connection is reset at once (RST, as a dropped NAT entry or a crashed load
  balancer does); `cut_after(n)`: the next connections are reset once `n` bytes went from the
  plugin to the agent — in the middle of a batch, since batches are far bigger than `n`;
- `stall(seconds)`: nothing is forwarded either way for a while, connections stay open (a
  stuck middlebox): the plugin's batches and the agent's acks wait in the proxy;
- `slow(bytes_per_second)`: a thin pipe, both ways, until `slow(None)`;
- `refuse(True)`: new connections are reset as soon as they are accepted (the agent unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

CHUNK = 16 * 1024


class ChaosProxy:
    """127.0.0.1:port → 127.0.0.1:upstream_port, with faults (module docstring)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.connections = 0
        self.resets = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._rate: float | None = None
        self._cut_after: int | None = None
        self._refuse = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self._flowing.set()
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    # -- faults --------------------------------------------------------------------------

    def cut(self) -> int:
        """Reset every open connection now; returns how many."""
        writers = list(self._open)
        for writer in writers:
            _reset(writer)
        self._open.difference_update(writers)
        self.resets += len(writers)
        return len(writers)

    def cut_after(self, n: int | None) -> None:
        """Reset each new connection once it carried `n` bytes to the agent (None: stop)."""
        self._cut_after = n

    def stall(self, on: bool) -> None:
        """Hold every byte either way while on."""
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    def slow(self, bytes_per_second: float | None) -> None:
        """Forward at most this many bytes a second each way (None: full speed)."""
        self._rate = bytes_per_second

    def refuse(self, on: bool) -> None:
        """Reset new connections at once while on."""
        self._refuse = on

    # -- forwarding ----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self._refuse:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            _reset(writer)
            return
        self._open.update((writer, up_writer))
        budget = [self._cut_after]
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, writer, budget),
                self._pipe(up_reader, writer, up_writer, None),
            )
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.close()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        budget: list[int | None] | None,
    ) -> None:
        try:
            while True:
                size = CHUNK if self._rate is None else max(1, int(self._rate / 20))
                data = await reader.read(size)
                if not data:
                    break
                await self._flowing.wait()
                if budget is not None and budget[0] is not None:
                    budget[0] -= len(data)
                    if budget[0] <= 0:
                        self.resets += 1
                        _reset(writer)
                        _reset(other)
                        return
                writer.write(data)
                await writer.drain()
                if self._rate is not None:
                    await asyncio.sleep(len(data) / self._rate)
            with contextlib.suppress(OSError):
                writer.write_eof()
        except (OSError, RuntimeError):
            _reset(other)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), not FIN: the peer sees the connection torn, not ended."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
