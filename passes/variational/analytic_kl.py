"""analytic_kl: E_q[log q(z | x) - log p(x, z)] = KL(q(z | x) || p(z)) - E_q[log p(x | z)] when
the KL between the guide's law of z and the prior of z has a closed form (derived by SymPy,
`compiler.math.distributions.kl_closed_form`).

Relation `=`. Side condition (mean field): the two laws of z depend on no other latent, so the
KL is a function of the observed values only. Latents without a closed form keep their
log-ratio inside the expectation.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import sympy as sp

from compiler import ir
from compiler.analysis.problems import block_latents
from compiler.math.distributions import PARAMETERS, kl_closed_form
from compiler.rewrite.rule import Context, Refusal, Rewrite, Rule
from passes.variational.nodes import ClosedKL
from passes.variational.sampling import fresh_name


@dataclass(frozen=True)
class LogRatio:
    """E_q[±(log q - log p)] under a guide q: which side is the guide's density (`q_first`),
    the two densities, the model, and the latents whose KL has a closed form, each as
    (z, guide law, prior law, event shape)."""

    expect: ir.Expect
    guide: ir.Block
    model: ir.Block
    q_first: bool
    q_density: ir.Density
    p_density: ir.Density
    closed: tuple


def match_log_ratio(node: ir.Expect, ctx: Context) -> LogRatio | Refusal | None:
    """`E[z ~ q(z | x)] (log q(z | x) - log p(x, z))` (either order) with a closed-form KL for
    at least one latent whose two laws read no latent."""
    if node.estimator or not isinstance(node.source, ir.Sample):
        return None
    via = ctx.program.objective.via
    if via is not None and via.name == "reparameterize" and via.option("stl"):
        return None       # sticking the landing asks for the Monte Carlo log q term, not its closed form
    program, guide = ctx.program, ctx.program.decl(node.source.model)
    body = node.body
    if guide.kind != "guide" or not (isinstance(body, ir.Apply) and body.fn == "sub"):
        return None
    logs = [a.args[0] if isinstance(a, ir.Apply) and a.fn == "log" and isinstance(a.args[0], ir.Density) else None
            for a in body.args]
    if None in logs:
        return None
    is_q = [d.model == guide.name and set(d.vars) == set(guide.latents) and not set(d.given) - set(guide.given)
            for d in logs]
    if is_q[0] == is_q[1]:
        return None
    q_density, p_density = (logs[0], logs[1]) if is_q[0] else (logs[1], logs[0])
    model = program.decl(p_density.model)
    if not isinstance(model, ir.Block) or model.kind != "model" or not set(guide.latents) <= set(p_density.vars):
        return None
    latents = set(guide.random_vars()) | set(block_latents(program, model))
    closed = []
    for z in guide.latents:
        q_line, p_line = guide.line(z), model.line(z)
        if not isinstance(q_line, ir.Tilde) or not isinstance(p_line, ir.Tilde):
            continue
        q_dist, p_dist = _resolved(q_line.dist, guide), _resolved(p_line.dist, model)
        if (ir.free_names(q_dist) | ir.free_names(p_dist)) & latents:
            continue
        form = kl_closed_form(q_dist.family, p_dist.family)
        if form is not None and form.expr != sp.oo:
            closed.append((z, q_dist, p_dist, q_line.shape))
    if not closed:
        return Refusal(f"no latent of guide {guide.name} has a closed-form KL to its prior whose two laws read "
                       "no other latent", node.loc)
    return LogRatio(node, guide, model, is_q[0], q_density, p_density, tuple(closed))


def build_closed_kl(found: LogRatio, ctx: Context) -> Rewrite:
    """The closed-form KL terms outside the expectation, the likelihood (and the log-ratios
    of latents without a closed form) inside it."""
    node, guide, model, program = found.expect, found.guide, found.model, ctx.program
    closed = list(found.closed)
    names = [z for z, *_ in closed]
    rest = tuple(z for z in guide.latents if z not in names)
    observed = tuple(v for v in found.p_density.vars if v not in guide.latents)
    likelihood = ir.Density(model.name, observed, found.p_density.given + guide.latents)
    neg_elbo = ir.Apply("neg", (ir.Apply("log", (likelihood,)),))
    if rest:
        q_rest = ir.Density(guide.name, rest, _parents(guide, rest, found.q_density.given + tuple(names)))
        log_q = ir.Apply("log", (q_rest,))
        log_p = ir.Apply("log", (ir.Density(model.name, rest, found.p_density.given + observed + tuple(names)),))
        neg_elbo = ir.Apply("add", (neg_elbo, ir.Apply("sub", (log_q, log_p))))
    lets: list[tuple[str, ir.Node]] = []
    if not rest:   # every latent is drawn from its own law: its parameters are computed once, for the draw and the KL
        taken = ir.free_names(node) | set(guide.latents) | {getattr(d, "name", "") for d in program.decls}
        closed = [(z, _shared(q, z, lets, taken), p, shape) for z, q, p, shape in closed]
    how, kl = [], None
    for z, q_dist, p_dist, shape in closed:
        term, text = closed_kl(q_dist, p_dist, shape)
        kl = term if kl is None else ir.Apply("add", (kl, term))
        how.append(text)
    body = neg_elbo if found.q_first else (neg_elbo.args[0] if not rest else ir.Apply("neg", (neg_elbo,)))
    if rest:
        expect = ir.Expect(node.binder, node.source, body, node.reduce, samples=node.samples, loc=node.loc)
    else:
        expect = body
        for i, (z, q_dist, _, shape) in reversed(list(enumerate(closed))):
            expect = ir.Expect((z,), dataclasses.replace(q_dist, shape=tuple(shape or ())), expect,
                               samples=node.samples if i == 0 else 1, loc=node.loc)
    new = ir.Apply("add" if found.q_first else "sub", (expect, kl))
    for name, value in reversed(lets):
        new = ir.Let(name, value, new)
    mean_field = (f"mean field: the guide's and the prior's laws of {', '.join(names)} depend on no latent, "
                  "so E_q[log q - log p] over them is their KL exactly")
    return Rewrite(new, conditions=tuple(how) + (mean_field,),
                   note=f"closed-form KL for {', '.join(names)}; the expectation keeps the likelihood term"
                        + ("; the guide's parameters are computed once, for the draw and the KL" if lets else ""),
                   facts=(("closed", tuple(names)), ("sampled", rest),
                          ("pairs", tuple((q.family, p.family) for _, q, p, _ in closed))))


def _resolved(expr: ir.Node, block: ir.Block) -> ir.Node:
    """`expr` with the block's `v = value` lines substituted, so it reads only outside names."""
    for line in reversed(block.lines):
        if isinstance(line, ir.Assign) and line.name in ir.free_names(expr):
            expr = ir.substitute(expr, line.name, line.value)
    return expr


