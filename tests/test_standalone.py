"""A clone anywhere passes: the tests need nothing outside the repository.

Two checks:

* `test_a_copy_alone_collects_and_passes_a_fast_subset` copies the repository as a clone would
  have it into an empty temporary folder (nothing beside it, so no sibling `shared/`), then, in
  that copy and with this interpreter, collects the whole of tests/ and runs a fast subset that
  reads every kind of fixture: the Brevo spec (the Brevo fake), the WooCommerce docs examples and
  the recorded REST and webhook bytes, and the configuration files.

  The files copied are those `git ls-files --cached --others --exclude-standard` lists, read
  from the working tree, rather than a `git clone`: a clone holds only what is committed, so it
  would test the last commit and miss a new fixture or a new path that is not committed yet.
  The listing is what a commit of the work in progress would hold (untracked files included,
  ignored ones such as .venv/ left out), so the check fails before a commit that would break a
  clone, not after.

  The virtual environment has the agent installed in editable mode, pointing at this checkout;
  PYTHONPATH puts the copy first, and a probe test in the copy checks that `agent`, `tests` and
  the fixtures it imports, and the agent a subprocess starts, all come from the copy.

* `test_nothing_names_a_path_outside_the_repository` reads every file under tests/, bench/ and
  bin/ (the recorded data in tests/fixtures/ aside) for the sibling reference folder, its
  environment variables, absolute workspace paths, and paths that climb above the repository
  root (`parents[N]`, `.parent` chains, `dirname(__DIR__, N)`, `$(dirname "$0")/..`).

The PHP suite (tests/php/run.sh) is not run in the copy; the static check covers its files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.kit import UNIT

# Fast, and between them they read every fixture folder (tests/fixtures/README.md).
SUBSET = [
    "tests/agent/test_brevo_fake.py",  # brevo/openapi.yaml through patch_spec
    "tests/agent/test_config.py",  # config.example.yaml, original-config.yaml
    "tests/agent/test_pipeline.py",  # docs-examples/ and real-10.0.2/rest/ through ref()
    "tests/agent/test_woocommerce_client.py",  # real-10.0.2/rest/ and rest/auth/
    "tests/agent/test_webhooks.py",  # real-10.0.2/webhooks/ and the docs' delivery example
    "tests/agent/test_cli.py",  # ref() objects through the real CLI
]
SCANNED = ("tests/", "bench/", "bin/")
DATA = "tests/fixtures/"  # recorded bytes, not code: they read nothing
THIS = "tests/test_standalone.py"  # spells the forbidden patterns out below

PROBE = '''\
"""Written by tests/test_standalone.py into the copy: what runs here is the copy's."""

import subprocess
import sys
from pathlib import Path

import agent
import tests
import tests.conftest
import tests.fakes.brevo

COPY = Path(__file__).resolve().parents[1]


def test_imports_and_fixtures_are_the_copys() -> None:
    for module in (agent, tests, tests.conftest, tests.fakes.brevo):
        assert Path(module.__file__).resolve().is_relative_to(COPY), module.__file__
    assert tests.conftest.REF.resolve().is_relative_to(COPY)
    assert tests.fakes.brevo.spec_path().resolve().is_relative_to(COPY)
    assert tests.fakes.brevo.spec_path().is_file()
    assert not (COPY.parent / "shared").exists()
    where = subprocess.run(
        [sys.executable, "-c", "import agent; print(agent.__file__)"],
        capture_output=True, text=True, check=True, cwd="/",
    ).stdout.strip()
    assert Path(where).resolve().is_relative_to(COPY), where
