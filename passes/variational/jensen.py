"""jensen: -log p(x) = -log E_q[p(x, z) / q(z | x)] <= E_q[log q(z | x) - log p(x, z)] (Jensen:
log is concave), the gap being KL(q(z | x) || p(z | x)) >= 0; `log p(x)` alone gets the ELBO,
relation `>=`. q is the declared guide, or an automatic amortised one
(`guides.automatic_guide`; option hidden=H sets its MLPs' width).

Option iwae=K: log p(x) >= E[log (1/K) sum_k p(x, z_k) / q(z_k | x)], z_k iid ~ q, a bound that
tightens as K grows (Burda et al. 2016).

Option dreg (with iwae=K; Tucker et al. 2018): the doubly reparameterised gradient of the
importance-weighted bound. With log w_k = log p(x, z_k) - log q_ψ(z_k | x), z_k = T_ψ(ε_k) and
normalised weights w~_k = w_k / sum_j w_j, the guide's gradient is sum_k w~_k^2 ∂log w_k/∂z_k ∂z_k/∂ψ
(the score terms ∂log q_ψ/∂ψ replaced by their reparameterised equivalent, E unchanged), the
model's gradient sum_k w~_k ∇_θ log p(x, z_k) as before. Written as the surrogate

    logmeanexp_k(log p(x, z_k) - stop_params(log q(z_k | x)))
      + K * stop(w~_k^2 - w~_k) * (stop_params(log w_k) - stop(...))      (mean over the K draws)

whose value is the bound. Needs a reparameterisable guide.

The K-draw bound of a log-expectation: a nonlinear function of an expectation is never
estimated from one draw silently; for log E_p[f] under the expectation's own law p,

    log E_p[f] >= E[log (1/K) sum_k f(z_k)],  z_k iid ~ p

(Jensen for the concave log applied to the K-draw average, an unbiased estimate of E_p[f]),
tight as K -> infinity and non-increasing in gap with K; K from iwae=K, else LOG_EXPECT_DRAWS.
-log E in a minimised loss gets relation <=; +log E there would be a lower bound, refused.

Side conditions: x observed, the guide draws exactly the model's latents, and for each latent
supp q = supp p.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.analysis.problems import block_latents, missing_latents, stochastic_expectation
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import show
from compiler.rewrite.rule import Context, Option, Rewrite, Rule
from passes.variational.guides import automatic_guide, declared_guide, supports_agree
from passes.variational.nodes import OverDraws, StopParams
from passes.variational.sampling import REPARAMETERIZABLE, fresh_name

LOG_EXPECT_DRAWS = 16     # K of the K-draw bound of log E[...] when jensen(iwae=K) does not say


@dataclass(frozen=True)
class Marginal:
    """A log marginal likelihood log p(x) (negated or not) of a model with latents: the
    observed and latent variables, the declared guide (None: an automatic one is built) with
    its support conditions, and the number K of importance samples."""

    node: ir.Apply
    negated: bool
    density: ir.Density
    model: ir.Block
    observed: tuple[str, ...]
    latents: tuple[str, ...]
    guide: ir.Block | None
    supports: tuple[str, ...]
    iwae: int


@dataclass(frozen=True)
class LogExpectation:
    """`log E_p[f]` (negated or not) estimated from draws of p itself, and the K of its bound."""

    node: ir.Apply
    negated: bool
    expect: ir.Expect
    draws: int


def match_marginal(node: ir.Apply, ctx: Context) -> Marginal | LogExpectation | None:
    """`log p(x)` or `-log p(x)` where p(x) integrates over latents; the checks that the bound
    can be built (observed data, a guide that draws exactly the latents) raise diagnostics.
    `log E[z ~ p] f` (or its negation) under a distribution or a block's own law: the K-draw bound."""
    negated = node.fn == "neg"
    inner = node.args[0] if negated else node
    if not (isinstance(inner, ir.Apply) and inner.fn == "log"):
        return None
    if _drawn_expectation(inner.args[0], ctx.program):
        return LogExpectation(node, negated, inner.args[0], ctx.option("iwae", LOG_EXPECT_DRAWS))
    if not isinstance(inner.args[0], ir.Density):
        return None
    density, program = inner.args[0], ctx.program
    if not missing_latents(program, density):
        return None
    _dreg_needs_iwae(ctx)
    model = program.decl(density.model)
    if model.kind != "model":
        raise AttractorError(f"jensen bounds the marginal likelihood of a model; {model.name} is a {model.kind}",
                             density.loc)
    data = {n for n, _ in program.data_vars}
    observed = density.vars + density.given
    unobserved = [v for v in observed if v not in data]
    if unobserved:
        v = unobserved[0]
        raise AttractorError(f"log {show(density)} marginalises the latents given '{v}', but '{v}' is not observed: "
                             f"declare it as data (data {v} : ...) and bind it with E[... ~ data]", density.loc)
    left_out = [v for v in model.random_vars() if v in data and v not in observed]
    if left_out:
        v = left_out[0]
        raise AttractorError(f"log {show(density)} leaves out the observed '{v}': "
                             f"write {model.name}({', '.join(observed + (v,))})", density.loc)
    latents = tuple(v for v in block_latents(program, model) if v not in observed)
    k = ctx.option("iwae", 1)
    guide = declared_guide(model, latents, observed, program)
    supports = supports_agree(guide, model, program) if guide is not None else ()
    return Marginal(node, negated, density, model, observed, latents, guide, supports, k)


