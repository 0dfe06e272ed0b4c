"""compiler.math.convex: f-divergence conjugates derived by SymPy, checked against the published
f-GAN table (Nowozin, Cseke & Tomioka 2016, Table 2), the oracle, and against convex
analysis itself (Fenchel–Young), on random points."""
import re

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.math.convex import (
    Conjugate,
    ConvexityError,
    T,
    U,
    V,
    check_generator,
    derive_conjugate,
    named_generator,
)
from compiler.math.distributions import with_softplus

u = sp.Symbol("u")  # a user's u, without assumptions, as a parser would make it
oo, half, log2 = sp.oo, sp.Rational(1, 2), sp.log(2)

# The published table: generator, f*(t), dom f* as (lo, hi, lo_closed, hi_closed).
# Differences from the paper, by design: χ² is exact on the range [−2, ∞) of f' (the
# paper's t²/4 + t on ℝ lies above f* = −1 for t < −2); our JS is half of f-GAN's.
ORACLE = {
    "KL": (named_generator("KL"), sp.exp(T - 1), (-oo, oo, False, False)),
    "RKL": (named_generator("RKL"), -1 - sp.log(-T), (-oo, 0, False, False)),
    "Chi2": (named_generator("Chi2"), T**2 / 4 + T, (-2, oo, True, False)),
    "Hellinger2": (named_generator("Hellinger2"), T / (1 - T), (-oo, 1, False, False)),
    "TV": (named_generator("TV"), T, (-half, half, True, True)),
    "JS": (named_generator("JS"), -sp.log(2 - sp.exp(2 * T)) / 2, (-oo, log2 / 2, False, False)),
    "fGAN-JS": (-(U + 1) * sp.log((1 + U) / 2) + U * sp.log(U), -sp.log(2 - sp.exp(T)),
                (-oo, log2, False, False)),
    "GAN": (named_generator("GAN"), -sp.log(1 - sp.exp(T)), (-oo, 0, False, False)),
}
# Generators as a user might write them, with their conjugates worked out by hand.
USER = {
    "hellinger-expanded": (u - 2 * sp.sqrt(u) + 1, T / (1 - T), (-oo, 1, False, False)),
    "hellinger-plain-u": ((sp.sqrt(u) - 1) ** 2, T / (1 - T), (-oo, 1, False, False)),
    "2chi2": (2 * (u - 1) ** 2, T**2 / 8 + T, (-4, oo, True, False)),
    "kl-shifted": (u * sp.log(u) - u + 1, sp.exp(T) - 1, (-oo, oo, False, False)),
    "cubic": (u**3 - 1, 2 * (T / 3) ** sp.Rational(3, 2) + 1, (0, oo, True, False)),
    "hinge": (sp.Max(0, u - 1), T, (0, 1, True, True)),
    "abs+chi2": (sp.Abs(u - 1) + (u - 1) ** 2,
                 sp.Piecewise(((T + 1) ** 2 / 4 + T, T <= -1), (T, T <= 1), ((T - 1) ** 2 / 4 + T, True)),
                 (-3, oo, True, False)),
    # f' = 4(u − 1)³: u(t) = 1 + (t/4)^(1/3) with the real cube root for t < 0.
    "quartic": ((u - 1) ** 4, T + 3 * (sp.Abs(T) / 4) ** sp.Rational(4, 3), (-4, oo, True, False)),
    # SymPy's solve finds no root of 6(u − 1)^5 = t; solveset over ℝ does: f* = t + 5(|t|/6)^(6/5).
    "sextic": ((u - 1) ** 6, T + 5 * (sp.Abs(T) / 6) ** sp.Rational(6, 5), (-6, oo, True, False)),
    # f' = 5/2 |u − 1|^(3/2) sign(u − 1): one expression in |t| on both sides of the kink-free u = 1.
    "abs^5/2": (sp.Abs(u - 1) ** sp.Rational(5, 2), T + sp.Rational(3, 2) * (2 * sp.Abs(T) / 5) ** sp.Rational(5, 3),
                (-sp.Rational(5, 2), oo, True, False)),
    # Jeffreys: f' = log u + 1 − 1/u = t at u = 1/W(e^(1−t)), so f* = 1/W − log W − 1.
    "jeffreys": ((u - 1) * sp.log(u), 1 / sp.LambertW(sp.exp(1 - T)) - sp.log(sp.LambertW(sp.exp(1 - T))) - 1,
                 (-oo, oo, False, False)),
}
ALL = {**ORACLE, **USER}


def conj(name) -> Conjugate:
    return derive_conjugate(ALL[name][0])


