"""es_zero_one.att against evosax's OpenAI-ES at the same budget: population 64, 300
generations, sigma 0.1, Adam(0.05) on the mean, centred ranks, antithetic pairs; the 0-1
loss of a linear classifier on breast_cancer. Reports final training 0-1 error (median over
seeds) and time per generation (median of alternating rounds), and their ratios.

Run: `.venv/bin/python bench/evolution_es.py` (needs `pip install -e .[bench]` for evosax).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import alternate, block  # noqa: E402

from attractor import compile_file  # noqa: E402

ROOT = HERE.parent
GENERATIONS, POPULATION, SIGMA, LR, SEEDS = 300, 64, 0.1, 0.05, (0, 1, 2, 3, 4)


def ours():
    prog = compile_file(ROOT / "examples" / "es_zero_one.att")
    mod, data = prog.build(), prog.load_data()

    def train(seed, chunk=GENERATIONS):
        params, _ = mod.fit(data, steps=GENERATIONS, seed=seed, chunk=chunk)
        return block(params)

    def error(params):
        return mod.reports(params, jax.random.PRNGKey(0), data)["error"]
    return train, error, data


def evosax_openes(data):
    from evosax.algorithms import Open_ES
    X, y = jnp.asarray(data["x"], jnp.float32), jnp.asarray(data["y"], jnp.float32)

    def zero_one(theta):
        return jnp.mean(jnp.where(y * (X @ theta[:-1] + theta[-1]) <= 0, 1.0, 0.0))

    es = Open_ES(POPULATION, jnp.zeros(X.shape[1] + 1), use_antithetic_sampling=True,
                 optimizer=optax.adam(LR), std_schedule=optax.constant_schedule(SIGMA))
    params = es.default_params

    @jax.jit
    def run(key):
        key, k0 = jax.random.split(key)
        state = es.init(k0, jnp.zeros(X.shape[1] + 1), params)

        def generation(state, key):
            k_ask, k_tell = jax.random.split(key)
            population, state = es.ask(k_ask, state, params)
            fitness = jax.vmap(zero_one)(population)
            state, _ = es.tell(k_tell, population, fitness, state, params)
            return state, None
        state, _ = jax.lax.scan(generation, state, jax.random.split(key, GENERATIONS))
        return es.get_mean(state)

    def train(seed):
        return block(run(jax.random.PRNGKey(seed)))
    return train, lambda theta: float(zero_one(theta))


def run() -> str:
    train, error, data = ours()
    try:
        train_ref, error_ref = evosax_openes(data)
    except ImportError as e:
        return f"## es_zero_one vs evosax OpenES\n\nevosax is not installed ({e}); `pip install -e .[bench]`.\n"
    errors = [error(train(s)) for s in SEEDS]
    errors_ref = [error_ref(train_ref(s)) for s in SEEDS]
    times = alternate({"attractor": lambda: train(0), "evosax": lambda: train_ref(0)}, rounds=7)
    per_step_default = alternate({"attractor (fit default chunks)": lambda: train(0, None)}, rounds=3)
    e, er = statistics.median(errors), statistics.median(errors_ref)
    t, tr = times["attractor"] / GENERATIONS, times["evosax"] / GENERATIONS
    rows = [
        "## es_zero_one.att vs evosax OpenES (population 64, 300 generations, sigma 0.1, Adam 0.05)",
        "",
        "| | final training 0-1 error (median of 5 seeds) | ms per generation (median) |",
        "|---|---|---|",
        f"| attractor (emitted, one call of 300 steps) | {e:.4f} ({', '.join(f'{v:.4f}' for v in errors)}) | {t * 1e3:.3f} |",
        f"| evosax Open_ES | {er:.4f} ({', '.join(f'{v:.4f}' for v in errors_ref)}) | {tr * 1e3:.3f} |",
        f"| ratio attractor / evosax | {e / er if er else float('nan'):.3f} | {t / tr:.3f} |",
        "",
        f"With `fit`'s default calls (as many steps as take about 0.25 s, starting from one): "
        f"{per_step_default['attractor (fit default chunks)'] / GENERATIONS * 1e3:.3f} ms per generation.",
    ]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(run())
