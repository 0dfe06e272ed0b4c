"""IR ↔ SymPy for scalar expressions: rules hand SymPy the mathematics, printers the LaTeX."""
from __future__ import annotations

import sympy as sp

from compiler import ir
from compiler.ir.builtins import OPERATIONS


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
    if isinstance(node, ir.Apply) and node.fn in OPERATIONS and OPERATIONS[node.fn].sympy is not None:
        return OPERATIONS[node.fn].sympy(sp, *(to_sympy(a, symbols, program) for a in node.args))
    raise NotScalar(type(node).__name__)
