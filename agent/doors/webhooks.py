"""The webhook door: `POST /webhooks/woocommerce/{site}`, WooCommerce's native webhooks.

A thin shell around agent/core/webhooks.py. WooCommerce counts 200-302 as delivered and
anything else as a failure, and never retries (NOTES §1.1), so the answer is 200 only after
the commit, and 200 too for a verified body the agent cannot use (it is kept as a dead letter:
a non-2xx would only get the webhook disabled, and the poller has the object anyway).

The body is the last thing read, and read within bounds (`BodyGate`, shared with the Brevo
door): the site, the headers and the declared length are checked first, so a request that
will be refused costs no memory; a body that is read is capped, has a deadline
(`agent.webhooks.body_timeout`), and holds one of a few slots (`max_pending_bodies`, in all and
per sender's address). WooCommerce's signature covers the body, so it can only be checked once
the body is in: the slots bound what unauthenticated senders can make the agent hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from agent.config import SiteConfig, WebhooksSection
from agent.core.proxies import Network, client_address
from agent.core.storable import UNSTORABLE
from agent.core.webhooks import Ignored, delivery_event, is_ping, verify_signature
from agent.metrics import Metrics, count_ingest
from agent.status import RuntimeStatus
from agent.store.ports import Ingest

StoreT = TypeVar("StoreT")

__all__ = ["BodyGate", "HttpDoor", "Refusal", "WebhookDoor", "json_refusal", "refuse"]

log = logging.getLogger("agent.webhooks")

REQUESTS = "woobrevo_webhook_requests_total"
# A refused request whose unread rest is at most this is drained (aiohttp's lingering close,
# agent/http.py LINGER) so that its sender reads the answer rather than a connection reset;
# a larger or unknown rest is not read: the connection is closed after the answer.
SMALL_BODY = 64 * 1024
PING_MAX = 64  # WooCommerce's ping is `webhook_id=<ID>` (NOTES §1.5): 12 bytes in practice
BUSY_LOG_EVERY = 10.0  # seconds between two log lines about refusals for want of a slot
GIVE_BACK_AFTER = 1024 * 1024  # bytes of bodies read after which freed memory is given back
GIVE_BACK_DELAY = 1.0  # seconds after a slot is freed
# base64 of a 32-byte HMAC-SHA256: what WooCommerce sends unless a filter changes the algorithm.
_SIGNATURE = re.compile(r"^[A-Za-z0-9+/]{43}=$")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request answered without using its body: the status, the error code and message of
    the JSON answer, and the outcome label of the door's request counter."""

    status: int
    error: str
    message: str
    outcome: str
    retry_after: int | None = None


async def refuse(request: web.Request, refusal: Refusal) -> web.StreamResponse:
    """Answer `refusal` and close the connection: at once when the body's rest is large,
    unknown or late (it is never read), after draining it when it is small."""
    body: dict[str, object] = {"error": refusal.error, "message": refusal.message}
    response = web.json_response(body, status=refusal.status)
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)
    response.force_close()  # Connection: close
    declared = request.content_length
    drain = refusal.status != 408 and declared is not None and declared <= SMALL_BODY
    if drain or request.content.is_eof():
        return response
    with contextlib.suppress(ConnectionError):  # the sender may be gone already
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()  # no lingering read of a rest that is large or late
    return response


