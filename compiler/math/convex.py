"""Convex analysis of f-divergences, derived with SymPy.

An f-divergence is D_f(P‖Q) = E_Q f(p/q) for a generator f: (0, ∞) → ℝ that is convex with
f(1) = 0.  The `conjugate` rule uses its variational form (Nguyen, Wainwright & Jordan 2010;
Nowozin, Cseke & Tomioka 2016, "f-GAN"):

    D_f(P‖Q) = sup_T  E_P[T] − E_Q[f*(T)],        f*(t) = sup_{u>0} t·u − f(u),

a lower bound for every critic T with values in dom f*, with equality at the optimal critic
T*(x) = f'(p(x)/q(x)).  The critic is parametrised as T = g_f(V) by an activation g_f that
maps ℝ into dom f*.  Everything here — f*, dom f*, g_f, f*∘g_f — is derived from f itself;
the published table exists only as the test oracle.

f may be smooth, or piecewise smooth with kinks (Abs, Max, Min, Piecewise, sign, Heaviside):
it is cut at its kinks u_1 < … < u_K into smooth pieces.  On a curved piece f*(t) = t·u(t) −
f(u(t)) with u(t) the root of f'(u) = t; across a kink u_k, f* is affine, t·u_k − f(u_k),
for t between the left and right slopes (TV: f*(t) = t on |t| ≤ ½).
"""
from dataclasses import dataclass
from functools import lru_cache

import mpmath
import numpy as np
import sympy as sp
from sympy.codegen.cfunctions import expm1
from sympy.core.relational import Relational

from compiler.math.distributions import with_softplus, wright_omega

U = sp.Symbol("u", positive=True)  # the density ratio p/q
T = sp.Symbol("t", real=True)      # the conjugate variable, i.e. the critic's value
V = sp.Symbol("v", real=True)      # the raw critic output, before the activation

_NONSMOOTH = (sp.Abs, sp.Max, sp.Min, sp.Piecewise, sp.sign, sp.Heaviside)
_GRID = np.logspace(-4, 4, 2001)   # where SymPy cannot decide, u is checked here numerically
_NICE = (1, 2, sp.Rational(1, 2), 4, sp.Rational(1, 4), 10, sp.Rational(1, 10), 100)


class ConvexityError(Exception):
    """f is not a valid generator (f(1) ≠ 0, not convex on u > 0), or f* cannot be derived."""


def named_generator(name: str) -> sp.Expr:
    """The generator f(u) of a builtin divergence, D_f(P‖Q) = E_Q f(p/q) (SPEC §2).

    JS is the usual Jensen–Shannon divergence ½KL(P‖M) + ½KL(Q‖M), M = (P+Q)/2, at most
    log 2.  GAN is f-GAN's u log u − (u+1) log(u+1), whose D_f = 2·JS − log 4: its
    f(1) = −log 4, so check_generator rejects it while derive_conjugate accepts it.
    """
    generators = {
        "KL": U * sp.log(U),
        "RKL": -sp.log(U),
        "Chi2": (U - 1) ** 2,
        "Hellinger2": (sp.sqrt(U) - 1) ** 2,
        "TV": sp.Abs(U - 1) / 2,
        "JS": (U * sp.log(U) - (U + 1) * sp.log((U + 1) / 2)) / 2,
        "GAN": U * sp.log(U) - (U + 1) * sp.log(U + 1),
    }
    if name not in generators:
        raise KeyError(f"unknown divergence {name!r}; known: {', '.join(generators)}")
    return generators[name]


def _generator(f) -> sp.Expr:
    """f as an expression in U: any symbol named u (of any assumptions) becomes U."""
    f = sp.nsimplify(sp.sympify(f), rational=True)   # 0.5 -> 1/2: exact algebra, no float cancellation
    f = f.subs({s: U for s in f.free_symbols if s.name == "u"})
    if f.free_symbols - {U}:
        names = ", ".join(sorted(map(str, f.free_symbols - {U})))
        raise ConvexityError(f"a generator must depend on u only, but f(u) = {f} uses {names}")
    return f


