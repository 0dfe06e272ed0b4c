"""Half-quadratic splitting: golden derivation, non-matches, the Moreau-envelope certificates,
fused_lasso.att against an exact fused-lasso solver (KKT-certified), a split smooth penalty
against its closed form, diagnostics."""
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from attractor import AttractorError, compile_file, compile_source
from compiler import ir
from compiler.driver.check import certify
from compiler.ir.printer import show
from compiler.rewrite.rule import Context, Refusal, Rewrite
from compiler.rewrite.strategies import positions
from passes.splitting import HALF_QUADRATIC

ROOT = Path(__file__).resolve().parents[1]
HEAD = "data x : real[20], y : real from piecewise_regression(n=100, d=20, segments=3, noise=0.1, seed=2)\nparam w : real[20]\n"
FIT = "0.5 * E[(x, y) ~ data] (dot(w, x) - y)^2"
BOX = "subject to abs(diff(w)) <= 0.2\n"


def exact_fused_lasso(X: np.ndarray, y: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
    """min 0.5 mean((Xw - y)^2) + lam * |diff(w)|_1, exactly: a lasso in v = (w_1, diff(w))
    (w = A v, A lower-triangular ones) solved by FISTA, then re-solved exactly on its support
    with its signs, and certified by the KKT conditions of the lasso."""
    n, d = X.shape
    A = np.tril(np.ones((d, d)))
    M = X @ A
    H, c = M.T @ M / n, M.T @ y / n
    pen = np.r_[0.0, np.full(d - 1, lam)]
    step = 1 / np.linalg.eigvalsh(H)[-1]
    v = u = np.zeros(d)
    t = 1.0
    for _ in range(20000):
        nxt = u - step * (H @ u - c)
        nxt = np.sign(nxt) * np.maximum(np.abs(nxt) - step * pen, 0)
        t, t_old = (1 + np.sqrt(1 + 4 * t * t)) / 2, t
        u, v = nxt + (t_old - 1) / t * (nxt - v), nxt
    S = (np.abs(v) > 1e-8) | (pen == 0)
    polished = np.zeros(d)
    polished[S] = np.linalg.solve(H[np.ix_(S, S)], c[S] - pen[S] * np.sign(v[S]))
    grad = H @ polished - c
    assert np.all(np.sign(polished[S & (pen > 0)]) == np.sign(v[S & (pen > 0)]))      # the signs hold
    assert np.all(np.abs(grad[~S]) <= lam * (1 + 1e-9))                               # zeros are optimal
    w = A @ polished
    return 0.5 * np.mean((X @ w - y) ** 2) + lam * np.abs(np.diff(w)).sum(), w


def _steps(prog):
    return [(s.rule, s.relation, s.before, s.after) for s in prog.derivation.steps]


def _objective(data, w, lam):
    X, y = np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64)
    return 0.5 * np.mean((X @ w - y) ** 2) + lam * np.abs(np.diff(w)).sum()


# ---- golden derivation -------------------------------------------------------------------------

def test_fused_lasso_golden():
    prog = compile_file(ROOT / "examples" / "fused_lasso.att")
    assert _steps(prog) == [("half_quadratic", "~", "lam * norm1(diff(w))", "lam * norm1(z) + beta / 2 * sumsq(diff(w) - z)")]
    assert [p.name for p in prog.program.players] == ["theta"] and prog.program.players[0].params == ("w",)
    assert str(prog.program.players[0].loss) == f"{FIT} + (lam * norm1(z) + beta / 2 * sumsq(diff(w) - z))"
    assert [(d.name, d.shape, d.init) for d in prog.program.decls if getattr(d, "name", "") in ("z", "beta")] == [
        ("z", (49,), None), ("beta", (), compile_source("param a : real = 1\nminimize a^2\n").typed.decls[0].init)]
    updates = [(p, str(v)) for k, (p, v) in ((k, v) for k, v in prog.program.auxiliary if k == "update")]
    assert updates == [("beta", "min(1.005 * beta, 10000)"), ("z", "prox_norm1(diff(w), lam / beta)")]
    field = str(prog.field)
    assert "after every step, in closed form: z <- prox_norm1(diff(w), lam / beta)" in field
    step = prog.derivation.steps[0]
    assert any("Moreau envelope" in c for c in step.conditions) and any("affine in w" in c for c in step.conditions)
    assert "exact" in step.note and "cosine" in step.note
    assert json.loads(prog.to_json())["steps"][0]["relation"] == "~"


