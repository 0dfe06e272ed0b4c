"""Heavy tails of a divergence estimated from samples (issue 17, SPEC section 9.2): `check` and
`run` flag an estimator whose variance is not finite.

D_f(P || Q) = E_Q f(r) with r = p/q is estimated from samples as E_P[T] - E_Q[f*(T)] with a
critic T; at the optimal critic T* = f'(r) its summands are f'(r(x)) for x ~ P and
f*(f'(r(y))) = r f'(r) - f(r) for y ~ Q. Where the ratio is heavy-tailed under the side it is
averaged over, these have infinite variance: the estimate has no standard error, and a critic
that cannot follow the ratio into the tails makes it low (Neyman's chi^2, f(u) = (1 - u)^2 / u,
between N(0, 1) data and N(0, 1.3^2) samples: the truth 0.3816, the trained estimate 25% low).

The ratio is not known, so it is fitted: log r(x) = a + b.x + x'Cx by logistic regression of P's
samples against Q's (equal numbers: the logit is log p/q; exact for two Gaussians, and with
the Gaussian-like tails of the samples otherwise). On its summands at the samples:

- the tail index xi of |s| by Hill's estimator on the top TAIL_FRACTION of each side
  (P(|s| > t) ~ t^(-1/xi)): xi > 1/2 means E s^2 = infinity, so the variance is not finite;
- the effective sample size of the importance weights between the sides (w = r on Q's samples,
  1/r on P's): ESS = (sum w)^2 / sum w^2, reported as ESS/n (small: a few samples dominate).

A side is drawn as the data (rows without replacement) or, for a model or a sampler, by
ancestral sampling at the parameters judged (what `attractor sample --of NAME` draws); a side
that cannot be drawn so (a block drawn given data) leaves the diagnosis unmade, and says so.
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp

from compiler import ir
from compiler.math.convex import U

RATIO_RULES = ("conjugate", "classifier_ratio")
SAMPLES = 20000          # draws of each side
TAIL_FRACTION = 0.01     # Hill's estimator uses the top 1% of each side's summands
INFINITE_VARIANCE = 0.5  # a tail index above this: no finite second moment


def hill(values: np.ndarray, fraction: float = TAIL_FRACTION) -> float:
    """Hill's estimate of the tail index xi of |values| from its top `fraction`."""
    a = np.sort(np.abs(values))[::-1]
    k = max(10, int(fraction * len(a)))
    if len(a) <= k:
        return math.nan   # too few finite values to read a tail
    if a[k] <= 0:
        return 0.0
    return float(np.mean(np.log(a[:k] / a[k])))


def effective_fraction(weights: np.ndarray) -> float:
    """ESS / n = (sum w)^2 / (n sum w^2) of importance weights."""
    return float(np.sum(weights) ** 2 / (len(weights) * np.sum(weights ** 2)))


def _features(x: np.ndarray) -> np.ndarray:
    """1, x_i and x_i x_j (i <= j), standardised columns after the first."""
    x = x.reshape(len(x), -1)
    d = x.shape[1]
    cross = [x[:, i] * x[:, j] for i in range(d) for j in range(i, d)]
    return np.column_stack([np.ones(len(x)), x] + cross)


def log_ratio(p: np.ndarray, q: np.ndarray, iterations: int = 50):
    """log p/q as a quadratic in x fitted by logistic regression (Newton's method, float64, a
    1e-6 ridge) of P's samples (label 1) against as many of Q's (label 0)."""
    fp, fq = _features(p.astype(np.float64)), _features(q.astype(np.float64))
    scale = np.maximum(np.concatenate([fp, fq]).std(0), 1e-12)
    scale[0] = 1.0
    z = np.concatenate([fp, fq]) / scale
    label = np.concatenate([np.ones(len(fp)), np.zeros(len(fq))])
    beta = np.zeros(z.shape[1])
    for _ in range(iterations):
        prob = 1 / (1 + np.exp(-np.clip(z @ beta, -700, 700)))
        hessian = (z * (prob * (1 - prob))[:, None]).T @ z + 1e-6 * np.eye(len(beta))
        move = np.linalg.solve(hessian, z.T @ (prob - label) + 1e-6 * beta)
        beta -= move
        if np.max(np.abs(move)) < 1e-10:
            break
    return lambda x: _features(x.astype(np.float64)) / scale @ beta


def ratio_step(prog):
    """The derivation's first step that estimates a divergence by a critic, or None."""
    return next((s for s in prog.derivation.steps if s.rule in RATIO_RULES), None)


