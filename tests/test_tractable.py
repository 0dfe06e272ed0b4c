"""Tractable objectives need no rule: the emitted code reaches the closed-form / sklearn optimum,
and the emitted module runs standalone."""
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from attractor import compile_file, compile_source

ROOT = Path(__file__).resolve().parents[1]


def _fit(name, steps=None):
    prog = compile_file(ROOT / "examples" / f"{name}.att")
    assert prog.derivation.steps == ()      # no rewrite needed
    mod = prog.build()
    data = prog.load_data()
    params, history = mod.fit(data, steps=steps or mod.STEPS, seed=0)
    return mod, data, params, history


def test_least_squares_reaches_closed_form():
    mod, data, params, _ = _fit("least_squares")
    X, y = np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64)
    A = np.c_[X, np.ones(len(y))]
    sol = np.linalg.lstsq(A, y, rcond=None)[0]
    exact = 0.5 * np.mean((A @ sol - y) ** 2)
    ours = mod.objective(params, jax.random.PRNGKey(0), data)
    assert abs(ours - exact) / exact < 1e-3
    np.testing.assert_allclose(np.asarray(params["w"]), sol[:-1], atol=2e-3)


def test_logistic_reaches_sklearn_optimum():
    from sklearn.linear_model import LogisticRegression
    mod, data, params, history = _fit("logistic")
    X, y = np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64)
    n, lam = len(y), 0.01
    clf = LogisticRegression(C=1 / (n * lam), tol=1e-10, max_iter=10000).fit(X, (y > 0).astype(int))
    w, b = clf.coef_[0], clf.intercept_[0]
    exact = np.mean(np.logaddexp(0, -y * (X @ w + b))) + 0.5 * lam * np.sum(w ** 2)
    ours = mod.objective(params, jax.random.PRNGKey(0), data)
    assert abs(ours - exact) / exact < 1e-3
    assert history[-1]["theta"] < history[0]["theta"]
    error = mod.reports(params, jax.random.PRNGKey(0), data)["error"]
    assert error == pytest.approx(np.mean(y * (X @ w + b) <= 0), abs=0.01)


