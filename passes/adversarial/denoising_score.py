"""denoising_score: Fisher(data‖p) = E_data ½‖∇log p_data − ∇log p‖², without the data's score.

Hyvärinen's form (option `hyvarinen`; the default for an explicit model whose log density is
smooth in closed form: Normal lines, no net):
E_data[½‖∇log p‖² + Δ log p] = Fisher(data‖p) − ½E_data‖∇log p_data‖², relation `=+c` (equal up to
that constant) (integration by parts; p_data ∇log p → 0 at infinity).
Denoising score matching (Vincent 2011; the default otherwise, e.g. a Gibbs(energy) net; option
`denoising` or sigma=σ): with x̃ = x + σε, ε ~ N(0, I),
E ½‖∇log p(x̃) + ε/σ‖² = Fisher(data ∗ N(0, σ²I)‖p) + C: the Bayes-optimal score of the
denoising task is the smoothed data score; relation `~` (exact for the data smoothed at scale
σ, tending to Fisher(data‖p) as σ → 0).
Either way the normaliser of p never appears: Gibbs(energy) models fit as they are.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.analysis.problems import block_latents
from compiler.backend.defaults import KINKED
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import show
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule
from passes.adversarial.nodes import Grad, Laplacian
from passes.adversarial.sides import fresh_name, shared_variables, side_name, sum_of

SIGMA = 0.1                            # noise scale of denoising score matching (option sigma=)
DISCRETE = ("Bernoulli", "Categorical")


def score_model(node: ir.Divergence, program: ir.Program) -> ir.Block:
    """The model p of Fisher(data || p), checked: its density in the data is differentiable.
    Fisher has no other rule, so a model without a score is an error in the program."""
    if not isinstance(node.p, ir.DataSet):
        raise AttractorError(f"denoising_score rewrites Fisher(data || p): the first side must be the data, "
                             f"not {side_name(node.p)}", node.p.loc or node.loc)
    block = program.decl(side_name(node.q))
    if block.kind != "model":
        raise AttractorError(f"Fisher(data || {block.name}) needs the score of {block.name}, but {block.kind} "
                             f"{block.name} has no density", node.q.loc or node.loc)
    latents = block_latents(program, block)
    if latents:
        raise AttractorError(f"the score of model {block.name} is an integral over its latent {', '.join(latents)}: "
                             "denoising_score needs a model with a density in the data alone", node.q.loc or node.loc)
    for line in block.lines:
        if isinstance(line, ir.Tilde) and line.dist.family in DISCRETE:
            raise AttractorError(f"Fisher(data || {block.name}) differentiates log {block.name} in {line.name}, "
                                 f"but {line.name} ~ {line.dist.family} is discrete", line.loc or node.loc)
    return block


def relu_nets(program: ir.Program, block: ir.Block) -> list[str]:
    """The relu nets the block's lines call (their Laplacian is zero almost everywhere)."""
    nets = set()
    for line in block.lines:
        for n in line.walk():
            if isinstance(n, ir.NetCall):
                nets.add(n.net)
            if isinstance(n, ir.Ref) and n.kind == "net":
                nets.add(n.name)
    return sorted(n for n in nets if program.decl(n).act == "relu")


def explicit_smooth(block: ir.Block) -> bool:
    """A closed-form log density, smooth on the whole space: Normal lines, no net, no kink."""
    return (all(line.dist.family == "Normal" for line in block.lines if isinstance(line, ir.Tilde))
            and not any(isinstance(n, ir.NetCall) or isinstance(n, ir.Apply) and n.fn in KINKED
                        for line in block.lines for n in line.walk()))


@dataclass(frozen=True)
class Found:
    """A Fisher divergence from the data to a model with a score, and the form chosen for it:
    Hyvärinen's (`sigma` None) or the denoising task at noise scale `sigma`."""

    divergence: ir.Divergence
    model: ir.Block
    binder: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    sigma: float | None


def match(node: ir.Divergence, ctx: Context) -> Found | Refusal:
    if node.kind != "Fisher":
        return Refusal(f"denoising_score rewrites Fisher divergences, not {node.kind}")
    block = score_model(node, ctx.program)
    binder, shapes = shared_variables(ctx.program, node)
    denoise = ctx.option("denoising") or ctx.option("sigma") is not None
    if ctx.option("hyvarinen") and denoise:
        raise AttractorError("denoising_score: choose hyvarinen or denoising (sigma=...), not both", node.loc)
    if ctx.option("hyvarinen") or not denoise and explicit_smooth(block):
        relu = relu_nets(ctx.program, block)
        if relu:
            return Refusal(f"Hyvarinen's form needs the Laplacian of log {block.name}, which is zero almost everywhere "
                           f"for the relu net {relu[0]}: use denoising score matching (the default)")
        return Found(node, block, binder, shapes, None)
    return Found(node, block, binder, shapes, ctx.option("sigma", SIGMA))