def _fmt(x) -> str:
    """A number for a message: exact when it is short (1/2, log(2)), else 4 digits."""
    x = sp.sympify(x)
    return str(x) if len(str(x)) <= 8 and not x.is_Float else f"{float(x):.4g}"


def _numeric(e, us: np.ndarray) -> np.ndarray:
    """e(u) on an array of u, NaN where it is not a finite real."""
    with np.errstate(all="ignore"):
        y = np.asarray(sp.lambdify(U, e, "numpy")(us) + 0 * us, dtype=complex)
    return np.where(np.isfinite(y) & (abs(y.imag) < 1e-12), y.real, np.nan)


# ---------------------------------------------------------------- pieces and kinks

def _kinks(f) -> list:
    """The points u > 0 where a non-smooth atom of f switches branch, in increasing order.

    Raises NotImplementedError when SymPy cannot solve for them as a finite set."""
    switches = []
    for a in f.atoms(*_NONSMOOTH):
        if isinstance(a, (sp.Max, sp.Min)):
            switches += [x - y for i, x in enumerate(a.args) for y in a.args[i + 1:]]
        elif isinstance(a, sp.Piecewise):
            switches += [r.lhs - r.rhs for c in a.args for r in c.cond.atoms(Relational)]
        else:
            switches.append(a.args[0])
    kinks = set()
    for s in switches:
        roots = sp.solveset(s, U, sp.Interval.open(0, sp.oo))
        if not isinstance(roots, sp.FiniteSet):
            raise NotImplementedError(f"cannot find where {s} = 0 for u > 0")
        kinks |= set(roots)
    return sorted(kinks, key=float)


def _branch(e, u0):
    """e with every non-smooth atom replaced by the smooth branch active at u = u0."""
    if not e.args or isinstance(e, Relational):
        return e
    e = e.func(*[_branch(a, u0) for a in e.args])
    at = lambda x: float(x.subs(U, u0))  # noqa: E731
    if isinstance(e, sp.Abs):
        return e.args[0] if at(e.args[0]) >= 0 else -e.args[0]
    if isinstance(e, sp.sign):
        return sp.Integer(np.sign(at(e.args[0])))
    if isinstance(e, sp.Heaviside):
        return sp.Integer(at(e.args[0]) > 0)
    if isinstance(e, (sp.Max, sp.Min)):
        return (max if isinstance(e, sp.Max) else min)(e.args, key=at)
    if isinstance(e, sp.Piecewise):
        return next(c.expr for c in e.args if bool(c.cond.subs(U, u0)))
    return e


@lru_cache(maxsize=None)
def _pieces(f) -> tuple:
    """f cut at its kinks: ((a, b, f restricted to (a, b) as a smooth expression), ...)."""
    ends = [sp.Integer(0), *_kinks(f), sp.oo]
    pieces = []
    for a, b in zip(ends, ends[1:]):
        mid = a + 1 if b == sp.oo else (a + b) / 2
        pieces.append((a, b, _branch(f, mid)))
    return tuple(pieces)


# ---------------------------------------------------------------- convexity

def _nonneg_on(e, a, b, name) -> str:
    """Prove e(u) ≥ 0 on (a, b), or raise ConvexityError with a witness u.

    SymPy first (the sign from the assumption u > 0, then solving e < 0 on (a, b)); if it
    cannot decide, the log-spaced grid of (1e-4, 1e4)."""
    where = "for u > 0" if (a, b) == (0, sp.oo) else f"on ({_fmt(a)}, {_fmt(b)})"
    claim = f"{name}(u) = {e} >= 0 {where}"
    if e.is_nonnegative:
        return f"{claim} (SymPy, from u > 0)"
    try:
        bad = sp.solveset(e < 0, U, sp.Interval.open(a, b))
    except (NotImplementedError, ValueError, TypeError):
        bad = None
    if bad == sp.EmptySet:
        return f"{claim} (SymPy: {name}(u) < 0 has no solution)"
    grid = _GRID[(_GRID > float(a)) & (_GRID < float(b))]
    if isinstance(bad, (sp.Interval, sp.Union)):
        witness = next((x for x in (*_NICE, *grid) if bad.contains(x) is sp.true), None)
    else:
        values = _numeric(e, grid)
        tol = 1e-9 * max(1.0, np.nanmax(abs(values), initial=0.0))
        witness = grid[np.nanargmin(values)] if np.nanmin(values, initial=0.0) < -tol else None
        if witness is None:
            return f"{claim} (checked numerically on {len(grid)} points of (1e-4, 1e4))"
    if witness is None:
        raise ConvexityError(f"f is not convex on u > 0: {name}(u) = {e} < 0 on {bad}")
    raise ConvexityError(f"f is not convex on u > 0: "
                         f"{name}({_fmt(witness)}) = {_fmt(e.subs(U, witness))} < 0")


