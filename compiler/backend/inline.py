"""Copies into an emitted module the runtime definitions its program part needs.

The runtime (`compiler.backend.runtime`) is ordinary Python. A `Library` reads the source of its
modules (without importing them) and splits each into top-level units: a function, a class or
an assignment, with the names it defines and the global names it reads (names bound inside a
function, its arguments included, are local). `Library.closure` starts from the names the
program part reads and adds every unit they reach, and the imports those units use, until
nothing new is reached.

Branches that test a constant of the program part (`if COSINE:`, `if JOINT is None:` with
`COSINE = False`, `JOINT = None` written there) are folded in the copies first, so a program
without a schedule carries neither the branch nor the helpers only it calls. A name that the
runtime imports from `runtime.program` is the program part's to define; nothing else is ever
renamed or substituted.
"""
from __future__ import annotations

import ast
import builtins
import dataclasses
import importlib.util
import sys
import textwrap

from compiler.ir.diagnostics import AttractorError

THIRD_PARTY = ("jax", "optax", "numpy", "sklearn")   # the only imports an emitted module may have besides the standard library


@dataclasses.dataclass
class Unit:
    """A top-level statement of a runtime module: its text, the names it binds and reads."""
    module: str
    order: tuple[int, int]
    text: str
    defines: frozenset[str]
    reads: frozenset[str]
    decorates: str | None   # `@f.defjvp def g`: g goes wherever f goes


def module_source(name: str) -> str:
    """The source text of the module `name`, read from its file."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise AttractorError(f"internal: runtime module {name} not found")
    with open(spec.origin, encoding="utf-8") as handle:
        return handle.read()


def _bound(node: ast.AST) -> set[str]:
    """Names bound anywhere inside a function or lambda `node`: arguments, assignment targets,
    loop and comprehension variables, nested definitions, local imports."""
    out: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = n.args
            out.update(x.arg for x in a.posonlyargs + a.args + a.kwonlyargs)
            out.update(x.arg for x in (a.vararg, a.kwarg) if x is not None)
            if not isinstance(n, ast.Lambda) and n is not node:
                out.add(n.name)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in n.names)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            out.add(n.name)
    return out


def reads(node: ast.AST) -> set[str]:
    """The global names a statement reads: names loaded, less those bound locally in a function."""
    loaded = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        outer: set[str] = set()   # decorators, defaults and annotations are read at definition
        for d in node.decorator_list:
            outer |= reads(d)
        if not isinstance(node, ast.ClassDef):
            for d in node.args.defaults + node.args.kw_defaults:
                if d is not None:
                    outer |= reads(d)
        inner = {n.id for stmt in node.body for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        return outer | (inner - _bound(node))
    return loaded


def _defines(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def _statement_text(lines: list[str], node: ast.stmt) -> str:
    """The statement's lines, with its decorators and the comment lines right above it."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    while start > 1 and lines[start - 2].lstrip().startswith("#"):
        start -= 1
    return "".join(lines[start - 1:node.end_lineno])


# ---- folding branches on the program's constants -----------------------------------------------

_UNKNOWN = object()


def constant_values(tree: ast.Module) -> dict[str, object]:
    """The program part's top-level names assigned a literal (True, None, 3, {}, ...)."""
    out: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                out.pop(node.targets[0].id, None)
    return out


def _test_value(test: ast.expr, constants: dict[str, object]):
    """The truth of an `if` test made of the program's constants, or _UNKNOWN."""
    if isinstance(test, ast.Name):
        return bool(constants[test.id]) if test.id in constants else _UNKNOWN
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        value = _test_value(test.operand, constants)
        return _UNKNOWN if value is _UNKNOWN else not value
    if (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Is, ast.IsNot))
            and isinstance(test.left, ast.Name) and test.left.id in constants
            and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value is None):
        same = constants[test.left.id] is None
        return same if isinstance(test.ops[0], ast.Is) else not same
    if isinstance(test, ast.BoolOp):
        values = [_test_value(v, constants) for v in test.values]
        if _UNKNOWN in values:
            return _UNKNOWN
        return all(values) if isinstance(test.op, ast.And) else any(values)
    return _UNKNOWN


def fold(text: str, constants: dict[str, object]) -> str:
    """`text` with every `if` on the program's constants replaced by its live branch (dedented),
    or removed where that branch is empty; one at a time, outermost first."""
    while True:
        tree = ast.parse(textwrap.dedent(text))
        target = next((n for n in ast.walk(tree) if isinstance(n, ast.If)
                       and _test_value(n.test, constants) is not _UNKNOWN
                       and not (len(n.orelse) == 1 and isinstance(n.orelse[0], ast.If))), None)
        if target is None:
            return text
        lines = text.splitlines(keepends=True)
        live = target.body if _test_value(target.test, constants) else target.orelse
        if live:
            shift = live[0].col_offset - target.col_offset
            kept = [line[shift:] if line.strip() else line for line in lines[live[0].lineno - 1:live[-1].end_lineno]]
        else:
            kept = []
        text = "".join(lines[:target.lineno - 1] + kept + lines[target.end_lineno:])


