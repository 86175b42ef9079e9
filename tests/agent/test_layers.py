"""The core stays pure: nothing in agent/core imports the rest of the agent (issue 12).

Config, store, doors and clients are shells around it (docs: DESIGN.md "Shape of the code");
a core module that reached out to one of them could no longer be tested as data in, data out.
"""

from __future__ import annotations

import ast

from tests.conftest import ROOT


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
