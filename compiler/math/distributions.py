"""SymPy mathematics of the language's distribution families.

Each family is written once, from its definition, as a log density (`log_density`) with
its support (`support`) and its reparameterisation x = T(ε) over a fixed standard member
(`reparameterization`). Closed forms are derived from these, never typed in:

* KL(q‖p) = E_q[log q(x) − log p(x)] and H(q) = −E_q[log q(x)] are computed as
  E_ε[h(T(ε))]: h is expanded into terms c·g(ε), c free of ε, and each E_ε[g(ε)] (a moment
  E[εᵏ], an absolute moment E[|ε|ᵏ], an exponential moment E[exp(aε)], or a shifted
  absolute moment E[|a + bε|]) is integrated against the standard density. The change of
  variables leaves KL invariant, so LogNormal‖LogNormal reduces to the Normal case by itself.
* Bernoulli expectations are finite sums over x ∈ {0, 1}.
* KL(q‖p) = +∞ where q puts mass outside the support of p; when that depends on the
  parameters (Uniform) the result is a Piecewise.

`to_jax_source` prints a derived expression as a `jnp`/`jax` Python expression.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy as sp
from sympy.printing.numpy import JaxPrinter

X = sp.Symbol("x", real=True)
EPS = sp.Symbol("epsilon", real=True)

PARAMETERS = {
    "Normal": ("loc", "scale"),
    "Laplace": ("loc", "scale"),
    "LogNormal": ("loc", "scale"),
    "Uniform": ("low", "high"),
    "Bernoulli": ("logits",),
    "Categorical": ("logits",),
}
_DISCRETE = ("Bernoulli", "Categorical")


def parameter_symbols(family: str, tag: str = "") -> tuple[sp.Symbol, ...]:
    """The family's parameters as symbols named `name_tag`; scales are positive, the rest real."""
    return tuple(sp.Symbol(f"{name}_{tag}" if tag else name, real=True, positive=True) if name == "scale"
                 else sp.Symbol(f"{name}_{tag}" if tag else name, real=True) for name in PARAMETERS[family])


def log_density(family: str, params: dict, x: sp.Expr = X) -> sp.Expr:
    """log pdf (log pmf) of `family` at x, valid on `support(family, params)`.

    Normal:      −(x−loc)²/(2 scale²) − log scale − ½ log 2π
    Laplace:     −|x−loc|/scale − log(2 scale)
    LogNormal:   log Normal(log x; loc, scale) − log x        (log x ~ Normal)
    Uniform:     −log(high − low)
    Bernoulli:   x·logits − log(1 + e^logits), or x log probs + (1−x) log(1−probs)
    Categorical: logits_x − log Σ_j e^logits_j                (logits: a sequence)
    """
    if family == "Normal":
        loc, scale = params["loc"], params["scale"]
        return -(x - loc) ** 2 / (2 * scale**2) - sp.log(scale) - sp.log(2 * sp.pi) / 2
    if family == "Laplace":
        return -sp.Abs(x - params["loc"]) / params["scale"] - sp.log(2 * params["scale"])
    if family == "LogNormal":
        return log_density("Normal", params, sp.log(x)) - sp.log(x)
    if family == "Uniform":
        return -sp.log(params["high"] - params["low"])
    if family == "Bernoulli":
        if "probs" in params:
            return x * sp.log(params["probs"]) + (1 - x) * sp.log(1 - params["probs"])
        return x * params["logits"] - sp.log(1 + sp.exp(params["logits"]))
    if family == "Categorical":
        logits = params["logits"]
        return (sum(sp.KroneckerDelta(x, k) * a for k, a in enumerate(logits))
                - sp.log(sum(sp.exp(a) for a in logits)))
    raise ValueError(f"no density for distribution family {family!r}")


