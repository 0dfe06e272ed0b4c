"""Building blocks the rule families share: fresh names, arithmetic on IR nodes, constraints in
standard form, and training defaults a rule adds where the `train` line is silent."""
from __future__ import annotations

import dataclasses

from compiler import ir
from compiler.analysis.constants import const_value
from compiler.ir.printer import number


def used_names(program: ir.Program) -> set[str]:
    """Every name the program declares, binds or refers to (fresh names avoid them all)."""
    names = {getattr(d, "name", None) for d in program.decls} | {n for n, _ in program.data_vars}
    names |= {r.name for r in program.reports}
    roots = [program.objective.expr] + [p.loss for p in program.players] + \
        [side for c in program.constraints for side in (c.lhs, c.rhs)] + [r.expr for r in program.reports]
    for root in roots:
        for n in root.walk():
            if isinstance(n, ir.Ref):
                names.add(n.name)
            elif isinstance(n, ir.Expect):
                names.update(n.binder)
            elif isinstance(n, ir.Let):
                names.add(n.name)
    return names


def fresh(used: set[str], base: str) -> str:
    """`base`, or `base_2`, `base_3`, ... whichever is not in `used`."""
    if base not in used:
        return base
    i = 2
    while f"{base}_{i}" in used:
        i += 1
    return f"{base}_{i}"


def add(a: ir.Node, b: ir.Node, sign: int = 1) -> ir.Node:
    return ir.Apply("add" if sign > 0 else "sub", (a, b))


def mul(a: ir.Node, b: ir.Node) -> ir.Node:
    return ir.Apply("mul", (a, b))


def standard_form(c: ir.Constraint) -> tuple[str, ir.Node]:
    """("ineq", g) for g <= 0 or ("eq", h) for h == 0, from any written comparison."""
    lhs, rhs = (c.rhs, c.lhs) if c.op in (">=", ">") else (c.lhs, c.rhs)
    expr = lhs if const_value(rhs) == 0 else ir.Apply("sub", (lhs, rhs), loc=c.loc)
    return ("eq" if c.op == "==" else "ineq"), expr


def violation(kind: str, expr: ir.Node, shape) -> ir.Node:
    """The largest violation of one constraint: max(g, 0) (|h|) over its entries."""
    v = ir.Apply("relu" if kind == "ineq" else "abs", (expr,))
    return ir.Apply("amax", (v,)) if shape else v


def fill_training(train: ir.Train, defaults) -> ir.Train:
    """The `train` options with `defaults` added for every key the program leaves unset."""
    given = dict(train.options)
    return dataclasses.replace(train, options=train.options + tuple((k, v) for k, v in defaults if k not in given))


def training_text(train: ir.Train, defaults) -> str:
    """"; training where the train line is silent: ..." for the defaults `fill_training` adds ("" if none)."""
    given = dict(train.options)
    chosen = [(k, v) for k, v in defaults if k not in given]
    text = {"optimizer": lambda v: f"{v[0]}(" + ", ".join(f"{k}={number(x)}" for k, x in v[1]) + ")"}
    listed = ", ".join(f"{k}={text.get(k, str)(v)}" for k, v in chosen)
    return f"; training where the train line is silent: {listed}" if chosen else ""