@pytest.mark.parametrize("name", ["least_squares", "logistic"])
def test_emitted_module_runs_standalone(tmp_path, name):
    out = tmp_path / f"{name}.py"
    r = subprocess.run([sys.executable, "-m", "compiler", "compile", str(ROOT / "examples" / f"{name}.att"),
                        "--emit", "jax", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, str(out), "--steps", "200", "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(result) == {"steps", "seconds_per_step", "compile_seconds", "objective", "objective_stderr", "as_written",
                           "as_written_stderr", "as_written_estimator", "reports", "estimate", "converged", "warnings"}
    assert result["steps"] == 200 and result["estimate"] is None and np.isfinite(result["objective"])


def test_emitted_source_is_what_build_runs():
    prog = compile_file(ROOT / "examples" / "logistic.att")
    mod = prog.build()
    assert mod.SOURCE_TEXT == prog.emit()
    for name in ("init", "losses", "field", "step", "fit", "reports"):
        assert callable(getattr(mod, name))


def test_program_without_data_optimises_its_parameters():
    prog = compile_source("param a : real[2] = 3\nminimize sumsq(a - 1) + 0.5 * sumsq(a)\ntrain steps=300, optimizer=adam(lr=0.1)\n")
    mod = prog.build()
    params, _ = mod.fit({}, steps=300, seed=0)
    np.testing.assert_allclose(np.asarray(params["a"]), [2 / 3, 2 / 3], atol=1e-3)


def test_field_is_minus_gradient_for_a_minimiser():
    prog = compile_source("param a : real = 2\nminimize (a - 1)^2\n")
    mod = prog.build()
    v = mod.field(mod.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(0), mod.full_batch({}))
    assert float(v["a"]) == pytest.approx(-2.0)


def test_alternating_and_simultaneous_agree_for_one_player():
    src = "param a : real = 2\nminimize (a - 1)^2\ntrain steps=50, optimizer=sgd(lr=0.1)\n"
    a = compile_source(src).build("simultaneous").fit({}, 50, 0)[0]["a"]
    b = compile_source(src).build("alternating").fit({}, 50, 0)[0]["a"]
    assert float(a) == pytest.approx(float(b)) and abs(float(a) - 1) < 1e-4


def test_maximum_likelihood_without_latents_is_exact(tmp_path):
    """No latent variable: log p(x) is tractable; MLE of a categorical = empirical frequencies."""
    rng = np.random.default_rng(0)
    x = rng.choice(4, size=1000, p=[0.1, 0.2, 0.3, 0.4])
    np.savetxt(tmp_path / "c.csv", x, fmt="%d")
    (tmp_path / "cat.att").write_text(
        'data x : real from csv("c.csv")\nparam logits : real[4]\nmodel p:\n    x ~ Categorical(logits=logits)\n'
        "minimize E[x ~ data] -log p(x)\ntrain steps=600, optimizer=adam(lr=0.1)\n")
    prog = compile_file(tmp_path / "cat.att")
    assert prog.derivation.steps == ()
    mod = prog.build()
    params, _ = mod.fit(prog.load_data(), steps=600, seed=0)
    freq = np.bincount(x, minlength=4) / len(x)
    probs = np.exp(np.asarray(params["logits"]))
    np.testing.assert_allclose(probs / probs.sum(), freq, atol=2e-3)
    exact = -np.sum(freq * np.log(freq))
    assert mod.objective(params, jax.random.PRNGKey(0), prog.load_data()) == pytest.approx(exact, rel=1e-4)


def test_fit_does_not_depend_on_how_steps_are_cut_into_calls():
    """Step t draws from fold_in(key, t): one call of 40 steps, calls of 7 and fit's adaptive
    calls give the same parameters on a stochastic (minibatch) objective."""
    prog = compile_file(ROOT / "examples" / "least_squares.att")
    mod, data = prog.build(), prog.load_data()
    runs = [mod.fit(data, steps=40, seed=3, batch_size=16, chunk=c) for c in (40, 7, None)]
    for params, history in runs[1:]:
        np.testing.assert_allclose(np.asarray(params["w"]), np.asarray(runs[0][0]["w"]), rtol=1e-5, atol=1e-6)
        assert history[-1]["step"] == 40
    assert [h["step"] for h in runs[1][1]] == [7, 14, 21, 28, 35, 40]


def test_nonnormal_maximum_likelihood_defaults_converge():
    """A maximisation with a kinked density (Laplace) gets the deterministic full-batch default
    for kinked problems (Adam, cosine step): the location reaches the sample median."""
    rng = np.random.default_rng(1)
    x = rng.normal(-1.0, 0.5, size=2001)
    prog = compile_source("data x : real\nparam mu : real\nparam s : real\nmodel p:\n"
                          "    x ~ Laplace(mu, softplus(s))\nmaximize E[x ~ data] log p(x)\n")
    params, _ = prog.build().fit({"x": x}, seed=0)
    assert float(params["mu"]) == pytest.approx(np.median(x), abs=0.02)
    b = np.mean(np.abs(x - np.median(x)))
    assert float(jax.nn.softplus(params["s"])) == pytest.approx(b, rel=0.02)


def test_quadratic_losses_take_1_over_L_and_others_backtrack():
    """1/L at the start holds everywhere only for a quadratic (constant Hessian); otherwise a
    step that would raise the objective is refused and the step halved, so gradient descent
    cannot diverge: exp(a^2) - 2a has curvature growing without bound."""
    from compiler.backend.defaults import degree, training
    quad = compile_file(ROOT / "examples" / "least_squares.att")
    assert degree(quad.program.players[0].loss, quad.program) == 2 and not training(quad.program).backtrack
    prog = compile_source("param a : real\nminimize exp a^2 - 2 * a\n")
    assert degree(prog.program.players[0].loss, prog.program) == float("inf")
    assert training(prog.program).lipschitz and training(prog.program).backtrack
    params, _ = prog.build().fit({}, seed=0)
    a = float(params["a"])
    assert 2 * a * np.exp(a * a) == pytest.approx(2.0, abs=1e-3)   # stationary: 2a exp(a^2) = 2


def test_cosine_schedule_follows_the_steps_run():
    """The step decays to zero over the steps actually run (--steps), not the train line's."""
    src = "param a : real\nminimize (a - 100)^2\ntrain steps=100, optimizer=adam(lr=0.1), schedule=cosine\n"
    mod = compile_source(src).build()
    short, long = (float(mod.fit({}, steps=n, seed=0)[0]["a"]) for n in (100, 1000))
    assert short == pytest.approx(5.0, abs=0.1) and long > 40


def test_emitted_module_reads_data_relative_to_the_program(tmp_path):
    """A program's csv path is relative to the program file, wherever the module is written."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    np.savetxt(tmp_path / "d.csv", np.column_stack([x, x @ [1.0, -2.0]]), delimiter=",")
    (tmp_path / "ls.att").write_text('data x : real[2], y : real from csv("d.csv")\nparam w : real[2]\n'
                                      "minimize E[(x, y) ~ data] (dot(w, x) - y)^2\n")
    (tmp_path / "elsewhere").mkdir()
    out = tmp_path / "elsewhere" / "ls.py"
    out.write_text(compile_file(tmp_path / "ls.att").emit())
    r = subprocess.run([sys.executable, str(out), "--steps", "300", "--json"], capture_output=True, text=True,
                       cwd=tmp_path / "elsewhere", env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["objective"] < 1e-6