def _midpoint_convex(f) -> str:
    """Numerical midpoint convexity, f((x+y)/2) ≤ (f(x)+f(y))/2, for f whose kinks SymPy
    cannot find: x and y 2, 20 and 200 steps apart on the grid."""
    for gap in (2, 20, 200):
        x, y = _GRID[:-gap], _GRID[gap:]
        lhs = _numeric(f, (x + y) / 2)
        rhs = (_numeric(f, x) + _numeric(f, y)) / 2
        bad = np.flatnonzero(lhs > rhs + 1e-9 * (1 + abs(rhs)))
        if bad.size:
            i = bad[0]
            raise ConvexityError(
                f"f is not convex on u > 0: f({(x[i] + y[i]) / 2:.4g}) = {lhs[i]:.4g} > "
                f"{rhs[i]:.4g} = (f({x[i]:.4g}) + f({y[i]:.4g}))/2")
    return f"f((x+y)/2) <= (f(x)+f(y))/2 checked numerically on {_GRID.size} points of (1e-4, 1e4)"


@lru_cache(maxsize=None)
def _convexity(f) -> tuple:
    """The convexity checks of f on (0, ∞): f'' ≥ 0 on each smooth piece, and at each kink
    continuity and a slope that does not decrease."""
    try:
        pieces = _pieces(f)
    except NotImplementedError:
        return (_midpoint_convex(f),)
    checks = [_nonneg_on(sp.simplify(sp.diff(g, U, 2)), a, b, "f''") for a, b, g in pieces]
    for (_, k, left), (_, _, right) in zip(pieces, pieces[1:]):
        if sp.simplify(left.subs(U, k) - right.subs(U, k)) != 0:
            raise ConvexityError(f"f is not convex on u > 0: it jumps at u = {_fmt(k)}")
        lo, hi = sp.diff(left, U).subs(U, k), sp.diff(right, U).subs(U, k)
        if float(hi - lo) < 0:
            raise ConvexityError(f"f is not convex on u > 0: its slope drops from "
                                 f"{_fmt(lo)} to {_fmt(hi)} at the kink u = {_fmt(k)}")
        checks.append(f"kink at u = {_fmt(k)}: slope {_fmt(lo)} -> {_fmt(hi)}, nondecreasing")
    return tuple(checks)


def check_generator(f) -> list[str]:
    """Check that f generates an f-divergence: f(1) = 0 and f convex on u > 0.

    Returns the side conditions checked, as readable strings, each naming how it was
    checked; raises ConvexityError saying why f is rejected."""
    f = _generator(f)
    f1 = sp.simplify(f.subs(U, 1))
    if f1 != 0:
        raise ConvexityError(f"f(1) = {f1}, but an f-divergence needs f(1) = 0")
    return ["f(1) = 0", *_convexity(f)]


# ---------------------------------------------------------------- the conjugate

@dataclass(frozen=True)
class Conjugate:
    """The variational form of D_f: sup_T E_P[T] − E_Q[f*(T)], T = activation(V)."""
    f: sp.Expr                    # the generator, in U
    fstar: sp.Expr                # f*(t) = sup_{u>0} t·u − f(u), in T, on domain
    domain: tuple                 # (lo, hi, lo_closed, hi_closed): where fstar holds
    activation: sp.Expr           # g_f(v), in V: ℝ onto the interior of dom f*
    critic_of_ratio: sp.Expr      # T*(u) = f'(u), the optimal critic at ratio u = p/q
    fstar_of_activation: sp.Expr  # f*(g_f(v)), in V, in a numerically stable form
    optimal_output: sp.Expr | None = None  # v*(u) with g_f(v*) = f'(u): f''(1) log u for a smooth f

    @property
    def ratio_of_output(self) -> sp.Expr:
        """u(v) = exp(v / f''(1)), the density ratio a log-ratio critic's output stands for."""
        return sp.exp(V / sp.simplify(self.optimal_output / sp.log(U)))


