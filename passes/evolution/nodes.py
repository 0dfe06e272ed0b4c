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


@dataclass(frozen=True)
class Search(ir.Node):
    """Normal(θ, σ² I): the search distribution, centred at the current parameters θ."""

    params: tuple[ir.Node, ...]
    sigma: float

    def printed(self) -> tuple[str, int]:
        names = ", ".join(show(p) for p in self.params)
        centre = names if len(self.params) == 1 else f"({names})"
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


register("passes.evolution.runtime")   # es_sigma, centered_ranks, es_smooth


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
    return (f"es_smooth({fitness}, {fn.params}, {names_code}, {fn.subkey()}, {fn.subkey()}, {sigma}, "
            f"{int(node.samples)}, {bool(node.antithetic)}, \"{shaping}\")")
