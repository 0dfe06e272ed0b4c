"""IR ↔ SymPy for scalar expressions: rules hand SymPy the mathematics, printers the LaTeX."""
from __future__ import annotations

import sympy as sp

from compiler import ir

_FUNCS = {
    "log": sp.log, "exp": sp.exp, "sqrt": sp.sqrt, "abs": sp.Abs, "tanh": sp.tanh,
    "sign": sp.sign, "floor": sp.floor, "square": lambda a: a ** 2,
    "softplus": lambda a: sp.log(1 + sp.exp(a)), "sigmoid": lambda a: 1 / (1 + sp.exp(-a)),
    "relu": lambda a: sp.Max(a, 0), "step": lambda a: sp.Heaviside(a, 1),
    "max": sp.Max, "min": sp.Min, "log2": lambda a: sp.log(a, 2),
}


class NotScalar(ValueError):
    """The expression has parts SymPy does not model (expectations, densities, nets...)."""


def to_sympy(node: ir.Node, symbols: dict[str, sp.Symbol] | None = None,
             program: ir.Program | None = None) -> sp.Expr:
    """A scalar IR expression as SymPy; names become symbols (constants are inlined)."""
    symbols = symbols if symbols is not None else {}
    if isinstance(node, ir.Num):
        v = node.value
        return sp.Integer(int(v)) if float(v).is_integer() else sp.Float(v)
    if isinstance(node, ir.Ref):
        if program is not None and node.kind == "const":
            d = program.decl(node.name)
            return to_sympy(d.value, symbols, program)
        if node.name not in symbols:
            symbols[node.name] = sp.Symbol(node.name, real=True)
        return symbols[node.name]
    if isinstance(node, ir.Apply):
        args = [to_sympy(a, symbols, program) for a in node.args]
        ops = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
               "div": lambda a, b: a / b, "pow": lambda a, b: a ** b, "neg": lambda a: -a}
        if node.fn in ops:
            return ops[node.fn](*args)
        if node.fn in _FUNCS:
            return _FUNCS[node.fn](*args)
    raise NotScalar(type(node).__name__)
