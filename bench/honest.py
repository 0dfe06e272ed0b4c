"""Honest numbers (issue 17): for every example and for programs written for this table, the
objective as written, the compiled (surrogate) objective, a reference value ("truth") computed
another way, and the run's verdict. No row may say converged while more than 1% off its truth.

The truth of a row is of the quantity named in its `of` column: the objective as written, or
the compiled surrogate where the written one has no tractable optimum (a norm0, a 0-1 loss).
Off: |value - truth| / max(|truth|, 1) (divergences whose truth is 0 are measured absolutely).
References: float64 least squares, L-BFGS (scipy), scikit-learn Lasso and SVC, projected gradient and ADMM, a brute
force over the grid for rounded weights, closed forms and quadrature for divergences.

Run as `python bench/honest.py [--quick]` (--quick skips gan_ring, vae, conv_vae, sbn, score_matching);
prints a Markdown section. `make bench` (bench/run.py) runs the full table through `run()`.
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from attractor import compile_file, compile_source  # noqa: E402
from compiler.driver.tails import judge  # noqa: E402

EXAMPLES = ROOT / "examples"
SLOW = ("gan_ring", "vae", "conv_vae", "sbn", "score_matching")


def arrays(prog):
    return {k: np.asarray(v, np.float64) for k, v in prog.load_data().items()}


def truth_least_squares(prog):
    d = arrays(prog)
    X = np.column_stack([d["x"], np.ones(len(d["y"]))])
    w = np.linalg.lstsq(X, d["y"], rcond=None)[0]
    return 0.5 * np.mean((X @ w - d["y"]) ** 2)


def truth_logistic(prog):
    from scipy.optimize import minimize
    d = arrays(prog)
    X, y = d["x"], d["y"]

    def f(theta):
        w, b = theta[:-1], theta[-1]
        return np.mean(np.logaddexp(0, -y * (X @ w + b))) + 0.5 * 0.01 * w @ w
    return minimize(f, np.zeros(X.shape[1] + 1), method="L-BFGS-B", options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-12}).fun


def truth_lasso_surrogate(prog, lam=0.05):
    """scikit-learn Lasso: (1/2n)|y - Xw|^2 + lam |w|_1, no intercept."""
    from sklearn.linear_model import Lasso
    d = arrays(prog)
    X, y = d["x"], d["y"]
    w = Lasso(alpha=lam, fit_intercept=False, tol=1e-12, max_iter=1000000).fit(X, y).coef_
    return 0.5 * np.mean((X @ w - y) ** 2) + lam * np.abs(w).sum()


def truth_svm_surrogate(prog):
    """scikit-learn SVC (libsvm, linear kernel, C = 1): 0.5 |w|^2 + sum hinge(1 - y (w.x + b))."""
    from sklearn.svm import SVC
    d = arrays(prog)
    X, y = d["x"], d["y"]
    svc = SVC(kernel="linear", C=1.0, tol=1e-10).fit(X, y)
    w, b = svc.coef_.ravel(), svc.intercept_[0]
    return 0.5 * w @ w + np.maximum(0, 1 - y * (X @ w + b)).sum()


def truth_constrained(prog):
    """min mean (Xw - y)^2 subject to |w|^2 <= 1 by projected gradient in float64."""
    d = arrays(prog)
    X, y = d["x"], d["y"]
    step = 0.5 * len(y) / np.linalg.norm(X, 2) ** 2
    w = np.zeros(X.shape[1])
    for _ in range(100000):
        w = w - step * 2 * X.T @ (X @ w - y) / len(y)
        w = w / max(1.0, np.linalg.norm(w))
    return np.mean((X @ w - y) ** 2)


def truth_fused(prog, lam=0.05):
    """min 0.5 mean (Xw - y)^2 + lam |diff w|_1 by ADMM in float64 (20000 iterations)."""
    d = arrays(prog)
    X, y = d["x"], d["y"]
    n, k = X.shape
    D = np.diff(np.eye(k), axis=0)
    rho = 1.0
    solve = np.linalg.inv(X.T @ X / n + rho * D.T @ D)
    z, u = np.zeros(k - 1), np.zeros(k - 1)
    for _ in range(20000):
        w = solve @ (X.T @ y / n + rho * D.T @ (z - u))
        v = D @ w + u
        z = np.sign(v) * np.maximum(np.abs(v) - lam / rho, 0)
        u = v - z
    return 0.5 * np.mean((X @ w - y) ** 2) + lam * np.abs(D @ w).sum()


def kl_normal(m1, s1, m2, s2):
    return math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5


# name -> (truth function or value, of: "as written" | "surrogate")
EXAMPLE_TRUTHS = {
    "least_squares": (truth_least_squares, "as written"),
    "logistic": (truth_logistic, "as written"),
    "lasso": (truth_lasso_surrogate, "surrogate"),
    "svm_hinge": (truth_svm_surrogate, "surrogate"),
    "constrained": (truth_constrained, "as written"),
    "fused_lasso": (truth_fused, "as written"),
    "dirac_gan": (0.0, "as written"),
    "hellinger_fit": (0.0, "as written"),
    "kl_estimate": (kl_normal(0, 1, 1, 1.5), "as written"),
}

NEYMAN = """data x : real from gaussian(mean=0, std=1, n=50000)
sampler g:
    eps ~ Normal(0, 1) : real
    x = 1.3 * eps
