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
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import sympy as sp
from scipy import integrate, stats

from compiler import ir
from compiler.ir.printer import show
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


# ---- exact routes: maximum likelihood, KL between explicit densities ----------------------------------

def _instance(source: str, rule: str, data: dict | None = None, via: str | None = None):
    """Compile a random instance of `rule` (its data written to a temporary npz file, named in the source
    as {path}); returns (module, full batch, the rules its derivation used)."""
    from compiler.driver.api import compile_source

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        np.savez(path, **(data or {"x": np.zeros(4)}))
        prog = compile_source(source.format(path=path.as_posix()), via=via, filename=f"<certificate of {rule}>")
        mod = prog.build()
        batch = mod.full_batch({k: np.asarray(v) for k, v in prog.load_data().items()})
    return mod, batch, [s.rule for s in prog.derivation.steps]


def _float_params(values: dict) -> dict:
    return {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}


def _unused(rule: str, claim: str, rules: list[str]) -> Certificate:
    return Certificate(rule, claim, f"the random instance was compiled by {rules}, not by {rule}", False)


MLE_NORMAL = """data x : real from npz("{path}")
param mu : real
param ls : real
model q:
    x ~ Normal(mu, exp(ls))
minimize KL(data || q)
"""

MLE_CATEGORICAL = """data x : real from npz("{path}")
param a : real[{k}]
model q:
    x ~ Categorical(logits=a)
minimize KL(data || q)
"""


def _mle_normal(rng: np.random.Generator):
    """Data whose law is N(m, s²) to the second moment: 64 draws shifted and scaled to mean m and
    (population) standard deviation s exactly, so E_data[-log q] = E_N(m, s²)[-log q] for every
    Normal q. Yields (params of q, KL(N(m, s²) || q), its gradient in (mu, ls)) for random q;
    the constant is -H(N(m, s²)) = -½ log(2πe s²)."""
    m, s = rng.uniform(-1.0, 1.0), rng.uniform(0.5, 1.5)
    x = rng.normal(size=64)
    x = m + s * (x - x.mean()) / x.std()
    cases = []
    for _ in range(_ML_MODELS):
        mu, ls = rng.uniform(-2.0, 2.0), rng.uniform(-0.7, 0.7)
        var = math.exp(2 * ls)
        second = s**2 + (m - mu) ** 2
        kl = ls - math.log(s) + second / (2 * var) - 0.5
        cases.append(({"mu": mu, "ls": ls}, kl, {"mu": (mu - m) / var, "ls": 1 - second / var}))
    return (f"data N({m:.3g}, {s:.3g}^2)", MLE_NORMAL, {"x": x}, cases, -0.5 * math.log(2 * math.pi * math.e * s**2))


def _mle_categorical(rng: np.random.Generator):
    """Data whose law is its own frequencies pi on {0..k-1} (a discrete law, so the empirical law is
    the data's law exactly); q = Categorical(softmax(a)): KL(pi || q) = sum pi log(pi / q), gradient
    softmax(a) - pi; the constant is -H(pi) = sum pi log pi."""
    k = 4
    counts = rng.integers(1, 12, size=k)
    x = np.repeat(np.arange(k, dtype=np.float64), counts)
    pi = counts / counts.sum()
    cases = []
    for _ in range(_ML_MODELS):
        a = rng.normal(0.0, 1.5, size=k)
        q = np.exp(a - a.max())
        q /= q.sum()
        cases.append(({"a": a}, float(np.sum(pi * np.log(pi / q))), {"a": q - pi}))
    return (f"data with frequencies {np.round(pi, 3).tolist()}", MLE_CATEGORICAL.replace("{k}", str(k)), {"x": x},
            cases, float(np.sum(pi * np.log(pi))))


_ML_MODELS = 5


