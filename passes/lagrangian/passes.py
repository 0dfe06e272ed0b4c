"""The lagrangian pass: every constraint the forced rule does not claim becomes a multiplier
term of the first player's loss, and one new player, `multipliers`, ascends on their sum.

    minimize f  subject to g_i <= 0, h_j == 0   →   player theta: min f + Σ t_i
                                                    player multipliers: max Σ t_i   (λ_i >= 0 by projection)

(for a maximisation the signs flip: theta maximises f - Σ t_i, the multipliers minimise).
The last step also introduces the multiplier player, the `violation` report (the largest
max(g, 0) or |h| over all constraints and entries) and the training defaults.
"""
from __future__ import annotations

import dataclasses

from compiler import ir
from compiler.rewrite.building import add, fresh, used_names, violation
from compiler.rewrite.manager import STAGES, Plan, commit
from compiler.rewrite.rule import Step
from passes.lagrangian.lagrangian import LAGRANGIAN, PLAYER

TRAINING = (("steps", 3000), ("optimizer", ("adam", (("lr", 0.01),))), ("schedule", "cosine"),
            ("dynamics", "simultaneous"))
"""Where the `train` line is silent: simultaneous Adam steps of 0.01 decaying to zero (cosine)
over 3000 steps; with a decaying step, simultaneous descent-ascent settles on the saddle."""


class LagrangianPass:
    """All constraints at once: the rule names each multiplier by its constraint's position,
    so every rewrite is built against the program as it stands before the first commit
    (with the multipliers and reports introduced so far), then the rewrites are committed
    in order, the last one closing the game."""

    name = "lagrangian"
    stage = STAGES["lagrangian"]
    rules = (LAGRANGIAN,)

    def accepts(self, program: ir.Program, plan: Plan) -> bool:
        return any(not plan.claimed(c, program) for c in program.constraints)

    def apply(self, program: ir.Program, plan: Plan) -> tuple[ir.Program, list[Step]]:
        theta = program.players[0]
        sign = 1 if theta.sense == "min" else -1
        named, rewrites = program, []
        for c in [c for c in program.constraints if not plan.claimed(c, program)]:
            rw = LAGRANGIAN(c, plan.context(named, theta, LAGRANGIAN))
            named = dataclasses.replace(named, decls=named.decls + rw.decls, reports=named.reports + rw.reports)
            rewrites.append((c, rw))
        rewrites[-1] = (rewrites[-1][0], self._closing(named, rewrites, sign))
        steps = []
        for c, rw in rewrites:
            program, step = commit(program, 0, LAGRANGIAN, c, None, rw, plan)
            steps.append(step)
        return program, steps

    @staticmethod
    def _closing(named: ir.Program, rewrites, sign: int):
        """The last rewrite with the multiplier player, the violation report and the training defaults."""
        terms, worst, mults, prox = None, None, [], []
        for c, rw in rewrites:
            terms = rw.node if terms is None else add(terms, rw.node)
            facts = dict(rw.facts)
            mult, kind = facts["multiplier"], facts["kind"]
            mults.append(mult)
            if kind == "ineq":
                prox.append((mult, "nonneg", ir.Num(1)))
            v = violation(kind, facts["expr"], c.shape)
            worst = v if worst is None else ir.Apply("max", (worst, v))
        player = ir.Player(PLAYER, tuple(mults), "max" if sign > 0 else "min",
                           terms if sign > 0 else ir.Apply("neg", (terms,)), prox=tuple(prox))
        report = ir.Report(fresh(used_names(named), "violation"), worst)
        last = rewrites[-1][1]
        return dataclasses.replace(last, players=(player,), reports=last.reports + (report,), training=TRAINING,
                                   facts=last.facts + (("violation", report.name),))
