"""Attacks through what the agent is handed (issue 16, findings 6 and 7): a config whose two
sites share a token, a YAML alias bomb, and text a client sends that the agent logs (a
forged log line in the plugin's `error` message).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cli.main import main
from agent.config import ConfigError, load_config
from agent.logs import TextFormatter
from agent.tokens import token_hash
from tests.agent.doorkit import TOKENS, AgentProcess, client, hello, running
from tests.agent.doorkit import config_data as door_config
from tests.kit import UNIT, config_data, load, site, until, write_config

# -- one token, two sites -----------------------------------------------------------------


def _shared(tmp_path: Path) -> dict[str, Any]:
    return config_data(tmp_path, sites=[site("shop-a", "tok-" + "a" * 40), site("shop-b", "x")])


@pytest.mark.attack("6b: `check` accepted the same token_sha256 on two sites")
def test_the_same_token_on_two_sites_is_refused_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _shared(tmp_path)
    data["sites"][1]["token_sha256"] = data["sites"][0]["token_sha256"]
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, data)
    (problem,) = refused.value.problems
    assert "sites[0] 'shop-a' and sites[1] 'shop-b' have the same token_sha256" in problem
    assert "woobrevo-agent token create --site shop-b" in problem
    assert data["sites"][0]["token_sha256"] not in problem

    assert main(["check", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "'shop-a'" in err and "'shop-b'" in err and "same token_sha256" in err


@pytest.mark.attack("6b: two sites inheriting connectors.woocommerce.token_sha256")
def test_a_token_two_sites_inherit_is_refused(tmp_path: Path) -> None:
    data = config_data(
        tmp_path,
        sites=[{"id": "shop-a"}, {"id": "shop-b"}],
        woocommerce={"token_sha256": token_hash("tok-" + "c" * 40)},
    )
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, data)
    assert "(inherited from connectors.woocommerce.token_sha256)" in str(refused.value)


@pytest.mark.attack("6b: a reload giving a second site the first site's token_sha256")
async def test_a_reload_with_a_shared_token_is_refused_and_the_old_tokens_kept(
    tmp_path: Path,
) -> None:
    data = door_config(tmp_path)
    cfg = load(tmp_path, data)
    async with running(cfg) as app:
        data["sites"][1]["token_sha256"] = data["sites"][0]["token_sha256"]
        write_config(tmp_path / "c.yaml", data)

        result = await app.reload()

        assert not result.ok
        assert result.error is not None and "'a' and sites[1] 'b' have the same" in result.error
        # The handshake's own re-read of the edited file refuses it too: each token still
        # names its own site.
        for sid in ("a", "b"):
            async with client(app, token=TOKENS[sid]) as ws:
                assert (await hello(ws))["site"] == sid


# -- YAML alias bombs ---------------------------------------------------------------------


def _laughs() -> str:
    """The billion laughs: 9 values, each level 9 aliases of the one before (9**9 in all)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _mapping_bomb() -> str:
    """The same with mappings, under a key the config has: each level nine of the one before."""
    lines = ["agent:", "  stream:", "    l0: &l0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}"]
    for n in range(1, 9):
        lines.append(f"    l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _timed_load(path: Path) -> tuple[ConfigError, float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        load_config(path, env={})
    except ConfigError as exc:
        refused = exc
    else:
        raise AssertionError("the bomb was loaded")
    finally:
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return refused, seconds, peak


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(
            _laughs(),
            6,
            marks=pytest.mark.attack(
                "7c: a 342-byte YAML alias bomb ran `check` over 60 s and 1.3 GB"
            ),
            id="billion-laughs",
        ),
        pytest.param(
            _mapping_bomb(),
            7,
            marks=pytest.mark.attack("7c: an alias bomb of mappings under agent.stream"),
            id="mappings",
        ),
    ],
)
def test_an_alias_bomb_is_refused_fast_and_small_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    assert len(text.encode()) < 600  # a few hundred bytes

    refused, seconds, peak = _timed_load(path)

    (problem,) = refused.problems
    assert problem.startswith(f"YAML refused at line {line}: ")
    assert "more than 100,000 values (a YAML alias bomb?)" in problem
    assert seconds < 1.0 * UNIT, seconds
    assert peak < 16 * 2**20, peak  # bytes the load allocated at most
    assert main(["check", "--config", str(path)]) == 2
    assert f"line {line}" in capsys.readouterr().err


