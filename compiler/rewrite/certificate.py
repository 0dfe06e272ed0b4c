"""A numerical certificate: evidence, from random instances, that a recorded relation holds
(bounds really bound, estimators are unbiased within a confidence interval).

Each rule family keeps its certificates in `passes/<family>/certificates.py`, a dict
`CERTIFICATES = {rule name: fn(compiled_program, step, seed) -> [Certificate]}`; only the
`check` driver loads them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from compiler import ir


@dataclass(frozen=True)
class Certificate:
    rule: str
    claim: str
    evidence: str
    passed: bool


def derivation_steps(prog) -> tuple:
    """The steps of a compiled program's derivation."""
    return prog.derivation.steps


def step_losses(prog, step) -> tuple[ir.Node, ir.Node] | None:
    """The loss of the step's player just before and just after `step` (None for a player
    the derivation introduced)."""
    steps = derivation_steps(prog)
    index = next(i for i, s in enumerate(steps) if s is step)
    before = next((s.node for s in reversed(steps[:index]) if s.player == step.player), None)
    if before is None:
        typed = {p.name: p.loss for p in prog.typed.players}
        if step.player not in typed:
            return None
        before = typed[step.player]
    return before, step.node


def loss_module(prog, loss: ir.Node):
    """The emitted module of `prog` with its first player's loss replaced by `loss` (no proximal
    maps): `mod.objective(params, key, data)` evaluates that loss on the whole data set."""
    first = dataclasses.replace(prog.program.players[0], loss=loss, prox=())
    program = dataclasses.replace(prog.program, players=(first,) + prog.program.players[1:])
    return dataclasses.replace(prog, program=program).build()
