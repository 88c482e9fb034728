"""The import graph of the device package (runtime/), read from the source with `ast`."""
from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
WORKSTATION = ("edgelite.convert", "edgelite.train", "edgelite.benchmarks", "edgelite.cli", "edgelite.cluster")


def modules() -> dict[str, Path]:
    """Module name -> file, for every module of the device package."""
    return {f"edgelite.{p.stem}" if p.stem != "__init__" else "edgelite": p for p in sorted(RUNTIME.glob("*.py"))}


def imports(path: Path) -> set[str]:
    """Absolute names of the modules a runtime file imports, at module level or inside functions:
    `from . import x` imports the module edgelite.x, `from .x import y` the module edgelite.x."""
    known = modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = ".".join(p for p in ("edgelite" if node.level else "", node.module or "") if p)
            submodules = {f"{module}.{alias.name}" for alias in node.names} & (set(known) | set(WORKSTATION))
            found.update(submodules or {module})
    return found


def graph() -> dict[str, set[str]]:
    """edgelite module -> the edgelite modules it imports (only those that exist in runtime/)."""
    known = modules()
    return {name: {m for m in imports(path) if m in known and m != name} for name, path in known.items()}


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
