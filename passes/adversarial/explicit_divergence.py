"""explicit_divergence: an f-divergence between two models with densities, relation = (SPEC §9.3).

    D_f(P || Q) = E_{x ~ Q} f(p(x)/q(x)) = E_{x ~ M} (q/m) f(p/q),   M = (P + Q)/2, q/m = 2/(1 + p/q)
                = 1/2 E_P h(L) + 1/2 E_Q h(L),   h(L) = 2 f(e^L) / (1 + e^L),  L = log p(x) - log q(x)

for every f-divergence but KL and RKL (explicit_kl takes both, with their closed forms): JS, Chi2,
Hellinger2, TV, GAN and a user's `divergence d(u) = ...`. Both densities are known, so no critic is
needed: a Monte Carlo estimate, unbiased, its gradient by the estimator rules. Draws come from the
mixture M, half from each side, not from Q alone: where p has heavier tails than q, E_Q f(p/q)
takes its value from draws Q almost never makes (JS of a Laplace against a Normal came out 15% low
over a million draws), while the weight 2/(1 + r) keeps h(L) ~ f(r)/r as r -> infinity, so a
generator of at most linear growth (JS, KL-like, TV, Hellinger) gives a bounded or logarithmic
integrand on both sides. h is SymPy's f composed with exp, in the form float32 evaluates best
(softplus and sigmoid for log(1 + e^L) and e^L/(1 + e^L)). A game appears only for a side that has
samples and no density.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from compiler import ir
from compiler.ir.diagnostics import AttractorError
from compiler.math.convex import U, stablest_in
from compiler.rewrite.rule import Context, Refusal, Rewrite, Rule
from passes.adversarial.conjugate import conjugate_parts, generator_of
from passes.adversarial.densities import MONTE_CARLO_DRAWS, log_density, two_explicit_models

LOG_RATIO = sp.Symbol("L", real=True)    # log p(x) - log q(x)


@dataclass(frozen=True)
class TwoDensities:
    divergence: ir.Divergence
    p: ir.Block
    q: ir.Block
    binder: tuple[str, ...]
    generator: sp.Expr


def match_two_densities(node: ir.Divergence, ctx: Context) -> TwoDensities | Refusal | None:
    """D_f(p || q), f not KL's or RKL's, with p and q models with normalised densities and no latents."""
    if node.kind in ("KL", "RKL") or isinstance(node.p, ir.DataSet) or isinstance(node.q, ir.DataSet):
        return None
    try:
        f, _ = generator_of(ctx.program, node)
    except KeyError:
        return None                          # not an f-divergence (Fisher): another family's
    found = two_explicit_models(ctx.program, node)
    if isinstance(found, Refusal):
        return found
    conjugate_parts(ctx.program, node)       # f convex on u > 0 with f(1) = 0, else a diagnostic at its definition
    return TwoDensities(node, *found, f)


def build_two_densities(found: TwoDensities, ctx: Context) -> Rewrite:
    node, p, q, binder = found.divergence, found.p, found.q, found.binder
    weighted = stablest_in(sp.simplify(2 * found.generator.subs(U, sp.exp(LOG_RATIO)) / (1 + sp.exp(LOG_RATIO))),
                           LOG_RATIO)
    if weighted.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise AttractorError(f"{node.kind}: h(L) = {weighted} is not finite", node.loc)
    log_ratio = ir.Apply("sub", (log_density(p, binder), log_density(q, binder)))
    body = ir.Sym(f"h_{node.kind}", sp.srepr(weighted), (str(LOG_RATIO),), (log_ratio,), loc=node.loc)
    half = MONTE_CARLO_DRAWS // 2
    new = ir.Apply("mul", (ir.Num(0.5), ir.Apply("add", (
        ir.Expect(binder, ir.Sample(p.name, binder), body, samples=half, loc=node.loc),
        ir.Expect(binder, ir.Sample(q.name, binder), body, samples=half, loc=node.loc)))))
    conditions = (f"{node.kind}({p.name} || {q.name}) = E_{q.name}[f({p.name}/{q.name})] with f(u) = {found.generator}"
                  f" = 1/2 E_{p.name}[h(L)] + 1/2 E_{q.name}[h(L)], h(L) = 2 f(e^L)/(1 + e^L) = {weighted}, "
                  f"L = log {p.name}(x) - log {q.name}(x): draws of the mixture of both sides, whose densities are "
                  "explicit",)
    return Rewrite(new, "=", conditions,
                   note=f"Monte Carlo estimate with both densities, {half} draws of each side: no game",
                   facts=(("route", "monte_carlo"), ("generator", str(found.generator))))


RULE = Rule(
    "explicit_divergence", problem="divergence", matches=(ir.Divergence,), relation="=",
    identity="D_f(p || q) = E_q[f(exp(log p(x) - log q(x)))]",
    match=match_two_densities, build=build_two_densities,
    unmatched="the objective has no f-divergence but KL between two models with densities")
