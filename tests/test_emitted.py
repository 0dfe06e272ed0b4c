"""The emitted module (SPEC section 7): the runtime is ordinary Python copied in as needed
(compiler/backend/runtime, compiler/backend/inline.py); the module stands alone, reads its
program first, batches independent draws without biasing the gradient, and answers bad input
with one line and exit code 2."""
import ast
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attractor import compile_file, compile_source
from compiler.backend import runtime
from compiler.backend.inline import Library, fold
from compiler.backend.runtime import command, distributions, prox, special, training

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"jax", "optax", "numpy", "sklearn"} | set(sys.stdlib_module_names)

BLOCKER = '''
import importlib.abc
import sys

BLOCKED = {"compiler", "passes", "grammar", "attractor", "lark", "sympy"}


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the emitted module must stand alone")
        return None


sys.meta_path.insert(0, Blocker())
'''


def imported_modules(source: str) -> set[str]:
    tree = ast.parse(source)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.add((node.module or "").split(".")[0])
    return out


@pytest.fixture(scope="module")
def blocked_env(tmp_path_factory):
    """An environment whose Python cannot import attractor's packages, Lark or SymPy."""
    folder = tmp_path_factory.mktemp("blocker")
    (folder / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=str(folder))   # the same device as the test process: the results compare
    check = subprocess.run([sys.executable, "-c", "import compiler"], env=env, capture_output=True, text=True)
    assert check.returncode != 0 and "blocked" in check.stderr
    return env


# ---- the runtime, tested directly -------------------------------------------------------------

def test_runtime_modules_import_only_jax_optax_numpy_and_the_standard_library():
    for name in runtime.MODULES:
        source = Path(__import__(name, fromlist=["_"]).__file__).read_text()
        for module in imported_modules(source):
            assert module in ALLOWED or module == "compiler", (name, module)
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("compiler"):
                assert node.module in runtime.MODULES or node.module == runtime.PROGRAM, (name, node.module)


def test_draws_from_noise_are_the_keyed_draws():
    """The batched form maps the very noise the keyed samplers draw: the same values."""
    key = jax.random.PRNGKey(3)
    loc, scale, logits = jnp.arange(4.0), jnp.full((4,), 0.5), jnp.linspace(-2, 2, 4)
    np.testing.assert_allclose(distributions.normal_sample(key, loc, scale, (4,)),
                               distributions.location_scale_from_noise(jax.random.normal(key, (4,)), loc, scale))
    np.testing.assert_array_equal(distributions.bernoulli_logits_sample(key, logits, (4,)),
                                  distributions.bernoulli_logits_from_noise(jax.random.uniform(key, (4,)), logits))
    np.testing.assert_allclose(distributions.uniform_sample(key, 1.0, 3.0, (4,)),
                               distributions.uniform_from_noise(jax.random.uniform(key, (4,)), 1.0, 3.0))
    with pytest.raises(ValueError, match="noise of shape"):
        distributions.location_scale_from_noise(jnp.zeros(()), loc, scale)   # one noise value for 4 coordinates


def test_log_densities_and_special_functions():
    x, loc, scale = 0.3, -0.2, 1.7
    want = -0.5 * ((x - loc) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)
    assert float(distributions.normal_logpdf(x, loc, scale)) == pytest.approx(want, rel=1e-6)
    log_sigmoid = math.log(1 / (1 + math.exp(-0.4)))
    assert float(distributions.bernoulli_logits_logpmf(1.0, 0.4)) == pytest.approx(log_sigmoid, rel=1e-6)
    z = jnp.linspace(-30.0, 30.0, 61)
    w = special.wright_omega(z)
    np.testing.assert_allclose(w + jnp.log(w), z, atol=1e-4)
    np.testing.assert_allclose(jax.vmap(jax.grad(special.wright_omega))(z), w / (1 + w), rtol=1e-5)
    assert float(jax.grad(special.safe_norm)(jnp.zeros(3))[0]) == 0.0
    np.testing.assert_allclose(prox.soft_threshold(jnp.array([-2.0, 0.5, 3.0]), 1.0), [-1.0, 0.0, 2.0])


