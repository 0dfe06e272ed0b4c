"""Values over a large data set (SPEC section 9.2): the objective, as_written and reports are
means over data batches, exact when every batch is used, else a named estimator from a sample of
batches with its standard error over batches; a value that is not a mean over the examples is
evaluated in one pass. Thresholds are made tiny here so that the data set counts as large."""
import numpy as np
import pytest

from attractor import compile_source

SPARSE = ("data x : real[5], y : real from sparse_regression(n=3000, d=5, k=2, noise=0.5, seed=0)\n"
          "param w : real[5]\n"
          "minimize 0.5 * E[(x, y) ~ data] (dot(w, x) - y)^2 + 0.05 * norm0(w)\n"
          "report mse = E[(x, y) ~ data] (dot(w, x) - y)^2\n"
          "train steps=30\n")


@pytest.fixture(scope="module")
def fitted():
    """The built module, its data and parameters after a short run (not converged: values only)."""
    mod = compile_source(SPARSE).build()
    data = compile_source(SPARSE).load_data()
    params, history = mod.fit(data)
    return mod, data, params, history


def full_data_values(params, data):
    """The objective as written and the report, in float64 on the whole data set."""
    w, x, y = (np.asarray(a, np.float64) for a in (params["w"], data["x"], data["y"]))
    mse = np.mean((x @ w - y) ** 2)
    return 0.5 * mse + 0.05 * np.count_nonzero(w), mse


def test_a_data_set_that_fits_is_evaluated_in_one_pass(fitted):
    mod, data, params, history = fitted
    result = mod.summary(params, data, 30, 0.0, history=history)
    as_written, mse = full_data_values(params, data)
    assert result["as_written_estimator"] == "exact" and result["objective_stderr"] == 0.0
    assert result["as_written"] == pytest.approx(as_written, rel=1e-5)
    assert result["reports"]["mse"] == pytest.approx(mse, rel=1e-5)


def test_every_batch_gives_the_full_data_value(fitted):
    mod, data, params, history = fitted
    whole = mod.summary(params, data, 30, 0.0, history=history)
    batched = mod.summary(params, data, 30, 0.0, history=history, eval_batch=256)   # 12 batches, the last of 184
    assert mod.averaged(mod.AS_WRITTEN, params, mod.jax.random.PRNGKey(1), data, False, 256)[2] == "all 12 data batches of 250"
    assert batched["as_written_estimator"] == "exact" and batched["objective_stderr"] == 0.0
    assert batched["as_written"] == pytest.approx(whole["as_written"], rel=1e-5)
    assert batched["objective"] == pytest.approx(whole["objective"], rel=1e-5)
    assert batched["reports"]["mse"] == pytest.approx(whole["reports"]["mse"], rel=1e-5)
    assert not any("batches" in w for w in batched["warnings"])


def test_a_sample_of_batches_is_a_named_estimator_whose_standard_error_covers_the_full_data_value(fitted, monkeypatch):
    mod, data, params, history = fitted
    monkeypatch.setattr(mod, "EXACT_DATA_LIMIT", 1000)
    monkeypatch.setattr(mod, "EVALUATION_BATCH", 30)      # 100 batches of 30
    monkeypatch.setattr(mod, "EXACT_BATCHES", 50)
    monkeypatch.setattr(mod, "SAMPLED_BATCHES", 20)
    as_written, mse = full_data_values(params, data)
    result = mod.summary(params, data, 30, 0.0, history=history)
    assert result["as_written_estimator"] == "data batches (20 of 100, 30 examples each)"
    assert result["as_written_stderr"] > 0 and result["objective_stderr"] > 0
    assert abs(result["as_written"] - as_written) < 4 * result["as_written_stderr"]
    assert result["as_written"] != pytest.approx(as_written, rel=1e-6)   # an estimate, not the full-data value
    assert any("objective estimated from data batches (20 of 100" in w for w in result["warnings"])
    # over several seeds the stated standard error covers the full-data value
    covered = [abs(mod.written(params, mod.jax.random.PRNGKey(s), data)[0] - as_written)
               < 4 * mod.written(params, mod.jax.random.PRNGKey(s), data)[1] for s in range(5)]
    assert all(covered)


def test_a_nonlinear_function_of_a_data_mean_is_evaluated_in_one_pass():
    prog = compile_source("data x : real[1], y : real from sparse_regression(n=600, d=1, k=1, seed=0)\n"
                          "param m : real\nminimize (E[(x, y) ~ data] y - m)^2 + 0.1 * m^2\ntrain steps=5\n")
    mod, data = prog.build(), prog.load_data()
    params, _ = mod.fit(data)
    value, stderr, how = mod.averaged(mod.OBJECTIVE, params, mod.jax.random.PRNGKey(0), data, False, 50)
    y = np.asarray(data["y"], np.float64)
    m = float(params["m"])
    assert how is None and stderr == 0.0
    assert value == pytest.approx((y.mean() - m) ** 2 + 0.1 * m ** 2, rel=1e-4)


def test_eval_batch_on_the_command_line_of_run_eval_and_the_emitted_module(tmp_path, capsys):
    """`--eval-batch N` (run, eval, the emitted __main__): 3000 examples in batches of 2000 are two
    batches, every one used, so exact; 0 is a diagnostic with exit code 1 (2 in the emitted module)."""
    import json
    import subprocess
    import sys

    from compiler.driver.cli import main
    src = tmp_path / "sparse.att"
    src.write_text(SPARSE)
    params = tmp_path / "p.npz"
    assert main(["run", str(src), "--json", "--eval-batch", "2000", "--save", str(params)]) == 0
    run = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["eval", str(src), "--params", str(params), "--json", "--eval-batch", "2000"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert run["as_written_estimator"] == evaluated["as_written_estimator"] == "exact"
    assert evaluated["as_written"] == pytest.approx(run["as_written"], rel=1e-6)
    assert main(["eval", str(src), "--params", str(params), "--eval-batch", "0"]) == 1
    assert "--eval-batch must be from 1" in capsys.readouterr().err
    emitted = tmp_path / "sparse.py"
    assert main(["compile", str(src), "--emit", "jax", "-o", str(emitted)]) == 0
    capsys.readouterr()
    out = subprocess.run([sys.executable, str(emitted), "--json", "--eval-batch", "2000"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0 and json.loads(out.stdout.strip().splitlines()[-1])["as_written_estimator"] == "exact"
    bad = subprocess.run([sys.executable, str(emitted), "--eval-batch", "x"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
