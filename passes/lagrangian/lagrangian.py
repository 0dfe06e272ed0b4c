"""The rule `lagrangian`: a constraint becomes a multiplier term of the Lagrangian.

    subject to g <= 0   →   λ·g,  λ ≥ 0          subject to h == 0   →   ν·h,  ν free

sup over λ ≥ 0 of λ·g is 0 where g ≤ 0 and +∞ elsewhere (sup over ν of ν·h: 0 where h = 0),
so min_θ max_λ f + λ·g is the constrained minimum (`=` at the saddle point), and for every
λ ≥ 0 the dual value min_θ (f + λ·g) is at most that minimum (weak duality). With ρ > 0
(`lagrangian(rho=…)`, default 1) the term is the augmented one,

    λ·g  →  λ·s + ρ/2·s²,  s = max(g, -λ/ρ)          ν·h  →  ν·h + ρ/2·h²,

whose sup over the multiplier is again 0 on the feasible set and +∞ off it, and which is
≤ 0 at every feasible θ: the same saddle point, value and weak duality. A vector constraint
holds elementwise with one multiplier per entry (λ·g → sum(λ * g)); `g >= c` is `c - g <= 0`;
a strict `<` is relaxed to its closure `<=` (same infimum).
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import number, shape_text, show
from compiler.rewrite.building import add, fresh, mul, standard_form, used_names
from compiler.rewrite.rule import Context, Option, Rewrite, Rule

PLAYER = "multipliers"
DEFAULT_RHO = 1.0


@dataclass(frozen=True)
class Constrained:
    """What `match` finds: the constraint in standard form (`kind` "ineq": g <= 0, "eq":
    h == 0, `expr` g or h) and its 1-based position among the program's constraints."""

    constraint: ir.Constraint
    kind: str
    expr: ir.Node
    index: int


def _pair(mult: ir.Node, value: ir.Node, shape) -> ir.Node:
    """mult·value for a scalar constraint, sum(mult * value) for a vector one."""
    return mul(mult, value) if not shape else ir.Apply("sum", (mul(mult, value),))


def _square(value: ir.Node, shape) -> ir.Node:
    return ir.Apply("pow", (value, ir.Num(2))) if not shape else ir.Apply("sumsq", (value,))


def multiplier_term(kind: str, expr: ir.Node, mult: str, shape, rho: float, local: str) -> ir.Node:
    """λ·g (ν·h) for rho = 0; else the augmented λ·s + ρ/2·s², s = max(g, -λ/ρ) (ν·h + ρ/2·h²),
    with s (h) bound once by a Let named `local`."""
    lam = ir.Ref(mult, "param")
    if rho == 0:
        return _pair(lam, expr, shape)
    s = ir.Ref(local, "local")
    floor = ir.Apply("neg", (lam,)) if rho == 1 else ir.Apply("div", (ir.Apply("neg", (lam,)), ir.Num(rho)))
    value = ir.Apply("max", (expr, floor)) if kind == "ineq" else expr
    return ir.Let(local, value, add(_pair(lam, s, shape), mul(ir.Num(rho / 2), _square(s, shape))))


def match_constraint(node: ir.Constraint, ctx: Context) -> Constrained:
    """Every constraint has a standard form g <= 0 or h == 0."""
    kind, expr = standard_form(node)
    index = next(i for i, c in enumerate(ctx.program.constraints, 1) if c is node)
    return Constrained(node, kind, expr, index)


def build_multiplier_term(found: Constrained, ctx: Context) -> Rewrite:
    """The (augmented) multiplier term, its multiplier λ_i (ν_i) a new parameter owned by the
    multiplier player, with the multiplier's report (its largest magnitude for a vector)."""
    c, kind, expr = found.constraint, found.kind, found.expr
    if not ctx.player.params:
        raise AttractorError("a constraint needs parameters that move, but an estimate has none", c.loc)
    rho = ctx.option("rho", DEFAULT_RHO)
    used = used_names(ctx.program)
    mult = fresh(used, f"{'lambda' if kind == 'ineq' else 'nu'}_{found.index}")
    local = fresh(used | {mult}, f"{'s' if kind == 'ineq' else 'h'}_{found.index}")
    term = multiplier_term(kind, expr, mult, c.shape, rho, local)
    decl = ir.Param(mult, tuple(c.shape), None, owner=PLAYER, loc=c.loc)
    ref = ir.Ref(mult, "param")
    report = (ir.Report(mult, ref) if not c.shape else
              ir.Report(fresh(used | {mult}, f"{mult}_max"), ir.Apply("amax", (ir.Apply("abs", (ref,)),))))
    where = "g" if kind == "ineq" else "h"
    form = f"{where} = {show(expr)}" + (f", elementwise over {shape_text(c.shape)} (one multiplier per entry)" if c.shape else "")
    conditions = [
        (f"sup over {mult} >= 0 of the term is 0 where g <= 0 and +inf elsewhere: min-max = the constrained minimum (= at the saddle)"
         if kind == "ineq" else
         f"sup over {mult} of the term is 0 where h == 0 and +inf elsewhere: min-max = the constrained minimum (= at the saddle)"),
        (f"weak duality: for every {mult}{' >= 0' if kind == 'ineq' else ''}, min over {', '.join(ctx.player.params)} "
         "of L <= the constrained minimum (dual value <= primal value)"),
    ]
    if kind == "ineq":
        conditions.append(f"{mult} >= 0 kept by projection after every ascent step (proximal map of the indicator of {mult} >= 0)")
    if c.op in ("<", ">"):
        conditions.append(f"strict {c.op} relaxed to its closure (same infimum)")
    if rho > 0:
        augmented = "λ·g → λ·s + ρ/2·s², s = max(g, -λ/ρ)" if kind == "ineq" else "ν·h → ν·h + ρ/2·h²"
        how = (f"augmented Lagrangian, rho = {number(rho)}: {augmented} — the same saddle point, value and weak duality, "
               "with curvature that damps the rotation of gradient descent-ascent")
    else:
        how = "plain Lagrangian (rho = 0): gradient descent-ascent may circle the saddle; rho > 0 damps it"
    return Rewrite(term, conditions=tuple(conditions), decls=(decl,), note=f"{form}; {how}",
                   roles=((mult, f"multiplier, player {PLAYER}"),), reports=(report,),
                   facts=(("kind", kind), ("expr", expr), ("multiplier", mult), ("local", local), ("rho", rho),
                          ("report", report.name)))


LAGRANGIAN = Rule(
    "lagrangian", problem="constraint", matches=(ir.Constraint,), relation="=",
    identity="min f s.t. g <= 0, h == 0  =  min_θ max_{λ >= 0, ν} f + λ·g + ν·h   (augmented: λ·s + ρ/2·s², s = max(g, -λ/ρ))",
    match=match_constraint, build=build_multiplier_term,
    options=(Option("rho", float, low=0, doc="weight ρ of the augmenting square (default 1; 0: the plain Lagrangian)",
                    wording="the weight of the augmenting square (rho=...) needs a number >= 0 (0: the plain Lagrangian)"),),
    unmatched="the program has no constraint (subject to ...)")