class BodyGate:
    """Reads the webhook doors' bodies within bounds: `max_body` (declared and as it streams),
    `limits.body_timeout`, and `limits.max_pending_bodies` bodies at once, at most
    `limits.max_pending_bodies_per_address` of them from one sender. A request beyond a slot
    limit is refused before any of its body is read. One gate serves both webhook doors."""

    def __init__(self, limits: WebhooksSection, *, max_body: int) -> None:
        self.limits = limits
        # One limit for everything the agent reads from the network (docs/protocol.md, Limits):
        # `agent.stream.max_message_bytes`.
        self.max_body = max_body
        self.pending = 0
        self._by_address: dict[str, int] = {}
        self._dropped = 0  # bytes of bodies let go since the allocator last gave memory back
        self._give_back: asyncio.TimerHandle | None = None
        self._busy_since_log = 0
        self._busy_logged_at = -math.inf

    def reconfigure(self, limits: WebhooksSection) -> None:
        """A config reload: bodies read from now on get the new limits."""
        self.limits = limits

    async def read(self, request: web.Request, sender: str, cap: int = 0) -> bytes | Refusal:
        """The request's whole body, or why it was not read (413, 503) or not finished (408,
        413). `cap` (bytes) lowers `max_body` for this request."""
        cap = min(cap, self.max_body) if cap else self.max_body
        declared = request.content_length
        if declared is not None and declared > cap:
            return _too_large(cap)
        limits = self.limits
        held = self._by_address.get(sender, 0)
        if (
            self.pending >= limits.max_pending_bodies
            or held >= limits.max_pending_bodies_per_address
        ):
            self._note_busy(sender, held)
            return Refusal(
                503,
                "busy",
                "too many webhook bodies are being read at once; deliver again later",
                "busy",
                retry_after=max(1, math.ceil(limits.body_timeout)),
            )
        self.pending += 1
        self._by_address[sender] = held + 1
        size = [0]  # bytes read so far
        try:
            return await _read_within(request.content, cap, limits.body_timeout, size)
        finally:
            self.pending -= 1
            left = self._by_address.pop(sender) - 1
            if left:
                self._by_address[sender] = left
            self._dropped += size[0]
            if self._dropped >= GIVE_BACK_AFTER and self._give_back is None:
                # CPython hands blocks this size to malloc, and glibc keeps what was freed
                # mid-heap: without this, 30 slow 8 MiB bodies left the process 255 MB larger.
                # A moment later: the request's own buffers go once its answer is sent.
                loop = asyncio.get_running_loop()
                self._give_back = loop.call_later(GIVE_BACK_DELAY, self._trim)

    def _trim(self) -> None:
        self._give_back = None
        self._dropped = 0
        _trim_heap()

    def _note_busy(self, sender: str, held: int) -> None:
        # A warning at most every BUSY_LOG_EVERY seconds: a flood must not flood the log.
        self._busy_since_log += 1
        now = asyncio.get_running_loop().time()
        if now - self._busy_logged_at < BUSY_LOG_EVERY:
            return
        log.warning(
            "webhook bodies refused for want of a slot: %d since the last such line (%d being"
            " read, %d of them from %s; agent.webhooks.max_pending_bodies%s)",
            self._busy_since_log,
            self.pending,
            held,
            sender,
            "_per_address" if self.pending < self.limits.max_pending_bodies else "",
        )
        self._busy_since_log, self._busy_logged_at = 0, now


async def _read_within(
    content: StreamReader, cap: int, deadline: float, size: list[int]
) -> bytes | Refusal:
    """The body, read until its end, `cap` bytes or `deadline` seconds; `size[0]` counts
    the bytes read."""
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(deadline):
            while chunk := await content.readany():
                size[0] += len(chunk)
                if size[0] > cap:  # a chunked body, or a sender that lied about its length
                    return _too_large(cap)
                chunks.append(chunk)
        return b"".join(chunks)
    except TimeoutError:
        message = f"the body did not arrive within {deadline:g}s (agent.webhooks.body_timeout)"
        return Refusal(408, "body_timeout", message, "body_timeout")
    except (ConnectionError, HttpProcessingError) as exc:
        # The sender went away mid-body, or its chunked framing is broken: nobody to answer
        # (or aiohttp answers 400 itself), but one warning line, not a traceback.
        message = f"the body ended before it was whole ({type(exc).__name__})"
        return Refusal(400, "incomplete_body", message, "incomplete_body")
    finally:
        # Now, not when the collector breaks the cycle through the timeout's traceback:
        # the memory is to be given back once the slot is freed.
        chunks.clear()


