"""Emitted training steps against the same steps written by hand in JAX: es_zero_one.att
(OpenAI-ES with antithetic pairs and centred ranks, Adam on the mean) and lasso.att
(proximal gradient with step 1/L). Both run as jitted 100-step calls (the emitted `train_steps`,
which `fit` calls, against a `lax.scan` of the hand step), called alternately; medians and the ratio emitted / by hand.
(vae.att and gan_ring.att are timed against their hand-written steps in
variational_vae.py and adversarial_gan.py.)

Run: `.venv/bin/python bench/hand_steps.py`.
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from harness import alternate, block  # noqa: E402

from attractor import compile_file  # noqa: E402

CHUNK = 100


def emitted(name: str):
    """The emitted module of examples/NAME.att, its data and a trained-ready state."""
    prog = compile_file(ROOT / "examples" / f"{name}.att")
    mod, data = prog.build(), prog.load_data()
    arrays = mod.as_data(data)
    state = jax.device_put(mod.init_state(mod.init(jax.random.PRNGKey(0))), mod.REPLICATED)
    if mod.LIPSCHITZ_STEP:
        state = mod.lipschitz_step(state, arrays)
    return mod, arrays, state


# ---- es_zero_one by hand -------------------------------------------------------------------

POPULATION, SIGMA, ES_LR = 64, 0.1, 0.05
ES_OPT = optax.adam(ES_LR)


def centred_ranks(values):
    below = jnp.sum(values[None, :] < values[:, None], axis=1)
    ties = jnp.sum(values[None, :] == values[:, None], axis=1)
    return (below + 0.5 * (ties - 1)) / (values.shape[0] - 1) - 0.5


def es_step(state, key, X, y):
    mu, opt = state
    half = jax.random.normal(key, (POPULATION // 2, mu.shape[0]))
    eps = jnp.concatenate([half, -half])
    theta = mu + SIGMA * eps
    fitness = jnp.mean(jnp.where(y * (theta[:, :-1] @ X.T + theta[:, -1:]) <= 0, 1.0, 0.0), axis=1)
    grad = centred_ranks(fitness) @ eps / (POPULATION * SIGMA)
    updates, opt = ES_OPT.update(grad, opt, mu)
    return (optax.apply_updates(mu, updates), opt), jnp.mean(fitness)


@partial(jax.jit, static_argnums=(4,))
def es_chunk(state, key, X, y, length):
    return jax.lax.scan(lambda s, k: es_step(s, k, X, y), state, jax.random.split(key, length))


# ---- lasso by hand (ISTA) ---------------------------------------------------------------------

LAM = 0.05


def lasso_step(w, X, y, t):
    """One ISTA step, and the smooth loss at w (the emitted step returns its losses too)."""
    r = X @ w - y
    z = w - t * (X.T @ r / X.shape[0])
    return jnp.sign(z) * jnp.maximum(jnp.abs(z) - t * LAM, 0.0), 0.5 * jnp.mean(r * r)


@partial(jax.jit, static_argnums=(4,))
def lasso_chunk(w, X, y, t, length):
    return jax.lax.scan(lambda w, _: lasso_step(w, X, y, t), w, None, length=length)


def run(rounds: int = 31) -> str:
    lines = ["## Emitted step vs the same step by hand in JAX (target ratio ≤ 1.05)", "",
             f"Jitted {CHUNK}-step chunks, alternating, {rounds} rounds after warm-up; full batch.", "",
             "| example | emitted ms/step | by hand ms/step | emitted / by hand |", "|---|---|---|---|"]
    key = jax.random.PRNGKey(3)

    mod, arrays, state = emitted("es_zero_one")
    X, y = arrays["x"], arrays["y"]
    mu = jnp.zeros(X.shape[1] + 1)
    hand = (mu, ES_OPT.init(mu))
    t = alternate({"emitted": lambda: block(mod.train_steps(state, key, arrays, CHUNK, None)),
                   "hand": lambda: block(es_chunk(hand, key, X, y, CHUNK))}, rounds=rounds, warmup=2)
    lines.append(f"| es_zero_one.att (population 64) | {1e3 * t['emitted'] / CHUNK:.4f} | "
                 f"{1e3 * t['hand'] / CHUNK:.4f} | {t['emitted'] / t['hand']:.3f} |")

    mod, arrays, state = emitted("lasso")
    X, y = arrays["x"], arrays["y"]
    step_size = state["opt"]["theta"].hyperparams["learning_rate"]
    w = jnp.zeros(X.shape[1])
    t = alternate({"emitted": lambda: block(mod.train_steps(state, key, arrays, CHUNK, None)),
                   "hand": lambda: block(lasso_chunk(w, X, y, step_size, CHUNK))}, rounds=rounds, warmup=2)
    lines.append(f"| lasso.att (proximal gradient, 1/L) | {1e3 * t['emitted'] / CHUNK:.4f} | "
                 f"{1e3 * t['hand'] / CHUNK:.4f} | {t['emitted'] / t['hand']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