'''


def listed_files() -> list[str]:
    """What a commit of the working tree would hold: tracked and untracked, not ignored."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    # --cached still lists a file deleted but not yet committed; a clone would not have it.
    return sorted(name for name in set(out.split("\0")) if name and os.path.lexists(ROOT / name))


needs_git = pytest.mark.skipif(
    not (ROOT / ".git").exists() or shutil.which("git") is None,
    reason="not a git checkout (this is the copy itself, or an unpacked archive)",
)


def copy_as_a_clone(dest: Path) -> None:
    for name in listed_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target, follow_symlinks=False)


def clean_env(copy: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WOOBREVO_SHARED", "WOOBREVO_REFERENCE", "PYTEST_"))
        and key != "PYTHONPATH"
    }
    env["PYTHONPATH"] = str(copy)  # before the editable install, which points at ROOT
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@needs_git
@pytest.mark.timeout(int(300 * UNIT))
def test_a_copy_alone_collects_and_passes_a_fast_subset(tmp_path: Path) -> None:
    copy = tmp_path / "clone"
    copy_as_a_clone(copy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clone"]  # no shared/ beside it
    (copy / "tests" / "test_standalone_probe.py").write_text(PROBE)
    env = clean_env(copy)

    def pytest_in_copy(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout * UNIT,
        )

    collected = pytest_in_copy("--collect-only", "-q", "tests", timeout=60)
    assert collected.returncode == 0, tail(collected)
    assert re.search(r"^\d+ tests? collected", collected.stdout, re.M), tail(collected)

    ran = pytest_in_copy("-q", "tests/test_standalone_probe.py", *SUBSET, timeout=240)
    assert ran.returncode == 0, tail(ran)
    assert re.search(r"\b\d+ passed\b", ran.stdout), tail(ran)


def tail(result: subprocess.CompletedProcess[str], lines: int = 60) -> str:
    text = (result.stdout + result.stderr).splitlines()[-lines:]
    return f"exit {result.returncode}:\n" + textwrap.indent("\n".join(text), "  ")


# -------------------------------------------------------------------------- the static check

FORBIDDEN = [
    (re.compile(r"\.\.[/\\]+shared\b"), "the sibling reference folder"),
    (re.compile(r"\bshared[/\\]reference\b"), "the sibling reference folder"),
    (re.compile(r"[\"']shared[\"']"), "a path component named shared"),
    (re.compile(r"WOOBREVO_(?:SHARED|REFERENCE)_DIR"), "an override for the reference folder"),
    (re.compile(r"(?<![\w.])/wor[k]/"), "an absolute workspace path"),
    (
        re.compile(r"\b(?:ROOT|REPO|REPO_DIR|WOOBREVO_REPO_DIR)\b\s*(?:\.parent\b|/\s*[\"']\.\.)"),
        "the repository's parent folder",
    ),
    (re.compile(r"dirname\(\s*WOOBREVO_REPO_DIR"), "the repository's parent folder"),
    (re.compile(r"\$\{?REPO\}?/\.\."), "the repository's parent folder"),
]
PY_PARENTS = re.compile(r"__file__\)(?:\.resolve\(\))?\.parents\[(\d+)\]((?:\.parent\b)*)")
PY_PARENT_CHAIN = re.compile(r"__file__\)(?:\.resolve\(\))?((?:\.parent\b)+)")
PHP_DIRNAME = re.compile(r"dirname\(\s*__DIR__\s*,\s*(\d+)\s*\)")
PHP_DOTDOT = re.compile(r"__DIR__\s*\.\s*['\"]((?:/\.\.)+)")
SH_DOTDOT = re.compile(r"dirname\s+\"?\$(?:\{[^}]*\}|\w+)\"?\s*\)\"?((?:/\.\.)+)")


def offences(name: str, text: str) -> list[str]:
    """Where `text` (the file `name`, relative to the root) names a path outside the repo."""
    depth = name.count("/")  # folders between the root and the file
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{number}: {line.strip()}"
        found += [f"{where}  ({why})" for pattern, why in FORBIDDEN if pattern.search(line)]
        climbs = [int(m[1]) + m[2].count(".parent") for m in PY_PARENTS.finditer(line)]
        climbs += [m[1].count(".parent") - 1 for m in PY_PARENT_CHAIN.finditer(line)]
        ups = [int(m[1]) for m in PHP_DIRNAME.finditer(line)]
        ups += [m[1].count("..") for m in (*PHP_DOTDOT.finditer(line), *SH_DOTDOT.finditer(line))]
        # parents[depth] of the file is the root; from the file's folder, `depth` steps up is.
        if any(n > depth for n in climbs) or any(n > depth for n in ups):
            found.append(f"{where}  (climbs above the repository root)")
    return found


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("tests/conftest.py", 'SHARED = ROOT.parent / "shared"'),
        ("tests/fakes/brevo.py", 'Path(__file__).resolve().parents[2].parent / "x"'),
        ("tests/agent/doorkit.py", "X = Path(__file__).resolve().parents[3]"),
        ("bench/streamkit.py", "X = Path(__file__).parent.parent.parent"),
        ("tests/php/bootstrap.php", "define( 'X', dirname( WOOBREVO_REPO_DIR ) . '/x' );"),
        ("tests/php/bootstrap.php", "$x = dirname( __DIR__, 3 );"),
        ("tests/php/run.sh", 'X="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"'),
        ("bin/test", 'cd "$(dirname "$0")/../.."'),
        ("bench/x.py", 'Path("../shared/reference/brevo/openapi.yaml")'),
        ("tests/x.py", 'os.environ.get("WOOBREVO_SHARED_DIR")'),
    ],
)
def test_the_static_check_catches(name: str, line: str) -> None:
    assert offences(name, line)


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("tests/agent/doorkit.py", "REPO = Path(__file__).resolve().parents[2]"),
        ("bench/streamkit.py", "ROOT = Path(__file__).resolve().parents[1]"),
        ("tests/e2e/conftest.py", "HERE = Path(__file__).resolve().parent"),
        ("tests/php/bootstrap.php", "define( 'WOOBREVO_REPO_DIR', dirname( __DIR__, 2 ) );"),
        ("tests/php/run.sh", 'REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"'),
        ("bin/test", 'cd "$(dirname "$0")/.."'),
    ],
)
def test_the_static_check_lets_through(name: str, line: str) -> None:
    assert not offences(name, line)


@needs_git
def test_nothing_names_a_path_outside_the_repository() -> None:
    found, read = [], 0
    for name in listed_files():
        if not name.startswith(SCANNED) or name.startswith(DATA) or name == THIS:
            continue
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, IsADirectoryError):
            continue  # binary: certificates, images
        read += 1
        found += offences(name, text)
    assert read > 50, read  # the listing worked
    assert not found, "\n".join(found)
