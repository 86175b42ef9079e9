"""No secret leaves the agent (issue 15, item 3): not in a log line, a status page, a metric or
an error message, whatever the door, the failure or the log format.

The real `woobrevo-agent run` (and its worker process) runs at `--log-level debug`, once with
text lines and once with JSON lines, with distinctive secrets in its config: the plugin's site
token, a Brevo API key, WooCommerce consumer keys and secrets, a WooCommerce webhook secret and
a Brevo webhook secret. Every door is driven with the right and a wrong credential: the
plugin's stream, a native WooCommerce webhook, the Brevo webhook door (bearer header and
`?token=`), polling of three stores (OAuth 1.0a over http with good keys, query-string and
Basic keys over https with a wrong secret: 401), a Brevo account whose key Brevo refuses (401)
and a write Brevo refuses (400). Then `check` (a good config and bad ones whose invalid values
are secrets), `doctor` and `backfill`. Everything they print, and /status, /metrics, /readyz
and the doors' answers, is searched for each secret as written, URL-encoded, JSON-escaped, in
base64, and as Basic auth sends a key and secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import pytest
import yaml
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agent.core.webhooks import sign
from agent.tokens import token_hash
from tests.agent.doorkit import DOCS_EXAMPLES, HELLO, batch, event
from tests.conftest import ROOT
from tests.fakes.brevo import BrevoFake
from tests.fakes.woocommerce import ApiKey, WooFake
from tests.kit import UNIT, config_data, write_config

pytestmark = pytest.mark.timeout(240)

# Distinctive values, each of the shape the real thing has.
SITE_TOKEN = "wbt_Pl8gInT0kEn-5e1d9c7a3b"
WRONG_TOKEN = "wbt_WrOnGt0kEn-9f8e7d6c5b"
BREVO_KEY = "xkeysib-" + "4a" * 32 + "-GoodKeyQ7Lm2Xw9"
REFUSED_KEY = "xkeysib-" + "7c" * 32 + "-RevokedZ3Kp8Nv1"
CONSUMER_KEY = "ck_" + "3f1e" * 10
CONSUMER_SECRET = "cs_" + "9b2d" * 10
WRONG_SECRET = "cs_" + "0a5c" * 10
# With characters a URL or JSON escapes, so those encodings are searched for too.
WOO_HOOK_SECRET = "wc-hook/S3cr3t+Kq=9 pepper"
WRONG_HOOK_SECRET = "wc-hook/N0tTh4t+Zz=1 salt"
BREVO_HOOK_SECRET = "brevo/hook+M4rk3t=ing&secret"
WRONG_BREVO_HOOK = "brevo/hook+Gu3ss=ed&wrong"

SECRETS = {
    "site token": SITE_TOKEN,
    "wrong site token": WRONG_TOKEN,
    "brevo api key": BREVO_KEY,
    "refused brevo api key": REFUSED_KEY,
    "consumer key": CONSUMER_KEY,
    "consumer secret": CONSUMER_SECRET,
    "wrong consumer secret": WRONG_SECRET,
    "woocommerce webhook secret": WOO_HOOK_SECRET,
    "wrong woocommerce webhook secret": WRONG_HOOK_SECRET,
    "brevo webhook secret": BREVO_HOOK_SECRET,
    "wrong brevo webhook secret": WRONG_BREVO_HOOK,
}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def forms() -> Iterator[tuple[str, str]]:
    """(what, text) for every way a secret could be written out."""
    for name, value in SECRETS.items():
        yield name, value
        yield f"{name}, URL-encoded", quote(value, safe="")
        yield f"{name}, form-encoded", quote_plus(value)
        yield f"{name}, JSON-escaped", json.dumps(value)[1:-1]
        yield f"{name}, in base64", _b64(value)
    for secret in (CONSUMER_SECRET, WRONG_SECRET):
        yield "Basic auth credentials", _b64(f"{CONSUMER_KEY}:{secret}")


def assert_no_secret(texts: dict[str, str]) -> None:
    """No form of any secret in any of `texts` (what → its text)."""
    leaks = [
        f"{what} in {where}: …{text[max(0, i - 80) : i + 80]}…"
        for what, needle in forms()
        for where, text in texts.items()
        if (i := text.find(needle)) >= 0
    ]
    assert not leaks, "\n".join(leaks)


# ---------------------------------------------------------------------------- the setup


@dataclass
class Agent:
    """`woobrevo-agent run` in a subprocess; everything it writes is kept."""

    config: Path
    log_format: str
    proc: asyncio.subprocess.Process | None = None
    lines: list[str] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)
    stream_port: int = 0
    http_port: int = 0
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "run", "--config", str(self.config),
            "--log-level", "debug", "--log-format", self.log_format,
            cwd=ROOT, env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stderr is not None and self.proc.stdout is not None
        self._readers = [
            asyncio.create_task(_read(self.proc.stderr, self.lines)),
            asyncio.create_task(_read(self.proc.stdout, self.stdout)),
        ]
        await self.wait_for(r"stream listening on 127\.0\.0\.1:(\d+)/v1/stream", 30)
        await self.wait_for(r"http listening on 127\.0\.0\.1:(\d+)", 30)
        for line in self.lines:
            if m := re.search(r"stream listening on 127\.0\.0\.1:(\d+)", line):
                self.stream_port = int(m.group(1))
            if m := re.search(r"http listening on 127\.0\.0\.1:(\d+)", line):
                self.http_port = int(m.group(1))

    async def wait_for(self, pattern: str, seconds: float = 20, count: int = 1) -> None:
        """Until `count` lines of the log match `pattern`."""
        try:
            async with asyncio.timeout(seconds * UNIT):
                while sum(1 for line in self.lines if re.search(pattern, line)) < count:
                    assert self.proc is not None and self.proc.returncode is None, self.text()
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"no log line matching {pattern!r}:\n{self.text()}") from None

    async def stop(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        async with asyncio.timeout(60 * UNIT):
            await self.proc.wait()
            await asyncio.gather(*self._readers)

    def text(self) -> str:
        return "".join(self.lines)

    async def get(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return await r.text()


async def _read(pipe: asyncio.StreamReader, into: list[str]) -> None:
    while line := await pipe.readline():
        into.append(line.decode("utf-8", "replace"))


def _env() -> dict[str, str]:
    """The test's environment without the variables that would add secrets of their own."""
    drop = {"BREVO_API_KEY", "WC_CONSUMER_KEY", "WC_CONSUMER_SECRET", "WOOBREVO_WEBHOOK_SECRET"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("WOOBREVO_")}
    return {**env, "PYTHONPATH": str(ROOT)}


