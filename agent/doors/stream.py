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
from websockets.frames import DATA_OPCODES, Frame
from websockets.http11 import Request, Response
from websockets.protocol import Event, State
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
from agent.logs import bind, untrusted
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
# Handshakes refused or dropped before the upgrade (no or bad token, throttled, over
# max_pending_handshakes, no upgrade within handshake_timeout) are logged at most once per
# REFUSALS_LOGGED_EVERY seconds: the first of a quiet spell as it happens, then one line of
# counts per spell while they go on (1,000 idle sockets wrote 2,000 lines; issue 16).
REFUSALS_LOGGED_EVERY = 60.0
_REFUSALS = {
    "no_token": "no token",
    "bad_token": "bad token",
    "throttled": "throttled (429)",
    "pending_cap": "over max_pending_handshakes",
    "handshake_timeout": "no upgrade within handshake_timeout",
}
_ADDRESSES_NAMED = 3  # addresses a summary line names (of up to _ADDRESSES_COUNTED counted)
_ADDRESSES_COUNTED = 1000
# The websockets library's logger for this door, at WARNING: its INFO lines are one per
# connection ("connection closed", "HTTP response sent"); its errors still show.
_LIBRARY_LOG = logging.getLogger("websockets.server.stream")
_LIBRARY_LOG.setLevel(logging.WARNING)

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