@pytest.mark.attack("7c: a YAML file of thousands of aliases, nested thousands deep, or a loop")
def test_too_many_aliases_or_levels_or_a_loop_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("agent:\n  x: &x 1\n  y: [" + ", ".join(["*x"] * 1_001) + "]\n")
    with pytest.raises(ConfigError, match=r"line 3: more than 1,000 aliases"):
        load_config(path, env={})
    path.write_text("agent:\n  x: " + "[" * 5_000 + "]" * 5_000 + "\n")
    with pytest.raises(ConfigError, match=r"line 2: nested more than 64 levels deep"):
        load_config(path, env={})
    path.write_text("agent:\n  x: &x [1, *x]\n")  # was a RecursionError's traceback
    with pytest.raises(ConfigError, match=r"line 2: an alias \(\*name\) inside the value"):
        load_config(path, env={})


def test_a_config_sharing_blocks_with_anchors_still_loads(tmp_path: Path) -> None:
    """What anchors are for: one mapping for every site, site defaults merged."""
    text = f"""
agent:
  listen: &listen {{stream: "127.0.0.1:0", http: "127.0.0.1:0"}}
  state_dir: {tmp_path / "state"}
brevo: {{dry_run: true}}
connectors:
  woocommerce:
    customer_mapping: &mapping
      email: email
      first_name: FIRSTNAME
sites:
  - &shop
    id: shop-a
    token_sha256: {token_hash("tok-a-" + "a" * 40)}
    customer_mapping: *mapping
    brevo_id_prefix: a-
  - <<: *shop
    id: shop-b
    token_sha256: {token_hash("tok-b-" + "b" * 40)}
    brevo_id_prefix: b-
"""
    (tmp_path / "c.yaml").write_text(text)
    cfg = load_config(tmp_path / "c.yaml", env={})
    sites = {s.id: s for s in cfg.resolved_sites()}
    assert sorted(sites) == ["shop-a", "shop-b"]
    for s in sites.values():
        assert s.woo.customer_mapping == {"email": "email", "first_name": "FIRSTNAME"}
    assert sites["shop-b"].woo.brevo_id_prefix == "b-"
    assert yaml.safe_load(text)["agent"]["listen"]["stream"] == cfg.agent.listen.stream


# -- log injection ------------------------------------------------------------------------

FORGED = "2026-01-01 00:00:00,000 CRITICAL agent.cli: site a: every token revoked"


@pytest.mark.attack("6c: the plugin's `error` message reached the log unescaped (log injection)")
@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_a_forged_line_in_the_plugins_error_stays_in_its_own_line(
    tmp_path: Path, fmt: str
) -> None:
    data = door_config(tmp_path)
    data["agent"]["log_format"] = fmt
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BREVO_", "WC_"))}
    async with AgentProcess(write_config(tmp_path / "c.yaml", data), env) as agent:
        async with agent.connect() as ws:
            await hello(ws)
            message = f"boom\n{FORGED}\r\n\x1b[2J\x1b[31mred\u2028" + "A" * 100_000
            await ws.send(json.dumps({"type": "error", "code": "x\nx\x1b", "message": message}))
            await until(lambda: any("reports error" in ln for ln in agent.log), 10)
        async with agent.connect() as again:  # the agent still serves
            assert (await hello(again))["site"] == "a"
    lines = "".join(agent.log).splitlines()
    (report,) = [ln for ln in lines if "reports error" in ln]
    assert [ln for ln in lines if FORGED in ln] == [report]
    assert not any(c in "".join(lines) for c in "\x1b\r\u2028")
    assert len(report) < 1_500 and "more characters" in report
    if fmt == "json":
        messages = [json.loads(ln)["message"] for ln in lines]  # every line is one object
        assert not any(m.startswith("2026-01-01") for m in messages)
        said = json.loads(report)["message"]
        assert "\n" not in said and "boom\\n2026-01-01" in said
    else:
        assert not any(ln.startswith("2026-01-01") for ln in lines)
        assert "reports error x\\nx\\x1b: boom\\n2026-01-01 00:00:00,000 CRITICAL" in report
        assert "\\r\\n\\x1b[2J\\x1b[31mred\\u2028AAA" in report


@pytest.mark.attack("6c: any client text in a text log line (a topic, an event id) forges lines")
def test_the_text_format_keeps_every_message_on_one_line() -> None:
    """Whatever a message quotes, the text format writes it on one line; a traceback after it
    keeps its lines (they are the agent's own)."""
    try:
        raise ValueError("bad")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "agent.webhooks", logging.WARNING, __file__, 1, "site a webhook %s could not be stored",
        (f"order.updated\n{FORGED}\x1b[0m",), exc_info,
    )  # fmt: skip
    first, *rest = TextFormatter().format(record).splitlines()
    assert first.endswith(f"site a webhook order.updated\\n{FORGED}\\x1b[0m could not be stored")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: bad"