async def cli(*args: str) -> tuple[int, str, str]:
    """Another command, run without blocking the fakes' event loop: (code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent.cli", *args, cwd=ROOT, env=_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(90 * UNIT):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def config(tmp_path: Path, brevo: BrevoFake, http_store: WooFake, tls_store: WooFake) -> Path:
    """Five sites, one door or failure each (module docstring)."""
    good_keys = {"consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET}
    tls = {"store_url": tls_store.url, "ca_file": tls_store.ca_file, "mode": "polling"}
    data = config_data(
        tmp_path,
        brevo={
            "api_key": BREVO_KEY,
            "base_url": brevo.base_url,
            "dry_run": False,
            "webhook_secret": BREVO_HOOK_SECRET,
        },
        woocommerce={"lists": {"all_customers": 50, "buyers": 51}},
        sites=[
            # The plugin's stream, native webhooks and Brevo's webhooks.
            {
                "id": "shop",
                "token_sha256": token_hash(SITE_TOKEN),
                "webhook_secret": WOO_HOOK_SECRET,
                "store_url": http_store.url,
                **good_keys,
            },
            # Webhooks only, into a Brevo account whose key Brevo refuses.
            {
                "id": "refused",
                "webhook_secret": WOO_HOOK_SECRET,
                "carts": {"enabled": False},
                "brevo": {"api_key": REFUSED_KEY, "base_url": brevo.base_url, "dry_run": False},
            },
            # Polling: good keys over http (OAuth 1.0a: the key is in each signed URL).
            {"id": "poll-ok", "mode": "polling", "store_url": http_store.url, **good_keys},
            # Polling with a wrong secret, in the query string, then in a Basic header.
            {
                "id": "poll-query",
                **tls,
                "auth": "query",
                "consumer_key": CONSUMER_KEY,
                "consumer_secret": WRONG_SECRET,
            },
            {
                "id": "poll-basic",
                **tls,
                "auth": "basic",
                "consumer_key": CONSUMER_KEY,
                "consumer_secret": WRONG_SECRET,
            },
        ],
    )
    for entry in data["sites"]:  # one Brevo account: ids kept apart
        entry["brevo_id_prefix"] = entry["id"] + "-"
    return write_config(tmp_path / "config.yaml", data)


# ---------------------------------------------------------------------------- the doors


async def drive_stream(agent: Agent) -> dict[str, str]:
    """A batch with the good token; a handshake with a wrong one. Returns the answers."""
    url = f"ws://127.0.0.1:{agent.stream_port}/v1/stream"
    answers: dict[str, str] = {}
    async with connect(
        url, additional_headers={"Authorization": f"Bearer {SITE_TOKEN}"}, compression=None,
        open_timeout=10 * UNIT,
    ) as ws:  # fmt: skip
        await ws.send(json.dumps(HELLO))
        answers["welcome"] = str(await ws.recv())
        await ws.send(batch("b1", [event("e1", 9101), event("e2", 9102)]))
        answers["ack"] = str(await ws.recv())
        assert json.loads(answers["ack"])["accepted"] == ["e1", "e2"]
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers={"Authorization": f"Bearer {WRONG_TOKEN}"}):
            pass
    response = refused.value.response
    assert response.status_code == 401
    answers["refused handshake"] = f"{response.headers}\n{response.body!r}"
    return answers


async def drive_webhooks(agent: Agent) -> dict[str, str]:
    """Native WooCommerce deliveries (signed right and wrong) and Brevo's (bearer and query,
    right and wrong). Returns every answer's body."""
    body = (DOCS_EXAMPLES / "webhook_delivery_order_updated.body.json").read_bytes()
    base = f"http://127.0.0.1:{agent.http_port}/webhooks"
    unsubscribe = json.dumps(
        {"event": "unsubscribe", "email": "left.us@example.com", "list_id": [50], "ts_event": 1}
    ).encode()
    answers: dict[str, str] = {}

    def woo(secret: str, delivery: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-WC-Webhook-Topic": "order.updated",
            "X-WC-Webhook-Signature": sign(body, secret),
            "X-WC-Webhook-Delivery-ID": delivery,
        }

    async with aiohttp.ClientSession() as s:
        calls: list[tuple[str, int, str, Any, dict[str, str], dict[str, str]]] = [
            ("woo good", 200, f"{base}/woocommerce/shop", body, woo(WOO_HOOK_SECRET, "1" * 32), {}),
            ("woo refused account", 200, f"{base}/woocommerce/refused", body,
             woo(WOO_HOOK_SECRET, "2" * 32), {}),
            ("woo bad signature", 401, f"{base}/woocommerce/shop", body,
             woo(WRONG_HOOK_SECRET, "3" * 32), {}),
            ("brevo bearer", 200, f"{base}/brevo/shop", unsubscribe,
             {"Authorization": f"Bearer {BREVO_HOOK_SECRET}"}, {}),
            ("brevo wrong bearer", 401, f"{base}/brevo/shop", unsubscribe,
             {"Authorization": f"Bearer {WRONG_BREVO_HOOK}"}, {}),
            ("brevo query", 200, f"{base}/brevo/shop", unsubscribe, {},
             {"token": BREVO_HOOK_SECRET}),
            ("brevo wrong query", 401, f"{base}/brevo/shop", unsubscribe, {},
             {"token": WRONG_BREVO_HOOK}),
        ]  # fmt: skip
        for what, status, url, data, headers, params in calls:
            headers = {"Content-Type": "application/json", **headers}  # as both senders do
            async with s.post(url, data=data, headers=headers, params=params) as r:
                answers[what] = await r.text()
                assert r.status == status, (what, r.status, answers[what])
    return answers


