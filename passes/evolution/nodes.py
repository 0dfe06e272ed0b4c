"""The node types the evolution family introduces and their lowering.

    Search     Normal(θ, σ² I), the search distribution centred at the parameters θ
    Smoothed   E[θ' ~ Search] f(θ'), lowered to the runtime's `es_smooth`: the population
               evaluated in one vmapped call, the evolution-strategies gradient in θ
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.backend.lower import Emitter, Fn, key_literal, lowers, num
from compiler.backend.runtime import register
from compiler.ir.printer import number, show
from compiler.math.latex import latex

SHAPINGS = ("centered_rank", "none")
SCALE_SUFFIX = "_log_sigma"   # the learned log search scale of parameter NAME is NAME_log_sigma (option adapt)


@dataclass(frozen=True)
class Search(ir.Node):
    """Normal(θ, σ² I): the search distribution, centred at the current parameters θ."""

    params: tuple[ir.Node, ...]
    sigma: float
    scales: tuple[ir.Node, ...] = ()   # with `adapt`: the parameters holding log σ, one per coordinate

    def printed(self) -> tuple[str, int]:
        names = ", ".join(show(p) for p in self.params)
        centre = names if len(self.params) == 1 else f"({names})"
        if self.scales:
            scales = ", ".join(show(s) for s in self.scales)
            return f"Normal({centre}, exp({scales if len(self.scales) == 1 else f'({scales})'})^2)", 5
        return f"Normal({centre}, {number(self.sigma)}^2)", 5

    def latexed(self) -> str:
        return rf"\mathcal{{N}}\left({', '.join(latex(p) for p in self.params)};\, {number(self.sigma)}^2 I\right)"


@dataclass(frozen=True)
class Smoothed(ir.Expect):
    """E[θ' ~ Normal(θ, σ² I)] f(θ') with the evolution-strategies gradient in θ.

    `binder` names the perturbed parameters θ', `source` is a `Search`, `samples` the
    population; σ decays geometrically to `sigma_final` over training when it is positive.
    """

    antithetic: bool = True
    shaping: str = "centered_rank"
    sigma_final: float = 0.0
    sense: int = 1                     # +1: lower values are better (the player minimises it), -1: higher


register("passes.evolution.runtime")   # es_sigma, centered_ranks, es_smooth, snes_smooth


@lowers(Smoothed)
def _smoothed(em: Emitter, node: Smoothed, fn: Fn) -> str:
    """The body becomes `fitness(params, key)` evaluated at perturbed parameters (its
    `params` shadows the loss's), handed to the runtime's `es_smooth`."""
    names = [p.name for p in node.source.params]
    inner = fn.child({b: f"params[{key_literal(n)}]" for b, n in zip(node.binder, names)}, "key", params="params")
    inner.emit(f"return {em.lower(node.body, inner)}")
    fitness = em.fresh("fitness")
    fn.emit(f"def {fitness}(params, key):")
    fn.lines.extend(inner.body())
    sigma = f"es_sigma({num(node.source.sigma)}, {num(node.sigma_final)}, batch)"
    names_code = "(" + "".join(f"{key_literal(n)}, " for n in names) + ")"
    shaping = SHAPINGS[SHAPINGS.index(node.shaping)]
    if node.source.scales:
        scales = "(" + "".join(f"{key_literal(s.name)}, " for s in node.source.scales) + ")"
        return (f"snes_smooth({fitness}, {fn.params}, {names_code}, {scales}, {fn.subkey()}, {fn.subkey()}, "
                f"{int(node.samples)}, {bool(node.antithetic)}, {1 if node.sense > 0 else -1})")
    return (f"es_smooth({fitness}, {fn.params}, {names_code}, {fn.subkey()}, {fn.subkey()}, {sigma}, "
            f"{int(node.samples)}, {bool(node.antithetic)}, \"{shaping}\")")
