"""enumerate: a discrete latent with few states is summed out exactly (SPEC §9.3; Pyro's
TraceEnum_ELBO does the same inside its bound):

    log p(x) = log sum_z p(x, z) = logsumexp_z log p(x, z)           (=)

over every joint configuration of the model's Bernoulli and Categorical latents, when their
number (the product of the state counts of every element) is at most `limit` (default 1024).

With continuous latents c beside the discrete ones z, the continuous ones keep their bound and
only z is summed out inside it (Pyro's TraceEnum_ELBO):

    -log p(x) <= E_{q(c | x)}[log q(c | x) - logsumexp_z log p(x, c, z)]      (<=; >= for log p(x))

the gap being KL(q(c | x) || p(c | x)), the same as the ELBO's over c alone; the sum over z is
exact (=), so the bound is tighter than an ELBO with a guide for z too, and needs no estimator
for z. q is the declared guide of c (a guide that draws z as well is left to `jensen`), or an
automatic one.

It runs before `jensen` (same problem): beyond the limit, or with no discrete latent, the bound
and its estimators remain. `via enumerate(limit=N)` forces it; forced on a model without
discrete latents or beyond the limit it is a diagnostic at the marginal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from compiler import ir
from compiler.analysis.problems import log_marginal
from compiler.backend.lower import Emitter, Fn, define, ident, lowers
from compiler.ir.printer import show
from compiler.math.latex import latex
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule
from passes.variational.guides import automatic_guide, declared_guide, supports_agree

LIMIT = 1024     # the most joint configurations summed out by default


@dataclass(frozen=True)
class SumOut(ir.Node):
    """log sum over every configuration of the discrete `binder` (each element of variable i
    takes `states[i]` values 0..k-1, the variable has shape `shapes[i]`) of exp(`body`)."""

    binder: tuple[str, ...]
    states: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...]
    body: ir.Node

    def printed(self) -> tuple[str, int]:
        ranges = ", ".join(f"{z} in {{0..{k - 1}}}" + (f"^{list(s)}" if s else "")
                           for z, k, s in zip(self.binder, self.states, self.shapes))
        return f"logsumexp[{ranges}] {show(self.body)}", 5

    def latexed(self) -> str:
        return rf"\log \sum_{{{', '.join(self.binder)}}} \exp\left({latex(self.body)}\right)"

    def configurations(self) -> int:
        return math.prod(k ** math.prod(s) for k, s in zip(self.states, self.shapes))


@lowers(SumOut)
def _lower_sum_out(em: Emitter, node: SumOut, fn: Fn) -> str:
    """One function of a configuration, mapped over all of them (a mixed-radix count), logsumexp'd."""
    names = {z: em.fresh(ident(z) + "_state") for z in node.binder}
    inner = fn.child(names, None)
    inner.emit(f"return {em.lower(node.body, inner)}")
    f = em.fresh("joint_at")
    define(fn, inner, f, list(names.values()))
    radix = tuple(k for k, s in zip(node.states, node.shapes) for _ in range(math.prod(s)))
    count = node.configurations()
    digits = fn.tmp(f"jnp.stack(jnp.unravel_index(jnp.arange({count}), {radix}), axis=-1).astype(jnp.float32)",
                    "states")
    tables, at = [], 0
    for s in node.shapes:
        n = math.prod(s)
        tables.append(f"{digits}[:, {at}:{at + n}].reshape(({count}, {''.join(f'{d}, ' for d in s)}))")
        at += n
    return f"jax.nn.logsumexp(jax.vmap({f})({', '.join(tables)}))"


@dataclass(frozen=True)
class Discrete:
    node: ir.Apply
    negated: bool
    density: ir.Density
    latents: tuple[str, ...]
    states: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...]
    continuous: tuple[str, ...] = ()      # latents that keep their bound (drawn by `guide`)
    guide: ir.Block | None = None         # the declared guide of the continuous latents (None: automatic)


DISCRETE = ("Bernoulli", "Categorical")


def _states(dist: ir.Dist, program: ir.Program) -> int | None:
    """The number of values of a Bernoulli (2) or Categorical (its logits' last width) law."""
    if dist.family == "Bernoulli":
        return 2
    logits = dist.param("logits")
    if isinstance(logits, ir.Ref):
        decl = program.decl(logits.name)
        return decl.shape[-1] if isinstance(decl, ir.Param) and decl.shape else None
    if isinstance(logits, ir.NetCall):
        net = program.decl(logits.net)
        return (net.shape_out[-1] if net.shape_out else None) if net.python else net.widths[-1]
    return None


