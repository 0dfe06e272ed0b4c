"""LaTeX for the IR and the derivation; SymPy's printer renders the scalar parts."""
from __future__ import annotations

import sympy as sp

from compiler import ir
from compiler.ir.printer import number
from compiler.math.symbolic import NotScalar, to_sympy


def _name(n: str) -> str:
    greek = {"eps": r"\varepsilon", "theta": r"\theta", "psi": r"\psi", "mu": r"\mu", "sigma": r"\sigma",
             "lam": r"\lambda", "nu": r"\nu", "beta": r"\beta"}
    if n in greek:
        return greek[n]
    return n if len(n) == 1 else r"\mathrm{" + n.replace("_", r"\_") + "}"


ARRAYS = {   # the array operations of SPEC §9.5, from their arguments' LaTeX
    "array": lambda a: r"\begin{bmatrix}" + r" \\ ".join(a) + r"\end{bmatrix}",
    "index": lambda a: f"{{{a[0]}}}_{{{a[1]}}}",
    "slice": lambda a: f"{{{a[0]}}}_{{{a[1]}:{a[2]}}}",
    "eye": lambda a: f"I_{{{a[0]}}}",
    "zeros": lambda a: r"\mathbf{0}_{" + r" \times ".join(a) + "}",
    "ones": lambda a: r"\mathbf{1}_{" + r" \times ".join(a) + "}",
    "concat": lambda a: rf"\begin{{bmatrix}}{a[0]} \\ {a[1]}\end{{bmatrix}}",
    "amax": lambda a: rf"\max\left({a[0]}\right)",
    "amin": lambda a: rf"\min\left({a[0]}\right)",
}


def latex(node: ir.Node) -> str:
    try:
        symbols: dict[str, sp.Symbol] = {}
        expr = to_sympy(node, symbols)
        names = {s: _name(n) for n, s in symbols.items()}
        return sp.latex(expr, symbol_names=names)
    except (NotScalar, TypeError, ValueError):
        pass
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
        a = [latex(x) for x in node.args]
        infix = {"add": "+", "sub": "-", "mul": r"\,", "matmul": r"\,"}
        if node.fn in infix:
            return rf"\left({a[0]} {infix[node.fn]} {a[1]}\right)" if node.fn in ("add", "sub") else f"{a[0]} {infix[node.fn]} {a[1]}"
        if node.fn == "div":
            return rf"\frac{{{a[0]}}}{{{a[1]}}}"
        if node.fn == "pow":
            return rf"\left({a[0]}\right)^{{{a[1]}}}"
        if node.fn == "neg":
            return f"-{a[0]}"
        if node.fn == "stop":
            return rf"\operatorname{{sg}}\left[{a[0]}\right]"
        if node.fn == "array" and all(isinstance(x, ir.Apply) and x.fn == "array" for x in node.args):
            rows = (" & ".join(latex(y) for y in row.args) for row in node.args)   # a matrix, row by row
            return r"\begin{bmatrix}" + r" \\ ".join(rows) + r"\end{bmatrix}"
        if node.fn in ARRAYS:
            return ARRAYS[node.fn](a)
        return rf"\operatorname{{{node.fn}}}\left({', '.join(a)}\right)"
    if isinstance(node, ir.Compare):
        ops = {"<=": r"\le", ">=": r"\ge", "<": "<", ">": ">", "==": "="}
        return rf"\left[{latex(node.lhs)} {ops[node.op]} {latex(node.rhs)}\right]"
    if isinstance(node, ir.NetCall):
        return rf"{_name(node.net)}\left({', '.join(latex(a) for a in node.args)}\right)"
    if isinstance(node, ir.Dist):
        return rf"\mathrm{{{node.family}}}\left({', '.join(latex(a) for a in node.args)}\right)"
    if isinstance(node, (ir.Density, ir.Sample)):
        inner = ", ".join(map(_name, node.vars)) + (r" \mid " + ", ".join(map(_name, node.given)) if node.given else "")
        return rf"{_name(node.model)}\left({inner}\right)"
    if isinstance(node, ir.Expect):
        binder = ", ".join(map(_name, node.binder))
        op = r"\mathbb{E}" if node.reduce == "mean" else r"\sum"
        return rf"{op}_{{{binder} \sim {latex(node.source)}}}\left[{latex(node.body)}\right]"
    if isinstance(node, ir.Divergence):
        return rf"\mathrm{{{node.kind}}}\left({latex(node.p)} \,\|\, {latex(node.q)}\right)"
    if isinstance(node, ir.Let):
        return rf"{latex(node.body)}\Big|_{{{_name(node.name)} = {latex(node.value)}}}"
    if isinstance(node, ir.Surrogate):
        return latex(node.train)
    if isinstance(node, ir.Sym):
        return rf"\mathrm{{{node.label}}}\left({', '.join(latex(a) for a in node.args)}\right)"
    return r"\mathrm{?}"


def derivation_latex(objective: ir.Objective, steps) -> str:
    rel = {"=": "=", "<=": r"\le", ">=": r"\ge", "~": r"\approx", "=+c": r"\overset{+c}{=}", "min<=": r"\overset{\min}{\le}"}
    sense = {"minimize": r"\min", "maximize": r"\max", "estimate": r"\mathrm{estimate}"}[objective.sense]
    lines = [rf"& {sense}\; {latex(objective.expr)}"]
    for s in steps:
        rule = s.rule.replace("_", r"\_")
        lines.append(rf"{rel[s.relation]}\;& {latex(s.node)} && \text{{({rule})}}")
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"
