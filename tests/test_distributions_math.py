"""Derived closed forms of compiler.math.distributions against oracles, quadrature and Monte Carlo.

Textbook formulas appear here only, as oracles for what the module derives.
"""

import jax
import jax.numpy as jnp
import jax.scipy.stats as jst
import numpy as np
import pytest
import sympy as sp

from compiler.math.distributions import (
    PARAMETERS,
    X,
    entropy_closed_form,
    kl_closed_form,
    log_density,
    parameter_symbols,
    support,
    to_jax_source,
)

CONTINUOUS = ("Normal", "Laplace", "LogNormal", "Uniform")
DERIVED = [("Normal", "Normal"), ("Normal", "Laplace"), ("Laplace", "Normal"), ("Laplace", "Laplace"),
           ("LogNormal", "Normal"), ("LogNormal", "LogNormal"), ("Uniform", "Normal"), ("Uniform", "Uniform"),
           ("Bernoulli", "Bernoulli")]
INFINITE = [("Normal", "LogNormal"), ("Normal", "Uniform"), ("Laplace", "LogNormal"), ("Laplace", "Uniform"),
            ("LogNormal", "Uniform")]
N = 200_000


def draw(family, rng, inside=None):
    """Random parameter values {name: float}; for Uniform, `inside` = a Uniform to contain."""
    if family == "Uniform":
        low, high = (inside["low"], inside["high"]) if inside else (0.0, 0.0)
        low, high = low - rng.uniform(0.1, 1), high + rng.uniform(0.1, 1)
        return {"low": low, "high": high}
    if family == "Bernoulli":
        return {"logits": rng.uniform(-3, 3)}
    return {"loc": rng.uniform(-1, 1), "scale": rng.uniform(0.5, 1.5)}


def sample(family, v, rng, n=N):
    return {"Normal": lambda: rng.normal(v["loc"], v["scale"], n),
            "Laplace": lambda: rng.laplace(v["loc"], v["scale"], n),
            "LogNormal": lambda: rng.lognormal(v["loc"], v["scale"], n),
            "Uniform": lambda: rng.uniform(v["low"], v["high"], n),
            "Bernoulli": lambda: (rng.random(n) < 1 / (1 + np.exp(-v["logits"]))).astype(float)}[family]()


def logpdf(family, v):
    """Numpy log density of family(v), lambdified from the symbolic one."""
    f = sp.lambdify(X, log_density(family, {k: sp.Float(x) for k, x in v.items()}), "numpy")
    return lambda x: np.broadcast_to(f(x), np.shape(x))


def value(form, q, p=None):
    subs = dict(zip(form.q_params, q.values())) | dict(zip(form.p_params, (p or {}).values()))
    return float(form.expr.subs(subs).evalf())


def kl_params(qf, pf, rng):
    q = draw(qf, rng)
    return q, draw(pf, rng, inside=q if qf == pf == "Uniform" else None)


def test_normal_kl_is_the_textbook_formula():
    m1, s1, m2, s2 = *parameter_symbols("Normal", "q"), *parameter_symbols("Normal", "p")
    textbook = sp.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - sp.Rational(1, 2)
    assert sp.simplify(kl_closed_form("Normal", "Normal").expr - textbook) == 0
    assert sp.simplify(kl_closed_form("LogNormal", "LogNormal").expr - textbook) == 0


def test_coverage_infinite_and_unknown_pairs():
    families = list(PARAMETERS)
    for qf in families:
        for pf in families:
            form = kl_closed_form(qf, pf)
            if (qf, pf) in DERIVED:
                assert form is not None and form.expr != sp.oo and form.how
            elif (qf, pf) in INFINITE:
                assert form.expr == sp.oo
            else:
                assert form is None, (qf, pf)
    hits = kl_closed_form.cache_info().hits
    kl_closed_form("Normal", "Laplace")                # derived once: the second ask is a cache hit
    assert kl_closed_form.cache_info().hits == hits + 1


@pytest.mark.parametrize("qf,pf", DERIVED)
def test_kl_matches_monte_carlo_and_quadrature(qf, pf):
    rng = np.random.default_rng(DERIVED.index((qf, pf)))
    form = kl_closed_form(qf, pf)
    for _ in range(3):
        q, p = kl_params(qf, pf, rng)
        kl = value(form, q, p)
        lq, lp = logpdf(qf, q), logpdf(pf, p)
        x = sample(qf, q, rng)
        h = lq(x) - lp(x)
        assert abs(kl - h.mean()) <= 4 * h.std() / np.sqrt(N) + 1e-9, (q, p, kl, h.mean())
        assert abs(kl - quadrature(qf, q, lambda x: lq(x) - lp(x))) < 1e-4 * (1 + abs(kl))


def quadrature(family, q, h):
    """E_q[h] by the trapezoid rule (an exact sum for Bernoulli)."""
    if family == "Bernoulli":
        return sum(np.exp(logpdf(family, q)(np.float64(k))) * h(np.float64(k)) for k in (0, 1))
    if family == "Uniform":
        x = np.linspace(q["low"], q["high"], 20001)
        return np.trapezoid(np.exp(logpdf(family, q)(x)) * h(x), x)
    y = np.linspace(q["loc"] - 40 * q["scale"], q["loc"] + 40 * q["scale"], 400001)
    x, jac = (np.exp(y), np.exp(y)) if family == "LogNormal" else (y, 1.0)
    return np.trapezoid(np.exp(logpdf(family, q)(x)) * h(x) * jac, y)