def certify_maximum_likelihood(prog, step, seed: int) -> list[Certificate]:
    """On two families of random instances (Normal data and models, Categorical data and models), with
    data whose law is known exactly: KL(data || q) - rewritten objective is one constant for every q, the
    constant -H(data) the derivation names, and the rewritten objective's gradient in q's parameters is
    the gradient of KL(data || q)."""
    rng = np.random.default_rng(seed)
    out = []
    for make in (_mle_normal, _mle_categorical):
        what, source, data, cases, entropy_term = make(rng)
        mod, batch, rules = _instance(source, "maximum_likelihood", data)
        claim = f"KL(data || q) - rewritten objective = -H(data) for every q ({what})"
        if "maximum_likelihood" not in rules:
            out.append(_unused("maximum_likelihood", claim, rules))
            continue
        loss = jax.jit(mod.LOSSES["theta"])
        grad = jax.jit(jax.grad(mod.LOSSES["theta"]))
        offsets, slope_error = [], 0.0
        for params, kl, kl_grad in cases:
            p = _float_params(params)
            offsets.append(kl - float(loss(p, None, batch)))
            got = grad(p, None, batch)
            slope_error = max(slope_error, max(float(np.max(np.abs(np.asarray(got[n], np.float64) - kl_grad[n])))
                                               for n in kl_grad))
        scale = max(1.0, abs(entropy_term))
        ok = max(abs(o - entropy_term) for o in offsets) <= 1e-5 * scale + 1e-5
        out.append(Certificate("maximum_likelihood", claim,
                               f"{len(cases)} random models: offsets {min(offsets):.6f} .. {max(offsets):.6f}, "
                               f"-H(data) = {entropy_term:.6f}", bool(ok)))
        out.append(Certificate("maximum_likelihood", f"the rewritten objective's gradient is that of KL(data || q) "
                                                     f"({what})",
                               f"largest difference from the exact gradient over {len(cases)} models: "
                               f"{slope_error:.3g}", bool(slope_error <= 1e-4)))
    return out


EXPLICIT_PAIR = """data x : real from npz("{path}")
model p:
    x ~ {p}
model q:
    x ~ {q}
estimate KL(p || q)
"""

EXPLICIT_CHAIN = """data x : real from npz("{path}")
data y : real from npz("{path}")
model p:
    x ~ Normal({a:.6f}, {s:.6f})
    y ~ Normal({b:.6f} * x, {t:.6f})
model q:
    x ~ Normal({c:.6f}, {u:.6f})
    y ~ Normal({d:.6f} * x + {e:.6f}, {v:.6f})
estimate KL(p || q)
"""


@dataclass(frozen=True)
class _Law:
    """A random law of an instance: its source text, its SciPy law (density, support), and its log-density
    written out (SciPy's Laplace log-density underflows to -inf in the far tail)."""
    text: str
    law: object
    log_density: Callable[[float], float]


def _random_law(family: str, rng: np.random.Generator, cover: tuple[float, float] | None = None) -> _Law:
    """Random parameters of a law of `family` (rounded to the 6 decimals the source text prints); a
    Uniform q covers `cover`."""
    if family == "Uniform":
        low, high = (cover[0] - rng.uniform(0.1, 1.0), cover[1] + rng.uniform(0.1, 1.0)) if cover else \
            (rng.uniform(-1.0, 0.0), rng.uniform(0.5, 2.0))
        low, high = round(low, 6), round(high, 6)
        return _Law(f"Uniform({low:.6f}, {high:.6f})", stats.uniform(low, high - low),
                    lambda x: -math.log(high - low) if low <= x <= high else -math.inf)
    if family == "Bernoulli":
        logits = round(rng.uniform(-2.0, 2.0), 6)
        return _Law(f"Bernoulli(logits={logits:.6f})", stats.bernoulli(1 / (1 + math.exp(-logits))),
                    lambda x: x * logits - float(np.logaddexp(0.0, logits)))
    loc, scale = round(rng.uniform(-1.0, 1.0), 6), round(rng.uniform(0.5, 1.5), 6)
    text = f"{family}({loc:.6f}, {scale:.6f})"
    if family == "Laplace":
        return _Law(text, stats.laplace(loc, scale), lambda x: -abs(x - loc) / scale - math.log(2 * scale))
    if family == "Normal":
        return _Law(text, stats.norm(loc, scale),
                    lambda x: -0.5 * ((x - loc) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi))
    return _Law(text, stats.lognorm(scale, scale=math.exp(loc)),   # LogNormal
                lambda x: (-0.5 * ((math.log(x) - loc) / scale) ** 2 - math.log(scale * x) - 0.5 * math.log(2 * math.pi)
                           if x > 0 else -math.inf))


def _quadrature_kl(p: _Law, q: _Law, discrete: bool) -> float:
    """KL(p || q) = ∫ p log(p / q) by adaptive quadrature over p's support, cut where p's tails hold
    less than 1e-14 (a sum over {0, 1} for Bernoulli)."""
    if discrete:
        return float(sum(p.law.pmf(x) * (p.log_density(x) - q.log_density(x)) for x in (0, 1)))
    lo, hi = max(p.law.support()[0], p.law.ppf(1e-14)), min(p.law.support()[1], p.law.isf(1e-14))
    kinks = [k for k in (p.law.median(), q.law.median()) if lo < k < hi]   # a Laplace density's kink
    return integrate.quad(lambda x: math.exp(p.log_density(x)) * (p.log_density(x) - q.log_density(x)), lo, hi,
                          epsabs=1e-12, epsrel=1e-10, limit=400, points=kinks or None)[0]


