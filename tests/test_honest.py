"""Honest numbers (issue 17, SPEC section 9.2): no silent one-draw plug-in, every run with a
verdict, full-batch problems run to tolerance, NaN ends a run with exit code 3 and valid JSON."""
import json
import math

import numpy as np
import pytest

from attractor import AttractorError, compile_source
from compiler.backend.runtime import verdict as V
from compiler.driver.cli import main

LEAST_SQUARES = ("data x : real[5], y : real from sparse_regression(n=50, d=5, k=2, noise=0.1, seed=0)\n"
                 "param w : real[5]\nminimize 0.5 * E[(x, y) ~ data] (dot(w, x) - y)^2\n")


@pytest.mark.parametrize("expr,node", [
    ("sqrt(1 + E[z ~ Laplace(0, 1)] exp(m * z))", "sqrt"),   # no closed form for every m (|m| < 1 only)
    ("-1 / E[z ~ Normal(0, 1)] softplus(m * z)", "/"),      # concave in E[...] where minimised: jensen_convex refuses
])
def test_a_nonlinear_function_of_a_monte_carlo_expectation_is_refused_at_its_node(expr, node):
    with pytest.raises(AttractorError) as e:
        compile_source(f"param m : real\nminimize {expr}\n")
    text = str(e.value)
    assert "<input>:2:" in text and "nonlinear function of E[" in text and node in text


def test_log_of_a_monte_carlo_expectation_is_bounded_by_k_draws_or_refused_by_direction():
    """-log E[f] in a minimised loss becomes the K-draw bound (relation <=, never a one-draw
    plug-in); +log E[f] there could only be bounded from the wrong side, so it is refused at its node."""
    prog = compile_source("param m : real\nminimize -log E[z ~ Normal(0, 1)] exp(m * z) + 0.3 * m^2\n", via="jensen")
    (step,) = prog.derivation.steps     # (without via, closed_form_expectation computes E exactly: exp(m^2/2))
    assert step.rule == "jensen" and step.relation == "<=" and "K = 16" in str(prog.derivation)
    with pytest.raises(AttractorError) as e:
        compile_source("param m : real\nminimize log E[z ~ Normal(0, 1)] exp(m * z) + 0.3 * m^2\n", via="jensen")
    assert "<input>:2:10:" in str(e.value) and "log(E[z ~ Normal(0, 1)] exp(m * z))" in str(e.value)


def test_a_nonlinear_function_of_a_minibatch_mean_is_refused_and_of_the_full_data_accepted():
    body = "param w : real[5]\nminimize log(E[(x, y) ~ data] (dot(w, x) - y)^2)\n"
    data = "data x : real[5], y : real from sparse_regression(n=50, d=5, k=2, noise=0.1, seed=0)\n"
    compile_source(data + body)
    with pytest.raises(AttractorError, match="minibatch mean"):
        compile_source(data + body + "train batch=10\n")


def test_linear_uses_of_expectations_compile():
    compile_source("param m : real\nminimize E[z ~ Normal(0, 1)] exp(m * z) + 2 * E[z ~ Normal(0, 1)] (m - z)^2\n")


def test_verdicts_of_histories():
    flat = [{"step": i + 1, "p": 1.0 + 0.01 * (-1) ** i} for i in range(200)]
    assert V.verdict(flat, ["p"], ["p"], False, 1e-7, 1.0, {})[0]
    moving = [{"step": i + 1, "p": 1.0 - 0.001 * i} for i in range(200)]
    ok, warnings = V.verdict(moving, ["p"], ["p"], False, 1e-7, 1.0, {})
    assert not ok and "still moving" in warnings[0]
    broken = flat[:10] + [{"step": 11, "p": math.nan}]
    ok, warnings = V.verdict(broken, ["p"], ["p"], False, 1e-7, math.nan, {})
    assert not ok and "player p is not finite" in warnings[0] and "step 11" in warnings[0]
    assert json.loads(json.dumps(V.json_safe({"a": math.nan, "b": [math.inf, 1.0]}))) == {"a": None, "b": [None, 1.0]}