def test_options_and_smooth_penalty():
    prog = compile_source(HEAD + f"minimize {FIT} + 0.2 * sumsq(diff(w)) via half_quadratic(beta=2, growth=1.01, beta_max=50)\n")
    assert _steps(prog)[0][3] == "0.2 * sumsq(z) + beta / 2 * sumsq(diff(w) - z)"
    updates = [str(v) for k, (p, v) in ((k, v) for k, v in prog.program.auxiliary if k == "update")]
    assert updates == ["min(1.01 * beta, 50)", "prox_sumsq(diff(w), 0.2 / beta)"]
    assert prog.program.decl("beta").init.value == 2


def test_box_constraint_split_instead_of_the_lagrangian():
    prog = compile_source(HEAD + f"minimize {FIT} + 0.01 * norm1(diff(w)) via half_quadratic\n{BOX}subject to sum(w) == 1\n")
    assert _steps(prog) == [
        ("lagrangian", "=", "subject to sum(w) == 1", "nu_2 * h_2 + 0.5 * h_2^2 with h_2 = sum(w) - 1"),
        ("half_quadratic", "~", "0.01 * norm1(diff(w))", "0.01 * norm1(z) + beta / 2 * sumsq(diff(w) - z)"),
        ("half_quadratic", "~", "subject to abs(diff(w)) <= 0.2", "beta_2 / 2 * sumsq(diff(w) - z_2)")]
    updates = [(p, str(v)) for k, (p, v) in ((k, v) for k, v in prog.program.auxiliary if k == "update")]
    assert updates[-1] == ("z_2", "min(max(diff(w), -0.2), 0.2)")
    assert [r.name for r in prog.program.reports] == ["nu_2", "violation", "violation_2"]
    assert str(prog.program.reports[-1].expr) == "max(relu(abs(diff(w)) - 0.2))"
    assert prog.program.constraints == ()
    one_sided = compile_source(HEAD + f"minimize {FIT} via half_quadratic\nsubject to 0.5 >= diff(w)\nsubject to w >= -1\n")
    assert [str(v) for k, (p, v) in ((k, v) for k, v in one_sided.program.auxiliary if k == "update") if p.startswith("z")] == [
        "min(diff(w), 0.5)", "max(w, -1)"]
    # not a box on an affine map: the Lagrangian keeps it
    kept = compile_source(HEAD + f"minimize {FIT} + 0.1 * norm1(diff(w)) via half_quadratic\nsubject to sumsq(w) <= 1\n")
    assert [s.rule for s in kept.derivation.steps] == ["lagrangian", "half_quadratic"]


# ---- non-matches -------------------------------------------------------------------------------

def test_only_when_asked():
    prog = compile_source(HEAD + f"minimize {FIT} + 0.1 * norm1(diff(w))\n")
    assert "half_quadratic" not in [s.rule for s in prog.derivation.steps]


@pytest.mark.parametrize("term", ["0.1 * norm1(w * w)", "exp(0.1 * norm1(diff(w)))", "0.1 * norm1(diff(w)) * norm2(w)"])
def test_no_linear_map_or_no_linear_weight_does_not_apply(term):
    with pytest.raises(AttractorError, match="rule half_quadratic does not apply"):
        compile_source(HEAD + f"minimize {FIT} + {term} via half_quadratic\n")


def test_a_bare_smooth_fit_term_is_left_to_the_x_step():
    prog = compile_source("param w : real[6]\nminimize sumsq(w - 1) + 0.3 * norm1(diff(w)) via half_quadratic\n")
    assert _steps(prog) == [("half_quadratic", "~", "0.3 * norm1(diff(w))", "0.3 * norm1(z) + beta / 2 * sumsq(diff(w) - z)")]


# ---- the rule object: match, refusal and non-match ----------------------------------------------

def _at(source: str, term: str):
    """The rule applied to the node printed `term` of the first player's loss, in its place."""
    typed = compile_source(source).typed
    player = typed.players[0]
    node, pol, path = next((n, pol, path) for n, pol, path in positions(player.loss, typed) if show(n) == term)
    return HALF_QUADRATIC(node, Context(typed, player, pol, {}, True, path))


