"""The package's import graph, read from its source (nothing is imported)."""

from __future__ import annotations

import ast
import os


def module_names(root: str, package: str) -> dict[str, str]:
    """Dotted module name -> file path, for every module under `root`."""
    names = {}
    for folder, _, files in os.walk(root):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names[".".join([package, *parts])] = path
    return names


def _imported(node: ast.AST, module: str, is_package: bool, names: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([base] if base else []))
    # `from a import b` imports the module `a.b` where there is one, else a name of `a`.
    targets = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in names]
    if len(targets) < len(node.names):
        targets.append(base)
    return targets


def import_graph(root: str, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at module level or inside functions.

    `from a import b` counts as an import of `a.b` where that is a module and
    of `a` otherwise. Imports under `if TYPE_CHECKING:` count too: a cycle
    in the types is still a cycle in the design.
    """
    names = module_names(root, package)
    graph: dict[str, set[str]] = {}
    for module, path in names.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        is_package = path.endswith("__init__.py")
        targets = set()
        for node in ast.walk(tree):
            for name in _imported(node, module, is_package, names):
                if name in names:
                    targets.add(name)
        graph[module] = targets - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found