def test_data_and_steps_are_checked_with_one_clear_line(monkeypatch):
    monkeypatch.setattr(training, "DATA_VARS", ("x",))
    monkeypatch.setattr(training, "DATA_SHAPES", {"x": (2,)})
    assert training.as_data({"x": np.zeros((5, 2))})["x"].shape == (5, 2)
    for data, message in [({}, "no variable 'x'"), ({"x": np.zeros((5, 3))}, r"shape \(5, 3\), expected \(n, 2\)"),
                          ({"x": np.zeros((0, 2))}, "no examples")]:
        with pytest.raises(ValueError, match=message) as info:
            training.as_data(data)
        assert "\n" not in str(info.value)
    for steps in (-5, 2**40, 1.5, "10", True):
        with pytest.raises(ValueError, match="steps must be a whole number"):
            training.check_steps(steps)
    parse = command.whole_number(0, 10)
    assert parse("7") == 7
    for text in ("-1", "11", "x", "1.5"):
        with pytest.raises(Exception, match="whole number|not between"):
            parse(text)


# ---- the inliner ---------------------------------------------------------------------------------

def test_fold_keeps_the_live_branch_of_a_test_on_the_programs_constants():
    text = textwrap.dedent('''\
        def f(x):
            if COSINE:
                x = schedule(x)
            if JOINT is None:
                return one(x)
            else:
                return joint(x)
        ''')
    folded = fold(text, {"COSINE": False, "JOINT": None})
    assert folded == "def f(x):\n    return one(x)\n"
    assert fold(text, {}) == text


def test_closure_copies_only_what_the_program_reads():
    library = Library(runtime.MODULES, runtime.PROGRAM)
    imports, definitions = library.closure("def f(layers, x):\n    return mlp(layers, x, 'relu')\n")
    text = "\n".join(definitions)
    assert "def mlp(" in text and "ACTIVATIONS = " in text and "def mlp_init(" not in text
    assert "wright_omega" not in text and "def fit(" not in text
    assert imports == ["import jax", "import jax.numpy as jnp"]


# ---- the emitted module ------------------------------------------------------------------------------

def test_vae_module_is_the_program_first_and_only_the_runtime_it_uses():
    source = compile_file(ROOT / "examples" / "vae.att").emit()
    lines = source.splitlines()
    assert next(i for i, line in enumerate(lines) if line.startswith("def loss_theta(")) < 60
    assert "reparameterize" in source[:source.index('"""', 3)]   # the derivation is in the docstring
    assert imported_modules(source) <= ALLOWED
    for unused in ("wright_omega", "es_smooth", "soft_threshold", "lipschitz_step", "cosine_lr", "backtrack(",
                   "categorical_sample", "sga_direction"):
        assert unused not in source, unused
    assert "jax.random.split(key, batch" not in source
    assert 'jax.random.normal(key, (batch["x"].shape[0], 8, ))' in source   # one draw of the batch's noise


@pytest.mark.parametrize("example", ["lasso.att", "vae.att"])
def test_emitted_module_runs_standalone_and_agrees_with_the_api(example, tmp_path, blocked_env):
    prog = compile_file(ROOT / "examples" / example)
    path = tmp_path / f"{Path(example).stem}.py"
    path.write_text(prog.emit())
    standalone = subprocess.Popen([sys.executable, str(path), "--steps", "20", "--json"], env=blocked_env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mod, data = prog.build(), prog.load_data()   # the same run through the API, meanwhile
    params, history = mod.fit(data, 20, 0)
    want = mod.summary(params, data, 20, history[-1]["seconds"], 0, history[-1]["compile_seconds"])
    out, err = standalone.communicate(timeout=300)
    assert standalone.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["steps"] == 20 and result["compile_seconds"] > 0
    assert result["objective"] == pytest.approx(want["objective"], rel=1e-5)
    assert result["reports"] == pytest.approx(want["reports"], rel=1e-5)


def test_a_subtree_used_twice_in_a_loss_is_computed_once():
    """Structurally equal subtrees of one loss are bound once per scope (lower.CommonSubtrees)."""
    prog = compile_source("data x : real[3] from gaussian(n=16)\nparam w : real[3] = 0.5\n"
                          "minimize E[x ~ data] ((dot(w, x) - 1)^2 + exp(dot(w, x) - 1))\n")
    source = prog.emit()
    loss = source[source.index("def loss_theta("):source.index("LOSSES = ")]
    assert loss.count("jnp.einsum(") == 1 and "common" in loss
    mod, data = prog.build(), prog.load_data()
    x = np.asarray(data["x"], np.float64)
    a = x @ np.full(3, 0.5) - 1
    value = mod.loss_theta(mod.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), mod.full_batch(mod.as_data(data)))
    assert float(value) == pytest.approx(np.mean(a ** 2 + np.exp(a)), rel=1e-5)


