"""What the exact routes share: a side of a divergence as a model with a normalised density,
and its log density in the divergence's variables."""
from __future__ import annotations

from compiler import ir
from compiler.analysis.problems import missing_latents
from compiler.rewrite.rule import Refusal
from passes.adversarial.sides import shared_variables, side_name

MONTE_CARLO_DRAWS = 1024   # draws per evaluation of a divergence estimated with both densities


def explicit_model(program: ir.Program, side: ir.Node) -> ir.Block | None:
    """The side as a model block with a normalised density (no Gibbs line, not conditioned), or None."""
    if isinstance(side, ir.DataSet):
        return None
    block = program.decl(side.name)
    if not isinstance(block, ir.Block) or block.kind != "model" or block.given:
        return None
    if any(isinstance(line, ir.Tilde) and line.dist.family == "Gibbs" for line in block.lines):
        return None
    return block


def log_density(block: ir.Block, binder: tuple[str, ...]) -> ir.Node:
    return ir.Apply("log", (ir.Density(block.name, binder),))


def two_explicit_models(program: ir.Program, node: ir.Divergence):
    """(p, q, the variables compared) when both sides of `node` are models with normalised densities
    in those variables (no latent left to integrate), else a Refusal saying which side is not."""
    p, q = explicit_model(program, node.p), explicit_model(program, node.q)
    if p is None or q is None:
        return Refusal(f"{side_name(node.p) if p is None else side_name(node.q)} has no normalised density")
    binder, _ = shared_variables(program, node)
    for block in (p, q):
        hidden = missing_latents(program, ir.Density(block.name, binder))
        if hidden:
            return Refusal(f"model {block.name}'s density in {', '.join(binder)} integrates over its latents "
                           f"{', '.join(hidden)}")
    return p, q, binder