def _inside(lo, hi) -> list[float]:
    """A few points strictly inside (lo, hi)."""
    if lo == -sp.oo and hi == sp.oo:
        return [-1.5, 0.25, 2.0]
    if lo == -sp.oo:
        return [float(hi) - d for d in (0.1, 1.0, 4.0)]
    if hi == sp.oo:
        return [float(lo) + d for d in (0.1, 1.0, 4.0, 10.0)]
    return [float(lo + (hi - lo) * k / 4) for k in (1, 2, 3)]


def _unabs(e, lo, hi):
    """|a(t)| → ±a(t) for each a with no zero in (lo, hi): its sign there is constant."""
    def resolve(a):
        if sp.solveset(a.args[0], T, sp.Interval.open(lo, hi)) != sp.EmptySet:
            return a
        return a.args[0] * sp.sign(a.args[0].subs(T, _inside(lo, hi)[1]))
    return e.replace(lambda a: isinstance(a, sp.Abs), resolve)


def _tidy_logs(e, x, x0):
    """log(n/d) → log(s·n) − log(s·d) with s the sign of d, and log(c·a) → log c + log a
    for a number c > 0.  Valid because d has no zero where e is finite, so its sign at one
    point x0 is its sign everywhere: −log(2 − e^{2t}) rather than log(−1/(e^{2t} − 2))."""
    def split(arg):
        n, d = sp.fraction(arg)
        s = 1 if float(sp.re(d.subs(x, x0).evalf())) > 0 else -1
        out = 0
        for part, sign in ((s * n, 1), (s * d, -1)):
            c, rest = sp.factor_terms(sp.expand(part)).as_coeff_Mul()
            c, rest = (-c, -rest) if c < 0 else (c, rest)
            out += sign * (sp.log(c) + sp.log(rest))
        return out
    return e.replace(lambda a: isinstance(a, sp.log), lambda a: split(a.args[0]))


def _expm1(e):
    """c·e^w − c → c·expm1(w) in every sum: no cancellation when w is near 0."""
    def rewrite(s):
        for term in s.args:
            c, w = term.as_coeff_Mul()
            if isinstance(w, sp.exp) and -c in s.args:
                return s - term + c + c * expm1(w.args[0])
        return s
    return e.replace(lambda a: a.is_Add, rewrite)


def _agree(a, b, x, points, rtol=1e-9) -> bool:
    """a(x) = b(x), both finite and real, at every point."""
    for x0 in points:
        ya, yb = (complex(e.subs(x, x0).evalf(30)) for e in (a, b))
        if not (np.isfinite(ya) and abs(ya.imag) < 1e-12 and abs(ya - yb) <= rtol * (1 + abs(yb))):
            return False
    return True


def _real_roots(e):
    """e with every odd root of t taken real: t^(p/q) = sign(t)^p |t|^(p/q) for odd q (SymPy's
    principal root is complex for t < 0, so (u - 1)^4's f* needs the real cube root)."""
    def odd_root(x):
        return x.is_Pow and x.base.has(T) and x.exp.is_Rational and not x.exp.is_Integer and x.exp.q % 2 == 1
    return e.replace(odd_root, lambda x: sp.sign(x.base) ** x.exp.p * sp.Abs(x.base) ** x.exp)