def _closed_form_certificates(step, rng) -> list[Certificate]:
    out = []
    for p_family, q_family in step.fact("pairs", ()):
        errors, values, rules = [], [], []
        for _ in range(3):
            p_law = _random_law(p_family, rng)
            q_law = _random_law(q_family, rng, cover=p_law.law.support() if p_family == "Uniform" else None)
            source = EXPLICIT_PAIR.format(path="{path}", p=p_law.text, q=q_law.text)
            mod, batch, rules = _instance(source, "explicit_kl")
            if "explicit_kl" not in rules:
                break
            closed = float(mod.LOSSES["theta"]({}, None, batch))
            truth = _quadrature_kl(p_law, q_law, p_family == "Bernoulli")
            values.append(truth)
            errors.append(abs(closed - truth) / max(1.0, abs(truth)))
        claim = f"the closed form KL({p_family} || {q_family}) equals quadrature of p log(p / q)"
        if "explicit_kl" not in rules:
            out.append(_unused("explicit_kl", claim, rules))
            continue
        out.append(Certificate("explicit_kl", claim,
                               f"3 random pairs (KL = {', '.join(f'{v:.5g}' for v in values)}): largest relative "
                               f"error {max(errors):.3g} (float32)", bool(max(errors) <= 1e-5)))
    return out


def _gaussian_chain_kl(a, s, b, t, c, u, d, e, v) -> float:
    """KL between the bivariate Normals of (x, y): p: x ~ N(a, s²), y ~ N(b x, t²); q: x ~ N(c, u²),
    y ~ N(d x + e, v²), by the Gaussian formula ½(tr(Σq⁻¹Σp) + Δᵀ Σq⁻¹ Δ - 2 + log det Σq / det Σp)."""
    mp, cp = np.array([a, b * a]), np.array([[s**2, b * s**2], [b * s**2, b**2 * s**2 + t**2]])
    mq, cq = np.array([c, d * c + e]), np.array([[u**2, d * u**2], [d * u**2, d**2 * u**2 + v**2]])
    inv, delta = np.linalg.inv(cq), mq - mp
    return 0.5 * (np.trace(inv @ cp) + delta @ inv @ delta - 2 + np.linalg.slogdet(cq)[1] - np.linalg.slogdet(cp)[1])


_MC_KEYS = 4000


def _monte_carlo_certificates(rng, seed: int) -> list[Certificate]:
    """The Monte Carlo form E_p[log p - log q] on two instances without a closed form: LogNormal || Laplace
    (truth by quadrature) and a two-variable Gaussian chain (y's law reads x; truth by the bivariate
    Gaussian formula), within 4 standard errors of the mean over independent keys."""
    p_law, q_law = _random_law("LogNormal", rng), _random_law("Laplace", rng)
    chain = {k: round(v, 6) for k, v in dict(
        a=rng.uniform(-1, 1), s=rng.uniform(0.5, 1.5), b=rng.uniform(-1, 1), t=rng.uniform(0.5, 1.5),
        c=rng.uniform(-1, 1), u=rng.uniform(0.6, 1.6), d=rng.uniform(-1, 1), e=rng.uniform(-0.5, 0.5),
        v=rng.uniform(0.6, 1.6)).items()}
    instances = [
        ("LogNormal || Laplace, truth by quadrature", EXPLICIT_PAIR.format(path="{path}", p=p_law.text, q=q_law.text),
         None, _quadrature_kl(p_law, q_law, False)),
        ("Gaussian chain (x, y), truth by the bivariate formula",
         EXPLICIT_CHAIN.replace("{path}", "{{path}}").format(**chain), {"x": np.zeros(4), "y": np.zeros(4)},
         _gaussian_chain_kl(**chain)),
    ]
    out = []
    for what, source, data, truth in instances:
        mod, batch, rules = _instance(source, "explicit_kl", data)
        claim = f"the Monte Carlo estimate of KL(p || q) is unbiased ({what})"
        if "explicit_kl" not in rules:
            out.append(_unused("explicit_kl", claim, rules))
            continue
        keys = jax.random.split(jax.random.PRNGKey(seed), _MC_KEYS)
        draws = np.asarray(jax.jit(jax.vmap(lambda k: mod.LOSSES["theta"]({}, k, batch)))(keys), np.float64)
        mean, se = draws.mean(), draws.std(ddof=1) / math.sqrt(len(draws))
        out.append(Certificate("explicit_kl", claim,
                               f"estimate {mean:.5f} +- {4 * se:.5f} (4 s.e., {_MC_KEYS} keys); truth {truth:.5f}",
                               bool(abs(mean - truth) <= 4 * se + 1e-4)))
    return out


