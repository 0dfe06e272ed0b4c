"""LaTeX for the IR and the derivation; SymPy's printer renders the scalar parts.

Each maximal scalar subtree (numbers, names and the operations SymPy models) is handed to SymPy
once, so a rendering costs time linear in the tree. SymPy runs under a time budget
(compiler.ir.budget): each expression gets at most `SYMPY_SECONDS`, one whole rendering at most
`RENDERING_SECONDS` of SymPy in all. An expression SymPy does not finish in its share, and every
one after the whole budget is spent, is rendered structurally instead (the same mathematics,
typeset node by node without SymPy's simplifications): never a hang.
"""
from __future__ import annotations

import time

import sympy as sp

from compiler import ir
from compiler.ir.budget import OutOfTime, time_budget
from compiler.ir.builtins import OPERATIONS
from compiler.ir.printer import number
from compiler.math.symbolic import NotScalar, to_sympy

SYMPY_SECONDS = 2.0       # SymPy's share for one expression
RENDERING_SECONDS = 10.0  # SymPy's share for one whole rendering (a derivation, a view)

_rendering_ends: list[float] = []   # when the SymPy time of the rendering in progress runs out


def _name(n: str) -> str:
    greek = {"eps": r"\varepsilon", "theta": r"\theta", "psi": r"\psi", "mu": r"\mu", "sigma": r"\sigma",
             "lam": r"\lambda", "nu": r"\nu", "beta": r"\beta"}
    if n in greek:
        return greek[n]
    return n if len(n) == 1 else r"\mathrm{" + n.replace("_", r"\_") + "}"


ARRAYS = {   # the array operations of SPEC §9.5, from their arguments' LaTeX
    "array": lambda a: r"\begin{bmatrix}" + r" \\ ".join(a) + r"\end{bmatrix}",
    "index": lambda a: f"{{{a[0]}}}_{{{a[1]}}}",
    "take": lambda a: f"{{{a[0]}}}_{{{a[1]}}}",
    "slice": lambda a: f"{{{a[0]}}}_{{{a[1]}:{a[2]}}}",
    "eye": lambda a: f"I_{{{a[0]}}}",
    "zeros": lambda a: r"\mathbf{0}_{" + r" \times ".join(a) + "}",
    "ones": lambda a: r"\mathbf{1}_{" + r" \times ".join(a) + "}",
    "concat": lambda a: rf"\begin{{bmatrix}}{a[0]} \\ {a[1]}\end{{bmatrix}}",
    "amax": lambda a: rf"\max\left({a[0]}\right)",
    "amin": lambda a: rf"\min\left({a[0]}\right)",
}


def latex(node: ir.Node) -> str:
    """The LaTeX of `node`: SymPy's for its scalar parts, structural around them."""
    with _rendering():
        return _render(node, _scalar_subtrees(node))


class _rendering:
    """Opens the SymPy budget of one rendering; nested renderings (a rule's node type rendering
    its children through `latex`) share the outermost one's."""

    def __enter__(self):
        self.outermost = not _rendering_ends
        if self.outermost:
            _rendering_ends.append(time.monotonic() + RENDERING_SECONDS)

    def __exit__(self, *exc):
        if self.outermost:
            _rendering_ends.pop()


def _scalar_subtrees(root: ir.Node) -> set[int]:
    """The ids of the nodes under `root` that SymPy models: numbers, names, and the operations with
    a SymPy form applied to such nodes (one pass, children before parents)."""
    order, stack = [], [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children())
    scalar: set[int] = set()
    for node in reversed(order):
        if isinstance(node, (ir.Num, ir.Ref)) or (
                isinstance(node, ir.Apply) and node.fn in OPERATIONS and OPERATIONS[node.fn].sympy is not None
                and all(id(a) in scalar for a in node.args)):
            scalar.add(id(node))
    return scalar


def _sympy_latex(node: ir.Node) -> str | None:
    """SymPy's LaTeX of a scalar expression, or None where SymPy cannot or does not finish in its share."""
    share = min(SYMPY_SECONDS, _rendering_ends[0] - time.monotonic())
    if share <= 0:
        return None
    try:
        with time_budget(share, "SymPy's LaTeX did not finish"):
            symbols: dict[str, sp.Symbol] = {}
            expr = to_sympy(node, symbols)
            return sp.latex(expr, symbol_names={s: _name(n) for n, s in symbols.items()})
    except (OutOfTime, NotScalar, TypeError, ValueError, ArithmeticError, RecursionError):
        return None


def _plain(node: ir.Node) -> bool:
    """A name, or a number written without an exponent: typeset as it is, without a call to SymPy."""
    return isinstance(node, ir.Ref) or (isinstance(node, ir.Num) and number(node.value).lstrip("-").replace(".", "", 1).isdigit())


