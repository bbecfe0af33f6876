"""The documentation matches the code: every table that can drift is checked against what it describes.

README.md is the front door (at most 250 lines, the test command CI runs, a link to every page of
docs/); docs/ holds the reference. Settings, Kafka topics, contracts, REST operations, metrics and CLI
commands are enumerated by the code itself and must each have their row; every relative link resolves
inside the repository and no link leaves it; the walk through the code in docs/architecture.md names
files and functions that exist. Pure: the tests only read files and build objects in memory.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from schemas.catalog import CONTRACTS
from treasury.metrics import render
from treasury.settings import POLICY_KEYS, PolicyConfig, RuntimeSettings
from treasury.topics import ALL_TOPICS

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
README = REPO / "README.md"
README_MAX_LINES = 250
WALK_HEADING = "## One balance event, from Kafka to a signed order"

_FENCE = re.compile(r"^```.*?^```[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)
_AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]+)>")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def markdown_files() -> list[Path]:
    return [README, REPO / "CHANGELOG.md", *sorted(DOCS.rglob("*.md"))]


def table_rows(text: str) -> Iterator[list[str]]:
    """The cells of every table row outside code blocks (header and separator rows included)."""
    for line in _FENCE.sub("", text).splitlines():
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|"):
            cells = re.split(r"(?<!\\)\|", stripped[1:-1])
            yield [cell.strip().replace("\\|", "|") for cell in cells]


def first_cell_rows(text: str) -> dict[str, list[str]]:
    """Rows whose first cell is one code span, by that span's text."""
    rows: dict[str, list[str]] = {}
    for cells in table_rows(text):
        match = re.fullmatch(r"`([^`]+)`", cells[0])
        if match:
            rows.setdefault(match.group(1), cells)
    return rows


# -- README -------------------------------------------------------------------------------------


def test_readme_is_a_front_door_of_at_most_250_lines() -> None:
    lines = _read(README).splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move reference to docs/"


def test_readme_names_the_test_command_ci_runs() -> None:
    ci = _read(REPO / ".ci" / "run")
    commands = [line.strip().removeprefix("exec ").strip() for line in ci.splitlines()
                if line.strip().startswith("exec ")]
    assert commands, ".ci/run has no `exec <command>` line"
    command = commands[-1]
    assert (REPO / command.split()[-1]).is_file(), command
    assert command in _read(README), f"README.md does not name CI's test command `{command}`"
    assert "bash scripts/run.sh" in _read(README)


def test_readme_links_every_page_of_docs() -> None:
    linked = {(README.parent / target.split("#")[0]).resolve() for target in links(_read(README))}
    missing = [p.relative_to(REPO).as_posix() for p in sorted(DOCS.rglob("*.md")) if p.resolve() not in linked]
    assert not missing, f"README.md's 'where to read next' does not link {missing}"


# -- links --------------------------------------------------------------------------------------


def links(text: str) -> list[str]:
    """Link targets of a markdown text, code blocks and code spans left out."""
    prose = _CODE_SPAN.sub("", _FENCE.sub("", text))
    return [*_INLINE_LINK.findall(prose), *_REFERENCE_LINK.findall(prose), *_AUTOLINK.findall(prose)]


