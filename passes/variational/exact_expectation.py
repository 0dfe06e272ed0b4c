"""exact_expectation: an expectation under a builtin law that depends on the parameters, computed
in closed form where SymPy integrates it, relation =.

    E[z ~ D(theta)] f(z) = F(theta) = integral over supp D of f(x) p_D(x; theta) dx   (the sum, for a discrete D)

The estimator rules (reparameterize, score_function) answer the same node with an unbiased
estimate of F and of its gradient from draws; where F has a closed form it is exact, with no
draw and gradient variance 0, so it ranks first (SPEC 9.4: exact before unbiased) and, in rule
order, is tried first. E[z ~ Normal(m, 1)] (z - 2)^2 becomes (m - 2)^2 + 1: the problem turns
deterministic, solved to tolerance, where one draw a step left Adam 0.8 from the optimum after
1000 steps.

The derivation is `closed_form_expectation`'s (the same SymPy integral after the change of
variables of D's reparameterisation, the same refusals); here the expectation stands alone
rather than inside a nonlinear function. An expectation whose body reads the draw through a
piecewise-constant function (round, floor, sign, step, an Iverson bracket) is refused before
SymPy is asked: its integral is a series, not a closed form, and the time limit would only be
spent. Forcing an estimator (`via reparameterize`, `via score_function`) keeps it.
"""
from __future__ import annotations

from compiler import ir
from compiler.analysis.problems import node_problem
from compiler.ir.builtins import OPERATIONS
from compiler.ir.printer import show
from compiler.rewrite.rule import Context, Refusal, Rewrite, Rule
from passes.variational.closed_form_expectation import (
    CLOSED_FORM_SECONDS,
    SECONDS,
    ClosedExpectation,
    build_closed,
    closed_expectation,
)


def piecewise_constant_in_draw(expect: ir.Expect) -> ir.Node | None:
    """The first node of the body that reads the draw through a piecewise-constant function."""
    drawn = set(expect.binder)
    for n in expect.body.walk():
        rough = isinstance(n, ir.Compare) or (isinstance(n, ir.Apply) and n.fn in OPERATIONS
                                               and not OPERATIONS[n.fn].smooth)
        if rough and ir.free_names(n) & drawn:
            return n
    return None


def match_exact(node: ir.Expect, ctx: Context) -> ClosedExpectation | Refusal | None:
    """An expectation of the estimator problem (under a law that depends on the parameters) over a
    builtin law, with a closed form."""
    found = node_problem(ctx.program, node)
    if found is None or found.kind != "estimator" or not isinstance(node.source, ir.Dist):
        return None
    rough = piecewise_constant_in_draw(node)
    if rough is not None:
        return Refusal(f"{show(node)} reads the draw through {show(rough)}, piecewise constant: its integral is a "
                       "series, not a closed form", node.loc)
    return closed_expectation(node, node, ctx.program, ctx.option("seconds", CLOSED_FORM_SECONDS))


def build_exact(found: ClosedExpectation, ctx: Context) -> Rewrite:
    rw = build_closed(found, ctx)
    return Rewrite(rw.node, "=", (rw.conditions[0], "the expectation is computed exactly: no draw, no estimator, "
                                                    "gradient variance 0"),
                   note=f"a closed-form expectation under {found.family} in place of an estimator",
                   facts=rw.facts)


RULE = Rule(
    "exact_expectation", problem="estimator", matches=(ir.Expect,), relation="=",
    identity="E[z ~ D(theta)] f(z) = F(theta) = integral of f(x) p_D(x; theta) dx (or the sum), by SymPy",
    match=match_exact, build=build_exact,
    unmatched="the objective has no expectation under a builtin law that depends on the parameters",
    options=(SECONDS,))
