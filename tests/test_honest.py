"""Honest numbers (issue 17, SPEC section 9.2): no silent one-draw plug-in, every run with a
verdict, full-batch problems run to tolerance, NaN ends a run with exit code 3 and valid JSON."""
import json
import math

import pytest

from attractor import AttractorError, compile_source
from compiler.backend.runtime import verdict as V
from compiler.driver.cli import main

LEAST_SQUARES = ("data x : real[5], y : real from sparse_regression(n=50, d=5, k=2, noise=0.1, seed=0)\n"
                 "param w : real[5]\nminimize 0.5 * E[(x, y) ~ data] (dot(w, x) - y)^2\n")


@pytest.mark.parametrize("expr,node", [
    ("-log E[z ~ Normal(0, 1)] exp(m * z) + 0.3 * m^2", "log(E[z ~ Normal(0, 1)] exp(m * z))"),
    ("sqrt(1 + E[z ~ Normal(m, 1)] z^2)", "sqrt"),
    ("1 / E[z ~ Normal(0, 1)] exp(m * z)", "/"),
])
def test_a_nonlinear_function_of_a_monte_carlo_expectation_is_refused_at_its_node(expr, node):
    with pytest.raises(AttractorError) as e:
        compile_source(f"param m : real\nminimize {expr}\n")
    text = str(e.value)
    assert "<input>:2:" in text and "nonlinear function of E[" in text and node in text


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
