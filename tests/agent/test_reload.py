"""SIGHUP, as `systemctl reload` sends it (ExecReload=/bin/kill -HUP $MAINPID), to a real agent
(`woobrevo-agent run`, processing: process, so the worker reloads too) talking to the Brevo
fake: sites added and removed, a mapping and a list changed, the Brevo budget raised, TLS
files swapped, all without dropping a healthy connection; an invalid config refused with the
old one kept; systemd told RELOADING=1 then READY=1; /status showing the config's load time and
hash (docs/doors.md, "Reloading the config")."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.agent.doorkit import (
    SECRETS,
    TOKENS,
    UNIT,
    AgentProcess,
    batch,
    config_data,
    event,
    hello,
)
from tests.certs import self_signed_cert
from tests.fakes.brevo import BrevoFake
from tests.kit import live, site, until, write_config

pytestmark = pytest.mark.timeout(240)

BUYERS = 5  # lists.buyers at start
NEW_BUYERS = 7  # after the reload


class Notify:
    """systemd's end of NOTIFY_SOCKET (an abstract AF_UNIX datagram socket): what came."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.name = f"woobrevo-reload-{os.getpid()}-{id(self)}"
        self.sock.bind("\0" + self.name)
        self.sock.setblocking(False)
        self.messages: list[list[str]] = []

    @property
    def address(self) -> str:
        return "@" + self.name

    def drain(self) -> list[list[str]]:
        with contextlib.suppress(BlockingIOError):
            while True:
                self.messages.append(self.sock.recv(65536).decode().split("\n"))
        return self.messages

    def reloads(self) -> list[list[str]]:
        """The datagrams of reloads: RELOADING=1 ones and the READY=1 that ends each."""
        return [
            m
            for m in self.drain()
            if "RELOADING=1" in m or any(line.startswith("STATUS=config reload") for line in m)
        ]


@contextlib.contextmanager
def _notify() -> Iterator[Notify]:
    notify = Notify()
    try:
        yield notify
    finally:
        notify.sock.close()


def _order_event(eid: str, number: int, email: str) -> dict[str, Any]:
    e = event(eid, number)
    e["payload"]["billing"]["email"] = email
    e["payload"]["customer_id"] = 0  # a guest: the contact comes from the billing address
    return e


async def _send(ws: ClientConnection, name: str, *events: dict[str, Any]) -> dict[str, Any]:
    """Send one batch on an open connection and return its ack."""
    await ws.send(batch(name, list(events)))
    async with asyncio.timeout(10 * UNIT):
        ack: dict[str, Any] = json.loads(await ws.recv())
    assert ack["type"] == "ack" and ack["batch"] == name, ack
    assert not ack["rejected"], ack
    return ack


@contextlib.asynccontextmanager
async def _link(
    agent: AgentProcess, token: str, trust: ssl.SSLContext | None = None
) -> AsyncIterator[ClientConnection]:
    """A plugin's connection (hello sent, welcome read)."""
    scheme = "ws" if trust is None else "wss"
    async with connect(
        f"{scheme}://127.0.0.1:{agent.stream_port}/v1/stream",
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None, max_size=None, open_timeout=5 * UNIT, ssl=trust,
    ) as ws:  # fmt: skip
        welcome = await hello(ws)
        assert welcome["type"] == "welcome", welcome
        yield ws


