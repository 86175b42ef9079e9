"""The layers hold (issue 12): the core stays pure, `agent.app` is the one composition root,
and agent/'s modules import one another without a cycle.

Config, store, doors and clients are shells around the core (docs: DESIGN.md "Shape of the
code"); a core module that reached out to one of them could no longer be tested as data in,
data out. `App` builds every component and hands each what it uses: a component that imported
it again would be back to reaching into a service locator, behind an import cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Set
from pathlib import Path

from tests.conftest import ROOT

# The commands that run an agent: they build the App (nothing else in agent/ may import it).
ENTRY_POINTS = {"agent.cli.main", "agent.cli.sync"}


def _agent_imports(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("agent")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agent"):
            out.add(node.module or "")
    return out


def test_the_core_imports_only_the_core() -> None:
    outside = {
        str(p.relative_to(ROOT)): sorted(
            m for m in _agent_imports(str(p.relative_to(ROOT))) if not m.startswith("agent.core")
        )
        for p in sorted((ROOT / "agent" / "core").glob("*.py"))
    }
    assert {k: v for k, v in outside.items() if v} == {}


# The core decides; the shells do I/O. These would let a decision wait, write or log.
SHELL_MODULES = {"asyncio", "logging", "sqlite3", "socket", "aiohttp", "websockets", "subprocess"}


def test_the_core_does_no_io_and_logs_nothing() -> None:
    found = {}
    for p in sorted((ROOT / "agent" / "core").glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        if names & SHELL_MODULES:
            found[p.name] = sorted(names & SHELL_MODULES)
    assert found == {}, f"the core returns warnings and actions instead: {found}"


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module → the agent modules it imports: every import statement, at module level, inside
    a function or under `if TYPE_CHECKING` alike (an import deferred to dodge a cycle still
    makes one). `from package import name` counts as importing `package.name` when that is a
    module, else `package`."""
    files = {_module(p): p for p in sorted((ROOT / "agent").rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package `level - 1` steps up
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in files else base)
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def _knots(graph: Mapping[str, Set[str]]) -> list[list[str]]:
    """The modules tied in import cycles, one sorted list per knot (the strongly connected
    components of more than one module: Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    knots: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                knots.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(knots)


def _way_round(graph: Mapping[str, Set[str]], component: list[str]) -> list[str]:
    start, members = component[0], set(component)
    came_from: dict[str, str] = {}
    queue = [start]
    for v in queue:  # breadth first: the shortest cycle through `start`
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if w not in came_from:
                came_from[w] = v
                queue.append(w)
    raise AssertionError(f"no way round {component}")  # a component always has one


def test_only_the_entry_points_import_the_app() -> None:
    importers = sorted(m for m, deps in _import_graph().items() if "agent.app" in deps)
    assert [m for m in importers if m not in ENTRY_POINTS] == []


def test_agent_imports_have_no_cycle() -> None:
    graph = _import_graph()
    found = [
        f"{' -> '.join(_way_round(graph, knot))}\n  (tied in one knot: {', '.join(knot)})"
        for knot in _knots(graph)
    ]
    assert not found, "import cycles in agent/:\n" + "\n".join(found)


def test_the_cycle_finder_finds_cycles() -> None:
    graph: dict[str, set[str]] = {"a": {"b"}, "b": {"c", "d"}, "c": {"a", "b"}, "d": set()}
    assert _knots(graph) == [["a", "b", "c"]]
    assert _way_round(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert _knots({"x": {"y"}, "y": {"x"}, "z": {"x"}}) == [["x", "y"]]
    assert _knots({"x": {"y"}, "y": set()}) == []
