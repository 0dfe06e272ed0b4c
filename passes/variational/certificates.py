"""Numerical certificates of the variational rules (`attractor check`), loaded by the check
driver only: random instances on which each recorded relation is measured.

* jensen: on a random probabilistic PCA, where log p(x) is exact, the bound lies above
  -log p(x) for K = 1 and K = 8, its gap is KL(q(z | x) || p(z | x)), and K = 8 is tighter;
* analytic_kl: each emitted closed form against a Monte Carlo estimate of E_q[log q - log p];
* reparameterize, score_function: the gradient estimates against exact gradients (quadrature,
  enumeration of every state), within 4 standard errors;
* the options: stl against the closed-form ELBO gradient of a linear-Gaussian model, dreg against
  the reparameterised IWAE gradient, both with zero variance at the exact posterior;
  rao_blackwell against enumeration, with a lower variance than the plain score function;
* relax_discrete: the gradient's bias against enumeration at several temperatures (shrinking);
* the K-draw bound of -log E[exp(m z)] = -m^2/2: above it for K = 1, 4, 16 and tightening;
* closed_form_expectation, exact_expectation: each closed form E[z ~ D] f(z) against a Monte Carlo estimate (4 s.e.);
* jensen_convex: 1 / E[X] and -sqrt(E[X]) for X = softplus(a z + 1) (E[X] by quadrature): the
  K-draw bound above them for K = 1, 4, 16 and tightening.
"""
from __future__ import annotations

import functools
import itertools
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from scipy import integrate, stats

from compiler.driver.api import compile_source
from compiler.ir.diagnostics import AttractorError
from compiler.math.distributions import PARAMETERS, to_jax_source
from compiler.rewrite.certificate import Certificate, derivation_steps
from passes.variational.nodes import ClosedKL
from passes.variational.sampling import REPARAMETERIZABLE


def _module(source: str, via: str | None = None):
    """Compile and build a random instance of a rule."""
    return compile_source(source, via=via, filename="<certificate>").build()


def _mean_se(values) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, np.float64)
    return values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(len(values))


def _losses(mod, params, batch, keys) -> np.ndarray:
    """The loss at `params` once per key (one compiled function, called in a loop)."""
    loss = jax.jit(lambda k: mod.LOSSES["theta"](params, k, batch))
    return np.asarray([float(loss(k)) for k in keys])


def _gradients(mod, params, batch, keys) -> dict[str, np.ndarray]:
    grad = jax.grad(mod.LOSSES["theta"])
    return {k: np.asarray(v) for k, v in jax.jit(jax.vmap(lambda key: grad(params, key, batch)))(keys).items()}


REPEATS = 200
PPCA = """data x : real[{d}] from npz("{path}")
param W : real[{d}, {k}]
param b : real[{d}]
param A : real[{k}, {d}]
param c : real[{k}]
param s : real[{k}]
model p:
    z ~ Normal(0, 1) : real[{k}]
    x ~ Normal(W @ z + b, {sigma})
guide q(z | x):
    z ~ Normal(A @ x + c, softplus(s))
minimize E[x ~ data] -log p(x)
"""


def certify_jensen(prog, step, seed: int) -> list[Certificate]:
    """On a random probabilistic PCA (log p(x) exact: x ~ Normal(b, W W^T + sigma^2 I)) with a
    random linear guide, the bound is above -log p(x) for K = 1 and K = 8, and tighter at K = 8;
    on the program itself, the K = 8 bound is below the K = 1 bound at its initial parameters."""
    rng = np.random.default_rng(seed)
    d, k, sigma, n = 3, 2, 0.5, 6
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npz"
        x = rng.normal(size=(n, d)) * 1.5
        np.savez(path, x=x)
        source = PPCA.format(d=d, k=k, sigma=sigma, path=path.as_posix())
        params = {"W": rng.normal(size=(d, k)), "b": rng.normal(size=d), "A": rng.normal(size=(k, d)) * 0.3,
                  "c": rng.normal(size=k) * 0.3, "s": rng.normal(size=k) * 0.3}
        cov = params["W"] @ params["W"].T + sigma**2 * np.eye(d)
        diff = x - params["b"]
        exact = np.mean(0.5 * np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
                        + 0.5 * np.linalg.slogdet(cov)[1] + 0.5 * d * np.log(2 * np.pi))
        gap = np.mean(_posterior_kl(params, x, sigma))
        keys = jax.random.split(jax.random.PRNGKey(seed), 20)
        copies = {"x": np.tile(x, (REPEATS, 1))}       # each call averages REPEATS draws per example
        bounds = {}
        for K in (1, 8):
            mod = _module(source, via=f"jensen(iwae={K})")
            bounds[K] = _mean_se(_losses(mod, jax.tree.map(jnp.asarray, params), mod.full_batch(copies), keys))
    out = []
    for K, (m, se) in bounds.items():
        out.append(Certificate("jensen", f"-log p(x) <= bound (K = {K}) on a random PPCA",
                               f"-log p(x) = {exact:.4f} exactly; bound = {m:.4f} +- {3 * se:.4f} "
                               f"(3 s.e., {20 * REPEATS} draws per example)",
                               bool(exact <= m + 3 * se)))
    (m1, s1), (m8, s8) = bounds[1], bounds[8]
    out.append(Certificate("jensen", "gap = KL(q(z | x) || p(z | x)) on the PPCA (K = 1)",
                           f"bound - (-log p(x)) = {m1 - exact:.4f} +- {3 * s1:.4f}; "
                           f"exact KL to the posterior {gap:.4f}",
                           bool(abs(m1 - exact - gap) <= 3 * s1 + 1e-3)))
    out.append(Certificate("jensen", "the K = 8 bound is tighter than K = 1 on the PPCA",
                           f"K = 8: {m8:.4f}, K = 1: {m1:.4f} (-log p(x) = {exact:.4f})",
                           bool(m8 <= m1 + 3 * np.hypot(s1, s8))))
    out.extend(_tightens_on_program(prog, seed))
    return out


def _posterior_kl(params: dict, x: np.ndarray, sigma: float) -> np.ndarray:
    """KL(q(z | x) || p(z | x)) per example for the PPCA: both laws are Gaussian, the
    posterior N(S W^T (x - b) / sigma^2, S) with S = (I + W^T W / sigma^2)^-1."""
    W, k = params["W"], params["W"].shape[1]
    S = np.linalg.inv(np.eye(k) + W.T @ W / sigma**2)
    m = (x - params["b"]) @ W @ S.T / sigma**2
    var_q = np.log1p(np.exp(params["s"])) ** 2
    mu_q = x @ params["A"].T + params["c"]
    P = np.linalg.inv(S)
    diff = m - mu_q
    return 0.5 * (np.trace(P @ np.diag(var_q)) + np.einsum("ni,ij,nj->n", diff, P, diff) - k
                  + np.linalg.slogdet(S)[1] - np.sum(np.log(var_q)))