def slugs(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in _FENCE.sub("", text).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_stay_inside_the_repository_and_resolve(doc: Path) -> None:
    assert doc.is_file(), f"{doc.relative_to(REPO)} is missing"
    problems = []
    for target in links(_read(doc)):
        if _SCHEME.match(target):
            problems.append(f"{target}: links leave the repository (mention an address as plain text instead)")
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (doc.parent / path_part).resolve() if path_part else doc.resolve()
        if not resolved.is_relative_to(REPO):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in slugs(_read(resolved)):
            problems.append(f"{target}: no heading #{anchor} in {resolved.relative_to(REPO)}")
    assert not problems, f"{doc.relative_to(REPO)}:\n" + "\n".join(problems)


def test_the_link_parser_sees_what_it_checks() -> None:
    text = "[a](docs/x.md#y) `[b](no.md)` [c](https://example.org) <http://h>\n[d]: ../e.md\n```\n[f](g.md)\n```\n"
    assert links(text) == ["docs/x.md#y", "https://example.org", "../e.md", "http://h"]
    assert slugs("# TLS 1.3 with client certificates (the REST front)\n## A\n## A\n") == {
        "tls-13-with-client-certificates-the-rest-front", "a", "a-1"}


# -- configuration ------------------------------------------------------------------------------


def _normal(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    text = str(value).replace(str(Path.home()), "~")
    try:
        return format(Decimal(text).normalize(), "f")
    except InvalidOperation:
        return text


def _documented_default(cell: str) -> str | None:
    text = cell.strip().strip("`")
    return None if text in {"unset", "—", "-"} else _normal(text)


def code_defaults() -> dict[str, str | None]:
    """Every setting the code reads, by its environment name, with its default."""
    defaults: dict[str, str | None] = {key: _normal(value) for key, value in PolicyConfig().as_wire().items()}
    assert set(defaults) == set(POLICY_KEYS)
    runtime = RuntimeSettings()
    env = runtime.as_env()
    for key in RuntimeSettings.env_keys():
        if key in env:
            defaults[key] = _normal(env[key])
        elif key.lower() in RuntimeSettings.model_fields:
            defaults[key] = _normal(getattr(runtime, key.lower()))
        else:  # pragma: no cover - a key named unlike its field and unset by default
            defaults[key] = None
    return defaults


def test_every_setting_is_documented_with_its_default() -> None:
    rows = first_cell_rows(_read(DOCS / "configuration.md"))
    missing = [key for key in code_defaults() if key not in rows]
    assert not missing, f"docs/configuration.md has no row for {missing}"
    wrong = {key: (rows[key][1], default) for key, default in code_defaults().items()
             if _documented_default(rows[key][1]) != default}
    assert not wrong, f"docs/configuration.md defaults differ from the code (documented, code): {wrong}"


# -- Kafka topics and contracts -----------------------------------------------------------------


def test_every_topic_is_documented_with_its_partitions() -> None:
    rows = {name: cells for name, cells in first_cell_rows(_read(DOCS / "topics.md")).items()
            if len(cells) == 4 and cells[3].isdigit()}
    code = {topic.name: topic.partitions for topic in ALL_TOPICS}
    assert set(rows) == set(code), f"docs/topics.md lists {sorted(rows)}, treasury.topics.ALL_TOPICS {sorted(code)}"
    wrong = {name: (rows[name][3], n) for name, n in code.items() if int(rows[name][3]) != n}
    assert not wrong, f"partitions in docs/topics.md differ from treasury/topics.py (documented, code): {wrong}"
    for topic in ALL_TOPICS:
        if topic.config.get("cleanup.policy") == "compact":
            assert "compact" in rows[topic.name][2], f"{topic.name} is compacted; docs/topics.md does not say so"


def test_every_contract_version_is_documented() -> None:
    rows = first_cell_rows(_read(DOCS / "topics.md"))
    problems = []
    for contract in CONTRACTS:
        cells = rows.get(contract.model.__name__, ["", "", ""])
        if cells[2] != f"`{contract.name}/{contract.version}`" or contract.path.name not in cells[1]:
            problems.append(f"{contract.model.__name__}: no row with {contract.path.name} and "
                            f"`{contract.name}/{contract.version}`")
    assert not problems, "docs/topics.md's contracts differ from schemas/catalog.py:\n" + "\n".join(problems)


def test_bank_formats_tables_match_the_parsers() -> None:
    from schemas.camt import BALANCE_FIELD, MESSAGES, SUPPORTED_VERSIONS

    rows = first_cell_rows(_read(DOCS / "bank-formats.md"))
    versions = f"`001.{min(SUPPORTED_VERSIONS):02d}` \u2013 `001.{max(SUPPORTED_VERSIONS):02d}`"  # an en dash
    documented = [name for name in rows if name.startswith("camt.")]
    assert documented == list(MESSAGES), f"docs/bank-formats.md lists {documented}, schemas.camt {list(MESSAGES)}"
    wrong = {name: rows[name][1] for name in MESSAGES if rows[name][1] != versions}
    assert not wrong, f"docs/bank-formats.md versions differ from schemas.camt ({versions}): {wrong}"
    fields = {"`available_usd`", "`booked_usd`"}
    codes = {name: cells[1].strip("`") for name, cells in rows.items() if cells[1] in fields}
    assert codes == {code.value: field for code, field in BALANCE_FIELD.items()}, "balance codes differ"


# -- REST API -----------------------------------------------------------------------------------


def app_operations() -> set[tuple[str, str]]:
    """(verb, path) of every operation in the app's own OpenAPI document, built without any I/O."""
    from serve_app.rest.api import build_app

    required = [p for p in inspect.signature(build_app).parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    app = build_app(*(mock.MagicMock(name=p.name) for p in required))
    document = app.openapi()
    verbs = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {(verb.upper(), path) for path, item in document["paths"].items() for verb in item if verb in verbs}


def test_every_rest_operation_is_documented() -> None:
    documented = set()
    for cells in table_rows(_read(DOCS / "rest-api.md")):
        verb, path = (re.fullmatch(r"`([^`]+)`", cell) for cell in [*cells, "", ""][:2])
        if verb and path and verb.group(1).isupper() and path.group(1).startswith("/"):
            documented.add((verb.group(1), path.group(1)))
    code = app_operations()
    assert code, "the app's OpenAPI document has no operation"
    assert not code - documented, f"docs/rest-api.md has no row for {sorted(code - documented)}"
    assert not documented - code, f"docs/rest-api.md documents operations the app lacks: {sorted(documented - code)}"


# -- metrics and commands -----------------------------------------------------------------------


def test_every_metric_is_documented_with_its_type() -> None:
    exposed = dict(re.findall(r"^# TYPE (\S+) (\S+)$", render([], {}).decode(), re.M))
    rows = {name: cells for name, cells in first_cell_rows(_read(DOCS / "operations.md")).items()
            if len(cells) == 4 and cells[1] in {"counter", "gauge", "histogram", "summary"}}
    assert set(rows) == set(exposed), f"docs/operations.md lists {sorted(rows)}, /metrics exposes {sorted(exposed)}"
    wrong = {name: (rows[name][1], kind) for name, kind in exposed.items() if rows[name][1] != kind}
    assert not wrong, f"metric types in docs/operations.md differ (documented, code): {wrong}"
    for name, label, value in re.findall(r'^(\w+)\{(\w+)="(\w+)"\}', render([], {}).decode(), re.M):
        assert f"`{label}`" in rows[name][2] and f"`{value}`" in rows[name][3], \
            f"docs/operations.md: {name} is exported with {label}={value!r}; its row does not say so"


def test_every_cli_command_is_documented() -> None:
    from serve_app.cli.main import build_parser

    commands = {name for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)
                for name in action.choices}
    first_cells = [cells[0] for cells in table_rows(_read(DOCS / "operations.md"))]
    missing = sorted(c for c in commands if not any(cell.startswith(f"`treasury-orch {c}") for cell in first_cells))
    assert not missing, f"docs/operations.md's command table has no row for `treasury-orch` {missing}"


# -- the walk through the code ------------------------------------------------------------------


def _defines(path: Path, dotted: str) -> bool:
    """Whether the module at ``path`` defines ``Class.method`` (a top-level class), or ``name`` anywhere:
    a function, class or top-level assignment (a route handler may be nested in its ``router``)."""
    tree = ast.parse(_read(path))
    head, _, rest = dotted.partition(".")
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    if rest:
        return any(isinstance(node, ast.ClassDef) and node.name == head
                   and any(isinstance(item, functions) and item.name == rest for item in node.body)
                   for node in tree.body)
    if any(isinstance(node, (*functions, ast.ClassDef)) and node.name == head for node in ast.walk(tree)):
        return True
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == head for t in targets):
            return True
    return False


def test_the_walk_names_files_and_functions_that_exist() -> None:
    text = _read(DOCS / "architecture.md")
    assert WALK_HEADING in text
    walk = text.split(WALK_HEADING, 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"^\d+\.\s+\[[^\]]+\]\(([^)#]+\.py)\)[^`\n]*((?:`[\w.]+`(?:,\s*|\s+and\s+)?)+)", walk, re.M)
    assert len(steps) >= 6, "docs/architecture.md's walk should name a file and its functions in every step"
    problems = []
    for target, spans in steps:
        path = (DOCS / target).resolve()
        if not path.is_file():
            problems.append(f"{target}: no such file")
            continue
        problems += [f"{target}: defines no {name}" for name in re.findall(r"`([\w.]+)`", spans)
                     if not _defines(path, name)]
    assert not problems, "\n".join(problems)
