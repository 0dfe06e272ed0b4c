"""Relaxation: relax_step (0-1 loss -> hinge / logistic), relax_l0 (norm0 -> norm1), proximal
steps; the choice between relaxation and evolution strategies; the SVM and lasso examples
against exact solutions."""
from pathlib import Path

import jax
import numpy as np
import pytest
import sympy as sp

from attractor import AttractorError, compile_file, compile_source
from compiler import ir
from compiler.backend.defaults import training
from compiler.driver.check import certify
from compiler.driver.explain import explain
from compiler.math.piecewise import (
    LOGISTIC_LABEL,
    PROX_FUNCTIONS,
    S,
    T,
    V,
    below,
    convex_on,
    derive_prox,
    step_surrogate,
    zero_one,
)
from compiler.rewrite.rule import Context, Refusal, Rewrite
from passes.relaxation import proximal, relax_l0, relax_step
from passes.relaxation.relax_step import margin

ROOT = Path(__file__).resolve().parents[1]
HEAD = "data x : real[30], y : real from breast_cancer\nparam w : real[30]\nparam b : real\n"
ZERO_ONE = "E[(x, y) ~ data] [y * (dot(w, x) + b) <= 0]"


def _steps(prog):
    return [(s.rule, s.relation, s.before, s.after) for s in prog.derivation.steps]


# ---- golden derivations -------------------------------------------------------------------

def test_svm_hinge_golden():
    prog = compile_file(ROOT / "examples" / "svm_hinge.att")
    assert _steps(prog) == [("relax_step", "<=", "[y * (dot(w, x) + b) <= 0]", "max(0, 1 - y * (dot(w, x) + b))")]
    assert str(prog.program.players[0].loss) == "0.5 * sumsq(w) + C * sum[(x, y) ~ data] max(0, 1 - y * (dot(w, x) + b))"
    step = prog.derivation.steps[0]
    assert step.conditions == ("Max(0, 1 - s) is convex on the real line (SymPy: second derivative >= 0 on every piece; slope -1 -> 0 at s = 1)",
                               "[s <= 0] <= Max(0, 1 - s) for every real s (SymPy: on every piece and at every kink)")
    assert "relaxation chosen" in step.note
    assert prog.program.players[0].prox == ()      # the hinge is not smooth: no proximal split


def test_lasso_golden():
    prog = compile_file(ROOT / "examples" / "lasso.att")
    assert _steps(prog) == [("relax_l0", "~", "norm0(w)", "norm1(w)"),
                            ("proximal", "=", "lam * norm1(w)", "proximal step w <- prox[0.05 * norm1](w)")]
    player = prog.program.players[0]
    assert str(player.loss) == "0.5 * E[(x, y) ~ data] (dot(w, x) - y)^2"
    assert [(p, k, w.value) for p, k, w in player.prox] == [("w", "norm1", 0.05)]
    assert "proximal step: w <- prox[0.05 * norm1]" in str(prog.field)
    assert any("convex envelope" in c for c in prog.derivation.steps[0].conditions)


def test_logistic_surrogate_on_request():
    prog = compile_source(HEAD + f"minimize {ZERO_ONE} via relax_step(logistic)\n")
    assert _steps(prog) == [("relax_step", "<=", "[y * (dot(w, x) + b) <= 0]", f"{LOGISTIC_LABEL}(y * (dot(w, x) + b))")]
    mod = prog.build()
    data = prog.load_data()
    params = mod.init(jax.random.PRNGKey(0))
    assert mod.objective(params, jax.random.PRNGKey(0), data) == pytest.approx(1.0)      # log2(1 + e^0) = 1
    far = {**params, "b": params["b"] - 200.0}                                              # margins -200 and +200
    assert np.isfinite(mod.objective(far, jax.random.PRNGKey(0), data))                   # stable printing (softplus)