def test_rule_splits_a_weighted_term_of_a_linear_map():
    rw = _at(HEAD + f"minimize {FIT} + 0.3 * norm1(diff(w))\n", "0.3 * norm1(diff(w))")
    assert isinstance(rw, Rewrite) and rw.relation == "~"
    assert show(rw.node) == "0.3 * norm1(z) + beta / 2 * sumsq(diff(w) - z)"
    assert [(d.name, d.shape) for d in rw.decls] == [("z", (19,)), ("beta", ())]
    facts = dict(rw.facts)
    assert (facts["z"], facts["beta"], facts["g"], show(facts["weight"]), show(facts["map"])) == \
        ("z", "beta", "norm1", "0.3", "diff(w)")


def test_rule_splits_a_box_constraint():
    typed = compile_source(HEAD + f"minimize {FIT}\n" + BOX).typed
    (box,) = typed.constraints
    rw = HALF_QUADRATIC(box, Context(typed, typed.players[0], 1, {}, True, None))
    assert show(rw.node) == "beta / 2 * sumsq(diff(w) - z)"
    assert dict(rw.facts)["g"] == "box" and show(dict(rw.facts)["lo"]) == "-0.2"
    assert HALF_QUADRATIC.claims(box, typed)


@pytest.mark.parametrize("objective, term, reason", [
    (f"{FIT} + 0.1 * norm1(w * w)", "0.1 * norm1(w * w)", "the argument w * w of norm1 is not an affine map of w"),
    (f"{FIT} + 0.1 * norm2(diff(w))", "norm2(diff(w))", "norm2(diff(w)) has no known proximal map"),
    (f"{FIT} + exp(0.1 * norm1(diff(w)))", "0.1 * norm1(diff(w))", "does not enter the loss linearly"),
    (f"{FIT} + -0.1 * norm1(diff(w))", "-0.1 * norm1(diff(w))", "the weight -0.1 of norm1(diff(w)) is not positive"),
])
def test_rule_refuses_with_the_reason(objective, term, reason):
    out = _at(HEAD + f"minimize {objective}\n", term)
    assert isinstance(out, Refusal) and reason in out.reason, out


def test_rule_does_not_match_other_terms():
    source = "param w : real[6]\nminimize sumsq(w - 1) + 0.3 * norm1(diff(w))\n"
    assert _at(source, "sumsq(w - 1)") is None                       # a bare smooth fit term
    assert _at(source, "w - 1") is None                              # not a reduction
    typed = compile_source(HEAD + f"minimize {FIT}\nsubject to sumsq(w) <= 1\n").typed
    (ball,) = typed.constraints
    assert not HALF_QUADRATIC.claims(ball, typed)
    assert isinstance(HALF_QUADRATIC(ball, Context(typed, typed.players[0], 1, {}, True, None)), Refusal)
    assert HALF_QUADRATIC.matches == (ir.Apply, ir.Constraint) and HALF_QUADRATIC.relation == "~"
    assert [o.name for o in HALF_QUADRATIC.options] == ["beta", "growth", "beta_max"]


# ---- certificates ------------------------------------------------------------------------------

def test_certificates_pass():
    results = certify(compile_file(ROOT / "examples" / "fused_lasso.att"), seed=0)
    assert len(results) == 9 and all(r.passed for r in results), [r for r in results if not r.passed]
    assert any("approaching it as beta grows" in r.claim for r in results)
    assert any("box" in r.claim and "grows linearly in beta" in r.claim for r in results)


def test_box_certificates_on_the_program():
    results = certify(compile_source(HEAD + f"minimize {FIT} via half_quadratic\n{BOX}"), seed=1)
    assert all(r.passed for r in results), [r for r in results if not r.passed]
    assert sum("the program" in r.claim for r in results) == 3


# ---- numbers: exact optima -------------------------------------------------------------------

def test_exact_solver_matches_scipy_on_a_smooth_reformulation():
    """The fused lasso as a bound-constrained smooth problem (diff(w) = p - q, p, q >= 0)."""
    from scipy.optimize import minimize
    rng = np.random.default_rng(0)
    X, y, lam = rng.normal(size=(40, 8)), rng.normal(size=40), 0.1
    exact, _ = exact_fused_lasso(X, y, lam)
    d = 8

    def f(theta):
        w1, p, q = theta[0], theta[1:d], theta[d:]
        w = w1 + np.r_[0.0, np.cumsum(p - q)]
        r = X @ w - y
        g_w = X.T @ r / len(y)
        tail = np.cumsum(g_w[::-1])[::-1][1:]          # d/d(diff_k) = sum of g_w over entries after k
        return 0.5 * np.mean(r ** 2) + lam * np.sum(p + q), np.r_[g_w.sum(), tail + lam, -tail + lam]
    bounds = [(None, None)] + [(0, None)] * (2 * (d - 1))
    ref = minimize(f, np.zeros(2 * d - 1), jac=True, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-12})
    assert exact == pytest.approx(ref.fun, rel=1e-7) and exact <= ref.fun + 1e-12


