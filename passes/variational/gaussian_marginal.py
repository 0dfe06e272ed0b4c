"""gaussian_marginal: a linear-Gaussian model's marginal likelihood in closed form, relation =
(SPEC §9.3: exact before bounds, so it runs before `jensen`).

    z_i ~ Normal(a_i, s_i) independent,  x ~ Normal(b + sum_i w_i z_i, sigma)
    =>  -log p(x) = -log Normal(x; b + sum_i w_i a_i, sqrt(sigma^2 + sum_i w_i^2 s_i^2))

The step for one latent is derived by SymPy (`linear_gaussian_marginal`: the Gaussian integral
over z, read back as a Normal in x) and applied once per latent. The mean of x is read as a
SymPy expression in the latents (every subexpression free of them is one opaque symbol), and
w_i = d mean / d z_i, b = mean at z = 0 are found symbolically: the rule applies only when no
w_i depends on a latent (the mean is affine in z) and sigma reads no latent.

Side conditions: the model draws its latents and one observed x, nothing else; each latent has
x's shape (elementwise: the components of x stay independent; a latent shared by several
components of x would correlate them); the laws of the latents read no random variable; the
mean of x is built from elementwise operations (no dot, @, sum or net of a latent).

Where these refuse and vector latents enter the mean through `@` / `dot` (probabilistic PCA,
factor analysis), the rule gives the multivariate Normal marginal (`gaussian_marginal_mv`).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from compiler import ir
from compiler.analysis.problems import log_marginal
from compiler.ir.builtins import OPERATIONS
from compiler.ir.printer import show
from compiler.math.distributions import linear_gaussian_marginal
from compiler.rewrite.rule import Context, Refusal, Rewrite, Rule
from passes.variational.nodes import LogProb
from passes.variational.sampling import from_sympy


class NotAffine(ValueError):
    """The mean of x is not an elementwise expression SymPy can read in the latents."""


@dataclass(frozen=True)
class LinearGaussian:
    node: ir.Apply
    negated: bool
    density: ir.Density
    model: ir.Block
    observed: str
    latents: tuple[str, ...]
    loc: ir.Node          # the marginal's mean, an IR expression free of the latents
    scale: ir.Node        # its standard deviation
    mean: str             # the mean of x as SymPy read it, and its coefficients (for the conditions)
    coefficients: tuple[str, ...]


def _resolved(expr: ir.Node, block: ir.Block) -> ir.Node:
    """`expr` with the block's assignments (`y = ...` lines) substituted, last first."""
    for line in reversed(block.lines):
        if isinstance(line, ir.Assign) and line.name in ir.free_names(expr):
            expr = ir.substitute(expr, line.name, line.value)
    return expr


def _read(node: ir.Node, latents: set[str], opaque: dict[str, tuple[sp.Symbol, ir.Node]]) -> sp.Expr:
    """`node` as SymPy: a latent is its symbol, a subexpression free of latents one opaque symbol
    `u_k` (remembered in `opaque` with its IR), an elementwise operation its SymPy meaning."""
    if isinstance(node, ir.Num):
        return sp.nsimplify(node.value)
    if not (ir.free_names(node) & latents):
        key = show(node)
        if key not in opaque:
            name = node.name if isinstance(node, ir.Ref) else f"u_{len(opaque)}"
            opaque[key] = (sp.Symbol(name, real=True), node)
        return opaque[key][0]
    if isinstance(node, ir.Ref):
        return sp.Symbol(node.name, real=True)
    if isinstance(node, ir.Apply) and node.fn in OPERATIONS:
        op = OPERATIONS[node.fn]
        if op.sympy is not None and op.kind in ("arithmetic", "elementwise"):
            return op.sympy(sp, *(_read(a, latents, opaque) for a in node.args))
    raise NotAffine(f"{show(node)} is not an elementwise expression of the latents")


def match_linear_gaussian(node: ir.Apply, ctx: Context):
    """The elementwise case (`_match_elementwise`); where it refuses, vector latents entering the
    mean of x through `@` / `dot` (`gaussian_marginal_mv`: a low-rank multivariate Normal)."""
    found = _match_elementwise(node, ctx)
    if isinstance(found, Refusal):
        from passes.variational.gaussian_marginal_mv import match_low_rank
        low_rank = match_low_rank(node, ctx)
        return found if low_rank is None else low_rank
    return found