@pytest.mark.parametrize("text, expected, strict", [
    ("[y * dot(w, x) <= 0]", "y * dot(w, x)", False),
    ("[0 >= y * dot(w, x)]", "y * dot(w, x)", False),
    ("[y * dot(w, x) < 1]", "y * dot(w, x) - 1", True),
    ("step(-(y * dot(w, x)))", "y * dot(w, x)", False),
    ("step(y * dot(w, x))", "-(y * dot(w, x))", False),
])
def test_zero_one_spellings(text, expected, strict):
    prog = compile_source(HEAD + f"minimize E[(x, y) ~ data] {text}\n")
    node = prog.typed.players[0].loss.body
    s, is_strict = margin(node)
    assert (str(s), is_strict) == (expected, strict)
    assert prog.derivation.steps[0].rule == "relax_step"


def test_no_match_on_tractable_or_constant_terms():
    prog = compile_source(HEAD + "minimize E[(x, y) ~ data] softplus(-y * (dot(w, x) + b))\ntrain steps=10\n")
    assert prog.derivation.steps == ()
    prog = compile_source(HEAD + "minimize E[(x, y) ~ data] ([y <= 0] * softplus(-y * (dot(w, x) + b)))\ntrain steps=10\n")
    assert prog.derivation.steps == ()       # the bracket does not depend on the parameters


# ---- SymPy: convexity, bounds, proximal maps ----------------------------------------------------

def test_sympy_proves_and_refuses():
    assert "convex on the real line" in convex_on(sp.Max(0, 1 - S), S)
    assert "convex" in step_surrogate("logistic", False)[1][0]
    with pytest.raises(Exception, match="not convex"):
        convex_on(sp.sin(S), S)
    with pytest.raises(Exception, match="not convex"):
        convex_on(sp.Min(0, S), S)
    with pytest.raises(Exception, match="fails"):
        below(zero_one(False), 1 - S, S)                   # 1 - s < 0 = [s <= 0] for s > 1
    with pytest.raises(Exception, match="fails"):
        below(zero_one(False), sp.Max(0, -S), S)           # 0 < 1 at s = 0


def test_prox_maps_derived_by_sympy_match_the_table():
    table = {"norm1": lambda v, t: np.sign(v) * np.maximum(np.abs(v) - t, 0), "sumsq": lambda v, t: v / (1 + 2 * t)}
    rng = np.random.default_rng(0)
    for kind in PROX_FUNCTIONS:
        f = sp.lambdify((V, T), derive_prox(kind), "numpy")
        for v, t in zip(rng.normal(0, 2, 50), rng.uniform(0.01, 2, 50)):
            assert float(f(v, t)) == pytest.approx(table[kind](v, t), abs=1e-12)
    assert sp.simplify(derive_prox("sumsq") - V / (1 + 2 * T)) == 0


# ---- diagnostics ------------------------------------------------------------------------------

@pytest.mark.parametrize("objective, line_col, words", [
    (f"sumsq(w - 1) - {ZERO_ONE} via relax_step", (4, 42), "enters with a negative weight"),
    (f"-{ZERO_ONE} via relax_step", (4, 28), "enters with a negative weight"),
    ("sumsq(w) - 0.1 * norm0(w) via relax_l0", (4, 27), "relax_l0 refused"),
    (f"{ZERO_ONE} + sum(round(w)) via relax_step", (4, 60), "round(w) is not one"),
    ("sumsq(w) + norm0(w) + sum(sign(w)) via relax_l0", (4, 36), "sign(w) is not one"),
    ("sumsq(w - 1) via relax_l0", (4, 27), "the objective has no norm0 term"),
    ("sumsq(w - 1) via relax_step", (4, 27), "the objective has no 0-1 loss"),
    (f"{ZERO_ONE} via relax_step(surrogate=square)", (4, 58), "unknown surrogate 'square'"),
])
def test_relaxation_diagnostics(objective, line_col, words):
    with pytest.raises(AttractorError) as e:
        compile_source(HEAD + f"minimize {objective}\n", filename="t.att")
    assert (e.value.loc.line, e.value.loc.col) == line_col, str(e.value)
    assert words in e.value.message