class _RefusalLog:
    """Refused handshakes in the log, at most one line per `every` seconds: the first of a
    quiet spell as it happens (`stream handshake from ADDR refused: bad token`), then, while
    more come, one line per spell with their counts by reason and who sent them."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.counts: dict[str, int] = {}
        self.addresses: dict[str, None] = {}  # first seen first, up to _ADDRESSES_COUNTED
        self._since = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def note(self, reason: str, addr: str) -> None:
        """One refusal."""
        if self._timer is None:
            log.warning("stream handshake from %s refused: %s", addr, _REFUSALS[reason])
            self._spell()
            return
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if len(self.addresses) < _ADDRESSES_COUNTED:
            self.addresses[addr] = None

    def close(self) -> None:
        """Log what is counted and stop (the door is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._summary(again=False)

    def _spell(self) -> None:
        loop = asyncio.get_running_loop()
        self._since = loop.time()
        self._timer = loop.call_later(self.every, self._summary)

    def _summary(self, again: bool = True) -> None:
        self._timer = None
        if not self.counts:
            return  # a quiet spell: the next refusal is logged as it happens
        counts = ", ".join(f"{n} {_REFUSALS[r]}" for r, n in sorted(self.counts.items()))
        named = list(self.addresses)[:_ADDRESSES_NAMED]
        more = len(self.addresses) - len(named)
        if more:
            named.append(f"{more}{'+' if len(self.addresses) >= _ADDRESSES_COUNTED else ''} more")
        log.warning(
            "stream handshakes refused in the last %.0fs: %s (from %s)",
            asyncio.get_running_loop().time() - self._since,
            counts,
            ", ".join(named),
        )
        self.counts.clear()
        self.addresses.clear()
        if again:
            self._spell()


class _ReadSlots:
    """At most `size` connections of one server read a message at once, and at most `per_site`
    of them one site's (`agent.stream.read_slots_per_site`: one site's slow writers cannot take
    every slot, issue 16); the others wait, first come first in, except that a connection whose
    site holds its share lets those of other sites go first."""

    def __init__(self, size: int, per_site: int) -> None:
        self.size = size
        self.per_site = per_site
        self.taken = 0
        self.by_site: dict[str, int] = {}  # slots held, per site
        self.waiting: dict[_SiteConnection, None] = {}  # an ordered set: first come, first in

    def take(self, conn: _SiteConnection) -> bool:
        """A slot now, or False: `conn` waits and `conn.admitted()` is called when its turn comes.
        (Whoever waits cannot have a slot now: every change admits those that can, `_admit`.)"""
        if self._room(conn.site):
            self._give(conn.site)
            return True
        self.waiting[conn] = None
        return False

    def give_back(self, conn: _SiteConnection) -> None:
        """`conn` is done reading its message (or closed): its slot goes to the next one."""
        self.taken -= 1
        held = self.by_site.pop(conn.site) - 1
        if held:
            self.by_site[conn.site] = held
        self._admit()

    def resize(self, size: int, per_site: int) -> None:
        """A reload's `read_slots` and share: more slots admit waiting connections now; fewer
        take effect as the slots in use are given back."""
        self.size, self.per_site = size, per_site
        self._admit()

    def leave(self, conn: _SiteConnection) -> None:
        """A waiting connection closed: it gives up its place."""
        self.waiting.pop(conn, None)

    def _room(self, site: str) -> bool:
        return self.taken < self.size and self.by_site.get(site, 0) < self.per_site

    def _give(self, site: str) -> None:
        self.taken += 1
        self.by_site[site] = self.by_site.get(site, 0) + 1

    def _admit(self) -> None:
        for conn in list(self.waiting):
            if self.taken >= self.size:
                return
            if self._room(conn.site):
                del self.waiting[conn]
                self._give(conn.site)
                conn.admitted()


class _Handshakes:
    """The connections of one server not upgraded yet: from the TCP accept (over wss://, the
    end of the TLS handshake, which asyncio bounds by `handshake_timeout`) until the upgrade or
    the close; at most `size` (`agent.stream.max_pending_handshakes`). A newcomer past it
    closes the one that has waited longest without sending its HTTP request, or itself when
    every one has sent its request (those are being checked: milliseconds). Closing the oldest
    idle one, not the newcomer, keeps the door open to a real site while idle sockets pile up:
    to push its connection out, a flood must open `size` more before its request arrives."""

    def __init__(self, size: int, refused: Callable[[str, str], None]) -> None:
        self.size = size
        self.refused = refused  # (reason, address): the server counts and logs it
        self.open: dict[_SiteConnection, None] = {}  # an ordered set: oldest first

    def arrive(self, conn: _SiteConnection) -> _SiteConnection | None:
        """Count `conn`; returns the connection to close for it (maybe `conn`), or None."""
        shed: _SiteConnection | None = None
        if len(self.open) >= self.size:
            shed = next((c for c in self.open if c.request is None), conn)
            self.open.pop(shed, None)
        if shed is not conn:
            self.open[conn] = None
        return shed

    def done(self, conn: _SiteConnection) -> bool:
        """`conn` was upgraded or closed; whether it was still counted."""
        if conn in self.open:
            del self.open[conn]
            return True
        return False


class _SiteConnection(ServerConnection):
    """A connection that knows the one site its token named (set before the upgrade), and that
    holds one of its server's read slots from the first chunk of a message until the handler
    comes back for the next one (see read slots above). A message it has begun must arrive
    whole within `message_timeout` of its first byte read (`overdue` past that: its slot is
    given back, it reads no more, and the handler closes it); while one is on its way (waiting
    for a slot, or being read) the handler's idle wait does not run out. Reads websockets
    internals (protocol.reader, recv_messages, pending_pings, process_event, as in websockets
    17) and, for wss://, asyncio's TLS read buffer (asyncio.sslproto, Python 3.11+):
    tests/agent/test_stream_admission.py, tests/agent/test_stream_attacks.py."""

    site: str = ""
    token_sha256: str = ""  # the hash of its token, for the re-checks (never the token)
    client: str = "?"  # the peer's address, or the client's behind a trusted proxy
    # An exporter (it sent `export`): not the site's shipper, so the link is as it found it.
    exporter = False
    remote_before: str | None = None  # the link's `remote` before this connection
    hello_before: tuple[Any, ...] | None = None  # the link's hello fields before its hello
    hello_at: float | None = None  # when its own hello came
    read_slots: _ReadSlots  # set by _bound_to()
    handshakes: _Handshakes  # set by _bound_to()
    # The limits it was opened (and welcomed) with: a reload's new ones are for new connections.
    limits: StreamSection  # set by _bound_to()
    overdue = False  # a message of it took longer than message_timeout
    opened_at = 0.0  # loop time of connection_made
    _slot = False  # holds a read slot
    _waiting = False  # paused until a read slot frees up
    _queue_full = False  # paused by websockets: 16 received frames not yet taken
    _discarding = False  # failed (RFC 6455 §7.1.7): what comes is read and dropped
    _reading_paused = False
    _fragmented = False  # a message's first fragments are in, its last is not
    _deadline: asyncio.TimerHandle | None = None  # message_timeout of the message being read
    _deadline_at = 0.0
    _deadline_left: float | None = None  # its time left while reading is paused mid-message
    _wait: asyncio.Timeout | None = None  # the handler's wait for the next message
    _idle_wait = False  # ... and it is the idle timeout (not the hello's)
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
        self.opened_at = self.loop.time()
        shed = self.handshakes.arrive(self)
        if shed is not None:  # no longer counted: its close is not a handshake timeout
            self.handshakes.refused("pending_cap", _address(shed))
            shed.transport.abort()

    def process_event(self, event: Event) -> None:
        super().process_event(event)
        if isinstance(event, Frame) and event.opcode in DATA_OPCODES:
            self._fragmented = not event.fin
            if event.fin:  # a message is in whole: its deadline is met
                self._end_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Part of a frame is left in the parser's buffer, or fragments of a message are in but
        # not its last: a message has begun and needs a slot. (A chunk of whole small messages,
        # pongs or a hello, needs none.)
        if self.overdue or self.protocol.state is not State.OPEN:
            return
        if not self._begun():  # (what began was a control frame: a pong split in two)
            self._end_deadline()
            return
        if self._wait is not None and self._idle_wait and not self._wait.expired():
            self._wait.reschedule(None)  # on its way: not idle
        if self._slot:
            self._start_deadline()  # a next message may have begun
        elif not self._waiting:
            if self.read_slots.take(self):
                self._slot = True
                self._read_size(SLOT_READ)
                self._start_deadline()
            else:
                self._waiting = True
                # The bytes it just sent show it alive; its pong would queue behind the message
                # we do not read yet. Keepalive must not close it for that (see ping()).
                if self.pending_pings:
                    self.acknowledge_pings(next(reversed(self.pending_pings)))
                self._set_reading()

    def admitted(self) -> None:
        """Its turn: read the rest of the message (its deadline starts now)."""
        self._waiting = False
        self._slot = True
        self._read_size(SLOT_READ)
        self._set_reading()
        self._start_deadline()

    def watch(self, wait: asyncio.Timeout | None, *, idle: bool) -> None:
        """The handler waits for the next message under `wait` (None: it stopped waiting); an
        `idle` wait does not run out while a message is on its way, and any wait ends at once
        when a message is overdue."""
        self._wait, self._idle_wait = wait, idle
        if wait is None:
            return
        if self.overdue:
            wait.reschedule(self.loop.time())
        elif idle and (self._waiting or self._begun()):
            wait.reschedule(None)

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
        if self._slot and not self._begun() and not len(self.recv_messages.frames):
            self._slot = False
            self._read_size(WAITING_READ)
            self.read_slots.give_back(self)
        return await super().recv(decode)

    async def ping(self, data: DataLike | None = None) -> Awaitable[float]:
        if self._waiting:  # alive, see data_received(); the pong could not be read anyway
            alive: asyncio.Future[float] = self.loop.create_future()
            alive.set_result(0.0)
            return alive
        return await super().ping(data)

    async def abandon(self, code: CloseCode, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7) with the close frame `code`, `reason`: what the
        peer sends from now on is read and dropped, so its close (or its TCP FIN) is seen while
        the rest of an overdue message is not kept; after `close_timeout` the TCP connection
        is dropped."""
        with contextlib.suppress(ConnectionClosed):
            async with self.send_context():
                self.protocol.fail(code, reason)
                self._discarding = True
                self._set_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if (
            self.handshakes.done(self)
            and self.response is None
            and self.loop.time() - self.opened_at >= self.limits.handshake_timeout - 0.05
        ):  # no upgrade request answered: handshake_timeout aborted it (asyncio's timer may
            # fire up to its clock resolution early; a peer that leaves sooner is not counted)
            self.handshakes.refused("handshake_timeout", _address(self))
        self._end_deadline()
        if self._slot:
            self._slot = False
            self.read_slots.give_back(self)
        elif self._waiting:
            self._waiting = False
            self.read_slots.leave(self)
        super().connection_lost(exc)

    def _begun(self) -> bool:
        """A message has begun and is not in whole yet."""
        return bool(self.protocol.reader.buffer) or self._fragmented

    def _start_deadline(self) -> None:
        """Run the deadline of the message being read, if one is and it is not running: the
        full `message_timeout` for a new message, what was left for one paused midway."""
        if (
            self._deadline is not None
            or not self._slot
            or self._reading_paused
            or self.overdue
            or not self._begun()
        ):
            return
        left = self._deadline_left
        self._deadline_at = self.loop.time() + (
            self.limits.message_timeout if left is None else left
        )
        self._deadline = self.loop.call_at(self._deadline_at, self._overdue)

    def _hold_deadline(self) -> None:
        """Reading paused mid-message (by the handler, not the peer): the clock stops."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
            self._deadline_left = self._deadline_at - self.loop.time()

    def _end_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._deadline_left = None

    def _overdue(self) -> None:
        """message_timeout passed with the message not in: its slot goes to the next
        connection, the rest of it is not read, and the handler's wait ends (it closes)."""
        self._deadline = None
        if not self._begun():  # nothing is on its way after all
            self._deadline_left = None
            return
        self.overdue = True
        if self._slot:
            self._slot = False
            self._read_size(WAITING_READ)
            self.read_slots.give_back(self)
        self._set_reading()
        if self._wait is not None and not self._wait.expired():
            self._wait.reschedule(self.loop.time())

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
        paused = (self._waiting or self._queue_full or self.overdue) and not self._discarding
        if paused != self._reading_paused:
            self._reading_paused = paused
            if paused:
                self.transport.pause_reading()
                self._hold_deadline()
            else:
                self.transport.resume_reading()
                self._start_deadline()


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


def _bound_to(
    slots: _ReadSlots, pending: _Handshakes, current: Callable[[], StreamSection]
) -> type[_SiteConnection]:
    """The connection class of one server (serve() takes a class; the slots and the pending
    handshakes are per server). Each connection takes the server's limits as they are when it
    opens (`current()`: a reload changes them), keepalive included, over what serve() was
    started with."""

    class _Connection(_SiteConnection):
        read_slots = slots
        handshakes = pending

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
        self._slots = _ReadSlots(limits.read_slots, limits.site_slots)
        self._handshakes = _Handshakes(limits.max_pending_handshakes, self._refused)
        self._refusals = _RefusalLog(REFUSALS_LOGGED_EVERY)
        # Per address with token checks under way: set when one ends (the throttle's turns).
        self._turns: dict[str, asyncio.Event] = {}
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
            create_connection=_bound_to(self._slots, self._handshakes, lambda: self.limits),
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
            # Its INFO lines are one per connection ("connection closed", "HTTP response sent"):
            # a flood of sockets would flood the log. The door logs what matters itself.
            logger=_LIBRARY_LOG,
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
        self._slots.resize(limits.read_slots, limits.site_slots)
        self._handshakes.size = limits.max_pending_handshakes
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
        self._refusals.close()

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
        wait = await self._turn(addr)
        if wait is not None:
            self._refused("throttled", addr)
            resp = conn.respond(http.HTTPStatus.TOO_MANY_REQUESTS, "too many refused handshakes\n")
            resp.headers["Retry-After"] = str(int(wait + 0.999))
            return resp
        token = protocol.bearer_token(request.headers.get("Authorization"))
        digest = token_hash(token) if token else None
        site: str | None = None
        checked = False
        try:
            site = await self.tokens.authenticate_digest(digest) if digest else None
            checked = True
        finally:
            # Cancelled (handshake_timeout, a stop): not a refusal, but the turn is over.
            self.throttle.end(addr, self.clock(), refused=checked and site is None)
            turn = self._turns.pop(addr, None)
            if turn is not None:
                turn.set()
        if site is None or digest is None:
            self._refused("no_token" if token is None else "bad_token", addr)
            resp = conn.respond(http.HTTPStatus.UNAUTHORIZED, "token refused\n")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="woobrevo"'
            return resp
        assert isinstance(conn, _SiteConnection)
        conn.site, conn.token_sha256, conn.client = site, digest, addr
        bind(site=site)
        return None

    async def _turn(self, addr: str) -> float | None:
        """Wait until a token from `addr` may be checked: None, and the check is counted (the
        caller ends it with `throttle.end`); or the seconds until `addr` may try again (429).
        At most `max_failed_handshakes_per_minute` checks of one address are counted at a
        time, refused or under way, so 1,000 handshakes at once see at most that many checks;
        the others wait here (within handshake_timeout) for one to end, then are refused with
        429 or checked in turn."""
        while True:
            now = self.clock()
            wait = self.throttle.retry_after(addr, now)
            if wait is not None:
                return wait
            if self.throttle.begin(addr, now):
                return None
            await self._turns.setdefault(addr, asyncio.Event()).wait()

    def _refused(self, reason: str, addr: str) -> None:
        """A handshake refused or dropped before the upgrade: counted, and logged at most once
        per REFUSALS_LOGGED_EVERY seconds (_RefusalLog)."""
        self.metrics.inc("woobrevo_stream_refused_total", reason=reason)
        self._refusals.note(reason, addr)

    # -- connection -----------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, _SiteConnection)
        self._handshakes.done(ws)  # upgraded
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
                frame = await _next_message(ws, wait, idle=hello_seen)
                if frame is None:
                    if ws.overdue:
                        await self._too_slow(ws, site, pending)
                    else:
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
            # The plugin's own words: escaped and capped, a forged log line stays in this one.
            code, text = untrusted(msg.code, 64), untrusted(msg.message)
            log.warning("site %s reports error %s: %s", site, code, text)
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

    async def _too_slow(
        self, ws: _SiteConnection, site: str, pending: deque[asyncio.Task[bool]]
    ) -> None:
        """A message was not in whole within message_timeout of its first byte read: once the
        batches before it are acked, `error` message_timeout and close 1008 (the rest of it is
        not read: its slot went to the next connection; docs/protocol.md)."""
        if not await _settle(pending):
            return
        limit = ws.limits.message_timeout
        err = ProtocolError(
            protocol.ErrorCode.MESSAGE_TIMEOUT,
            f"a message must arrive whole within {limit:g}s of its first byte"
            " (agent.stream.message_timeout); this one did not, and was dropped: resend it",
        )
        self.metrics.inc("woobrevo_stream_protocol_errors_total", site=site, code=err.code.value)
        log.warning("site %s protocol error %s: %s", site, err.code.value, err.message)
        # Bounded: a peer that reads nothing must not hold the handler.
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            async with asyncio.timeout(ws.limits.ping_timeout):
                await ws.send(protocol.error_message(err))
        await ws.abandon(err.close_code, err.code.value)

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
            events=len(result.accepted),
            new=result.new,
            rejected=len(result.rejected),
        )
        if hooks.ack_delay > 0:
            await asyncio.sleep(hooks.ack_delay)
        if previous is not None and not await previous:
            return False
        rejected = list(result.rejected)
        if len(rejected) > len(msg.rejected):  # some the store refused: back in batch order
            order = {eid: i for i, eid in enumerate(msg.ids)}
            rejected.sort(key=lambda r: order.get(r.id, 0))
        try:
            await ws.send(protocol.ack_message(msg.batch, list(result.accepted), rejected))
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


async def _next_message(ws: _SiteConnection, wait: float, *, idle: bool) -> Data | None:
    """The connection's next message, or None when `wait` ran out first (or a message of it
    is overdue: `ws.overdue`). An `idle` wait does not run out while a message is on its way."""
    try:
        async with asyncio.timeout(wait) as timer:
            ws.watch(timer, idle=idle)
            return await ws.recv()
    except TimeoutError:
        return None
    finally:
        ws.watch(None, idle=False)


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