def test_fused_lasso_example_reaches_the_exact_optimum():
    r = subprocess.run([sys.executable, "-m", "compiler", "run", str(ROOT / "examples" / "fused_lasso.att"), "--json"],
                       check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    prog = compile_file(ROOT / "examples" / "fused_lasso.att")
    data = prog.load_data()
    exact, w_star = exact_fused_lasso(np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64), 0.05)
    assert abs(result["objective"] - exact) / exact < 1e-3             # the split objective, reported
    mod = prog.build()
    params, _ = mod.fit(data, steps=mod.STEPS, seed=0)
    w = np.asarray(params["w"], np.float64)
    assert abs(_objective(data, w, 0.05) - exact) / exact < 1e-3       # the original objective at w
    z, jumps = np.asarray(params["z"]), np.abs(np.diff(w_star))
    assert np.all(z[jumps > 1e-3] != 0) and np.all(np.abs(z[jumps < 1e-9]) < 1e-3)   # the true jumps, nothing else
    assert np.sum(z == 0) >= 40                                                        # and exactly sparse


def test_split_box_reaches_the_exact_box_constrained_optimum():
    """Penalty accuracy: beta_max = 1e4 leaves the constraint violated by O(multiplier / beta)."""
    from scipy.optimize import lsq_linear
    prog = compile_source(HEAD + f"minimize {FIT} via half_quadratic\n{BOX}")
    mod = prog.build()
    data = prog.load_data()
    params, _ = mod.fit(data, steps=mod.STEPS, seed=0)
    X, y = np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64)
    n, d = X.shape
    A = np.tril(np.ones((d, d)))                                     # w = A (w_1, diff(w))
    bounds = (np.r_[-np.inf, np.full(d - 1, -0.2)], np.r_[np.inf, np.full(d - 1, 0.2)])
    v = lsq_linear(X @ A / np.sqrt(n), y / np.sqrt(n), bounds=bounds, method="bvls", tol=1e-14).x
    exact = 0.5 * np.mean((X @ A @ v - y) ** 2)
    w = np.asarray(params["w"], np.float64)
    assert abs(0.5 * np.mean((X @ w - y) ** 2) - exact) / exact < 1e-3
    assert mod.reports(params, jax.random.PRNGKey(0), data)["violation"] < 5e-4


def test_split_smooth_penalty_reaches_its_closed_form():
    prog = compile_source(HEAD + f"minimize {FIT} + 0.2 * sumsq(diff(w)) via half_quadratic\n")
    mod = prog.build()
    data = prog.load_data()
    params, _ = mod.fit(data, steps=mod.STEPS, seed=0)
    X, y = np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64)
    D = np.diff(np.eye(20), axis=0)
    w = np.linalg.solve(X.T @ X / len(y) + 0.4 * D.T @ D, X.T @ y / len(y))
    exact = 0.5 * np.mean((X @ w - y) ** 2) + 0.2 * np.sum((D @ w) ** 2)
    assert mod.objective(params, jax.random.PRNGKey(0), data) == pytest.approx(exact, rel=1e-3)


# ---- diagnostics --------------------------------------------------------------------------------

@pytest.mark.parametrize("objective, col, message", [
    (f"{FIT} + 0.1 * norm2(diff(w)) via half_quadratic", 59, "norm2(diff(w)) has no known proximal map"),
    (f"{FIT} + 0.1 * logsumexp(diff(w)) via half_quadratic", 59, "logsumexp(diff(w)) has no known proximal map"),
    (f"{FIT} - 0.1 * norm1(diff(w)) via half_quadratic", 53, "refused"),
    (f"{FIT} + 0.1 * norm1(diff(w)) via half_quadratic(growth=0.5)", 78, "growth=...) must be a number >= 1"),
    (f"{FIT} + 0.1 * norm1(diff(w)) via half_quadratic(rate=2)", 78, "has no option 'rate'"),
])
def test_diagnostics(objective, col, message):
    with pytest.raises(AttractorError) as e:
        compile_source(HEAD + f"minimize {objective}\n", filename="bad.att")
    assert message in e.value.message, e.value.message
    assert str(e.value).startswith(f"bad.att:3:{col}: error:"), str(e.value)
