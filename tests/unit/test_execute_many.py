"""The product runs ``executemany`` through ``storage.db.execute_many`` only: a bare one with no
rows leaves its connection inside an implicit transaction (see that function's docstring)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("treasury", "schemas", "storage", "risk", "actors", "serve_app", "devstack", "bench")
THE_ONE_CALLER = REPO / "storage" / "db.py"


def _calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "executemany"]


def test_only_storage_db_calls_executemany() -> None:
    found = {f"{path.relative_to(REPO)}:{line}" for pkg in PACKAGES for path in sorted((REPO / pkg).rglob("*.py"))
             if path != THE_ONE_CALLER for line in _calls(path)}
    assert found == set(), f"use storage.db.execute_many instead of executemany at {sorted(found)}"
    assert _calls(THE_ONE_CALLER), "storage.db.execute_many no longer calls executemany: update this test"