def support(family: str, params: dict) -> tuple:
    """('real',) | ('positive',) | ('interval', low, high) | ('binary',) | ('categorical',)."""
    if family == "Uniform":
        return "interval", params["low"], params["high"]
    return {"Normal": ("real",), "Laplace": ("real",), "LogNormal": ("positive",),
            "Bernoulli": ("binary",), "Categorical": ("categorical",)}[family]


def reparameterization(family: str, params: dict, eps: sp.Symbol = EPS) -> tuple[str, dict, sp.Expr]:
    """(base family, base params, x): x = T(ε) has law `family(params)` when ε ~ base.

    Normal, Laplace: x = loc + scale·ε, ε standard; LogNormal: x = exp(loc + scale·ε),
    ε ~ Normal(0, 1); Uniform: x = low + (high − low)·ε, ε ~ Uniform(0, 1).
    """
    if family in ("Normal", "Laplace"):
        return family, {"loc": 0, "scale": 1}, params["loc"] + params["scale"] * eps
    if family == "LogNormal":
        return "Normal", {"loc": 0, "scale": 1}, sp.exp(params["loc"] + params["scale"] * eps)
    if family == "Uniform":
        return "Uniform", {"low": 0, "high": 1}, params["low"] + (params["high"] - params["low"]) * eps
    raise ValueError(f"{family} has no reparameterisation")


@dataclass(frozen=True)
class ClosedForm:
    """A derived closed form `expr` in the symbols q_params (and p_params); `how` says how."""
    q_params: tuple[sp.Symbol, ...]
    p_params: tuple[sp.Symbol, ...]
    expr: sp.Expr
    how: str


def _interval(family: str, params: dict) -> tuple[sp.Expr, sp.Expr]:
    """The support of a continuous family as (lo, hi)."""
    kind = support(family, params)
    if kind[0] == "interval":
        return sp.sympify(kind[1]), sp.sympify(kind[2])
    return {"real": (-sp.oo, sp.oo), "positive": (sp.S.Zero, sp.oo)}[kind[0]]


def _base(family: str) -> tuple[sp.Expr, tuple[sp.Expr, sp.Expr]]:
    """Density and support interval, in EPS, of the standard base member of `family`."""
    base, params, _ = reparameterization(family, {name: sp.Symbol(name) for name in PARAMETERS[family]})
    return sp.exp(log_density(base, params, EPS)), _interval(base, params)


@functools.lru_cache(maxsize=None)
def _integral(family: str, g: sp.Expr) -> sp.Expr | None:
    """∫ g(ε) base(ε) dε over the base support of `family`, split where an |·| changes sign.

    None if sympy leaves an integral, or the kinks cannot be ordered.
    """
    density, (lo, hi) = _base(family)
    integrand = g * density
    kinks = {sp.solve(a.args[0], EPS)[0] for a in integrand.atoms(sp.Abs)}
    try:
        cuts = sorted({lo, hi} | {k for k in kinks if bool(lo < k) and bool(k < hi)},
                      key=functools.cmp_to_key(lambda a, b: -1 if bool(a < b) else 1))
    except TypeError:  # a kink not comparable with the others
        return None
    total = 0
    for a, b in zip(cuts, cuts[1:]):
        inside = (a + b) / 2 if a.is_finite and b.is_finite else (b - 1 if a == -sp.oo else a + 1)
        signs = {f: sp.sign(f.args[0].subs(EPS, inside)) for f in integrand.atoms(sp.Abs)}
        if any(s not in (1, -1) for s in signs.values()):
            return None
        piece = sp.integrate(integrand.xreplace({f: s * f.args[0] for f, s in signs.items()}), (EPS, a, b))
        if piece.has(sp.Integral):
            return None
        total += piece
    return sp.simplify(sp.expand_func(total.rewrite(sp.erf)))


def _linear(e: sp.Expr) -> bool:
    return e.is_polynomial(EPS) and sp.degree(e, EPS) <= 1


