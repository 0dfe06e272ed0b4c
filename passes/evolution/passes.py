"""The evolution family's pass: evolution_strategy on every player's loss, with the reason it
was chosen over the relaxations in each step's note."""
from __future__ import annotations

import dataclasses

from compiler.ir.printer import show
from compiler.rewrite.manager import Plan, RulePass


class EvolutionPass(RulePass):
    """evolution_strategy where it is forced, or where the relaxations stood aside (the
    manager records the nodes no convex surrogate could take in `plan.passed_over`); disabled
    by the manager when `via` forces a relaxation."""

    def first(self, program, player, rules, plan: Plan):
        hit = super().first(program, player, rules, plan)
        if hit is None:
            return None
        rule, node, path, rw = hit
        if plan.forces_any(self.rules):
            why = "forced by 'via'"
        else:
            _, left = plan.passed_over.get(rule.problem, ("", []))
            why = f"evolution strategies chosen: no convex surrogate keeps the bound for {', '.join(show(n) for n in left)}"
        return rule, node, path, dataclasses.replace(rw, note=f"{rw.note}; {why}")
