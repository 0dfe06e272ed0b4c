"""Issue 20: a two-component Gaussian mixture by enumeration (rule `enumerate`): the exact negative
log-likelihood it reaches against scikit-learn's GaussianMixture (EM) on the same data.

    .venv/bin/python bench/enumeration.py
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
from sklearn.mixture import GaussianMixture

from attractor import compile_source

PROGRAM = """
data x : real from npz("{path}")
param m : real[2] = [-1, 1]
param ls : real[2]
param a : real
model q:
    z ~ Bernoulli(logits=a)
    x ~ Normal(m[0] + z * (m[1] - m[0]), exp(ls[0] + z * (ls[1] - ls[0])))
minimize E[x ~ data] -log q(x)
train steps=4000, optimizer=adam(lr=2e-2)
"""


def mixture(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.3
    return np.where(z, rng.normal(2.0, 0.5, n), rng.normal(-1.0, 1.0, n)).astype(np.float32)


def main() -> dict:
    x = mixture()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mix.npz")
        np.savez(path, x=x)
        prog = compile_source(PROGRAM.format(path=path))
        assert prog.derivation.steps[0].rule == "enumerate", prog.derivation
        mod, data = prog.build(), prog.load_data()
        params, _ = mod.fit(data, steps=4000, seed=0)
        ours = float(mod.LOSSES["theta"](params, None, mod.full_batch(data)))
    em = GaussianMixture(2, tol=1e-10, max_iter=2000, random_state=0).fit(x[:, None])
    theirs = -float(em.score(x[:, None]))
    out = {"attractor_nll": ours, "sklearn_nll": theirs, "relative_gap": abs(ours - theirs) / abs(theirs)}
    print(out)
    return out


if __name__ == "__main__":
    main()
