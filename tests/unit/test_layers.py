"""The import graph stays a layered tree (DESIGN.md section 1): no cycles, no import pointing up.

Function-level imports count as much as top-level ones: hiding a cycle inside a function is how the
last one survived (``config_watcher -> runtime -> var_scheduler -> var_job -> runtime``). The graph is
read with ``ast`` from the sources, so the test needs no import of the packages it checks.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Each package and the packages it may import (besides itself, the standard library and third parties).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "treasury": frozenset(),
    "schemas": frozenset({"treasury"}),
    "storage": frozenset({"schemas", "treasury"}),
    "risk": frozenset({"schemas", "treasury"}),
    "actors": frozenset({"risk", "storage", "schemas", "treasury"}),
    "serve_app": frozenset({"actors", "risk", "storage", "schemas", "treasury", "devstack"}),
    # development tooling: starts the local stack from the shared kernel's settings, nothing else
    "devstack": frozenset({"treasury"}),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {_module_name(f): f for pkg in MAY_IMPORT for f in sorted((REPO / pkg).rglob("*.py"))}


def _imported(node: ast.AST, module: str, is_package: bool, modules: Collection[str]) -> Iterator[str]:
    """The modules one import statement loads: ``from pkg import mod`` names ``pkg.mod``, not ``pkg``."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, *([base] if base else [])])
        for alias in node.names:
            yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body."""
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            for target in _imported(node, name, path.name == "__init__.py", modules):
                # a package's own parents are loaded before it by Python itself, never a cycle
                if target in modules and target != name and not name.startswith(f"{target}."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_project_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_no_import_points_up_the_layers() -> None:
    upward = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if (src := module.split(".")[0]) != (dst := target.split(".")[0]) and dst not in MAY_IMPORT[src]
    ]
    assert upward == []


def test_the_checks_see_what_they_should() -> None:
    """The graph finds function-level and relative imports, and the cycle finder finds a cycle."""
    graph = import_graph()
    assert len(graph) > 60
    assert "storage.db" in graph["storage.orders"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    tree = ast.parse("def f():\n    from . import sibling\n")
    relative = tree.body[0].body[0]  # type: ignore[attr-defined]
    assert list(_imported(relative, "pkg.mod", is_package=False, modules={"pkg.sibling"})) == ["pkg.sibling"]


def test_actor_names_live_in_a_module_that_imports_nothing() -> None:
    """Every part finds the others' actors by these names; importing them must never pull a package in."""
    tree = ast.parse((REPO / "treasury" / "actor_names.py").read_text(encoding="utf-8"))
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [ast.unparse(n) for n in imports] == ["from __future__ import annotations"]


def test_no_function_of_the_product_is_longer_than_a_screen_and_a_half() -> None:
    """Long functions hid the shard's phases and the REST routes; 90 lines leaves room for a docstring."""
    long = [
        f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"  # type: ignore[operator]
        for name, path in project_modules().items()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 90  # type: ignore[operator]
    ]
    assert long == []
