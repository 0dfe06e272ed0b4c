"""proximal: c * g(w) + f(w)  =  f(w) with w ← prox_{η c g}(w) after each gradient step of size η.

For g = norm1 the map is soft-thresholding, for g = sumsq a shrinkage; SymPy derives both as
argmin_x ½(x - v)² + t g(x) (compiler.math.piecewise.derive_prox). Proximal gradient descent
minimises the same objective (relation =, nothing is approximated), and soft-thresholding sets
coordinates exactly to zero. The rule matches a term c * g(w), g * c or g / c with a constant
c ≥ 0 and w a parameter of the player; the pass (passes.relaxation.passes.ProximalPass) decides
which top-level terms leave the loss.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.analysis.constants import const_value
from compiler.math.piecewise import PROX_FUNCTIONS, derive_prox
from compiler.rewrite.rule import Context, Rewrite, Rule
from passes.relaxation.nodes import ProximalStep


@dataclass(frozen=True)
class Penalty:
    """A term weight * kind(param) with a known proximal map."""

    param: str
    kind: str
    weight: float


def weighted(term: ir.Node, program: ir.Program) -> tuple[float, ir.Node]:
    """(c, g) for a term c * g, g * c or g / c with a constant c; else (1, term)."""
    if isinstance(term, ir.Apply) and term.fn == "mul":
        for i in (0, 1):
            c = const_value(term.args[i], program)
            if c is not None:
                return c, term.args[1 - i]
    if isinstance(term, ir.Apply) and term.fn == "div":
        c = const_value(term.args[1], program)
        if c:
            return 1 / c, term.args[0]
    return 1.0, term


def match(term: ir.Apply, ctx: Context) -> Penalty | None:
    """c * norm1(w) or c * sumsq(w), c ≥ 0, w a declared parameter of the player."""
    c, g = weighted(term, ctx.program)
    if c < 0 or not (isinstance(g, ir.Apply) and g.fn in PROX_FUNCTIONS):
        return None
    arg = g.args[0]
    if not (isinstance(arg, ir.Ref) and arg.name in ctx.player.params
            and isinstance(ctx.program.decl(arg.name), ir.Param)):
        return None
    return Penalty(arg.name, g.fn, c)


def build(found: Penalty, ctx: Context) -> Rewrite:
    """The map that replaces the term; the pass gives the loss left once its terms are out."""
    weight = ir.Num(found.weight)
    return Rewrite(ProximalStep(found.param, found.kind, weight), "=",
                   (f"prox of t * {PROX_FUNCTIONS[found.kind]} at v, derived by SymPy: {derive_prox(found.kind)}",),
                   note="applied after every gradient step, with that step's size",
                   prox=((found.param, found.kind, weight),),
                   facts=(("param", found.param), ("kind", found.kind), ("weight", found.weight)))


RULE = Rule(
    "proximal", problem="", matches=(ir.Apply,), relation="=",
    identity="c*norm1(w) + f(w) = f(w) with w <- prox_{eta c norm1}(w) after each gradient step",
    match=match, build=build,
    unmatched="the objective has no term c * norm1(w) or c * sumsq(w) that leaves a loss trained by plain "
              "gradient steps")