def _tractable(f: sp.Expr) -> bool:
    """f is εᵏ or |a + bε|ᵏ (k a positive integer), or exp(a + bε)."""
    if isinstance(f, sp.exp):
        return _linear(f.args[0])
    base, k = f.as_base_exp()
    return k.is_Integer and k > 0 and (base == EPS or (isinstance(base, sp.Abs) and _linear(base.args[0])))


@functools.lru_cache(maxsize=None)
def _moment(family: str, g: sp.Expr) -> sp.Expr | None:
    """E[g(ε)] under the base of `family`, for g a product of `_tractable` factors.

    A shifted |a + bε| alone (a ≠ 0 symbolic) is |b|·m(|a/b|), with m(t) = E|t + ε| derived
    for t > 0; m is even because the base law is (checked) symmetric about 0.
    """
    if not all(map(_tractable, sp.Mul.make_args(g))):
        return None
    if isinstance(g, sp.Abs) and g.args[0].subs(EPS, 0).free_symbols:
        density, (lo, hi) = _base(family)
        b = g.args[0].coeff(EPS)
        t = sp.Dummy("t", positive=True)
        if lo != -hi or sp.simplify(density.subs(EPS, -EPS) - density) != 0 or b == 0:
            return None
        m = _integral(family, sp.Abs(t + EPS))
        return None if m is None else sp.Abs(b) * m.subs(t, sp.Abs(g.args[0].subs(EPS, 0) / b))
    return _integral(family, g)


def _expectation(family: str, h: sp.Expr) -> tuple[sp.Expr, list[str]] | None:
    """E[h(ε)] under the base of `family`, term by term; also the moments used, for `how`."""
    total, used = 0, []
    for term in sp.Add.make_args(sp.expand(h)):
        c, g = term.as_independent(EPS, as_Add=False)
        m = 1 if g == 1 else _moment(family, g)
        if m is None:
            return None
        if g != 1 and f"E[{g}] = {m}" not in used:
            used.append(f"E[{g}] = {m}")
        total += c * m
    return total, used


def _expect_under(family: str, q: dict, h_of_x) -> tuple[sp.Expr, str] | None:
    """E_{x~family(q)}[h(x)], simplified, and how it was derived; or None."""
    if family == "Bernoulli":
        total = sp.expand(sum(sp.exp(log_density(family, q, k)) * h_of_x(k) for k in (0, 1)))
        return (sp.collect(total, sorted(total.atoms(sp.log), key=str), func=sp.factor),
                "finite sum over x in {0, 1} of q(x) h(x), in logits")
    if family in _DISCRETE:
        return None
    base, base_params, x = reparameterization(family, q)
    found = _expectation(family, h_of_x(x))
    if found is None:
        return None
    expr, used = found
    law = f"{base}({', '.join(map(str, base_params.values()))})"
    how = f"x = {x}, epsilon ~ {law}; expanded in terms c*g(epsilon): " + "; ".join(used or ["constant"])
    return sp.simplify(expr), how


@functools.lru_cache(maxsize=None)
def kl_closed_form(q_family: str, p_family: str) -> ClosedForm | None:
    """KL(q‖p) = E_q[log q(x) − log p(x)] per element, with parameters `name_q`, `name_p`.

    +∞ where supp q ⊄ supp p (a Piecewise when that depends on the parameters);
    None when no closed form is derived (Categorical, mixed discrete/continuous, or an
    expectation outside the moments `_moment` knows, e.g. Uniform‖Laplace).
    """
    if q_family not in PARAMETERS or p_family not in PARAMETERS or "Categorical" in (q_family, p_family) \
            or (q_family in _DISCRETE) != (p_family in _DISCRETE):
        return None
    qs, ps = parameter_symbols(q_family, "q"), parameter_symbols(p_family, "p")
    q, p = dict(zip(PARAMETERS[q_family], qs)), dict(zip(PARAMETERS[p_family], ps))
    inside = sp.true
    if q_family not in _DISCRETE:
        (q_lo, q_hi), (p_lo, p_hi) = _interval(q_family, q), _interval(p_family, p)
        inside = sp.And(p_lo <= q_lo, q_hi <= p_hi)
    if inside is sp.false:
        return ClosedForm(qs, ps, sp.oo, "q puts mass outside the support of p")
    found = _expect_under(q_family, q, lambda x: log_density(q_family, q, x) - log_density(p_family, p, x))
    if found is None:
        return None
    expr, how = found
    if inside is not sp.true:
        expr, how = sp.Piecewise((expr, inside), (sp.oo, True)), how + f"; +oo unless {inside}"
    return ClosedForm(qs, ps, expr, "KL = E_q[log q - log p]; " + how)