def _tightens_on_program(prog, seed: int) -> list[Certificate]:
    """IWAE K = 8 vs K = 1 on the program's own model, data and initial parameters."""
    try:
        data = prog.load_data()
    except AttractorError as e:
        return [Certificate("jensen", "the bound tightens with K on this program", f"skipped: {e.message}", True)]
    data = {k: np.asarray(v)[:64] for k, v in data.items()}
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), 16)
    values = {}
    for K in (1, 8):
        mod = compile_source(prog.source, via=f"jensen(iwae={K})", filename=prog.filename).build()
        params = mod.init(jax.random.PRNGKey(seed))
        values[K] = _mean_se(_losses(mod, params, mod.full_batch(data), keys))
    (m1, s1), (m8, s8) = values[1], values[8]
    sign = 1 if prog.program.players[0].sense == "min" else -1
    return [Certificate("jensen", "the bound tightens with K on this program (initial parameters, 64 examples)",
                        f"K = 1: {m1:.4f} +- {3 * s1:.4f}; K = 8: {m8:.4f} +- {3 * s8:.4f}",
                        bool(sign * (m8 - m1) <= 3 * np.hypot(s1, s8)))]


def _random_params(family: str, rng) -> dict[str, float]:
    if family == "Uniform":
        low = rng.uniform(-1, 0)
        return {"low": low, "high": low + rng.uniform(0.5, 2)}
    if family == "Bernoulli":
        return {"logits": rng.uniform(-2, 2)}
    return {"loc": rng.uniform(-1, 1), "scale": rng.uniform(0.5, 1.5)}


def _scipy_law(family: str, v: dict):
    if family == "Normal":
        return stats.norm(v["loc"], v["scale"])
    if family == "Laplace":
        return stats.laplace(v["loc"], v["scale"])
    if family == "LogNormal":
        return stats.lognorm(v["scale"], scale=np.exp(v["loc"]))
    if family == "Uniform":
        return stats.uniform(v["low"], v["high"] - v["low"])
    return stats.bernoulli(1 / (1 + np.exp(-v["logits"])))


def certify_analytic_kl(prog, step, seed: int) -> list[Certificate]:
    """Every emitted closed-form KL, printed to JAX as the backend prints it, against a Monte
    Carlo estimate of E_q[log q - log p] (SciPy laws, 200000 draws) at random parameters."""
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    for node in (n for pl in prog.program.players for n in pl.loss.walk() if isinstance(n, ClosedKL)):
        if (node.q_family, node.p_family) in seen:
            continue
        seen.add((node.q_family, node.p_family))
        qv = _random_params(node.q_family, rng)
        pv = _random_params(node.p_family, rng)
        if node.p_family == "Uniform":
            pv = {"low": qv.get("low", 0) - 0.5, "high": qv.get("high", 0) + 0.5}
        expr = sp.sympify(node.form.expr)
        values = [qv[k] for k in PARAMETERS[node.q_family]] + [pv[k] for k in PARAMETERS[node.p_family]]
        names = {s: f"a[{node.form.symbols.index(str(s))}]" for s in expr.free_symbols}
        closed = float(eval(to_jax_source(expr, names), {"jnp": jnp, "jax": jax, "a": jnp.asarray(values)}))
        q, p = _scipy_law(node.q_family, qv), _scipy_law(node.p_family, pv)
        draws = q.rvs(size=200_000, random_state=rng)
        logq = q.logpmf(draws) if node.q_family == "Bernoulli" else q.logpdf(draws)
        logp = p.logpmf(draws) if node.p_family == "Bernoulli" else p.logpdf(draws)
        m, se = _mean_se(logq - logp)
        claim = f"KL({node.q_family} || {node.p_family}) closed form = E_q[log q - log p]"
        out.append(Certificate("analytic_kl", claim,
                               f"closed form {closed:.5f}; Monte Carlo {m:.5f} +- {4 * se:.5f} (4 s.e.) at {qv}, {pv}",
                               bool(abs(closed - m) <= 4 * se + 1e-4)))
    return out


TEST_FUNCTION = "tanh(z - 0.3) + 0.2 * square(z)"


def _instance_source(family: str) -> str:
    args = {"Normal": "a, exp(b)", "Laplace": "a, exp(b)", "LogNormal": "a, exp(b)", "Uniform": "a, a + exp(b)"}[family]
    return f"param a : real\nparam b : real\nminimize E[z ~ {family}({args})] ({TEST_FUNCTION})\n"


def _exact_mean(family: str, a: float, b: float) -> float:
    """E[f(z)] by adaptive quadrature of the density (SciPy)."""
    v = {"low": a, "high": a + np.exp(b)} if family == "Uniform" else {"loc": a, "scale": np.exp(b)}
    law = _scipy_law(family, v)
    lo, hi = law.support()
    return integrate.quad(lambda z: _test_function(z) * law.pdf(z), lo, hi, epsabs=1e-11, epsrel=1e-11, limit=200)[0]


def _test_function(z):
    """TEST_FUNCTION, in NumPy."""
    return np.tanh(z - 0.3) + 0.2 * z**2


def _check_gradient(rule: str, what: str, estimates: dict, exact: dict) -> Certificate:
    worst, lines = True, []
    for name, samples in estimates.items():
        m, se = _mean_se(samples)
        ok = np.all(np.abs(m - exact[name]) <= 4 * se + 1e-4)
        worst &= bool(ok)
        lines.append(f"d/d{name}: estimate {np.round(m, 4).tolist()} +- {np.round(4 * se, 4).tolist()}, "
                     f"exact {np.round(exact[name], 4).tolist()}")
    return Certificate(rule, f"the {what} gradient estimate matches the exact gradient (4 s.e.)", "; ".join(lines),
                       worst)


def _families(prog, rule: str, allowed) -> list[str]:
    """The families the rule's steps drew (their `families` fact) that have a test instance;
    the first instance if none has."""
    found = {f for s in derivation_steps(prog) if s.rule == rule for f in s.fact("families", ()) if f in allowed}
    return sorted(found) or [allowed[0]]