def _render(node: ir.Node, scalar: set[int]) -> str:
    if id(node) in scalar and not _plain(node):
        text = _sympy_latex(node)
        if text is not None:
            return text
    latexed = getattr(node, "latexed", None)
    if latexed is not None:   # a node type a rule family introduces renders itself
        return latexed()
    if isinstance(node, ir.Num):
        return number(node.value)
    if isinstance(node, ir.Ref):
        return _name(node.name)
    if isinstance(node, ir.DataSet):
        return r"p_{\mathrm{data}}"
    if isinstance(node, ir.Apply):
        a = [_render(x, scalar) for x in node.args]
        infix = {"add": "+", "sub": "-", "mul": r"\,", "matmul": r"\,"}
        if node.fn in infix:
            return rf"\left({a[0]} {infix[node.fn]} {a[1]}\right)" if node.fn in ("add", "sub") else f"{a[0]} {infix[node.fn]} {a[1]}"
        if node.fn == "div":
            return rf"\frac{{{a[0]}}}{{{a[1]}}}"
        if node.fn == "pow":
            grouped = isinstance(node.args[0], ir.Apply) and node.args[0].fn in ("add", "sub")   # already in parentheses
            return rf"{a[0]}^{{{a[1]}}}" if grouped or _plain(node.args[0]) else rf"\left({a[0]}\right)^{{{a[1]}}}"
        if node.fn == "neg":
            return f"-{a[0]}"
        if node.fn == "stop":
            return rf"\operatorname{{sg}}\left[{a[0]}\right]"
        if node.fn == "array" and all(isinstance(x, ir.Apply) and x.fn == "array" for x in node.args):
            rows = (" & ".join(_render(y, scalar) for y in row.args) for row in node.args)   # a matrix, row by row
            return r"\begin{bmatrix}" + r" \\ ".join(rows) + r"\end{bmatrix}"
        if node.fn in ARRAYS:
            return ARRAYS[node.fn](a)
        return rf"\operatorname{{{node.fn}}}\left({', '.join(a)}\right)"
    if isinstance(node, ir.Compare):
        ops = {"<=": r"\le", ">=": r"\ge", "<": "<", ">": ">", "==": "="}
        return rf"\left[{_render(node.lhs, scalar)} {ops[node.op]} {_render(node.rhs, scalar)}\right]"
    if isinstance(node, ir.NetCall):
        return rf"{_name(node.net)}\left({', '.join(_render(a, scalar) for a in node.args)}\right)"
    if isinstance(node, ir.Dist):
        return rf"\mathrm{{{node.family}}}\left({', '.join(_render(a, scalar) for a in node.args)}\right)"
    if isinstance(node, (ir.Density, ir.Sample)):
        inner = ", ".join(map(_name, node.vars)) + (r" \mid " + ", ".join(map(_name, node.given)) if node.given else "")
        return rf"{_name(node.model)}\left({inner}\right)"
    if isinstance(node, ir.Expect):
        binder = ", ".join(map(_name, node.binder))
        op = r"\mathbb{E}" if node.reduce == "mean" else r"\sum"
        return rf"{op}_{{{binder} \sim {_render(node.source, scalar)}}}\left[{_render(node.body, scalar)}\right]"
    if isinstance(node, ir.Divergence):
        return rf"\mathrm{{{node.kind}}}\left({_render(node.p, scalar)} \,\|\, {_render(node.q, scalar)}\right)"
    if isinstance(node, ir.Let):
        return rf"{_render(node.body, scalar)}\Big|_{{{_name(node.name)} = {_render(node.value, scalar)}}}"
    if isinstance(node, ir.Surrogate):
        return _render(node.train, scalar)
    if isinstance(node, ir.Sym):
        return rf"\mathrm{{{node.label}}}\left({', '.join(_render(a, scalar) for a in node.args)}\right)"
    return r"\mathrm{?}"


def derivation_latex(objective: ir.Objective, steps) -> str:
    rel = {"=": "=", "<=": r"\le", ">=": r"\ge", "~": r"\approx", "=+c": r"\overset{+c}{=}", "min<=": r"\overset{\min}{\le}"}
    sense = {"minimize": r"\min", "maximize": r"\max", "estimate": r"\mathrm{estimate}"}[objective.sense]
    with _rendering():   # one SymPy budget for the whole derivation
        lines = [rf"& {sense}\; {latex(objective.expr)}"]
        for s in steps:
            rule = s.rule.replace("_", r"\_")
            lines.append(rf"{rel[s.relation]}\;& {latex(s.node)} && \text{{({rule})}}")
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"