@functools.lru_cache(maxsize=None)
def entropy_closed_form(family: str) -> ClosedForm | None:
    """H(q) = −E_q[log q(x)] (differential entropy for densities), parameters `name_q`."""
    if family not in PARAMETERS or family == "Categorical":
        return None
    qs = parameter_symbols(family, "q")
    q = dict(zip(PARAMETERS[family], qs))
    found = _expect_under(family, q, lambda x: -log_density(family, q, x))
    return None if found is None else ClosedForm(qs, (), found[0], "H = -E_q[log q]; " + found[1])


@dataclass(frozen=True)
class GaussianMarginal:
    """x | z ~ Normal(w z + b, sigma), z ~ Normal(a, s)  =>  x ~ Normal(loc, sqrt(variance)):
    `loc` and `variance` in the symbols w, b, a, s, sigma, and how they were derived."""

    w: sp.Symbol
    b: sp.Symbol
    a: sp.Symbol
    s: sp.Symbol
    sigma: sp.Symbol
    loc: sp.Expr
    variance: sp.Expr
    how: str


@functools.lru_cache(maxsize=None)
def linear_gaussian_marginal() -> GaussianMarginal:
    """Derive the marginal of x when z ~ Normal(a, s) enters x ~ Normal(w z + b, sigma) linearly.

    log p(x, z) is a quadratic A z² + B z + C in z (A < 0); SymPy integrates
    ∫ exp(−α z² + β z) dz (α > 0) once, so log p(x) = C + log ∫ exp(A z² + B z) dz. That is a
    quadratic in x, c₂ x² + c₁ x + c₀, of a Normal with variance −1/(2c₂) and mean c₁·variance;
    the result is checked to equal the Normal log density at those moments, identically."""
    z, x, w, b, a = sp.symbols("z x w b a", real=True)
    s, sigma = sp.symbols("s sigma", positive=True)
    alpha, beta = sp.Symbol("alpha", positive=True), sp.Symbol("beta", real=True)
    joint = log_density("Normal", {"loc": a, "scale": s}, z) + log_density("Normal", {"loc": w * z + b, "scale": sigma}, x)
    quadratic = sp.Poly(sp.expand(joint), z)
    if quadratic.degree() != 2:
        raise RuntimeError(f"internal: log p(x, z) is not quadratic in z: {joint}")
    A, B, C = (quadratic.coeff_monomial(z**k) for k in (2, 1, 0))
    gaussian = sp.simplify(sp.integrate(sp.exp(-alpha * z**2 + beta * z), (z, -sp.oo, sp.oo), conds="none"))
    log_marginal = sp.expand(sp.expand_log(C + sp.log(gaussian.subs({alpha: -A, beta: B})), force=True))
    in_x = sp.Poly(log_marginal, x)
    if in_x.degree() != 2:
        raise RuntimeError(f"internal: log p(x) is not quadratic in x: {log_marginal}")
    variance = sp.factor(sp.simplify(-1 / (2 * in_x.coeff_monomial(x**2))))
    loc = sp.simplify(in_x.coeff_monomial(x) * variance)
    residual = sp.simplify(log_marginal - log_density("Normal", {"loc": loc, "scale": sp.sqrt(variance)}, x))
    if residual != 0:
        raise RuntimeError(f"internal: the marginal differs from Normal({loc}, sqrt({variance})) by {residual}")
    how = (f"log p(x, z) = A z^2 + B z + C with A = {sp.simplify(A)}; SymPy: integral of exp(-alpha z^2 + beta z) dz "
           f"= {gaussian}; log p(x) is quadratic in x: Normal(loc = {loc}, variance = {variance}), checked identically")
    return GaussianMarginal(w, b, a, s, sigma, loc, variance, how)


