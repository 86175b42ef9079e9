"""One version for the agent and the plugin (issue 15, "Packaging").

`agent/__init__.py`'s `__version__` is the source; every other place that carries the version is
read here on its own (not through bin/bump-version, whose readers are checked too): the
installed metadata, `woobrevo-agent --version`, the agent's User-Agent headers, the plugin's
header and WOOBREVO_VERSION (which its hello frames send), and readme.txt's stable tag, newest
changelog and upgrade-notice entries. bin/bump-version is run on a copy and must move all of
them at once, and its --check must catch a place left behind.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import agent
from agent.forward.brevo import BrevoClient
from agent.woocommerce.client import USER_AGENT
from tests.conftest import ROOT

BUMP = ROOT / "bin" / "bump-version"
# The files bin/bump-version writes, relative to the repository root.
VERSIONED = ("agent/__init__.py", "wp-plugin/woobrevo.php", "wp-plugin/readme.txt")


def _one(pattern: str, text: str, what: str) -> str:
    found = re.findall(pattern, text, re.M)
    assert len(found) == 1, f"{what}: {len(found)} matches of {pattern!r}"
    return str(found[0])


def _readme_entries(readme: str, section: str) -> list[str]:
    m = re.search(rf"^== {section} ==\n(.*?)(?=^== |\Z)", readme, re.M | re.S)
    assert m, f"readme.txt has no == {section} =="
    return re.findall(r"^= (\S+) =$", m[1], re.M)


def versions_in(root: Path) -> dict[str, str]:
    """Every place of the repository at `root` that writes the version, read on its own."""
    init = (root / "agent" / "__init__.py").read_text()
    php = (root / "wp-plugin" / "woobrevo.php").read_text()
    readme = (root / "wp-plugin" / "readme.txt").read_text()
    header = php[: php.index("*/")]
    return {
        "agent.__version__": _one(r'^__version__ = "([^"]+)"$', init, "agent/__init__.py"),
        "plugin header Version:": _one(r"^\s*\*\s*Version:\s*(\S+)\s*$", header, "header"),
        "WOOBREVO_VERSION": _one(
            r"define\(\s*'WOOBREVO_VERSION',\s*'([^']+)'\s*\)", php, "WOOBREVO_VERSION"
        ),
        "readme.txt Stable tag:": _one(r"^Stable tag:\s*(\S+)\s*$", readme, "Stable tag"),
        "readme.txt newest changelog": _readme_entries(readme, "Changelog")[0],
        "readme.txt newest upgrade notice": _readme_entries(readme, "Upgrade Notice")[0],
    }


def test_every_place_carries_the_one_version() -> None:
    version = agent.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert versions_in(ROOT) == dict.fromkeys(versions_in(ROOT), version)
    # bin/test reinstalls the package before pytest, so its metadata is read from the source.
    assert importlib.metadata.version("woobrevo-agent") == version
    # Both HTTP clients name the agent's version to the servers they call.
    assert USER_AGENT.startswith(f"WooBrevo-Agent/{version} ")
    assert BrevoClient("http://127.0.0.1:9", None).user_agent == f"woobrevo-agent/{version}"


def test_the_command_line_prints_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip() == f"woobrevo-agent {agent.__version__}"


def test_pyproject_has_no_copy_of_its_own() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "agent.__version__"}


def _call_args(source: str, call: str) -> list[list[str]]:
    """The top-level arguments of each `call(...)` in PHP source (no strings with parentheses)."""
    out = []
    for m in re.finditer(re.escape(call) + r"\s*\(", source):
        depth, args, current = 1, [], ""
        for ch in source[m.end() :]:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                break
            if ch == "," and depth == 1:
                args.append(current.strip())
                current = ""
            else:
                current += ch
        out.append([*args, current.strip()])
    return out


def test_the_plugin_says_hello_with_its_constant() -> None:
    """Each hello frame's plugin_version (the third argument) is WOOBREVO_VERSION."""
    calls = [
        args
        for path in sorted((ROOT / "wp-plugin").rglob("*.php"))
        for args in _call_args(path.read_text(), "WooBrevo_Protocol::hello")
        if args != [""]  # `WooBrevo_Protocol::hello()` named in a doc comment
    ]
    assert len(calls) >= 2  # the shipper's and the privacy requests'
    for args in calls:
        assert len(args) == 5 and "WOOBREVO_VERSION" in args[2], args


def test_no_other_copy_of_the_version() -> None:
    """The version's digits appear nowhere else in the shipped code, where they would go stale at
    the next bump (`@since` tags keep the version that added a hook, and should)."""
    version = agent.__version__
    allowed = {
        ("agent/__init__.py", f'__version__ = "{version}"'),
        ("wp-plugin/woobrevo.php", f" * Version:           {version}"),
        ("wp-plugin/woobrevo.php", f"define( 'WOOBREVO_VERSION', '{version}' );"),
    }
    stray = []
    files = [*(ROOT / "agent").rglob("*.py"), *(ROOT / "wp-plugin").rglob("*.php")]
    for path in sorted(files):
        rel = path.relative_to(ROOT).as_posix()
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if version in line and (rel, line) not in allowed and "@since" not in line:
                stray.append(f"{rel}:{n}: {line.strip()}")
    assert stray == []


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for rel in VERSIONED:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    return tmp_path


def _bump(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BUMP), "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_bump_version_moves_every_place(copy: Path) -> None:
    before = (copy / "wp-plugin" / "readme.txt").read_text()
    refused = _bump(copy, "9.8.7")
    assert refused.returncode != 0 and "--note" in refused.stderr
    assert (copy / "wp-plugin" / "readme.txt").read_text() == before  # nothing half-written

    done = _bump(copy, "9.8.7", "--note", "A test release.")
    assert done.returncode == 0, done.stderr
    assert set(versions_in(copy).values()) == {"9.8.7"}
    readme = (copy / "wp-plugin" / "readme.txt").read_text()
    assert "= 9.8.7 =\n* A test release.\n\n= " in readme
    assert "= 9.8.7 =\nA test release.\n\n= " in readme
    # The older entries stay, below the new one.
    assert _readme_entries(readme, "Changelog")[1:] == _readme_entries(before, "Changelog")
    # Bumping again to the same version changes nothing.
    again = _bump(copy, "9.8.7")
    assert again.returncode == 0 and (copy / "wp-plugin" / "readme.txt").read_text() == readme


def test_bump_version_check_names_the_place_left_behind(copy: Path) -> None:
    assert _bump(copy, "--check").returncode == 0
    php = copy / "wp-plugin" / "woobrevo.php"
    php.write_text(re.sub(r"(WOOBREVO_VERSION', ')[^']+", r"\g<1>0.0.1", php.read_text()))
    out = _bump(copy, "--check")
    assert out.returncode == 1
    assert re.search(r"WOOBREVO_VERSION\s+0\.0\.1$", out.stdout, re.M), out.stdout
    assert "the versions differ" in out.stderr
    assert _bump(copy, "1.2").returncode == 2  # not X.Y.Z
