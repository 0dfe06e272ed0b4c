"""relax_step: [s <= 0]  <=  φ(s), the 0-1 loss under a convex surrogate that lies above it.

    φ(s) = max(0, 1 - s)          hinge (the default): asks for a margin of 1
    φ(s) = log2(1 + exp(-s))      logistic, with `via relax_step(logistic)`

Both surrogates are convex and at least [s <= 0] (and [s < 0]) at every real s; SymPy proves
both facts piece by piece (compiler.math.piecewise). The relaxed objective is therefore an upper
bound, valid where the term is minimised with a non-negative weight (the manager checks it).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from compiler import ir
from compiler.analysis.problems import depends_on, node_problem
from compiler.ir.printer import show
from compiler.math.piecewise import LOGISTIC_LABEL, SURROGATES, step_surrogate
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule


def _is_zero(node: ir.Node) -> bool:
    return isinstance(node, ir.Num) and node.value == 0


def margin(node: ir.Node) -> tuple[ir.Node, bool] | None:
    """(s, strict) when `node` is the 0-1 loss [s <= 0] (strict: [s < 0]) in one of its
    spellings: [a <= b], [a < b], [b >= a], [b > a] (s = a - b), step(u) = [-u <= 0]."""
    loc = node.loc
    if isinstance(node, ir.Compare) and node.op in ("<=", "<", ">=", ">"):
        a, b = (node.lhs, node.rhs) if node.op in ("<=", "<") else (node.rhs, node.lhs)
        if _is_zero(b):
            s = a
        elif _is_zero(a):
            s = ir.Apply("neg", (b,), loc=loc)
        else:
            s = ir.Apply("sub", (a, b), loc=loc)
        return s, node.op in ("<", ">")
    if isinstance(node, ir.Apply) and node.fn == "step":
        u = node.args[0]
        s = u.args[0] if isinstance(u, ir.Apply) and u.fn == "neg" else ir.Apply("neg", (u,), loc=loc)
        return s, False
    return None


@dataclass(frozen=True)
class ZeroOne:
    """A 0-1 loss [s <= 0] in the parameters: the node, its margin s and whether it is strict."""

    node: ir.Node
    margin: ir.Node
    strict: bool


def match(node: ir.Node, ctx: Context) -> ZeroOne | Refusal | None:
    """A 0-1 loss in the parameters; a refusal at any other non-differentiable node."""
    found = margin(node)
    if found is None:
        problem = node_problem(ctx.program, node)
        if problem is not None and problem.kind == "nondiff":
            return Refusal("it relaxes only 0-1 losses ([s <= 0], [s < 0], [s >= 0], [s > 0], step(s)), and "
                           f"{show(node)} is not one; evolution_strategy smooths any such term")
        return None
    if not depends_on(node, ctx.program):
        return None
    return ZeroOne(node, *found)


def surrogate(ctx: Context) -> str:
    """The surrogate asked for: a flag (`logistic`, `hinge`) before `surrogate=NAME`, hinge by default."""
    flags = [kind for kind in SURROGATES if ctx.option(kind) is True]
    return flags[0] if flags else ctx.option("surrogate", "hinge")


def build(found: ZeroOne, ctx: Context) -> Rewrite:
    kind = surrogate(ctx)
    phi, proved = step_surrogate(kind, found.strict)
    s, loc = found.margin, found.node.loc
    if kind == "hinge":
        new = ir.Apply("max", (ir.Num(0), ir.Apply("sub", (ir.Num(1), s), loc=loc)), loc=loc)
        note = "hinge: asks for a margin of 1"
    else:
        new = ir.Sym(LOGISTIC_LABEL, sp.srepr(phi), ("s",), (s,), loc=loc)
        note = f"{LOGISTIC_LABEL}(s) = log2(1 + exp(-s))"
    return Rewrite(new, "<=", proved, note=note,
                   facts=(("surrogate", kind), ("margin", s), ("strict", found.strict)))


RULE = Rule(
    "relax_step", problem="nondiff", matches=(ir.Compare, ir.Apply), relation="<=",
    identity="[s <= 0] <= max(0, 1 - s)   (hinge; log2(1 + exp(-s)) on request)",
    match=match, build=build,
    options=(Option("surrogate", str, choices=tuple(SURROGATES), doc="the surrogate by name: hinge or logistic",
                    wording=f"unknown surrogate '{{value}}'; surrogates are {', '.join(SURROGATES)}"),
             Option("hinge", bool, doc="max(0, 1 - s), the default"),
             Option("logistic", bool, doc="log2(1 + exp(-s)), smooth")),
    unmatched="the objective has no 0-1 loss [s <= 0] or step(-s) in its parameters")
