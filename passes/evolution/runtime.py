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


def snes_utilities(values, sense):
    """SNES fitness shaping: the draw of rank k (1 the best: the lowest value for sense +1, the
    highest for -1) gets max(0, log(N/2 + 1) - log k) / (sum of those) - 1/N; the utilities sum
    to 0, and tied values share the mean utility of the ranks they hold (all tied: all 0, so a
    population inside one cell of a piecewise-constant f moves nothing)."""
    n = values.shape[0]
    table = jnp.maximum(0.0, jnp.log(n / 2 + 1) - jnp.log(jnp.arange(1, n + 1)))
    table = table / jnp.sum(table) - 1.0 / n
    cumulative = jnp.concatenate([jnp.zeros(1), jnp.cumsum(table)])
    better = sense * values
    below = jnp.sum(better[None, :] < better[:, None], axis=1)
    ties = jnp.sum(better[None, :] == better[:, None], axis=1)
    return (cumulative[below + ties] - cumulative[below]) / ties


def snes_smooth(fitness, params, names, scales, key, fitness_key, population, antithetic, sense):
    """E[theta ~ Normal(mu, diag(sigma^2))] fitness(theta) with sigma = exp(params[scales]) learned
    by separable natural evolution strategies (SNES).

    Value: the population average. Gradients (for a plain step of size 1, the player descending
    for sense +1 and ascending for -1) are the SNES updates: mu moves by sigma * sum_k u_k eps_k
    and log sigma by (eta_sigma / 2) sum_k u_k (eps_k^2 - 1), eta_sigma = (3 + log d) / (5 sqrt d)
    for d searched coordinates, u the SNES utilities (`snes_utilities`).
    """
    shapes = [jnp.shape(params[k]) for k in names]
    cuts = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    flat = lambda keys: jnp.concatenate([jnp.ravel(params[k]) for k in keys])
    unravel = lambda v: {k: p.reshape(s) for k, p, s in zip(names, jnp.split(v, cuts), shapes)}
    mu, log_sigma = jax.lax.stop_gradient(flat(names)), jax.lax.stop_gradient(flat(scales))
    sigma, d = jnp.exp(log_sigma), mu.shape[0]
    half = population // 2 if antithetic else population
    eps = jax.random.normal(key, (half, d))
    if antithetic:
        eps = jnp.concatenate([eps, -eps])
    values = jax.vmap(lambda e: fitness({**params, **unravel(mu + sigma * e)}, fitness_key))(eps)
    u = snes_utilities(jax.lax.stop_gradient(values), sense)
    eta_sigma = (3 + np.log(d)) / (5 * np.sqrt(d))
    move_mu = sigma * (u @ eps)
    move_log_sigma = 0.5 * eta_sigma * (u @ (eps ** 2 - 1))
    # a minimising player steps along -gradient, a maximising one along +gradient: both take the moves
    surrogate = -sense * (jnp.sum(move_mu * (flat(names) - mu)) + jnp.sum(move_log_sigma * (flat(scales) - log_sigma)))
    return jnp.mean(values) + surrogate   # surrogate is 0 in value (flat = mu): only its gradient counts
