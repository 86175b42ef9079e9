"""The Brevo HTTP client: a thin aiohttp shell. It sends one request and reports what came back;
the forwarder decides what that means (agent/core/retry.py). Also the account's budgets (one
per endpoint family, agent/core/planner.py) and `ContactPages`, the backfill's metered reading
of the contacts Brevo already holds."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from agent import __version__
from agent.config import BREVO_FAMILIES, BrevoSection
from agent.core.planner import PLAN_LIMITS, Budget
from agent.core.retry import VerdictKind, backoff_delay, classify
from agent.errors import AgentError

__all__ = [
    "BrevoClient",
    "BrevoListError",
    "BrevoResponse",
    "ContactPages",
    "account_budgets",
    "carry_budgets",
    "limits_seen",
    "observe_limits",
]

log = logging.getLogger("agent.brevo")


@dataclass(frozen=True, slots=True)
class BrevoResponse:
    """Status, parsed body (None when empty) and lowercased headers; status None = no answer."""

    status: int | None
    body: Any
    headers: dict[str, str]
    error: str | None = None

    @property
    def code(self) -> str:
        """Brevo's error code, or a stand-in."""
        if isinstance(self.body, dict) and self.body.get("code"):
            return str(self.body["code"])
        return f"http_{self.status}" if self.status else "network_error"

    @property
    def message(self) -> str:
        """Brevo's error message, or what went wrong on the way."""
        if isinstance(self.body, dict) and self.body.get("message"):
            return str(self.body["message"])
        return self.error or (str(self.body)[:300] if self.body else "")


class BrevoClient:
    """One Brevo account. Owns its ClientSession: `async with BrevoClient(...) as client:`."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 30.0,
        dry_run: bool = False,
        user_agent: str = f"woobrevo-agent/{__version__}",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key or ""
        self.timeout = timeout
        self.dry_run = dry_run
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> BrevoClient:
        if not self.dry_run:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={
                    "api-key": self._api_key,
                    "accept": "application/json",
                    "user-agent": self.user_agent,
                },
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __repr__(self) -> str:  # never show the key
        return f"BrevoClient({self.base_url!r}, dry_run={self.dry_run})"

    async def request(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> BrevoResponse:
        """Send one request; network failures come back as status None, never as exceptions."""
        if self.dry_run:
            if log.isEnabledFor(logging.INFO):  # a big batch's JSON is not free
                text = "" if body is None else json.dumps(body, sort_keys=True, ensure_ascii=False)
                log.info("dry-run %s %s%s %s", method, self.base_url, _shown_path(path), text)
            return BrevoResponse(_DRY_STATUS.get(path, 204), _dry_body(path), {})
        assert self._session is not None, "use `async with BrevoClient(...)`"
        url = self.base_url + path
        try:
            async with self._session.request(method, url, json=body, params=params) as resp:
                raw = await resp.read()
                headers = {k.lower(): v for k, v in resp.headers.items()}
                parsed: Any = None
                if raw:
                    try:
                        parsed = json.loads(raw)
                    except ValueError:
                        parsed = raw.decode("utf-8", "replace")[:500]
                return BrevoResponse(resp.status, parsed, headers)
        except TimeoutError:
            return BrevoResponse(
                None,
                None,
                {},
                f"timed out after {self.timeout:.0f}s on {method} {_shown_path(path)}",
            )
        except aiohttp.ClientError as exc:
            shown = _shown_path(path)
            why = str(exc).replace(path, shown) if shown != path else str(exc)
            return BrevoResponse(None, None, {}, f"{type(exc).__name__} on {method} {shown}: {why}")


def _shown_path(path: str) -> str:
    """A path as messages and logs show it: a contact named by its address (an erasure,
    agent/core/privacy.py) becomes /contacts/{identifier}."""
    head, _, rest = path.partition("?")
    if head.startswith("/contacts/") and "@" in head:
        return "/contacts/{identifier}" + (f"?{rest}" if rest else "")
    return path


_DRY_STATUS = {
    "/contacts/import": 202,
    "/orders/status/batch": 202,
    "/couponCollections": 201,
    "/products/batch": 201,
    "/categories/batch": 201,
    "/ecommerce/activate": 200,
}


def _dry_body(path: str) -> Any:
    if path == "/couponCollections":
        return {"id": "00000000-0000-4000-8000-000000000000"}
    if path == "/contacts/import":
        return {"processId": 0}
    return None


# -- budgets ----------------------------------------------------------------------------------


def account_budgets(cfg: BrevoSection) -> dict[str, Budget]:
    """One budget per endpoint family: the plan's published limits (agent/core/planner.py)
    with the config's `rate_limits` overrides."""
    limits = dict(PLAN_LIMITS[cfg.plan])
    for fam, windows in (cfg.rate_limits or {}).items():
        limits[fam] = [(w.count, w.per) for w in windows]
    return {fam: Budget.of(limits[fam]) for fam in BREVO_FAMILIES}


