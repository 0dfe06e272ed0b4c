"""Exact routes against the game they replace (issue 20, SPEC 9.3), side by side in one process.

`minimize KL(data || q)` with q an explicit Normal (data: mean 2, sd 0.5, 2000 points) compiles to
maximum likelihood (one player, relation =+c); `via conjugate` forces the critic game it replaced.
`minimize KL(q || p)` between two explicit Normals compiles to the SymPy closed form; `via
conjugate` forces a critic game on q's samples against p. Each runs the same 1500 Adam steps
(lr 1e-2) from the same start; the table gives the fitted mean and sd against the target (the
sample's maximum-likelihood estimate; the truth (1, 2)), and the median ms per step of `fit`
over alternating rounds (compilation excluded: a first call).

Run: `python bench/exact_routes.py [--rounds 5]`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attractor import compile_source  # noqa: E402

STEPS = 1500
MLE = """data x : real from gaussian(mean=2, std=0.5, n=2000)
param mu : real
param ls : real
model q:
    x ~ Normal(mu, exp(ls))
minimize KL(data || q){via}
train steps=1500, batch=256, optimizer=adam(lr=1e-2)
"""
TWO_NORMALS = """data x : real from gaussian(mean=0, std=1, n=100)
param mu : real
param ls : real
model q:
    x ~ Normal(mu, exp(ls))
model p:
    x ~ Normal(1, 2)
minimize KL(q || p){via}
train steps=1500, batch=256, optimizer=adam(lr=1e-2)
"""


def contenders():
    """(problem, route, compiled program, target (mean, sd))."""
    mle = compile_source(MLE.format(via=""))
    x = np.asarray(mle.load_data()["x"], np.float64)
    sample = (float(x.mean()), float(x.std()))
    return [("KL(data || q)", "exact: " + mle.derivation.steps[0].rule, mle, sample),
            ("KL(data || q)", "game: conjugate", compile_source(MLE.format(via=" via conjugate")), sample),
            ("KL(q || p)", "exact: " + compile_source(TWO_NORMALS.format(via="")).derivation.steps[0].rule,
             compile_source(TWO_NORMALS.format(via="")), (1.0, 2.0)),
            ("KL(q || p)", "game: conjugate", compile_source(TWO_NORMALS.format(via=" via conjugate")), (1.0, 2.0))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rows = [(problem, route, prog, target, prog.build(), prog.load_data()) for problem, route, prog, target in contenders()]
    for *_, mod, data in rows:
        jax.block_until_ready(mod.fit(data, steps=STEPS, seed=0, chunk=STEPS)[0])   # compile
    times = {i: [] for i in range(len(rows))}
    fitted = {}
    for _ in range(args.rounds):
        for i, (*_, mod, data) in enumerate(rows):
            start = time.perf_counter()
            params, _ = mod.fit(data, steps=STEPS, seed=0, chunk=STEPS)
            jax.block_until_ready(params)
            times[i].append(time.perf_counter() - start)
            fitted[i] = (float(params["mu"]), float(np.exp(params["ls"])))
    print(f"| problem | route | players | mean, sd after {STEPS} steps | target | largest error | ms / step (median) |")
    print("|---|---|---|---|---|---|---|")
    for i, (problem, route, prog, target, _, _) in enumerate(rows):
        error = max(abs(a - b) for a, b in zip(fitted[i], target))
        print(f"| {problem} | {route} | {len(prog.program.players)} | {fitted[i][0]:.4f}, {fitted[i][1]:.4f} | "
              f"{target[0]:.4f}, {target[1]:.4f} | {error:.4f} | {1e3 * statistics.median(times[i]) / STEPS:.4f} |")


if __name__ == "__main__":
    main()
