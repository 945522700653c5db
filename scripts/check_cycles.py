#!/usr/bin/env python3
"""Fail on any import cycle among the modules of our packages, counting every import.

import-linter's contracts see only what Python runs at import time, so a cycle can hide under
`if TYPE_CHECKING:` or inside a function. This scan reads the source with `ast` instead and counts
every `import` and `from … import …` wherever it stands. `from pkg import name` is an edge to the
submodule `pkg.name` when that module exists, else to `pkg` (its `__init__`); relative imports are
resolved against the importing module. Imports of modules outside the scanned packages are ignored.

Each group of packages given as one argument (comma-separated) is one graph; by default
`supervisor,sandbox` and `scripted_model` are checked, each on its own. (`agent`, the seed agent the
agent itself rewrites, is checked only when named.) Every strongly connected component is printed
with the edges inside it; the exit status is 1 if there is one.

    python scripts/check_cycles.py [--root DIR] [GROUP ...]
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

DEFAULT_GROUPS = ("supervisor,sandbox", "scripted_model", "agent")


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Every module of the packages under root, by dotted name (a package by its own name)."""
    modules: dict[str, Path] = {}
    for package in packages:
        base = root / package
        if base.is_file() and base.suffix == ".py":
            modules[base.stem] = base
            continue
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    if target:
        parts.append(target)
    return ".".join(parts)


def imported_names(module: str, path: Path, tree: ast.AST) -> Iterator[str]:
    """Every dotted name the module imports; `from X import y` as `X.y` (which lands in `X` itself
    when `y` is not a submodule, see `_owner`)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            else:
                base = node.module or ""
            for alias in node.names:
                yield f"{base}.{alias.name}" if alias.name != "*" else base


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The scanned module a dotted name lands in: itself if a module, else its longest prefix."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Edges from each module to the scanned modules it imports (self-imports left out)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for imported in imported_names(name, path, tree):
            target = _owner(imported, modules)
            if target is not None and target != name:
                graph[name].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; only components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
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
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def check(root: Path, packages: list[str]) -> list[str]:
    """Lines describing every cycle among the packages (empty when there is none)."""
    graph = import_graph(module_files(root, packages))
    lines: list[str] = []
    for component in strongly_connected(graph):
        members = set(component)
        lines.append(f"import cycle among {len(component)} modules: {', '.join(component)}")
        for source in component:
            for target in sorted(graph[source] & members):
                lines.append(f"    {source} -> {target}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("groups", nargs="*", default=list(DEFAULT_GROUPS))
    args = parser.parse_args(argv)
    failed = False
    for group in args.groups:
        packages = [name for name in group.split(",") if name]
        lines = check(args.root, packages)
        for line in lines:
            print(line)
        failed = failed or bool(lines)
    if not failed:
        print(f"no import cycle in {' | '.join(args.groups)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
