"""The package's import graph, read from the source (every import, lazy ones inside functions
included), checked against its floors: imports go one way, down, with no cycles.

Run ``python tests/import_graph.py`` to print the graph, the floors and what breaks them;
``tests/test_import_graph.py`` runs the check in ``make test``.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rllib_saliency"

# Lowest first. A module may import its own floor's modules (without cycles) and lower floors'.
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    (
        "helpers (no framework, no RLlib stack)",
        ("errors", "frameworks", "structure", "targets", "sampler", "history", "writer", "recurrent"),
    ),
    ("backends (one per way a model runs)", ("backends",)),
    (
        "engine, methods, targets' summaries, trust, reports",
        ("engine", "methods", "trust", "activation", "summaries", "render", "sample_summaries", "movie"),
    ),
    ("stack packages (all that knows an RLlib stack)", ("stacks",)),
    ("top floor (public API, training hooks, CLI)", ("api", "callbacks", "cli", "")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> int:
    """Index in FLOORS of the module's first name below the package (longest match wins)."""
    inner = module.split(".", 1)[1] if "." in module else ""
    best, found = -1, None
    for index, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (inner == prefix or inner.startswith(prefix + ".") or prefix == "") and len(prefix) > best:
                best, found = len(prefix), index
    if found is None:
        raise KeyError(f"{module} is on no floor: add it to FLOORS in {__file__}")
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # "from package import module" depends on the module; on the package itself only
                # for names that are not submodules.
                submodules = [f"{source}.{alias.name}" for alias in node.names]
                targets = [m for m in submodules if m in modules]
                if len(targets) < len(submodules):
                    targets.append(source)
            for target in targets:
                while target and target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name and target.startswith(PACKAGE.name):
                    graph[name].add(target)
    for name in modules:
        graph.setdefault(name, set())
    return dict(graph)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports of a module on a higher floor than the importer."""
    # A package's __init__ may gather its own submodules (e.g. movie -> movie.rollout).
    return sorted(
        (source, target)
        for source, targets in graph.items()
        for target in targets
        if floor_of(target) > floor_of(source)
    )


def main() -> int:
    graph = import_graph()
    for index, (title, _) in reversed(list(enumerate(FLOORS))):
        members = sorted(m for m in graph if floor_of(m) == index)
        print(f"floor {index}: {title}")
        for member in members:
            below = sorted(graph[member])
            print(f"  {member} -> {', '.join(below) if below else '(nothing of the package)'}")
    found_cycles, found_upward = cycles(graph), upward(graph)
    for cycle in found_cycles:
        print(f"CYCLE: {' <-> '.join(cycle)}")
    for source, target in found_upward:
        print(f"UPWARD: {source} -> {target}")
    print(f"{len(found_cycles)} cycle(s), {len(found_upward)} upward import(s)")
    return 1 if found_cycles or found_upward else 0


if __name__ == "__main__":
    sys.exit(main())
