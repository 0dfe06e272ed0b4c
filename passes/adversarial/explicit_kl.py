"""explicit_kl: KL(p || q) between two models with densities, relation = (SPEC §9.3); the
reverse RKL(p || q) = E_q[-log(p/q)] = KL(q || p) is the same with the sides swapped.

    KL(p || q) = sum_x KL(p_x || q_x)   when p and q draw the same variables from laws that read no
                                         random variable and SymPy derives KL(family_p || family_q)
                                         (compiler.math.distributions.kl_closed_form);
    KL(p || q) = E_p[log p(x) - log q(x)] otherwise: a Monte Carlo estimate with both densities,
                                         its gradient by the estimator rules.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from compiler import ir
from compiler.math.distributions import kl_closed_form
from compiler.rewrite.rule import Context, Refusal, Rewrite, Rule
from passes.adversarial.densities import MONTE_CARLO_DRAWS, log_density, two_explicit_models
from passes.variational.analytic_kl import closed_kl


@dataclass(frozen=True)
class TwoDensities:
    divergence: ir.Divergence
    p: ir.Block
    q: ir.Block
    binder: tuple[str, ...]
    closed: tuple       # ((variable, p law, q law, event shape), ...) when every variable has a closed form


def _resolved(expr: ir.Node, block: ir.Block) -> ir.Node:
    for line in reversed(block.lines):
        if isinstance(line, ir.Assign) and line.name in ir.free_names(expr):
            expr = ir.substitute(expr, line.name, line.value)
    return expr


def _closed_forms(p: ir.Block, q: ir.Block, binder) -> tuple:
    """Each variable's two laws and shape when both blocks draw exactly `binder`, their laws read
    no random variable, and SymPy derives a finite KL for every pair; else ()."""
    if set(p.random_vars()) != set(binder) or set(q.random_vars()) != set(binder):
        return ()
    out = []
    for v in binder:
        p_law, q_law = _resolved(p.line(v).dist, p), _resolved(q.line(v).dist, q)
        if (ir.free_names(p_law) | ir.free_names(q_law)) & set(binder):
            return ()
        form = kl_closed_form(p_law.family, q_law.family)
        if form is None or form.expr == sp.oo:
            return ()
        out.append((v, p_law, q_law, p.line(v).shape))
    return tuple(out)


def match_two_densities(node: ir.Divergence, ctx: Context) -> TwoDensities | Refusal | None:
    """KL(p || q) (or RKL(q || p)) with p and q models with normalised densities and no latents."""
    if node.kind not in ("KL", "RKL") or isinstance(node.p, ir.DataSet) or isinstance(node.q, ir.DataSet):
        return None
    forward = node if node.kind == "KL" else ir.Divergence("KL", node.q, node.p, loc=node.loc)
    found = two_explicit_models(ctx.program, forward)
    if isinstance(found, Refusal):
        return found
    p, q, binder = found
    return TwoDensities(node, p, q, binder, _closed_forms(p, q, binder))


def build_two_densities(found: TwoDensities, ctx: Context) -> Rewrite:
    node, p, q, binder = found.divergence, found.p, found.q, found.binder
    if found.closed:
        total, how = None, []
        for _, p_law, q_law, shape in found.closed:
            term, text = closed_kl(p_law, q_law, shape)
            total = term if total is None else ir.Apply("add", (total, term))
            how.append(text)
        conditions = reverse_condition(node, p, q) + (
            f"models {p.name} and {q.name} draw {', '.join(binder)} independently, from laws that read "
            "no random variable: the KL is the sum of the per-variable KLs",) + tuple(how)
        return Rewrite(total, "=", conditions, note="closed form, derived by SymPy: no game, no sampling",
                       facts=(("route", "closed_form"), ("pairs", tuple((a.family, b.family)
                                                                        for _, a, b, _ in found.closed))))
    body = ir.Apply("sub", (log_density(p, binder), log_density(q, binder)))
    new = ir.Expect(binder, ir.Sample(p.name, binder), body, samples=MONTE_CARLO_DRAWS, loc=node.loc)
    conditions = reverse_condition(node, p, q) + (
        f"KL({p.name} || {q.name}) = E_{p.name}[log {p.name}(x) - log {q.name}(x)]: both densities are "
        "explicit, so the expectation is estimated from draws of " + p.name,)
    return Rewrite(new, "=", conditions, note=f"Monte Carlo estimate with both densities, {MONTE_CARLO_DRAWS} draws (no closed form derived)",
                   facts=(("route", "monte_carlo"),))


def reverse_condition(node: ir.Divergence, p: ir.Block, q: ir.Block) -> tuple[str, ...]:
    """The identity that turns RKL into KL, where the divergence was written as RKL."""
    if node.kind != "RKL":
        return ()
    return (f"RKL({q.name} || {p.name}) = E_{p.name}[-log({q.name}(x) / {p.name}(x))] = KL({p.name} || {q.name})",)


RULE = Rule(
    "explicit_kl", problem="divergence", matches=(ir.Divergence,), relation="=",
    identity="KL(p || q) = RKL(q || p) = closed form (SymPy), else E_p[log p(x) - log q(x)]",
    match=match_two_densities, build=build_two_densities,
    unmatched="the objective has no KL(p || q) or RKL(p || q) between two models with densities")