class wright_omega(sp.Function):
    """ω(z) = W(e^z), the root w > 0 of w + log w = z: Lambert's W of e^z without overflow
    (conjugates of generators mixing log u and powers of u, Jeffreys' (u − 1) log u).
    ω' = ω/(1 + ω); printed as the runtime's `wright_omega`."""

    def fdiff(self, argindex=1):
        return self / (1 + self)

    def _eval_evalf(self, prec):
        return sp.LambertW(sp.exp(self.args[0]))._eval_evalf(prec)

    @staticmethod
    def _imp_(z):
        """The value for sp.lambdify: mpmath for an mpmath number, else Newton steps in NumPy."""
        if isinstance(z, mpmath.mpf | mpmath.mpc):
            return mpmath.lambertw(mpmath.exp(z))
        z = np.asarray(z, np.float64)
        w = np.where(z > 1, z - np.log(np.maximum(z, 1)), np.log1p(np.exp(np.minimum(z, 1))))
        with np.errstate(all="ignore"):
            for _ in range(8):
                w = w * (1 + z - np.log(w)) / (1 + w)
            return np.where(z < -20, np.exp(z), w)[()]


RUNTIME_FUNCTIONS = {"wright_omega": wright_omega}  # SymPy functions the emitted runtime defines


class _softplus(sp.Function):
    """log(1 + eˣ), printed as jax.nn.softplus."""
    _imp_ = staticmethod(lambda x: np.logaddexp(0, x))


class _sigmoid(sp.Function):
    """1/(1 + e⁻ˣ), printed as jax.nn.sigmoid."""
    _imp_ = staticmethod(lambda x: 0.5 * (1 + np.tanh(0.5 * x)))


def with_softplus(expr: sp.Expr) -> sp.Expr:
    """log(1 + eᶻ) → softplus(z), eᶻ/(1 + eᶻ) and 1/(1 + eᶻ) → sigmoid(±z): the forms the
    printer writes, each stable for large |z|."""
    for z in {e.args[0] for e in expr.atoms(sp.exp)}:
        expr = (expr.subs(sp.exp(z) / (1 + sp.exp(z)), _sigmoid(z)).subs(1 / (1 + sp.exp(z)), _sigmoid(-z))
                .subs(sp.log(1 + sp.exp(z)), _softplus(z)))
    return expr