def carry_budgets(old: Mapping[str, Budget], new: Mapping[str, Budget]) -> dict[str, Budget]:
    """`new` (a reloaded plan or `rate_limits`) with what `old` already spent: a 429's block,
    and each window's count where the new one meters the same period. A reload neither hands
    out a fresh allowance nor forgets that Brevo said to wait."""
    for fam, budget in new.items():
        before = old.get(fam)
        if before is None:
            continue
        budget.blocked_until = before.blocked_until
        spent = {w.period: w for w in before.windows}
        for window in budget.windows:
            same = spent.get(window.period)
            if same is not None:
                window.start, window.used = same.start, same.used
    return dict(new)


def observe_limits(budget: Budget, now: float, headers: Mapping[str, str]) -> None:
    """Correct a family's budget from an answer's `x-sib-ratelimit-*` headers (NOTES.md §4)."""
    budget.observe(now, *limits_seen(headers))


def limits_seen(headers: Mapping[str, str]) -> tuple[int | None, int | None, float | None]:
    """An answer's `x-sib-ratelimit-*` headers: (limit, remaining, reset), None where absent."""

    def num(name: str) -> float | None:
        try:
            return float(headers[name]) if name in headers else None
        except ValueError:
            return None

    limit, remaining, reset = (
        num("x-sib-ratelimit-limit"),
        num("x-sib-ratelimit-remaining"),
        num("x-sib-ratelimit-reset"),
    )
    return (
        int(limit) if limit is not None else None,
        int(remaining) if remaining is not None else None,
        reset,
    )


# -- the contacts Brevo holds (the backfill's pre-pass) -----------------------------------------


class BrevoListError(AgentError):
    """Brevo refused to list the account's contacts (a wrong key, or failures in a row)."""


CONTACTS_PAGE = 1000  # GET /contacts: `limit` is at most 1000 (Brevo's openapi)


class ContactPages:
    """Brevo's `GET /contacts`, one page at a time, within the account's `contacts` budget
    (the family the forwarder meters its contact calls in): waits when the budget is spent,
    follows the rate-limit headers, waits out a 429, retries 5xx and network failures with
    the one backoff policy, and raises `BrevoListError` on anything else."""

    def __init__(
        self,
        client: BrevoClient,
        budget: Budget,
        *,
        clock: Callable[[], float],
        max_backoff: float = 60.0,
        attempts: int = 8,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.budget = budget
        self.clock = clock
        self.max_backoff = max_backoff
        self.attempts = attempts
        self.sleep = sleep
        self.calls = 0
        self._rng = random.Random()

    async def page(
        self, offset: int, limit: int = CONTACTS_PAGE
    ) -> tuple[list[dict[str, Any]], int]:
        """The contacts from `offset` on (oldest first) and the account's contact count."""
        params = {"limit": str(limit), "offset": str(offset), "sort": "asc"}
        failures = 0
        while True:
            while (wait := self.budget.delay(self.clock())) > 0:
                await self.sleep(min(wait, 5.0))
            self.budget.take(self.clock())
            self.calls += 1
            resp = await self.client.request("GET", "/contacts", params=params)
            observe_limits(self.budget, self.clock(), resp.headers)
            verdict = classify(resp.status, resp.headers)
            if verdict.kind is VerdictKind.OK:
                return _contacts_of(resp)
            if verdict.kind is VerdictKind.RATE_LIMITED:
                self.budget.block(self.clock(), verdict.wait)
                continue
            if verdict.kind is VerdictKind.RETRY and failures + 1 < self.attempts:
                delay = backoff_delay(failures, max_delay=self.max_backoff, rng=self._rng)
                failures += 1
                log.warning(
                    "brevo %s on GET /contacts (%s); retry in %.1fs",
                    resp.status or "error",
                    resp.message,
                    delay,
                )
                await self.sleep(delay)
                continue
            raise BrevoListError(
                f"brevo answered {resp.status or 'no answer'} {resp.code} to GET /contacts"
                f" ({resp.message}); check brevo.api_key and the account"
            )


def _contacts_of(resp: BrevoResponse) -> tuple[list[dict[str, Any]], int]:
    body = resp.body if isinstance(resp.body, dict) else {}
    contacts = [c for c in body.get("contacts") or [] if isinstance(c, dict)]
    count = body.get("count")
    return contacts, count if isinstance(count, int) and not isinstance(count, bool) else 0
