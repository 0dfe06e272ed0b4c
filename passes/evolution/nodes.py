"""The node types the evolution family introduces and their lowering.

    Search     Normal(θ, σ² I), the search distribution centred at the parameters θ
    Smoothed   E[θ' ~ Search] f(θ'), lowered to the runtime's `es_smooth`: the population
               evaluated in one vmapped call, the evolution-strategies gradient in θ
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.backend.lower import RUNTIME_PARTS, Emitter, Fn, key_literal, lowers, num
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


RUNTIME_PARTS["evolution_strategy"] = '''
def es_sigma(sigma, final, batch):
    """The search scale: sigma, or geometric from sigma to final over the steps of the run
    (the final value when no step is known, as when evaluating)."""
    if final <= 0.0:
        return sigma
    if "#step" not in batch:
        return final
    frac = jnp.clip(batch["#step"] / jnp.maximum(batch["#total"] - 1, 1), 0.0, 1.0)
    return sigma * (final / sigma) ** frac


def centered_ranks(values):
    """Ranks of `values` scaled to [-0.5, 0.5]; tied values share their mean rank."""
    below = jnp.sum(values[None, :] < values[:, None], axis=1)
    ties = jnp.sum(values[None, :] == values[:, None], axis=1)
    return (below + 0.5 * (ties - 1)) / (values.shape[0] - 1) - 0.5


def es_smooth(fitness, params, names, key, fitness_key, sigma, population, antithetic, shaping):
    """E[theta ~ Normal(mu, sigma^2 I)] fitness(theta) over the parameters `names`, mu their values.

    Value: the population average, a Monte Carlo estimate of the smoothed objective.
    Gradient in mu: the evolution-strategies estimate (1 / (N sigma)) sum_i w_i eps_i, with
    theta_i = mu + sigma eps_i (antithetic pairs +-eps, one flat draw over all of `names`) and
    w_i the centred ranks of fitness(theta_i) ("none": fitness(theta_i) - mean); the population
    is evaluated in one vmapped call with common random numbers. Other parameters get the
    pathwise gradient.
    """
    shapes = [jnp.shape(params[k]) for k in names]
    cuts = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    flat = lambda tree: jnp.concatenate([jnp.ravel(tree[k]) for k in names])  # noqa: E731
    unravel = lambda v: {k: p.reshape(s) for k, p, s in zip(names, jnp.split(v, cuts), shapes)}  # noqa: E731
    mu = jax.lax.stop_gradient(flat(params))
    half = population // 2 if antithetic else population
    eps = jax.random.normal(key, (half, mu.shape[0]))
    if antithetic:
        eps = jnp.concatenate([eps, -eps])

    def one(e):
        return fitness({**params, **unravel(mu + sigma * e)}, fitness_key)

    values = jax.vmap(one)(eps)
    fixed = jax.lax.stop_gradient(values)
    weights = centered_ranks(fixed) if shaping == "centered_rank" else fixed - jnp.mean(fixed)
    grad = jax.lax.stop_gradient(weights @ eps / (population * sigma))
    return jnp.mean(values) + jnp.sum(grad * (flat(params) - mu))
'''


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