def _lambert_to_omega(e):
    """W(x) → ω(log x), then e^{a + ω(z)} = e^{a + z}/ω(z) and log ω(z) = z − ω(z): the root
    u(t) of f'(u) = t and f*(t) in ω of the critic's value alone (Jeffreys: f*(t) = ω(1 − t) +
    1/ω(1 − t) + t − 2).  Valid for x > 0; the caller checks the root numerically."""
    def exp_rule(x):
        arg = sp.expand(x.args[0])
        omegas = [a for a in sp.Add.make_args(arg) if isinstance(a, wright_omega)]
        return sp.exp(arg - omegas[0] + omegas[0].args[0]) / omegas[0] if omegas else x

    def log_rule(x):
        a = x.args[0]
        return a.args[0] - a if isinstance(a, wright_omega) else x
    e = e.replace(lambda x: isinstance(x, sp.LambertW) and len(x.args) == 1,
                  lambda x: wright_omega(sp.expand_log(sp.log(x.args[0]), force=True)))
    for _ in range(3):
        e = sp.expand_log(e, force=True).replace(lambda x: isinstance(x, sp.exp), exp_rule)
        e = e.replace(lambda x: isinstance(x, sp.log), log_rule)
    return e


def _omega_only(e):
    """e(t) with t eliminated outside ω(z(t)) for z linear in t, by z = ω + log ω: no
    cancellation between t and ω(z(t)) when |t| is large (Jeffreys: f*(t) = 1/ω − log ω − 1,
    ω = ω(1 − t), where t + ω(1 − t) − 2 + 1/ω(1 − t) loses every digit at t = −1e20)."""
    omegas = list(e.atoms(wright_omega))
    if len(omegas) != 1 or not (omegas[0].args[0].is_polynomial(T) and sp.degree(omegas[0].args[0], T) == 1):
        return e
    w = sp.Dummy("w", positive=True)
    t_of_w, = sp.solve(sp.Eq(omegas[0].args[0], w + sp.log(w)), T)
    return sp.simplify(e.subs(omegas[0], w).subs(T, t_of_w)).subs(w, omegas[0])


def _real_on_side(e, side):
    """e(t) for t of one sign, written without i: with t = side·a, a > 0, the complex roots of
    a cubic's solution (|u − 1|^(5/2) for t ≤ 0) collapse to real powers of a = |t|."""
    a = sp.Symbol("a", positive=True)
    return sp.simplify(sp.expand_complex(e.subs(T, side * a))).subs(a, side * T)


def _in_abs(branches, lo, hi):
    """Two branches of f* that meet at t = 0 as one expression in |t|, or None: t^r → |t|^r
    in either branch, kept if it agrees with both (|u − 1|^(5/2): t + c·|t|^(5/3)).  JAX
    differentiates both sides of a jnp.where, and (−t)^(5/3) is NaN for t > 0."""
    if len(branches) != 2 or branches[0][1] != 0:
        return None
    (left, _), (right, _) = branches
    for e in (right, left.subs(T, -T)):
        merged = e.replace(lambda x: x.is_Pow and x.base == T and not x.exp.is_Integer,
                           lambda x: sp.Abs(T) ** x.exp)
        if merged != e and _agree(merged, left, T, _inside(lo, 0)) and _agree(merged, right, T, _inside(0, hi)):
            return merged
    return None


def _simplify_signed(e):
    """Simplify e(t) written with sign(t) and |t| (from _real_roots) as A(|t|) + sign(t)·B(|t|):
    with t = s·a, s = ±1 and a > 0, powers of s reduce mod 2 and A, B simplify with a > 0,
    where SymPy's simplify of the |t| form brings back complex principal roots (t^(2/3))."""
    s, a = sp.Symbol("s"), sp.Symbol("a", positive=True)
    e = sp.expand(e.subs({sp.sign(T): s, sp.Abs(T): a}).subs(T, s * a))
    e = e.replace(lambda x: x.is_Pow and x.base == s and x.exp.is_Integer, lambda x: s ** (x.exp % 2))
    even, odd = (sp.simplify((e.subs(s, 1) + sign * e.subs(s, -1)) / 2) for sign in (1, -1))
    return sp.simplify(even.subs(a, sp.Abs(T)) + sp.sign(T) * odd.subs(a, sp.Abs(T)))


