"""The websocket door: the plugin's stream, protocol v1 (docs/protocol.md).

A thin shell: agent/core/protocol.py parses and builds every message, agent/tokens.py says
which site a token names, the store commits; this module only moves frames and keeps time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Data, DataLike

from agent.config import Config, SiteConfig, StreamSection
from agent.core import protocol
from agent.core.privacy import ErasureRules, export_groups
from agent.core.protocol import (
    STREAM_PATH,
    CloseCode,
    Events,
    Export,
    Hello,
    PeerError,
    ProtocolError,
)
from agent.core.proxies import Network, client_address
from agent.errors import ConfigError
from agent.logs import bind
from agent.metrics import Metrics, count_ingest
from agent.status import RuntimeStatus, StreamLink
from agent.store.ports import CartFigures, Holdings, Ingest, IngestResult
from agent.tokens import TokenRegistry, token_hash

__all__ = ["StreamServer", "StreamTestHooks", "split_hostport", "tls_context"]

log = logging.getLogger("agent.stream")

# Batches parsed but not yet committed, across every connection (~1 MB each at 100 REST orders).
MAX_PARSED_BATCHES = 8
RELEASE_AFTER_BYTES = 64 * 1024
PARSE_INLINE_BYTES = 16 * 1024
# Batches of one connection committing at once (docs/protocol.md: pipelined batches).
PIPELINE_DEPTH = 4
# Seconds between re-checks of open connections' tokens: a revoked one is closed (1008).
TOKEN_RECHECK = 5.0
# On stop, how long the batches in flight get to commit and send their acks before the
# connections close (docs/operations.md, "Stopping").
DRAIN_GRACE = 10.0
# Read slots (`agent.stream.read_slots`, 4 by default): connections that may be reading a
# message at once. A message costs ~2x its size in user space (the parser's buffer, then the
# frame it keeps and the decoded text) from its first byte until the handler has parsed it and
# handed it over; without a cap a burst from every site at once holds them all (500 sites x
# 276 KB batches: ~550 KB each, 340 MB; docs/benchmarks.md). A connection whose next message
# starts while every slot is taken stops reading after that first chunk: the rest waits in the
# kernel and TCP holds the sender back until a slot frees up (FIFO).
# Bytes per recv() (asyncio reads 256 KiB, a whole batch): a connection without a read slot
# reads WAITING_READ, which is what each waiting one holds in a burst (500 sites: 2 MB at 4 KiB,
# 8 MB at 16); one with a slot reads SLOT_READ (fewer calls per message).
WAITING_READ = 4 * 1024
SLOT_READ = 64 * 1024
# wss:// (agent.tls): asyncio's TLS layer reads the socket into a buffer of its own, 256 KiB per
# connection for as long as it is open (500 idle sites: +128 MB), and keeps up to 256 KiB of
# ciphertext while the connection is paused. Its buffer follows the read sizes above, but at
# most TLS_SLOT_READ: what one read brings waits in OpenSSL's memory BIO to be decrypted, and
# that buffer never shrinks again (64 KiB reads left ~85 KB in each connection that had read a
# batch: 500 sites under spread load 171 MB instead of 138; docs/benchmarks.md). A paused
# connection stops reading the socket once TLS_PAUSED_BYTES are waiting: at least one whole
# TLS record (2^14 bytes of data + up to 256 of overhead + a 5-byte header, RFC 8446 §5.2),
# or the record that completes a message could never be decrypted.
TLS_PAUSED_BYTES = 17 * 1024
TLS_SLOT_READ = 16 * 1024

BatchHook = Callable[[str, Events], None]


@dataclass(frozen=True)
class StreamTestHooks:
    """Test-only faults of the door. Passed in explicitly by whoever builds the server (only
    `woobrevo-agent run`, from WOOBREVO_TEST_* variables: agent/cli/main.py); never read from the env
    here. The defaults change nothing."""

    # Called between a batch's commit and its ack (the crash test kills the process there).
    after_commit: BatchHook | None = None
    # Called before a batch's commit; an exception from it is a store failure: nothing of the
    # batch is stored and the connection closes 1011, as when the disk is full.
    before_commit: BatchHook | None = None
    # Seconds each ack waits after its batch's commit (acks still leave in order): several
    # batches then stay in flight, and their acks arrive close together.
    ack_delay: float = 0.0


def tls_context(cfg: Config) -> ssl.SSLContext | None:
    """The stream door's TLS context from `agent.tls`, or None for plain ws://. A certificate
    or key that does not load is a ConfigError that names the files and why (`check` says it
    too, before `run`)."""
    tls = cfg.agent.tls
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            cfg.source,
            [
                f"agent.tls: cannot load certificate {tls.cert} with key {tls.key}: {why}"
                " (expected PEM files the agent's user can read: the certificate chain,"
                " leaf first, and its private key without a passphrase)"
            ],
        ) from None
    return context


def split_hostport(value: str) -> tuple[str | None, int]:
    """`host:port` or `[IPv6]:port` (config.HostPort) → (host or None for every interface,
    port)."""
    host, _, port = value.rpartition(":")
    return (host.removeprefix("[").removesuffix("]") or None), int(port)


class _ReadSlots:
    """At most `size` connections of one server read a message at once; the others wait, FIFO."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.taken = 0
        self.waiting: dict[_SiteConnection, None] = {}  # an ordered set: first come, first in

    def take(self, conn: _SiteConnection) -> bool:
        """A slot now, or False: `conn` waits and `conn.admitted()` is called when its turn comes."""
        if self.taken < self.size and not self.waiting:
            self.taken += 1
            return True
        self.waiting[conn] = None
        return False

    def give_back(self) -> None:
        self.taken -= 1
        while self.waiting and self.taken < self.size:
            conn = next(iter(self.waiting))
            del self.waiting[conn]
            self.taken += 1
            conn.admitted()

    def resize(self, size: int) -> None:
        """A reload's `read_slots`: more slots admit waiting connections now; fewer take
        effect as the slots in use are given back."""
        self.size = size
        while self.waiting and self.taken < self.size:
            conn = next(iter(self.waiting))
            del self.waiting[conn]
            self.taken += 1
            conn.admitted()

    def leave(self, conn: _SiteConnection) -> None:
        """A waiting connection closed: it gives up its place."""
        self.waiting.pop(conn, None)


