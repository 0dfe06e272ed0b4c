"""Numerical certificates of evolution_strategy, loaded by `attractor check` only: min f <= E f
on the program, and the emitted gradient estimator against the exact gradient of a smoothing
SymPy integrates."""
from __future__ import annotations

import numpy as np
import sympy as sp

from compiler.ir.printer import number
from compiler.rewrite.certificate import Certificate, loss_module, step_losses


def smoothed_test_function(d: int) -> tuple[sp.Expr, list[sp.Symbol], sp.Expr]:
    """A smooth test function f(θ) = Σ cos θ_i + θ_i²/2 + θ_i/2 of d variables and its Gaussian
    smoothing E f(μ + σε), integrated by SymPy (in μ and σ)."""
    theta = sp.symbols(f"theta0:{d}", real=True)
    mu = sp.symbols(f"mu0:{d}", real=True)
    sigma, e = sp.Symbol("sigma", positive=True), sp.Symbol("e", real=True)
    term = lambda x: sp.cos(x) + x ** 2 / 2 + x / 2
    density = sp.exp(-e ** 2 / 2) / sp.sqrt(2 * sp.pi)
    m = sp.Symbol("m", real=True)
    parts = sp.Add.make_args(sp.expand(sp.expand_trig(term(m + sigma * e))))   # integrated term by term
    smooth_one = sp.simplify(sum(sp.integrate(p * density, (e, -sp.oo, sp.oo)) for p in parts))
    smoothed = sum(smooth_one.subs(m, mi) for mi in mu)
    return sum(term(t) for t in theta), list(mu) + [sigma], smoothed


def _es_gradients(mod, fitness, mu, sigma, population, antithetic, shaping, repeats, seed):
    """`repeats` independent ES gradient estimates at mu from the emitted `es_smooth`."""
    import jax

    def grad(key):
        k1, k2 = jax.random.split(key)
        loss = lambda p: mod.es_smooth(fitness, p, ("theta",), k1, k2, sigma, population, antithetic, shaping)
        return jax.grad(loss)({"theta": mu})["theta"]
    return np.asarray(jax.jit(jax.vmap(grad))(jax.random.split(jax.random.PRNGKey(seed), repeats)), float)


def _snes_gradients(mod, fitness, mu, sigma, population, antithetic, repeats, seed):
    """`repeats` gradients in mu of the emitted `snes_smooth` (log sigma fixed at log `sigma`)."""
    import jax
    import jax.numpy as jnp

    def grad(key):
        k1, k2 = jax.random.split(key)
        scales = {"theta_log_sigma": jnp.full(mu.shape, np.log(sigma), jnp.float32)}
        loss = lambda p: mod.snes_smooth(fitness, {**p, **scales}, ("theta",), ("theta_log_sigma",), k1, k2, population, antithetic, 1)
        return jax.grad(loss)({"theta": mu})["theta"]
    return np.asarray(jax.jit(jax.vmap(grad))(jax.random.split(jax.random.PRNGKey(seed), repeats)), float)


def certify_evolution_strategy(prog, step, seed: int) -> list[Certificate]:
    """On the program: at random centres, the minimum of f over the sampled points is below the
    smoothed objective's confidence interval (min f <= E f). On a smooth test function whose
    smoothing SymPy integrates: the emitted estimator with the program's σ, population and
    antithetic pairs, unshaped, matches the exact gradient of the smoothed objective within
    4 standard errors; with centred ranks it points the same way (cosine > 0.9)."""
    import jax
    import jax.numpy as jnp
    sigma, population, antithetic, shaping = (step.fact(k) for k in ("sigma", "population", "antithetic", "shaping"))
    out = []
    losses = step_losses(prog, step)
    if losses is not None:
        mod, data = loss_module(prog, losses[0]), prog.load_data()
        batch, key = mod.full_batch(data), jax.random.PRNGKey(seed)
        rng = np.random.default_rng(seed)
        base = mod.init(key)
        names = list(step.fact("params"))
        rows = []
        for _ in range(3):
            centre = {k: v + rng.normal(0, 0.5, np.shape(v)).astype(np.float32) if k in names else v for k, v in base.items()}
            draws = {k: jnp.asarray(np.asarray(v)[None] + sigma * rng.normal(size=(512,) + np.shape(v)), jnp.float32) if k in names else v
                     for k, v in centre.items()}
            values = np.asarray(jax.vmap(lambda p: mod.LOSSES[prog.program.players[0].name](p, key, batch),
                                         in_axes=({k: 0 if k in names else None for k in draws},))(draws), float)
            rows.append((values.min(), values.mean(), values.std(ddof=1) / np.sqrt(len(values))))
        out.append(Certificate("evolution_strategy", "min f <= E[theta ~ Normal(mu, sigma^2)] f(theta), at 3 random centres (512 draws each)",
                               "; ".join(f"min {m:.4g} <= mean {a:.4g} +- {4 * s:.2g}" for m, a, s in rows),
                               all(m <= a + 4 * s for m, a, s in rows)))
    d = 4
    f, symbols, smoothed = smoothed_test_function(d)
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-1.5, 1.5, d)
    at = {**dict(zip(symbols[:-1], mu)), symbols[-1]: sigma}
    exact = np.array([float(sp.diff(smoothed, m).subs(at)) for m in symbols[:-1]])
    theta = sp.symbols(f"theta0:{d}", real=True)
    code = sp.lambdify([theta], f, "jax")
    fitness = lambda p, key: code(list(p["theta"]))
    mod = prog.build()
    mu_j = jnp.asarray(mu, jnp.float32)
    if step.fact("adapt"):   # SNES: ranked natural-gradient moves, checked for direction only
        moves = _snes_gradients(mod, fitness, mu_j, sigma, population, antithetic, 200, seed + 1).mean(0)
        cosine = float(moves @ exact / (np.linalg.norm(moves) * np.linalg.norm(exact)))
        out.append(Certificate("evolution_strategy", f"the SNES move of the centre points down the exact gradient of the "
                               f"smoothed test function (sigma {number(sigma)}, 200 repeats)", f"cosine {cosine:.4f}", cosine > 0.9))
        return out
    raw = _es_gradients(mod, fitness, mu_j, sigma, population, antithetic, "none", 2000, seed)
    mean, se = raw.mean(0), raw.std(0, ddof=1) / np.sqrt(len(raw))
    out.append(Certificate("evolution_strategy", f"E[ES gradient] = grad E f(mu + sigma eps) on a smooth test function "
                           f"(sigma {number(sigma)}, population {population}, unshaped, 2000 repeats)",
                           f"exact {np.round(exact, 4).tolist()}, estimate {np.round(mean, 4).tolist()} +- {np.round(4 * se, 4).tolist()}",
                           bool(np.all(np.abs(mean - exact) <= 4 * se + 1e-4))))
    ranked = _es_gradients(mod, fitness, mu_j, sigma, population, antithetic, shaping, 200, seed + 1).mean(0)
    cosine = float(ranked @ exact / (np.linalg.norm(ranked) * np.linalg.norm(exact)))
    out.append(Certificate("evolution_strategy", f"the {shaping} estimate points along the exact gradient (200 repeats)",
                           f"cosine {cosine:.4f}", cosine > 0.9))
    return out


CERTIFICATES = {"evolution_strategy": certify_evolution_strategy}