def _shared(dist: ir.Dist, z: str, lets: list, taken: set[str]) -> ir.Dist:
    """`dist` with each compound parameter replaced by a name bound once (`lets`)."""
    args = []
    for key, arg in zip(dist.keys, dist.args):
        if isinstance(arg, (ir.Num, ir.Ref)):
            args.append(arg)
        else:
            name = fresh_name(f"{key}_{z}", taken)
            lets.append((name, arg))
            args.append(ir.Ref(name, "local"))
    return dataclasses.replace(dist, args=tuple(args))


def _parents(block: ir.Block, names, known) -> tuple[str, ...]:
    """The names in `known` that the block's lines for `names` read (the others do not
    change the conditional density, so they are left out of the printed form)."""
    read = set().union(*(ir.free_names(_resolved(block.line(n).dist, block)) for n in names))
    return tuple(k for k in known if k in read)


def _natural(dist: ir.Dist, key: str) -> ir.Node:
    """The parameter `key` of PARAMETERS (Bernoulli: logits, from probs if need be)."""
    if key == "logits" and "probs" in dist.keys:
        probs = dist.param("probs")
        return ir.Apply("sub", (ir.Apply("log", (probs,)), ir.Apply("log", (ir.Apply("sub", (ir.Num(1), probs)),))))
    return dist.param(key)


def closed_kl(q_dist: ir.Dist, p_dist: ir.Dist, shape) -> tuple[ClosedKL, str]:
    """KL(q || p) summed over the event, as the SymPy closed form of `kl_closed_form` (which
    the caller found to exist and be finite), and how it was derived."""
    cf = kl_closed_form(q_dist.family, p_dist.family)
    args = tuple(_natural(q_dist, k) for k in PARAMETERS[q_dist.family]) + \
        tuple(_natural(p_dist, k) for k in PARAMETERS[p_dist.family])
    form = ir.Sym(f"KL_{q_dist.family}_{p_dist.family}", sp.srepr(cf.expr),
                  tuple(str(s) for s in cf.q_params + cf.p_params), args)
    return (ClosedKL(q_dist.family, p_dist.family, form, tuple(shape or ())),
            f"KL({q_dist.family} || {p_dist.family}) = {cf.expr} per element, derived by SymPy: {cf.how}")


RULE = Rule(
    "analytic_kl", problem="", matches=(ir.Expect,), relation="=",
    identity="E_q[log q(z|x) - log p(x, z)] = KL(q(z|x) || p(z)) - E_q[log p(x|z)]",
    match=match_log_ratio, build=build_closed_kl,
    unmatched="the objective has no E_q[log q(z | x) - log p(x, z)] under a guide q")