def _branch_conjugate(g, gp, a, b, lo, hi):
    """f* on a curved piece g of f over u ∈ (a, b) whose slopes gp = g' fill (lo, hi): the
    root u(t) > 0 of g'(u) = t (the one that checks out at points of (lo, hi)), then
    f*(t) = t·u(t) − g(u(t)), simplified."""
    points = _inside(lo, hi)
    try:
        roots = sp.solve(sp.Eq(gp, T), U, check=False)  # checked below
    except NotImplementedError:
        roots = []
    if not roots:   # solve gives up on quintics; solveset over ℝ finds 1 + (t/6)^(1/5) for (u − 1)^6
        real = sp.solveset(sp.Eq(gp, T), U, sp.S.Reals)
        roots = list(real) if isinstance(real, sp.FiniteSet) else []
    roots = [_lambert_to_omega(r) if r.has(sp.LambertW) else r for r in roots]
    for r in roots + [_real_roots(r) for r in roots if _real_roots(r) != r]:
        us = [complex(r.subs(T, t0).evalf()) for t0 in points]
        if all(abs(u0.imag) < 1e-12 and a < u0.real < b for u0 in us) and \
                _agree(gp.subs(U, r), T, T, points):
            fstar = T * r - g.subs(U, r)
            if fstar.has(wright_omega):
                fstar = _omega_only(_lambert_to_omega(fstar))
            fstar = _simplify_signed(fstar) if fstar.has(sp.sign) else sp.simplify(fstar)
            if fstar.has(sp.I) and (hi <= 0 or lo >= 0):
                fstar = _real_on_side(fstar, 1 if lo >= 0 else -1)
            if fstar.has(sp.Abs):
                fstar = sp.simplify(_unabs(fstar, lo, hi))
            return _tidy_logs(fstar, T, points[1])
    raise ConvexityError(f"cannot derive f* in closed form: no root u > 0 of {gp} = t found")


_V_TEST = np.concatenate([[-200, -100, -60], np.linspace(-40, 40, 33), [60, 100, 200]])


def _float32_failures(x, ref) -> int:
    """At how many v of _V_TEST float32 evaluation of x(v), in the printer's softplus and
    sigmoid forms, misses the reference by more than 1e-3 (relative, or absolute below 1)."""
    try:
        with np.errstate(all="ignore"):
            y = sp.lambdify(V, with_softplus(x), "numpy")(_V_TEST.astype(np.float32)) + 0 * _V_TEST
    except (NameError, TypeError):  # a function NumPy lacks (LambertW): no preference
        return 0
    with np.errstate(invalid="ignore"):
        ok = abs(y - ref) <= 1e-3 * (1 + abs(ref))
    return int(np.sum(~ok & (abs(ref) < 1e30)))


def _reference(e) -> np.ndarray:
    """e(v) at _V_TEST to 120 digits (e^-200 is 1e-87); NaN where it is not finite."""
    exact = sp.lambdify(V, e, "mpmath")

    def value(v):
        try:
            return float(mpmath.re(exact(mpmath.mpf(v))))
        except (ZeroDivisionError, ValueError, OverflowError):
            return np.nan
    with mpmath.workdps(120):
        return np.array([value(v) for v in _V_TEST])


def _stablest(e):
    """Of a few equivalent forms of e(v), the one with fewest float32 failures on _V_TEST
    (v from −200 to 200) against a 120-digit reference, then the shortest."""
    ref = _reference(e)
    forms = [e, sp.powsimp(sp.expand(e))]
    forms += [_expm1(_tidy_logs(x, V, 0)) for x in forms]
    return min(forms, key=lambda x: (_float32_failures(x, ref), sp.count_ops(x)))


def stablest_in(e: sp.Expr, symbol: sp.Symbol) -> sp.Expr:
    """Of a few equivalent forms of e(symbol), the one float32 evaluates best for symbol from -200
    to 200 (against a 120-digit reference), then the shortest (as for the critic's forms). One
    candidate splits at 0: for v > 0 each e^v is written 1/t with t = e^-v in (0, 1) and
    simplified in t (|e^v - 1|/(e^v + 1) becomes |1 - e^-v|/(1 + e^-v): no overflow); each branch
    reads v clamped to its own side, so the branch not taken is finite and so is its gradient."""
    e = e.subs(symbol, V)
    best = _stablest(e)
    t = sp.Symbol("t", positive=True)
    upper = sp.simplify(e.subs(sp.exp(V), 1 / t)).subs(t, sp.exp(-V))
    if not upper.has(sp.exp(V)):
        split = sp.Piecewise((upper.subs(V, sp.Max(V, 0)), V > 0), (e.subs(V, sp.Min(V, 0)), True))
        ref = _reference(e)
        if _float32_failures(split, ref) < _float32_failures(best, ref):
            best = split
    return best.subs(V, symbol)