class _JnpPrinter(JaxPrinter):
    """JaxPrinter writing `jnp.`, jnp.where for Piecewise, and the caller's names for symbols."""

    def __init__(self, names: dict):
        super().__init__({"fully_qualified_modules": True})
        self.names = names

    def _module_format(self, fqn, register=True):
        return "jnp." + fqn[len("jax.numpy."):] if fqn.startswith("jax.numpy.") else fqn

    def _print_Symbol(self, s):
        return self.names[s]

    def _print_Abs(self, e):
        return f"jnp.abs({self._print(e.args[0])})"

    def _print_erf(self, e):
        return f"jax.scipy.special.erf({self._print(e.args[0])})"

    def _print_Piecewise(self, e):
        out = self._print(e.args[-1].expr) if e.args[-1].cond == sp.true else "jnp.nan"
        for piece in reversed(e.args[:-1] if e.args[-1].cond == sp.true else e.args):
            out = f"jnp.where({self._print(piece.cond)}, {self._print(piece.expr)}, {out})"
        return out

    def _print_And(self, e):
        return functools.reduce(lambda a, b: f"jnp.logical_and({a}, {b})", map(self._print, e.args))

    def _print_Or(self, e):
        return functools.reduce(lambda a, b: f"jnp.logical_or({a}, {b})", map(self._print, e.args))

    def _print_Max(self, e):
        return functools.reduce(lambda a, b: f"jnp.maximum({a}, {b})", map(self._print, e.args))

    def _print_Min(self, e):
        return functools.reduce(lambda a, b: f"jnp.minimum({a}, {b})", map(self._print, e.args))

    def _print__softplus(self, e):
        return f"jax.nn.softplus({self._print(e.args[0])})"

    def _print_wright_omega(self, e):
        return f"wright_omega({self._print(e.args[0])})"

    def _print__sigmoid(self, e):
        return f"jax.nn.sigmoid({self._print(e.args[0])})"


def to_jax_source(expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
    """`expr` as a Python expression over `jnp`, `jax`, numbers and `names[symbol]`.

    log(1 + eᶻ) becomes jax.nn.softplus(z), eᶻ/(1 + eᶻ) and 1/(1 + eᶻ) jax.nn.sigmoid(±z),
    so the printed code is stable for large |z|. ValueError if a symbol has no name or the
    printer needs anything besides `jnp`, `jax` and the names.
    """
    expr = with_softplus(sp.expand_func(sp.sympify(expr).rewrite(sp.erf)))
    missing = expr.free_symbols - set(names)
    if missing:
        raise ValueError(f"no names for {sorted(map(str, missing))}")
    source = _JnpPrinter(names).doprint(expr)
    allowed = {w for name in names.values() for w in re.findall(r"[A-Za-z_]\w*", name)} | set(RUNTIME_FUNCTIONS)
    stray = [w for w in re.findall(r"(?<![\w.])[A-Za-z_][\w.]*", source)
             if w not in allowed and not w.startswith(("jnp.", "jax."))]
    if stray:
        raise ValueError(f"cannot print {stray} as jax: {source}")
    return source


@functools.lru_cache(maxsize=None)
def low_rank_normal_identities(d: int = 3, k: int = 2) -> str:
    """Check by SymPy the two identities the low-rank Normal log density N(x; m, D + F F^T) rests
    on, for a diagonal D > 0 (d x d) and an F (d x k) of generic symbols (d > k: a low rank),
    with the capacitance C_K = I_k + F^T D^-1 F:

        Woodbury:                 (D + F F^T)^-1 = D^-1 - D^-1 F C_K^-1 F^T D^-1
        matrix determinant lemma: det(D + F F^T) = det(D) det(C_K)

    Both are checked identically (the residuals simplify to 0); returns the line the derivation
    records. Raises where either fails."""
    diag = sp.diag(*sp.symbols(f"D0:{d}", positive=True))
    f = sp.Matrix(d, k, lambda i, j: sp.Symbol(f"F{i}{j}", real=True))
    cov = diag + f * f.T
    capacitance = sp.eye(k) + f.T * diag.inv() * f
    determinant = sp.simplify(cov.det() - diag.det() * capacitance.det())
    inverse = sp.simplify((diag.inv() - diag.inv() * f * capacitance.inv() * f.T * diag.inv()) * cov - sp.eye(d))
    if determinant != 0 or inverse != sp.zeros(d, d):
        raise RuntimeError(f"internal: Woodbury or the determinant lemma fails: {inverse}, {determinant}")
    return (f"SymPy, for a generic diagonal D > 0 ({d} x {d}) and F ({d} x {k}): (D + F F^T)^-1 = D^-1 - D^-1 F "
            "C_K^-1 F^T D^-1 and det(D + F F^T) = det(D) det(C_K), C_K = I + F^T D^-1 F, both identically")
