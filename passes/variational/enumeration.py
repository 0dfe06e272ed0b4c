"""enumerate: a discrete latent with few states is summed out exactly (SPEC §9.3; Pyro's
TraceEnum_ELBO does the same inside its bound):

    log p(x) = log sum_z p(x, z) = logsumexp_z log p(x, z)           (=)

over every joint configuration of the model's Bernoulli and Categorical latents, when their
number (the product of the state counts of every element) is at most `limit` (default 1024).
It runs before `jensen` (same problem): beyond the limit, or with continuous latents, the bound
and its estimators remain. `via enumerate(limit=N)` forces it; forced on a continuous latent or
beyond the limit it is a diagnostic at the marginal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from compiler import ir
from compiler.analysis.problems import missing_latents
from compiler.backend.lower import Emitter, Fn, define, ident, lowers
from compiler.ir.printer import show
from compiler.math.latex import latex
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule

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


def _states(dist: ir.Dist, program: ir.Program) -> int | None:
    """The number of values of a Bernoulli (2) or Categorical (its logits' last width) law."""
    if dist.family == "Bernoulli":
        return 2
    logits = dist.param("logits")
    if isinstance(logits, ir.Ref):
        decl = program.decl(logits.name)
        return decl.shape[-1] if isinstance(decl, ir.Param) and decl.shape else None
    if isinstance(logits, ir.NetCall):
        return program.decl(logits.net).widths[-1]
    return None


def match_discrete(node: ir.Apply, ctx: Context) -> Discrete | Refusal | None:
    negated = node.fn == "neg"
    inner = node.args[0] if negated else node
    if not (isinstance(inner, ir.Apply) and inner.fn == "log" and isinstance(inner.args[0], ir.Density)):
        return None
    density, program = inner.args[0], ctx.program
    latents = missing_latents(program, density)
    if not latents:
        return None
    model = program.decl(density.model)
    states, shapes = [], []
    for z in latents:
        line = model.line(z)
        if line.dist.family not in ("Bernoulli", "Categorical"):
            return Refusal(f"latent '{z}' of {model.name} is {line.dist.family}, continuous: only Bernoulli and "
                           "Categorical latents can be enumerated", density.loc)
        k = _states(line.dist, program)
        if k is None:
            return Refusal(f"the number of categories of '{z}' is not known from its logits", density.loc)
        states.append(k)
        shapes.append(tuple(line.shape or ()))
    total = math.prod(k ** math.prod(s) for k, s in zip(states, shapes))
    limit = ctx.option("limit", LIMIT)
    if total > limit:
        return Refusal(f"the latents {', '.join(latents)} of {model.name} have {total} joint configurations, "
                       f"more than the limit {limit} (via enumerate(limit=N) raises it)", density.loc)
    return Discrete(node, negated, density, latents, tuple(states), tuple(shapes))


def build_sum_out(found: Discrete, ctx: Context) -> Rewrite:
    d = found.density
    joint = ir.Apply("log", (ir.Density(d.model, d.vars + found.latents, d.given),))
    total = SumOut(found.latents, found.states, found.shapes, joint, loc=found.node.loc)
    new = ir.Apply("neg", (total,)) if found.negated else total
    n = total.configurations()
    return Rewrite(new, "=", (f"log {show(d)} = log sum_{{{', '.join(found.latents)}}} {d.model}(..., "
                              f"{', '.join(found.latents)}): {n} joint configurations, each evaluated",),
                   note=f"exact marginal likelihood: {n} configurations summed out, no guide, no estimator",
                   facts=(("latents", found.latents), ("configurations", n)))


RULE = Rule(
    "enumerate", problem="marginal", matches=(ir.Apply,), relation="=",
    identity="log p(x) = logsumexp_z log p(x, z)   (z discrete, few states)",
    match=match_discrete, build=build_sum_out,
    unmatched="the objective has no log-likelihood log p(x) of a model with discrete latents",
    options=(Option("limit", int, low=1, wording="limit=N needs a whole number N >= 1, got {value}",
                    doc=f"the most joint configurations summed out (default {LIMIT})"),))