def certify_explicit_kl(prog, step, seed: int) -> list[Certificate]:
    """The route the rule took: each closed form it emitted (per pair of families) against adaptive
    quadrature of p log(p / q) at random parameters; or the Monte Carlo form against the truth, within
    4 standard errors."""
    rng = np.random.default_rng(seed)
    if step.fact("route") == "closed_form":
        return _closed_form_certificates(step, rng)
    return _monte_carlo_certificates(rng, seed)


EXPLICIT_F = """data x : real from npz("{path}")
model p:
    x ~ {p}
model q:
    x ~ {q}
estimate {kind}(p || q)
"""


def _quadrature_f(p: _Law, q: _Law, f) -> float:
    """D_f(p || q) = ∫ q f(p / q) by adaptive quadrature over both supports, cut where both laws'
    tails hold less than 1e-14 (where p has the heavier tail, q f(p/q) -> p f'(∞) there: the
    integrand is formed in 50-digit arithmetic, so p/q does not overflow)."""
    lo = max(min(p.law.support()[0], q.law.support()[0]), min(p.law.ppf(1e-14), q.law.ppf(1e-14)))
    hi = min(max(p.law.support()[1], q.law.support()[1]), max(p.law.isf(1e-14), q.law.isf(1e-14)))
    # pieces between both laws' quantiles: one law's bulk is not lost in the other's long range
    cuts = sorted({lo, hi} | {float(law.law.ppf(c)) for law in (p, q) for c in (1e-6, 0.01, 0.1, 0.5, 0.9, 0.99, 1 - 1e-6)
                               if lo < law.law.ppf(c) < hi})

    def integrand(x):
        log_p, log_q = p.log_density(x), q.log_density(x)
        if log_q == -math.inf:
            return 0.0 if log_p == -math.inf else math.inf
        with mpmath.workdps(50):
            return float(mpmath.exp(log_q) * f(mpmath.exp(mpmath.mpf(log_p) - log_q)))
    return sum(integrate.quad(integrand, a, b, epsabs=1e-12, epsrel=1e-10, limit=400)[0] for a, b in zip(cuts, cuts[1:]))


