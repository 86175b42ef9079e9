"""The plugin zip that `bin/package` builds goes into WordPress through "Upload Plugin" (issue 15).

The WordPress is the test WordPress of `tests/php/run.sh --setup-only` (the `wp_env` fixture),
copied with a database of its own and without the plugin: in the test WordPress the plugin is a
symlink to wp-plugin/, and the other e2e tests share that one. The copy keeps its WooCommerce
(the double, a must-use plugin; or the real one of WOOBREVO_WC_DIR, activated and installed in
the new database as `run.sh` does: WooBrevo goes into a store that runs WooCommerce) and test
settings. Into it, `Plugin_Upgrader::install()` (what wp-admin's
update.php?action=upload-plugin runs) installs the zip; `activate_plugin()` activates it (the
Activate link); then a wp-admin request as the administrator builds the menu and finds and
renders the plugin's settings page. Each step is its own PHP process (tests/e2e/wp_package.php),
as each is its own request in a browser.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agent
from tests.e2e.conftest import REPO
from tests.kit import UNIT

VERSION = agent.__version__
SCRIPT = Path(__file__).resolve().parent / "wp_package.php"
INSTALL = REPO / "tests" / "php" / "wp-env" / "install.php"


def _sql(env: dict[str, str], statement: str) -> None:
    subprocess.run(
        [
            "mariadb",
            "--no-defaults",
            f"--socket={env['WOOBREVO_DB_SOCKET']}",
            f"-u{env['WOOBREVO_DB_USER']}",
            f"-p{env['WOOBREVO_DB_PASSWORD']}",
            "-e",
            statement,
        ],
        check=True,
        capture_output=True,
        timeout=60 * UNIT,
    )


@pytest.fixture
def wordpress(wp_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh single-site WordPress with no WooBrevo: its folder and the environment for PHP."""
    wp = tmp_path / "wordpress"
    shutil.copytree(wp_env["WOOBREVO_WP_SINGLE"], wp, symlinks=True)
    link = wp / "wp-content" / "plugins" / "woobrevo"
    assert link.is_symlink()  # the test WordPress's own plugin: not in this one
    link.unlink()
    db = f"wp_package_{os.getpid()}"
    _sql(wp_env, f"DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} CHARACTER SET utf8mb4")
    config = wp / "wp-config.php"
    text = config.read_text()
    old = f"define( 'DB_NAME', '{wp_env['WOOBREVO_DB_SINGLE']}' );"
    assert text.count(old) == 1
    config.write_text(text.replace(old, f"define( 'DB_NAME', '{db}' );"))
    env = {**os.environ, "WOOBREVO_WP_DIR": str(wp), "WOOBREVO_WP_PATH": "/"}
    env["WOOBREVO_WP_LOADER"] = wp_env["WOOBREVO_WP_LOADER"]
    try:
        _install_step(wp, env, "single")
        if (wp / "wp-content" / "plugins" / "woocommerce").exists():  # a real WooCommerce
            activated = _php(env, "activate", "woocommerce/woocommerce.php")
            assert activated["result"] is True, activated
            _install_step(wp, env, "wc-install")
        yield wp, env
    finally:
        _sql(wp_env, f"DROP DATABASE IF EXISTS {db}")


def _install_step(wp: Path, env: dict[str, str], step: str) -> None:
    """One step of tests/php/wp-env/install.php (`single`: WordPress; `wc-install`: WooCommerce's
    tables and options, with a real WooCommerce)."""
    done = subprocess.run(
        ["php", str(INSTALL), str(wp), step],
        env=env,
        capture_output=True,
        text=True,
        timeout=300 * UNIT,
        check=False,
    )
    assert "WOOBREVO-STEP-OK" in done.stdout, done.stdout + done.stderr


def _php(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        ["php", str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120 * UNIT,
        check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert done.returncode == 0 and lines, f"php {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _build_zip(out: Path) -> Path:
    built = subprocess.run(
        [sys.executable, str(REPO / "bin" / "package"), "--out", str(out), "--only", "plugin"],
        capture_output=True,
        text=True,
        timeout=120 * UNIT,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return out / f"woobrevo-{VERSION}.zip"


@pytest.mark.timeout(1800)
def test_the_zip_installs_activates_and_shows_its_settings_page(
    wordpress: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    wp, env = wordpress
    plugin_dir = wp / "wp-content" / "plugins" / "woobrevo"
    before = _php(env, "state")
    assert before["plugin"] is None and not plugin_dir.exists() and before["tables"] == []

    built = _build_zip(tmp_path / "dist")
    upload = tmp_path / "upload" / built.name  # the upgrader deletes what it unpacked
    upload.parent.mkdir()
    shutil.copy2(built, upload)
    installed = _php(env, "install", str(upload))
    assert installed["result"] is True, installed
    assert installed["plugin"] == "woobrevo/woobrevo.php", installed
    assert any("installed successfully" in m for m in installed["messages"]), installed

    # The folder WordPress made holds the zip's files, byte for byte, and is no link.
    assert plugin_dir.is_dir() and not plugin_dir.is_symlink()
    with zipfile.ZipFile(built) as zf:
        shipped = {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    on_disk = {
        f"woobrevo/{p.relative_to(plugin_dir).as_posix()}": p.read_bytes()
        for p in plugin_dir.rglob("*")
        if p.is_file()
    }
    assert on_disk == shipped

    listed = _php(env, "state")
    assert listed["plugin"]["Name"] == "WooBrevo" and listed["plugin"]["Version"] == VERSION
    assert listed["active"] is False and listed["tables"] == []

    activated = _php(env, "activate", "woobrevo/woobrevo.php")
    assert activated["result"] is True, activated
    assert activated["tables_before"] == []
    assert set(activated["tables"]) == {"wp_woobrevo_outbox", "wp_woobrevo_carts"}
    assert activated["schema_version"] == activated["schema_current"] > 0

    admin = _php(env, "admin")
    assert admin["version"] == VERSION
    # Under WooCommerce's top-level menu (the double has the same one).
    assert [(p["parent"], p["title"]) for p in admin["pages"]] == [("woocommerce", "WooBrevo")], (
        admin["pages"]
    )
    assert admin["pages"][0]["hook"]
    page = admin["html"]
    for needle in ("<h1>WooBrevo</h1>", 'name="woobrevo_agent_url"', "Test connection"):
        assert needle in page, f"the settings page has no {needle!r}:\n{page[:2000]}"

    assert _php(env, "state")["active"] is True
