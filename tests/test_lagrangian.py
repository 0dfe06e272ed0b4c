"""Lagrangian: constraints become an (augmented) Lagrangian game with a multiplier player;
constrained.att against the exact constrained least squares; vector, equality and reversed
constraints against a KKT solution; weak duality certificates; diagnostics."""
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
from compiler.ir.printer import program_text, show
from compiler.rewrite.rule import Context, Rewrite
from passes.lagrangian import LAGRANGIAN
from passes.lagrangian.certificates import (
    exact_ball_least_squares,
    exact_sum_least_squares,
)

ROOT = Path(__file__).resolve().parents[1]
SMALL = "param w : real[2]\nminimize sumsq(w - 3)\nsubject to sumsq(w) <= 1\n"
# KKT solution: a = 1 (active, lambda = 7/3), w = (1/6, 1/6), b = -5/6, nu = -1/3, objective 13/12
KKT = ("param a : real\nparam b : real\nparam w : real[2]\nminimize (a - 2)^2 + sumsq(w) + (b + 1)^2\n"
       "subject to w <= 1\nsubject to 1 >= a\nsubject to a + sum(w) + b == 0.5\n")


def _steps(prog):
    return [(s.rule, s.relation, s.before, s.after) for s in prog.derivation.steps]


def _fit(prog, data=None):
    mod = prog.build()
    data = prog.load_data() if data is None else data
    params, _ = mod.fit(data, steps=mod.STEPS, seed=0)
    return mod, data, params


# ---- golden derivations ------------------------------------------------------------------------

def test_golden_ir_before_and_after():
    prog = compile_source(SMALL)
    assert program_text(prog.typed).splitlines() == [
        "param w : real[2]", "minimize sumsq(w - 3)", "subject to sumsq(w) <= 1", "player theta (min over w): sumsq(w - 3)"]
    assert _steps(prog) == [("lagrangian", "=", "subject to sumsq(w) <= 1",
                             "lambda_1 * s_1 + 0.5 * s_1^2 with s_1 = max(sumsq(w) - 1, -lambda_1)")]
    assert str(prog.ir).splitlines() == [
        "param w : real[2]",
        "param lambda_1 : real    # introduced for player multipliers",
        "minimize sumsq(w - 3)",
        "report lambda_1 = lambda_1",
        "report violation = relu(sumsq(w) - 1)",
        "train steps=3000, optimizer=adam(lr=0.01), schedule=cosine, dynamics=simultaneous",
        "player theta (min over w): sumsq(w - 3) + (lambda_1 * s_1 + 0.5 * s_1^2 with s_1 = max(sumsq(w) - 1, -lambda_1))",
        "player multipliers (max over lambda_1): lambda_1 * s_1 + 0.5 * s_1^2 with s_1 = max(sumsq(w) - 1, -lambda_1)",
    ]
    assert prog.program.constraints == ()
    (_, kind, weight), = prog.program.players[1].prox
    assert kind == "nonneg" and weight.value == 1
    step = prog.derivation.steps[0]
    assert any("weak duality" in c and "dual value <= primal value" in c for c in step.conditions)
    assert any("= at the saddle" in c for c in step.conditions)
    assert "augmented Lagrangian" in step.note and "cosine" in step.note
    spec = json.loads(prog.to_json())
    assert [p["sense"] for p in spec["field"]["players"]] == ["min", "max"]


def test_plain_lagrangian_and_vector_equality_forms():
    plain = compile_source(SMALL, via="lagrangian(rho=0)")
    assert _steps(plain)[0][3] == "lambda_1 * (sumsq(w) - 1)"
    prog = compile_source(KKT)
    assert [s.before for s in prog.derivation.steps] == ["subject to w <= 1", "subject to 1 >= a", "subject to a + sum(w) + b == 0.5"]
    assert [s.after for s in prog.derivation.steps] == [
        "sum(lambda_1 * s_1) + 0.5 * sumsq(s_1) with s_1 = max(w - 1, -lambda_1)",
        "lambda_2 * s_2 + 0.5 * s_2^2 with s_2 = max(a - 1, -lambda_2)",
        "nu_3 * h_3 + 0.5 * h_3^2 with h_3 = a + sum(w) + b - 0.5"]
    mult = prog.program.players[1]
    assert mult.params == ("lambda_1", "lambda_2", "nu_3") and [p for p, _, _ in mult.prox] == ["lambda_1", "lambda_2"]
    assert prog.program.decl("lambda_1").shape == (2,)
    assert [r.name for r in prog.program.reports] == ["lambda_1_max", "lambda_2", "nu_3", "violation"]
    assert str(prog.program.reports[-1].expr) == "max(max(max(relu(w - 1)), relu(a - 1)), abs(a + sum(w) + b - 0.5))"