def test_maximisation_refused_with_a_reason():
    with pytest.raises(AttractorError) as e:
        compile_source(HEAD + f"maximize {ZERO_ONE} via relax_step\n")
    assert "the objective is maximised" in e.value.message and (e.value.loc.line, e.value.loc.col) == (4, 27)


# ---- the choice, and explain ------------------------------------------------------------------------

def test_relaxation_taken_only_when_it_covers_every_node(tmp_path):
    assert compile_source(HEAD + f"minimize {ZERO_ONE}\n").derivation.steps[0].rule == "relax_step"
    mixed = compile_source(HEAD + f"minimize {ZERO_ONE} + 0.01 * sum(round(w))\n")
    assert [s.rule for s in mixed.derivation.steps] == ["evolution_strategy"]
    assert "no convex surrogate keeps the bound for round(w)" in mixed.derivation.steps[0].note
    negative = compile_source(HEAD + f"minimize sumsq(w - 1) - {ZERO_ONE}\n")
    assert [s.rule for s in negative.derivation.steps] == ["evolution_strategy"]
    forced = compile_source(HEAD + f"minimize {ZERO_ONE} via evolution_strategy\n")
    assert [s.rule for s in forced.derivation.steps] == ["evolution_strategy"]


def test_explain_lists_both_families_and_the_reason(tmp_path):
    text = explain(str(ROOT / "examples" / "svm_hinge.att"))
    assert "matches: relax_step (<=)" in text and "matches: evolution_strategy (min<=)" in text
    assert "taken: relax_step (<=)" in text and "relaxation chosen" in text
    path = tmp_path / "neg.att"
    path.write_text(HEAD + f"minimize sumsq(w - 1) - {ZERO_ONE}\n")
    text = explain(str(path))
    assert "matches: relax_step (refused: " in text and "negative weight" in text
    assert "taken: evolution_strategy (min<=)" in text and "no convex surrogate keeps the bound" in text


# ---- training defaults and proximal steps ----------------------------------------------------------

def test_training_defaults_follow_the_shape_of_the_problem():
    lasso = compile_file(ROOT / "examples" / "lasso.att").program
    svm = compile_file(ROOT / "examples" / "svm_hinge.att").program
    assert training(lasso).lipschitz and training(lasso).optimizer[0] == "sgd"
    assert (training(svm).optimizer, training(svm).schedule, training(svm).lipschitz) == (("adam", (("lr", 0.1),)), "cosine", False)
    written = compile_source(HEAD + f"minimize {ZERO_ONE}\ntrain steps=5, optimizer=adam(lr=0.01)\n").program
    assert training(written).optimizer == ("adam", (("lr", 0.01),)) and training(written).steps == 5


def test_no_proximal_split_under_adam():
    text = (ROOT / "examples" / "lasso.att").read_text() + "train steps=10, optimizer=adam(lr=0.01)\n"
    prog = compile_source(text)
    assert [s.rule for s in prog.derivation.steps] == ["relax_l0"]
    assert "norm1(w)" in str(prog.program.players[0].loss) and prog.program.players[0].prox == ()


def test_elastic_net_keeps_one_map_per_parameter():
    prog = compile_source("param w : real[3] = 2\nminimize sumsq(w - 1) + 0.5 * norm1(w) + 0.1 * sumsq(w)\n")
    assert [(p, k) for p, k, _ in prog.program.players[0].prox] == [("w", "norm1")]
    mod = prog.build()
    params, _ = mod.fit({}, steps=200, seed=0)
    # minimiser of (w - 1)^2 + 0.5|w| + 0.1 w^2: 2(w - 1) + 0.5 + 0.2 w = 0
    np.testing.assert_allclose(np.asarray(params["w"]), 1.5 / 2.2, atol=1e-5)


