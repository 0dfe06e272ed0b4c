"""Every user error is `FILE:LINE:COL: error: message`, the source line and a caret; exit 1."""
import subprocess
import sys
from pathlib import Path

import pytest

from attractor import AttractorError, compile_source
from compiler.driver.api import compile_file

ROOT = Path(__file__).resolve().parents[1]
HEAD = "data x : real[3], y : real from gaussian(n=10)\nparam w : real[3]\n"
LATENT = "data x : real from gaussian(n=10)\nmodel p:\n    z ~ Normal(0, 1)\n    x ~ Normal(z, 1)\n"

CASES = [
    # (program, line, col, words in the message)
    (HEAD + "minimize E[x ~ data] (dot(w, x) - y\n", 3, 36, "brackets do not continue lines"),
    (HEAD + "minimize E[x ~ data] dot(w, x) $ 2\n", 3, 32, "unexpected character '$'"),
    (HEAD + "minimize E[(x, y) ~ data] (dot(v, x) - y)^2\n", 3, 32, "unknown name 'v'"),
    (HEAD + "minimize E[(x, y) ~ data] frob(x)\n", 3, 27, "unknown function or model 'frob'"),
    (HEAD + "minimize sumsq(w) + x\n", 3, 21, "data variable 'x' is used outside an expectation over the data"),
    (HEAD + "minimize E[(x, y) ~ data] sum(w * y + x[3])\n", 3, 41, "index 3 is out of range"),
    (HEAD + "param v : real[4]\nminimize E[(x, y) ~ data] dot(v, x)\n", 4, 27, "shape mismatch: dot of real[4] and real[3]"),
    (HEAD + "param v : real[2]\nminimize E[(x, y) ~ data] sum(v + x)\n", 4, 31, "do not broadcast"),
    (HEAD + "minimize E[(x, y) ~ data] -log p(x)\n", 3, 32, "unknown function or model 'p'"),
    (HEAD + "minimize sumsq(w)\ntrain steps=10, speed=3\n", 4, 17, "unknown train option 'speed'"),
    (HEAD + "minimize sumsq(w)\ntrain steps=-3\n", 4, 7, "train option steps must be a positive integer"),
    (HEAD + "minimize sumsq(w)\ntrain optimizer=adamx(lr=0.1)\n", 4, 7, "unknown optimizer 'adamx'"),
    (HEAD + "minimize sumsq(w)\ntrain optimizer=adam(rate=0.1)\n", 4, 7, "adam has no option 'rate'"),
    (HEAD + "minimize sumsq(w)\ntrain dynamics=chaotic\n", 4, 7, "unknown dynamics 'chaotic'"),
    ("data x : real[3] from mnist\nparam w : real[3]\nminimize sumsq(w)\n", 1, 23, "unknown data set 'mnist'"),
    (HEAD + "minimize sumsq(w)\nsubject to sumsq(w) = 1\n", 4, 1, "equality constraint is written with '=='"),
    (HEAD + "minimize sumsq(w)\nsubject to 1 <= 2\n", 4, 1, "no parameter"),
    (HEAD + "param log : real\nminimize sumsq(w)\n", 3, 7, "'log' is a builtin name"),
    (HEAD + "param w : real\nminimize sumsq(w)\n", 3, 7, "'w' is already declared"),
    (HEAD + "minimize sumsq(w)\nminimize sumsq(w)\n", 4, 1, "exactly one objective"),
    (HEAD + "report r = sumsq(w)\n", 1, 1, "no objective"),
    (HEAD + "minimize w\n", 3, 10, "objective must be a scalar"),
    (HEAD + "model p:\n\tx ~ Normal(0, 1)\nminimize sumsq(w)\n", 4, 1, "a tab in indentation"),
    (HEAD + "model p:\n    x ~ Normal(0, 1) : real[3]\n  y ~ Normal(0, 1)\nminimize sumsq(w)\n", 5, 1, "unindent does not match"),
    (HEAD + "model p:\n    x ~ Normal(0, -1) : real[3]\nminimize sumsq(w)\n", 4, 19, "scale must be positive"),
    (HEAD + "model p:\n    x ~ Normal(0, 1, 2) : real[3]\nminimize sumsq(w)\n", 4, 9, "Normal takes 2 parameter(s)"),
    (HEAD + "model p:\n    x ~ Normal(0, 1) : real[2]\nminimize sumsq(w)\n", 4, 5, "the data declare it real[3]"),
    (HEAD + "sampler g:\n    e ~ Normal(0, 1) : real[3]\n    x = e\nminimize sumsq(w) + E[x ~ data] g(x)\n", 6, 33, "sampler g has no density"),
    (HEAD + "net f : mlp(4, 1)\nminimize E[(x, y) ~ data] f(x)\n", 4, 27, "input of width 4, got width 3"),
    (HEAD + "net f : mlp(3, 1; act=gelu2)\nminimize sumsq(w)\n", 3, 1, "unknown activation"),
    (HEAD + "minimize sumsq(w) via magic\n", 3, 23, "unknown rule 'magic'"),
    (HEAD + "minimize sumsq(w)\nreport r = E[(x, y) ~ data] [y <= 0 <= 1]\n", 4, 37, "unexpected"),
    ("data x : real[3]\nminimize E[x ~ data] sum(x) via __import__\n", 2, 33, "unknown rule"),
    (LATENT.replace("Normal(z, 1)", "Normal(z, s)").replace("model p", "const s = 1 - 3\nmodel p")
     + "minimize E[x ~ data] -log p(x)\n", 5, 19, "Normal's scale must be positive, got -2"),
    (LATENT.replace("Normal(0, 1)", "Uniform(1, -1)") + "minimize E[x ~ data] -log p(x)\n", 3, 9, "needs low < high"),
    (LATENT + "guide q(z | x):\n    z ~ Normal(0, 1)\n    u ~ Normal(0, 1)\nminimize E[x ~ data] -log p(x)\n", 7, 5,
     "guide q draws 'u', which is not among its latents"),
    (LATENT + "minimize E[x ~ data] -log p(x, x)\n", 5, 32, "'x' appears twice in p(...)"),
    ("param a : real\nminimize (a - 1)^2 via evolution_strategy(population=8, population=4)\n", 2, 24,
     "option 'population' is given twice"),
]