def _activation(lo, hi) -> sp.Expr:
    """g_f: ℝ onto the interior of (lo, hi), from the domain alone."""
    if lo == -sp.oo and hi == sp.oo:
        return V
    if lo == -sp.oo:
        return hi - sp.exp(-V)
    if hi == sp.oo:
        return lo + sp.exp(V)
    if lo == -hi:
        return hi * sp.tanh(V)
    return lo + (hi - lo) / (1 + sp.exp(-V))


@lru_cache(maxsize=None)
def _derive(f) -> Conjugate:
    """derive_conjugate for f in U: f* branch by branch in increasing t (see the module)."""
    _convexity(f)
    try:
        pieces = _pieces(f)
    except NotImplementedError as e:
        raise ConvexityError(f"cannot derive f* in closed form: {e}") from None
    gps = [sp.simplify(sp.diff(g, U)) for _, _, g in pieces]
    slopes = [(sp.limit(gp, U, a, "+"), sp.limit(gp, U, b, "-"))
              for (a, b, _), gp in zip(pieces, gps)]
    branches = []  # (f* on the t-interval ending at `upper`, upper), in increasing t
    for i, (a, b, g) in enumerate(pieces):
        lo, hi = slopes[i]
        if lo != hi:  # a curved piece
            branches.append((_branch_conjugate(g, gps[i], a, b, lo, hi), hi))
        if b != sp.oo and hi != slopes[i + 1][0]:  # a kink: f* affine between its slopes
            branches.append((T * b - g.subs(U, b), slopes[i + 1][0]))
    if not branches:
        raise ConvexityError(f"f(u) = {f} is affine: D_f is constant, nothing to estimate")
    lo, hi = slopes[0][0], slopes[-1][1]
    fstar = _in_abs(branches, lo, hi) or (branches[0][0] if len(branches) == 1 else sp.Piecewise(
        *[(e, T <= upper) for e, upper in branches[:-1]], (branches[-1][0], True)))
    ends = ((lo, lo * U - pieces[0][2], 0), (hi, hi * U - pieces[-1][2], sp.oo))
    closed = [end.is_finite and sp.limit(e, U, at).is_finite for end, e, at in ends]
    critic = sp.diff(f, U)
    found = _log_ratio_critic(f, critic, fstar) if len(pieces) == 1 else None
    if found is None:
        act, output = _activation(lo, hi), None
        composed = _stablest(fstar.subs(T, act))
        _evaluable(composed, fstar)
    else:
        act, composed, output = found
    return Conjugate(f=f, fstar=fstar, domain=(lo, hi, *closed), activation=act,
                     critic_of_ratio=min((critic, sp.simplify(critic)), key=sp.count_ops),
                     fstar_of_activation=composed, optimal_output=output)


def _log_ratio_critic(f, critic, fstar):
    """g_f(v) = f'(u) at u = e^{v/c}, c = f''(1) (1 if f''(1) = 0), for a smooth f: the critic's
    output is a scaled log density ratio, tight at v* = c·log p/q, with slope g_f'(0) = 1 for
    every f (Hellinger: 1 − e^{−v}, as f-GAN's); and f*(g_f(v)) = u f'(u) − f(u) (Fenchel–Young
    holds with equality at t = f'(u)), which needs no f* at all — Jeffreys' is v/2 + expm1(v/2),
    where f* needs ω.  Checked against f* at a few v; None (use the domain's activation)
    unless both g_f and f*∘g_f evaluate accurately in float32 on _V_TEST."""
    curvature = sp.simplify(sp.diff(critic, U).subs(U, 1))
    scale = curvature if curvature.is_positive else sp.Integer(1)
    u_of_v = sp.exp(V / scale)
    raw = sp.simplify(sp.expand_log(critic.subs(U, u_of_v), force=True))
    act = _stablest(raw)
    composed = _stablest(sp.simplify(sp.expand_log(u_of_v * raw - f.subs(U, u_of_v), force=True)))
    points = [-2.0, -0.5, 0.0, 1.5]
    if not _agree(composed, fstar.subs(T, act), V, points, rtol=1e-8):
        raise ConvexityError(f"internal: u f'(u) - f(u) = {composed} at u = {u_of_v} differs from f*(f'(u)) = {fstar.subs(T, act)}")
    if _float32_failures(act, _reference(act)) or _float32_failures(composed, _reference(composed)):
        return None
    try:
        _evaluable(composed, fstar)
    except ConvexityError:
        return None
    return act, composed, scale * sp.log(U)