# ---- certificates -------------------------------------------------------------------------------------

def test_certificates_pass():
    for name, rules in (("svm_hinge", {"relax_step"}), ("lasso", {"relax_l0", "proximal"})):
        results = certify(compile_file(ROOT / "examples" / f"{name}.att"))
        assert {r.rule for r in results} == rules
        assert all(r.passed for r in results), [r for r in results if not r.passed]


# ---- the examples against exact solutions ----------------------------------------------------------

def exact_svm(X, y, C, tol=1e-10):
    """min_w,b ½‖w‖² + C Σ max(0, 1 − y(w·x + b)) exactly: SMO on the dual (maximal violating
    pairs), then the best b for that w among the breakpoints. Returns (primal, dual) values;
    their gap certifies the solution."""
    Z = y[:, None] * X
    a, g = np.zeros(len(y)), -np.ones(len(y))           # g: gradient of ½ aᵀQa − Σa, Q = Z Zᵀ
    for _ in range(200_000):
        yg = -y * g
        up = ((a < C) & (y > 0)) | ((a > 0) & (y < 0))
        low = ((a < C) & (y < 0)) | ((a > 0) & (y > 0))
        i = np.flatnonzero(up)[np.argmax(yg[up])]
        j = np.flatnonzero(low)[np.argmin(yg[low])]
        if yg[i] - yg[j] < tol:
            break
        qi, qj = Z @ Z[i], Z @ Z[j]
        curvature = max(qi[i] + qj[j] - 2 * y[i] * y[j] * qi[j], 1e-12)
        t = min((yg[i] - yg[j]) / curvature, C - a[i] if y[i] > 0 else a[i], a[j] if y[j] > 0 else C - a[j])
        a[i] += y[i] * t
        a[j] -= y[j] * t
        g += t * (y[i] * qi - y[j] * qj)
    w = Z.T @ a
    primal = lambda b: 0.5 * w @ w + C * np.maximum(0, 1 - y * (X @ w + b)).sum()
    return min(primal(b) for b in y - X @ w), a.sum() - 0.5 * w @ w


def test_svm_hinge_reaches_the_exact_optimum():
    prog = compile_file(ROOT / "examples" / "svm_hinge.att")
    mod, data = prog.build(), prog.load_data()
    params, _ = mod.fit(data, steps=mod.STEPS, seed=0)
    X, y = np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64)
    best, dual = exact_svm(X, y, 1.0)
    assert best - dual <= 1e-6 * best                  # the exact solver is exact
    w, b = np.asarray(params["w"], np.float64), float(params["b"])
    ours = 0.5 * w @ w + np.maximum(0, 1 - y * (X @ w + b)).sum()
    assert (ours - best) / best < 1e-3
    assert mod.reports(params, jax.random.PRNGKey(0), data)["error"] < 0.03