# ---------------------------------------------------------------------------- the test


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secret_in_any_log_line_status_page_metric_or_error(
    tmp_path: Path, log_format: str
) -> None:
    brevo = BrevoFake(api_key=BREVO_KEY)
    http_store = WooFake(keys=[ApiKey(CONSUMER_KEY, CONSUMER_SECRET)], orders=6, customers=4)
    tls_store = WooFake(
        keys=[ApiKey(CONSUMER_KEY, CONSUMER_SECRET)], scheme="https", orders=2, customers=2
    )
    async with brevo, http_store, tls_store:
        path = config(tmp_path, brevo, http_store, tls_store)
        # Brevo refuses the first contact write of the good account (a dead letter).
        brevo.fail_next(
            1,
            400,
            family="contacts",
            body={"code": "invalid_parameter", "message": "attributes SMS is not valid"},
        )
        agent = Agent(path, log_format)
        texts: dict[str, str] = {}
        await agent.start()
        try:
            texts |= await drive_stream(agent)
            texts |= await drive_webhooks(agent)
            await agent.wait_for(r"dead letter")  # the 400
            await agent.wait_for(r"pausing this account")  # the 401
            await agent.wait_for(r"site poll-query: polling failed")
            await agent.wait_for(r"site poll-basic: polling failed")
            await agent.wait_for(r"woocommerce GET \S*/orders.* -> 200")  # poll-ok's round
            for page in ("/status", "/metrics", "/readyz", "/healthz"):
                texts[page] = await agent.get(page)
        finally:
            await agent.stop()
        status = json.loads(texts["/status"])
        assert (
            "Consumer secret is invalid" in status["sites"]["poll-basic"]["polling"]["last_error"]
        )
        assert json.loads(texts["/readyz"])["ready"] is False  # the refused account
        texts["agent stderr"] = agent.text()
        texts["agent stdout"] = "".join(agent.stdout)
        if log_format == "json":
            check_json_lines(agent.lines)
        texts |= await commands(tmp_path, path, log_format)
    assert_no_secret(texts)
    brevo.assert_no_spec_violations()