divergence neyman(u) = (1 - u)^2 / u
estimate neyman(data || g) via conjugate
train steps=3000, batch=512, optimizer=adam(lr=1e-3)
"""
NEYMAN_TRUTH = 1 / (1.3 * math.sqrt(2 - 1.3 ** 2)) - 1   # int q^2/p - 1 for p = N(0, 1), q = N(0, 1.3^2)

SPARSE_LOGISTIC = """data x : real[30], y : real from breast_cancer
param w : real[30]
param b : real
const lam = 0.01
minimize E[(x, y) ~ data] softplus(-y * (dot(w, x) + b)) + lam * norm1(w)
report nonzeros = sum([abs(w) > 1e-6])
"""

PORTFOLIO = """data r : real[5] from gaussian(mean=0.05, std=0.2, n=500, seed=3)
param w : real[5]
minimize E[r ~ data] (dot(w, r) - 0.05)^2
subject to sum(w) == 1
subject to w >= 0
"""

TV_DENOISE = """data x : real[40], y : real from piecewise_regression(n=400, d=40, segments=3, noise=0.2, seed=2)
param w : real[40]
minimize 0.5 * E[(x, y) ~ data] (dot(w, x) - y)^2 + 0.1 * norm1(diff(w)) via half_quadratic
"""

ROUNDED = """data x : real[4], y : real from npz("{path}")
param w : real[4]
minimize E[(x, y) ~ data] (dot(round(w / 0.5) * 0.5, x) - y)^2
"""


def truth_sparse_logistic(prog, lam=0.01):
    """min mean softplus(-y (Xw + b)) + lam |w|_1 by proximal gradient in float64, 200000 steps."""
    d = arrays(prog)
    X, y = d["x"], d["y"]
    A = np.column_stack([X, np.ones(len(y))])
    step = 4 * len(y) / np.linalg.norm(A, 2) ** 2
    theta = np.zeros(A.shape[1])
    for _ in range(200000):
        margin = y * (A @ theta)
        grad = A.T @ (-y / (1 + np.exp(margin))) / len(y)
        z = theta - step * grad
        theta = np.concatenate([np.sign(z[:-1]) * np.maximum(np.abs(z[:-1]) - step * lam, 0), z[-1:]])
    return np.mean(np.logaddexp(0, -y * (A @ theta))) + lam * np.abs(theta[:-1]).sum()


def truth_portfolio(prog):
    """Projected gradient onto the simplex in float64, 100000 steps."""
    r = arrays(prog)["r"]
    w = np.full(r.shape[1], 1 / r.shape[1])
    step = 0.5 * len(r) / np.linalg.norm(r, 2) ** 2
    for _ in range(100000):
        w = simplex(w - step * 2 * r.T @ (r @ w - 0.05) / len(r))
    return np.mean((r @ w - 0.05) ** 2)


def simplex(v):
    """Euclidean projection onto {w >= 0, sum w = 1}."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1
    k = np.nonzero(u - css / np.arange(1, len(v) + 1) > 0)[0][-1]
    return np.maximum(v - css[k] / (k + 1), 0)