def numeric(expr, sym):
    if expr.has(sp.LambertW):   # NumPy has no Lambert W: the oracle in mpmath, point by point
        exact = sp.lambdify(sym, expr, "mpmath")
        return np.vectorize(lambda x: float(mpmath.re(exact(mpmath.mpf(float(x))))))
    return sp.lambdify(sym, expr, "numpy")


def inside(c: Conjugate) -> np.ndarray:
    """Points of the interior of the domain: the activation at many v."""
    return numeric(c.activation, V)(np.linspace(-6, 6, 61))


@pytest.mark.parametrize("name", ALL)
def test_conjugate_matches_oracle(name):
    f, oracle, domain = ALL[name]
    c = conj(name)
    assert c.domain == domain
    ts = inside(c)
    ours, theirs = numeric(c.fstar, T)(ts), numeric(oracle, T)(ts) + 0 * ts
    assert sp.simplify(c.fstar - oracle) == 0 or np.allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_published_forms_come_out_symbolically():
    for name in ("KL", "RKL", "Chi2", "Hellinger2", "TV", "JS", "fGAN-JS", "GAN"):
        assert sp.simplify(conj(name).fstar - ORACLE[name][1]) == 0, name
    assert str(conj("JS").fstar) == "-log(2 - exp(2*t))/2"
    assert str(conj("GAN").fstar) == "-log(1 - exp(t))"


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=60, deadline=None)
@given(log_u=st.floats(-3, 3), v=st.floats(-8, 8))
def test_fenchel_young(name, log_u, v):
    """f(u) + f*(t) >= t·u for every u > 0 and t in the domain, = at t = f'(u)."""
    c = conj(name)
    f, fstar = numeric(c.f, U), numeric(c.fstar, T)
    x = 10.0 ** log_u
    t = float(numeric(c.activation, V)(v))
    gap = f(x) + fstar(t) - t * x
    assert gap >= -1e-9 * (1 + abs(t * x) + abs(f(x)))
    t_opt = float(numeric(c.critic_of_ratio, U)(x))
    assert f(x) + fstar(t_opt) - t_opt * x == pytest.approx(0, abs=1e-9 * (1 + abs(t_opt * x)))


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=40, deadline=None)
@given(v=st.floats(-30, 30))
def test_activation_maps_reals_into_domain(name, v):
    c = conj(name)
    lo, hi, _, _ = c.domain
    t = sp.N(c.activation.subs(V, sp.Float(v, 150)), 150)   # JS at v = 30: 1e-52 inside
    assert lo < t < hi


@pytest.mark.parametrize("name", ALL)
def test_fstar_of_activation_is_exact_and_stable(name):
    """f*(g_f(v)) equals f* at g_f(v) to 12 digits (both in 150-digit arithmetic: log σ(2v)
    at v = 30 is −e^(−60)), and float32 evaluation stays accurate on v in [-30, 30] (no
    cancellation in 1 - exp(-tiny), no overflow on either side)."""
    c = conj(name)
    vs = np.linspace(-30, 30, 61)
    composed = sp.lambdify(V, c.fstar.subs(T, c.activation), "mpmath")
    stable = sp.lambdify(V, c.fstar_of_activation, "mpmath")
    with mpmath.workdps(150):
        ref = np.array([float(composed(mpmath.mpf(v))) for v in vs])
        assert np.allclose([float(stable(mpmath.mpf(v))) for v in vs], ref, rtol=1e-12, atol=1e-12)
    with np.errstate(all="ignore"):
        y32 = numeric(with_softplus(c.fstar_of_activation), V)(vs.astype(np.float32)) + 0 * vs  # as printed
    ok = np.abs(y32 - ref) <= 1e-3 * (1 + np.abs(ref))
    assert ok[np.abs(ref) < 1e30].all()


def test_named_activations():
    """A smooth f gets T = f'(e^(v/f''(1))), unit slope at v = 0 and the critic's output
    f''(1) times the log density ratio at the optimum; an f with kinks gets an activation
    onto its domain."""
    assert conj("KL").activation == V + 1
    assert conj("RKL").activation == -sp.exp(-V)
    assert conj("Chi2").activation.rewrite(sp.exp) == 2 * sp.exp(V / 2) - 2
    assert sp.simplify(conj("GAN").activation - sp.log(1 / (1 + sp.exp(-2 * V)))) == 0   # log σ(2v)
    assert conj("TV").activation == sp.tanh(V) / 2
    assert conj("hinge").activation == 1 / (1 + sp.exp(-V))
    assert sp.simplify(conj("RKL").fstar_of_activation - (V - 1)) == 0
    assert conj("Hellinger2").activation == 1 - sp.exp(-V)   # f-GAN's, with f''(1) = 1/2
    assert conj("Hellinger2").fstar_of_activation.rewrite(sp.exp) == sp.exp(V) - 1
    assert str(conj("GAN").fstar_of_activation) == "log(exp(2*v) + 1)"
    assert conj("jeffreys").fstar_of_activation.rewrite(sp.exp) == V / 2 + sp.exp(V / 2) - 1
    scales = {"KL": 1, "RKL": 1, "Chi2": 2, "GAN": sp.Rational(1, 2), "jeffreys": 2, "quartic": 1}  # f''(1), or 1
    assert all(conj(k).optimal_output == c * sp.log(U) for k, c in scales.items())
    assert conj("TV").optimal_output is None and conj("hinge").optimal_output is None