def build(found: Found, ctx: Context) -> Rewrite:
    """Hyvärinen's exact form, or the denoising task at scale σ, of Fisher(data || p)."""
    block, binder = found.model, found.binder
    log_p = ir.Apply("log", (ir.Density(block.name, binder),))
    scope = (f"model {block.name}: log {block.name}({', '.join(binder)}) has no latent; "
             f"its normaliser does not depend on {', '.join(binder)}")
    if found.sigma is None:
        return _hyvarinen(found, ctx, log_p, scope)
    return _denoising(found, ctx, log_p, scope)


def _hyvarinen(found: Found, ctx: Context, log_p: ir.Node, scope: str) -> Rewrite:
    """E_data Σ_x [½‖∇_x log p‖² + Δ_x log p], equal to Fisher(data‖p) up to a constant."""
    body = sum_of(*(sum_of(ir.Apply("mul", (ir.Num(0.5), ir.Apply("sumsq", (Grad(log_p, v),)))), Laplacian(log_p, v))
                    for v in found.binder))
    conditions = (
        scope,
        ("Hyvarinen (2005), integration by parts: E_data <grad log p_data, grad log p> = "
         "-E_data laplacian log p when p_data grad log p -> 0 at infinity"),
        "Fisher(data || p) = E_data[1/2 |grad log p|^2 + laplacian log p] + 1/2 E_data |grad log p_data|^2",
    )
    chosen = "" if ctx.option("hyvarinen") else ("; chosen because log p is smooth in closed form "
                                                 "(via denoising_score(denoising) for the denoising task)")
    note = ("Hyvarinen's score matching, exact: equal up to the constant 1/2 E_data |grad log p_data|^2, "
            "which no parameter moves" + chosen)
    return Rewrite(ir.Expect(found.binder, ir.DataSet(), body), "=+c", conditions, note=note,
                   facts=(("form", "hyvarinen"), ("model", found.model.name)))


def _denoising(found: Found, ctx: Context, log_p: ir.Node, scope: str) -> Rewrite:
    """E_data E_ε ½‖∇log p(x + σε) + ε/σ‖², ε ~ N(0, I): Fisher(data ∗ N(0, σ²I)‖p) + C."""
    sigma, binder = found.sigma, found.binder
    eps = {v: fresh_name(ctx.program, f"eps_{v}" if len(binder) > 1 else "eps") for v in binder}
    body = sum_of(*(ir.Apply("mul", (ir.Num(0.5), ir.Apply("sumsq", (
        ir.Apply("add", (Grad(log_p, v), ir.Apply("div", (ir.Ref(eps[v], "latent"), ir.Num(sigma))))),)))) for v in binder))
    for v in reversed(binder):
        noisy = ir.Apply("add", (ir.Ref(v, "data"), ir.Apply("mul", (ir.Num(sigma), ir.Ref(eps[v], "latent")))))
        body = ir.Let(v, noisy, body)
    for v, s in reversed(tuple(zip(binder, found.shapes))):
        body = ir.Expect((eps[v],), ir.Dist("Normal", ("loc", "scale"), (ir.Num(0), ir.Num(1)), s), body)
    conditions = (
        scope,
        (f"Vincent (2011): with x~ = x + {show(ir.Num(sigma))} eps, grad log N(x~; x, sigma^2) = -eps/sigma, so "
         "E 1/2 |grad log p(x~) + eps/sigma|^2 = Fisher(data * N(0, sigma^2) || p) + const"),
        ("the Bayes-optimal score of the denoising task is the score of the data smoothed at scale sigma; "
         "the surrogate tends to Fisher(data || p) + const as sigma -> 0"),
    )
    note = f"denoising score matching at sigma = {show(ir.Num(sigma))}: exact for the smoothed data, up to a constant"
    return Rewrite(ir.Expect(binder, ir.DataSet(), body), "~", conditions, note=note,
                   facts=(("form", "denoising"), ("model", found.model.name), ("sigma", sigma)))


RULE = Rule(
    "denoising_score", problem="divergence", matches=(ir.Divergence,), relation="~",
    identity="Fisher(data || p) = E_data[1/2 |grad log p|^2 + laplacian log p] + const  (denoising: ~ at scale sigma)",
    match=match, build=build,
    options=(Option("hyvarinen", bool, doc=("Hyvarinen's exact form E_data[1/2 |grad log p|^2 + laplacian log p] "
                                            "(default for a smooth closed-form density)")),
             Option("denoising", bool, doc=f"denoising score matching at sigma = {SIGMA} (default otherwise; relation ~)"),
             Option("sigma", float, low=0.0, low_open=True, wording="sigma must be a positive number, not {value}",
                    doc="denoising score matching at this noise scale")),
)
