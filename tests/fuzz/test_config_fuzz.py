"""Fuzzing the config loader: random YAML documents, mutations of config.example.yaml (of its
data and of its text), and YAML's sharp edges (aliases, tags, merge keys, deep nesting, huge
scalars, several documents, `${VAR}` references). `load_config` must return a Config or raise
ConfigError with a message, never another exception, within a time and memory bound per
document; `woobrevo-agent check` must print a config or the reasons, never a traceback.

The loader runs in a worker process (tests/fuzz/config_worker.py): a document that hangs or
eats memory is killed there and reported as the failing input.
"""

from __future__ import annotations

import json
import select
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel

from agent.config import Config
from tests.conftest import ROOT
from tests.fuzz.budget import TIMEOUT, fuzz
from tests.kit import UNIT

PER_DOCUMENT = 5.0  # seconds (time units) one document may take to load or be refused
PEAK_BUDGET_MB = 300.0  # the worker's peak resident set over what one good config costs
CHECK_TIMEOUT = 30.0  # one `woobrevo-agent check` (a Python start included)
EXAMPLE = (ROOT / "config.example.yaml").read_text()


def _keys(model: type[BaseModel], out: set[str], seen: set[type[BaseModel]]) -> set[str]:
    """Every field name of the config's models, nested ones too: the keys worth mutating."""
    seen.add(model)
    for name, info in model.model_fields.items():
        out.add(name)
        todo = [info.annotation]
        while todo:  # through Optional, tuple[...], list[...], dict[...]
            kind = todo.pop()
            todo.extend(getattr(kind, "__args__", ()))
            if isinstance(kind, type) and issubclass(kind, BaseModel) and kind not in seen:
                _keys(kind, out, seen)
    return out


KEYS = sorted(_keys(Config, set(), set()) - {"source", "file_bytes", "digest"})

# -- documents ---------------------------------------------------------------------------------

texts = st.text(max_size=30)
scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | texts
    | st.sampled_from(["127.0.0.1:0", "[::1]:0", "30s", "2d", "-1s", "${FUZZ_VAR}", "${NOPE}",
                       "${", "$${FUZZ_VAR}", "general", "process", "json", "https://x.example"])
)  # fmt: skip
keys = st.sampled_from(KEYS) | texts
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)
trees = st.dictionaries(st.sampled_from(["agent", "brevo", "connectors", "sites"]) | keys, values)


def _dump(data: Any, flow: bool) -> bytes:
    return yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True).encode()


@st.composite
def random_documents(draw: st.DrawFn) -> bytes:
    return _dump(draw(trees), draw(st.booleans()))


def _paths(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*at, i))


@st.composite
def example_mutations(draw: st.DrawFn) -> bytes:
    """config.example.yaml's data with 1-4 keys deleted, replaced, added or wrapped."""
    data = yaml.safe_load(EXAMPLE)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(data))[1:]
        if not paths:  # everything was deleted
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        last, how = path[-1], draw(st.sampled_from(["delete", "replace", "add", "wrap"]))
        if how == "delete":
            del parent[last]
        elif how == "replace":
            parent[last] = draw(values)
        elif how == "wrap":
            parent[last] = [parent[last]] if draw(st.booleans()) else {"x": parent[last]}
        elif isinstance(parent, dict):
            parent[draw(keys)] = draw(values)
        else:
            parent.append(draw(values))
    if draw(st.booleans()):
        data["sites"] = draw(
            st.lists(st.fixed_dictionaries({"id": st.sampled_from(["a", "b", "A", "", "a" * 70])},
                                           optional={k: values for k in ("token_sha256", "mode", "brevo", "store_url")}),
                     max_size=3)
        )  # fmt: skip
    return _dump(data, draw(st.booleans()))