# ---- the library -----------------------------------------------------------------------------------

class Library:
    """The runtime's units and imports, read from the modules named."""

    def __init__(self, modules: list[str], program_module: str | None = None):
        self.units: dict[str, Unit] = {}
        self.imports: dict[str, str] = {}     # name -> the import statement binding it
        self.program_names: set[str] = set()  # imported from the program interface
        self.attached: dict[str, list[str]] = {}
        for index, name in enumerate(modules):
            self._add(index, name, module_source(name), program_module)

    def _add(self, index: int, module: str, text: str, program_module: str | None) -> None:
        lines = text.splitlines(keepends=True)
        for node in ast.parse(text).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self._import(node, module, program_module)
                continue
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue   # the module's docstring
            defined = _defines(node)
            if not defined:
                raise AttractorError(f"internal: runtime module {module}: line {node.lineno} defines nothing")
            decorates = next((d.value.id for d in getattr(node, "decorator_list", [])
                              if isinstance(d, ast.Attribute) and isinstance(d.value, ast.Name)), None)
            unit = Unit(module, (index, node.lineno), _statement_text(lines, node), frozenset(defined),
                        frozenset(reads(node)), decorates)
            for name in defined:
                if name in self.units and self.units[name].module != module:
                    raise AttractorError(f"internal: runtime name {name} defined in {self.units[name].module} and {module}")
                self.units[name] = unit
            if decorates is not None:
                self.attached.setdefault(decorates, []).append(next(iter(defined)))

    def _import(self, node: ast.Import | ast.ImportFrom, module: str, program_module: str | None) -> None:
        if isinstance(node, ast.ImportFrom):
            if node.module == "__future__":
                return
            if node.level or (node.module or "").split(".")[0] == "compiler":
                if node.module == program_module:
                    self.program_names.update(a.asname or a.name for a in node.names)
                return   # a sibling runtime module: its names are units of the library
            for a in node.names:
                self._bind(a.asname or a.name, f"from {node.module} import {a.name}" + (f" as {a.asname}" if a.asname else ""), module)
            return
        for a in node.names:
            bound = a.asname or a.name.split(".")[0]
            self._bind(bound, f"import {a.name}" + (f" as {a.asname}" if a.asname else ""), module)

    def _bind(self, name: str, statement: str, module: str) -> None:
        root = statement.split()[1].split(".")[0]
        if root.split(".")[0] not in THIRD_PARTY and not _is_stdlib(root):
            raise AttractorError(f"internal: runtime module {module} imports {root}")
        if self.imports.setdefault(name, statement) != statement:
            raise AttractorError(f"internal: runtime name {name} imported as '{self.imports[name]}' and '{statement}'")

    def closure(self, program: str, entries: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
        """(import lines, runtime definitions in order) that `program` (the program part's
        source) and the `entries` need; the definitions' branches on the program's constants
        folded."""
        tree = ast.parse(program)
        constants = constant_values(tree)
        defined = {n for node in tree.body for n in _defines(node)}
        needed_imports: set[str] = set()
        chosen: dict[tuple[int, int], tuple[Unit, str]] = {}
        wanted = {n for node in tree.body for n in reads(node)}
        todo = sorted(wanted | set(entries))
        while todo:
            name = todo.pop()
            if name in defined or any(name in u.defines for u, _ in chosen.values()):
                continue
            if name in self.imports:
                needed_imports.add(name)
                continue
            unit = self.units.get(name)
            if unit is None:
                if name in self.program_names:
                    raise AttractorError(f"internal: the program part does not define {name}, which the runtime reads")
                if hasattr(builtins, name) or name == "__file__":
                    continue
                raise AttractorError(f"internal: {name} is neither defined by the program part nor by the runtime")
            text = fold(unit.text, constants)
            chosen[unit.order] = (unit, text)
            new = reads(ast.parse(text).body[0])
            for d in unit.defines:
                new |= set(self.attached.get(d, ()))
            todo.extend(sorted(new))
        return (_ordered_imports({self.imports[n] for n in needed_imports}),
                [text for _, (_, text) in sorted(chosen.items())])


def _is_stdlib(module: str) -> bool:
    return module in sys.stdlib_module_names


def _ordered_imports(statements: set[str]) -> list[str]:
    """The standard library's imports, a blank line, then the third-party ones; `import`
    before `from` in each group, alphabetical."""
    def group(s: str) -> bool:
        return s.split()[1].split(".")[0] in THIRD_PARTY

    def key(s: str) -> tuple:
        return (s.startswith("from"), s.split()[1], s)
    stdlib = sorted((s for s in statements if not group(s)), key=key)
    third = sorted((s for s in statements if group(s)), key=key)
    return stdlib + ([""] if stdlib and third else []) + third
