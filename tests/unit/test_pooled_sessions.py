"""No SQL in the product leaves session state on a pooled connection.

``storage.db.create_pool`` releases connections without asyncpg's reset query (a round trip per
release): that is safe only while nothing sets what the reset would undo. The SQL is read with
``ast`` from the sources' string literals (docstrings left out; the SQL keywords in upper case, as
everywhere here, which keeps English prose out), so a new session ``SET``, advisory lock,
``LISTEN``, ``WITH HOLD`` cursor or lasting temporary table fails here, naming the file and line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("treasury", "schemas", "storage", "risk", "actors", "serve_app")
# The migrations lock on a connection of their own (storage.migrate), never a pooled one.
OWN_CONNECTION = {REPO / "storage" / "migrate.py"}

SESSION_STATE: dict[str, re.Pattern[str]] = {
    "session SET (use SET LOCAL inside a transaction)": re.compile(
        r"(?:^|;)\s*SET\s+(?!LOCAL\b)(?:SESSION\s+)?[a-z_.]+\s*(?:=|TO\b)"),
    "session-level set_config (pass is_local => true)": re.compile(
        r"set_config\s*\([^)]*,\s*false\s*\)", re.IGNORECASE),
    "session advisory lock (use pg_advisory_xact_lock)": re.compile(
        r"pg_(?:try_)?advisory_lock(?:_shared)?\s*\(", re.IGNORECASE),
    "LISTEN": re.compile(r"(?:^|;)\s*LISTEN\s"),
    "cursor WITH HOLD": re.compile(r"\bWITH\s+HOLD\b", re.IGNORECASE),
    "temporary table that outlives its transaction (add ON COMMIT DROP)": re.compile(
        r"CREATE\s+(?:TEMP|TEMPORARY)\s+TABLE\b(?![^;]*ON\s+COMMIT\s+DROP)", re.IGNORECASE),
}


def _literals(path: Path) -> Iterator[tuple[int, str]]:
    """Each string literal but docstrings, with its line; an f-string's literal parts joined (its
    fields blanked)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    for node in ast.walk(tree):
        if id(node) in prose:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)


def _sources() -> list[Path]:
    return [f for pkg in PACKAGES for f in sorted((REPO / pkg).rglob("*.py")) if f not in OWN_CONNECTION]


def violations(paths: list[Path]) -> list[str]:
    return [f"{path}:{line}: {what}: {text.strip()[:120]!r}"
            for path in paths for line, text in _literals(path)
            for what, pattern in SESSION_STATE.items() if pattern.search(text)]


def test_pooled_sql_leaves_no_session_state() -> None:
    assert violations(_sources()) == []


@pytest.mark.parametrize("sql", [
    "SET statement_timeout = 0",
    "BEGIN; SET search_path TO other",
    "SELECT set_config('app.user', $1, false)",
    "SELECT pg_advisory_lock($1)",
    "LISTEN config_changed",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "CREATE TEMPORARY TABLE t (a int)",
])
def test_each_kind_of_session_state_is_caught(tmp_path: Path, sql: str) -> None:
    module = tmp_path / "module.py"
    module.write_text(f"QUERY = {sql!r}\n", encoding="utf-8")
    assert len(violations([module])) == 1


@pytest.mark.parametrize("sql", [
    "UPDATE balance SET decided_ts = now() WHERE id = ANY($1::bigint[])",
    "SET LOCAL jit = off; SET LOCAL enable_hashjoin = off",
    "SELECT pg_advisory_xact_lock($1)",
    "CREATE TEMPORARY TABLE t (a int) ON COMMIT DROP",
])
def test_transaction_scoped_state_passes(tmp_path: Path, sql: str) -> None:
    module = tmp_path / "module.py"
    module.write_text(f"QUERY = {sql!r}\n", encoding="utf-8")
    assert violations([module]) == []
