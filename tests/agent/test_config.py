"""Config loading: every kind of bad file gives the file, the key path and what was expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, load_config, masked, parse_duration
from tests.conftest import ROOT
from tests.kit import write_config


def problems_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    assert info.value.file == str(path)
    return info.value.problems


def test_example_config_is_valid_and_dry_run_without_key() -> None:
    cfg = load_config(ROOT / "config.example.yaml", env={})
    (site,) = cfg.resolved_sites()
    assert site.id == "default"
    assert site.brevo.is_dry_run
    assert site.woo.lists.all_customers == 50


def test_key_from_env_turns_dry_run_off() -> None:
    cfg = load_config(ROOT / "config.example.yaml", env={"BREVO_API_KEY": "xkeysib-abc"})
    (site,) = cfg.resolved_sites()
    assert not site.brevo.is_dry_run
    assert site.brevo.account.startswith("acct-")
    assert "xkeysib" not in site.brevo.account


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"agent": {"listen": {"strem": "x:1"}}},
            "agent.listen.strem: unknown key (expected one of: stream, http)",
        ),
        (
            {"agent": {"state_dir": 3, "stream": {"max_batch": "many"}}},
            "agent.stream.max_batch: Input should be a valid integer",
        ),
        ({"agent": {"listen": {"http": "localhost"}}}, "agent.listen.http: expected host:port"),
        (
            {"brevo": {"plan": "gold"}},
            "brevo.plan: Input should be 'general', 'advanced' or 'extended'",
        ),
        (
            {"agent": {"stream": {"idle_timeout": 30}}},
            "agent.stream.idle_timeout: expected a duration with a unit like 30s",
        ),
        (
            {"agent": {"stream": {"idle_timeout": "soon"}}},
            "agent.stream.idle_timeout: expected a duration like 30s",
        ),
        (
            {"agent": {"inbox_retention": "10m"}},
            "agent.inbox_retention: must be at least 1h",
        ),
        (
            {"brevo": {"dry_run": False}},
            "brevo.api_key: missing secret (set it, or env BREVO_API_KEY, or dry_run: true)",
        ),
        (
            {"connectors": {"woocommerce": {"mode": "polling"}}},
            "connectors.woocommerce: mode polling needs consumer_key and consumer_secret",
        ),
        (
            {"connectors": {"woocommerce": {"customer_mapping": {"first_name": "firstname"}}}},
            "Brevo attribute names are UPPERCASE",
        ),
        (
            {"connectors": {"woocommerce": {"customer_mapping": {"payment_method_title": "PAY"}}}},
            "is payment data, which never leaves the agent",
        ),
        (
            {
                "connectors": {
                    "woocommerce": {"webhooks": [{"topic": "order.exploded", "event": "x"}]}
                }
            },
            "unknown topic 'order.exploded'",
        ),
        (
            {"connectors": {"woocommerce": {"token_sha256": "abc"}}},
            "expected the SHA-256 of the token as 64 lowercase hex",
        ),
        ({"sites": [{"id": "a"}, {"id": "a"}]}, "site ids must be unique; repeated: a"),
        ({"sites": [{"id": "a", "colour": "red"}]}, "unknown key 'colour' in a site"),
        (
            {"brevo": {"rate_limits": {"emails": [{"count": 1, "per": "1s"}]}}},
            "unknown endpoint family 'emails'",
        ),
        (
            {"agent": {"trusted_proxies": ["127.0.0.1", "nginx.local"]}},
            "agent.trusted_proxies: expected an IP address or network such as 127.0.0.1",
        ),
    ],
)
def test_bad_config_names_key_and_expectation(
    tmp_path: Path, data: dict[str, Any], expected: str
) -> None:
    path = write_config(tmp_path / "bad.yaml", data)
    problems = problems_of(path)
    assert any(expected in p for p in problems), problems


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("agent:\n  listen:\n    stream: '127.0.0.1:1\n    http: x\n")
    (problem,) = problems_of(path)
    assert problem.startswith("YAML syntax error at line ")


def test_missing_environment_variable_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", {"brevo": {"api_key": "${MY_BREVO_KEY}"}})
    (problem,) = problems_of(path)
    assert (
        problem
        == "brevo.api_key: environment variable MY_BREVO_KEY is not set (the file says ${MY_BREVO_KEY})"
    )
    cfg = load_config(path, env={"MY_BREVO_KEY": "xkeysib-123"})
    assert cfg.brevo.api_key == "xkeysib-123"


def test_sites_override_the_woocommerce_block(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "c.yaml",
        {
            "brevo": {"api_key": "k-main"},
            "connectors": {"woocommerce": {"lists": {"all_customers": 5}, "verify_ssl": False}},
            "sites": [
                {"id": "shop1", "token_sha256": "a" * 64},
                {
                    "id": "shop2",
                    "lists": {"all_customers": 7},
                    "brevo": {"api_key": "k-agency-2"},
                    "webhook_secret": "s2",
                },
            ],
        },
    )
    cfg = load_config(path, env={})
    s1, s2 = cfg.resolved_sites()
    assert (s1.id, s1.woo.lists.all_customers, s1.woo.verify_ssl, s1.woo.token_sha256) == (
        "shop1",
        5,
        False,
        "a" * 64,
    )
    assert (s2.id, s2.woo.lists.all_customers, s2.woo.webhook_secret) == ("shop2", 7, "s2")
    assert s1.brevo.account != s2.brevo.account


def test_sites_sharing_an_account_need_distinct_id_prefixes(tmp_path: Path) -> None:
    data: dict[str, Any] = {"brevo": {"api_key": "k"}, "sites": [{"id": "a"}, {"id": "b"}]}
    problems = problems_of(write_config(tmp_path / "c.yaml", data))
    assert any("give each site its own brevo_id_prefix" in p for p in problems)
    data["sites"][1]["brevo_id_prefix"] = "b-"
    load_config(write_config(tmp_path / "c.yaml", data), env={})


def test_durations() -> None:
    assert parse_duration("30s") == 30
    assert parse_duration("15m") == 900
    assert parse_duration("2h") == 7200
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("500ms") == 0.5
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration("30")


def test_masked_hides_every_secret(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "c.yaml",
        {
            "brevo": {"api_key": "xkeysib-supersecretvalue-1234"},
            "connectors": {
                "woocommerce": {
                    "consumer_key": "ck_secretkeyvalue99",
                    "consumer_secret": "cs_secretvalue77",
                    "webhook_secret": "whsec-value-5555",
                    "token_sha256": "b" * 64,
                }
            },
        },
    )
    text = repr(masked(load_config(path, env={})))
    for secret in ("supersecretvalue", "secretkeyvalue", "cs_secretvalue", "whsec-value", "b" * 64):
        assert secret not in text


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def test_check_command_exit_codes(tmp_path: Path) -> None:
    good = run_cli(
        "check", "--config", str(ROOT / "config.example.yaml"), env={"PATH": "/usr/bin:/bin"}
    )
    assert good.returncode == 0, good.stderr
    assert "dry_run_effective: true" in good.stdout
    bad = write_config(tmp_path / "bad.yaml", {"agent": {"lisen": {}}})
    out = run_cli("check", "--config", str(bad), env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 2
    assert f"{bad}: invalid configuration" in out.stderr
    assert "agent.lisen: unknown key" in out.stderr


def test_auth_key_acts_or_is_warned(tmp_path: Path) -> None:
    woo = {"store_url": "http://shop.example", "consumer_key": "ck_x", "consumer_secret": "cs_x"}
    path = write_config(tmp_path / "a.yaml", {"connectors": {"woocommerce": woo}})
    assert load_config(path, env={}).connectors.woocommerce.auth == "auto"
    for mode in ("auto", "oauth1"):
        write_config(path, {"connectors": {"woocommerce": {**woo, "auth": mode}}})
        out = run_cli("check", "--config", str(path), env={"PATH": "/usr/bin:/bin"})
        assert out.returncode == 0 and "warning" not in out.stderr, out.stderr
    # Basic or query-string keys over http: WooCommerce ignores them, so `check` says so.
    data = {
        "connectors": {"woocommerce": {**woo, "auth": "basic"}},
        "sites": [{"id": "a"}, {"id": "b", "auth": "query"}, {"id": "c", "auth": "oauth1"}],
    }
    write_config(path, data)
    cfg = load_config(path, env={})
    assert [s.woo.auth for s in cfg.resolved_sites()] == ["basic", "query", "oauth1"]
    out = run_cli("check", "--config", str(path), env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "warning: sites[0] (a): `auth: basic` with an http:// `store_url`" in out.stderr
    assert "warning: sites[1] (b): `auth: query` with an http://" in out.stderr
    assert "(c)" not in out.stderr and "2 warning(s)" in out.stderr
    write_config(path, {"connectors": {"woocommerce": {**woo, "auth": "header"}}})
    assert "connectors.woocommerce.auth: Input should be 'auto', 'basic', 'query' or 'oauth1'" in (
        problems_of(path)
    )
