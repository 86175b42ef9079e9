"""Site tokens: `token create|list|revoke`, and a running agent taking changes without restart."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from agent.app import App
from agent.cli import main
from agent.config import load_config
from agent.tokens import TokenRecord, TokenRegistry, find_hash, store_token, token_hash
from tests.agent.doorkit import TOKENS, client, config_data, hello
from tests.kit import write_config


async def cli(*argv: str) -> int:
    """Run the real CLI (it calls asyncio.run, so in a thread beside the test's loop)."""
    return await asyncio.to_thread(main, list(argv))


async def refused(app: App, token: str) -> int:
    with pytest.raises(InvalidStatus) as exc:
        async with client(app, token):
            pass
    return exc.value.response.status_code


def test_token_create_prints_a_token_once_and_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path / "woobrevo.yaml", config_data(tmp_path))
    assert main(["token", "create", "--config", str(path), "--site", "a"]) == 0
    out = capsys.readouterr().out
    token = out.splitlines()[1].strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", token)  # ≥ 256 bits, URL-safe
    assert f"token_sha256: {hashlib.sha256(token.encode()).hexdigest()}" in out
    assert main(["token", "create", "--config", str(path), "--site", "a"]) == 0
    assert token not in capsys.readouterr().out  # a fresh one each time
    assert main(["token", "create", "--config", str(path), "--site", "nope"]) == 2
    assert "no site 'nope'" in capsys.readouterr().err


async def test_store_tokens_take_effect_on_the_next_handshake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path / "woobrevo.yaml", config_data(tmp_path))
    async with App(load_config(path)) as app:
        capsys.readouterr()
        assert await cli("token", "create", "--config", str(path), "--site", "b", "--store") == 0
        out = capsys.readouterr().out
        new = out.splitlines()[1].strip()
        digest = token_hash(new)
        assert digest in out and "token_sha256" not in out
        async with client(app, new) as ws:
            assert (await hello(ws))["site"] == "b"
        assert await cli("token", "list", "--config", str(path)) == 0
        listing = capsys.readouterr().out
        assert re.search(rf"^b\s+{digest[:16]}\s+store\s+\S+ \S+\s+active$", listing, re.M)
        assert re.search(
            rf"^a\s+{token_hash(TOKENS['a'])[:16]}\s+config\s+-\s+active$", listing, re.M
        )
        assert new not in listing
        assert await cli("token", "revoke", "--config", str(path), digest[:10]) == 0
        assert "revoked" in capsys.readouterr().out
        assert await refused(app, new) == 401
        # The configured token of b still works; a config token can be revoked in the store too.
        async with client(app, TOKENS["b"]) as ws:
            await hello(ws)
        assert (
            await cli("token", "revoke", "--config", str(path), token_hash(TOKENS["a"])[:12]) == 0
        )
        assert "still in the config" in capsys.readouterr().out
        assert await refused(app, TOKENS["a"]) == 401
        assert await cli("token", "list", "--config", str(path), "--site", "a") == 0
        assert "revoked" in capsys.readouterr().out
        assert await cli("token", "revoke", "--config", str(path), "0000") == 1
        assert "at least 8" in capsys.readouterr().out


async def test_config_changes_are_picked_up_without_restart(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    path = write_config(tmp_path / "woobrevo.yaml", data)
    async with App(load_config(path)) as app:
        async with client(app, TOKENS["a"]) as ws:
            await hello(ws)
        rotated = "rotated-token-for-a-" + "r" * 30
        data["sites"][0]["token_sha256"] = token_hash(rotated)
        write_config(path, data)
        assert await refused(app, TOKENS["a"]) == 401
        async with client(app, rotated) as ws:
            assert (await hello(ws))["site"] == "a"
        # A broken edit keeps the tokens that work, rather than locking every site out.
        path.write_text("agent: [this is not: valid")
        async with client(app, rotated) as ws:
            await hello(ws)


class _Meta:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def get_meta(self, key: str) -> str | None:
        return self.data.get(key)

    async def set_meta(self, key: str, value: str) -> None:
        self.data[key] = value

    async def meta_items(self, prefix: str) -> dict[str, str]:
        return {k: v for k, v in self.data.items() if k.startswith(prefix)}


async def test_registry_refusals(tmp_path: Path) -> None:
    from agent.config import Config

    cfg = Config.model_validate(config_data(tmp_path))
    meta = _Meta()
    reg = TokenRegistry(cfg, meta, sites={"a"})  # b is not served by this agent
    assert await reg.authenticate(TOKENS["a"]) == "a"
    assert await reg.authenticate(TOKENS["b"]) is None
    assert await reg.authenticate(None) is None
    assert await reg.authenticate("") is None
    # The store and the config disagree about a token's site: refused.
    await store_token(meta, "b", token_hash(TOKENS["a"]), 1.0)
    assert await reg.authenticate(TOKENS["a"]) is None
    # An unreadable record is ignored, not fatal.
    meta.data["token:" + token_hash("junk")] = "{not json"
    assert await reg.authenticate("junk") is None


def test_find_hash() -> None:
    recs = [
        TokenRecord("abcdef0123" + "0" * 54, "a", "store"),
        TokenRecord("abcdef0199" + "0" * 54, "b", "config"),
    ]
    assert isinstance(find_hash(recs, "abcdef01"), str)  # ambiguous
    assert isinstance(find_hash(recs, "abc"), str)  # too short
    assert isinstance(find_hash(recs, "ffffffff"), str)  # none
    found = find_hash(recs, "ABCDEF0199")
    assert isinstance(found, TokenRecord) and found.site == "b"