def test_maximisation_flips_the_multiplier_player():
    prog = compile_source("param w : real[2]\nmaximize -sumsq(w - 3)\nsubject to sumsq(w) <= 1\n")
    theta, mult = prog.program.players
    assert mult.sense == "min" and str(theta.loss).startswith("-sumsq(w - 3) - (")
    _, _, params = _fit(prog, {})
    np.testing.assert_allclose(np.asarray(params["w"]), [2 ** -0.5, 2 ** -0.5], atol=1e-3)
    assert float(params["lambda_1"]) == pytest.approx(3 * 2 ** 0.5 - 1, abs=1e-2)   # 2(w - 3) + 2 lambda w = 0


def test_no_constraint_no_step():
    assert compile_source("param w : real[2]\nminimize sumsq(w - 3)\n").derivation.steps == ()
    with pytest.raises(AttractorError, match="rule lagrangian does not apply"):
        compile_source("param w : real[2]\nminimize sumsq(w - 3) via lagrangian\n")


# ---- the rule object: match and non-match --------------------------------------------------------

def _context(source: str, **options) -> Context:
    typed = compile_source(source).typed
    return Context(typed, typed.players[0], options=options, forced=bool(options))


def test_rule_rewrites_a_constraint_into_its_multiplier_term():
    ctx = _context(KKT)
    vector, reversed_, equality = ctx.program.constraints
    rw = LAGRANGIAN(vector, ctx)
    assert isinstance(rw, Rewrite) and rw.relation == "="
    assert show(rw.node) == "sum(lambda_1 * s_1) + 0.5 * sumsq(s_1) with s_1 = max(w - 1, -lambda_1)"
    (decl,) = rw.decls
    assert (decl.name, decl.shape, decl.owner) == ("lambda_1", (2,), "multipliers")
    assert [r.name for r in rw.reports] == ["lambda_1_max"]
    assert rw.facts[:3] == (("kind", "ineq"), ("expr", rw.facts[1][1]), ("multiplier", "lambda_1"))
    assert show(dict(rw.facts)["expr"]) == "w - 1"
    assert show(LAGRANGIAN(reversed_, ctx).node) == "lambda_2 * s_2 + 0.5 * s_2^2 with s_2 = max(a - 1, -lambda_2)"
    eq = LAGRANGIAN(equality, ctx)
    assert dict(eq.facts)["kind"] == "eq" and eq.decls[0].name == "nu_3"
    for rho, term in ((0.0, "lambda_2 * (a - 1)"), (4.0, "lambda_2 * s_2 + 2 * s_2^2 with s_2 = max(a - 1, -lambda_2 / 4)")):
        forced = _context(KKT, rho=rho)
        assert show(LAGRANGIAN(forced.program.constraints[1], forced).node) == term


def test_rule_matches_only_constraints():
    ctx = _context(SMALL)
    assert LAGRANGIAN(ctx.player.loss, ctx) is None
    assert LAGRANGIAN(ir.Ref("w", "param"), ctx) is None
    assert LAGRANGIAN.matches == (ir.Constraint,) and LAGRANGIAN.problem == "constraint"
    assert [o.name for o in LAGRANGIAN.options] == ["rho"] and LAGRANGIAN.option("rho").kind is float


def test_rule_declares_its_identity():
    assert LAGRANGIAN.relation == "=" and "max_{λ >= 0, ν}" in LAGRANGIAN.identity and "\n" not in LAGRANGIAN.identity


# ---- numbers: exact optima -------------------------------------------------------------------

def test_constrained_example_reaches_the_exact_optimum():
    """`attractor run --json` as written: objective within 1e-3 of the exact constrained least
    squares (bisection on the multiplier), violation <= 1e-3, multiplier reported."""
    r = subprocess.run([sys.executable, "-m", "compiler", "run", str(ROOT / "examples" / "constrained.att"), "--json"],
                       check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    data = compile_file(ROOT / "examples" / "constrained.att").load_data()
    X, y = np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64)
    exact, mu = exact_ball_least_squares(X, y, 1.0)
    assert mu > 0                                           # the constraint is active
    assert abs(result["objective"] - exact) / exact < 1e-3
    assert result["reports"]["violation"] <= 1e-3
    assert result["reports"]["norm"] == pytest.approx(1.0, abs=1e-3)
    assert result["reports"]["lambda_1"] == pytest.approx(mu, rel=1e-2)