def _match_elementwise(node: ir.Apply, ctx: Context) -> LinearGaussian | Refusal | None:
    found = log_marginal(node, ctx.program)
    if found is None:
        return None
    (negated, density, latents), program = found, ctx.program
    model = program.decl(density.model)
    if model.kind != "model" or density.given or len(density.vars) != 1:
        return Refusal(f"log {show(density)} is not the marginal of one observed variable of a model", density.loc)
    (x,) = density.vars
    if set(model.random_vars()) != set(latents) | {x}:
        return Refusal(f"model {model.name} draws more than its latents and '{x}'", density.loc)
    random = set(model.random_vars())
    x_line = model.line(x)
    for z in latents:
        line = model.line(z)
        if line.dist.family != "Normal":
            return Refusal(f"latent '{z}' of {model.name} is {line.dist.family}, not Normal", density.loc)
        if ir.free_names(_resolved(line.dist, model)) & random:
            return Refusal(f"the law of latent '{z}' reads a random variable", density.loc)
        if tuple(line.shape or ()) != tuple(x_line.shape or ()):
            return Refusal(f"latent '{z}' has shape {list(line.shape or ())} and '{x}' has {list(x_line.shape or ())}: "
                           f"a latent shared by several components of '{x}' correlates them", density.loc)
    if x_line.dist.family != "Normal":
        return Refusal(f"'{x}' is {x_line.dist.family}, not Normal", density.loc)
    scale = _resolved(x_line.dist.param("scale"), model)
    if ir.free_names(scale) & random:
        return Refusal(f"the scale of '{x}' depends on the latents: {show(scale)}", density.loc)
    mean = _resolved(x_line.dist.param("loc"), model)
    opaque: dict[str, tuple[sp.Symbol, ir.Node]] = {}
    try:
        mean_sym = _read(mean, set(latents), opaque)
    except NotAffine as e:
        return Refusal(f"the mean of '{x}': {e}", density.loc)
    zs = [sp.Symbol(z, real=True) for z in latents]
    slopes = [sp.simplify(sp.diff(mean_sym, z)) for z in zs]
    for z, w in zip(latents, slopes):
        if w.free_symbols & set(zs):
            return Refusal(f"the mean of '{x}' is not affine in '{z}': d/d{z} = {w}", density.loc)
    return _closed(node, negated, density, model, x, latents, mean_sym, zs, slopes, scale, opaque)


def _closed(node, negated, density, model, x, latents, mean_sym, zs, slopes, scale, opaque) -> LinearGaussian:
    """Sum out the latents one at a time with the SymPy-derived step: each keeps the law of x a
    Normal whose mean is affine in the latents left and whose scale reads none of them."""
    step = linear_gaussian_marginal()
    sigma = _read(scale, set(), opaque)
    names = {sym: ir_node for sym, ir_node in opaque.values()}
    loc, variance = mean_sym, sigma ** 2
    for z, zsym, w in zip(latents, zs, slopes):
        line = model.line(z)
        a = _read(_resolved(line.dist.param("loc"), model), set(), opaque)
        s = _read(_resolved(line.dist.param("scale"), model), set(), opaque)
        names.update({sym: ir_node for sym, ir_node in opaque.values()})
        rest = sp.expand(loc - w * zsym)
        loc = step.loc.xreplace({step.w: w, step.b: rest, step.a: a})          # simultaneous: the user's names
        variance = step.variance.xreplace({step.w: w, step.s: s, step.sigma: sp.sqrt(variance)})   # may be w, b, a
    scale_node = ir.Apply("sqrt", (from_sympy(sp.simplify(variance), names),))
    return LinearGaussian(node, negated, density, model, x, latents, from_sympy(sp.simplify(loc), names), scale_node,
                          str(mean_sym), tuple(str(w) for w in slopes))


def build_marginal(found, ctx: Context) -> Rewrite:
    if not isinstance(found, LinearGaussian):
        from passes.variational.gaussian_marginal_mv import build_low_rank
        return build_low_rank(found, ctx)
    x_line = found.model.line(found.observed)
    law = ir.Dist("Normal", ("loc", "scale"), (found.loc, found.scale), tuple(x_line.shape or ()))
    log_p = LogProb(law, ir.Ref(found.observed, "data"))
    new = ir.Apply("neg", (log_p,)) if found.negated else log_p
    zs = ", ".join(found.latents)
    conditions = (f"{found.model.name}: {zs} ~ Normal independent, from laws that read no random variable, "
                  f"each of the shape of '{found.observed}' (elementwise)",
                  f"the mean of '{found.observed}' read by SymPy: {found.mean}; d/d({zs}) = {', '.join(found.coefficients)}, "
                  "free of the latents: affine; its scale reads no latent",
                  linear_gaussian_marginal().how)
    return Rewrite(new, "=", conditions, note=f"exact marginal likelihood: {zs} integrated out in closed form, no guide, "
                   "no bound", facts=(("latents", found.latents), ("slopes", found.coefficients)))


RULE = Rule(
    "gaussian_marginal", problem="marginal", matches=(ir.Apply,), relation="=",
    identity="z ~ N(a, s), x ~ N(w z + b, sigma):  log p(x) = log N(x; w a + b, sqrt(w^2 s^2 + sigma^2))",
    match=match_linear_gaussian, build=build_marginal,
    unmatched="the objective has no log-likelihood log p(x) of a model whose latents are Normal and enter "
              "the Normal mean of x linearly")