SNIPPETS = [
    "!!python/object/apply:os.system ['true']", "!!binary aGVsbG8=", "!!set {a, b}",
    "!!timestamp 2001-12-14", "!!float .nan", ".inf", "&a x", "*a", "*undefined", "<<: *a",
    "? [a, b]\n: c", "? {a: 1}\n: c", "--- \n", "...\n", "%YAML 1.1\n---\n", "%TAG ! tag:x,2000:\n",
    "\t", "'", '"', "{", "[", "}", "]", ": ", "- ", "# ", "|\n", ">-\n", "\x00", "\ufeff", "\u2028",
    "0x1F", "0o17", "1_000", "1e999", "-.inf", "~", "yes", "on", "2026-13-45", "${", "${X",
    "${FUZZ_VAR}", "${BREVO_API_KEY}", "\U0001f600", "\r", "\r\n", "\\", "@", "`",
]  # fmt: skip


@st.composite
def text_mutations(draw: st.DrawFn) -> bytes:
    """config.example.yaml's text with bytes, YAML constructs or whole lines spliced in."""
    raw = EXAMPLE.encode()
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(raw)))
        how = draw(st.sampled_from(["snippet", "bytes", "delete", "line", "truncate"]))
        if how == "snippet":
            raw = raw[:at] + draw(st.sampled_from(SNIPPETS)).encode() + raw[at:]
        elif how == "bytes":
            raw = raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
        elif how == "delete":
            raw = raw[:at] + raw[at + draw(st.integers(1, 40)) :]
        elif how == "line":
            lines = raw.split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[j])
            raw = b"\n".join(lines)
        else:
            raw = raw[:at]
    return raw


@st.composite
def sharp_edges(draw: st.DrawFn) -> bytes:
    """Aliases in chains (finding 7: a small file that expands to millions of nodes), deep
    nesting, huge scalars, many documents, odd keys."""
    how = draw(st.sampled_from(["aliases", "deep flow", "deep block", "huge", "documents", "keys"]))
    if how == "aliases":
        width, depth = draw(st.integers(1, 9)), draw(st.integers(1, 9))
        lines = ["x0: &a0 [x]"] + [
            f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)
        ]
        if draw(st.booleans()):  # used where the loader reads a list
            lines.append(f"agent: {{trusted_proxies: *a{depth - 1}}}")
        return ("\n".join(lines) + "\n").encode()
    if how == "deep flow":
        n = draw(st.integers(50, 5000))
        return ("agent: " + "[" * n + "]" * n + "\n").encode()
    if how == "deep block":
        n = draw(st.integers(50, 1500))
        return "".join(f"{' ' * i}k{i}:\n" for i in range(n)).encode()
    if how == "huge":
        n = draw(st.integers(1000, 2_000_000))
        return f"brevo:\n  api_key: {'k' * n}\nagent:\n  state_dir: '{'/' * (n // 10)}'\n".encode()
    if how == "documents":
        return ("agent: {}\n---\n" * draw(st.integers(2, 200))).encode()
    odd = draw(st.sampled_from(["1: x", "null: x", "[a]: x", "{a: 1}: x", "? !!binary aGk=\n: x",
                                "agent: {listen: {1: 2}}", "sites: [{id: a}, {id: a}]",
                                "sites: {id: a}", "sites: [[]]", "agent: {state_dir: \"\\0\"}"]))  # fmt: skip
    return (odd + "\n").encode()


documents = random_documents() | example_mutations() | text_mutations() | sharp_edges()

# -- the loader, in its own process ------------------------------------------------------------


