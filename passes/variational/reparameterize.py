"""reparameterize: E[w ~ F_ψ] f(w) = E[ε ~ base] f(T_ψ(ε)) for reparameterisable F (Normal,
Laplace, Uniform, LogNormal), so the pathwise gradient E[∇_ψ f(T_ψ(ε))] is unbiased for ∇E[f].

Relation `=`. Side conditions: every moving law is reparameterisable and f is differentiable
in the draws (no Iverson bracket or piecewise-constant function of them); otherwise the rule
refuses, and `score_function` takes the expectation.
"""
from __future__ import annotations

from compiler import ir
from compiler.rewrite.rule import Context, Refusal, Rewrite, Rule
from passes.variational.sampling import Draws, inline, moving_expectation


def match_pathwise(node: ir.Expect, ctx: Context) -> Draws | Refusal | None:
    """An expectation under a moving law whose every moving law is reparameterisable (Normal,
    Laplace, Uniform, LogNormal) and whose body is differentiable in the draws."""
    draws = moving_expectation(node, ctx)
    if draws is None:
        return None
    rough = sorted(name for name, kind in draws.kinds.items() if kind == "score")
    if rough:
        laws = ", ".join(f"{name} ~ {draws.family(name)}" for name in rough)
        verb = "has" if len(rough) == 1 else "have"
        return Refusal(f"{laws} {verb} no reparameterisation (no differentiable x = T(epsilon) of fixed noise)",
                       node.loc)
    if not draws.smooth:
        return Refusal("the body is not differentiable in the draws (an Iverson bracket or a step of them)", node.loc)
    return draws


def build_pathwise(draws: Draws, ctx: Context) -> Rewrite:
    """The sampler inlined, every moving draw written as T_ψ(ε) of fixed noise ε."""
    done = inline(draws.expect, draws.lines, draws.kinds, ctx.program, score_all=False)
    smooth = "the body is differentiable in the draws: no Iverson bracket or step of them"
    return Rewrite(done.node, conditions=done.how + (smooth,),
                   note="pathwise gradient: the draws are differentiable functions of the parameters and fixed noise",
                   facts=(("families", draws.families("pathwise")),))


RULE = Rule(
    "reparameterize", problem="estimator", matches=(ir.Expect,), relation="=",
    identity="E[w ~ F_psi] f(w) = E[eps ~ base] f(T_psi(eps)), so grad E[f] = E[grad_psi f(T_psi(eps))]",
    match=match_pathwise, build=build_pathwise,
    unmatched="the objective has no expectation under a law that depends on the parameters")