def _drawn_expectation(node: ir.Node, program: ir.Program) -> bool:
    """An expectation estimated from draws of its own law (a distribution or a block), not data."""
    return (isinstance(node, ir.Expect) and not node.estimator and node.samples == 1
            and isinstance(node.source, (ir.Dist, ir.Sample)) and stochastic_expectation(program, node))


def _dreg_needs_iwae(ctx: Context) -> None:
    """`dreg` is a gradient of the importance-weighted bound: without iwae=K it is a diagnostic at the `via`."""
    if ctx.option("dreg") and ctx.option("iwae") is None:
        via = ctx.program.objective.via
        raise AttractorError("jensen: dreg is the doubly reparameterised gradient of the importance-weighted bound; "
                             "give the number of draws: jensen(iwae=K, dreg)", via.loc if via else None)


def build_bound(found: Marginal | LogExpectation, ctx: Context) -> Rewrite:
    """The ELBO (K = 1) or the importance-weighted bound under the guide, declared or built;
    for a log-expectation, its K-draw bound."""
    if isinstance(found, LogExpectation):
        return build_log_expectation(found, ctx)
    model, density, program = found.model, found.density, ctx.program
    guide, supports, decls = found.guide, found.supports, ()
    if guide is None:
        guide, nets = automatic_guide(model, found.latents, found.observed, program, ctx.player.name,
                                      ctx.option("hidden"))
        supports, decls = supports_agree(guide, model, program), nets + (guide,)
    dreg = bool(ctx.option("dreg"))
    if dreg:
        _reparameterisable(guide, ctx)
    conditions = (f"{', '.join(found.observed)} observed (data); the latents {', '.join(found.latents)} are drawn "
                  f"by guide {guide.name}({', '.join(guide.latents)} | {', '.join(guide.given)})",) + supports
    sample = ir.Sample(guide.name, guide.latents, guide.given)
    log_q = ir.Apply("log", (ir.Density(guide.name, guide.latents, guide.given),))
    log_joint = ir.Apply("log", (ir.Density(model.name, density.vars + guide.latents, density.given),))
    k = found.iwae
    if k == 1:
        body = ir.Apply("sub", (log_q, log_joint) if found.negated else (log_joint, log_q))
        new = ir.Expect(guide.latents, sample, body, loc=found.node.loc)
        bound = "ELBO"
        gap = (f"gap = KL({guide.name}({', '.join(guide.latents)} | {', '.join(guide.given)}) || "
               f"{model.name}({', '.join(guide.latents)} | {', '.join(found.observed)})) >= 0")
    else:
        if dreg:
            body = _dreg_surrogate(log_joint, log_q, k, program)
            conditions += (f"doubly reparameterised gradient: the guide's gradient is sum_k w~_k^2 d log w_k/dz_k "
                           f"dz_k/dpsi (Tucker et al. 2018), the model's sum_k w~_k grad log p({', '.join(density.vars)}, "
                           "z_k); the value is the bound; guide laws reparameterisable",)
        else:
            body = OverDraws("logmeanexp", ir.Apply("sub", (log_joint, log_q)))
        iwae = ir.Expect(guide.latents, sample, body, samples=k, loc=found.node.loc)
        new = ir.Apply("neg", (iwae,)) if found.negated else iwae
        bound = f"importance-weighted bound, K = {k}" + ("; doubly reparameterised gradient (DReG)" if dreg else "")
        gap = "gap >= 0, non-increasing in K, -> 0 as K -> infinity (the guide covers the posterior)"
    return Rewrite(new, "<=" if found.negated else ">=", conditions + (gap,), decls,
                   note=f"{bound}; guide {guide.name}" + (" (automatic, amortised)" if decls else " (declared)"),
                   facts=(("bound", "elbo" if k == 1 else "iwae"), ("iwae", k), ("guide", guide.name),
                          ("automatic_guide", bool(decls)), ("latents", found.latents), ("observed", found.observed),
                          ("dreg", dreg)))