def certify_explicit_divergence(prog, step, seed: int) -> list[Certificate]:
    """The Monte Carlo form E_q f(exp(log p - log q)) of the step's generator f on random pairs of
    laws (Normal || Laplace, Laplace || Normal, LogNormal || LogNormal), each within 4 standard errors
    (over independent keys) of quadrature of q f(p/q)."""
    rng = np.random.default_rng(seed)
    generator = sp.sympify(step.fact("generator"))
    f = sp.lambdify(sorted(generator.free_symbols, key=str), generator, "mpmath")
    kind = step.matched.kind
    definition = prog.program.decl(kind)
    rows, passed = [], True
    for p_family, q_family in (("Normal", "Laplace"), ("Laplace", "Normal"), ("LogNormal", "LogNormal")):
        p_law, q_law = _random_law(p_family, rng), _random_law(q_family, rng)
        source = EXPLICIT_F.format(path="{path}", p=p_law.text, q=q_law.text, kind=kind)
        if isinstance(definition, ir.DivergenceDef):      # the user's generator, as they wrote it
            source = f"divergence {kind}({definition.var}) = {show(definition.body)}\n" + source
        mod, batch, rules = _instance(source, "explicit_divergence")
        claim = f"the Monte Carlo estimate of {kind}(p || q) with both densities is unbiased"
        if "explicit_divergence" not in rules:
            return [_unused("explicit_divergence", claim, rules)]
        keys = jax.random.split(jax.random.PRNGKey(seed), _MC_KEYS // 4)
        draws = np.asarray(jax.jit(jax.vmap(lambda k: mod.LOSSES["theta"]({}, k, batch)))(keys), np.float64)
        mean, se = draws.mean(), draws.std(ddof=1) / math.sqrt(len(draws))
        truth = _quadrature_f(p_law, q_law, f)
        if not truth < 1e30:       # p's tail heavier than q's makes D_f infinite (Chi2 of a Laplace to a Normal)
            rows.append(f"{p_law.text} || {q_law.text}: the divergence is infinite, nothing finite to compare")
            continue
        passed &= bool(abs(mean - truth) <= 4 * se + 1e-4)
        rows.append(f"{p_law.text} || {q_law.text}: {mean:.5f} +- {4 * se:.5f} vs {truth:.5f}")
    return [Certificate("explicit_divergence", f"the Monte Carlo estimate of {kind}(p || q) with both densities is "
                        "unbiased", "; ".join(rows) + f" (4 s.e. over {_MC_KEYS // 4} keys; truth by quadrature)", passed)]


ENTROPY_GAME = """param a : real
param ls : real
sampler g:
    e ~ Normal(0, 1)
    x = a + exp(ls) * e
model p:
    x ~ Normal({m}, {t})
minimize KL(g || p) via entropy_game(draws=512, hidden=32)
"""


def certify_entropy_game(prog, step, seed: int) -> list[Certificate]:
    """At a fixed Gaussian sampler g = N(a, s) and a target N(m, t), the classifier and the reference
    are fitted (600 Adam steps of their players, g frozen); the sampler's loss E_g[V + log r - log p]
    then equals KL(g || p) (c = 0: p normalised), computed by adaptive quadrature of g log(g/p),
    within 0.03 nats plus 4 standard errors of the 64-draw average, on two random instances."""
    import optax

    from compiler.driver.api import compile_source
    rng = np.random.default_rng(seed)
    rows, passed = [], True
    for _ in range(2):
        m, t = float(rng.normal()), float(np.exp(rng.normal() * 0.3))
        a, s = float(rng.normal()), float(np.exp(rng.normal() * 0.3))
        mod = compile_source(ENTROPY_GAME.format(m=m, t=t), filename="<certificate of entropy_game>").build()
        params = mod.init(jax.random.PRNGKey(seed))
        params = {**params, "a": jnp.float32(a), "ls": jnp.float32(math.log(s))}
        others = [p for p in mod.PLAYERS if p != "theta"]
        opt = optax.adam(1e-2)

        def ascent(params, state, key):
            def total(mine):
                full = {**params, **mine}
                return -sum(mod.LOSSES[p](full, k, None) for p, k in zip(others, jax.random.split(key, len(others))))
            mine = {n: params[n] for p in others for n in mod.PLAYERS[p]}
            grads = jax.grad(total)(mine)
            updates, state = opt.update(grads, state, mine)
            return {**params, **optax.apply_updates(mine, updates)}, state
        ascent = jax.jit(ascent)
        state = opt.init({n: params[n] for p in others for n in mod.PLAYERS[p]})
        for key in jax.random.split(jax.random.PRNGKey(seed + 1), 600):
            params, state = ascent(params, state, key)
        values = np.asarray(jax.vmap(lambda k: mod.LOSSES["theta"](params, k, None))(
            jax.random.split(jax.random.PRNGKey(seed + 2), 64)), np.float64)
        estimate, se = values.mean(), values.std(ddof=1) / np.sqrt(len(values))
        g, p = stats.norm(a, s), stats.norm(m, t)
        exact, _ = integrate.quad(lambda x: g.pdf(x) * (g.logpdf(x) - p.logpdf(x)), a - 12 * s, a + 12 * s)
        ok = abs(estimate - exact) <= 0.03 + 4 * se
        passed &= bool(ok)
        rows.append(f"g = N({a:.2f}, {s:.2f}), p = N({m:.2f}, {t:.2f}): {estimate:.4f} +- {se:.4f} vs KL {exact:.4f}")
    return [Certificate("entropy_game", "at a fitted classifier and reference, the sampler's loss equals KL(g || p) "
                        "+ c (c = 0 for a normalised p)", "; ".join(rows) + " (quadrature; within 0.03 + 4 s.e.)", passed)]


CERTIFICATES = {
    "entropy_game": certify_entropy_game,
    "classifier_ratio": certify_classifier_ratio,
    "conjugate": certify_conjugate,
    "denoising_score": certify_denoising_score,
    "maximum_likelihood": certify_maximum_likelihood,
    "explicit_kl": certify_explicit_kl,
    "explicit_divergence": certify_explicit_divergence,
}
