"""The import graph of edgelite's packages, read from the source with `ast` (module-level imports and imports
inside functions alike): which module imports which, and which package may import which."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "runtime"
# folder -> import name (pyproject.toml's package-dir)
PACKAGES = {"runtime": "edgelite", "convert": "edgelite.convert", "train": "edgelite.train",
            "cluster": "edgelite.cluster", "benchmarks": "edgelite.benchmarks", "cli": "edgelite.cli"}
WORKSTATION = ("edgelite.convert", "edgelite.train", "edgelite.benchmarks", "edgelite.cli", "edgelite.cluster")
# package -> the packages it may import (besides itself): the arrows of DESIGN.md's layout table
ALLOWED = {
    "edgelite": set(),
    "edgelite.convert": {"edgelite"},
    "edgelite.train": {"edgelite", "edgelite.convert"},
    "edgelite.cluster": {"edgelite"},
    "edgelite.benchmarks": {"edgelite", "edgelite.convert", "edgelite.train", "edgelite.cluster"},
    "edgelite.cli": {"edgelite", "edgelite.convert", "edgelite.train", "edgelite.cluster", "edgelite.benchmarks"},
}


def all_modules() -> dict[str, Path]:
    """Module name -> file, for every module of every package."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def modules() -> dict[str, Path]:
    """Module name -> file, for every module of the device package."""
    return {name: path for name, path in all_modules().items() if package_of(name) == "edgelite"}


def package_of(module: str) -> str:
    """The edgelite package a module belongs to (the longest import name that prefixes it)."""
    return max((p for p in PACKAGES.values() if module == p or module.startswith(p + ".")), key=len, default="")


def imports(path: Path) -> set[str]:
    """Absolute names of the modules a file imports, at module level or inside functions: in package P,
    `from . import x` imports the module P.x, `from .x import y` the module P.x, `from .. import x` the parent's."""
    known = all_modules()
    name = next((n for n, p in known.items() if p == path), None)
    package = package_of(name) if name else "edgelite"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            submodules = {f"{module}.{alias.name}" for alias in node.names} & (set(known) | set(WORKSTATION))
            found.update(submodules or {module})
    return found


def graph(names: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """module -> the edgelite modules it imports, among `names` (default: the device package's modules)."""
    known = modules() if names is None else names
    return {name: {m for m in imports(path) if m in known and m != name} for name, path in known.items()}


def wrong_arrows(edges: dict[str, set[str]], allowed: dict[str, set[str]] = ALLOWED) -> list[str]:
    """'a -> b' for each import of a module in a package its package may not import."""
    return [f"{a} -> {b}" for a, targets in sorted(edges.items()) for b in sorted(targets)
            if package_of(b) != package_of(a) and package_of(b) not in allowed[package_of(a)]]


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the modules, as a path that returns to its start, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None