def test_the_score_term_is_zero_with_the_gradient_of_its_argument():
    """gradient_only(x) = x - stop_gradient(x): value 0, first and second derivatives those of x."""
    f = lambda t: jnp.sin(t) * t
    for g in (lambda t: special.gradient_only(f(t)), lambda t: f(t) - jax.lax.stop_gradient(f(t))):
        assert float(g(0.7)) == 0.0
        assert float(jax.grad(g)(0.7)) == pytest.approx(float(jax.grad(f)(0.7)), rel=1e-6)
        assert float(jax.grad(jax.grad(g))(0.7)) == pytest.approx(float(jax.grad(jax.grad(f))(0.7)), rel=1e-6)
    prog = compile_source("data x : real[2] from gaussian(n=32)\nparam a : real[2] = 0.3\n"
                          "minimize E[x ~ data] E[z ~ Bernoulli(logits=a) : real[2]] sum(z * x)\n")   # score_function
    mod = prog.build()
    assert "gradient_only(" in mod.SOURCE_TEXT and "- jax.lax.stop_gradient(" not in mod.SOURCE_TEXT
    params, key = mod.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1)
    batch = mod.full_batch(mod.as_data(prog.load_data()))
    value, grads = jax.value_and_grad(mod.loss_theta)(params, key, batch)
    mod.gradient_only = lambda t: t - jax.lax.stop_gradient(t)   # the term as written
    value_written, grads_written = jax.value_and_grad(mod.loss_theta)(params, key, batch)
    assert float(value) == float(value_written)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_written)):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)


def test_softplus_of_logits_is_softplus_with_the_derivatives_of_the_logistic():
    """The Bernoulli likelihood's softplus: value, first and second derivative those of
    jax.nn.softplus (log(1 + e^x), sigmoid, sigmoid (1 - sigmoid)), at 0 and far out included."""
    x = jnp.asarray([-1e4, -60.0, -3.0, -0.5, 0.0, 1e-6, 0.5, 3.0, 60.0, 1e4], jnp.float32)
    ours, ref = distributions.softplus_of_logits, jax.nn.softplus
    np.testing.assert_allclose(ours(x), ref(x), rtol=1e-6, atol=0)
    d1, d2 = jax.vmap(jax.grad(ours)), jax.vmap(jax.grad(jax.grad(ours)))
    np.testing.assert_allclose(d1(x), jax.nn.sigmoid(x), rtol=1e-6, atol=1e-30)
    s = np.asarray(jax.nn.sigmoid(x), np.float64)
    np.testing.assert_allclose(d2(x), s * (1 - s), rtol=1e-5, atol=1e-30)
    assert float(d2(jnp.zeros(1))[0]) == 0.25   # the kink of |x| does not reach the curvature
    assert float(ours(jnp.inf)) == math.inf and float(ours(-jnp.inf)) == 0.0 and math.isnan(float(ours(jnp.nan)))
    np.testing.assert_allclose(distributions.bernoulli_logits_logpmf(jnp.asarray([0.0, 1.0]), jnp.asarray([2.0, 2.0])),
                               [math.log(1 / (1 + math.exp(2))), math.log(1 / (1 + math.exp(-2)))], rtol=1e-6)


def test_a_non_finite_score_term_makes_the_loss_nan_not_zero():
    """x - stop(x) is NaN where x is an infinity or NaN; gradient_only keeps that, in value and in
    value_and_grad, so a diverging score term surfaces as a NaN loss (SPEC 9.2), as written."""
    for x in (jnp.inf, -jnp.inf, jnp.nan):
        written = float(jnp.asarray(x) - jax.lax.stop_gradient(jnp.asarray(x)))
        assert np.isnan(written) and np.isnan(float(special.gradient_only(jnp.asarray(x))))
        value, _ = jax.value_and_grad(lambda t: special.gradient_only(t * x) + t)(1.0)
        assert np.isnan(float(value))
    assert float(special.gradient_only(jnp.asarray(-3.0))) == 0.0
    # in a program: the score term of Bernoulli(probs=p) at p = 1 with z = 0 drawn is log(1 - 1) = -inf
    prog = compile_source("data x : real from gaussian(n=8)\nparam p : real = 0.5\n"
                          "minimize E[x ~ data] E[z ~ Bernoulli(probs=p)] (z - x)^2\n")
    mod = prog.build()
    assert "gradient_only(" in mod.SOURCE_TEXT
    batch = mod.full_batch(mod.as_data(prog.load_data()))
    key = jax.random.PRNGKey(1)
    finite, _ = jax.value_and_grad(mod.loss_theta)(mod.init(jax.random.PRNGKey(0)), key, batch)
    assert np.isfinite(float(finite))
    value, _ = jax.value_and_grad(mod.loss_theta)({"p": jnp.asarray(1.0)}, key, batch)
    written = mod.loss_theta.__globals__["gradient_only"]
    mod.gradient_only = lambda t: t - jax.lax.stop_gradient(t)   # the term as written
    value_written = mod.loss_theta({"p": jnp.asarray(1.0)}, key, batch)
    mod.gradient_only = written
    assert np.isnan(float(value_written)) and np.isnan(float(value))