def test_a_short_or_still_descending_stochastic_run_is_not_converged():
    """Thirty noisy entries are too few to judge (a 30-step VAE is not an answer); a descent the
    noise hides within the last fifth still shows as a step from the fifth before it."""
    rng = np.random.default_rng(0)
    short = [{"step": i + 1, "p": 40.0 - 0.3 * i + rng.normal()} for i in range(30)]
    ok, warnings = V.verdict(short, ["p"], ["p"], False, 1e-7, 1.0, {})
    assert not ok and "too few history points" in warnings[0]
    steps = np.arange(1, 201)
    creeping = [{"step": int(k), "p": float(20.0 * math.exp(-k / 150) + rng.normal(0, 0.3))} for k in steps]
    ok, warnings = V.verdict(creeping, ["p"], ["p"], False, 1e-7, 1.0, {})
    assert not ok and "still moving" in warnings[0]
    settled = [{"step": int(k), "p": float(1.0 + rng.normal(0, 0.3))} for k in steps]
    assert V.verdict(settled, ["p"], ["p"], False, 1e-7, 1.0, {})[0]


def test_full_batch_runs_to_tolerance_and_steps_are_honoured():
    mod = compile_source(LEAST_SQUARES).build()
    data = compile_source(LEAST_SQUARES).load_data()
    assert mod.TOLERANCE == 1e-7 and mod.STEPS == 100000
    params, history = mod.fit(data)
    assert history[-1]["step"] < 100000
    result = mod.summary(params, data, mod.STEPS, 0.0, history=history)
    assert result["converged"] and result["warnings"] == [] and result["steps"] == history[-1]["step"]
    params, history = mod.fit(data, steps=3)
    assert history[-1]["step"] == 3 and len(history) == 3
    _, history = mod.fit(data, steps=1000)
    assert history[-1]["step"] == 1000 and len(history) >= 100


def test_a_diverging_run_exits_3_with_valid_json(tmp_path, capsys):
    src = tmp_path / "blowup.att"
    src.write_text("param w : real = 1\nminimize -exp(w)\ntrain steps=200, optimizer=sgd(lr=10)\n")
    assert main(["run", str(src), "--json"]) == 3
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["converged"] is False and result["objective"] is None
    assert any("not finite" in w for w in result["warnings"])


LATENT_GAUSSIAN = """data x : real from gaussian(n=200, mean=1.0, std=1.5, seed=0)
param mu : real
param c : real
model p:
    z ~ Normal(mu, 1)
    x ~ Normal(z, 1)
guide q(z | x):
    z ~ Normal(c * x, 0.7)
minimize E[x ~ data] -log p(x)
report nll = E[x ~ data] -log p(x)
train steps=300, optimizer=adam(lr=0.05)
"""


def exact_nll(x, mu):
    """-log p(x) averaged over the data, x ~ N(mu, 2) marginally (z ~ N(mu, 1), x | z ~ N(z, 1))."""
    return float(np.mean(0.5 * np.log(2 * np.pi * 2.0) + (x - mu) ** 2 / 4.0))


def test_as_written_counts_the_norm0_that_training_relaxed():
    prog = compile_source(LEAST_SQUARES.replace("minimize 0.5 * E[(x, y) ~ data] (dot(w, x) - y)^2",
                                                "minimize 0.5 * E[(x, y) ~ data] (dot(w, x) - y)^2 + 0.05 * norm0(w)"))
    mod, data = prog.build(), prog.load_data()
    params, history = mod.fit(data)
    result = mod.summary(params, data, mod.STEPS, 0.0, history=history)
    w, x, y = (np.asarray(a, np.float64) for a in (params["w"], data["x"], data["y"]))
    truth = 0.5 * np.mean((x @ w - y) ** 2) + 0.05 * np.count_nonzero(w)
    assert result["as_written_estimator"] == "exact" and result["as_written_stderr"] == 0.0
    assert result["as_written"] == pytest.approx(truth, rel=1e-5)
    assert result["objective"] != pytest.approx(truth, rel=1e-3)   # the compiled objective is the norm1 surrogate