def _evaluable(e, fstar) -> None:
    """f*∘g_f(v) must print as JAX and be real and finite in float32 wherever its 30-digit
    value is, for critic outputs v ∈ [−12, 12]: else the critic's loss would be NaN at run time.
    (Further out, float32 may round g_f(v) onto the edge of dom f*.)"""
    from compiler.math.distributions import to_jax_source
    if e.has(sp.I):
        raise ConvexityError(f"f*(t) = {fstar} has no real closed form the JAX backend can evaluate")
    try:
        to_jax_source(e, {V: "v"})
    except Exception as err:   # ValueError, or SymPy's PrintMethodNotImplementedError (LambertW)
        reason = str(err).splitlines()[0]
        raise ConvexityError(f"f*(t) = {fstar} has no form the JAX backend can evaluate ({reason})") from None
    vs = _V_TEST[abs(_V_TEST) <= 12]
    exact = sp.lambdify(V, e, "mpmath")
    with mpmath.workdps(30):
        ref = np.array([complex(exact(v)) for v in vs])
    with np.errstate(all="ignore"):
        y = np.asarray(sp.lambdify(V, e, "numpy")(vs.astype(np.float32)) + 0 * vs)
    wanted = np.isfinite(ref) & (abs(ref.imag) < 1e-9) & (abs(ref.real) < 1e30)
    bad = wanted & ~(np.isfinite(y) & (abs(np.imag(y)) < 1e-6) & (abs(np.real(y) - ref.real) <= 1e-2 * (1 + abs(ref.real))))
    if bad.any() or (abs(ref.imag) >= 1e-9).any():
        v0 = vs[np.argmax(bad | (abs(ref.imag) >= 1e-9))]
        raise ConvexityError(f"f*(t) = {fstar} is not real and finite in float32 at the critic output v = {v0:g}")


def derive_conjugate(f) -> Conjugate:
    """The convex conjugate of a generator f, its domain, the critic activation g_f, and
    f*∘g_f.  f must be convex on u > 0 (f(1) = 0 is not required: it only shifts f*).

    The domain is the range (lo, hi) of f' on (0, ∞) — the values of the optimal critic
    f'(p/q) — with each end included when f* is finite there, lo·u − f(u) → −f(0+) as
    u → 0 and hi·u − f(u) as u → ∞ (χ²: [−2, ∞); RKL: (−∞, 0), since log u is unbounded).
    Above hi, f* = ∞; below a finite lo, f* = −f(0+) is constant (χ²: −1), a part of
    dom f* no optimal critic uses and the activation never reaches.  (f-GAN's χ² conjugate
    t²/4 + t on all of ℝ lies above f* there: a valid but looser bound.)

    For a smooth f (one piece) the activation is g_f(v) = f'(e^{v/f''(1)}), so the critic's
    output is f''(1)·log p/q at the optimum (KL: v + 1; RKL: −e^{−v}; χ²: 2e^{v/2} − 2), a
    function as smooth as the two densities, where f'(p/q) itself can grow like q/p.
    For an f with kinks, whose f' is flat or jumps, the activation depends on the domain
    only: ℝ → v; (−∞, a) → a − e^{−v}; (a, ∞) → a + e^{v}; (−c, c) → c·tanh v;
    (a, b) → a + (b − a)·σ(v)."""
    return _derive(_generator(f))