async def commands(tmp_path: Path, path: Path, log_format: str) -> dict[str, str]:
    """`check` (good and bad configs), `doctor` and `backfill`: what each prints."""
    out: dict[str, str] = {}

    async def run(what: str, *args: str) -> int:
        code, stdout, stderr = await cli(*args)
        out[f"{what} stdout"], out[f"{what} stderr"] = stdout, stderr
        return code

    assert await run("check", "check", "--config", str(path)) == 0
    for name, bad in bad_configs(path).items():
        bad_path = write_config(tmp_path / f"{name}.yaml", bad)
        assert await run(f"check {name}", "check", "--config", str(bad_path)) == 2
        assert "invalid configuration" in out[f"check {name} stderr"], out[f"check {name} stderr"]
    for site in ("poll-basic", "refused"):
        assert await run(f"doctor {site}", "doctor", "--config", str(path), "--site", site) == 1
    assert "consumer secret" in out["doctor poll-basic stdout"]
    fmt = ("--log-level", "debug", "--log-format", log_format, "--plain")
    common = ("backfill", "--config", str(path), "--no-forward", *fmt)
    assert await run("backfill poll-ok", *common, "--site", "poll-ok") == 0
    assert await run("backfill poll-basic", *common, "--site", "poll-basic") == 1
    assert "backfill stopped" in out["backfill poll-basic stderr"]
    if log_format == "json":  # its progress and result lines too
        for what in ("backfill poll-ok", "backfill poll-basic"):
            for stream in ("stdout", "stderr"):
                for record in json_records(out[f"{what} {stream}"].splitlines()):
                    if record["logger"].startswith("agent.backfill"):
                        assert record.get("site") == what.split()[1], record
    return out


def bad_configs(path: Path) -> dict[str, dict[str, Any]]:
    """Configs whose invalid value is a secret: quoted back by a validator, it must be masked."""
    good = yaml.safe_load(path.read_text())

    def changed(**where: Any) -> dict[str, Any]:
        data = json.loads(json.dumps(good))
        for dotted, value in where.items():
            node = data
            *parents, last = dotted.split("__")
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = value
        return data

    url = f"https://shop.example/?consumer_key={CONSUMER_KEY}&consumer_secret={CONSUMER_SECRET}"
    return {
        "key-as-address": changed(agent__listen__http=BREVO_KEY),
        "secret-as-duration": changed(agent__stream__idle_timeout=WOO_HOOK_SECRET),
        "keys-in-url": changed(connectors__woocommerce__store_url=url),
        "secret-as-level": changed(agent__log_level=CONSUMER_SECRET),
    }


def json_records(lines: list[str]) -> list[dict[str, Any]]:
    """Each line as a JSON log record (time in ISO 8601 UTC, level, logger, message)."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(record, dict)
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]), record
        records.append(record)
    return records


def check_json_lines(lines: list[str]) -> None:
    """Every line is a JSON object; the doors' lines name their site and door, the
    forwarder's lines about a Brevo answer name their job."""
    records = json_records(lines)
    doors = {"agent.stream": "stream", "agent.webhooks": "webhook"}
    doors["agent.brevo_hooks"] = "brevo_webhook"
    seen = set()
    for r in records:
        door = doors.get(r["logger"])
        if door is not None and (m := re.match(r"site (\S+?):? ", r["message"])):
            assert (r.get("site"), r.get("door")) == (m.group(1), door), r
            seen.add(door)
        if door == "stream" and "handshake" in r["message"]:
            assert r.get("door") == "stream", r
        if r["logger"] == "agent.poller" and (m := re.match(r"site (\S+?):? ", r["message"])):
            assert (r.get("site"), r.get("door")) == (m.group(1), "poll"), r
            seen.add("poll")
        if r["logger"] == "agent.forwarder" and re.search(r"dead letter|pausing", r["message"]):
            assert isinstance(r.get("job_id"), int) and r.get("site"), r
            seen.add("forwarder")
    assert seen == {"stream", "webhook", "brevo_webhook", "poll", "forwarder"}, seen