def test_a_linear_gaussian_marginal_as_written_is_exact_though_trained_by_a_bound():
    prog = compile_source(LATENT_GAUSSIAN, via="jensen")   # trained by the ELBO; its marginal is Gaussian
    mod, data = prog.build(), prog.load_data()
    params, history = mod.fit(data)
    result = mod.summary(params, data, 300, 0.0, history=history)
    truth = exact_nll(np.asarray(data["x"], np.float64), float(params["mu"]))
    assert result["as_written_estimator"] == "exact" and result["as_written_stderr"] == 0.0
    assert result["as_written"] == pytest.approx(truth, rel=1e-5)
    assert result["reports"]["nll"] == pytest.approx(truth, rel=1e-5)
    assert result["objective"] + 3 * result["objective_stderr"] >= truth   # the ELBO bounds it


LATENT_LAPLACE = LATENT_GAUSSIAN.replace("x ~ Normal(z, 1)", "x ~ Laplace(z, 1)")


def laplace_nll(x, mu):
    """-log p(x) of z ~ N(mu, 1), x | z ~ Laplace(z, 1), in closed form: with d = x - mu, splitting
    the integral over z at the kink z = x, p(x) = e^(1/2)/2 (e^-d Phi(d - 1) + e^d Phi(-d - 1))
    (checked against quadrature at a few points by `test_laplace_nll_is_the_integral`)."""
    from scipy import stats
    d = np.asarray(x, np.float64) - mu
    p = 0.5 * np.exp(0.5) * (np.exp(-d) * stats.norm.cdf(d - 1) + np.exp(d) * stats.norm.cdf(-d - 1))
    return float(np.mean(-np.log(p)))


@pytest.mark.parametrize("x", [-2.0, 0.3, 2.3, 5.0])
def test_laplace_nll_is_the_integral(x):
    from scipy import integrate, stats
    quad = integrate.quad(lambda z: stats.norm.pdf(z, 0.8, 1) * stats.laplace.pdf(x, z, 1), -np.inf, np.inf,
                          epsabs=1e-13, points=None)[0]
    assert laplace_nll([x], 0.8) == pytest.approx(-np.log(quad), rel=1e-9)


def test_a_marginal_likelihood_and_its_report_are_estimated_by_the_importance_weighted_bound():
    prog = compile_source(LATENT_LAPLACE)     # no closed form, no states to sum: the K = 100 bound
    mod, data = prog.build(), prog.load_data()
    params, history = mod.fit(data)
    result = mod.summary(params, data, 300, 0.0, history=history)
    truth = laplace_nll(np.asarray(data["x"], np.float64), float(params["mu"]))
    assert result["as_written_estimator"] == "iwae(K=100)" and result["as_written_stderr"] > 0
    assert result["objective_stderr"] > 0   # the ELBO is averaged over keys, with its standard error
    # the K = 100 bound lies between the exact -log p(x) and the ELBO (within noise)
    assert truth - 3 * result["as_written_stderr"] <= result["as_written"]
    assert result["as_written"] <= result["objective"] + 3 * result["objective_stderr"]
    assert result["reports"]["nll"] == pytest.approx(result["as_written"], rel=1e-6)


def test_run_json_names_the_estimator_of_the_objective_as_written(tmp_path, capsys):
    src = tmp_path / "latent.att"
    src.write_text(LATENT_LAPLACE.replace("steps=300", "steps=50"))
    assert main(["run", str(src), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["as_written_estimator"] == "iwae(K=100)" and math.isfinite(result["reports"]["nll"])
    assert main(["run", str(src)]) == 0
    assert "as written" in capsys.readouterr().out
