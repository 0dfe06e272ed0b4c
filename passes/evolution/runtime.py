"""The evolution family's runtime, copied into emitted modules that smooth a loss by a search
distribution (`Smoothed`): the search scale, centred ranks, and `es_smooth`, the
evolution-strategies estimate of the gradient of E[theta ~ Normal(mu, sigma^2 I)] f(theta)."""
import jax
import jax.numpy as jnp
import numpy as np


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
    flat = lambda tree: jnp.concatenate([jnp.ravel(tree[k]) for k in names])
    unravel = lambda v: {k: p.reshape(s) for k, p, s in zip(names, jnp.split(v, cuts), shapes)}
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
