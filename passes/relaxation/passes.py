"""The relaxation family's two passes: relaxations (all non-differentiable nodes or none) and
proximal steps (top-level convex penalties of a loss trained by plain gradient steps)."""
from __future__ import annotations

import dataclasses

from compiler import ir
from compiler.backend.defaults import degree, plain_gradient
from compiler.ir.printer import show
from compiler.rewrite.manager import STAGES, Plan, RulePass, commit, try_rule
from compiler.rewrite.rule import Step
from passes.relaxation import proximal


class RelaxationPass(RulePass):
    """relax_l0 and relax_step, taken only when they can relax every non-differentiable node
    in the bound's direction (`covers_all`: otherwise the manager records the nodes left in
    `plan.passed_over` and a later pass, evolution strategies, takes them). Each step's note
    says why the relaxation was taken, and claims convexity only where it is proved: a convex
    surrogate φ(s) is convex in the parameters when s is affine in them (degree <= 1 as a
    polynomial in the learnables); of a network's output it is convex in s only.

    With the search among derivations (SPEC 9.4), evolution strategies on the whole loss are an
    alternative at each node beside its relaxations: the note then gives the search's reason
    (the choice and the runner-up) instead of the fixed policy's; in rule order (--no-search)
    the relaxation is taken as before, with the policy's words. Where the search takes evolution
    strategies here, the step smooths the whole loss and its note is the search's."""

    covers_all = True

    def first(self, program, player, rules, plan: Plan):
        hit = super().first(program, player, rules, plan)
        if hit is None:
            return None
        rule, node, path, rw = hit
        if rule not in self.rules:        # evolution strategies, chosen by the search: its note says why
            return hit
        facts = dict(rw.facts)
        searched = "chosen" in facts and not facts.get("rule_order")
        if plan.forces_any(self.rules):
            why = "forced by 'via'"
        elif searched:
            why = ""                      # the search's reason, naming the runner-up, is in the note already
        else:
            why = "relaxation chosen: every non-differentiable term has a convex surrogate"
        argument = dict(rw.facts).get("margin", node.args[0] if isinstance(node, ir.Apply) and node.args else node)
        if degree(argument, program) <= 1:
            convex = f"the surrogate is convex in the parameters ({show(argument)} is affine in them)"
        else:
            convex = (f"the surrogate is convex in s = {show(argument)}, which is not affine in the parameters, "
                      "so the relaxed problem need not be convex")
        why = f"{why}; {convex}" if why else convex
        return rule, node, path, dataclasses.replace(rw, note=f"{rw.note}; {why}" if rw.note else why)


def terms(loss: ir.Node) -> list[ir.Node]:
    """The loss as a sum of terms (only through +: a subtracted term is not a penalty)."""
    if isinstance(loss, ir.Apply) and loss.fn == "add":
        return terms(loss.args[0]) + terms(loss.args[1])
    return [loss]


def sum_of(parts: list[ir.Node]) -> ir.Node:
    if not parts:
        return ir.Num(0)
    out = parts[0]
    for t in parts[1:]:
        out = ir.Apply("add", (out, t), loc=t.loc)
    return out


class ProximalPass:
    """Top-level terms c * g(w) of a minimising player's loss leave it for a proximal map, one
    map per parameter, when the loss left is trained by plain gradient steps (the step a
    proximal map needs): the same objective, minimised by proximal gradient descent."""

    name = "proximal"
    stage = STAGES["proximal"]
    rules = (proximal.RULE,)

    def accepts(self, program: ir.Program, plan: Plan) -> bool:
        return bool(plan.enabled(self.rules))

    def apply(self, program: ir.Program, plan: Plan) -> tuple[ir.Program, list[Step]]:
        steps: list[Step] = []
        for index, player in enumerate(program.players):
            if player.sense != "min":
                continue
            ctx = plan.context(program, player, proximal.RULE)
            moved, keep = {}, []
            for term in terms(player.loss):
                rw = try_rule(proximal.RULE, term, ctx, plan)
                param = dict(rw.facts)["param"] if rw is not None else None
                if rw is not None and param not in moved and all(p != param for p, _, _ in player.prox):
                    moved[param] = (term, rw)
                else:
                    keep.append(term)
            rest = sum_of(keep)
            trial = dataclasses.replace(program, players=tuple(
                dataclasses.replace(p, loss=rest) if p is player else p for p in program.players))
            if not moved or not plain_gradient(trial, rest):
                continue
            for term, rw in moved.values():
                program, step = commit(program, index, proximal.RULE, term, None,
                                       dataclasses.replace(rw, loss=rest), plan)
                steps.append(step)
        return program, steps