@pytest.mark.parametrize("program, line, col, words", CASES)
def test_diagnostic(program, line, col, words):
    with pytest.raises(AttractorError) as info:
        compile_source(program, filename="bad.att")
    text = str(info.value)
    head = text.splitlines()[0]
    assert head.startswith(f"bad.att:{line}:{col}: error: "), text
    assert words in head, text
    lines = text.splitlines()
    assert lines[1].strip() == program.splitlines()[line - 1].replace("\t", " ").strip()
    assert lines[2].index("^") - 4 == col - 1


def test_missing_file_is_a_diagnostic():
    with pytest.raises(AttractorError) as info:
        compile_file(ROOT / "examples" / "no_such_program.att")
    assert "error: cannot read file" in str(info.value)


def test_missing_data_file_is_located_at_the_source(tmp_path):
    prog = tmp_path / "p.att"
    prog.write_text('data x : real[3] from npz("nothere.npz")\nparam w : real[3]\nminimize E[x ~ data] dot(w, x)^2\n')
    compiled = compile_file(prog)
    with pytest.raises(AttractorError) as info:
        compiled.load_data()
    assert info.value.render().startswith(f"{prog}:1:23: error: ")


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "compiler", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_prints_diagnostic_and_exits_1(tmp_path):
    bad = tmp_path / "bad.att"
    bad.write_text(HEAD + "minimize E[(x, y) ~ data] (dot(v, x) - y)^2\n")
    r = _cli("compile", str(bad))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith(f"{bad}:3:32: error: unknown name 'v'")
    assert r.stderr.splitlines()[2].strip() == "^"


def test_cli_missing_file_and_bad_data_source(tmp_path):
    r = _cli("compile", str(tmp_path / "nothing.att"))
    assert r.returncode == 1 and "Traceback" not in r.stderr and "error: cannot read file" in r.stderr
    r = _cli("run", str(ROOT / "examples" / "least_squares.att"), "--data", "npz(\"missing.npz\")", "--steps", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "error:" in r.stderr


def test_names_that_are_python_keywords_are_safe_in_emitted_code():
    src = """data lambda : real[3], class : real from gaussian(n=10)
param def : real[3]
minimize E[(lambda, class) ~ data] (dot(def, lambda) - class)^2
report import = sumsq(def)
train steps=2
"""
    with pytest.raises(AttractorError, match="gaussian"):
        compile_source(src).load_data()  # gaussian provides one variable, not two
    src = src.replace("gaussian(n=10)", "sparse_regression(n=10, d=3, k=1)")
    prog = compile_source(src)
    mod = prog.build()
    params, _ = mod.fit(prog.load_data(), steps=2, seed=0)
    assert set(params) == {"def"}
    assert "import" in mod.REPORTS


def test_strings_never_reach_emitted_code(tmp_path):
    import numpy as np
    path = tmp_path / 'we"ird\'; import os #.npz'
    np.savez(path, x=np.ones((5, 3), np.float32))
    prog_file = tmp_path / "p.att"
    prog_file.write_text(f"data x : real[3] from npz({str(path.name)!r})\nparam w : real[3]\nminimize E[x ~ data] (dot(w, x) - 1)^2\n")
    prog = compile_file(prog_file)
    source = prog.emit()
    assert "import os" not in source and "we\"ird" not in source
    assert prog.load_data()["x"].shape == (5, 3)
