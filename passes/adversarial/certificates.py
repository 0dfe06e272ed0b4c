"""Numerical certificates of the adversarial rules, for `attractor check`: random Gaussian
instances, integrals by the trapezoidal rule on a fine grid.

* classifier_ratio, conjugate: the rewritten objective is at most the divergence for random
  bounded critic outputs (and perturbations of the optimal one), and equals it at the optimal
  critic; with `nonsaturating`, the generator's gradient at the optimal critic vanishes at
  Q = P and points Q towards P elsewhere.
* denoising_score: the rewritten objective differs from Fisher(data‖p) (Hyvärinen) or from
  Fisher(data ∗ N(0, σ²)‖p) (denoising) by one constant, the same for every model, and that
  constant is the one the derivation names.

Each certificate reads the matched divergence (`step.matched`) and what the rule established
(`step.facts`: the derived conjugate, whether the generator's loss is nonsaturating, the form
and noise scale of score matching).
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp

from compiler.math.convex import T as TSYM
from compiler.math.convex import U, V
from compiler.rewrite.certificate import Certificate

_X = np.linspace(-16.0, 16.0, 64001)
_PAIRS = 3
_CRITICS = 24
_V_MAX = 700.0   # an infinite optimal critic output (where p or q underflows) is put here


def _pdf(m: float, s: float) -> np.ndarray:
    return np.exp(-0.5 * ((_X - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))


def _integral(y: np.ndarray) -> float:
    return float(np.trapezoid(y, _X))


def _gaussian_pairs(rng: np.random.Generator):
    """P = N(m_p, s_p²), Q = N(m_q, s_q²) with s_q > s_p, so every f-divergence is finite."""
    for _ in range(_PAIRS):
        m_p, m_q = rng.uniform(-1.0, 1.0, 2)
        s_p = rng.uniform(0.6, 1.2)
        yield (m_p, s_p), (m_q, s_p * rng.uniform(1.1, 1.6))


def _random_logits(rng: np.random.Generator) -> list[np.ndarray]:
    """Bounded random critic outputs V(x) = a0 + Σ_k a_k tanh(b_k x + c_k)."""
    out = []
    for _ in range(_CRITICS):
        a = rng.normal(0.0, 1.0, 4)
        b, c = rng.normal(0.0, 1.5, 3), rng.normal(0.0, 1.0, 3)
        out.append(a[0] + sum(a[k + 1] * np.tanh(b[k] * _X + c[k]) for k in range(3)))
    return out


def _bound_certificates(rule: str, name: str, truth, bound, optimal_logit, seed: int) -> list[Certificate]:
    """`bound(p, q, V)` is never above `truth(p, q)`, for random bounded critic outputs V and
    for small perturbations of the optimal one, and equals it at `optimal_logit(p, q)` (unclipped:
    Jeffreys' T* = log u + 1 − 1/u needs V far below −30 where q ≫ p; ±∞ becomes ±700)."""
    rng = np.random.default_rng(seed)
    gaps, errors, values = [], [], []
    with np.errstate(all="ignore"):
        for (m_p, s_p), (m_q, s_q) in _gaussian_pairs(rng):
            p, q = _pdf(m_p, s_p), _pdf(m_q, s_q)
            d = truth(p, q)
            best = np.nan_to_num(optimal_logit(p, q), nan=0.0, posinf=_V_MAX, neginf=-_V_MAX)
            critics = _random_logits(rng) + [best + 0.05 * v / np.max(np.abs(v)) for v in _random_logits(rng)]
            values.append(d)
            gaps.append(max(bound(p, q, v) - d for v in critics))
            errors.append(abs(bound(p, q, best) - d) / max(1.0, abs(d)))
    worst = max(gaps)
    return [
        Certificate(rule, f"the rewritten objective is at most {name}(P || Q) for every critic",
                    f"{_PAIRS} Gaussian pairs ({name} = {', '.join(f'{x:.4g}' for x in values)}) x {2 * _CRITICS} "
                    f"critics (random, and perturbations of the optimal one): largest bound - {name} = {worst:.3g}",
                    bool(worst <= 1e-7)),
        Certificate(rule, f"the bound reaches {name}(P || Q) at the optimal critic",
                    f"largest relative error at the optimum: {max(errors):.3g}", bool(max(errors) <= 1e-6)),
    ]


def _inverse_activation(c):
    """v(t) with g_f(v(t)) = t: the root SymPy finds that is real inside dom f*; a t at a
    closed end of the domain (TV: t* = ±1/2) is moved inside by a relative 1e-12 first."""
    inside = c.activation.subs(V, 0)
    lo, hi = (float(e) for e in c.domain[:2])
    margin = 1e-12 * (hi - lo) if np.isfinite(hi - lo) else 0.0
    for root in sp.solve(sp.Eq(c.activation, TSYM), V):
        at = complex(root.subs(TSYM, inside).evalf())
        if abs(at.imag) < 1e-12 and abs(at.real) < 1e-9:
            inverse = sp.lambdify(TSYM, root, "numpy")
            return lambda t: inverse(np.clip(t, lo + margin, hi - margin))
    raise RuntimeError(f"internal: cannot invert the critic activation {c.activation}")


def certify_conjugate(prog, step, seed: int) -> list[Certificate]:
    """E_P[T(V)] − E_Q[f*(T(V))] ≤ D_f(P‖Q) = ∫ q f(p/q) at random V, = at T* = f'(p/q), for
    the conjugate the rule derived (`step.fact("conjugate")`); with `nonsaturating`, the
    generator's −E_Q[T] at T* is stationary where Q = P and pushes Q towards P elsewhere."""
    c = step.fact("conjugate")
    f, act, fstar_act = (sp.lambdify(s, e, "numpy") for s, e in ((U, c.f), (V, c.activation), (V, c.fstar_of_activation)))

    def at(fn, x):
        return fn(x) + 0 * x   # constants broadcast to the grid

    if c.optimal_output is None:
        tstar, vstar = sp.lambdify(U, c.critic_of_ratio, "numpy"), _inverse_activation(c)

        def optimal(p, q):
            return vstar(at(tstar, p / q))
    else:
        log_ratio = sp.lambdify(U, c.optimal_output, "numpy")

        def optimal(p, q):
            return at(log_ratio, p / q)
    out = _bound_certificates(
        "conjugate", step.matched.kind, lambda p, q: _integral(q * at(f, p / q)),
        lambda p, q, v: _integral(p * at(act, v)) - _integral(q * at(fstar_act, v)),
        optimal, seed)
    if step.fact("nonsaturating"):
        out.append(nonsaturating_certificate("conjugate", lambda q, p, q0: -_integral(q * at(act, optimal(p, q0))), seed))
    return out


def _log_sigmoid(v: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -v)


def certify_classifier_ratio(prog, step, seed: int) -> list[Certificate]:
    """½(log 4 + E_P log σ(V) + E_Q log σ(−V)) ≤ JS(P, Q) at random V, = at V* = log p/q (GAN:
    without the affine map, against 2 JS − log 4); with `nonsaturating`, the generator's loss
    at D* is stationary exactly where Q = P and pushes Q towards P elsewhere."""
    kind = step.matched.kind
    js = kind == "JS"

    def game(p, q, v):
        value = _integral(p * _log_sigmoid(v)) + _integral(q * _log_sigmoid(-v))
        return 0.5 * (math.log(4) + value) if js else value

    def truth(p, q):
        m = (p + q) / 2
        half = 0.5 * (_integral(p * np.log(p / m)) + _integral(q * np.log(q / m)))
        return half if js else 2 * half - math.log(4)

    out = _bound_certificates("classifier_ratio", kind, truth, game, lambda p, q: np.log(p / q), seed)
    if step.fact("nonsaturating"):
        out.append(nonsaturating_certificate(
            "classifier_ratio", lambda q, p, q0: -_integral(q * _log_sigmoid(np.log(p / q0))), seed))
    return out


def nonsaturating_certificate(rule: str, generator_loss, seed: int) -> Certificate:
    """For P = N(0, 1), Q_θ = N(θ, 1) and the optimal critic of Q_θ0 held fixed, the
    derivative of `generator_loss(q_θ, p, q_θ0)` at θ0 is zero for θ0 = 0 and has the sign of θ0."""
    rng = np.random.default_rng(seed)
    p, h, checks = _pdf(0.0, 1.0), 1e-4, []
    for theta0 in (0.0, *rng.uniform(-2.0, 2.0, 4)):
        q0 = _pdf(theta0, 1.0)
        slope = (generator_loss(_pdf(theta0 + h, 1.0), p, q0) - generator_loss(_pdf(theta0 - h, 1.0), p, q0)) / (2 * h)
        checks.append((theta0, slope))
    ok = abs(checks[0][1]) < 1e-8 and all(np.sign(s) == np.sign(t) for t, s in checks[1:])
    return Certificate(rule, "nonsaturating: at the optimal critic, the generator's gradient vanishes at Q = P and "
                             "points Q towards P",
                       "d/dtheta at theta0: " + ", ".join(f"{t:+.2f} -> {s:+.3g}" for t, s in checks), bool(ok))


def certify_denoising_score(prog, step, seed: int) -> list[Certificate]:
    """For data N(m, s²) and random Gaussian models N(μ, τ²), the rewritten objective differs
    from Fisher(data‖p) (Hyvärinen) or from Fisher(data ∗ N(0, σ²)‖p) (denoising) by one
    constant, the same for every model."""
    rng = np.random.default_rng(seed)
    m, s = rng.uniform(-1.0, 1.0), rng.uniform(0.5, 1.5)
    models = [(rng.uniform(-2.0, 2.0), rng.uniform(0.3, 2.0)) for _ in range(6)]

    def fisher(data_sd, mu, tau):
        x = _X
        return _integral(_pdf(m, data_sd) * 0.5 * (-(x - m) / data_sd**2 + (x - mu) / tau**2) ** 2)

    if step.fact("form") == "hyvarinen":
        name, expected = "Fisher(data || p)", 0.5 / s**2   # 1/2 E|grad log p_data|^2
        pairs = [(fisher(s, mu, tau), _integral(_pdf(m, s) * (0.5 * ((_X - mu) / tau**2) ** 2 - 1 / tau**2)))
                 for mu, tau in models]
    else:
        sigma = step.fact("sigma")
        eps, weights = np.polynomial.hermite_e.hermegauss(40)
        weights = weights / weights.sum()
        # 1/2 E|grad log p_data_sigma|^2 - 1/2 E|eps/sigma|^2
        name, expected = f"Fisher(data * N(0, {sigma:g}^2) || p)", 0.5 / (s**2 + sigma**2) - 0.5 / sigma**2
        pairs = []
        for mu, tau in models:
            noisy = _X[:, None] + sigma * eps[None, :]
            inner = 0.5 * (-(noisy - mu) / tau**2 + eps[None, :] / sigma) ** 2 @ weights
            pairs.append((fisher(math.hypot(s, sigma), mu, tau), _integral(_pdf(m, s) * inner)))
    offsets = [truth - rewritten for truth, rewritten in pairs]
    spread = max(offsets) - min(offsets)
    claim = f"{name} - rewritten objective is one constant for every model"
    evidence = (f"data N({m:.3g}, {s:.3g}^2), {len(models)} random Gaussian models: offsets "
                f"{min(offsets):.6g} .. {max(offsets):.6g}, expected {expected:.6g}")
    ok = spread <= 1e-6 * max(1.0, abs(offsets[0])) and abs(offsets[0] - expected) <= 1e-6 * max(1.0, abs(expected))
    return [Certificate("denoising_score", claim, evidence, bool(ok))]


CERTIFICATES = {
    "classifier_ratio": certify_classifier_ratio,
    "conjugate": certify_conjugate,
    "denoising_score": certify_denoising_score,
}
