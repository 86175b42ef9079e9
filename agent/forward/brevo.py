"""The Brevo HTTP client: a thin aiohttp shell. It sends one request and reports what came back;
the forwarder decides what that means (agent/core/retry.py)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

__all__ = ["BrevoClient", "BrevoResponse"]

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
        user_agent: str = "woobrevo-agent",
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
                log.info("dry-run %s %s%s %s", method, self.base_url, path, text)
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
                None, None, {}, f"timed out after {self.timeout:.0f}s on {method} {path}"
            )
        except aiohttp.ClientError as exc:
            return BrevoResponse(None, None, {}, f"{type(exc).__name__} on {method} {path}: {exc}")


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