def certify_reparameterize(prog, step, seed: int) -> list[Certificate]:
    """For each family the rule drew pathwise (Normal, Laplace, LogNormal, Uniform): the pathwise gradient of
    E[z ~ F(a, exp b)] f(z) at random (a, b) against finite differences of the quadrature value."""
    rng = np.random.default_rng(seed)
    out = []
    for family in _families(prog, "reparameterize", REPARAMETERIZABLE):
        a, b = rng.uniform(-0.5, 0.5), rng.uniform(-0.7, 0.2)
        mod = _module(_instance_source(family), via="reparameterize")
        params = {"a": jnp.asarray(a, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
        keys = jax.random.split(jax.random.PRNGKey(seed), 10000)
        h = 1e-4
        exact = {"a": (_exact_mean(family, a + h, b) - _exact_mean(family, a - h, b)) / (2 * h),
                 "b": (_exact_mean(family, a, b + h) - _exact_mean(family, a, b - h)) / (2 * h)}
        estimates = _gradients(mod, params, mod.full_batch({}), keys)
        out.append(_check_gradient("reparameterize", f"pathwise ({family})", estimates, exact))
    return out


SCORE_INSTANCES = {
    "Bernoulli": ("param a : real[3]\nparam v : real[3]\nminimize E[z ~ Bernoulli(logits=a)] (sum(z * v) - 1)^2\n",
                  lambda rng: {"a": rng.normal(size=3), "v": rng.normal(size=3)}),
    "Categorical": ("param a : real[4]\nparam v : real\nminimize E[z ~ Categorical(logits=a)] (v * z - 1)^2\n",
                    lambda rng: {"a": rng.normal(size=4), "v": rng.normal()}),
}


def _enumerated(family: str, params):
    """E[f(z)] of a SCORE_INSTANCES program by summing over every state (written directly)."""
    if family == "Bernoulli":
        states = jnp.asarray(list(itertools.product((0.0, 1.0), repeat=3)))
        logq = jnp.sum(states * params["a"] - jax.nn.softplus(params["a"]), axis=1)
        return jnp.sum(jnp.exp(logq) * (states @ params["v"] - 1) ** 2)
    states = jnp.arange(4.0)
    return jnp.sum(jax.nn.softmax(params["a"]) * (params["v"] * states - 1) ** 2)


def certify_score_function(prog, step, seed: int) -> list[Certificate]:
    """For Bernoulli and Categorical latents with few states: the score-function gradient
    (leave-one-out baseline) against the gradient of the exact sum over all states; and the
    VIMCO form when the program uses it."""
    rng = np.random.default_rng(seed)
    out = []
    for family in _families(prog, "score_function", tuple(SCORE_INSTANCES)):
        source, draw = SCORE_INSTANCES[family]
        mod = _module(source, via="score_function")
        params = {k: jnp.asarray(v, jnp.float32) for k, v in draw(rng).items()}
        exact = {k: np.asarray(v) for k, v in jax.grad(lambda p: _enumerated(family, p))(params).items()}
        keys = jax.random.split(jax.random.PRNGKey(seed), 10000)
        estimates = _gradients(mod, params, mod.full_batch({}), keys)
        out.append(_check_gradient("score_function", f"score-function ({family})", estimates, exact))
    if any(s.fact("baseline") == "vimco" for s in derivation_steps(prog) if s.rule == "score_function"):
        out.append(certify_vimco(seed))
    return out


VIMCO = """data x : real[2] from npz("{path}")
param a : real[2]
param w : real[2]
model p:
    z ~ Bernoulli(logits=0) : real[2]
    x ~ Normal(w * z, 1)
guide q(z | x):
    z ~ Bernoulli(logits=a)
minimize E[x ~ data] -log p(x) via jensen(iwae=2)
"""


def certify_vimco(seed: int) -> Certificate:
    """Importance-weighted bound (K = 2) of a two-bit Bernoulli model: the VIMCO gradient
    against the gradient of the exact sum over all 4^2 pairs of draws."""
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 1.0, size=(1, 2))
    params = {"a": jnp.asarray(rng.normal(size=2), jnp.float32), "w": jnp.asarray(rng.normal(size=2), jnp.float32)}
    states = jnp.asarray(list(itertools.product((0.0, 1.0), repeat=2)))

    def exact(p):
        logq = jnp.sum(states * p["a"] - jax.nn.softplus(p["a"]), axis=1)
        logp = jnp.sum(-0.5 * (x[0] - p["w"] * states) ** 2, axis=1) - jnp.log(2 * jnp.pi) + 2 * jnp.log(0.5)
        logw = logp - logq
        bound = jnp.logaddexp(logw[:, None], logw[None, :]) - jnp.log(2.0)
        return -jnp.sum(jnp.exp(logq[:, None] + logq[None, :]) * bound)

    want = {k: np.asarray(v) for k, v in jax.grad(exact)(params).items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npz"
        np.savez(path, x=x)
        mod = _module(VIMCO.format(path=path.as_posix()))
        keys = jax.random.split(jax.random.PRNGKey(seed), 10000)
        got = _gradients(mod, params, mod.full_batch({"x": x}), keys)
    return _check_gradient("score_function", "VIMCO (importance-weighted bound, K = 2, Bernoulli)", got, want)


ENUMERATED = {
    "Bernoulli and Categorical latents, Normal observation": ("""data x : real from npz("{path}")
param a : real[2]
param c : real[3]
param w : real[2]
param v : real
model q:
    z ~ Bernoulli(logits=a) : real[2]
    k ~ Categorical(logits=c)
    x ~ Normal(sum(w * z) + v * k, 0.8)
minimize E[x ~ data] -log q(x)
""", lambda rng: {"a": rng.normal(size=2), "c": rng.normal(size=3), "w": rng.normal(size=2), "v": rng.normal()},
        lambda rng: {"x": rng.normal(0.5, 1.5, size=7)}),
    "three Bernoulli latents, two Bernoulli observations": ("""data x : real[2] from npz("{path}")
param a : real[3]
param W : real[2, 3]
param b : real[2]
model q:
    z ~ Bernoulli(logits=a) : real[3]
    x ~ Bernoulli(logits=W @ z + b)
minimize E[x ~ data] -log q(x)
""", lambda rng: {"a": rng.normal(size=3), "W": rng.normal(size=(2, 3)) * 1.5, "b": rng.normal(size=2)},
        lambda rng: {"x": rng.integers(0, 2, size=(7, 2)).astype(np.float64)}),
}


def _log_normal(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)


def _log_bernoulli(z, logits):
    return z * logits - np.logaddexp(0.0, logits)


def _brute_force_nll(what: str, p: dict, x: np.ndarray) -> float:
    """-1/n sum_i log sum_z p(x_i, z) of an ENUMERATED instance, in float64, over itertools.product
    of every latent configuration (written directly from the model's lines)."""
    per_config = []
    if what.startswith("Bernoulli and Categorical"):
        log_pi = p["c"] - np.logaddexp.reduce(p["c"])
        for z0, z1, k in itertools.product((0.0, 1.0), (0.0, 1.0), range(3)):
            z = np.array([z0, z1])
            prior = _log_bernoulli(z, p["a"]).sum() + log_pi[k]
            per_config.append(prior + _log_normal(x, z @ p["w"] + p["v"] * k, 0.8))
    else:
        for bits in itertools.product((0.0, 1.0), repeat=3):
            z = np.array(bits)
            prior = _log_bernoulli(z, p["a"]).sum()
            per_config.append(prior + _log_bernoulli(x, p["W"] @ z + p["b"]).sum(axis=1))
    return float(-np.mean(np.logaddexp.reduce(np.stack(per_config), axis=0)))


TWO_LATENT_GAUSSIAN = """data x : real[2] from npz("{path}")
param w : real[2]
param v : real
param b : real[2]
param a : real[2]
param ls : real
param lt : real
model p:
    z ~ Normal(a, exp(ls)) : real[2]
    u ~ Normal(1, 0.5) : real[2]
    x ~ Normal(w * (z - b) + v * u, exp(lt))
minimize E[x ~ data] -log p(x)
"""


def certify_gaussian_marginal(prog, step, seed: int) -> list[Certificate]:
    """On a random instance with two vector latents, the compiled -log p(x) against numerical
    quadrature of p(x) = double integral of p(z) p(u) p(x | z, u) dz du (a 100 x 100 tensor
    Gauss-Hermite rule under the two priors, the likelihood evaluated at every node pair: nothing of
    the closed form is used), in float64, at 3 random parameter points."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 1.5, size=(4, 2))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npz"
        np.savez(path, x=x)
        instance = compile_source(TWO_LATENT_GAUSSIAN.replace("{path}", path.as_posix()),
                                  filename="<certificate of gaussian_marginal>")
        mod = instance.build()
        batch = mod.full_batch({"x": x})
    loss = jax.jit(mod.LOSSES["theta"])
    nodes, weights = np.polynomial.hermite_e.hermegauss(100)
    weights = weights / weights.sum()
    rows, worst = [], 0.0
    for _ in range(3):
        p = {"w": rng.normal(size=2), "v": float(rng.normal()), "b": rng.normal(size=2), "a": rng.normal(size=2),
             "ls": float(rng.normal() * 0.3), "lt": float(rng.normal() * 0.3)}
        got = float(loss({k: jnp.asarray(v, jnp.float32) for k, v in p.items()}, None, batch))
        z = p["a"][None, :] + np.exp(p["ls"]) * nodes[:, None]          # [node, component]
        u = 1.0 + 0.5 * nodes
        mean = p["w"] * (z[:, None, :] - p["b"]) + p["v"] * u[None, :, None]     # [z node, u node, component]
        like = stats.norm.pdf(x[:, None, None, :], mean[None], np.exp(p["lt"]))  # [example, z node, u node, component]
        marginal = np.einsum("i,j,nijc->nc", weights, weights, like)
        want = float(-np.log(marginal).sum(axis=1).mean())
        worst = max(worst, abs(got - want) / max(1.0, abs(want)))
        rows.append(f"{got:.6f} vs {want:.6f}")
    return [Certificate("gaussian_marginal", "the closed-form -log p(x) of a linear-Gaussian model equals numerical "
                        "quadrature over its latents", "; ".join(rows) + f" (Gauss-Hermite quadrature, float64): largest relative error "
                        f"{worst:.2g}", bool(worst <= 1e-5))]


def certify_enumerate(prog, step, seed: int) -> list[Certificate]:
    """On random instances with a few Bernoulli and Categorical latents (12 and 8 configurations), the
    enumerated -log p(x) equals an independent float64 sum over every configuration (itertools.product)
    to float32 precision, at 3 random parameter points each."""
    rng = np.random.default_rng(seed)
    out = []
    for what, (source, draw_params, draw_data) in ENUMERATED.items():
        data = draw_data(rng)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "x.npz"
            np.savez(path, **data)
            prog_instance = compile_source(source.replace("{path}", path.as_posix()), via="enumerate",
                                           filename="<certificate of enumerate>")
            mod = prog_instance.build()
            batch = mod.full_batch(data)
        loss = jax.jit(mod.LOSSES["theta"])
        errors = []
        for _ in range(3):
            params = draw_params(rng)
            got = float(loss({k: jnp.asarray(v, jnp.float32) for k, v in params.items()}, None, batch))
            want = _brute_force_nll(what, params, np.asarray(data["x"], np.float64))
            errors.append((got, want, abs(got - want) / max(1.0, abs(want))))
        worst = max(e for _, _, e in errors)
        claim = f"the enumerated -log p(x) equals the sum over every configuration ({what})"
        out.append(Certificate("enumerate", claim,
                               "; ".join(f"{g:.6f} vs {w:.6f}" for g, w, _ in errors)
                               + f" (brute force, float64): largest relative error {worst:.2g}", bool(worst <= 1e-5)))
    if step.fact("continuous"):
        out.append(_certify_inside_bound(rng))
    return out


INSIDE_BOUND = """data x : real from npz("{path}")
param m : real[3]
param c : real[3]
param gm : real
param gb : real
param gs : real
model p:
    k ~ Categorical(logits=c)
    z ~ Normal(0, 1)
    x ~ Normal(m[0] * k + m[1] * z + m[2] * k * z, 0.7)
guide q(z | x):
    z ~ Normal(gm * x + gb, softplus(gs))
minimize E[x ~ data] -log p(x)
"""


def _certify_inside_bound(rng) -> Certificate:
    """A Categorical k (3 states) summed out inside the ELBO over a continuous z: the compiled loss,
    averaged over 4000 draws, equals E_q(z | x)[log q(z | x) - log sum_k p(x, z, k)] computed by
    Gauss-Hermite quadrature in z (120 nodes) and an explicit sum over k in float64, within 4
    standard errors, at 3 random parameter points."""
    x = rng.normal(0.3, 1.4, size=6)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npz"
        np.savez(path, x=x)
        prog = compile_source(INSIDE_BOUND.replace("{path}", path.as_posix()), filename="<certificate of enumerate>")
        mod = prog.build()
        batch = mod.full_batch({"x": x})
    assert prog.derivation.steps[0].fact("continuous") == ("z",)
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    weights = weights / weights.sum()
    keys = jax.random.split(jax.random.PRNGKey(int(rng.integers(2**31))), 4000)
    losses = jax.jit(jax.vmap(lambda params, key: mod.LOSSES["theta"](params, key, batch), in_axes=(None, 0)))
    rows, passed = [], True
    for _ in range(3):
        p = {"m": rng.normal(size=3), "c": rng.normal(size=3), "gm": rng.normal() * 0.5,
             "gb": rng.normal() * 0.5, "gs": rng.normal() * 0.5}
        loc, scale = p["gm"] * x[:, None] + p["gb"], np.logaddexp(0.0, p["gs"])
        z = loc + scale * nodes[None, :]                          # [example, node]
        log_q = _log_normal(z, loc, scale)
        log_pi = p["c"] - np.logaddexp.reduce(p["c"])
        joint = [log_pi[k] + _log_normal(z, 0.0, 1.0)
                 + _log_normal(x[:, None], p["m"][0] * k + p["m"][1] * z + p["m"][2] * k * z, 0.7) for k in range(3)]
        exact = float(np.mean(((log_q - np.logaddexp.reduce(np.stack(joint), axis=0)) * weights).sum(axis=1)))
        mean, se = _mean_se(losses({k: jnp.asarray(v, jnp.float32) for k, v in p.items()}, keys))
        ok = abs(mean - exact) <= 4 * se + 1e-5
        passed &= bool(ok)
        rows.append(f"{mean:.5f} +- {se:.5f} vs {exact:.5f}")
    return Certificate("enumerate", "a Categorical latent summed out inside the ELBO over a continuous latent: the "
                       "compiled bound equals quadrature in z with an explicit sum over the states",
                       "; ".join(rows) + " (4000 draws vs Gauss-Hermite quadrature, float64; within 4 s.e.)", passed)


# ---- the estimator options (stl, dreg, rao_blackwell), relax_discrete and the K-draw bound of log E --------

LINEAR_GAUSSIAN = """data x : real from npz("{path}")
param w : real
param b : real
param a : real
param c : real
param s : real
model p:
    z ~ Normal(0, 1)
    x ~ Normal(w * z + b, 1)
guide q(z | x):
    z ~ Normal(a * x + c, softplus(s))
minimize {objective}
"""
WRITTEN_ELBO = "E[x ~ data] E[z ~ q(z | x)] (log q(z | x) - log p(x, z))"
MARGINAL = "E[x ~ data] -log p(x)"


def _negative_elbo(p, x):
    """-ELBO of LINEAR_GAUSSIAN in closed form (every term a Gaussian moment), averaged over x."""
    m, s = p["a"] * x + p["c"], jax.nn.softplus(p["s"])
    log_lik = -0.5 * jnp.log(2 * jnp.pi) - 0.5 * ((x - p["w"] * m - p["b"]) ** 2 + p["w"] ** 2 * s**2)
    log_prior = -0.5 * jnp.log(2 * jnp.pi) - 0.5 * (m**2 + s**2)
    log_q = -0.5 * jnp.log(2 * jnp.pi) - jnp.log(s) - 0.5
    return -jnp.mean(log_lik + log_prior - log_q)


def _linear_gaussian(seed: int, objective: str, via: str | None, at_posterior: bool):
    """The module of LINEAR_GAUSSIAN, random parameters (the guide at the exact posterior
    N(w (x - b) / (w^2 + 1), 1 / (w^2 + 1)) when asked), one data point and its batch."""
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 1.5, size=1)
    w, b = rng.uniform(0.5, 1.5), rng.normal()
    if at_posterior:
        prec = w * w + 1
        guide = {"a": w / prec, "c": -w * b / prec, "s": np.log(np.expm1(np.sqrt(1 / prec)))}
    else:
        guide = {"a": rng.normal() * 0.5, "c": rng.normal() * 0.5, "s": rng.normal() * 0.5}
    params = {k: jnp.asarray(v, jnp.float32) for k, v in ({"w": w, "b": b} | guide).items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npz"
        np.savez(path, x=x)
        mod = _module(LINEAR_GAUSSIAN.format(path=path.as_posix(), objective=objective), via=via)
    return mod, params, mod.full_batch({"x": x}), x


def _zero_variance(rule: str, what: str, grads: dict, names) -> Certificate:
    worst = max(float(np.max(np.var(grads[k], axis=0))) for k in names)
    return Certificate(rule, f"{what}: the guide's gradient has zero variance when the guide is the exact posterior",
                       f"largest variance over {len(next(iter(grads.values())))} draws: {worst:.2g}", worst <= 1e-6)


def certify_stl(seed: int) -> list[Certificate]:
    """Sticking the landing on a linear-Gaussian model with the ELBO written out (its value and
    gradient in closed form): unbiased (4 s.e.) at random parameters; zero variance at the posterior."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 4000)
    mod, params, batch, x = _linear_gaussian(seed, WRITTEN_ELBO, "reparameterize(stl)", at_posterior=False)
    exact = {k: np.asarray(v) for k, v in jax.grad(lambda p: _negative_elbo(p, x))(params).items()}
    out = [_check_gradient("reparameterize", "sticking-the-landing (linear Gaussian, closed-form ELBO)",
                           _gradients(mod, params, batch, keys), exact)]
    mod, params, batch, _ = _linear_gaussian(seed, WRITTEN_ELBO, "reparameterize(stl)", at_posterior=True)
    out.append(_zero_variance("reparameterize", "sticking the landing", _gradients(mod, params, batch, keys), "acs"))
    return out


def _agree(rule: str, what: str, got: dict, reference: dict) -> Certificate:
    """Two unbiased estimators of one gradient: their means within 4 combined standard errors."""
    worst, lines = True, []
    for name in got:
        (m1, s1), (m2, s2) = _mean_se(got[name]), _mean_se(reference[name])
        worst &= bool(np.all(np.abs(m1 - m2) <= 4 * np.hypot(s1, s2) + 1e-4))
        lines.append(f"d/d{name}: {np.round(m1, 4).tolist()} vs {np.round(m2, 4).tolist()} "
                     f"+- {np.round(4 * np.hypot(s1, s2), 4).tolist()}")
    return Certificate(rule, what, "; ".join(lines), worst)


def certify_dreg(seed: int) -> list[Certificate]:
    """The doubly reparameterised gradient of the K = 5 importance-weighted bound of a
    linear-Gaussian model against the plain reparameterised one (both unbiased for the same
    gradient: means within 4 combined s.e.), and zero variance at the exact posterior."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 4000)
    mod, params, batch, _ = _linear_gaussian(seed, MARGINAL, "jensen(iwae=5, dreg)", at_posterior=False)
    plain, _, _, _ = _linear_gaussian(seed, MARGINAL, "jensen(iwae=5)", at_posterior=False)
    out = [_agree("jensen", "the DReG gradient (K = 5) matches the reparameterised IWAE gradient (4 combined s.e.)",
                  _gradients(mod, params, batch, keys), _gradients(plain, params, batch, keys))]
    mod, params, batch, _ = _linear_gaussian(seed, MARGINAL, "jensen(iwae=5, dreg)", at_posterior=True)
    out.append(_zero_variance("jensen", "DReG (K = 5)", _gradients(mod, params, batch, keys), "acs"))
    return out


LOG_EXPECTATION = "param m : real\nminimize -log E[z ~ Normal(0, 1)] exp(m * z)\n"


def certify_log_expectation(seed: int) -> list[Certificate]:
    """-log E[z ~ Normal(0, 1)] exp(m z) = -m^2/2 exactly: at random m the K-draw bound lies
    above it (4 s.e.) for K = 1, 4, 16, and its mean falls as K grows."""
    rng = np.random.default_rng(seed)
    keys = jax.random.split(jax.random.PRNGKey(seed), 4000)
    ok, lines = True, []
    for m in rng.uniform(0.5, 1.5, size=2):
        truth, means = -m * m / 2, []
        for k in (1, 4, 16):
            mod = _module(LOG_EXPECTATION, via=f"jensen(iwae={k})")
            mean, se = _mean_se(_losses(mod, {"m": jnp.asarray(m, jnp.float32)}, mod.full_batch({}), keys))
            ok &= bool(mean + 4 * se >= truth)
            means.append((mean, se))
        ok &= all(a[0] > b[0] - 4 * np.hypot(a[1], b[1]) for a, b in zip(means, means[1:]))
        lines.append(f"m = {m:.3f}: truth {truth:.4f}; K = 1, 4, 16: "
                     + ", ".join(f"{mu:.4f} +- {4 * se:.4f}" for mu, se in means))
    return [Certificate("jensen", "the K-draw bound of -log E lies above it and tightens as K grows",
                        "; ".join(lines), ok)]


CONVEX_OF_EXPECTATION = {"1 / E[X]": ("param a : real\nminimize 1 / E[z ~ Normal(0, 1)] softplus(a * z + 1)\n", lambda u: 1 / u),
                         "-sqrt(E[X])": ("param a : real\nminimize -sqrt(E[z ~ Normal(0, 1)] softplus(a * z + 1))\n",
                                         lambda u: -np.sqrt(u))}


def _softplus_mean(a: float) -> float:
    """E[softplus(a z + 1)], z ~ Normal(0, 1), by 120-point Gauss-Hermite quadrature (exact to float64 here)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    return float(np.sum(weights * np.logaddexp(0.0, a * nodes + 1)) / np.sqrt(2 * np.pi))


def certify_jensen_convex(prog, step, seed: int) -> list[Certificate]:
    """s*phi(E[softplus(a z + 1)]) for phi(u) = 1/u (s = +1) and sqrt(u) (s = -1), E[X] by quadrature:
    at random a the K-draw bound E[s*phi(mean of K draws)] lies above s*phi(E X) (4 s.e.) for
    K = 1, 4, 16, and its mean falls as K grows (4 combined s.e.)."""
    rng = np.random.default_rng(seed)
    keys = jax.random.split(jax.random.PRNGKey(seed), 20000)
    out = []
    for name, (source, signed_phi) in CONVEX_OF_EXPECTATION.items():
        ok, lines = True, []
        modules = {k: _module(source, via=f"jensen_convex(draws={k})") for k in (1, 4, 16)}
        for a in rng.uniform(0.5, 2.0, size=2):
            truth, means = float(signed_phi(_softplus_mean(a))), []
            for k, mod in modules.items():
                params = {"a": jnp.asarray(a, jnp.float32)}
                losses = jax.jit(jax.vmap(lambda key: mod.LOSSES["theta"](params, key, mod.full_batch({}))))(keys)
                mean, se = _mean_se(np.asarray(losses))
                ok &= bool(mean + 4 * se >= truth)
                means.append((mean, se))
            ok &= all(x[0] > y[0] - 4 * np.hypot(x[1], y[1]) for x, y in zip(means, means[1:]))
            lines.append(f"{name}, a = {a:.3f}: truth {truth:.5f}; K = 1, 4, 16: "
                         + ", ".join(f"{mu:.5f} +- {4 * se:.5f}" for mu, se in means))
        out.append(Certificate("jensen_convex", f"the K-draw Jensen bound of {name} lies above it and tightens as K grows",
                               "; ".join(lines), ok))
    return out


def certify_jensen_steps(prog, step, seed: int) -> list[Certificate]:
    """The certificates of what the program's jensen steps built: the ELBO / importance-weighted
    bound, its DReG gradient, the K-draw bound of a log-expectation."""
    steps = [s for s in derivation_steps(prog) if s.rule == "jensen"]
    out = []
    if any(s.fact("bound") in ("elbo", "iwae") for s in steps):
        out += certify_jensen(prog, step, seed)
    if any(s.fact("dreg") for s in steps):
        out += certify_dreg(seed)
    if any(s.fact("bound") == "log_expectation" for s in steps):
        out += certify_log_expectation(seed)
    return out


def certify_reparameterize_steps(prog, step, seed: int) -> list[Certificate]:
    out = certify_reparameterize(prog, step, seed)
    if any(s.fact("stl") for s in derivation_steps(prog) if s.rule == "reparameterize"):
        out += certify_stl(seed)
    return out


RAO_BLACKWELL = """param a : real[3]
param v : real[3]
param w : real[3]
model r:
    z ~ Bernoulli(logits=v) : real[3]
minimize E[z ~ Bernoulli(logits=a)] (log r(z) + (sum(w * z) - 1)^2)
"""


def certify_rao_blackwell(seed: int) -> list[Certificate]:
    """Rao-Blackwellised score function on three Bernoulli bits: unbiased against the gradient
    of the exact sum over the 8 states (4 s.e.), and a smaller total variance of the gradient
    in the draws' parameters than the plain score function with the same baseline."""
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(rng.normal(size=3), jnp.float32) for k in "avw"}
    states = jnp.asarray(list(itertools.product((0.0, 1.0), repeat=3)))

    def exact(p):
        log_q = jnp.sum(states * p["a"] - jax.nn.softplus(p["a"]), axis=1)
        log_r = jnp.sum(states * p["v"] - jax.nn.softplus(p["v"]), axis=1)
        return jnp.sum(jnp.exp(log_q) * (log_r + (states @ p["w"] - 1) ** 2))

    want = {k: np.asarray(v) for k, v in jax.grad(exact)(params).items()}
    keys = jax.random.split(jax.random.PRNGKey(seed), 10000)
    blackwell = _module(RAO_BLACKWELL, via="score_function(rao_blackwell)")
    got = _gradients(blackwell, params, blackwell.full_batch({}), keys)
    plain_mod = _module(RAO_BLACKWELL, via="score_function")
    plain = _gradients(plain_mod, params, plain_mod.full_batch({}), keys)
    v_rb, v_plain = float(np.var(got["a"], axis=0).sum()), float(np.var(plain["a"], axis=0).sum())
    return [_check_gradient("score_function", "Rao-Blackwellised score-function (Bernoulli)", got, want),
            Certificate("score_function", "Rao-Blackwellisation lowers the variance of the score-function gradient",
                        f"trace of the covariance of d/da: {v_rb:.4f} (Rao-Blackwellised) vs {v_plain:.4f} (plain)",
                        v_rb < v_plain)]


def certify_score_function_steps(prog, step, seed: int) -> list[Certificate]:
    out = certify_score_function(prog, step, seed)
    if any(s.fact("rao_blackwell") for s in derivation_steps(prog) if s.rule == "score_function"):
        out += certify_rao_blackwell(seed)
    return out


RELAXED = "param a : real[3]\nparam w : real[3]\nminimize E[z ~ Bernoulli(logits=a)] (sum(w * z) - 1)^2\n"
TEMPERATURES = (1.0, 0.5, 0.2)


def certify_relax_discrete(prog, step, seed: int) -> list[Certificate]:
    """The Concrete relaxation's gradient against the exact gradient (sum over the 8 states) at
    temperatures 1, 0.5, 0.2: the bias printed, and smaller at the lowest temperature than at
    the highest (relation ~: a surrogate whose bias vanishes as the temperature -> 0)."""
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(rng.normal(size=3), jnp.float32) for k in "aw"}
    states = jnp.asarray(list(itertools.product((0.0, 1.0), repeat=3)))

    def exact(p):
        log_q = jnp.sum(states * p["a"] - jax.nn.softplus(p["a"]), axis=1)
        return jnp.sum(jnp.exp(log_q) * (states @ p["w"] - 1) ** 2)

    want = np.concatenate([np.asarray(v) for v in jax.grad(exact)(params).values()])
    keys = jax.random.split(jax.random.PRNGKey(seed), 20000)
    bias, lines = [], []
    for tau in TEMPERATURES:
        mod = _module(RELAXED, via=f"relax_discrete(temperature={tau})")
        grads = _gradients(mod, params, mod.full_batch({}), keys)
        mean, se = _mean_se(np.concatenate([grads[k] for k in params], axis=1))
        bias.append(float(np.linalg.norm(mean - want)))
        lines.append(f"temperature {tau:g}: |bias| {bias[-1]:.4f} (s.e. {float(np.linalg.norm(se)):.4f})")
    return [Certificate("relax_discrete", "the relaxation's gradient bias, measured against the enumerated exact "
                        "gradient, shrinks as the temperature -> 0", "; ".join(lines), bias[-1] < bias[0])]


