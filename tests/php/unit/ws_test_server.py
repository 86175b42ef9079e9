"""Loopback websocket servers for the PHP client tests (WsClient*Test.php).

Two servers on 127.0.0.1, port 0, ports printed as one JSON line on stdout:

- "ws" (and "wss" with --cert/--key): the `websockets` library's server, a strict RFC 6455
  peer. It stands in for raw RFC behaviour (fragmentation both ways, pings, close codes, a
  server that dies mid-message); the stream protocol itself is tested against the agent.
- "raw": a hand-written socket server that misbehaves on purpose (wrong Sec-WebSocket-Accept,
  a masked server frame, no answer at all), which a correct server never does.

The token the servers accept is "good-token"; anything else gets HTTP 401 before the upgrade.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import ssl
import sys
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TOKEN = "good-token"
FRAGMENT = 65536

last_stats: dict[str, object] = {}


def process_request(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/throttle":
        return Response(
            429, "Too Many Requests", Headers([("Retry-After", "7"), ("Content-Length", "0")])
        )
    if request.path == "/unavailable":
        return Response(503, "Service Unavailable", Headers([("Content-Length", "0")]))
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return connection.respond(HTTPStatus.UNAUTHORIZED, "token refused\n")
    return None


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request else "/"
    if path == "/ping":
        # Ask the client for a pong, then tell it whether one came back (RFC 6455 §5.5.2).
        waiter = await ws.ping(b"are-you-there")
        try:
            await asyncio.wait_for(waiter, 5)
            await ws.send("pong-ok")
        except TimeoutError:
            await ws.send("pong-missing")
        await ws.wait_closed()
        return
    if path == "/close":
        await ws.recv()
        await ws.close(1001, "bye")
        return
    if path == "/gone":
        await ws.recv()
        # Half a 4 KiB text frame, then the TCP connection drops without a close frame.
        ws.transport.write(b"\x81\x7e\x10\x00" + b"a" * 100)
        ws.transport.abort()
        return
    async for message in _messages(ws):
        if message == "__stats__":
            await ws.send(json.dumps(last_stats))
        elif isinstance(message, str) and len(message) > FRAGMENT:
            chunks = [message[i : i + FRAGMENT] for i in range(0, len(message), FRAGMENT)]
            await ws.send(chunks)
        else:
            await ws.send(message)


async def _messages(ws: ServerConnection):  # type: ignore[no-untyped-def]
    """Yields whole messages while recording how many frames the last one came in."""
    while True:
        fragments: list[str | bytes] = []
        try:
            async for fragment in ws.recv_streaming():
                fragments.append(fragment)
        except Exception:
            return
        message = (
            "".join(fragments)
            if fragments and isinstance(fragments[0], str)
            else b"".join(
                fragments  # type: ignore[arg-type]
            )
        )
        if message != "__stats__":
            data = message.encode() if isinstance(message, str) else message
            last_stats.clear()
            last_stats.update(
                fragments=len(fragments), length=len(data), sha1=hashlib.sha1(data).hexdigest()
            )
        yield message


async def raw_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except Exception:
        writer.close()
        return
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
    }
    if path == "/silent":
        # Never answer; return when the client gives up.
        with contextlib.suppress(Exception):
            await reader.read()
        writer.close()
        return
    if path == "/not-http":
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()
        return
    accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest())
    if path == "/bad-accept":
        accept = base64.b64encode(hashlib.sha1(b"not the key").digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    if path == "/masked":
        key = b"\x37\xfa\x21\x3d"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(b"Hello"))
        writer.write(b"\x81\x85" + key + payload)
    if path == "/interleaved":
        # A fragmented message with a ping between its fragments (RFC 6455 §5.4), sent at once.
        writer.write(b"\x01\x03Hel" + b"\x89\x02hi" + b"\x80\x02lo")
    if path == "/bad-continuation":
        writer.write(b"\x80\x02lo")
    if path == "/bad-utf8":
        writer.write(b"\x81\x02\xff\xfe")
    await writer.drain()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(reader.read(1 << 20), 10)
    writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    common = dict(
        process_request=process_request,
        max_size=8 * 1024 * 1024,
        compression=None,
        ping_interval=None,
    )
    ports: dict[str, int] = {}
    async with serve(handler, "127.0.0.1", 0, **common) as ws_server:  # type: ignore[arg-type]
        ports["ws"] = ws_server.sockets[0].getsockname()[1]
        raw = await asyncio.start_server(raw_client, "127.0.0.1", 0)
        ports["raw"] = raw.sockets[0].getsockname()[1]
        wss_server = None
        if args.cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(args.cert, args.key)
            wss_server = await serve(handler, "127.0.0.1", 0, ssl=ctx, **common)  # type: ignore[arg-type]
            ports["wss"] = wss_server.sockets[0].getsockname()[1]
        print(json.dumps(ports), flush=True)
        # Run until the test closes our stdin.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        raw.close()
        if wss_server:
            wss_server.close()


if __name__ == "__main__":
    asyncio.run(main())