def rounded_program(folder):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 4)) @ np.linalg.cholesky(0.85 * np.ones((4, 4)) + 0.15 * np.eye(4)).T
    y = x @ rng.uniform(-2, 2, 4) + 0.1 * rng.standard_normal(200)
    path = Path(folder) / "rounded.npz"
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.float32))
    grid = np.array(list(itertools.product(np.arange(-3, 3.01, 0.5), repeat=4)))
    return compile_source(ROUNDED.format(path=path)), float(np.min(np.mean((grid @ x.T - y) ** 2, axis=1)))


def run_program(prog):
    """(the run's summary judged against the program's truth, seconds) at the program's default steps."""
    mod, data = prog.build(), prog.load_data()
    started = time.perf_counter()
    params, history = mod.fit(data)
    result = mod.summary(params, data, history[-1]["step"], 0.0, history=history)
    return judge(prog, mod, params, data, result), time.perf_counter() - started


def row(name, prog, truth, of):
    result, seconds = run_program(prog)
    truth = truth(prog) if callable(truth) else truth
    value = result["as_written"] if of == "as written" else result["objective"]
    off = None if truth is None or value is None else abs(value - truth) / max(abs(truth), 1.0)
    bad = result["converged"] and off is not None and off > 0.01
    fmt = lambda v: "—" if v is None else f"{v:.6g}"
    reason = "; ".join(w.split(":")[0] for w in result["warnings"])[:90]
    return (f"| {name} | {fmt(result['as_written'])} | {fmt(result['objective'])} | {fmt(truth)} ({of}) | "
            f"{'—' if off is None else f'{off:.2%}'} | {result['converged']}{' **VIOLATION**' if bad else ''} | "
            f"{result['steps']} | {seconds:.1f} | {reason} |"), bad


def table(quick=False) -> str:
    """The Markdown table "as written / surrogate / truth / converged" of every example (without
    SLOW ones when `quick`) and of the programs written for it; each row is also printed on stderr."""
    lines = ["## Honest numbers (issue 17): as written / surrogate / truth / converged", "",
             "Default steps of each program; off = |value - truth| / max(|truth|, 1) on the column the truth is of.", "",
             "| program | as written | surrogate | truth (of) | off | converged | steps | s | warnings |",
             "|---|---|---|---|---|---|---|---|---|"]
    violations = 0
    for path in sorted(EXAMPLES.glob("*.att")):
        if quick and path.stem in SLOW:
            continue
        truth, of = EXAMPLE_TRUTHS.get(path.stem, (None, "as written"))
        text, bad = row(path.name, compile_file(path), truth, of)
        lines.append(text)
        violations += bad
        print(text, file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        rounded, grid_best = rounded_program(folder)
        written = [("sparse logistic (norm1)", compile_source(SPARSE_LOGISTIC), truth_sparse_logistic, "as written"),
                   ("portfolio (==, >=)", compile_source(PORTFOLIO), truth_portfolio, "as written"),
                   ("TV denoising (half_quadratic)", compile_source(TV_DENOISE), truth_fused_tv, "as written"),
                   ("Neyman chi2, heavy-tailed ratio", compile_source(NEYMAN), NEYMAN_TRUTH, "as written"),
                   ("least squares on a 0.5 grid (ES)", rounded, grid_best, "as written")]
        for name, prog, truth, of in written:
            text, bad = row(name, prog, truth, of)
            lines.append(text)
            violations += bad
            print(text, file=sys.stderr)
    lines += ["", f"Rows that say converged while more than 1% off the truth: {violations}."]
    return "\n".join(lines)


def run() -> str:
    """The section of `make bench` (bench/run.py): the full table."""
    return table()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(table(args.quick))


def truth_fused_tv(prog):
    return truth_fused(prog, lam=0.1)


if __name__ == "__main__":
    main()