CERTIFICATES = {"jensen": certify_jensen_steps, "analytic_kl": certify_analytic_kl,
                "reparameterize": certify_reparameterize_steps, "score_function": certify_score_function_steps,
                "relax_discrete": certify_relax_discrete, "jensen_convex": certify_jensen_convex,
                "enumerate": certify_enumerate, "gaussian_marginal": certify_gaussian_marginal}


# ---- closed_form_expectation -----------------------------------------------------------------------

CLOSED_FORM_DRAWS = 200_000


def _closed_form_law(family: str, law: dict, rng):
    """Draws of the law (SciPy for the continuous families and Bernoulli, softmax for Categorical)
    as a function of the size, or None where the values break its constraints."""
    if family == "Categorical":
        logits = np.asarray([law[f"logits[{k}]"] for k in range(len(law))], np.float64)
        probs = np.exp(logits - logits.max())
        return lambda n: rng.choice(len(probs), size=n, p=probs / probs.sum())
    if family == "Bernoulli":
        p = law["probs"] if "probs" in law else 1 / (1 + np.exp(-law["logits"]))
        return (lambda n: (rng.uniform(size=n) < p).astype(np.float64)) if 0 < p < 1 else None
    if law.get("scale", 1.0) <= 0 or ("low" in law and law["low"] >= law["high"]):
        return None
    law_ = _scipy_law(family, law)
    return lambda n: law_.rvs(size=n, random_state=rng)


