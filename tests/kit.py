"""What every test builds the same way: a configuration, and a wait.

* `config_data(tmp_path, ...)` is a config file as plain data: loopback listeners on port 0, the
  state folder in `tmp_path`, Brevo in dry-run, and what the test gives: sites (`site`), the
  Brevo fake (`live`), the WooCommerce fake (`store`), stream limits, a TLS certificate, and the
  keys of any block. `write_config` writes it as YAML; `load` reads that file back as the
  agent does; `tls_trust` is a client context that trusts the TLS certificate.
* `until(cond, seconds, what=...)` waits for a condition (a plain or an async function) that
  has no event of its own to await, and names what it waited for when it gives up.
* `UNIT` is the time unit of every timeout and wait in the tests: CI machines are slow and
  noisy, so it can be stretched with WOOBREVO_TIME_UNIT (seconds).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import os
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from agent.config import Config, load_config
from agent.tokens import token_hash
from tests.certs import self_signed_cert

if TYPE_CHECKING:
    from tests.fakes.brevo import BrevoFake
    from tests.fakes.woocommerce import WooFake

UNIT = float(os.environ.get("WOOBREVO_TIME_UNIT", "1.0"))
LOOPBACK = {"stream": "127.0.0.1:0", "http": "127.0.0.1:0"}

# ---------------------------------------------------------------------------- the config


def config_data(
    tmp_path: Path,
    *,
    sites: Iterable[Mapping[str, Any]] = (),
    stream: Mapping[str, Any] | None = None,
    tls: bool = False,
    agent: Mapping[str, Any] | None = None,
    brevo: Mapping[str, Any] | None = None,
    woocommerce: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A config as plain data (a fresh copy: tests change it before writing it).

    `sites` are `site(...)` entries (none: the single default site); `stream` is
    `agent.stream`; `tls` makes a self-signed certificate for 127.0.0.1 in `tmp_path` and sets
    `agent.tls`. `agent`, `brevo` and `woocommerce` set keys of their block (the
    connectors.woocommerce one for the last), over the dry-run Brevo block.
    """
    data: dict[str, Any] = {
        "agent": {"listen": LOOPBACK, "state_dir": str(tmp_path / "state"), **(agent or {})},
        "brevo": {"dry_run": True, **(brevo or {})},
        "connectors": {"woocommerce": dict(woocommerce or {})},
    }
    if stream is not None:
        data["agent"]["stream"] = stream
    if tls:
        cert, key = self_signed_cert(tmp_path)
        data["agent"]["tls"] = {"cert": str(cert), "key": str(key)}
    entries = list(sites)
    if entries:
        data["sites"] = entries
    return copy.deepcopy(data)


def site(site_id: str, token: str, **keys: Any) -> dict[str, Any]:
    """One entry of `sites:`, authenticated by `token`; `keys` are its other keys."""
    return {"id": site_id, "token_sha256": token_hash(token), **keys}


def live(fake: BrevoFake, **keys: Any) -> dict[str, Any]:
    """The `brevo` block of an agent that talks to the Brevo fake; `keys` add to it."""
    return {"api_key": fake.api_key, "base_url": fake.base_url, "dry_run": False, **keys}


def store(fake: WooFake) -> dict[str, Any]:
    """The woocommerce keys that reach the WooCommerce fake: its URL, key and CA file."""
    keys = {
        "store_url": fake.url,
        "consumer_key": fake.consumer_key,
        "consumer_secret": fake.consumer_secret,
    }
    return {**keys, "ca_file": fake.ca_file} if fake.ca_file else keys


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write a YAML config and return its path."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load(tmp_path: Path, data: dict[str, Any], name: str = "c.yaml") -> Config:
    """Write the config into `tmp_path` and load it as `woobrevo-agent` does (no environment)."""
    return load_config(write_config(tmp_path / name, data), env={})


def tls_trust(data: Mapping[str, Any]) -> ssl.SSLContext:
    """A client context that trusts the certificate of a `config_data(..., tls=True)`."""
    return ssl.create_default_context(cafile=data["agent"]["tls"]["cert"])


# ---------------------------------------------------------------------------- the wait


async def until(
    cond: Callable[[], bool | Awaitable[bool]],
    seconds: float = 5.0,
    *,
    what: str | None = None,
    every: float = 0.01,
) -> None:
    """Return once `cond()` holds, checking it every `every` seconds for at most `seconds`
    time units; then fail with what it waited for (`what`, else the condition's source)."""
    try:
        async with asyncio.timeout(seconds * UNIT):
            while not await _holds(cond):  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(every)
    except TimeoutError:
        waited = what or _source(cond)
        raise AssertionError(f"waited {seconds * UNIT:g}s for {waited}, in vain") from None


async def _holds(cond: Callable[[], bool | Awaitable[bool]]) -> bool:
    held = cond()
    return bool(await held) if inspect.isawaitable(held) else bool(held)


def _source(cond: Callable[..., object]) -> str:
    """The condition as written (a lambda's line), or its name."""
    try:
        return " ".join(inspect.getsource(cond).split())
    except (OSError, TypeError):
        return getattr(cond, "__qualname__", repr(cond))
