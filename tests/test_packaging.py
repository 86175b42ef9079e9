"""What ships, built by `bin/package` and installed the way an operator does it (issue 15).

* The plugin zip: byte-identical from two builds, one top-level `woobrevo/` folder holding
  exactly the plugin's files (no tests, no dotfiles), and a readme.txt WordPress.org accepts.
  Installing it into WordPress is tests/e2e/test_package_e2e.py.
* The wheel and sdist: they hold every file of `agent/` (a file the agent reads at run time
  that a build left out fails here). The wheel goes into a fresh virtual environment outside the
  repository (its dependencies from the package index, as bin/test installs them), where
  `woobrevo-agent --version`, `check` on a copy of config.example.yaml and `run` (dry-run, both
  processes, /healthz answering, SIGTERM → exit 0) work; and `pipx install` of the same wheel
  gives a `woobrevo-agent` that runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import agent
from tests.conftest import ROOT
from tests.kit import UNIT

VERSION = agent.__version__
PACKAGE = ROOT / "bin" / "package"
WHEEL = f"woobrevo_agent-{VERSION}-py3-none-any.whl"
SDIST = f"woobrevo_agent-{VERSION}.tar.gz"
PLUGIN_ZIP = f"woobrevo-{VERSION}.zip"
# What WordPress loads; the rest of wp-plugin/ (none today) stays out of the zip.
SHIPS = ("woobrevo.php", "uninstall.php", "readme.txt", "includes", "assets", "languages")


def _package(out: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(PACKAGE), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600 * UNIT,
        check=False,
    )
    assert done.returncode == 0, f"bin/package failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full `bin/package` build for the module."""
    out = tmp_path_factory.mktemp("dist")
    printed = _package(out)
    for name in (WHEEL, SDIST, PLUGIN_ZIP):
        digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
        size = (out / name).stat().st_size
        assert re.search(rf"{re.escape(name)}\s+{size} bytes\s+sha256 {digest}", printed), printed
        assert f"{digest}  {name}\n" in (out / "SHA256SUMS").read_text()
    return out


# -- the plugin zip -----------------------------------------------------------------------


def _shipped_files() -> dict[str, bytes]:
    """woobrevo/<path> → bytes for every file of wp-plugin/ that ships."""
    out = {}
    for top in SHIPS:
        path = ROOT / "wp-plugin" / top
        files = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        for f in files:
            rel = f.relative_to(ROOT / "wp-plugin")
            if f.is_file() and not any(p.startswith(".") for p in rel.parts):
                out[f"woobrevo/{rel.as_posix()}"] = f.read_bytes()
    return out


def test_the_plugin_zip_is_the_plugin_folder_and_nothing_else(dist: Path) -> None:
    with zipfile.ZipFile(dist / PLUGIN_ZIP) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        files = {n: zf.read(n) for n in names if not n.endswith("/")}
        modes = {n: zf.getinfo(n).external_attr >> 16 for n in names}
    assert names == sorted(names)
    assert all(n.startswith("woobrevo/") for n in names)
    assert files == _shipped_files()
    assert {"woobrevo/woobrevo.php", "woobrevo/uninstall.php", "woobrevo/readme.txt"} <= set(files)
    assert any(n.startswith("woobrevo/includes/") for n in files)
    assert any(n.startswith("woobrevo/assets/") for n in files)
    assert not [n for n in names if re.search(r"(^|/)(\.|tests?/|phpunit)", n)]
    assert {m for n, m in modes.items() if not n.endswith("/")} == {0o100644}
    assert {m for n, m in modes.items() if n.endswith("/")} == {0o40755}