def test_bad_arguments_to_main_are_one_line_and_exit_code_2(capsys):
    mod = compile_file(ROOT / "examples" / "lasso.att").build()
    for argv in (["--steps", "-5"], ["--steps", str(2**40)], ["--steps", "1.5"], ["--steps", "x"],
                 ["--seed", "-1"], ["--seed", str(2**63)]):
        with pytest.raises(SystemExit) as info:
            mod.main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2, argv
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, (argv, err)


def test_missing_data_file_and_negative_steps_exit_2_without_a_traceback(tmp_path):
    program = tmp_path / "prog.att"
    program.write_text('data x : real from npz("missing.npz")\nparam m : real\nminimize E[x ~ data] (x - m)^2\n')
    module = tmp_path / "prog.py"
    module.write_text(compile_file(program).emit())
    errors = []
    for argv in ([], ["--steps", "-5"]):
        r = subprocess.run([sys.executable, str(module), *argv], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
        errors.append(r.stderr)
    assert "file not found" in errors[0] and "missing.npz" in errors[0] and "--steps" in errors[1]


def test_fit_with_wrong_data_raises_one_clear_value_error():
    mod = compile_file(ROOT / "examples" / "lasso.att").build()
    for data, message in [({}, "no variable"), ({"x": np.zeros((4, 3)), "y": np.zeros(4)}, "has shape")]:
        with pytest.raises(ValueError, match=message) as info:
            mod.fit(data, 1)
        assert "\n" not in str(info.value)


def test_run_json_reports_compile_seconds_apart():
    import contextlib
    import io

    from compiler.driver.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", str(ROOT / "examples" / "lasso.att"), "--steps", "50", "--json"])
    assert code in (0, None)
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert result["compile_seconds"] > 0 and 0 < result["seconds_per_step"] < result["compile_seconds"]


# ---- batched draws stay unbiased ------------------------------------------------------------------

def _gradient_draws(prog, draws=4000):
    mod = prog.build()
    data = prog.load_data()
    batch = mod.full_batch(data)
    params = {k: v + 0.3 for k, v in mod.init(jax.random.PRNGKey(0)).items()}
    grad = jax.jit(jax.vmap(lambda key: jax.grad(mod.LOSSES["theta"])(params, key, batch)))
    return params, data, grad(jax.random.split(jax.random.PRNGKey(1), draws))


def _within_interval(samples, exact):
    mean, stderr = np.mean(samples, axis=0), np.std(samples, axis=0) / np.sqrt(samples.shape[0])
    assert np.all(np.abs(mean - exact) < 4 * stderr + 1e-6), (mean, exact, stderr)


def test_batched_pathwise_draws_estimate_the_exact_gradient():
    """d/dmu E_x E[z ~ N(mu, 1)] relu(z - x) = mean_x Phi(mu - x), one noise array for the batch."""
    prog = compile_source("data x : real[3] from gaussian(n=64)\nparam mu : real[3]\n"
                          "minimize E[x ~ data] E[z ~ Normal(mu, 1) : real[3]] sum(relu(z - x))\n")
    assert "jax.random.normal(key, (batch[\"x\"].shape[0], 3, ))" in prog.emit()
    params, data, grads = _gradient_draws(prog)
    phi = jax.scipy.stats.norm.cdf(params["mu"][None, :] - data["x"])
    _within_interval(np.asarray(grads["mu"]), np.asarray(jnp.mean(phi, axis=0)))


def test_batched_score_function_draws_estimate_the_exact_gradient():
    """d/da E_x E[z ~ Bernoulli(sigmoid(a))] z.x = sigmoid'(a) mean(x), with a leave-one-out
    baseline over 4 draws per example, all the batch's uniforms drawn at once."""
    prog = compile_source("data x : real[2] from gaussian(n=32)\nparam a : real[2]\n"
                          "minimize E[x ~ data] E[z ~ Bernoulli(logits=a) : real[2]] sum(z * x)\n")
    assert "jax.random.uniform(key, (batch[\"x\"].shape[0], 4, 2, ))" in prog.emit()
    params, data, grads = _gradient_draws(prog)
    s = jax.nn.sigmoid(params["a"])
    _within_interval(np.asarray(grads["a"]), np.asarray(s * (1 - s) * jnp.mean(data["x"], axis=0)))
