"""The splitting pass: half_quadratic, only when forced with `via half_quadratic(...)`.

The rule splits every term of the losses it can take (to a fixed point), then the box
constraints it claimed from the Lagrangian; their largest violation becomes the `violation`
report. Where the `train` line is silent the split objective is trained by Adam steps of 0.01
decaying to zero (cosine) over 3000 steps, named in the last step.
"""
from __future__ import annotations

import dataclasses

from compiler import ir
from compiler.rewrite.building import fresh, standard_form, used_names, violation
from compiler.rewrite.manager import Plan, RulePass, commit
from compiler.rewrite.rule import Step
from passes.splitting.half_quadratic import HALF_QUADRATIC

TRAINING = (("steps", 3000), ("optimizer", ("adam", (("lr", 0.01),))), ("schedule", "cosine"))


class SplittingPass(RulePass):
    """A rewrite is known to be the pass's last only once nothing is left to split; it is then
    committed again, from the same program, with the pass's closing additions (the violation
    report of the boxes, the training defaults)."""

    def __init__(self):
        super().__init__("splitting", (HALF_QUADRATIC,), "splitting")

    def accepts(self, program: ir.Program, plan: Plan) -> bool:
        return plan.is_forced(HALF_QUADRATIC)

    def apply(self, program: ir.Program, plan: Plan) -> tuple[ir.Program, list[Step]]:
        steps: list[Step] = []
        last = None                      # (program before the last step, its commit arguments)
        while (hit := self._next_term(program, plan)) is not None:
            last = (program, hit)
            program, step = commit(program, *hit, plan)
            steps.append(step)
        boxes = []
        for c in program.constraints:    # the boxes the rule claimed: the Lagrangian took the rest
            theta = program.players[0]
            hit = (0, HALF_QUADRATIC, c, None, HALF_QUADRATIC(c, plan.context(program, theta, HALF_QUADRATIC)))
            last = (program, hit)
            program, step = commit(program, *hit, plan)
            steps.append(step)
            boxes.append(c)
        if last is None:
            return program, steps
        before, (index, rule, node, path, rw) = last
        closing = dataclasses.replace(rw, training=TRAINING)
        if boxes:
            closing = dataclasses.replace(closing, reports=(ir.Report(fresh(used_names(program), "violation"), _worst(boxes)),))
        program, steps[-1] = commit(before, index, rule, node, path, closing, plan)
        return program, steps

    def _next_term(self, program: ir.Program, plan: Plan):
        """(player index, rule, node, path, rewrite) of the first term left to split, or None."""
        for index, player in enumerate(program.players):
            hit = self.first(program, player, self.rules, plan)
            if hit is not None:
                return (index, *hit)
        return None


def _worst(constraints) -> ir.Node:
    """The largest violation over the constraints and their entries."""
    worst = None
    for c in constraints:
        kind, expr = standard_form(c)
        v = violation(kind, expr, c.shape)
        worst = v if worst is None else ir.Apply("max", (worst, v))
    return worst