def test_two_builds_of_the_zip_are_byte_identical(dist: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    _package(again, "--only", "plugin")
    assert (again / PLUGIN_ZIP).read_bytes() == (dist / PLUGIN_ZIP).read_bytes()
    assert sorted(p.name for p in again.iterdir()) == ["SHA256SUMS", PLUGIN_ZIP]


def _readme_sections(text: str) -> dict[str, str]:
    parts = re.split(r"^== (.+?) ==\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_readme_is_a_wordpress_org_readme() -> None:
    """The plugin directory's readme format: title, header fields, a short description of at
    most 150 characters, then its sections; `Stable tag` is the version being shipped."""
    text = (ROOT / "wp-plugin" / "readme.txt").read_text()
    head, _, _ = text.partition("\n== ")
    lines = head.splitlines()
    assert re.fullmatch(r"=== WooBrevo ===", lines[0])
    fields = dict(ln.split(": ", 1) for ln in lines[1 : lines.index("")])
    for key in ("Contributors", "Tags", "Requires at least", "Tested up to", "Requires PHP"):
        assert fields.get(key), f"readme.txt: no {key}:"
    assert fields["Stable tag"] == VERSION
    assert fields["License"] and fields["License URI"].startswith("https://")
    assert len([t for t in fields["Tags"].split(",") if t.strip()]) <= 5  # more are ignored
    php = (ROOT / "wp-plugin" / "woobrevo.php").read_text()
    for readme_key, header_key in (
        ("Requires at least", "Requires at least"),
        ("Requires PHP", "Requires PHP"),
    ):
        assert re.search(
            rf"^\s*\*\s*{header_key}:\s*{re.escape(fields[readme_key])}\s*$", php, re.M
        )
    short = [ln for ln in lines[lines.index("") :] if ln.strip()]
    assert len(short) == 1 and 0 < len(short[0]) <= 150, short

    sections = _readme_sections(text)
    expected = [
        "Description",
        "Installation",
        "Frequently Asked Questions",
        "Changelog",
        "Upgrade Notice",
    ]
    assert [s for s in sections if s in expected] == expected
    assert set(sections) <= {*expected, "Screenshots"}, "other sections are not shown"
    install = sections["Installation"]
    for needle in ("Upload Plugin", ".zip", "token create", "agent URL", "Test connection"):
        assert needle in install, f"Installation does not say {needle!r}"
    assert re.search(r"^= .+\? =$", sections["Frequently Asked Questions"], re.M)
    assert re.findall(r"^= (\S+) =$", sections["Changelog"], re.M)[0] == VERSION
    notices = re.split(r"^= \S+ =\n", sections["Upgrade Notice"], flags=re.M)[1:]
    assert notices and all(len(n.strip()) <= 300 for n in notices)


# -- the agent's wheel and sdist -------------------------------------------------------------


def _agent_files() -> set[str]:
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "agent").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_the_wheel_and_sdist_hold_all_of_the_agent(dist: Path) -> None:
    with zipfile.ZipFile(dist / WHEEL) as zf:
        names = set(zf.namelist())
        meta = zf.read(f"woobrevo_agent-{VERSION}.dist-info/METADATA").decode()
        entry_points = zf.read(f"woobrevo_agent-{VERSION}.dist-info/entry_points.txt").decode()
    assert _agent_files() <= names, sorted(_agent_files() - names)
    assert not [n for n in names if n.startswith(("tests/", "bench/", "wp-plugin/"))]
    assert f"\nVersion: {VERSION}\n" in meta
    assert "woobrevo-agent = agent.cli:main" in entry_points
    with tarfile.open(dist / SDIST) as tf:
        in_sdist = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert _agent_files() | {"pyproject.toml", "README.md"} <= in_sdist


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would point a program at the repository or at Brevo."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "BREVO_API_KEY", "PIP_REQUIRE_VIRTUALENV")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def _run(argv: list[str], cwd: Path, timeout: float = 60, **env: str) -> str:
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout * UNIT,
        check=False,
    )
    assert done.returncode == 0, (
        f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment, outside the repository, with only the wheel installed."""
    home = tmp_path_factory.mktemp("operator")
    env = home / "venv"
    _run([sys.executable, "-m", "venv", str(env)], cwd=home)
    pip = [str(env / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "--quiet", str(dist / WHEEL)], cwd=home, timeout=600)
    yield env


@pytest.mark.timeout(900)
def test_the_wheel_installs_and_runs_in_a_fresh_venv(venv: Path, tmp_path: Path) -> None:
    exe = venv / "bin" / "woobrevo-agent"
    assert _run([str(exe), "--version"], cwd=tmp_path).strip() == f"woobrevo-agent {VERSION}"
    share = venv / "share" / "woobrevo"
    assert (share / "woobrevo-agent.service").read_bytes() == (
        ROOT / "packaging" / "woobrevo-agent.service"
    ).read_bytes()
    assert (share / "config.example.yaml").is_file()
    where = _run(
        [str(venv / "bin" / "python"), "-c", "import agent; print(agent.__file__)"], cwd=tmp_path
    )
    assert Path(where.strip()).is_relative_to(venv), where

    # config.example.yaml as an operator copies it; only its ports are changed, to free ones.
    stream, http = _free_port(), _free_port()
    text = (ROOT / "config.example.yaml").read_text()
    assert text.count('"127.0.0.1:8765"') == 1 and text.count('"127.0.0.1:8766"') == 1
    text = text.replace('"127.0.0.1:8765"', f'"127.0.0.1:{stream}"')
    config = tmp_path / "config.yaml"
    config.write_text(text.replace('"127.0.0.1:8766"', f'"127.0.0.1:{http}"'))
    checked = _run([str(exe), "check", "--config", str(config)], cwd=tmp_path)
    assert f"127.0.0.1:{stream}" in checked

    log = (tmp_path / "agent.log").open("w")
    proc = subprocess.Popen(
        [str(exe), "run", "--config", str(config)],
        cwd=tmp_path,
        env=_clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{http}"
        assert _wait_for(proc, f"{base}/healthz", tmp_path / "agent.log") == b'{"ok": true}'
        # Ready: the store takes writes and the worker process (Brevo, dry-run) is up.
        assert b'"ready": true' in _wait_for(proc, f"{base}/readyz", tmp_path / "agent.log")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60 * UNIT) == 0, (tmp_path / "agent.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert (tmp_path / "state").is_dir()  # state_dir "./state", from the operator's folder


def _wait_for(proc: subprocess.Popen[bytes], url: str, log: Path) -> bytes:
    """The body of the first 200 answer of `url`, while the agent runs."""
    deadline = time.monotonic() + 60 * UNIT
    while True:
        assert proc.poll() is None, f"the agent exited {proc.returncode}:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body: bytes = r.read()
                return body
        except OSError:  # refused, or an HTTP error status (not ready yet)
            assert time.monotonic() < deadline, f"no 200 from {url}:\n{log.read_text()}"
            time.sleep(0.1)


@pytest.mark.timeout(900)
def test_pipx_installs_the_wheel(dist: Path, tmp_path: Path) -> None:
    pipx_env = {
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
    }
    _run(
        [sys.executable, "-m", "pipx", "install", str(dist / WHEEL)],
        cwd=tmp_path,
        timeout=600,
        **pipx_env,
    )
    exe = tmp_path / "bin" / "woobrevo-agent"
    out = _run([str(exe), "--version"], cwd=tmp_path, **pipx_env)
    assert out.strip() == f"woobrevo-agent {VERSION}"
    listed = _run([sys.executable, "-m", "pipx", "list", "--short"], cwd=tmp_path, **pipx_env)
    assert f"woobrevo-agent {VERSION}" in listed
