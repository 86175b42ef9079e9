"""Helpers shared by the door tests (stream, webhooks, http, tokens): configs, a running App on
127.0.0.1 port 0, a stream client, and the reference fixtures."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

from agent.app import App
from agent.config import Config
from tests import kit
from tests.conftest import DOCS, REAL, ROOT
from tests.kit import UNIT, site

DOCS_EXAMPLES = DOCS  # tests/fixtures/woocommerce/docs-examples (tests/fixtures/README.md)
REAL_WEBHOOKS = REAL / "webhooks"
__all__ = ["ROOT", "UNIT"]  # re-exported for the door tests

TOKENS = {"a": "token-for-site-a-" + "x" * 30, "b": "token-for-site-b-" + "y" * 30}
SECRETS = {"a": "example-secret-CHANGE-ME", "b": "realwc-webhook-secret"}


MAPPING = {
    "email": "email",
    "first_name": "FIRSTNAME",
    "meta_data.loyalty_points": "LOYALTY_POINTS",
}


def config_data(
    tmp_path: Path,
    *,
    tls: bool = False,
    brevo: dict[str, Any] | None = None,
    woocommerce: dict[str, Any] | None = None,
    **stream: Any,
) -> dict[str, Any]:
    """The door tests' config (tests/kit.py): sites a and b with their tokens, webhook secrets
    and id prefixes, a short mapping, Brevo dry-run; `stream` is agent.stream, `tls`, `brevo`
    and `woocommerce` go to `kit.config_data`."""
    return kit.config_data(
        tmp_path,
        sites=[
            site(sid, TOKENS[sid], webhook_secret=SECRETS[sid], brevo_id_prefix=f"{sid}-")
            for sid in ("a", "b")
        ],
        stream=stream,
        tls=tls,
        agent={"public_url": "https://agent.example"},
        brevo=brevo,
        woocommerce={"customer_mapping": MAPPING, **(woocommerce or {})},
    )


def make_config(tmp_path: Path, **options: Any) -> Config:
    """`config_data` as a Config object."""
    return Config.model_validate(config_data(tmp_path, **options))


@contextlib.asynccontextmanager
async def running(cfg: Config) -> AsyncIterator[App]:
    """The real App, doors included, on loopback."""
    async with App(cfg) as app:
        yield app


def url(app: App, scheme: str = "ws") -> str:
    """The stream door's URL."""
    return f"{scheme}://127.0.0.1:{app.stream.port}/v1/stream"


def client(app: App, token: str | None = TOKENS["a"], **kwargs: Any) -> Any:
    """`async with client(app) as ws:` — a real websockets client with the bearer header;
    `wss://` when given `ssl=` (a context that trusts the agent's certificate)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    headers.update(kwargs.pop("additional_headers", {}))
    kwargs.setdefault("compression", None)
    kwargs.setdefault("max_size", None)
    kwargs.setdefault("open_timeout", 5 * UNIT)
    scheme = "wss" if kwargs.get("ssl") is not None else "ws"
    return connect(url(app, scheme), additional_headers=headers, **kwargs)


HELLO = {
    "type": "hello",
    "protocol": 1,
    "site_url": "https://shop.example/",
    "blog_id": 1,
    "plugin_version": "0.1.0",
    "wp_version": "6.8.8",
    "wc_version": "10.0.2",
}


async def hello(ws: ClientConnection) -> dict[str, Any]:
    """Send hello, return the welcome."""
    await ws.send(json.dumps(HELLO))
    welcome: dict[str, Any] = json.loads(await ws.recv())
    return welcome


def order(order_id: int, modified: str = "2026-11-27T06:00:00") -> dict[str, Any]:
    """The reference REST order (~3 KB) with another id and date_modified_gmt."""
    body: dict[str, Any] = copy.deepcopy(_ORDER)
    body["id"] = order_id
    body["date_modified_gmt"] = modified
    return body


_ORDER: dict[str, Any] = json.loads((DOCS_EXAMPLES / "order.json").read_text())


def event(eid: str, order_id: int, **extra: Any) -> dict[str, Any]:
    """One stream event carrying a REST order."""
    return {
        "id": eid,
        "topic": "order.updated",
        "resource": "order",
        "resource_id": order_id,
        "occurred_at": "2026-11-27T06:29:58Z",
        "payload": order(order_id),
        **extra,
    }


def batch(name: str, events: list[dict[str, Any]]) -> str:
    """An `events` message."""
    return json.dumps({"type": "events", "batch": name, "events": events})


def inbox_ids(cfg: Config, site: str | None = None) -> list[tuple[str, str]]:
    """(site, event_id) of every stored event, read through a separate connection."""
    path = cfg.agent.store_path
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT site, event_id FROM inbox ORDER BY seq").fetchall()
    finally:
        db.close()
    return [(s, e) for s, e in rows if site is None or s == site]


def dead_refs(cfg: Config) -> list[tuple[str, str, str]]:
    """(site, ref, code) of every dead letter of an event."""
    db = sqlite3.connect(cfg.agent.store_path)
    try:
        rows = db.execute(
            "SELECT site, ref, code FROM dead_letters WHERE origin='event' ORDER BY id"
        ).fetchall()
    finally:
        db.close()
    return [(s, r, c) for s, r, c in rows]


class AgentProcess:
    """`woobrevo-agent run` in a subprocess (a real agent, with its worker process); its
    ports are read from its log."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config, self.env = config, env
        self.proc: asyncio.subprocess.Process | None = None
        self.stream_port = self.http_port = 0
        self.log: list[str] = []
        self._drain: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AgentProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "run", "--config", str(self.config),
            "--log-level", "info", cwd=ROOT, env=self.env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stderr is not None
        async with asyncio.timeout(30 * UNIT):
            while not (self.stream_port and self.http_port):
                line = (await self.proc.stderr.readline()).decode()
                assert line, "the agent exited:\n" + "".join(self.log)
                self.log.append(line)
                if m := re.search(r"stream listening on 127\.0\.0\.1:(\d+)/v1/stream", line):
                    self.stream_port = int(m.group(1))
                if m := re.search(r"http listening on 127\.0\.0\.1:(\d+)", line):
                    self.http_port = int(m.group(1))
        self._drain = asyncio.create_task(self._keep_reading())
        return self

    async def _keep_reading(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.log.append(line.decode())

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        await self.proc.wait()
        if self._drain is not None:
            await self._drain

    def connect(self) -> Any:
        return connect(
            f"ws://127.0.0.1:{self.stream_port}/v1/stream",
            additional_headers={"Authorization": f"Bearer {TOKENS['a']}"},
            compression=None, max_size=None, open_timeout=5 * UNIT,
        )  # fmt: skip

    async def status(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{self.http_port}/status") as r,
        ):
            doc: dict[str, Any] = await r.json()
            return doc
