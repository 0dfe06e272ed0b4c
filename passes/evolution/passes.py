"""The evolution family's pass: evolution_strategy on every player's loss, with the reason it
was chosen over the relaxations in each step's note."""
from __future__ import annotations

import dataclasses

from compiler.ir.printer import show
from compiler.rewrite.manager import Plan, RulePass


class EvolutionPass(RulePass):
    """evolution_strategy where it is forced, or where the relaxations stood aside (the
    manager records the nodes no convex surrogate could take in `plan.passed_over`); disabled
    by the manager when `via` forces a relaxation. Where the relaxations do take every node,
    evolution strategies are still an alternative at each of them, on the whole loss that holds
    it (the manager's `alternatives`), ranked by the search in the relaxation pass."""

    def first(self, program, player, rules, plan: Plan):
        hit = super().first(program, player, rules, plan)
        if hit is None:
            return None
        rule, node, path, rw = hit
        if rule not in self.rules:        # the search took another pass's rule here: its note says why
            return hit
        if plan.forces_any(self.rules):
            why = "forced by 'via'"
        else:
            why = f"evolution strategies chosen: {self.uncovered_text(rule, plan)}"
        return rule, node, path, dataclasses.replace(rw, note=f"{rw.note}; {why}")

    def alone(self, program, rule, plan: Plan) -> str:
        """Why evolution strategies are the only derivation: the relaxations stood aside."""
        if rule.problem not in plan.passed_over:
            return ""
        return self.uncovered_text(rule, plan, reasons=True)

    @staticmethod
    def uncovered_text(rule, plan: Plan, reasons: bool = False) -> str:
        """'no convex surrogate keeps the bound for NODES', with (`reasons`) each node's refusals by
        the relaxations and the direction checks their rewrites failed (`plan.unkept`)."""
        _, left = plan.passed_over.get(rule.problem, ("", []))
        if not reasons:
            return f"no convex surrogate keeps the bound for {', '.join(show(n) for n in left)}"
        parts = []
        for node in left:
            why = dict.fromkeys([f"{r}: {refusal.reason}" for r, n, refusal in plan.declined if n is node and r != rule.name]
                                + [message for r, n, message in plan.unkept if n is node and r != rule.name])
            parts.append(f"{show(node)} ({'; '.join(why)})" if why else show(node))
        return f"no convex surrogate keeps the bound for {', '.join(parts)}"