def test_lasso_matches_sklearn_with_the_same_support():
    from sklearn.linear_model import Lasso
    prog = compile_file(ROOT / "examples" / "lasso.att")
    mod, data = prog.build(), prog.load_data()
    params, _ = mod.fit(data, steps=mod.STEPS, seed=0)
    X, y = np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64)
    lam = 0.05
    objective = lambda w: 0.5 * np.mean((X @ w - y) ** 2) + lam * np.abs(w).sum()
    reference = Lasso(alpha=lam, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(X, y).coef_
    w = np.asarray(params["w"], np.float64)
    assert abs(objective(w) - objective(reference)) / objective(reference) < 1e-4
    assert set(np.flatnonzero(w)) == set(np.flatnonzero(reference))
    assert mod.objective(params, jax.random.PRNGKey(0), data) == pytest.approx(objective(w), rel=1e-5)  # with lam * norm1(w)
    assert mod.reports(params, jax.random.PRNGKey(0), data)["nonzeros"] == len(np.flatnonzero(reference))


# ---- the rule objects, directly ---------------------------------------------------------------------

def _typed(objective: str):
    """The checked program (before any pass) and its one player."""
    typed = compile_source(HEAD + f"minimize {objective}\ntrain steps=10\n").typed
    return typed, typed.players[0]


def _node(program, text: str):
    return next(n for n in program.players[0].loss.walk() if str(n) == text)


def test_relax_step_rule_matches_refuses_and_declines():
    program, player = _typed(f"{ZERO_ONE} + sum(round(w)) + sumsq(w)")
    ctx = Context(program, player, 1, {}, False, ())
    bracket = _node(program, "[y * (dot(w, x) + b) <= 0]")
    rw = relax_step.RULE(bracket, ctx)
    assert isinstance(rw, Rewrite) and rw.relation == "<=" and str(rw.node) == "max(0, 1 - y * (dot(w, x) + b))"
    assert dict(rw.facts)["surrogate"] == "hinge" and str(dict(rw.facts)["margin"]) == "y * (dot(w, x) + b)"
    logistic = relax_step.RULE(bracket, Context(program, player, 1, {"logistic": True}, True, ()))
    assert dict(logistic.facts)["surrogate"] == "logistic" and str(logistic.node).startswith(LOGISTIC_LABEL)
    refused = relax_step.RULE(_node(program, "round(w)"), ctx)
    assert isinstance(refused, Refusal) and "round(w) is not one" in refused.reason
    assert relax_step.RULE(_node(program, "sumsq(w)"), ctx) is None                 # smooth: not its business
    assert relax_step.RULE(program.players[0].loss, ctx) is None                     # a sum is not a node type it matches
    assert relax_step.RULE.identity and relax_step.RULE.option("surrogate").kind is str


def test_relax_step_rule_declines_a_bracket_without_parameters():
    program, player = _typed("E[(x, y) ~ data] ([y <= 0] * softplus(-y * (dot(w, x) + b)))")
    assert relax_step.RULE(_node(program, "[y <= 0]"), Context(program, player, 1, {}, False, ())) is None


def test_relax_l0_rule_matches_refuses_and_declines():
    program, player = _typed(f"sumsq(w) + norm0(w) + {ZERO_ONE}")
    ctx = Context(program, player, 1, {}, False, ())
    rw = relax_l0.RULE(_node(program, "norm0(w)"), ctx)
    assert isinstance(rw, Rewrite) and (rw.relation, str(rw.node)) == ("~", "norm1(w)")
    assert any("convex envelope" in c for c in rw.conditions)
    refused = relax_l0.RULE(_node(program, "[y * (dot(w, x) + b) <= 0]"), ctx)
    assert isinstance(refused, Refusal) and "norm0 only" in refused.reason
    assert relax_l0.RULE(_node(program, "sumsq(w)"), ctx) is None
    assert relax_l0.RULE.unmatched == "the objective has no norm0 term in its parameters"


def test_proximal_rule_matches_weighted_penalties_of_the_players_parameters():
    typed = compile_source("param w : real[3]\nminimize sumsq(w - 1) + 0.5 * norm1(w) + sumsq(w) / 4 + "
                           "-1 * norm1(w)\n").typed
    player = typed.players[0]
    ctx = Context(typed, player, 1, {}, False, None)
    rw = proximal.RULE(_node(typed, "0.5 * norm1(w)"), ctx)
    assert isinstance(rw, Rewrite) and rw.relation == "=" and rw.prox == (("w", "norm1", ir.Num(0.5)),)
    assert str(rw.node) == "proximal step w <- prox[0.5 * norm1](w)"
    assert dict(proximal.RULE(_node(typed, "sumsq(w) / 4"), ctx).facts)["weight"] == 0.25
    assert proximal.RULE(_node(typed, "-1 * norm1(w)"), ctx) is None               # a negative weight is not a penalty
    assert proximal.RULE(_node(typed, "sumsq(w - 1)"), ctx) is None                # not of a parameter alone
