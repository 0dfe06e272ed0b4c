"""Constraints and splitting against CVXPY: constrained.att (least squares on the unit ball,
by the augmented-Lagrangian game) and fused_lasso.att (total-variation regression, by
half-quadratic splitting), each against CVXPY's optimum of the same problem on the same data,
and against the exact solvers of the tests (bisection on the multiplier; a KKT-certified
lasso reformulation).

Run: `.venv/bin/python bench/constraints_cvxpy.py` (CVXPY comes with `pip install -e .[bench]`).
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

from test_splitting import exact_fused_lasso  # noqa: E402

from attractor import compile_file  # noqa: E402
from passes.lagrangian.certificates import exact_ball_least_squares  # noqa: E402


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


def _cvxpy(build):
    """(value, variable value, seconds, solver) of the CVXPY problem `build(cp)` returns."""
    import cvxpy as cp
    problem, variable = build(cp)
    started = time.perf_counter()
    problem.solve()
    return problem.value, variable.value, time.perf_counter() - started, problem.solver_stats.solver_name


def constrained() -> list[str]:
    mod, data, params, X, y, seconds = _trained("constrained")
    f = lambda w: np.mean((X @ w - y) ** 2)  # noqa: E731
    w = np.asarray(params["w"], np.float64)
    reports = mod.reports(params, jax.random.PRNGKey(0), data)
    exact, mu = exact_ball_least_squares(X, y, 1.0)
    rows = ["## constrained.att vs CVXPY: min E(dot(w, x) - y)^2 subject to sumsq(w) <= 1", "",
            "| | objective | sumsq(w) - 1 | multiplier | seconds |", "|---|---|---|---|---|",
            f"| attractor ({mod.STEPS} steps of simultaneous Adam descent-ascent on the augmented Lagrangian) | "
            f"{f(w):.8f} | {w @ w - 1:.1e} | {reports['lambda_1']:.6f} | {seconds:.3f} |",
            f"| bisection on the multiplier (exact) | {exact:.8f} | 0 | {mu:.6f} | |"]
    try:
        value, wv, cv_seconds, solver = _cvxpy(lambda cp: _ball(cp, X, y))
        rows.append(f"| CVXPY ({solver}) | {value:.8f} | {wv @ wv - 1:.1e} | | {cv_seconds:.3f} |")
        reference = value
    except ImportError:
        rows.append("| CVXPY | not installed | | | |")
        reference = exact
    rows += ["", f"Relative gap to CVXPY: {(f(w) - reference) / reference:.2e}; to the exact optimum "
             f"{(f(w) - exact) / exact:.2e}; largest violation reported: {reports['violation']:.1e}.", ""]
    return rows


def _ball(cp, X, y):
    w = cp.Variable(X.shape[1])
    return cp.Problem(cp.Minimize(cp.sum_squares(X @ w - y) / len(y)), [cp.sum_squares(w) <= 1]), w


def _fused(cp, X, y, lam):
    w = cp.Variable(X.shape[1])
    return cp.Problem(cp.Minimize(0.5 * cp.sum_squares(X @ w - y) / len(y) + lam * cp.norm1(cp.diff(w)))), w


def fused_lasso() -> list[str]:
    mod, data, params, X, y, seconds = _trained("fused_lasso")
    lam = 0.05
    F = lambda w: 0.5 * np.mean((X @ w - y) ** 2) + lam * np.abs(np.diff(w)).sum()  # noqa: E731
    w = np.asarray(params["w"], np.float64)
    exact, w_star = exact_fused_lasso(X, y, lam)
    split = mod.objective(params, jax.random.PRNGKey(0), data)
    rows = ["## fused_lasso.att vs CVXPY: min 0.5 E(dot(w, x) - y)^2 + 0.05 norm1(diff(w))", "",
            "| | objective | jumps (abs(diff(w)) > 1e-6) | seconds |", "|---|---|---|---|",
            f"| attractor ({mod.STEPS} steps: Adam x-steps, exact soft-thresholding z-steps, beta 1 -> 1e4) | "
            f"{F(w):.8f} (split objective {split:.8f}) | {np.count_nonzero(np.asarray(params['z']))} (of z) | {seconds:.3f} |",
            f"| lasso reformulation, FISTA + exact polish, KKT-certified | {exact:.8f} | "
            f"{np.count_nonzero(np.abs(np.diff(w_star)) > 1e-6)} | |"]
    try:
        value, wv, cv_seconds, solver = _cvxpy(lambda cp: _fused(cp, X, y, lam))
        rows.append(f"| CVXPY ({solver}) | {value:.8f} | {np.count_nonzero(np.abs(np.diff(wv)) > 1e-6)} | {cv_seconds:.3f} |")
        reference = value
    except ImportError:
        rows.append("| CVXPY | not installed | | |")
        reference = exact
    rows += ["", f"Relative gap to CVXPY: {(F(w) - reference) / reference:.2e}; to the exact optimum {(F(w) - exact) / exact:.2e}.", ""]
    return rows


def run() -> str:
    return "\n".join(constrained() + fused_lasso())


if __name__ == "__main__":
    print(run())
