"""Gradient estimators side by side (issue 20): the variance of the guide's gradient (trace of
its covariance over independent draws on one fixed minibatch) and the jitted cost of one
gradient, for

* sbn.att (16 Bernoulli latents): the score function with and without Rao-Blackwellisation,
  on the program as compiled (closed-form KL, score function on the likelihood term) and on the
  Monte Carlo ELBO (analytic_kl off, every log-density term inside the expectation);
* a linear-Gaussian model: the importance-weighted bound (K = 5) with and without DReG, and the
  ELBO (written out: E_q[log q - log p(x, z)]) with and without sticking the landing.

Both at the initial parameters and, for the linear-Gaussian model, with the guide halfway to
and at the exact posterior (where STL and DReG have zero variance; a trained guide approaches it).

    python bench/estimators.py [--draws 256] [--repeats 50]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import passes  # noqa: E402
from compiler.driver.api import compile_source  # noqa: E402

LINEAR = """data x : real from gaussian(mean=1, std=2, n=200)
param w : real = 0.8
param b : real = 0.3
param a : real
param c : real
param s : real
model p:
    z ~ Normal(0, 1)
    x ~ Normal(w * z + b, 1)
guide q(z | x):
    z ~ Normal(a * x + c, softplus(s))
minimize {objective}
"""
ELBO = "E[x ~ data] E[z ~ q(z | x)] (log q(z | x) - log p(x, z))"
MARGINAL = "E[x ~ data] -log p(x)"


@contextlib.contextmanager
def without(pass_name: str):
    """Compile with one pass of the pipeline left out (the Monte Carlo ELBO: analytic_kl off)."""
    kept = passes.PIPELINE
    passes.PIPELINE = tuple(p for p in kept if p.name != pass_name)
    try:
        yield
    finally:
        passes.PIPELINE = kept


def measure(prog, params, batch, guide: tuple[str, ...], draws: int, repeats: int) -> tuple[float, float]:
    """(trace of the covariance of the guide's gradient over `draws` keys, ms per jitted gradient)."""
    mod = prog.build()
    loss = mod.LOSSES["theta"]
    grad = jax.jit(jax.grad(loss))
    many = jax.jit(jax.vmap(lambda key: jax.grad(loss)(params, key, batch)))
    g = many(jax.random.split(jax.random.PRNGKey(0), draws))
    flat = np.concatenate([np.asarray(leaf, np.float64).reshape(draws, -1)
                           for name in guide for leaf in jax.tree_util.tree_leaves(g[name])], axis=1)
    variance = float(flat.var(axis=0, ddof=1).sum())
    key = jax.random.PRNGKey(1)
    jax.block_until_ready(grad(params, key, batch))
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(grad(params, jax.random.fold_in(key, i), batch))
        times.append(time.perf_counter() - start)
    return variance, 1e3 * float(np.median(times))


def posterior_guide(w: float, b: float) -> dict:
    prec = w * w + 1
    return {"a": w / prec, "c": -w * b / prec, "s": float(np.log(np.expm1(np.sqrt(1 / prec))))}


def main(argv=None) -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--draws", type=int, default=256)
    args.add_argument("--repeats", type=int, default=50)
    opts = args.parse_args(argv)
    rows = []

    sbn = (ROOT / "examples" / "sbn.att").read_text()
    for label, context in (("sbn.att as compiled (closed-form KL)", contextlib.nullcontext),
                           ("sbn.att, Monte Carlo ELBO (analytic_kl off)", lambda: without("analytic_kl"))):
        with context():
            plain = compile_source(sbn, via="score_function")
            blackwell = compile_source(sbn, via="score_function(rao_blackwell)")
        mod = plain.build()
        params = mod.init(jax.random.PRNGKey(0))
        data = plain.load_data()
        batch = mod.full_batch({"x": np.asarray(data["x"])[:128]})
        for name, prog in (("score function", plain), ("score function, Rao-Blackwellised", blackwell)):
            rows.append((label, "initial", name, *measure(prog, params, batch, ("enc",), opts.draws, opts.repeats)))

    x = compile_source(LINEAR.format(objective=MARGINAL), via="jensen").load_data()["x"]
    pairs = ((MARGINAL, "jensen(iwae=5)", "jensen(iwae=5, dreg)", "IWAE K = 5", "DReG"),
             (ELBO, "reparameterize", "reparameterize(stl)", "ELBO (Monte Carlo KL)", "STL"))
    for objective, base, better, what, how in pairs:
        with without("analytic_kl"):
            progs = [(what, compile_source(LINEAR.format(objective=objective), via=base)),
                     (f"{what}, {how}", compile_source(LINEAR.format(objective=objective), via=better))]
        mod = progs[0][1].build()
        batch = mod.full_batch({"x": np.asarray(x)})
        init = mod.init(jax.random.PRNGKey(0))
        at_posterior = {**init, **{k: jnp.asarray(v, jnp.float32) for k, v in posterior_guide(0.8, 0.3).items()}}
        halfway = {k: (init[k] + at_posterior[k]) / 2 for k in init}
        for where, params in (("initial", init), ("guide halfway to the posterior", halfway),
                              ("guide = posterior", at_posterior)):
            for name, prog in progs:
                rows.append(("linear Gaussian (200 points)", where, name,
                             *measure(prog, params, batch, ("a", "c", "s"), opts.draws, opts.repeats)))

    print("| program | parameters | estimator | guide grad variance (trace) | ms / gradient |")
    print("|---|---|---|---|---|")
    for program, where, name, variance, ms in rows:
        print(f"| {program} | {where} | {name} | {variance:.4g} | {ms:.3f} |")


if __name__ == "__main__":
    main()