def _trimmer() -> Callable[[], object]:
    """glibc's `malloc_trim(0)`: return the free pages of the heap to the system (a no-op
    where the C library has no such function)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


_trim_heap = _trimmer()


def _too_large(cap: int) -> Refusal:
    return Refusal(413, "too_large", f"bodies are limited to {cap} bytes", "too_large")


def json_refusal(request: web.Request, sender: str) -> Refusal | None:
    """415 unless the request declares a JSON body (`application/json`, any parameters), as
    `sender` (WooCommerce, Brevo) does."""
    given = request.headers.get("Content-Type")
    if given is not None and request.content_type == "application/json":
        return None
    got = "none" if given is None else repr(given[:60])
    why = f"Content-Type must be application/json, as {sender} sends; got {got}"
    return Refusal(415, "unsupported_media_type", why, "unsupported_media_type")


def _header_refusal(secret: str | None, topic: str | None, signature: str | None) -> Refusal | None:
    """Why a delivery is refused on its headers alone (no ping: those have no X-WC header)."""
    if not secret:
        why = "no webhook_secret is configured for this site"
        return Refusal(401, "bad_signature", why, "bad_signature")
    if signature is None:
        why = "X-WC-Webhook-Signature is missing"
        return Refusal(401, "bad_signature", why, "bad_signature")
    if not _SIGNATURE.match(signature.strip()):
        why = "X-WC-Webhook-Signature is not a base64 HMAC-SHA256 (44 characters)"
        return Refusal(401, "bad_signature", why, "bad_signature")
    if not topic:
        return Refusal(400, "no_topic", "X-WC-Webhook-Topic is missing", "no_topic")
    return None


class HttpDoor(Generic[StoreT]):
    """What both webhook doors (WooCommerce's, Brevo's) hold: their store port, the App's
    sites, the runtime status, the shared body gate and the trusted proxies."""

    def __init__(
        self,
        store: StoreT,
        sites: Mapping[str, SiteConfig],
        status: RuntimeStatus,
        *,
        metrics: Metrics,
        clock: Callable[[], float],
        bodies: BodyGate,
        proxies: Sequence[Network] = (),
    ) -> None:
        self.store = store
        self.sites = sites
        self.status = status
        self.metrics = metrics
        self.clock = clock
        self.bodies = bodies
        self.proxies = proxies

    def reconfigure(self, *, proxies: Sequence[Network]) -> None:
        """A config reload (agent/reload.py). `sites` is the App's own mapping, updated in
        place: a site added is served, a removed one answered 404, new secrets checked."""
        self.proxies = proxies


class WebhookDoor(HttpDoor[Ingest]):
    """The request handler; `HttpServer` mounts it at `WEBHOOK_ROUTE`. The last delivery
    stored for a site goes in `status.site(sid).webhook`."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Check the site and the headers, read the body, verify, store, answer."""
        site_id = request.match_info["site"]
        site = self.sites.get(site_id)
        if site is None:
            message = f"no site {site_id[:60]!r} in the agent's config"
            return await refuse(request, Refusal(404, "unknown_site", message, "unknown_site"))
        sender = client_address(
            request.remote or "?", request.headers.getall("X-Forwarded-For", []), self.proxies
        )
        topic = request.headers.get("X-WC-Webhook-Topic")
        signature = request.headers.get("X-WC-Webhook-Signature")
        if topic is None and signature is None:
            return await self._ping(request, site_id, sender)
        secret = site.woo.webhook_secret
        refusal = _header_refusal(secret, topic, signature) or json_refusal(request, "WooCommerce")
        body = b""
        if refusal is None:
            read = await self.bodies.read(request, sender)
            refusal, body = (read, b"") if isinstance(read, Refusal) else (None, read)
        if refusal is None and not verify_signature(body, secret or "", signature):
            refusal = Refusal(401, "bad_signature", "signature mismatch", "bad_signature")
        if refusal is not None:
            return await self._refused(request, site_id, sender, refusal)
        assert topic is not None  # _header_refusal refuses a delivery without one
        return await self._store(request, site_id, topic, body)

    async def _ping(self, request: web.Request, site_id: str, sender: str) -> web.StreamResponse:
        # Unsigned by WooCommerce's design; it wants exactly 200 (NOTES §1.5). Only a body that
        # can be a ping is read: anything else without the X-WC headers is refused unread.
        declared = request.content_length
        read: bytes | Refusal = b""
        if declared is not None and declared <= PING_MAX:
            read = await self.bodies.read(request, sender, cap=PING_MAX)
        if isinstance(read, bytes) and is_ping(None, None, read):
            self.metrics.inc(REQUESTS, site=site_id, outcome="ping")
            log.info("site %s webhook ping (%s)", site_id, read.decode("ascii", "replace"))
            return web.json_response({"ok": True, "ping": True})
        if not isinstance(read, Refusal):
            why = "X-WC-Webhook-Signature is missing"
            read = Refusal(401, "bad_signature", why, "bad_signature")
        return await self._refused(request, site_id, sender, read)

    async def _refused(
        self, request: web.Request, site_id: str, sender: str, refusal: Refusal
    ) -> web.StreamResponse:
        self.metrics.inc(REQUESTS, site=site_id, outcome=refusal.outcome)
        if refusal.outcome != "busy":  # BodyGate logs those, at a bounded rate
            log.warning("site %s webhook refused from %s: %s", site_id, sender, refusal.message)
        return await refuse(request, refusal)

    async def _store(
        self, request: web.Request, site_id: str, topic: str, body: bytes
    ) -> web.Response:
        metrics = self.metrics
        outcome = delivery_event(
            topic,
            body,
            delivery_id=request.headers.get("X-WC-Webhook-Delivery-ID"),
            now=self.clock(),
        )
        if isinstance(outcome, Ignored):
            metrics.inc(REQUESTS, site=site_id, outcome="ignored")
            return _answer(200, ok=True, ignored=outcome.reason)
        try:
            if isinstance(outcome, tuple):
                rejection, raw = outcome
                await self.store.ingest(site_id, [], rejected=[(rejection, raw)])
            else:
                result = await self.store.ingest(site_id, [outcome])
        except Exception:
            # WooCommerce will not resend; the poller catches the object up.
            log.exception("site %s webhook %s could not be stored", site_id, topic)
            metrics.inc(REQUESTS, site=site_id, outcome="store_failed")
            return _answer(503, error="store_failed", message="could not store the delivery")
        if isinstance(outcome, tuple):
            count_ingest(metrics, "webhook", site_id, events=0, new=0, rejected=1)
            metrics.inc(REQUESTS, site=site_id, outcome="rejected")
            log.warning(
                "site %s webhook %s kept as a dead letter: %s", site_id, topic, rejection.message
            )
            # What the store cannot keep (agent/core/storable.py) is answered 422: WooCommerce
            # shows the failure in its webhook log and never resends it (docs/doors.md).
            status = 422 if rejection.code in UNSTORABLE else 200
            return _answer(
                status,
                ok=status == 200,
                rejected={"code": rejection.code, "message": rejection.message},
            )
        if result.rejected:  # the store could not write it (store_refused): kept as a dead letter
            refused = result.rejected[0]
            count_ingest(metrics, "webhook", site_id, events=0, new=0, rejected=1)
            metrics.inc(REQUESTS, site=site_id, outcome="rejected")
            log.warning(
                "site %s webhook %s kept as a dead letter: %s", site_id, topic, refused.message
            )
            return _answer(
                422, ok=False, rejected={"code": refused.code, "message": refused.message}
            )
        count_ingest(metrics, "webhook", site_id, events=1, new=result.new, rejected=0)
        metrics.inc(REQUESTS, site=site_id, outcome="stored")
        seen = self.status.site(site_id).webhook
        seen.last_delivery, seen.last_topic = self.clock(), topic
        return _answer(200, ok=True, stored=outcome.id, new=bool(result.new))


def _answer(status: int, **body: object) -> web.Response:
    return web.json_response(body, status=status)
