"""What the exact routes share: a side of a divergence as a model with a normalised density,
and its log density in the divergence's variables."""
from __future__ import annotations

from compiler import ir

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