def test_critic_of_ratio_is_f_prime():
    assert conj("KL").critic_of_ratio == sp.log(U) + 1
    assert conj("TV").critic_of_ratio == sp.sign(U - 1) / 2
    assert sp.simplify(conj("JS").critic_of_ratio - sp.log(2 * U / (U + 1)) / 2) == 0


def test_divergence_conventions():
    """sup D_f = f(0+) + lim f(u)/u (P ⟂ Q): JS ≤ log 2, Hellinger2 ≤ 2, TV ≤ 1; and f(1) = 0."""
    bounds = {"JS": log2, "Hellinger2": 2, "TV": 1, "KL": oo, "Chi2": oo}
    for name, bound in bounds.items():
        f = named_generator(name)
        assert f.subs(U, 1).simplify() == 0
        assert sp.limit(f, U, 0, "+") + sp.limit(f / U, U, oo) == bound, name


@pytest.mark.parametrize("name", ["KL", "RKL", "Chi2", "Hellinger2", "TV", "JS"])
def test_builtin_generators_pass_the_check(name):
    checks = check_generator(named_generator(name))
    assert checks[0] == "f(1) = 0" and len(checks) >= 2


def test_check_messages():
    assert check_generator(U * sp.log(U)) == [
        "f(1) = 0", "f''(u) = 1/u >= 0 for u > 0 (SymPy, from u > 0)"]
    tv = check_generator(named_generator("TV"))
    assert "kink at u = 1: slope -1/2 -> 1/2, nondecreasing" in tv
    assert any("f''(u) = 6*u >= 0" in s for s in check_generator(u**3 - 1))


@pytest.mark.parametrize("f, message", [
    (u**2, "f(1) = 1, but an f-divergence needs f(1) = 0"),
    (named_generator("GAN"), "f(1) = -log(4), but an f-divergence needs f(1) = 0"),
    (-(u - 1) ** 2, "f is not convex on u > 0: f''(1) = -2 < 0"),
    (sp.sqrt(u) - 1, "f is not convex on u > 0: f''(1) = -1/4 < 0"),
    (sp.Min(0, u - 1), "f is not convex on u > 0: its slope drops from 1 to 0 at the kink u = 1"),
    (sp.log(u) ** 2 * (u - 2), "f is not convex on u > 0: f''("),
])
def test_rejections(f, message):
    with pytest.raises(ConvexityError, match=re.escape(message)):
        check_generator(f)


def test_concave_generator_has_no_conjugate():
    with pytest.raises(ConvexityError, match="not convex"):
        derive_conjugate(-(u - 1) ** 2)


def test_numeric_fallbacks():
    """Where SymPy cannot decide, the grid decides, and says so."""
    wiggly = u * sp.log(u) + (u - 1) ** 2 + sp.sin(u - 1) / 10   # f'' = 1/u + 2 − sin/10 > 0
    assert "numerically" in check_generator(wiggly)[1]
    with pytest.raises(ConvexityError, match=r"f''\(.*\) = .* < 0"):
        check_generator(u * sp.log(u) + sp.sin(3 * u) / 2 - sp.sin(3) / 2)
    kinked = sp.Max(u * sp.log(u), (u - 1) ** 2)  # kinks at roots of u log u = (u − 1)²
    assert "(f(x)+f(y))/2 checked numerically" in check_generator(kinked)[1]
    with pytest.raises(ConvexityError, match="cannot derive f\\* in closed form"):
        derive_conjugate(kinked)


def test_other_rejections_and_lookup():
    with pytest.raises(ConvexityError, match="depend on u only"):
        check_generator(sp.Symbol("a") * (u - 1) ** 2)
    with pytest.raises(ConvexityError, match="affine"):
        derive_conjugate(3 * (u - 1))
    with pytest.raises(KeyError):
        named_generator("Wasserstein")


def test_cached_and_symbol_agnostic():
    assert derive_conjugate(u * sp.log(u)) is derive_conjugate(named_generator("KL"))
    assert derive_conjugate("u*log(u)") is derive_conjugate(U * sp.log(U))