def _reparameterisable(guide: ir.Block, ctx: Context) -> None:
    """DReG differentiates through z = T_psi(eps): every guide law must have a reparameterisation."""
    rough = [ln for ln in guide.lines if isinstance(ln, ir.Tilde) and ln.dist.family not in REPARAMETERIZABLE]
    if rough:
        via = ctx.program.objective.via
        raise AttractorError(f"jensen: dreg needs a reparameterised guide, but guide {guide.name} draws "
                             f"'{rough[0].name}' from {rough[0].dist.family}, which has no reparameterisation "
                             "(use score_function's VIMCO: jensen(iwae=K) alone)", via.loc if via else rough[0].loc)


def _dreg_surrogate(log_joint: ir.Node, log_q: ir.Node, k: int, program: ir.Program) -> ir.Node:
    """The per-draw DReG surrogate (see the module docstring), log w bound once as a local."""
    taken = set(ir.free_names(log_joint)) | set(ir.free_names(log_q)) | {getattr(d, "name", "") for d in program.decls}
    log_w = ir.Ref(fresh_name("log_w", taken), "local")
    weight = ir.Apply("div", (ir.Apply("exp", (ir.Apply("sub", (log_w, OverDraws("logmeanexp", log_w))),)), ir.Num(k)))
    reweight = ir.Apply("stop", (ir.Apply("sub", (ir.Apply("pow", (weight, ir.Num(2))), weight)),))
    frozen = StopParams(ir.Apply("sub", (log_joint, log_q)))
    path_only = ir.Apply("sub", (frozen, ir.Apply("stop", (frozen,))))        # 0 in value, d log w/dz dz/dpsi in gradient
    correction = ir.Apply("mul", (ir.Apply("mul", (ir.Num(k), reweight)), path_only))
    body = ir.Apply("add", (OverDraws("logmeanexp", log_w), correction))
    return ir.Let(log_w.name, ir.Apply("sub", (log_joint, StopParams(log_q))), body)


def build_log_expectation(found: LogExpectation, ctx: Context) -> Rewrite:
    """log E_p[f] >= E[log (1/K) sum_k f(z_k)] (K = 1: E_p[log f]); -log E gets <=."""
    expect, k = found.expect, found.draws
    f = expect.body
    log_f = f.args[0] if isinstance(f, ir.Apply) and f.fn == "exp" else ir.Apply("log", (f,))
    positive = "f = exp(...) > 0" if log_f is not f and isinstance(f, ir.Apply) and f.fn == "exp" else \
        f"f = {show(f)} >= 0 assumed (log E[f] is defined only then)"
    if k == 1:
        bounded = ir.Expect(expect.binder, expect.source, log_f, expect.reduce, loc=expect.loc)
        what = "Jensen: E[log f] <= log E[f] (log is concave), K = 1"
    else:
        bounded = ir.Expect(expect.binder, expect.source, OverDraws("logmeanexp", log_f), expect.reduce,
                            samples=k, loc=expect.loc)
        what = (f"the K-draw bound, K = {k}: (1/K) sum_k f(z_k) is unbiased for E[f] and log is concave, so "
                "E[log (1/K) sum_k f(z_k)] <= log E[f]; the gap is non-increasing in K and -> 0 as K -> infinity")
    new = ir.Apply("neg", (bounded,), loc=found.node.loc) if found.negated else bounded
    default = "" if ctx.option("iwae") is not None else f" (default K = {LOG_EXPECT_DRAWS}; set it with jensen(iwae=K))"
    return Rewrite(new, "<=" if found.negated else ">=",
                   (positive, what, f"the draws z_k come from the expectation's own law {show(expect.source)}: "
                                    "no guide"),
                   note=f"log of an expectation bounded by {k} draw{'s' if k > 1 else ''} instead of a one-draw "
                        f"plug-in{default}",
                   facts=(("bound", "log_expectation"), ("iwae", k), ("dreg", False)))


RULE = Rule(
    "jensen", problem="marginal", matches=(ir.Apply,), relation="<=",
    identity="-log p(x) <= E_q[log q(z|x) - log p(x, z)]   (log p(x) >= the ELBO, relation >=)",
    match=match_marginal, build=build_bound,
    unmatched="the objective has no log-likelihood log p(x) of a model with latents and no log of an expectation",
    options=(Option("iwae", int, low=1, wording="iwae=K needs a whole number K >= 1, got {value}",
                    doc="K importance samples: the bound log (1/K) sum_k p(x, z_k)/q(z_k | x); for log E[f], "
                        f"the K-draw bound (default {LOG_EXPECT_DRAWS})"),
             Option("hidden", int, low=1, doc="width of the automatic guide's MLPs"),
             Option("dreg", bool, doc="with iwae=K: the doubly reparameterised gradient (Tucker et al. 2018), "
                                      "guide gradient weighted by the squared normalised weights")),
    variants=({}, {"dreg": True}))
