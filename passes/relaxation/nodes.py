"""The node type the relaxation family introduces: a proximal step, w ← prox_{η c g}(w).

It never stands in a loss: it is what a `proximal` step shows in place of the term the loss
lost (the map itself is recorded on the player, `ir.Player.prox`, and lowered by the backend).
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.ir.printer import show


@dataclass(frozen=True)
class ProximalStep(ir.Node):
    """w ← prox[c * g](w), applied after every gradient step with that step's size η."""

    param: str
    kind: str          # a key of compiler.math.piecewise.PROX_FUNCTIONS
    weight: ir.Node

    def printed(self) -> tuple[str, int]:
        return f"proximal step {self.param} <- prox[{show(self.weight)} * {self.kind}]({self.param})", 0
