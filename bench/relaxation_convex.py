"""The convex relaxations against exact solvers: lasso.att against scikit-learn's Lasso on
the same data ((1/2n)‖Xw − y‖² + lam‖w‖₁, same support), svm_hinge.att against the exact
primal optimum (CVXPY when installed, and an SMO dual solver whose duality gap certifies it).

Run: `.venv/bin/python bench/relaxation_convex.py` (CVXPY comes with `pip install -e .[bench]`).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_relaxation import exact_svm  # noqa: E402

from attractor import compile_file  # noqa: E402


def _trained(name):
    prog = compile_file(ROOT / "examples" / f"{name}.att")
    mod, data = prog.build(), prog.load_data()
    mod.fit(data, steps=2, seed=0)                                  # compile
    started = time.perf_counter()
    params, _ = mod.fit(data, steps=mod.STEPS, seed=0, chunk=mod.STEPS)
    jax.block_until_ready(params)
    seconds = time.perf_counter() - started
    X, y = np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64)
    return mod, data, params, X, y, seconds


def lasso() -> list[str]:
    from sklearn.linear_model import Lasso
    mod, data, params, X, y, seconds = _trained("lasso")
    lam = 0.05
    objective = lambda w: 0.5 * np.mean((X @ w - y) ** 2) + lam * np.abs(w).sum()  # noqa: E731
    started = time.perf_counter()
    reference = Lasso(alpha=lam, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(X, y).coef_
    sk_seconds = time.perf_counter() - started
    w = np.asarray(params["w"], np.float64)
    gap = (objective(w) - objective(reference)) / objective(reference)
    same = set(np.flatnonzero(w)) == set(np.flatnonzero(reference))
    return ["## lasso.att vs scikit-learn Lasso(alpha=0.05, fit_intercept=False, tol=1e-12)", "",
            "| | objective | nonzeros | seconds |", "|---|---|---|---|",
            f"| attractor ({mod.STEPS} proximal gradient steps, step 1/L) | {objective(w):.10f} | {np.count_nonzero(w)} | {seconds:.3f} |",
            f"| scikit-learn | {objective(reference):.10f} | {np.count_nonzero(reference)} | {sk_seconds:.3f} |", "",
            f"Relative objective gap {gap:.2e}; same support: {same} ({sorted(np.flatnonzero(w).tolist())}).", ""]


def svm() -> list[str]:
    mod, data, params, X, y, seconds = _trained("svm_hinge")
    C = 1.0
    primal = lambda w, b: 0.5 * w @ w + C * np.maximum(0, 1 - y * (X @ w + b)).sum()  # noqa: E731
    w, b = np.asarray(params["w"], np.float64), float(params["b"])
    ours = primal(w, b)
    started = time.perf_counter()
    best, dual = exact_svm(X, y, C)
    smo_seconds = time.perf_counter() - started
    rows = ["## svm_hinge.att vs the exact primal optimum (C = 1)", "",
            "| | primal objective | training 0-1 error | seconds |", "|---|---|---|---|",
            f"| attractor ({mod.STEPS} full-batch Adam steps, cosine decay) | {ours:.6f} | "
            f"{mod.reports(params, jax.random.PRNGKey(0), data)['error']:.4f} | {seconds:.3f} |",
            f"| SMO on the dual (duality gap {best - dual:.1e}) | {best:.6f} | | {smo_seconds:.3f} |"]
    try:
        import cvxpy as cp
        wv, bv = cp.Variable(X.shape[1]), cp.Variable()
        problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(wv) + C * cp.sum(cp.pos(1 - cp.multiply(y, X @ wv + bv)))))
        started = time.perf_counter()
        problem.solve()
        rows.append(f"| CVXPY ({problem.solver_stats.solver_name}) | {problem.value:.6f} | "
                    f"{np.mean(y * (X @ wv.value + bv.value) <= 0):.4f} | {time.perf_counter() - started:.3f} |")
        exact = min(best, problem.value)
    except ImportError:
        rows.append("| CVXPY | not installed | | |")
        exact = best
    rows += ["", f"Relative gap to the exact optimum: {(ours - exact) / exact:.2e}.", ""]
    return rows


def run() -> str:
    return "\n".join(lasso() + svm())


if __name__ == "__main__":
    print(run())