def certify_closed_form_expectation(prog, step, seed: int, rule: str = "closed_form_expectation") -> list[Certificate]:
    """Every closed form E[z ~ D(theta)] f(z) = F(theta) the derivation put by `rule` (closed_form_expectation
    or exact_expectation, which record the same facts), printed to JAX as
    the backend prints it, against a Monte Carlo estimate of E f (200000 draws of D from SciPy,
    f evaluated by NumPy from the same SymPy expression) at two random values of its symbols
    (each in (-1, 1), redrawn where the law's constraints fail): within 4 standard errors."""
    rng = np.random.default_rng(seed)
    out = []
    for s in (s for s in derivation_steps(prog) if s.rule == rule):
        family, f, z = s.fact("family"), sp.sympify(s.fact("f")), sp.sympify(s.fact("draw"))
        value = sp.sympify(s.fact("value"))
        law = {k: sp.sympify(v) for k, v in s.fact("law")}
        symbols = sorted((value.free_symbols | f.free_symbols | set().union(*(v.free_symbols for v in law.values())))
                         - {z}, key=str)
        ok, lines = True, []
        for _ in range(2):
            for _attempt in range(50):
                at = {x: float(rng.uniform(-1, 1)) for x in symbols}
                numbers = {k: float(v.subs(at)) for k, v in law.items()}
                sample = _closed_form_law(family, numbers, rng)
                if sample is not None:
                    break
            else:
                return [Certificate(rule, f"E[{z} ~ {family}] {f} = {value}",
                                    "no random values satisfy the law's constraints", False)]
            names = {x: f"a[{i}]" for i, x in enumerate(symbols)}
            closed = float(eval(to_jax_source(value, names), {"jnp": jnp, "jax": jax,
                                                              "a": jnp.asarray([at[x] for x in symbols], jnp.float32)}))
            fz = sp.lambdify([z] + symbols, f, "numpy")
            draws = sample(CLOSED_FORM_DRAWS)
            m, se = _mean_se(np.broadcast_to(fz(draws, *(at[x] for x in symbols)), draws.shape))
            passed = bool(abs(closed - m) <= 4 * se + 1e-4 * max(1.0, abs(m)))
            ok &= passed
            lines.append(f"at {', '.join(f'{x} = {at[x]:.3f}' for x in symbols) or 'the constants'}: closed form "
                         f"{closed:.5f}; Monte Carlo {m:.5f} +- {4 * se:.5f} (4 s.e.)")
        out.append(Certificate(rule, f"E[{z} ~ {family}] {f} = {value} (SymPy) agrees with "
                               "a Monte Carlo estimate", "; ".join(lines), ok))
    return out