class Loader:
    """The worker process: `load(doc)` → its JSON answer; a document that takes longer than
    PER_DOCUMENT kills it (a fresh one takes the next document) and fails the example."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "config.yaml"
        self.proc: subprocess.Popen[bytes] | None = None
        self.baseline_mb = 0.0
        self.slowest = (0.0, b"")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz.config_worker", str(self.path)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        answer = self.load(EXAMPLE.encode())
        assert answer["outcome"] == "config", answer
        self.baseline_mb = float(answer["peak_mb"])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()

    def load(self, doc: bytes) -> dict[str, Any]:
        proc = self.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(struct.pack("!I", len(doc)) + doc)
        proc.stdin.flush()
        limit = PER_DOCUMENT * UNIT
        ready, _, _ = select.select([proc.stdout], [], [], limit)
        if not ready:
            self.stop()
            self.start()
            raise AssertionError(f"the loader took more than {limit:g}s on a {len(doc)}-byte file")
        line = proc.stdout.readline()
        assert line, f"the loader process died (exit {proc.wait()}) on a {len(doc)}-byte file"
        answer: dict[str, Any] = json.loads(line)
        if answer["seconds"] > self.slowest[0]:
            self.slowest = (answer["seconds"], doc[:200])
        return answer


@pytest.fixture(scope="module")
def loader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loader]:
    worker = Loader(tmp_path_factory.mktemp("fuzz-config"))
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


# Found by this target (shrunk); hypothesis runs them first, on every run:
# - flow sequences nested ~490 deep: PyYAML's composer recurses, RecursionError escapes.
# - an explicit tag on a scalar it cannot construct: PyYAML raises ValueError (`!!int x`,
#   `!!float .nan#`), KeyError (`!!bool x`) or AttributeError (`!!timestamp x`), not a
#   YAMLError, and load_config lets it through.
# - finding 7's alias bomb: 9 levels of 7 aliases, 364 bytes, runs past the time bound.
DEEP = b"agent: " + b"[" * 500 + b"]" * 500 + b"\n"
BOMB = "".join(
    ["x0: &a0 [x]\n"] + [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 7)}]\n" for i in range(1, 9)]
).encode()


@fuzz(examples=300, deadline=2 * PER_DOCUMENT)
@example(doc=DEEP)
@example(doc=b"agent: !!int x\n")
@example(doc=b"agent: !!float .nan#\n")
@example(doc=b"agent: !!bool x\n")
@example(doc=b"agent: !!timestamp 2001-12-14#\n")
@example(doc=BOMB)
@given(doc=documents)
def _loads(loader: Loader, doc: bytes) -> None:
    answer = loader.load(doc)
    assert answer["outcome"] != "other", (
        f"load_config raised {answer['type']}: {answer['message'][:500]}"
    )
    if answer["outcome"] == "config_error":
        message = answer["message"]
        assert message.startswith(f"{loader.path}: invalid configuration\n  - "), message
        assert "Traceback" not in message, message
    grown = answer["peak_mb"] - loader.baseline_mb
    assert grown <= PEAK_BUDGET_MB, f"loading took the process {grown:.0f} MB over its start"


@pytest.mark.attack("fuzz: random and mutated YAML configs load or are refused with a reason")
@pytest.mark.timeout(TIMEOUT)
def test_the_config_loader_returns_a_config_or_a_config_error(loader: Loader) -> None:
    _loads(loader)
    print(f"config fuzz: slowest document {loader.slowest[0]:.3f}s ({loader.slowest[1]!r:.80})")


@fuzz(examples=4, deadline=2 * CHECK_TIMEOUT)
@example(doc=b"agent: !!int x\n")
@given(doc=documents)
def _checks(folder: Path, doc: bytes) -> None:
    path = folder / "config.yaml"
    path.write_bytes(doc)
    start = time.monotonic()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "agent.cli", "check", "--config", str(path)],
            cwd=ROOT, capture_output=True, timeout=CHECK_TIMEOUT * UNIT, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise AssertionError(f"check ran over {CHECK_TIMEOUT * UNIT:g}s") from None
    stderr = out.stderr.decode(errors="replace")
    assert out.returncode in (0, 2), (out.returncode, stderr[-2000:])
    assert "Traceback" not in stderr, stderr[-3000:]
    if out.returncode == 2:
        assert f"{path}: invalid configuration" in stderr, stderr
    assert time.monotonic() - start < CHECK_TIMEOUT * UNIT


@pytest.mark.attack("fuzz: `woobrevo-agent check` on fuzzed configs prints no traceback")
@pytest.mark.timeout(TIMEOUT)
def test_check_prints_a_config_or_the_reasons(tmp_path: Path) -> None:
    _checks(tmp_path)
