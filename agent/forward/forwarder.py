"""The forwarder: drains Brevo jobs per account within Brevo's limits, never losing one.

One `AccountWorker` per Brevo account (agencies run one account per store), one loop per job
kind inside it, one Budget per endpoint family shared by the loops (agent/core/planner.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable

from agent.config import BREVO_FAMILIES, BrevoSection, SiteConfig
from agent.core.jobs import Job, Kind
from agent.core.planner import (
    BATCH_ONLY,
    Plan,
    Request,
    batch_request,
    choose,
    single_request,
)
from agent.core.privacy import ERASE_ROUTE, erase_done, erase_job
from agent.core.retry import Reaction, ReactionKind, VerdictKind, backoff_delay, classify, react
from agent.forward.brevo import (
    BrevoClient,
    BrevoResponse,
    account_budgets,
    carry_budgets,
    limits_seen,
    observe_limits,
)
from agent.logs import bind
from agent.metrics import Metrics
from agent.store.ports import JobQueue, SharedBudgets

__all__ = ["AccountWorker", "Forwarder"]

log = logging.getLogger("agent.forwarder")

MAX_IN_FLIGHT = 8
# On close, how long requests already sent get to be answered and recorded: a request
# cancelled after Brevo acted on it is sent again at the next start (a duplicate write).
# Below the worker's STOP_GRACE (agent/process/worker.py), which is below systemd's
# TimeoutStopSec (packaging/woobrevo-agent.service).
DRAIN_GRACE = 20.0
# Seconds between tries to record a Brevo answer the store refused (a full disk), doubling.
RECORD_RETRY_FIRST, RECORD_RETRY_MAX = 0.5, 15.0
# Kinds in the order a backlog should reach Brevo: catalogue first, then people, then orders.
KIND_ORDER = (
    Kind.CATEGORY,
    Kind.PRODUCT,
    Kind.CONTACT,
    Kind.DOI,
    Kind.COUPON,
    Kind.ORDER,
    Kind.EVENT,
    Kind.ERASE,
)


class Forwarder:
    """Starts one worker per Brevo account named by the sites; `wake()` after new jobs.
    `backlogged()` says whether stored events still wait for the processor (more jobs are on
    their way: partial batches may wait for them)."""

    def __init__(
        self,
        store: JobQueue,
        sites: Iterable[SiteConfig],
        *,
        metrics: Metrics,
        clock: Callable[[], float],
        backlogged: Callable[[], bool],
    ) -> None:
        self.workers: dict[str, AccountWorker] = {}
        self.progress = asyncio.Event()
        self._store, self._metrics, self._clock, self._backlogged = (
            store, metrics, clock, backlogged
        )  # fmt: skip
        for account, cfg in _accounts(sites).items():
            self.workers[account] = self._worker(cfg)

    def _worker(self, cfg: BrevoSection) -> AccountWorker:
        return AccountWorker(
            cfg,
            self._store,
            metrics=self._metrics,
            clock=self._clock,
            backlogged=self._backlogged,
            progress=self.progress,
        )

    async def reconfigure(self, sites: Iterable[SiteConfig]) -> None:
        """A config reload (agent/reload.py): start the accounts now named, stop those no
        longer named (their requests in flight are answered first, their jobs stay queued),
        and hand the others their new settings (plan, limits, timings). A new endpoint or
        timeout needs a new client: that account's worker is stopped and started again."""
        wanted = _accounts(sites)
        for account in [a for a in self.workers if a not in wanted]:
            log.info("brevo account %s: no site sends to it any more; stopping", account)
            await self.workers.pop(account).close()
        for account, cfg in wanted.items():
            worker = self.workers.get(account)
            if worker is not None and not worker.reconfigure(cfg):
                log.info("brevo account %s: new endpoint or timeout; restarting it", account)
                await worker.close()
                worker = None
            if worker is None:
                worker = self.workers[account] = self._worker(cfg)
                await worker.start()

    async def __aenter__(self) -> Forwarder:
        for w in self.workers.values():
            await w.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every worker; in-flight requests are cancelled and their jobs stay queued."""
        await asyncio.gather(*(w.close() for w in self.workers.values()))

    def wake(self) -> None:
        """New jobs may be waiting."""
        for w in self.workers.values():
            w.wake()

    async def wait_progress(self, seconds: float) -> None:
        """Wait until a request finished (or `seconds` passed)."""
        self.progress.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # not wait_for: see _sleep
                await self.progress.wait()

    def ready(self) -> tuple[bool, str]:
        """For /readyz: every account usable (dry-run counts as usable)."""
        for w in self.workers.values():
            if w.account_error:
                return False, w.account_error
        return True, "ok"


class AccountWorker:
    """Everything for one Brevo account: its client, its budgets and its loops. `progress` is
    set each time a request's answer is recorded (the forwarder's `wait_progress`)."""

    def __init__(
        self,
        cfg: BrevoSection,
        store: JobQueue,
        *,
        metrics: Metrics,
        clock: Callable[[], float],
        backlogged: Callable[[], bool],
        progress: asyncio.Event,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.backlogged = backlogged
        self.progress = progress
        self.cfg = cfg
        self.account = cfg.account
        self.budgets = account_budgets(cfg)
        # Budgets the replicas of a PostgreSQL store share (agent/store/postgres/budgets.py);
        # None: this process's own (SQLite, one agent).
        self.shared: SharedBudgets | None = store if isinstance(store, SharedBudgets) else None
        self.client = BrevoClient(
            cfg.base_url, cfg.api_key, timeout=cfg.timeout, dry_run=cfg.is_dry_run
        )
        self.slots = {fam: asyncio.Semaphore(MAX_IN_FLIGHT) for fam in BREVO_FAMILIES}
        self.wakeup = asyncio.Event()
        self.account_error: str | None = None
        self.paused_until = 0.0
        # Consecutive 5xx/network failures and requests in flight, per family: while a family
        # is failing, one probe at a time goes out, spaced by the backoff (an outage costs a
        # handful of requests, not one per queued job).
        self.failures = dict.fromkeys(BREVO_FAMILIES, 0)
        self.inflight = dict.fromkeys(BREVO_FAMILIES, 0)
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._rng = random.Random()
        self._setup_lock = asyncio.Lock()
        # when a failed ecommerce activation may be tried again, and how many failed in a row
        self._activation_due = 0.0
        self._activation_failures = 0

    def reconfigure(self, cfg: BrevoSection) -> bool:
        """Take a reloaded config for this account: plan, rate limits (what the windows have
        spent carries over), live window, backoff, coupon collection. False when it changes
        what the client was opened with (endpoint, key, timeout): the caller starts a new
        worker instead."""
        old = self.cfg
        client = ("base_url", "api_key", "timeout", "is_dry_run")
        if any(getattr(old, name) != getattr(cfg, name) for name in client):
            return False
        if (old.plan, old.rate_limits) != (cfg.plan, cfg.rate_limits):
            self.budgets = carry_budgets(self.budgets, account_budgets(cfg))
            log.info("brevo account %s: rate budgets now %s plan", self.account, cfg.plan)
        self.cfg = cfg
        self.wake()  # a loop holding for the budget looks again
        return True

    async def start(self) -> None:
        """Open the client and start one loop per kind."""
        await self.client.__aenter__()
        self._tasks = [
            asyncio.create_task(self._loop(kind), name=f"forward-{kind}") for kind in KIND_ORDER
        ]

    async def close(self) -> None:
        """Stop claiming, let requests in flight be answered and recorded (up to DRAIN_GRACE),
        cancel what is left; claimed jobs go back to the queue."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._inflight:
            n = len(self._inflight)
            log.info("brevo account %s: waiting for %d request(s) in flight", self.account, n)
            await asyncio.wait(set(self._inflight), timeout=DRAIN_GRACE)
        for t in list(self._inflight):
            t.cancel()
        for t in list(self._inflight):
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self._give_back_claimed()
        await self.client.__aexit__(None, None, None)

    async def _give_back_claimed(self) -> None:
        # Jobs claimed by cancelled requests return to the queue now rather than at restart.
        await self.store.unclaim(self.account)

    def wake(self) -> None:
        """Wake every loop."""
        self.wakeup.set()

    def now(self) -> float:
        """The agent's clock."""
        return self.clock()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early when new jobs arrive."""
        self.wakeup.clear()
        # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancellation that
        # lands as the event is set (CPython gh-86296), and the loop then ran on, "cancelling"
        # forever, so close() never returned (the shutdown hang seen under load in tests).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.001, seconds)):
                await self.wakeup.wait()

    async def _loop(self, kind: Kind) -> None:
        """Claim what the plan allows, send it, and go round: one request per turn at most."""
        store = self.store
        while True:
            try:
                now = self.now()
                if now < self.paused_until:
                    await asyncio.sleep(self.paused_until - now)
                    continue
                depth = await store.pending_count(self.account, kind, now)
                self.metrics.set(
                    "woobrevo_queue_depth", depth, account=self.account, kind=kind.value
                )
                if depth == 0:
                    due = await store.next_due(self.account, kind)
                    await self._sleep(5.0 if due is None else max(0.05, min(5.0, due - now)))
                    continue
                plan = choose(kind, depth, self.budgets, now, self.cfg.live_window)
                hold = self._hold(plan, depth, now)
                if hold is not None:
                    seconds, new_jobs_end_it = hold
                    await (self._sleep(seconds) if new_jobs_end_it else asyncio.sleep(seconds))
                    continue
                slot = self.slots[plan.family]
                await slot.acquire()
                claimed_at = time.monotonic()  # the fence's (store.holds_claims)
                try:
                    jobs = await store.claim(
                        self.account,
                        kind,
                        # A coupon job is a whole collection's codes: one request each.
                        1 if kind is Kind.COUPON else plan.size,
                        self.now(),
                        single=None if not plan.batch else False,
                        by_lists=plan.batch and kind is Kind.CONTACT,
                    )
                    if not jobs and plan.batch:
                        # Only a job that must go alone: a batch-able one left out
                        # because its key was in flight goes in the next batch instead.
                        jobs = await store.claim(self.account, kind, 1, self.now(), single=True)
                    if not jobs:
                        slot.release()
                        await self._sleep(0.05)
                        continue
                except BaseException:
                    slot.release()
                    raise
                request = await self._build_claimed(jobs, plan.batch, slot)
                if request is None:
                    slot.release()
                    continue
                if request.extra_jobs:
                    await store.retry(
                        request.extra_jobs, 0.0, "not carried by this batch", count_attempt=False
                    )
                self._launch(request, slot, claimed_at)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "forwarder loop for %s on %s failed; restarting in 1s", kind, self.account
                )
                await asyncio.sleep(1.0)

    def _hold(self, plan: Plan, depth: int, now: float) -> tuple[float, bool] | None:
        """Why `plan` must not go out now, as (seconds to wait, whether new jobs end the wait
        early), or None: it may go."""
        if not self.store.holds_claims(time.monotonic()):
            return 0.2, False  # this replica's heartbeat is late: claim nothing meanwhile
        if plan.batch and depth < plan.size and self.backlogged():
            # More of this backlog is still being processed: a full batch later costs one
            # request where partial ones now would cost many (the batch families' budgets are
            # the scarce ones: 100 requests an hour on the general plan).
            return 0.2, True
        if not self.client.dry_run:
            wait = self.budgets[plan.family].delay(now)
            if wait > 0:
                self.metrics.inc("woobrevo_rate_limit_waits_total", family=plan.family)
                self.metrics.inc(
                    "woobrevo_rate_limit_wait_seconds_total", min(wait, 5.0), family=plan.family
                )
                return min(wait, 5.0), False
        if self.failures[plan.family] and self.inflight[plan.family]:
            return 0.2, True  # a failing family: one probe at a time
        return None

    def _launch(self, request: Request, slot: asyncio.Semaphore, claimed_at: float) -> None:
        """Spend the budget and send `request` (its jobs claimed at monotonic `claimed_at`) in
        a task of its own (which releases `slot`)."""
        if not self.client.dry_run:
            self.budgets[request.family].take(self.now())
        self.inflight[request.family] += 1
        task = asyncio.create_task(self._send(request, slot, claimed_at))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _build(self, jobs: list[Job], batch: bool) -> Request | None:
        kind = jobs[0].kind
        # Contact and double opt-in jobs come claimed without the lists their emails left
        # since they were queued (agent/store/consent.py `strip_suppressed`).
        if kind is Kind.DOI and not jobs[0].body["includeListIds"]:
            await self.store.complete(jobs)  # every list it named was left since: nothing to ask
            return None
        collection_id = None
        if kind is Kind.COUPON:
            collection_id = await self._coupon_collection(jobs[0].body["collection"])
            if collection_id is None:
                await self.store.retry(
                    jobs, self.now() + 60, "coupon collection unavailable", count_attempt=False
                )
                return None
        if kind in (Kind.PRODUCT, Kind.ORDER, Kind.CATEGORY) and not (
            await self._ecommerce_activated()
        ):
            # Brevo refuses ecommerce calls before the activation: they wait for it.
            await self.store.retry(
                jobs, self._activation_due, "waiting for brevo ecommerce activation",
                count_attempt=False,
            )  # fmt: skip
            return None
        if batch and (len(jobs) > 1 or kind in BATCH_ONLY):
            return batch_request(jobs, collection_id=collection_id)
        req = single_request(jobs[0], collection_id=collection_id)
        if len(jobs) > 1:
            return Request(req.method, req.path, req.body, req.jobs, req.family, tuple(jobs[1:]))
        return req

    async def _call(self, method: str, path: str, body: object, family: str) -> BrevoResponse:
        """A setup call (activation, collections) under the family's budget."""
        budget = self.budgets[family]
        if not self.client.dry_run:
            while (wait := budget.delay(self.now())) > 0:  # noqa: ASYNC110 - a clock, not an event
                await asyncio.sleep(min(wait, 5.0))
            budget.take(self.now())
            await self._take_shared(family)
        resp = await self.client.request(method, path, body)
        self._observe(family, resp)
        await self._observe_shared(family, resp)
        self.metrics.inc(
            "woobrevo_brevo_calls_total", family=family, endpoint=path, status=str(resp.status)
        )
        return resp

    async def _ecommerce_activated(self) -> bool:
        """Whether Brevo's ecommerce endpoints are activated for the account (NOTES §2): the
        first ecommerce job activates them once. A failed activation is tried again after a
        backoff, not by every ecommerce job (an outage cost 44 activations in 5 minutes)."""
        key = f"ecommerce_activated:{self.account}"
        async with self._setup_lock:
            if await self.store.get_meta(key):
                return True
            now = self.now()
            if now < self._activation_due:
                return False
            resp = await self._call("POST", "/ecommerce/activate", None, "other")
            # 2xx, or a 400 for an account that is already active; a refused key is not that.
            if resp.status is not None and (resp.status < 300 or resp.status in (400, 409)):
                await self.store.set_meta(key, "1")
                if resp.status >= 300:
                    log.warning(
                        "brevo ecommerce activation answered %s %s: %s",
                        resp.status,
                        resp.code,
                        resp.message,
                    )
                return True
            verdict = classify(resp.status, resp.headers)
            if verdict.kind is VerdictKind.RATE_LIMITED:
                delay = verdict.wait
            else:
                delay = backoff_delay(
                    self._activation_failures, max_delay=self.cfg.max_backoff, rng=self._rng
                )
                self._activation_failures += 1
            self._activation_due = now + delay
            log.warning(
                "brevo ecommerce activation failed: %s %s; products, orders and categories"
                " wait, next try in %.1fs",
                resp.status or "error",
                resp.message,
                delay,
            )
            return False

    async def _coupon_collection(self, name: str) -> str | None:
        key = f"coupon_collection:{self.account}:{name}"
        known = await self.store.get_meta(key)
        if known:
            return known
        resp = await self._call(
            "POST", "/couponCollections", {"name": name, "defaultCoupon": name}, "other"
        )
        if (
            resp.status is not None
            and 200 <= resp.status < 300
            and isinstance(resp.body, dict)
            and resp.body.get("id")
        ):
            cid = str(resp.body["id"])
            await self.store.set_meta(key, cid)
            return cid
        # Already there under that name: find it (GET is in the same bucket).
        found = await self._call("GET", "/couponCollections?limit=100", None, "other")
        if isinstance(found.body, dict):
            for c in found.body.get("collections", []) or []:
                if isinstance(c, dict) and c.get("name") == name and c.get("id"):
                    await self.store.set_meta(key, str(c["id"]))
                    return str(c["id"])
        log.warning(
            "brevo coupon collection %r unavailable: %s %s", name, resp.status, resp.message
        )
        return None

    def _observe(self, family: str, resp: BrevoResponse) -> None:
        observe_limits(self.budgets[family], self.now(), resp.headers)

    async def _take_shared(self, family: str) -> None:
        """With budgets shared by replicas: wait until the family's shared windows have room,
        and take one request of them (one transaction, agent/store/postgres/budgets.py). The
        local take before it (`_launch`) only paces this process's loops between takes."""
        shared = self.shared
        if shared is None or self.client.dry_run:
            return
        budget = self.budgets[family]
        while True:
            try:
                wait = await shared.take_budget(self.account, family, budget, self.now())
            except Exception as exc:  # the database failed: the request waits, not lost
                log.warning("could not take %s's shared rate budget (%s); trying again",
                            family, exc)  # fmt: skip
                wait = 1.0
            if wait <= 0:
                return
            self.metrics.inc("woobrevo_rate_limit_waits_total", family=family)
            self.metrics.inc(
                "woobrevo_rate_limit_wait_seconds_total", min(wait, 5.0), family=family
            )
            await asyncio.sleep(min(wait, 5.0))

    async def _observe_shared(self, family: str, resp: BrevoResponse) -> None:
        """An answer's rate-limit headers into the shared windows (never loosening them)."""
        if self.shared is None or self.client.dry_run:
            return
        try:
            await self.shared.observe_budget(
                self.account, family, self.budgets[family], self.now(), limits_seen(resp.headers)
            )
        except Exception as exc:  # only a correction: the next take counts anyway
            log.warning("could not record %s's rate-limit headers (%s)", family, exc)

    async def _block_shared(self, family: str, seconds: float) -> None:
        """A 429 blocks the family on every replica."""
        if self.shared is None:
            return
        try:
            await self.shared.block_budget(
                self.account, family, self.budgets[family], self.now(), seconds
            )
        except Exception as exc:  # the next take meets Brevo's 429 again, and blocks then
            log.warning("could not share %s's 429 block (%s)", family, exc)

    async def _send(self, request: Request, slot: asyncio.Semaphore, claimed_at: float) -> None:
        # A task of its own: every line about this request names its job(s) (agent/logs.py).
        first, n = request.jobs[0], len(request.jobs)
        bind(site=first.site, job_id=first.id, jobs=n if n > 1 else None, account=self.account)
        try:
            await self._take_shared(request.family)
            # The fence: claims this replica's heartbeat no longer vouches for may be another
            # replica's by now (agent/store/postgres/cluster.py); sent, they could go twice.
            fenced = not self.store.holds_claims(claimed_at)
            resp = None if fenced else await self.client.request(
                request.method, request.path, request.body
            )  # fmt: skip
        except BaseException:
            slot.release()
            self.inflight[request.family] -= 1
            raise
        # The slot is held until the answer is recorded: a crash can then leave at most
        # MAX_IN_FLIGHT answered-but-unrecorded requests per family to send again.
        try:
            if resp is None:
                await self._fence(request)
                return
            self._observe(request.family, resp)
            await self._observe_shared(request.family, resp)
            self.metrics.inc(
                "woobrevo_brevo_calls_total",
                family=request.family,
                endpoint=_shown(request),
                status=str(resp.status),
            )
            await self._record(request, resp)
        finally:
            slot.release()
            self.inflight[request.family] -= 1
            self.progress.set()
            self.wake()

    async def _fence(self, request: Request) -> None:
        """A request not sent: its jobs go back to the queue (those another replica took over
        meanwhile are that replica's: the store leaves them alone)."""
        self.metrics.inc("woobrevo_requests_fenced_total", family=request.family)
        log.warning(
            "not sending %s %s (%d job(s)): claimed before this replica's heartbeat lapsed,"
            " another replica may hold them now; handed back",
            request.method,
            _shown(request),
            len(request.jobs),
        )
        await self._hand_back(list(request.jobs), "claimed before the heartbeat lapsed")

    async def _build_claimed(
        self, jobs: list[Job], batch: bool, slot: asyncio.Semaphore
    ) -> Request | None:
        """`_build`; when it fails (a coupon collection's id the store could not keep on a
        full disk), the claimed jobs go back to the queue instead of staying claimed until a
        restart, and the slot is freed."""
        try:
            return await self._build(jobs, batch)
        except Exception:
            slot.release()
            await self._hand_back(jobs, "the request could not be built")
            raise
        except BaseException:
            slot.release()
            raise

    async def _hand_back(self, jobs: list[Job], error: str) -> None:
        """Put claimed jobs back in the queue, however long the store refuses the write."""
        wait = RECORD_RETRY_FIRST
        while True:
            try:
                await self.store.retry(jobs, self.now() + 1.0, error, count_attempt=False)
                return
            except Exception as exc:  # the store refused the write (a full disk)
                log.warning("could not hand %d jobs back (%s); trying again in %.0fs",
                            len(jobs), exc, wait)  # fmt: skip
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECORD_RETRY_MAX)

    async def _record(self, request: Request, resp: BrevoResponse) -> None:
        """Record Brevo's answer in the store, however long the store refuses the write (a
        full disk): the answer is known, so its jobs must not stay claimed (nothing would hand
        them back before a restart, and no later job of their keys would go) nor be sent again.
        The request's slot stays taken meanwhile, so a failing store also slows the sending."""
        jobs = list(request.jobs)
        wait = RECORD_RETRY_FIRST
        while True:
            try:
                if jobs[0].kind is Kind.ERASE and erase_done(resp.status):
                    self.failures[request.family] = 0
                    await self._erased(jobs[0], None)
                    return
                reaction = react(
                    classify(resp.status, resp.headers),
                    resp.status,
                    resp.code,
                    resp.message,
                    jobs=len(jobs),
                    attempts=max(j.attempts for j in jobs),
                    failures=self.failures[request.family],
                    max_backoff=self.cfg.max_backoff,
                    rng=self._rng,
                )
                await self._apply(reaction, request, resp, jobs, self.now())
                return
            except Exception as exc:  # the store refused the write (a full disk, a lost database)
                log.warning(
                    "could not record Brevo's answer %s to %s %s (%s); trying again in %.0fs",
                    resp.status or "error",
                    request.method,
                    _shown(request),
                    exc,
                    wait,
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECORD_RETRY_MAX)

    async def _erased(self, job: Job, refused: tuple[str, str] | None) -> None:
        """An erase job's answer: the store purges the email (agent/store/privacy.py); the log
        and the metrics name the erasure and the site, never the address."""
        number, site = erase_job(job)
        await self.store.erasure_finished(job, refused)
        outcome = "done" if refused is None else "refused"
        self.metrics.inc("woobrevo_erasures_total", site=site, outcome=outcome)
        if refused is None:
            log.info("erasure %d for site %s done", number, site)
        else:
            log.warning(
                "erasure %d for site %s done in the agent's store, but Brevo refused it (%s):"
                " the contact may still be in Brevo; see `woobrevo-agent deadletters list`",
                number,
                site,
                refused[0],
            )

    async def _apply(
        self, reaction: Reaction, request: Request, resp: BrevoResponse, jobs: list[Job], now: float
    ) -> None:
        """Carry out what `react` decided for an answered request (core/retry.py)."""
        store, family = self.store, request.family
        self.failures[family] = reaction.failures
        if reaction.block_family:
            self.budgets[family].block(now, reaction.block_family)
            await self._block_shared(family, reaction.block_family)
        kind = reaction.kind
        if kind is ReactionKind.COMPLETE:
            self.account_error = None
            await store.complete(jobs)
        elif kind is ReactionKind.RETRY:
            if reaction.count_attempt:  # a failure; a 429 (Brevo's own pace) counts none
                log.warning(
                    "brevo %s on %s %s (%s); retry in %.1fs",
                    resp.status or "error",
                    request.method,
                    _shown(request),
                    resp.message,
                    reaction.wait,
                )
            else:
                log.info("brevo 429 on %s; retry in %.1fs", family, reaction.wait)
                self.metrics.inc("woobrevo_rate_limit_waits_total", family=family)
            await store.retry(
                jobs, now + reaction.wait, reaction.reason, count_attempt=reaction.count_attempt
            )
        elif kind is ReactionKind.PAUSE_ACCOUNT:
            self.account_error = reaction.account_error
            log.error(
                "%s; check brevo.api_key and the plan; pausing this account for %gs",
                self.account_error,
                reaction.wait,
            )
            self.paused_until = now + reaction.wait
            await store.retry(jobs, now + reaction.wait, reaction.reason, count_attempt=False)
        elif kind is ReactionKind.SPLIT:
            log.warning(
                "brevo %s on batch %s (%s); resending %d items one by one",
                resp.status,
                request.path,
                resp.message,
                len(jobs),
            )
            await store.retry(jobs, now, reaction.reason, single_only=True, count_attempt=False)
        elif jobs[0].kind is Kind.ERASE:
            await self._erased(jobs[0], (resp.code, resp.message))
        else:
            job = jobs[0]
            # The job id, not its key: a contact's key holds the address (docs/privacy.md).
            log.warning(
                "brevo %s %s on %s job %d: dead letter (woobrevo-agent deadletters list)",
                resp.status,
                resp.code,
                job.kind,
                job.id,
            )
            self.metrics.inc("woobrevo_dead_letters_total", kind=job.kind.value)
            await store.dead_letter(job, resp.code, resp.message)


def _accounts(sites: Iterable[SiteConfig]) -> dict[str, BrevoSection]:
    """The Brevo accounts the sites send to, each with the first such site's settings. A site
    switched off (`enabled: false`) sends nothing: its jobs wait in the store."""
    out: dict[str, BrevoSection] = {}
    for site in sites:
        if site.woo.enabled and site.brevo.account not in out:
            out[site.brevo.account] = site.brevo
    return out


def _shown(request: Request) -> str:
    """The path a log line or a metric shows: an erase call's holds the address."""
    if request.jobs and request.jobs[0].kind is Kind.ERASE:
        return ERASE_ROUTE
    return request.path