CERTIFICATES["closed_form_expectation"] = certify_closed_form_expectation
CERTIFICATES["exact_expectation"] = functools.partial(certify_closed_form_expectation, rule="exact_expectation")


# ---- gaussian_marginal, low-rank form ----------------------------------------------------------------
# The certificate of gaussian_marginal's low-rank form (vector latents through `@` / `dot`;
# `CERTIFICATES["gaussian_marginal"]` dispatches on the step's form).
#
# On a random factor-analysis instance (two vector latents with non-zero prior means, one through
# M @ z, one through a diagonal scaling of B @ u, a per-component noise scale) the compiled
# -log p(x) is measured against (1) a Monte Carlo estimate of p(x) = E_{z, u} p(x | z, u) from the
# model's own lines (nothing of the closed form is used), within 4 standard errors of the log of
# the mean, and (2) the dense Gaussian N(x; m, C) with C assembled from the model's covariance
# and evaluated by `np.linalg.slogdet` / `np.linalg.solve` (no Woodbury), in float64, at 3 random
# parameter points.

FACTOR_ANALYSIS = """data x : real[4] from npz("{path}")
param A : real[4, 2]
param B : real[4, 3]
param m : real[2]
param c : real[4]
param lp : real[4]
param lz : real
model p:
    z ~ Normal(m, exp(lz)) : real[2]
    u ~ Normal(1, 0.5) : real[3]
    x ~ Normal(A @ z - c * (B @ u) + c, exp(lp)) : real[4]
minimize E[x ~ data] -log p(x)
"""
DRAWS = 400_000


