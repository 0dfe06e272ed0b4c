"""relax_discrete: E[z ~ Bernoulli(logits=l)] f(z) ~ E[u ~ Uniform(0, 1)] f(sigmoid((l + log u - log(1 - u)) / τ))
(the Concrete / Gumbel-softmax relaxation, Maddison et al. 2017, Jang et al. 2017): the draw is
replaced by a differentiable function of the logits and fixed noise, so the gradient is pathwise.

Relation `~`: the relaxed objective is not the original. Its bias: the relaxed draw
sigmoid((l + L) / τ), L logistic, lies in (0, 1) and f (and any log-density of z in it) is
evaluated off {0, 1}, so E f(relaxed) - E f(z) != 0 in general; as τ -> 0 the relaxed draw
tends to the hard one [l + L > 0] ~ Bernoulli(sigmoid(l)) and the bias tends to 0 for continuous f,
while the variance of the pathwise gradient grows (like 1/τ near the threshold). The
certificate measures the bias of the gradient against the enumerated exact one at several τ.

Only when forced (`via relax_discrete(temperature=τ)`, default τ = 0.5); Bernoulli draws only:
a Categorical draw is an index, whose relaxation (a point of the simplex) the body cannot read.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule
from passes.variational.sampling import Draws, inline, moving_expectation

TEMPERATURE = 0.5


@dataclass(frozen=True)
class Relaxable:
    draws: Draws
    temperature: float


def match_relaxable(node: ir.Expect, ctx: Context) -> Relaxable | Refusal | None:
    """An expectation under a moving law with Bernoulli draws and no other draw without a
    reparameterisation, its body differentiable in the draws; only when the rule is forced."""
    if not ctx.forced:
        return None
    draws = moving_expectation(node, ctx)
    if draws is None:
        return None
    rough = sorted(name for name, kind in draws.kinds.items() if kind == "score")
    if not rough:
        return Refusal("no drawn variable is discrete: every moving law is reparameterisable, nothing to relax",
                       node.loc)
    other = [name for name in rough if draws.family(name) != "Bernoulli"]
    if other:
        return Refusal(f"{other[0]} ~ {draws.family(other[0])} is an index, and its relaxation (a point of the simplex) "
                       "is not a value the body can read: relax_discrete relaxes Bernoulli draws", node.loc)
    if not draws.smooth:
        return Refusal("the body is not differentiable in the draws (an Iverson bracket or a step of them): "
                       "relaxing them gives a zero gradient", node.loc)
    return Relaxable(draws, ctx.option("temperature", TEMPERATURE))


def build_relaxed(found: Relaxable, ctx: Context) -> Rewrite:
    """The sampler inlined, each moving Bernoulli draw replaced by its Concrete relaxation."""
    draws, tau = found.draws, found.temperature
    done = inline(draws.expect, draws.lines, draws.kinds, ctx.program, score_all=False, relax=tau)
    bias = (f"bias: f is evaluated at relaxed draws in (0, 1), not at 0/1, so E f(relaxed) != E f(z); it -> 0 as the "
            f"temperature -> 0 (here {tau:g}), while the gradient's variance grows")
    return Rewrite(done.node, conditions=done.how + (bias,),
                   note=f"Concrete (Gumbel-softmax) relaxation at temperature {tau:g}: a biased, pathwise surrogate",
                   facts=(("temperature", tau), ("families", draws.families("score"))))


RULE = Rule(
    "relax_discrete", problem="estimator", matches=(ir.Expect,), relation="~",
    identity="E[z ~ Bernoulli(logits=l)] f(z) ~ E[u ~ Uniform(0, 1)] f(sigmoid((l + log u - log(1 - u)) / tau))",
    match=match_relaxable, build=build_relaxed,
    unmatched="the objective has no expectation under a Bernoulli law that depends on the parameters",
    options=(Option("temperature", float, low=0.0, low_open=True,
                    doc=f"the relaxation's temperature tau > 0 (default {TEMPERATURE:g}); bias -> 0 as tau -> 0"),))