def test_vector_equality_and_reversed_constraints_reach_kkt():
    mod, data, params = _fit(compile_source(KKT), {})
    np.testing.assert_allclose([float(params["a"]), float(params["b"])], [1.0, -5 / 6], atol=1e-3)
    np.testing.assert_allclose(np.asarray(params["w"]), [1 / 6, 1 / 6], atol=1e-3)
    reports = mod.reports(params, jax.random.PRNGKey(0), data)
    assert reports["lambda_1_max"] == pytest.approx(0.0, abs=1e-3)
    assert reports["lambda_2"] == pytest.approx(7 / 3, abs=1e-2)
    assert reports["nu_3"] == pytest.approx(-1 / 3, abs=1e-2)
    assert reports["violation"] <= 1e-3
    assert mod.objective(params, jax.random.PRNGKey(0), data) == pytest.approx(13 / 12, rel=1e-3)


def test_exact_solvers_agree_with_scipy():
    from scipy.optimize import minimize
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(30, 3)), rng.normal(size=30) + 2
    f = lambda w: np.mean((X @ w - y) ** 2)
    for exact, cons in ((exact_ball_least_squares(X, y, 0.1), {"type": "ineq", "fun": lambda w: 0.1 - w @ w}),
                        (exact_sum_least_squares(X, y, 2.0), {"type": "eq", "fun": lambda w: np.sum(w) - 2.0})):
        ref = minimize(f, np.zeros(3), constraints=[cons], method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
        assert exact[0] == pytest.approx(ref.fun, rel=1e-6)


# ---- certificates ------------------------------------------------------------------------------

def test_certificates_pass():
    results = certify(compile_source(KKT), seed=1)
    assert results and all(r.passed for r in results), [r for r in results if not r.passed]
    claims = " ".join(r.claim for r in results)
    assert "weak duality" in claims and "dual value <= primal value" in claims and "the saddle" in claims


def test_pointwise_certificate_finds_feasible_points_for_equalities():
    """Random points never satisfy sum(w) == 3: the certificate minimises the violation to
    find feasible points rather than passing on none."""
    src = "param w : real[5] = 0.5\nminimize sumsq(w - 2)\nsubject to sum(w) == 3\nsubject to w <= 0.8\n"
    results = [r for r in certify(compile_source(src), seed=0) if "L <= f where" in r.claim]
    assert len(results) == 1 and results[0].passed, results
    assert "0 feasible" not in results[0].evidence and "minimising the penalty" in results[0].evidence


# ---- diagnostics --------------------------------------------------------------------------------

@pytest.mark.parametrize("source, line, col, message", [
    ("param w : real\nminimize w^2\nsubject to 2 * 3 >= 1\n", 3, 1, "no parameter in it"),
    ("param w : real\nminimize w^2\nsubject to w = 1\n", 3, 1, "written with '=='"),
    ("param w : real[2]\nminimize sumsq(w)\nsubject to w == w\n", 3, 1, "same expression, so it holds for every value"),
    ("param w : real\nminimize w^2\nsubject to w + 1 < w + 1\n", 3, 1, "same expression, so it can never hold"),
    ("param w : real\nminimize w^2 via lagrangian(rho=-1)\nsubject to w >= 1\n", 2, 18, "rho=...) needs a number >= 0"),
    ("param w : real\nminimize w^2 via lagrangian(mu=1)\nsubject to w >= 1\n", 2, 18, "has no option 'mu'"),
    (("data x : real from gaussian(mean=0, std=1, n=100)\nparam m : real\nmodel q:\n    x ~ Normal(m, 1) : real\n"
      "estimate KL(data || q)\nsubject to m <= 1\n"), 6, 1, "an estimate has none"),
])
def test_diagnostics(source, line, col, message):
    with pytest.raises(AttractorError) as e:
        compile_source(source, filename="bad.att")
    assert e.value.message.find(message) >= 0, e.value.message
    assert str(e.value).startswith(f"bad.att:{line}:{col}: error:")


def test_explain_shows_the_constraint_and_the_rule_taken():
    from compiler.driver.explain import explain
    text = explain(str(ROOT / "examples" / "constrained.att"))
    assert "5:1: subject to sumsq(w) <= 1" in text
    assert "matches: lagrangian (=)" in text and "taken: lagrangian (=)" in text



def test_a_projection_onto_the_simplex_ends_converged_at_its_optimum(tmp_path, capsys):
    """min |w - c|^2 subject to sum(w) == 1, w >= 0 (a game with multipliers and no randomness):
    w = (0.3, 0, 0, 0.7), value 0.21; converged by the zero of the field, not 'still moving' by
    the 1e-10 float32 wobble of the multipliers' loss."""
    import json

    from compiler.driver.cli import main
    src = tmp_path / "simplex.att"
    src.write_text("param w : real[4]\nconst c = [0.5, 0.2, -0.3, 0.9]\nminimize sumsq(w - c)\n"
                   "subject to sum(w) == 1\nsubject to w >= 0\n")
    assert main(["run", str(src), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(result["as_written"] - 0.21) < 1e-5 and result["converged"] is True, result["warnings"]