def _dense_nll(p: dict, x: np.ndarray) -> float:
    """-mean log N(x; m, C): m = A m_z - c * (B 1) + c, C = diag(exp(2 lp)) + exp(2 lz) A A^T + 0.25 (c B)(c B)^T."""
    cb = p["c"][:, None] * p["B"]
    mean = p["A"] @ p["m"] - cb @ np.ones(3) + p["c"]
    cov = np.diag(np.exp(2 * p["lp"])) + np.exp(2 * p["lz"]) * p["A"] @ p["A"].T + 0.25 * cb @ cb.T
    r = x - mean
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("ni,ni->n", r, np.linalg.solve(cov, r.T).T)
    return float(np.mean(0.5 * (x.shape[1] * np.log(2 * np.pi) + logdet + quad)))


def _monte_carlo_nll(p: dict, x: np.ndarray, rng) -> tuple[float, float]:
    """-mean_n log (1/N) sum_i p(x_n | z_i, u_i), z_i, u_i drawn from the priors; and the standard
    error of that mean (delta method: se(log mean) = se(mean) / mean, per example)."""
    z = p["m"] + np.exp(p["lz"]) * rng.standard_normal((DRAWS, 2))
    u = 1.0 + 0.5 * rng.standard_normal((DRAWS, 3))
    loc = z @ p["A"].T - p["c"] * (u @ p["B"].T) + p["c"]                       # [draw, component]
    scale = np.exp(p["lp"])
    nll, var = 0.0, 0.0
    for xn in x:
        log_like = np.sum(-0.5 * ((xn - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi), axis=1)
        top = log_like.max()
        w = np.exp(log_like - top)
        nll -= (top + np.log(w.mean())) / len(x)
        var += (w.std(ddof=1) / np.sqrt(DRAWS) / w.mean()) ** 2 / len(x) ** 2
    return float(nll), float(np.sqrt(var))


def certify_low_rank_marginal(prog, step, seed: int) -> list[Certificate]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 1.5, size=(4, 4))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npz"
        np.savez(path, x=x)
        instance = compile_source(FACTOR_ANALYSIS.replace("{path}", path.as_posix()),
                                  filename="<certificate of gaussian_marginal (low rank)>")
        mod = instance.build()
        batch = mod.full_batch({"x": x})
    loss = jax.jit(mod.LOSSES["theta"])
    rows, dense_ok, mc_ok, worst = [], True, True, 0.0
    for _ in range(3):
        p = {"A": rng.normal(size=(4, 2)), "B": rng.normal(size=(4, 3)) * 0.7, "m": rng.normal(size=2),
             "c": rng.normal(size=4), "lp": rng.normal(size=4) * 0.2 + 0.5, "lz": float(rng.normal() * 0.2)}
        got = float(loss({k: jnp.asarray(v, jnp.float32) for k, v in p.items()}, None, batch))
        dense = _dense_nll(p, x)
        mc, se = _monte_carlo_nll(p, x, rng)
        worst = max(worst, abs(got - dense) / max(1.0, abs(dense)))
        dense_ok &= abs(got - dense) <= 1e-5 * max(1.0, abs(dense))
        mc_ok &= abs(got - mc) <= 4 * se + 1e-6
        rows.append(f"{got:.6f} vs dense {dense:.6f} vs Monte Carlo {mc:.4f} (s.e. {se:.4f})")
    return [Certificate("gaussian_marginal", "the low-rank closed-form -log p(x) of a factor-analysis model equals the "
                        "dense Gaussian (slogdet, solve) and a Monte Carlo estimate of E_z p(x | z)",
                        "; ".join(rows) + f" (float64 references, {DRAWS} draws): largest relative error against the "
                        f"dense form {worst:.2g}", bool(dense_ok and mc_ok))]


def certify_gaussian_marginal_forms(prog, step, seed: int) -> list[Certificate]:
    """gaussian_marginal's elementwise form against quadrature; its low-rank form (vector latents
    through @ / dot) against Monte Carlo and the dense Gaussian."""
    if step.fact("form") == "low-rank":
        return certify_low_rank_marginal(prog, step, seed)
    return certify_gaussian_marginal(prog, step, seed)


CERTIFICATES["gaussian_marginal"] = certify_gaussian_marginal_forms