async def _reload(agent: AgentProcess, path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Write the config, SIGHUP the agent, wait until /status records this reload; its
    `config` block."""
    write_config(path, data)
    before = (await agent.status())["config"]
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGHUP)
    config: dict[str, Any] = {}

    async def recorded() -> bool:
        nonlocal config
        config = (await agent.status())["config"]
        last = config["last_reload"]
        return last is not None and last != before["last_reload"]

    await until(recorded, 90, what="the reload in /status", every=0.1)
    return config


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _env(notify: Notify | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify.address
    return env


def _contact(fake: BrevoFake, email: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = fake.contacts.get(email)
    return found


async def test_sites_mappings_and_lists_change_without_dropping_the_stream(
    tmp_path: Path,
) -> None:
    async with BrevoFake() as fake:
        data = config_data(tmp_path, brevo=live(fake))
        data["agent"]["processing"] = "process"
        data["sites"] = [s for s in data["sites"] if s["id"] == "a"]  # b comes later
        data["connectors"]["woocommerce"]["lists"] = {"buyers": BUYERS}
        path = write_config(tmp_path / "agent.yaml", data)
        with _notify() as notify:
            async with AgentProcess(path, _env(notify)) as agent:
                status = await agent.status()
                assert status["config"]["path"] == str(path)
                assert status["config"]["sha256"] == _digest(path)
                assert status["config"]["last_reload"] is None
                loaded_at = status["config"]["loaded_at"]
                assert list(status["sites"]) == ["a"]
                async with _link(agent, TOKENS["a"]) as shop_a:
                    await _send(shop_a, "a-1", _order_event("e1", 1001, "first@example.com"))
                    await fake.wait_for(lambda: _contact(fake, "first@example.com") is not None)
                    first = _contact(fake, "first@example.com")
                    assert first is not None and BUYERS in first["listIds"]
                    assert "CITY" not in first["attributes"]
                    # Before site b exists, its token is refused at the handshake.
                    with pytest.raises(InvalidStatus, match="401"):
                        async with _link(agent, TOKENS["b"]):
                            pass

                    # Reload: a new list id and a mapped attribute for a; site b added.
                    new = copy.deepcopy(data)
                    woo = new["connectors"]["woocommerce"]
                    woo["lists"] = {"buyers": NEW_BUYERS}
                    woo["customer_mapping"] = {**woo["customer_mapping"], "billing.city": "CITY"}
                    new["sites"].append(
                        site("b", TOKENS["b"], webhook_secret=SECRETS["b"], brevo_id_prefix="b-")
                    )
                    config = await _reload(agent, path, new)
                    assert config["last_reload"]["ok"] is True, config
                    assert config["last_reload"]["error"] is None
                    assert config["sha256"] == _digest(path) != (status["config"]["sha256"])
                    assert config["loaded_at"] > loaded_at
                    assert sorted((await agent.status())["sites"]) == ["a", "b"]

                    # The same websocket goes on, and its next event uses the new settings.
                    await _send(shop_a, "a-2", _order_event("e2", 1002, "second@example.com"))
                    await fake.wait_for(lambda: _contact(fake, "second@example.com") is not None)
                    second = _contact(fake, "second@example.com")
                    assert second is not None
                    assert NEW_BUYERS in second["listIds"] and BUYERS not in second["listIds"]
                    assert second["attributes"].get("CITY") == "Rio de Janeiro", second

                    # Site b connects with its token; its events reach Brevo.
                    async with _link(agent, TOKENS["b"]) as shop_b:
                        await _send(shop_b, "b-1", _order_event("e1", 2001, "third@example.com"))
                        await fake.wait_for(lambda: "b-2001" in fake.orders, timeout=10 * UNIT)

                        # Site b removed: its connection is closed with a clear reason, a's not.
                        config = await _reload(agent, path, data)
                        assert config["last_reload"]["ok"] is True, config
                        async with asyncio.timeout(10 * UNIT):
                            error = json.loads(await shop_b.recv())
                            with pytest.raises(ConnectionClosed) as closed:
                                await shop_b.recv()
                        assert error["type"] == "error" and "removed" in error["message"], error
                        assert closed.value.rcvd is not None
                        assert closed.value.rcvd.code == 1008
                        assert closed.value.rcvd.reason == "site removed"
                    await _send(shop_a, "a-3", _order_event("e3", 1003, "fourth@example.com"))
                    await fake.wait_for(lambda: _contact(fake, "fourth@example.com") is not None)
                    fourth = _contact(fake, "fourth@example.com")
                    assert fourth is not None and BUYERS in fourth["listIds"]
                    assert list((await agent.status())["sites"]) == ["a"]
                    with pytest.raises(InvalidStatus, match="401"):
                        async with _link(agent, TOKENS["b"]):
                            pass
            # systemd heard of both reloads: RELOADING=1 (with the clock), then READY=1.
            said = notify.reloads()
        log = "".join(agent.log)
    fake.assert_no_spec_violations()
    assert [m[0] for m in said] == ["RELOADING=1", "READY=1"] * 2, said
    assert said[0][1].startswith("MONOTONIC_USEC=") and int(said[0][1].split("=")[1]) > 0
    assert said[1][1].startswith("STATUS=config reloaded"), said
    assert log.count("config reloaded (sha256") >= 4, log  # both processes, twice
    assert "sites added: b" in log and "sites removed: b" in log, log
    assert "Traceback" not in log, log


async def test_an_invalid_config_is_refused_and_the_old_one_stays(tmp_path: Path) -> None:
    key = "xkeysib-" + "k" * 40 + "-reloadsecret"
    async with BrevoFake(api_key=key) as fake:
        data = config_data(tmp_path, brevo=live(fake))
        data["agent"]["processing"] = "process"
        path = write_config(tmp_path / "agent.yaml", data)
        good = _digest(path)
        bad_value = copy.deepcopy(data)
        bad_value["agent"]["stream"] = {"max_batch": 0}
        moved = copy.deepcopy(data)
        moved["agent"]["listen"] = {"stream": "127.0.0.1:1", "http": "127.0.0.1:0"}
        unknown = copy.deepcopy(data)
        unknown["sites"][0]["mapping_typo"] = {"email": "email"}
        with _notify() as notify:
            async with AgentProcess(path, _env(notify)) as agent:
                loaded_at = (await agent.status())["config"]["loaded_at"]
                async with _link(agent, TOKENS["a"]) as shop_a:
                    await _send(shop_a, "a-1", _order_event("e1", 1001, "first@example.com"))
                    refusals = []
                    # Broken YAML, a bad value, a key that needs a restart, an unknown key.
                    path.write_text("agent: [unclosed\n")
                    agent.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
                    await until(
                        lambda: "YAML syntax error" in "".join(agent.log), 30, what="refusal"
                    )
                    refusals.append((await agent.status())["config"])
                    for wrong in (bad_value, moved, unknown):
                        refusals.append(await _reload(agent, path, wrong))
                    for config in refusals:
                        assert config["last_reload"]["ok"] is False, config
                        assert config["sha256"] == good  # still the config in force
                        assert config["loaded_at"] == loaded_at
                    errors = [c["last_reload"]["error"] for c in refusals]
                    assert "YAML syntax error at line 2" in errors[0] or "line 1" in errors[0]
                    assert "agent.stream.max_batch" in errors[1], errors
                    assert "restart to change agent.listen.stream" in errors[2], errors
                    assert "mapping_typo" in errors[3], errors

                    # The old config still works: the open link, and a new one.
                    await _send(shop_a, "a-2", _order_event("e2", 1002, "second@example.com"))
                async with _link(agent, TOKENS["a"]) as again:
                    await _send(again, "a-3", _order_event("e3", 1003, "third@example.com"))
                await fake.wait_for(
                    lambda: all(
                        _contact(fake, f"{n}@example.com") for n in ("first", "second", "third")
                    ),
                    timeout=10 * UNIT,
                )
                # Put right, it reloads.
                config = await _reload(agent, path, data)
                assert config["last_reload"]["ok"] is True, config
                status_text = json.dumps(await agent.status())
            said = notify.reloads()
        log = "".join(agent.log)
    fake.assert_no_spec_violations()
    # systemd: every refused reload ends with READY=1 and a STATUS= line that says so.
    statuses = [line for m in said for line in m if line.startswith("STATUS=")]
    assert len(statuses) == 5, said
    assert all("refused" in line for line in statuses[:4]), statuses
    assert "YAML syntax error" in statuses[0], statuses  # the whole message, on one line
    assert statuses[4].startswith("STATUS=config reloaded"), statuses
    refused = [line for line in log.splitlines() if "config reload refused" in line]
    assert len(refused) >= 4, log
    assert all(" ERROR " in line for line in refused), refused
    assert key not in log and key not in status_text
    assert "Traceback" not in log, log


async def test_a_higher_brevo_limit_releases_what_the_lower_one_held(tmp_path: Path) -> None:
    # Brevo meters contacts at one an hour (its headers say so, and the agent believes them);
    # the account is then upgraded and the config says so: the contact held back goes.
    async with BrevoFake(limits={"contacts": [(1, 3600.0)]}) as fake:
        hourly = [{"count": 1, "per": "1h"}]
        data = config_data(tmp_path, brevo=live(fake, rate_limits={"contacts": hourly}))
        data["agent"]["processing"] = "process"
        path = write_config(tmp_path / "agent.yaml", data)
        async with AgentProcess(path, _env()) as agent, _link(agent, TOKENS["a"]) as shop:
            await _send(shop, "a-1", _order_event("e1", 1001, "first@example.com"))
            await fake.wait_for(lambda: _contact(fake, "first@example.com") is not None)
            await _send(shop, "a-2", _order_event("e2", 1002, "second@example.com"))
            # The order goes (another family); the contact waits for the hour's budget.
            await fake.wait_for(lambda: "a-1002" in fake.orders, timeout=10 * UNIT)
            await asyncio.sleep(1.0 * UNIT)
            assert _contact(fake, "second@example.com") is None
            upgraded = copy.deepcopy(data)
            more = [{"count": 1000, "per": "1h"}]
            upgraded["brevo"] = live(fake, plan="advanced", rate_limits={"contacts": more})
            config = await _reload(agent, path, upgraded)
            assert config["last_reload"]["ok"] is True, config
            await fake.wait_for(
                lambda: _contact(fake, "second@example.com") is not None, timeout=10 * UNIT
            )
        log = "".join(agent.log)
    fake.assert_no_spec_violations()
    assert "rate budgets now advanced plan" in log, log
    assert "site a: brevo.plan, brevo.rate_limits" in log, log


async def test_swapped_tls_files_serve_new_handshakes_and_keep_open_ones(tmp_path: Path) -> None:
    data = config_data(tmp_path, tls=True)
    data["agent"]["processing"] = "process"
    path = write_config(tmp_path / "agent.yaml", data)
    cert, key = Path(data["agent"]["tls"]["cert"]), Path(data["agent"]["tls"]["key"])
    old_trust = ssl.create_default_context(cafile=cert)
    (tmp_path / "new").mkdir()
    new_cert, new_key = self_signed_cert(tmp_path / "new")
    new_trust = ssl.create_default_context(cafile=new_cert)
    async with AgentProcess(path, _env()) as agent, _link(agent, TOKENS["a"], old_trust) as old:
        await _send(old, "a-1", _order_event("e1", 1001, "first@example.com"))
        # The new certificate is not served yet.
        with pytest.raises(ssl.SSLCertVerificationError):
            async with _link(agent, TOKENS["a"], new_trust):
                pass
        # Swap the files in place (the config itself is unchanged), then reload.
        shutil.copyfile(new_cert, cert)
        shutil.copyfile(new_key, key)
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGHUP)
        await until(lambda: "config reloaded" in "".join(agent.log), 30, what="the reload")
        async with _link(agent, TOKENS["a"], new_trust) as fresh:
            served = fresh.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
            assert served == ssl.PEM_cert_to_DER_cert(new_cert.read_text())
            await _send(fresh, "a-2", _order_event("e2", 1002, "second@example.com"))
        # The connection made before the swap goes on with its session.
        await _send(old, "a-3", _order_event("e3", 1003, "third@example.com"))
        # A key that does not match the certificate is refused; the served pair stays.
        (tmp_path / "other").mkdir()
        shutil.copyfile(self_signed_cert(tmp_path / "other")[1], key)
        agent.proc.send_signal(signal.SIGHUP)
        await until(lambda: "config reload refused" in "".join(agent.log), 30, what="refusal")
        async with _link(agent, TOKENS["a"], new_trust) as later:
            await _send(later, "a-4", _order_event("e4", 1004, "fourth@example.com"))
        error = (await agent.status())["config"]["last_reload"]["error"]
        assert "agent.tls: cannot load certificate" in error, error
