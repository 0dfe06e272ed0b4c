"""Nets from Python (`net f : python("nets.py:name")`, SPEC §9.5), the convolutional VAE of
examples/conv_vae.att, and `attractor sample --of` for models and guides (SPEC §9.6)."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from attractor import AttractorError, compile_file
from compiler import ir
from compiler.driver.workflow import block_draws, save_params
from compiler.frontend.checker import check
from compiler.frontend.parser import parse
from compiler.ir.printer import program_text

ROOT = Path(__file__).resolve().parents[1]
CONV_VAE = ROOT / "examples" / "conv_vae.att"

# an affine map y = x W + b, as an author would write one: one example in, one out
AFFINE = '''
import jax
import jax.numpy as jnp


class Affine:
    def __init__(self, width):
        self.width = width

    def init(self, key, x):
        return {"w": jax.random.normal(key, (x.shape[-1], self.width)) * 0.1, "b": jnp.zeros(self.width)}

    def apply(self, params, x):
        return x @ params["w"] + params["b"]


affine = Affine(2)
no_apply = type("NoApply", (), {"init": lambda self, key, x: {}})()


class Broken:
    def init(self, key, x):
        raise ValueError("no such layer")

    def apply(self, params, x):
        return x


broken = Broken()
'''

REGRESSION = '''data x : real[3], y : real[2] from npz("xy.npz")
net f : python("{ref}")
minimize E[(x, y) ~ data] sumsq(f(x) - y)
train steps=200, optimizer=adam(lr=0.05)
'''


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "nets.py").write_text(AFFINE)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    np.savez(tmp_path / "xy.npz", x=x, y=(x @ np.array([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]]) + 0.5).astype(np.float32))
    return tmp_path


def write(folder: Path, text: str, name: str = "prog.att") -> Path:
    (folder / name).write_text(text)
    return folder / name


def test_shapes_come_from_eval_shape_and_the_program_prints_and_reparses(folder):
    prog = compile_file(write(folder, REGRESSION.format(ref="nets.py:affine")))
    net = prog.typed.decl("f")
    assert (net.python, net.shape_in, net.shape_out, net.size) == ("nets.py:affine", (3,), (2,), 3 * 2 + 2)
    text = program_text(dataclasses.replace(prog.typed, players=()))   # the checker's player is not written
    assert 'net f : python("nets.py:affine")' in text
    assert check(parse(text + "\n"), folder) == prog.typed


def test_a_net_from_python_trains(folder):
    """The affine net fits the affine data: the objective falls to near zero."""
    prog = compile_file(write(folder, REGRESSION.format(ref="nets.py:affine")))
    mod = prog.build()
    params, history = mod.fit(prog.load_data(), None, 0)
    assert history[0]["theta"] > 1.0 and history[-1]["theta"] < 1e-2
    np.testing.assert_allclose(params["f"]["b"], [0.5, 0.5], atol=0.05)


@pytest.mark.parametrize("ref, words", [
    ("missing.py:affine", "cannot read {folder}/missing.py: no such file"),
    ("nets.py:nothing", "defines no 'nothing'"),
    ("nets.py:no_apply", "has no method apply"),
    ("nets.py:broken", "init(key, x) failed on an input of shape (3,): ValueError: no such layer"),
    ("../x y.py:f", "must end in .py and use only letters"),
    ("nets.py:a.b", "'a.b' is not a Python identifier"),
    ("nets.py", 'write python("FILE.py:NAME")'),
])
def test_a_net_that_cannot_be_loaded_is_a_diagnostic_at_its_string(folder, ref, words):
    path = write(folder, REGRESSION.format(ref=ref))
    with pytest.raises(AttractorError) as e:
        compile_file(path)
    first = str(e.value).splitlines()[0]
    assert first.startswith(f"{path}:2:16: error: ") and words.format(folder=folder) in first


@pytest.mark.parametrize("body, where, words", [
    ("minimize E[(x, y) ~ data] sumsq(f(x) - x)", "3:33", "real[2] and real[3]"),
    ("minimize E[(x, y) ~ data] (sumsq(f(x) - y) + sumsq(f(y)))", "3:52", "takes an input of shape real[3] (as at its first call), got real[2]"),
    ("minimize E[(x, y) ~ data] sumsq(y)", "2:16", "net f is never called"),
])
def test_a_call_that_does_not_fit_is_a_diagnostic(folder, body, where, words):
    path = write(folder, REGRESSION.format(ref="nets.py:affine").replace("minimize E[(x, y) ~ data] sumsq(f(x) - y)", body))
    with pytest.raises(AttractorError) as e:
        compile_file(path)
    first = str(e.value).splitlines()[0]
    assert first.startswith(f"{path}:{where}: error: ") and words in first, first


def test_the_command_line_gives_the_diagnostic_with_exit_code_1(folder):
    path = write(folder, REGRESSION.format(ref="nets.py:nothing"))
    r = subprocess.run([sys.executable, "-m", "compiler", "compile", str(path)], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert 'net f : python("nets.py:nothing")' in r.stderr and "^" in r.stderr


def test_the_emitted_module_holds_no_program_text_and_imports_the_file_by_path(folder):
    """The path travels as code points, the name as a checked identifier: the source has neither
    the program's strings nor anything it could execute but the file's import."""
    source = compile_file(write(folder, REGRESSION.format(ref="nets.py:affine"))).emit()
    assert "nets.py" not in source and "def user_net_f():" in source
    assert 'python_net(text_of((110, 101, 116, 115, 46, 112, 121, )), "affine"' in source


# ---- the convolutional VAE of examples/ --------------------------------------------------------

@pytest.fixture(scope="module")
def conv_vae():
    prog = compile_file(CONV_VAE)
    return prog, prog.build(), prog.load_data()


@pytest.mark.slow
def test_the_conv_vae_trains(conv_vae):
    """40 steps of the convolutional VAE: the negative ELBO falls (from about 44 nats)."""
    prog, mod, data = conv_vae
    assert prog.typed.decl("encoder").shape_out == (16,) and prog.typed.decl("decoder").shape_out == (64,)
    _, history = mod.fit(data, 40, 0)
    first, last = np.mean([h["theta"] for h in history[:3]]), np.mean([h["theta"] for h in history[-3:]])
    assert last < first - 3, (first, last)


@pytest.mark.slow
def test_the_emitted_conv_vae_runs_standalone(tmp_path):
    """`compile --emit jax`, then the module on its own in another folder: it imports
    examples/conv_nets.py by the path stored in it (the program's folder) and trains (3 steps;
    the summary's 100-draw bound over the whole data set is left out: it takes a minute)."""
    out = tmp_path / "conv_vae.py"
    r = subprocess.run([sys.executable, "-m", "compiler", "compile", str(CONV_VAE), "--emit", "jax", "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    script = ("import runpy; m = runpy.run_path('conv_vae.py'); params, history = m['fit'](m['load_data'](), 3, 0); "
              "print(history[-1]['theta'])")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert np.isfinite(float(r.stdout.split()[-1]))


def test_an_emitted_module_with_a_python_net_runs_standalone(folder, tmp_path_factory):
    """The module, written elsewhere, run as a script: the net's file is found beside the program."""
    out = tmp_path_factory.mktemp("elsewhere") / "regression.py"
    out.write_text(compile_file(write(folder, REGRESSION.format(ref="nets.py:affine"))).emit())
    r = subprocess.run([sys.executable, str(out), "--steps", "50", "--json"], capture_output=True, text=True, cwd=out.parent)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["objective"] < 1.0


def test_an_emitted_module_whose_net_file_is_gone_says_so_in_one_line(folder, tmp_path_factory):
    """The net's file missing at run time (neither beside the program nor beside the module) ends as
    unreadable data does: one line on stderr, exit code 2, no traceback; a module without a Python
    net carries none of this."""
    out = tmp_path_factory.mktemp("elsewhere") / "regression.py"
    out.write_text(compile_file(write(folder, REGRESSION.format(ref="nets.py:affine"))).emit())
    (folder / "nets.py").unlink()
    r = subprocess.run([sys.executable, str(out), "--steps", "5"], capture_output=True, text=True, cwd=out.parent)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [f"error: cannot read {(folder / 'nets.py').resolve()}: no such file"]
    plain = compile_file(write(folder, REGRESSION.replace('python("{ref}")', "mlp(3, 2)"), "plain.att")).emit()
    assert "PythonNetError" not in plain and "def python_net" not in plain


# ---- attractor sample --of: models and guides --------------------------------------------------

SMALL_VAE = '''data x : real[3] from npz("xy.npz")
net dec : mlp(2, 3)
net enc : mlp(3, 2)
model p:
    z ~ Normal(0, 1) : real[2]
    x ~ Normal(dec(z), 0.001)
guide q(z | x):
    z ~ Normal(enc(x), 0.001)
minimize E[x ~ data] -log p(x)
train steps=5
'''


@pytest.fixture
def small_vae(folder):
    prog = compile_file(write(folder, SMALL_VAE, "small.att"))
    params = prog.build().init(jax.random.PRNGKey(3))
    save_params(folder / "p.npz", params)
    return prog, params, str(folder / "p.npz")


def test_sample_of_a_guide_applies_the_encoder_to_the_data(small_vae):
    prog, params, path = small_vae
    mod = prog.build()
    draws, what = block_draws(prog, "q", path, None, 5, 0)
    x = prog.load_data()["x"]
    assert draws.shape == (5, 2) and what == "z from guide q given x (the first 5 examples)"
    np.testing.assert_allclose(draws, mod.mlp(params["enc"], x[:5], "relu"), atol=0.01)
    assert block_draws(prog, "q", path, None, 1000, 0)[0].shape == (64, 2)   # one draw per example at most


def test_sample_of_a_model_draws_its_data_variables(small_vae):
    prog, params, path = small_vae
    draws, what = block_draws(prog, "p", path, None, 200, 0)
    assert draws.shape == (200, 3) and what == "x from model p"
    assert np.all(np.std(draws, axis=0) > 0.01)   # z varies from draw to draw, and with it dec(z)


def test_sample_of_an_unknown_block_is_a_diagnostic(small_vae):
    prog, _, path = small_vae
    with pytest.raises(AttractorError, match="the program has no model, sampler or guide of that name"):
        block_draws(prog, "r", path, None, 5, 0)
    assert isinstance(prog.typed.decl("q"), ir.Block)
