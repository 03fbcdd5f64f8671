"""The seams between packages, checked on the source: the data's way is connectors -> pipeline -> jobs, so nothing
under pipeline/ or connectors/ imports jobs/, connectors/ imports nothing of pipeline/, and no module imports itself
back through others (no cycle, counting imports inside functions too: a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("connectors", "pipeline", "jobs")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in its body), resolved to modules that exist."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for imported in names:
                # `from connectors import lease` names the module connectors.lease; `from a.b import f` names a.b.
                while imported and imported not in modules:
                    imported = imported.rpartition(".")[0]
                if imported and imported != name and imported.split(".")[0] in PACKAGES:
                    targets.add(imported)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_lower_layers_never_import_jobs() -> None:
    wrong = {(m, t) for m, targets in import_graph().items() for t in targets
             if m.split(".")[0] in ("pipeline", "connectors") and t.split(".")[0] == "jobs"}
    assert wrong == set()


def test_connectors_import_nothing_of_the_pipeline() -> None:
    wrong = {(m, t) for m, targets in import_graph().items() for t in targets
             if m.split(".")[0] == "connectors" and t.split(".")[0] == "pipeline"}
    assert wrong == set()


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    """The checks above can fail: a made-up graph with a cycle is found, and the real graph is not empty."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "connectors.output_store" in graph["jobs.plan"]
    assert "connectors.lease" in graph["connectors.output_store"]  # `from connectors import lease` is seen
