"""Functions of one real variable cut at their kinks, with SymPy: convexity proofs, pointwise
bounds, the 0-1 loss and its convex surrogates, the convex envelope of norm0, proximal maps."""
from __future__ import annotations

from functools import lru_cache

import sympy as sp
from sympy.core.relational import Relational

S = sp.Symbol("s", real=True)      # the margin of a 0-1 loss [s <= 0]
X = sp.Symbol("x", real=True)      # the argument of a proximal map
V = sp.Symbol("v", real=True)      # the point a proximal map is taken at
T = sp.Symbol("t", positive=True)  # the step of a proximal map

SURROGATES = {
    "hinge": sp.Max(0, 1 - S),
    "logistic": sp.log(1 + sp.exp(-S)) / sp.log(2),
}
LOGISTIC_LABEL = "logistic2"       # how the printer shows log2(1 + exp(-s))


class RelaxationError(Exception):
    """SymPy could not prove what a relaxation needs (convexity, the bound)."""


def zero_one(strict: bool) -> sp.Expr:
    """The 0-1 loss [s <= 0] (or [s < 0]) as a SymPy function of the margin s."""
    return sp.Heaviside(-S, 0 if strict else 1)


def _cuts(f: sp.Expr, x: sp.Symbol, lo, hi) -> list:
    """Points of (lo, hi) where a piece of f ends (Piecewise conditions, Max, Min, Abs, ...)."""
    pw = sp.piecewise_fold(f.rewrite(sp.Piecewise))
    points = set()
    for r in pw.atoms(Relational):
        roots = sp.solveset(r.lhs - r.rhs, x, sp.Interval.open(lo, hi))
        if not isinstance(roots, sp.FiniteSet):
            raise RelaxationError(f"cannot find where {r} changes for real {x}")
        points |= set(roots)
    return sorted(points, key=float)


def _at(pw: sp.Expr, x: sp.Symbol, x0) -> sp.Expr:
    """The smooth branch of the piecewise function `pw` in force around x = x0."""
    if not isinstance(pw, sp.Piecewise):
        return pw
    return next(e for e, c in pw.args if bool(c.subs(x, x0)))


def _inside(a, b):
    """A point of the open interval (a, b)."""
    if a == -sp.oo:
        return sp.Integer(0) if b == sp.oo else b - 1
    return a + 1 if b == sp.oo else (a + b) / 2


def pieces(f: sp.Expr, x: sp.Symbol, lo=-sp.oo, hi=sp.oo) -> list[tuple]:
    """f on (lo, hi) cut at its kinks: [(a, b, smooth branch of f on (a, b)), ...]."""
    lo, hi = sp.sympify(lo), sp.sympify(hi)
    pw = sp.piecewise_fold(f.rewrite(sp.Piecewise))
    ends = [lo, *_cuts(f, x, lo, hi), hi]
    return [(a, b, _at(pw, x, _inside(a, b))) for a, b in zip(ends, ends[1:])]


def _never_negative(e: sp.Expr, x: sp.Symbol, a, b) -> bool:
    """e ≥ 0 on (a, b): from SymPy's assumptions, by solving e < 0, or — when SymPy cannot
    solve it — because e is monotone there with a non-negative limit at the lower end."""
    interval = sp.Interval.open(a, b)
    for form in (e, sp.simplify(e)):
        if form.is_nonnegative or sp.solveset(form < 0, x, interval) is sp.S.EmptySet:
            return True
    slope = sp.diff(e, x)
    for falls, end in ((sp.solveset(slope > 0, x, interval), b), (sp.solveset(slope < 0, x, interval), a)):
        if falls is sp.S.EmptySet:
            limit = sp.limit(e, x, end, "-" if end == b else "+")
            return bool(limit.is_nonnegative)
    return False


def convex_on(f: sp.Expr, x: sp.Symbol, lo=-sp.oo, hi=sp.oo) -> str:
    """Prove f convex on (lo, hi): f'' ≥ 0 on every piece, f continuous with rising slope at
    every kink. Returns the statement checked; raises RelaxationError otherwise."""
    parts = pieces(f, x, lo, hi)
    for a, b, g in parts:
        if not _never_negative(sp.diff(g, x, 2), x, a, b):
            raise RelaxationError(f"{f} is not convex: its second derivative {sp.simplify(sp.diff(g, x, 2))} is negative somewhere on ({a}, {b})")
    kinks = []
    for (_, k, left), (_, _, right) in zip(parts, parts[1:]):
        if sp.simplify(left.subs(x, k) - right.subs(x, k)) != 0:
            raise RelaxationError(f"{f} jumps at {x} = {k}")
        dl, dr = sp.simplify(sp.diff(left, x).subs(x, k)), sp.simplify(sp.diff(right, x).subs(x, k))
        if not bool(dl <= dr):
            raise RelaxationError(f"{f} is not convex: its slope falls from {dl} to {dr} at {x} = {k}")
        kinks.append(f"slope {dl} -> {dr} at {x} = {k}")
    where = "the real line" if (lo, hi) == (-sp.oo, sp.oo) else f"[{lo}, {hi}]"
    return f"{f} is convex on {where} (SymPy: second derivative >= 0 on every piece" + \
        ("; " + ", ".join(kinks) if kinks else "") + ")"