def side_draws(prog, side: ir.Node, params, data, n: int, seed: int) -> np.ndarray | None:
    """Up to n draws of one side of a divergence at `params`: rows of the data (without
    replacement), or ancestral draws of a model or a sampler of the program (the emitted module's
    `draw`, what `attractor sample --of NAME` writes); None for a side that cannot be drawn here
    (a distribution written inline, a block drawn given data)."""
    import jax
    if isinstance(side, ir.DataSet):
        rows = np.asarray(data[prog.build().DATA_VARS[0]])
        return rows[np.random.default_rng(seed).choice(len(rows), min(n, len(rows)), replace=False)]
    blocks = {b.name for b in prog.program.of_type(ir.Block) if b.kind in ("model", "sampler")}
    if not (isinstance(side, ir.Ref) and side.name in blocks):
        return None
    drawing = prog.build(draws_of=side.name)
    if drawing.DRAW_GIVEN:
        return None
    draws = [np.asarray(a) for a in drawing.draw(params, jax.random.PRNGKey(seed), n, {})]
    return draws[0] if len(draws) == 1 else np.concatenate([a.reshape(len(a), -1) for a in draws], axis=1)


def diagnose(prog, mod, params, data, seed: int = 0) -> tuple[bool | None, str]:
    """(finite variance?, what was measured), None where it could not be measured, for the
    divergence the program estimates by a critic at `params`."""
    step = ratio_step(prog)
    if step is None or not isinstance(step.matched, ir.Divergence):
        return None, "no divergence is estimated from samples"
    div = step.matched
    p, q = (side_draws(prog, side, params, data, SAMPLES, seed + i) for i, side in enumerate((div.p, div.q)))
    if p is None or q is None:
        return None, ("not measured: a side of the divergence is neither the data nor a model or sampler "
                      "that can be drawn without data")
    conjugate = step.fact("conjugate") if step.rule == "conjugate" else None
    f = conjugate.f if conjugate is not None else named_js()
    fn = sp.lambdify(U, f, "numpy")
    dfn = sp.lambdify(U, sp.diff(f, U), "numpy")
    lr = log_ratio(p, q)
    r_p, r_q = np.exp(np.clip(lr(p), -700, 700)), np.exp(np.clip(lr(q), -700, 700))
    with np.errstate(all="ignore"):
        on_p = dfn(r_p) + 0 * r_p
        on_q = r_q * dfn(r_q) - fn(r_q) + 0 * r_q
    xi_p, xi_q = hill(on_p[np.isfinite(on_p)]), hill(on_q[np.isfinite(on_q)])
    if math.isnan(xi_p) or math.isnan(xi_q):
        return None, "not measured: the fitted density ratio is infinite at most samples (the sides barely overlap)"
    ess_p, ess_q = effective_fraction(1 / r_p), effective_fraction(r_q)
    finite = max(xi_p, xi_q) <= INFINITE_VARIANCE
    text = (f"summands of the estimator at a fitted quadratic log-ratio: tail index (Hill, top {TAIL_FRACTION:.0%}) "
            f"{xi_p:.2f} on P's samples, {xi_q:.2f} on Q's (above {INFINITE_VARIANCE}: infinite variance); "
            f"effective sample size of the ratio weights {ess_p:.3f} n on P, {ess_q:.3f} n on Q")
    return finite, text


def named_js():
    """The generator of JS (classifier_ratio estimates it): f(u) = u log u - (u + 1) log((u + 1)/2), halved."""
    return (U * sp.log(U) - (U + 1) * sp.log((U + 1) / 2)) / 2


def warnings(prog, mod, params, data, seed: int = 0) -> list[str]:
    """The run's warning where the estimator's variance is not finite."""
    finite, text = diagnose(prog, mod, params, data, seed)
    if finite is False:
        return [f"the divergence estimate has infinite variance (heavy-tailed density ratio): {text}; "
                "its standard error means nothing and a critic cannot follow the ratio into the tails, "
                "so the estimate is likely low"]
    return []


def judge(prog, mod, params, data, result: dict, seed: int = 0) -> dict:
    """A run's summary with the heavy-tail warning added (and `converged` false) where the
    estimator's variance is not finite."""
    found = warnings(prog, mod, params, data, seed)
    if not found:
        return result
    return {**result, "converged": False, "warnings": list(result["warnings"]) + found}
