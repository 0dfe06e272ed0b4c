"""relax_l0: norm0(w)  ~  norm1(w), the convex envelope of norm0 on the box ‖w‖∞ ≤ 1.

norm1 is the largest convex function below norm0 on the box, equal to it at the box's
vertices (SymPy checks |u| against [u != 0] at -1, 0, 1). A relaxation, not a bound
everywhere (relation ~): it lies below norm0 on the box and can exceed it outside. Valid only
where the term is minimised with a non-negative weight (the manager checks it).
"""
from __future__ import annotations

from compiler import ir
from compiler.analysis.problems import depends_on, node_problem
from compiler.ir.printer import show
from compiler.math.piecewise import l0_envelope
from compiler.rewrite.rule import Context, Refusal, Rewrite, Rule


def match(node: ir.Apply | ir.Compare, ctx: Context) -> ir.Apply | Refusal | None:
    """A norm0 term in the parameters; a refusal at any other non-differentiable node (the
    functions without a gradient and the Iverson brackets)."""
    if not (isinstance(node, ir.Apply) and node.fn == "norm0"):
        problem = node_problem(ctx.program, node)
        if problem is not None and problem.kind == "nondiff":
            return Refusal(f"it relaxes norm0 only, and {show(node)} is not one; relax_step relaxes 0-1 losses")
        return None
    return node if depends_on(node, ctx.program) else None


def build(norm0: ir.Apply, ctx: Context) -> Rewrite:
    return Rewrite(ir.Apply("norm1", norm0.args, loc=norm0.loc), "~", l0_envelope(),
                   note="scale the variables so that |w_i| <= 1 holds at the solution for the envelope to be tight",
                   facts=(("box", 1.0),))


RULE = Rule(
    "relax_l0", problem="nondiff", matches=(ir.Apply, ir.Compare), relation="~",
    identity="norm0(w) ~ norm1(w)   (convex envelope on |w_i| <= 1)",
    match=match, build=build,
    unmatched="the objective has no norm0 term in its parameters")