def below(f: sp.Expr, g: sp.Expr, x: sp.Symbol, lo=-sp.oo, hi=sp.oo, names: tuple[str, str] | None = None) -> str:
    """Prove f ≤ g on [lo, hi] (closed where finite): on every piece of g - f and at every cut.
    `names` are how the statement shows f and g."""
    lo, hi = sp.sympify(lo), sp.sympify(hi)
    gap = g - f
    ends = [e for e in (lo, hi) if e.is_finite]
    for a, b, piece in pieces(gap, x, lo, hi):
        if not _never_negative(piece, x, a, b):
            raise RelaxationError(f"{f} <= {g} fails on ({a}, {b})")
    for k in _cuts(gap, x, lo, hi) + ends:
        if not bool(gap.subs(x, k) >= 0):
            raise RelaxationError(f"{f} <= {g} fails at {x} = {k}")
    where = "every real " + str(x) if (lo, hi) == (-sp.oo, sp.oo) else f"{x} in [{lo}, {hi}]"
    f_text, g_text = names or (str(f), str(g))
    return f"{f_text} <= {g_text} for {where} (SymPy: on every piece and at every kink)"


@lru_cache(maxsize=None)
def step_surrogate(kind: str, strict: bool) -> tuple[sp.Expr, tuple[str, ...]]:
    """The surrogate φ of [s <= 0] and what SymPy proved: φ convex, φ(s) ≥ [s <= 0] for all s."""
    phi = SURROGATES[kind]
    names = ("[s < 0]" if strict else "[s <= 0]", str(phi))
    return phi, (convex_on(phi, S), below(zero_one(strict), phi, S, names=names))


@lru_cache(maxsize=None)
def l0_envelope() -> tuple[str, ...]:
    """|u| is the convex envelope of [u != 0] on [-1, 1]: a convex minorant there that equals
    [u != 0] at u = -1, 0, 1 and is affine in between, so no convex minorant exceeds it."""
    u = sp.Symbol("u", real=True)
    indicator = sp.Piecewise((0, sp.Eq(u, 0)), (1, True))
    ends = (-1, 0, 1)
    tight = all(sp.Abs(u).subs(u, e) == indicator.subs(u, e) for e in ends)
    affine = all(sp.diff(g, u, 2) == 0 for _, _, g in pieces(sp.Abs(u), u, -1, 1))
    if not (tight and affine):
        raise RelaxationError("|u| is not the convex envelope of [u != 0] on [-1, 1]")
    return (convex_on(sp.Abs(u), u),
            below(sp.Abs(u), indicator, u, -1, 1, names=("|u|", "[u != 0]")),
            "|u| = [u != 0] at u = -1, 0, 1 and is affine in between: no convex minorant is larger, so norm1 is "
            "the convex envelope of norm0 on the box max|w_i| <= 1")


PROX_FUNCTIONS = {"norm1": sp.Abs(X), "sumsq": X ** 2}   # separable: g(w) = sum_i g(w_i)


@lru_cache(maxsize=None)
def derive_prox(kind: str) -> sp.Expr:
    """prox_{t g}(v) = argmin_x ½(x - v)² + t g(x) for the scalar g of `kind`, by SymPy:
    a stationary point inside a smooth piece of g, or a kink x = k when v - k lies between
    t times g's slopes on either side of it."""
    g = PROX_FUNCTIONS[kind]
    parts = pieces(g, X)
    cases = []
    for a, b, branch in parts:
        for x in sp.solve(sp.Eq(X - V + T * sp.diff(branch, X), 0), X):
            cond = sp.And(*(c for c in (x > a if a.is_finite else True, x < b if b.is_finite else True) if c is not True))
            cases.append((sp.simplify(x), cond if cond != sp.And() else True))
    for (_, k, left), (_, _, right) in zip(parts, parts[1:]):
        cases.append((k, sp.And(V - k >= T * sp.diff(left, X).subs(X, k), V - k <= T * sp.diff(right, X).subs(X, k))))
    return sp.Piecewise(*cases[:-1], (cases[-1][0], True))
