"""reparameterize: E[w ~ F_ψ] f(w) = E[ε ~ base] f(T_ψ(ε)) for reparameterisable F (Normal,
Laplace, Uniform, LogNormal), so the pathwise gradient E[∇_ψ f(T_ψ(ε))] is unbiased for ∇E[f].

Relation `=`. Side conditions: every moving law is reparameterisable and f is differentiable
in the draws (no Iverson bracket or piecewise-constant function of them); otherwise the rule
refuses, and `score_function` takes the expectation.

Option stl (sticking the landing, Roeder et al. 2017): in the ELBO's log q_ψ(z | x) term the
guide's parameters are stopped while z = T_ψ(ε) stays live, so the gradient of that term is
∂log q/∂z · ∂z/∂ψ without the score ∂log q_ψ(z)/∂ψ. The score has mean zero under q
(E_q[∇_ψ log q_ψ(z)] = ∇_ψ ∫ q_ψ = 0), so the estimate stays unbiased for ∇ ELBO, and when q is
the exact posterior its variance is zero (log p(x, z) - log q(z | x) = log p(x) for every z).
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule
from passes.variational.nodes import OverDraws, StopParams
from passes.variational.sampling import Draws, inline, moving_expectation


@dataclass(frozen=True)
class Pathwise:
    """An expectation the pathwise gradient takes, and (stl) the guide whose log density in
    the body gets its parameters stopped."""

    draws: Draws
    stl_guide: str = ""


def match_pathwise(node: ir.Expect, ctx: Context) -> Pathwise | Refusal | None:
    """An expectation under a moving law whose every moving law is reparameterisable (Normal,
    Laplace, Uniform, LogNormal) and whose body is differentiable in the draws."""
    draws = moving_expectation(node, ctx)
    if draws is None:
        return None
    stl = ctx.option("stl", False)
    via = ctx.program.objective.via
    rough = sorted(name for name, kind in draws.kinds.items() if kind == "score")
    if rough:
        laws = ", ".join(f"{name} ~ {draws.family(name)}" for name in rough)
        verb = "has" if len(rough) == 1 else "have"
        if stl:
            return Refusal(f"stl needs a reparameterised guide, but {laws} {verb} no reparameterisation "
                           "(no differentiable z = T(epsilon) of fixed noise)", via.loc if via else node.loc)
        return Refusal(f"{laws} {verb} no reparameterisation (no differentiable x = T(epsilon) of fixed noise)",
                       node.loc)
    if not draws.smooth:
        return Refusal("the body is not differentiable in the draws (an Iverson bracket or a step of them)", node.loc)
    if not stl:
        return Pathwise(draws)
    return _stl_target(draws, node, ctx)


def _stl_target(draws: Draws, node: ir.Expect, ctx: Context) -> Pathwise | Refusal:
    """The guide whose `log q(z | x)` stands in the body of an ELBO, for sticking the landing."""
    source = node.source
    guide = ctx.program.decl(source.model) if isinstance(source, ir.Sample) else None
    if not isinstance(guide, ir.Block) or guide.kind != "guide":
        return Refusal("stl stops the guide's parameters in the ELBO's log q(z | x), but this expectation is not "
                       "under a guide", node.loc)
    if any(isinstance(n, OverDraws) and n.op == "logmeanexp" for n in node.body.walk()):
        return Refusal("stl is biased inside the importance-weighted bound (its log q term is not linear in the "
                       "estimate): use jensen(iwae=K, dreg), the doubly reparameterised gradient", node.loc)
    if not _guide_log_densities(node.body, guide.name):
        return Refusal(f"the expectation has no log {guide.name}(...) term left to stop (analytic_kl replaced "
                       "E_q[log q - log p(z)] by its closed form, which has no score noise)", node.loc)
    return Pathwise(draws, guide.name)


def _is_guide_log(n: ir.Node, guide: str) -> bool:
    return isinstance(n, ir.Apply) and n.fn == "log" and isinstance(n.args[0], ir.Density) and n.args[0].model == guide


def _guide_log_densities(body: ir.Node, guide: str) -> list[ir.Node]:
    """The `log guide(...)` terms of `body` whose parameters are not stopped yet."""
    if isinstance(body, StopParams):
        return []
    if _is_guide_log(body, guide):
        return [body]
    return [n for c in body.children() for n in _guide_log_densities(c, guide)]


def _stop_guide_params(body: ir.Node, guide: str) -> ir.Node:
    """`body` with each `log guide(...)` term wrapped in StopParams."""
    if isinstance(body, StopParams):
        return body
    if _is_guide_log(body, guide):
        return StopParams(body, loc=body.loc)
    kids = body.children()
    return body.with_children(tuple(_stop_guide_params(c, guide) for c in kids)) if kids else body


def build_pathwise(found: Pathwise, ctx: Context) -> Rewrite:
    """The sampler inlined, every moving draw written as T_ψ(ε) of fixed noise ε."""
    draws = found.draws
    body = _stop_guide_params(draws.expect.body, found.stl_guide) if found.stl_guide else None
    done = inline(draws.expect, draws.lines, draws.kinds, ctx.program, score_all=False, body=body)
    smooth = "the body is differentiable in the draws: no Iverson bracket or step of them"
    conditions = done.how + (smooth,)
    note = "pathwise gradient: the draws are differentiable functions of the parameters and fixed noise"
    if found.stl_guide:
        conditions += (f"sticking the landing: the parameters of {found.stl_guide} are stopped in its log density, "
                       "z stays reparameterised; the dropped score term E_q[grad_psi log q_psi(z)] = 0, so the "
                       "gradient stays unbiased",)
        note += f"; sticking the landing (log {found.stl_guide} without its score term)"
    return Rewrite(done.node, conditions=conditions, note=note,
                   facts=(("families", draws.families("pathwise")), ("stl", bool(found.stl_guide))))


RULE = Rule(
    "reparameterize", problem="estimator", matches=(ir.Expect,), relation="=",
    identity="E[w ~ F_psi] f(w) = E[eps ~ base] f(T_psi(eps)), so grad E[f] = E[grad_psi f(T_psi(eps))]",
    match=match_pathwise, build=build_pathwise,
    unmatched="the objective has no expectation under a law that depends on the parameters",
    options=(Option("stl", bool, doc="sticking the landing: the guide's parameters stopped inside log q(z | x) "
                                     "(Roeder et al. 2017; unbiased, zero variance at the exact posterior)"),),
    variants=({}, {"stl": True}))