def match_discrete(node: ir.Apply, ctx: Context) -> Discrete | Refusal | None:
    """`log p(x)` or `-log p(x)` of a model with discrete latents whose joint configurations number
    at most the limit; its continuous latents, if any, need observed data and a guide that draws
    them and no discrete latent."""
    found = log_marginal(node, ctx.program)
    if found is None:
        return None
    (negated, density, latents), program = found, ctx.program
    model = program.decl(density.model)
    discrete = tuple(z for z in latents if model.line(z).dist.family in DISCRETE)
    continuous = tuple(z for z in latents if z not in discrete)
    if not discrete:
        z = continuous[0]
        return Refusal(f"latent '{z}' of {model.name} is {model.line(z).dist.family}, continuous: only Bernoulli and "
                       "Categorical latents can be enumerated", density.loc)
    states, shapes = [], []
    for z in discrete:
        line = model.line(z)
        k = _states(line.dist, program)
        if k is None:
            return Refusal(f"the number of categories of '{z}' is not known from its logits", density.loc)
        states.append(k)
        shapes.append(tuple(line.shape or ()))
    total = math.prod(k ** math.prod(s) for k, s in zip(states, shapes))
    limit = ctx.option("limit", LIMIT)
    if total > limit:
        return Refusal(f"the latents {', '.join(discrete)} of {model.name} have {total} joint configurations, "
                       f"more than the limit {limit} (via enumerate(limit=N) raises it)", density.loc)
    guide = None
    if continuous:
        data = {n for n, _ in program.data_vars}
        if model.kind != "model" or any(v not in data for v in density.vars + density.given):
            return Refusal(f"the continuous latents {', '.join(continuous)} keep a bound, which needs a model "
                           "and observed data", density.loc)
        drawn = [b for b in program.of_type(ir.Block) if b.kind == "guide" and set(b.latents) & set(discrete)]
        if drawn:
            return Refusal(f"guide {drawn[0].name} draws the discrete latent(s) "
                           f"{', '.join(z for z in drawn[0].latents if z in discrete)}: the bound keeps its guide "
                           "(enumeration sums out only latents that no guide draws)", density.loc)
        guide = declared_guide(model, continuous, density.vars + density.given, program)
    return Discrete(node, negated, density, discrete, tuple(states), tuple(shapes), continuous, guide)


def build_sum_out(found: Discrete, ctx: Context) -> Rewrite:
    d = found.density
    if found.continuous:
        return _build_inside_bound(found, ctx)
    joint = ir.Apply("log", (ir.Density(d.model, d.vars + found.latents, d.given),))
    total = SumOut(found.latents, found.states, found.shapes, joint, loc=found.node.loc)
    new = ir.Apply("neg", (total,)) if found.negated else total
    n = total.configurations()
    return Rewrite(new, "=", (f"log {show(d)} = log sum_{{{', '.join(found.latents)}}} {d.model}(..., "
                              f"{', '.join(found.latents)}): {n} joint configurations, each evaluated",),
                   note=f"exact marginal likelihood: {n} configurations summed out, no guide, no estimator",
                   facts=(("latents", found.latents), ("configurations", n)))


def _build_inside_bound(found: Discrete, ctx: Context) -> Rewrite:
    """The ELBO over the continuous latents c with the discrete z summed out inside it:
    E_q(c | x)[log q(c | x) - logsumexp_z log p(x, c, z)] for -log p(x) (negated: its negative)."""
    d, program = found.density, ctx.program
    model = program.decl(d.model)
    observed = d.vars + d.given
    guide, decls = found.guide, ()
    if guide is None:
        guide, nets = automatic_guide(model, found.continuous, observed, program, ctx.player.name, None)
        decls = nets + (guide,)
    supports = supports_agree(guide, model, program)
    joint = ir.Apply("log", (ir.Density(d.model, d.vars + guide.latents + found.latents, d.given),))
    total = SumOut(found.latents, found.states, found.shapes, joint, loc=found.node.loc)
    log_q = ir.Apply("log", (ir.Density(guide.name, guide.latents, guide.given),))
    body = ir.Apply("sub", (log_q, total) if found.negated else (total, log_q))
    new = ir.Expect(guide.latents, ir.Sample(guide.name, guide.latents, guide.given), body, loc=found.node.loc)
    n = total.configurations()
    c, z = ", ".join(guide.latents), ", ".join(found.latents)
    conditions = ((f"{', '.join(observed)} observed (data); the continuous latents {c} are drawn by guide "
                   f"{guide.name}({c} | {', '.join(guide.given)})",) + supports
                  + (f"log {d.model}(x, {c}) = logsumexp_{{{z}}} log {d.model}(x, {c}, {z}): {n} joint "
                     "configurations, each evaluated (=)",
                     f"gap = KL({guide.name}({c} | {', '.join(guide.given)}) || {d.model}({c} | "
                     f"{', '.join(observed)})) >= 0: the bound is over {c} only"))
    how = "automatic, amortised" if decls else "declared"
    return Rewrite(new, "<=" if found.negated else ">=", conditions, decls,
                   note=(f"{n} configurations of {z} summed out inside the ELBO over {c}; guide {guide.name} "
                         f"({how}) draws {c} only"),
                   facts=(("latents", found.latents), ("configurations", n), ("continuous", guide.latents),
                          ("guide", guide.name), ("automatic_guide", bool(decls)), ("bound", "elbo")))


RULE = Rule(
    "enumerate", problem="marginal", matches=(ir.Apply,), relation="=",
    identity="log p(x) = logsumexp_z log p(x, z)   (z discrete, few states)",
    match=match_discrete, build=build_sum_out,
    unmatched="the objective has no log-likelihood log p(x) of a model with discrete latents",
    options=(Option("limit", int, low=1, wording="limit=N needs a whole number N >= 1, got {value}",
                    doc=f"the most joint configurations summed out (default {LIMIT})"),))
