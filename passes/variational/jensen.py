"""jensen: -log p(x) = -log E_q[p(x, z) / q(z | x)] <= E_q[log q(z | x) - log p(x, z)] (Jensen:
log is concave), the gap being KL(q(z | x) || p(z | x)) >= 0; `log p(x)` alone gets the ELBO,
relation `>=`. q is the declared guide, or an automatic amortised one
(`guides.automatic_guide`; option hidden=H sets its MLPs' width).

Option iwae=K: log p(x) >= E[log (1/K) sum_k p(x, z_k) / q(z_k | x)], z_k iid ~ q, a bound that
tightens as K grows (Burda et al. 2016).

Side conditions: x observed, the guide draws exactly the model's latents, and for each latent
supp q = supp p.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.analysis.problems import block_latents, missing_latents
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import show
from compiler.rewrite.rule import Context, Option, Rewrite, Rule
from passes.variational.guides import automatic_guide, declared_guide, supports_agree
from passes.variational.nodes import OverDraws


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


def match_marginal(node: ir.Apply, ctx: Context) -> Marginal | None:
    """`log p(x)` or `-log p(x)` where p(x) integrates over latents; the checks that the bound
    can be built (observed data, a guide that draws exactly the latents) raise diagnostics."""
    negated = node.fn == "neg"
    inner = node.args[0] if negated else node
    if not (isinstance(inner, ir.Apply) and inner.fn == "log" and isinstance(inner.args[0], ir.Density)):
        return None
    density, program = inner.args[0], ctx.program
    if not missing_latents(program, density):
        return None
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


def build_bound(found: Marginal, ctx: Context) -> Rewrite:
    """The ELBO (K = 1) or the importance-weighted bound under the guide, declared or built."""
    model, density, program = found.model, found.density, ctx.program
    guide, supports, decls = found.guide, found.supports, ()
    if guide is None:
        guide, nets = automatic_guide(model, found.latents, found.observed, program, ctx.player.name,
                                      ctx.option("hidden"))
        supports, decls = supports_agree(guide, model, program), nets + (guide,)
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
        iwae = ir.Expect(guide.latents, sample, OverDraws("logmeanexp", ir.Apply("sub", (log_joint, log_q))),
                         samples=k, loc=found.node.loc)
        new = ir.Apply("neg", (iwae,)) if found.negated else iwae
        bound = f"importance-weighted bound, K = {k}"
        gap = "gap >= 0, non-increasing in K, -> 0 as K -> infinity (the guide covers the posterior)"
    return Rewrite(new, "<=" if found.negated else ">=", conditions + (gap,), decls,
                   note=f"{bound}; guide {guide.name}" + (" (automatic, amortised)" if decls else " (declared)"),
                   facts=(("bound", "elbo" if k == 1 else "iwae"), ("iwae", k), ("guide", guide.name),
                          ("automatic_guide", bool(decls)), ("latents", found.latents), ("observed", found.observed)))


RULE = Rule(
    "jensen", problem="marginal", matches=(ir.Apply,), relation="<=",
    identity="-log p(x) <= E_q[log q(z|x) - log p(x, z)]   (log p(x) >= the ELBO, relation >=)",
    match=match_marginal, build=build_bound,
    unmatched="the objective has no log-likelihood log p(x) of a model with latents",
    options=(Option("iwae", int, low=1, wording="iwae=K needs a whole number K >= 1, got {value}",
                    doc="K importance samples: the bound log (1/K) sum_k p(x, z_k)/q(z_k | x)"),
             Option("hidden", int, low=1, doc="width of the automatic guide's MLPs")))
