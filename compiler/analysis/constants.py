"""Constant folding: the value of an expression made of numbers and declared constants."""
from __future__ import annotations

from compiler import ir


def const_value(node: ir.Node, program: ir.Program | None = None) -> float | None:
    """The numeric value of a constant expression, or None."""
    if isinstance(node, ir.Num):
        return node.value
    if isinstance(node, ir.Ref) and node.kind == "const" and program is not None:
        d = program.decl(node.name)
        return const_value(d.value, program) if isinstance(d, ir.Const) else None
    if isinstance(node, ir.Apply):
        vals = [const_value(a, program) for a in node.args]
        if any(v is None for v in vals):
            return None
        ops = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
               "neg": lambda a: -a, "div": lambda a, b: a / b if b else None,
               "pow": lambda a, b: a ** b if a > 0 or float(b).is_integer() else None}
        if node.fn in ops:
            try:
                return ops[node.fn](*vals)
            except (OverflowError, ZeroDivisionError):
                return None
    return None