@pytest.mark.parametrize("qf,pf", DERIVED)
def test_kl_nonnegative_and_zero_at_q_equals_p(qf, pf):
    rng = np.random.default_rng(1)
    form = kl_closed_form(qf, pf)
    assert all(value(form, *kl_params(qf, pf, rng)) >= -1e-12 for _ in range(20))
    if qf == pf:
        assert sp.simplify(form.expr.subs(dict(zip(form.p_params, form.q_params)))) == 0


def test_uniform_kl_is_infinite_outside_support():
    form = kl_closed_form("Uniform", "Uniform")
    assert value(form, {"low": 0, "high": 2}, {"low": 0.5, "high": 3}) == np.inf
    assert value(form, {"low": 0, "high": 2}, {"low": -1, "high": 2}) == pytest.approx(np.log(1.5))


ENTROPY_ORACLE = {
    "Normal": lambda v: 0.5 * np.log(2 * np.pi * np.e * v["scale"] ** 2),
    "Laplace": lambda v: 1 + np.log(2 * v["scale"]),
    "LogNormal": lambda v: v["loc"] + 0.5 * np.log(2 * np.pi * np.e * v["scale"] ** 2),
    "Uniform": lambda v: np.log(v["high"] - v["low"]),
    "Bernoulli": lambda v: -sum(pr * np.log(pr) for pr in (1 / (1 + np.exp(-v["logits"])),
                                                          1 / (1 + np.exp(v["logits"])))),
}


@pytest.mark.parametrize("family", ENTROPY_ORACLE)
def test_entropy_matches_oracle_and_monte_carlo(family):
    rng = np.random.default_rng(2)
    form = entropy_closed_form(family)
    q = draw(family, rng)
    h = -logpdf(family, q)(sample(family, q, rng))
    assert value(form, q) == pytest.approx(ENTROPY_ORACLE[family](q), abs=1e-12)
    assert abs(value(form, q) - h.mean()) <= 4 * h.std() / np.sqrt(N) + 1e-9
    assert entropy_closed_form("Categorical") is None


@pytest.mark.parametrize("family", CONTINUOUS)
def test_log_density_normalised_and_matches_jax(family):
    v = draw(family, np.random.default_rng(3))
    assert quadrature(family, v, lambda x: 1.0) == pytest.approx(1.0, abs=1e-6)
    x = sample(family, v, np.random.default_rng(4), 1000)
    ours = logpdf(family, v)(x)
    theirs = {"Normal": lambda: jst.norm.logpdf(x, v["loc"], v["scale"]),
              "Laplace": lambda: jst.laplace.logpdf(x, v["loc"], v["scale"]),
              "LogNormal": lambda: jst.norm.logpdf(np.log(x), v["loc"], v["scale"]) - np.log(x),
              "Uniform": lambda: jst.uniform.logpdf(x, v["low"], v["high"] - v["low"])}[family]()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_discrete_log_densities():
    a = 0.7
    p = 1 / (1 + np.exp(-a))
    for k in (0, 1):
        by_logits = float(log_density("Bernoulli", {"logits": a}, k))
        assert by_logits == pytest.approx(float(log_density("Bernoulli", {"probs": p}, k)))
        assert by_logits == pytest.approx(float(jst.bernoulli.logpmf(k, p)), abs=1e-6)
    logits = (0.3, -1.0, 2.0, 0.0)
    probs = [float(sp.exp(log_density("Categorical", {"logits": logits}, k))) for k in range(4)]
    assert sum(probs) == pytest.approx(1)
    assert support("Bernoulli", {}) == ("binary",)
    assert support("Uniform", {"low": 0, "high": 1}) == ("interval", 0, 1)


@pytest.mark.parametrize("qf,pf", DERIVED + [(f, None) for f in ENTROPY_ORACLE])
def test_to_jax_source_evaluates_like_lambdify(qf, pf):
    form = kl_closed_form(qf, pf) if pf else entropy_closed_form(qf)
    symbols = form.q_params + form.p_params
    names = {s: f"arg{i}" for i, s in enumerate(symbols)}
    source = to_jax_source(form.expr, names)
    rng = np.random.default_rng(5)
    for _ in range(5):
        q, p = kl_params(qf, pf, rng) if pf else (draw(qf, rng), {})
        args = [*q.values(), *p.values()]
        got = eval(source, {"jnp": jnp, "jax": jax}, {names[s]: jnp.float32(a) for s, a in zip(symbols, args)})
        want = sp.lambdify(symbols, form.expr, "numpy")(*args)
        np.testing.assert_allclose(float(got), float(want), rtol=1e-4, atol=1e-5)


def test_to_jax_source_is_stable_and_rejects_unknown_names():
    form = kl_closed_form("Bernoulli", "Bernoulli")
    source = to_jax_source(form.expr, {form.q_params[0]: "a", form.p_params[0]: "b"})
    assert "jax.nn.softplus" in source and "jax.nn.sigmoid" in source
    assert np.isfinite(eval(source, {"jnp": jnp, "jax": jax, "a": 200.0, "b": -200.0}))
    with pytest.raises(ValueError):
        to_jax_source(form.expr, {form.q_params[0]: "a"})
