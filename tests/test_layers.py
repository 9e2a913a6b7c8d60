"""Imports point one way (DESIGN.md): ranking/ imports nothing of ours, webhooks/ neither
ranking/ nor connectors/, connectors/ never plugin/. Checked on the source, statically."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"plugin", "connectors", "ranking", "webhooks"}
FORBIDDEN = {"ranking": OURS - {"ranking"}, "webhooks": {"ranking", "connectors", "plugin"},
             "connectors": {"plugin"}}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str):
    bad = {f"{p.relative_to(ROOT)} imports {name}"
           for p in (ROOT / package).rglob("*.py") for name in _imports(p) & FORBIDDEN[package]}
    assert not bad, sorted(bad)