class _SiteConnection(ServerConnection):
    """A connection that knows the one site its token named (set before the upgrade), and that
    holds one of its server's read slots from the first chunk of a message until the handler
    comes back for the next one (see read slots above). Reads websockets internals
    (protocol.reader, recv_messages, pending_pings, as in websockets 17) and, for wss://,
    asyncio's TLS read buffer (asyncio.sslproto, Python 3.11+):
    tests/agent/test_stream_admission.py."""

    site: str = ""
    token_sha256: str = ""  # the hash of its token, for the re-checks (never the token)
    client: str = "?"  # the peer's address, or the client's behind a trusted proxy
    # An exporter (it sent `export`): not the site's shipper, so the link is as it found it.
    exporter = False
    remote_before: str | None = None  # the link's `remote` before this connection
    hello_before: tuple[Any, ...] | None = None  # the link's hello fields before its hello
    hello_at: float | None = None  # when its own hello came
    read_slots: _ReadSlots  # set by _bound_to()
    # The limits it was opened (and welcomed) with: a reload's new ones are for new connections.
    limits: StreamSection  # set by _bound_to()
    _slot = False  # holds a read slot
    _waiting = False  # paused until a read slot frees up
    _queue_full = False  # paused by websockets: 16 received frames not yet taken
    _reading_paused = False
    _tcp: asyncio.BaseTransport | None = None  # plain TCP: its read size follows the slot
    _tls: Any = None  # wss://: asyncio's TLS protocol, whose read buffer follows the slot

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # websockets' own flow control pauses and resumes the same transport: it now goes
        # through _set_reading, which reads only when neither it nor the read slots say pause.
        self.recv_messages.pause = functools.partial(self._set_queue_full, True)
        self.recv_messages.resume = functools.partial(self._set_queue_full, False)
        if isinstance(getattr(transport, "max_size", None), int):  # plain TCP (not TLS)
            self._tcp = transport
        else:
            self._tls = _tls_layer_of(transport)
            if self._tls is not None:
                transport.set_read_buffer_limits(  # type: ignore[attr-defined]
                    high=TLS_PAUSED_BYTES, low=TLS_PAUSED_BYTES
                )
        self._read_size(WAITING_READ)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Part of a frame is left in the parser's buffer: a message has begun and needs a slot.
        # (A chunk of whole small messages, pongs or a hello, needs none.)
        if self._slot or self._waiting or self.protocol.state is not State.OPEN:
            return
        if self.protocol.reader.buffer:
            if self.read_slots.take(self):
                self._slot = True
                self._read_size(SLOT_READ)
            else:
                self._waiting = True
                # The bytes it just sent show it alive; its pong would queue behind the message
                # we do not read yet. Keepalive must not close it for that (see ping()).
                if self.pending_pings:
                    self.acknowledge_pings(next(reversed(self.pending_pings)))
                self._set_reading()

    def admitted(self) -> None:
        """Its turn: read the rest of the message."""
        self._waiting = False
        self._slot = True
        self._read_size(SLOT_READ)
        self._set_reading()

    @overload
    async def recv(self, decode: Literal[True]) -> str: ...

    @overload
    async def recv(self, decode: Literal[False]) -> bytes: ...

    @overload
    async def recv(self, decode: bool | None = None) -> Data: ...

    async def recv(self, decode: bool | None = None) -> Data:
        # The handler is done with the previous message (parsed and handed over to the commit,
        # under MAX_PARSED_BATCHES, or dropped): its slot goes to the next waiting connection,
        # unless the next message is already being read (mid-message, a connection keeps it).
        if self._slot and not self.protocol.reader.buffer and not len(self.recv_messages.frames):
            self._slot = False
            self._read_size(WAITING_READ)
            self.read_slots.give_back()
        return await super().recv(decode)

    async def ping(self, data: DataLike | None = None) -> Awaitable[float]:
        if self._waiting:  # alive, see data_received(); the pong could not be read anyway
            alive: asyncio.Future[float] = self.loop.create_future()
            alive.set_result(0.0)
            return alive
        return await super().ping(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._slot:
            self._slot = False
            self.read_slots.give_back()
        elif self._waiting:
            self._waiting = False
            self.read_slots.leave(self)
        super().connection_lost(exc)

    def _read_size(self, size: int) -> None:
        if self._tcp is not None:
            self._tcp.max_size = size  # type: ignore[attr-defined]
        elif self._tls is not None:
            tls = self._tls
            size = min(size, TLS_SLOT_READ)
            tls.max_size = size  # the instance's own cap (the class says 256 KiB)
            if len(tls._ssl_buffer) > size:  # asyncio only ever grows it: a smaller one
                tls._ssl_buffer = bytearray(size)
                tls._ssl_buffer_view = memoryview(tls._ssl_buffer)

    def _set_queue_full(self, full: bool) -> None:
        self._queue_full = full
        self._set_reading()

    def _set_reading(self) -> None:
        paused = self._waiting or self._queue_full
        if paused != self._reading_paused:
            self._reading_paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()


def _tls_layer_of(transport: asyncio.BaseTransport) -> Any:
    """The asyncio TLS protocol under a wss:// connection, when it has the read buffer and the
    flow control that `_SiteConnection` sizes (asyncio.sslproto as of Python 3.11); else None,
    and the connection reads as asyncio decides (tests/agent/test_stream_admission.py checks
    that this Python has them)."""
    tls = getattr(transport, "_ssl_protocol", None)
    if (
        isinstance(getattr(tls, "_ssl_buffer", None), bytearray)
        and isinstance(getattr(tls, "_ssl_buffer_view", None), memoryview)
        and isinstance(getattr(tls, "max_size", None), int)
        and callable(getattr(transport, "set_read_buffer_limits", None))
    ):
        return tls
    return None


def _bound_to(slots: _ReadSlots, current: Callable[[], StreamSection]) -> type[_SiteConnection]:
    """The connection class of one server (serve() takes a class; the slots are per server).
    Each connection takes the server's limits as they are when it opens (`current()`: a
    reload changes them), keepalive included, over what serve() was started with."""

    class _Connection(_SiteConnection):
        read_slots = slots

        def __init__(self, protocol: ServerProtocol, server: Server, **kwargs: Any) -> None:
            self.limits = limits = current()
            kwargs.update(
                ping_interval=limits.ping_interval,
                ping_timeout=limits.ping_timeout,
                close_timeout=limits.ping_timeout,
            )
            super().__init__(protocol, server, **kwargs)

    return _Connection


class StreamServer:
    """`async with StreamServer(...) as s:` listens on `listen` (`agent.listen.stream`);
    `s.port` is bound. Each site's link goes in `status.site(sid).stream`; `tls` (from
    `tls_context`) makes it wss://. `figures` reads a site's cart figures for each `welcome`."""

    def __init__(
        self,
        store: Ingest,
        tokens: TokenRegistry,
        sites: Mapping[str, SiteConfig],
        status: RuntimeStatus,
        *,
        figures: CartFigures,
        holdings: Holdings,
        metrics: Metrics,
        clock: Callable[[], float],
        listen: str,
        limits: StreamSection,
        proxies: Sequence[Network] = (),
        tls: ssl.SSLContext | None = None,
        hooks: StreamTestHooks | None = None,
    ) -> None:
        self.store = store
        self.figures = figures
        self.holdings = holdings
        self.tokens = tokens
        self.status = status
        self.metrics = metrics
        self.clock = clock
        self.listen = listen
        self.limits = limits
        self.throttle = protocol.HandshakeThrottle(self.limits.max_failed_handshakes_per_minute)
        self.proxies = proxies
        self.tls = tls
        self.hooks = hooks or StreamTestHooks()
        self.port = 0
        self._server: Server | None = None
        self._parsed = asyncio.Semaphore(MAX_PARSED_BATCHES)
        self._parse_pool: ThreadPoolExecutor | None = None
        # Open connections and the SHA-256 of the token each came with (never the token).
        self._digests: dict[ServerConnection, str] = {}
        # Each open connection's batches received and not yet acked (drained on stop).
        self._in_flight: dict[_SiteConnection, deque[asyncio.Task[bool]]] = {}
        self._recheck: asyncio.Task[None] | None = None
        self._slots = _ReadSlots(limits.read_slots)
        self._site_rules(sites)

    def _site_rules(self, sites: Mapping[str, SiteConfig]) -> None:
        """What `welcome` and `export` read of each site's config."""
        self._watch = {
            sid: protocol.watch_meta(site.woo.customer_mapping) for sid, site in sites.items()
        }
        self._carts = {
            sid: (site.woo.carts.enabled, site.woo.carts.link_lifetime)
            for sid, site in sites.items()
        }
        # Each site's `consent.mode`, told to the plugin in `welcome` (docs/privacy.md).
        self._consent_modes = {sid: site.woo.consent.mode for sid, site in sites.items()}
        # Whose data an `export` reads: the site's Brevo account and the sites sending to it.
        self._privacy = {sid: ErasureRules.of(site, sites.values()) for sid, site in sites.items()}

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> StreamServer:
        self._parse_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-parse")
        try:
            await self._listen()
        except BaseException:
            await self.close()
            raise
        self._recheck = asyncio.create_task(self._recheck_tokens(), name="stream-tokens")
        return self

    async def _listen(self) -> None:
        host, port = split_hostport(self.listen)
        context = self.tls
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            create_connection=_bound_to(self._slots, lambda: self.limits),
            # No permessage-deflate: the plugin's client does not offer it, and each deflate
            # context costs hundreds of KB per connection (RFC 7692 §7.1.2.1 windows).
            compression=None,
            open_timeout=self.limits.handshake_timeout,
            ping_interval=self.limits.ping_interval,
            ping_timeout=self.limits.ping_timeout,
            # A peer that does not answer pings will not answer a close frame either.
            close_timeout=self.limits.ping_timeout,
            # The library closes with 1009 before buffering a bigger message (RFC 6455 §7.4.1).
            max_size=self.limits.max_message_bytes,
            ssl=context,
            server_header=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "stream listening on %s:%d%s (%s)",
            host or "*",
            self.port,
            STREAM_PATH,
            "wss" if context else "ws",
        )

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stop_accepting(self) -> None:
        """Close the listening socket; open connections go on (a stop's first step)."""
        if self._server is not None:
            self._server.server.close()

    async def reconfigure(
        self,
        sites: Mapping[str, SiteConfig],
        *,
        limits: StreamSection,
        proxies: Sequence[Network],
        tls: tuple[Path, Path] | None,
    ) -> None:
        """A config reload (agent/reload.py). New connections get the new limits (open ones
        keep those they were welcomed with), `welcome` the sites' new settings, and new TLS
        handshakes the certificate and key read now from `tls` (open connections keep theirs).
        The connections of a site no longer served are closed (1008, `site removed`)."""
        self._site_rules(sites)
        self.limits = limits
        self.proxies = proxies
        self.throttle.limit = limits.max_failed_handshakes_per_minute
        self._slots.resize(limits.read_slots)
        if tls is not None and self.tls is not None:
            # The listening socket keeps this context: loading into it is what new handshakes
            # see (OpenSSL copies the certificate into each new connection).
            self.tls.load_cert_chain(*tls)
        gone = [ws for ws in list(self._in_flight) if ws.site not in sites]
        await asyncio.gather(*(self._site_removed(ws) for ws in gone))

    async def _site_removed(self, ws: _SiteConnection) -> None:
        self._digests.pop(ws, None)  # the token re-check need not close it again
        err = ProtocolError(
            protocol.ErrorCode.TOKEN_REVOKED,
            f"site {ws.site} was removed from the agent's config; its token is refused from now on",
        )
        log.warning("site %s removed by a config reload; closing its connection", ws.site)
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            async with asyncio.timeout(ws.limits.ping_timeout):
                await ws.send(protocol.error_message(err))
                await ws.close(CloseCode.POLICY_VIOLATION, "site removed")

    async def close(self) -> None:
        """Stop accepting, let the batches in flight commit and ack (up to DRAIN_GRACE), close
        every connection with 1001, wait for handlers (a handler mid-commit completes before
        the store closes)."""
        if self._recheck is not None:
            self._recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recheck
            self._recheck = None
        if self._server is not None:
            self.stop_accepting()
            in_flight = [task for pending in self._in_flight.values() for task in pending]
            if in_flight:
                await asyncio.wait(in_flight, timeout=DRAIN_GRACE)
            self._server.close(code=CloseCode.GOING_AWAY, reason="agent shutting down")
            await self._server.wait_closed()
            self._server = None
        if self._parse_pool is not None:
            self._parse_pool.shutdown(wait=True)
            self._parse_pool = None

    # -- status ---------------------------------------------------------------------------

    def last_seen(self, site: str) -> float | None:
        """When the site last sent a `hello` or `events` (clock seconds), or None."""
        return self.status.site(site).stream.last_seen()

    def connected(self, site: str) -> bool:
        """Heard from within `stream.stale_after` (docs/protocol.md, "Heartbeat")."""
        seen = self.last_seen(site)
        return seen is not None and self.clock() - seen <= self.limits.stale_after

    # -- handshake ------------------------------------------------------------------------

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        """Path, throttle and token, all before the upgrade (docs/protocol.md, "Connection")."""
        if urlsplit(request.path).path != STREAM_PATH:
            return conn.respond(http.HTTPStatus.NOT_FOUND, f"the stream is at {STREAM_PATH}\n")
        bind(door="stream")  # this connection's task: every line it logs says so (agent/logs.py)
        addr = client_address(
            _address(conn), request.headers.get_all("X-Forwarded-For"), self.proxies
        )
        now = self.clock()
        wait = self.throttle.retry_after(addr, now)
        if wait is not None:
            self.metrics.inc("woobrevo_stream_refused_total", reason="throttled")
            resp = conn.respond(http.HTTPStatus.TOO_MANY_REQUESTS, "too many refused handshakes\n")
            resp.headers["Retry-After"] = str(int(wait + 0.999))
            return resp
        token = protocol.bearer_token(request.headers.get("Authorization"))
        digest = token_hash(token) if token else None
        site = await self.tokens.authenticate_digest(digest) if digest else None
        if site is None or digest is None:
            self.throttle.failure(addr, now)
            reason = "no_token" if token is None else "bad_token"
            self.metrics.inc("woobrevo_stream_refused_total", reason=reason)
            log.warning("stream handshake from %s refused: %s", addr, reason.replace("_", " "))
            resp = conn.respond(http.HTTPStatus.UNAUTHORIZED, "token refused\n")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="woobrevo"'
            return resp
        assert isinstance(conn, _SiteConnection)
        conn.site, conn.token_sha256, conn.client = site, digest, addr
        bind(site=site)
        return None

    # -- connection -----------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, _SiteConnection)
        site = ws.site
        link = self.status.site(site).stream
        link.connections += 1
        ws.remote_before = link.remote
        link.remote = ws.client
        self._gauge(site, link)
        log.info("site %s connected from %s", site, link.remote)
        self._digests[ws] = ws.token_sha256
        try:
            await self._serve(ws, site, link)
        except ConnectionClosed as exc:
            log.info("site %s connection closed: %s", site, exc)
        finally:
            self._digests.pop(ws, None)
            if not ws.exporter:  # an exporter gave its count back at its first export
                link.connections -= 1
            self._gauge(site, link)

    async def _recheck_tokens(self) -> None:
        """Close connections whose token was revoked (or now names another site) since their
        handshake: `token revoke` takes effect within TOKEN_RECHECK seconds, not at the next
        reconnect (docs/protocol.md, "Connection")."""
        while True:
            await asyncio.sleep(TOKEN_RECHECK)
            if not self._digests:
                continue
            try:  # one read of the store for every connection, not one each
                now_names = await self.tokens.sites_for(self._digests.values())
            except Exception:  # the store is busy or failing: keep the connections, retry
                log.exception("re-checking stream tokens failed")
                continue
            for ws, digest in list(self._digests.items()):
                assert isinstance(ws, _SiteConnection)
                if digest not in now_names or now_names[digest] == ws.site:
                    continue  # still good, or connected since the read
                self._digests.pop(ws, None)
                self.metrics.inc("woobrevo_stream_refused_total", reason="revoked")
                err = ProtocolError(
                    protocol.ErrorCode.TOKEN_REVOKED,
                    "this connection's token was revoked or changed; set the site's new token",
                )
                # Bounded: a peer that reads nothing must not stall the re-check of the others.
                with contextlib.suppress(ConnectionClosed, TimeoutError):
                    async with asyncio.timeout(self.limits.ping_timeout):
                        await self._fail(ws, ws.site, err)

    def _gauge(self, site: str, link: StreamLink) -> None:
        self.metrics.set("woobrevo_stream_connections", link.connections, site=site)

    async def _serve(self, ws: _SiteConnection, site: str, link: StreamLink) -> None:
        """Read, parse, commit, ack. Up to PIPELINE_DEPTH batches of a connection are committing
        at once (the store folds them into one transaction), the next one is parsed meanwhile,
        and acks leave in order; a global cap bounds the parsed batches held in memory."""
        hello_seen = False
        pending: deque[asyncio.Task[bool]] = deque()
        self._in_flight[ws] = pending
        most_in_flight = 0
        try:
            while True:
                limits = ws.limits
                wait = limits.idle_timeout if hello_seen else limits.handshake_timeout
                try:
                    async with asyncio.timeout(wait):
                        frame = await ws.recv()
                except TimeoutError:
                    await self._timed_out(ws, site, pending, hello_seen, wait)
                    return
                if len(frame) >= RELEASE_AFTER_BYTES:
                    # The websockets parser keeps its last frame until the next one arrives;
                    # a ping's pong is that next frame, so an idle site does not hold its last
                    # batch (~300 KB) until the keepalive (RFC 6455 §5.5.2: pong promptly).
                    await ws.ping()
                # A parsed batch weighs ~4x its JSON: the cap keeps a burst from every site at
                # once from holding them all parsed.
                await self._parsed.acquire()
                handed_over = False
                msg: protocol.Message | ProtocolError | None = None
                try:
                    msg = await self._parse(frame, hello_seen, limits.max_batch)
                    del frame
                    if isinstance(msg, ProtocolError):
                        await _settle(pending)  # acks of earlier batches go out before the error
                        await self._fail(ws, site, msg)
                        return
                    if not isinstance(msg, Events):
                        hello_seen = await self._message(ws, site, link, msg) or hello_seen
                    else:
                        if not _reap(pending):
                            return  # the store failed: the connection is closed (1011)
                        # Batches received and not yet acked, this one included (a batch is
                        # done only once those before it are): how deep the plugin pipelines,
                        # for /status (1: it waits for each ack).
                        if len(pending) + 1 > most_in_flight:
                            most_in_flight = len(pending) + 1
                            link.batches_in_flight_max = most_in_flight
                        while len(pending) >= PIPELINE_DEPTH:
                            if not await pending.popleft():
                                return
                        previous = pending[-1] if pending else None
                        pending.append(
                            asyncio.create_task(self._events(ws, site, link, msg, previous))
                        )
                        handed_over = True
                finally:
                    if not handed_over:
                        self._parsed.release()
                    # Not kept until the next frame: idle connections must not each hold one.
                    msg = None
        finally:
            # The peer left or the agent is stopping: commits under way still complete (their
            # acks may not reach the plugin, which then resends: a replay, stored once).
            try:
                with contextlib.suppress(ConnectionClosed):
                    await asyncio.shield(_settle(pending))
            finally:
                self._in_flight.pop(ws, None)

    async def _message(
        self, ws: _SiteConnection, site: str, link: StreamLink, msg: Hello | Export | PeerError
    ) -> bool:
        """A message other than `events`; True when it was the `hello`."""
        if isinstance(msg, Hello):
            await self._hello(ws, site, link, msg)
            return True
        if isinstance(msg, Export):
            await self._export(ws, site, link, msg)
        else:
            log.warning("site %s reports error %s: %s", site, msg.code, msg.message)
        return False

    async def _timed_out(
        self,
        ws: _SiteConnection,
        site: str,
        pending: deque[asyncio.Task[bool]],
        hello_seen: bool,
        waited: float,
    ) -> None:
        """Nothing came for `waited` seconds: once the batches in flight are acked, close (no
        hello yet: a protocol error; else an idle connection)."""
        if not await _settle(pending):
            return
        if not hello_seen:
            err = ProtocolError(
                protocol.ErrorCode.HELLO_REQUIRED, f"no hello within {waited:g}s of the upgrade"
            )
            await self._fail(ws, site, err)
        else:
            log.info("site %s idle for %gs; closing", site, waited)
            await ws.close(CloseCode.NORMAL, "idle")

    async def _parse(
        self, frame: str | bytes, hello_seen: bool, max_batch: int
    ) -> protocol.Message | ProtocolError:
        """Parse a frame; a big one on the parse thread, so that the loop meanwhile hands the
        previous batch to the store (whose commit runs with the GIL released) and answers
        other connections, instead of waiting ~10 ms per 100 events."""
        parse = functools.partial(
            protocol.parse_message, frame, hello_seen=hello_seen, max_batch=max_batch
        )
        if len(frame) < PARSE_INLINE_BYTES or self._parse_pool is None:
            return parse()
        return await asyncio.get_running_loop().run_in_executor(self._parse_pool, parse)

    async def _fail(self, ws: _SiteConnection, site: str, err: ProtocolError) -> None:
        self.metrics.inc("woobrevo_stream_protocol_errors_total", site=site, code=err.code.value)
        log.warning("site %s protocol error %s: %s", site, err.code.value, err.message)
        await ws.send(protocol.error_message(err))
        await ws.close(err.close_code, err.code.value)

    async def _hello(self, ws: _SiteConnection, site: str, link: StreamLink, msg: Hello) -> None:
        now = self.clock()
        ws.hello_before, ws.hello_at = _hello_fields(link), now
        link.last_hello = now
        link.site_url = msg.site_url
        link.blog_id = msg.blog_id
        link.plugin_version = msg.plugin_version
        link.wp_version = msg.wp_version
        link.wc_version = msg.wc_version
        carts = self._carts.get(site, (True, 7 * 86400.0))
        await ws.send(
            protocol.welcome_message(
                site,
                max_batch=ws.limits.max_batch,
                max_message_bytes=ws.limits.max_message_bytes,
                watch=self._watch.get(site, protocol.watch_meta({})),
                now=now,
                carts=carts,
                figures=await self._cart_figures(site) if carts[0] else None,
                consent_mode=self._consent_modes.get(site, "implied"),
            )
        )

    async def _export(self, ws: _SiteConnection, site: str, link: StreamLink, msg: Export) -> None:
        """Answer an `export` with what the store holds about its email on the site's Brevo
        account (docs/protocol.md). The connection is an exporter's, not the shipper's: its
        count and its hello leave the site's link as they found it."""
        if not ws.exporter:
            ws.exporter = True
            link.connections -= 1
            if link.remote == ws.client:
                link.remote = ws.remote_before
            if ws.hello_before is not None and link.last_hello == ws.hello_at:
                _restore_hello(link, ws.hello_before)
            self._gauge(site, link)
        if msg.email is None:
            await ws.send(protocol.export_result_message(msg.request, None))
            return
        rules = self._privacy[site]
        try:
            held = await self.holdings.holdings(rules.account, rules.sites, msg.email)
        except Exception:
            log.exception("site %s: export %s: the store could not be read", site, msg.request)
            await ws.send(
                protocol.export_result_message(
                    msg.request, None, "the agent's store could not be read now; try again"
                )
            )
            return
        groups = export_groups(held)
        log.info("site %s: export %s answered (%d groups)", site, msg.request, len(groups))
        await ws.send(protocol.export_result_message(msg.request, groups))

    async def _cart_figures(self, site: str) -> dict[str, float | None] | None:
        """The site's cart figures for its welcome; None when the store cannot say now (the
        welcome goes without them: the next hello brings them)."""
        try:
            return await self.figures.cart_figures(site)
        except Exception:
            log.warning(
                "site %s: cart figures unreadable; welcome without them", site, exc_info=True
            )
            return None

    async def _events(
        self,
        ws: _SiteConnection,
        site: str,
        link: StreamLink,
        msg: Events,
        previous: asyncio.Task[bool] | None,
    ) -> bool:
        """Commit the batch, then ack it once `previous` (the batch before) is acked; releases
        the batch's parse slot. False when the connection must end."""
        bind(batch=msg.batch)  # a task of its own: its lines name the batch
        hooks = self.hooks
        result: IngestResult | None = None
        try:
            try:
                if hooks.before_commit is not None:
                    hooks.before_commit(site, msg)
                result = await self.store.ingest(site, msg.events, rejected=msg.rejected)
            except Exception:
                log.exception("site %s batch %s could not be stored; closing 1011", site, msg.batch)
        finally:
            self._parsed.release()
        if result is None:
            # Not acked, nor the batches after it: the plugin keeps their rows and resends
            # (protocol.md, 1011). The batches before it that were stored are acked first.
            if previous is not None:
                await previous
            await ws.close(CloseCode.INTERNAL_ERROR, "store failed; resend later")
            return False
        link.last_events = self.clock()
        if hooks.after_commit is not None:
            hooks.after_commit(site, msg)
        metrics = self.metrics
        count_ingest(
            metrics,
            "stream",
            site,
            events=len(msg.events),
            new=result.new,
            rejected=len(msg.rejected),
        )
        if hooks.ack_delay > 0:
            await asyncio.sleep(hooks.ack_delay)
        if previous is not None and not await previous:
            return False
        try:
            await ws.send(
                protocol.ack_message(msg.batch, list(result.accepted), list(result.rejected))
            )
        except ConnectionClosed:
            return False
        metrics.inc("woobrevo_acks_total", site=site)
        return True


_HELLO_FIELDS = (
    "last_hello",
    "site_url",
    "blog_id",
    "plugin_version",
    "wp_version",
    "wc_version",
)


def _hello_fields(link: StreamLink) -> tuple[Any, ...]:
    return tuple(getattr(link, name) for name in _HELLO_FIELDS)


def _restore_hello(link: StreamLink, values: tuple[Any, ...]) -> None:
    for name, value in zip(_HELLO_FIELDS, values, strict=True):
        setattr(link, name, value)


def _reap(pending: deque[asyncio.Task[bool]]) -> bool:
    """Drop the batches at the front that are done (acked or failed) without waiting; False if
    one of them ended the connection."""
    while pending and pending[0].done():
        if not pending.popleft().result():
            return False
    return True


async def _settle(pending: deque[asyncio.Task[bool]]) -> bool:
    """Wait for every batch in flight, oldest first; False if one of them ended the connection."""
    ok = True
    while pending:
        ok = await pending.popleft() and ok
    return ok


def _address(conn: ServerConnection) -> str:
    peer = conn.remote_address
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"
