"""The import graph: no cycle among the project's modules, and every import goes down the layers

    ir < analysis, math, data < frontend < rewrite < backend < passes < driver < attractor

(an import within one layer is allowed). Every import counts, also those inside functions.
A rule family's `certificates` module runs compiled programs, so it belongs to the driver layer.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import attractor

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compiler", "passes", "grammar", "attractor")
LAYERS = {"ir": 0, "analysis": 1, "math": 1, "data": 1, "frontend": 2, "rewrite": 3, "backend": 4,
          "passes": 5, "driver": 6, "attractor": 7}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def _resolve(name: str) -> str | None:
    """The project module an import of `name` loads (the longest known prefix)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> set[str]:
    """The project modules `module` imports anywhere in its text (its own package excepted)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    found = {_resolve(t) for t in targets}
    return {t for t in found if t and t != module and not module.startswith(t + ".")}


GRAPH = {m: imports(m) for m in MODULES}


def layer(module: str) -> int:
    """The layer of a module: its stage folder in compiler/, passes, driver for certificates."""
    parts = module.split(".")
    if parts[0] == "attractor":
        return LAYERS["attractor"]
    if parts[0] == "grammar":
        return LAYERS["ir"]               # data only (the .lark file)
    if parts[0] == "passes":
        return LAYERS["driver"] if parts[-1] == "certificates" else LAYERS["passes"]
    if module in ("compiler", "compiler.__main__"):
        return LAYERS["ir"] if module == "compiler" else LAYERS["driver"]
    return LAYERS[parts[1]]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
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


def violations() -> set[tuple[str, str]]:
    return {(m, t) for m, targets in GRAPH.items() for t in targets if layer(t) > layer(m)}


def test_the_modules_are_found():
    expected = {"compiler.ir.nodes", "compiler.rewrite.manager", "compiler.driver.api", "passes", "attractor"}
    assert expected <= set(MODULES)


def test_no_import_cycle():
    assert cycles(GRAPH) == []


def test_imports_go_down_the_layers():
    assert violations() == set()


def test_layers_order_the_stages():
    assert layer("compiler.ir.nodes") < layer("compiler.rewrite.manager") < layer("passes.variational.jensen")
    assert layer("passes.variational.certificates") == layer("compiler.driver.check")


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_public_name_is_attractor():
    """`from attractor import ...` and `python -m attractor` (what `pip install .` provides)."""
    assert {"compile_file", "compile_source", "AttractorError", "CompiledProgram"} <= set(attractor.__all__)
    out = subprocess.run([sys.executable, "-m", "attractor", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "usage: attractor" in out.stdout and "compile" in out.stdout
