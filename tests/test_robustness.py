"""No silent wrong answer, no crash, no hang, no lost file (issue 19).

Every hostile input gets `FILE:LINE:COL: error:` with the line and a caret (or `--option: error:`),
exit code 1 and no traceback; emitted arithmetic agrees with the compiler's constant folding;
emitted names never collide; long sums, deep nests and nested expectations compile and run.
"""
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attractor import AttractorError, compile_source
from compiler.analysis.constants import const_value
from compiler.backend.lower import Emitter, Fn
from compiler.driver.cli import main
from compiler.ir.budget import time_budget

ROOT = Path(__file__).resolve().parents[1]
W = "param w : real = 1\n"
DATA = "data x : real from gaussian(n=10)\n"
LATENT = DATA + "model p:\n    z ~ Normal(0, 1)\n    x ~ Normal(z, 1)\n"


def diagnosed(text: str, line: int, col: int, words: str) -> None:
    """`text` is refused at line:col with `words`, the source line and a caret."""
    with pytest.raises(AttractorError) as e:
        compile_source(text, filename="p.att")
    rendered = str(e.value)
    head, *rest = rendered.splitlines()
    assert head.startswith(f"p.att:{line}:{col}: error: "), rendered
    assert words in head, rendered
    assert len(rest) == 2 and rest[1].strip() == "^", rendered


LANGUAGE = [
    (W + "minimize w^2\ntrain optimizer=sgd(momentum=-5)\n", 3, 7, "sgd option momentum must be in [0, 1), got -5"),
    (W + "minimize w^2\ntrain optimizer=adam(eps=-1)\n", 3, 7, "adam option eps must be a positive number"),
    (W + "minimize w^2\ntrain optimizer=adam(b2=2)\n", 3, 7, "adam option b2 must be in [0, 1), got 2"),
    (W + "minimize w^2\ntrain optimizer=adam(b1=1)\n", 3, 7, "adam option b1 must be in [0, 1), got 1"),
    (W + "minimize w^2\ntrain optimizer=adam(lr=0)\n", 3, 7, "learning rate must be positive"),
    (W + "minimize w^2\ntrain optimizer=adam(lr=0.1, lr=0.2)\n", 3, 17, "adam option 'lr' is given twice"),
    (W + "net f : mlp(1, 4, 1; act=tanh, act=relu)\nminimize w^2 + f(w)\n", 2, 1, "mlp option 'act' is given twice"),
    ('data x : real from csv("a.csv", path="b.csv")\n' + W + "minimize w^2\n", 1, 1, ""),
    ('data x : real from gaussian(n=3, n=4)\n' + W + "minimize w^2\n", 1, 20, "gaussian argument 'n' is given twice"),
    (LATENT + "guide q(z, z | x):\n    z ~ Normal(0, 1)\nminimize E[x ~ data] -log p(x)\n", 5, 7, "'z' appears twice"),
    (LATENT + "guide q(z | x, x):\n    z ~ Normal(0, 1)\nminimize E[x ~ data] -log p(x)\n", 5, 7, "'x' appears twice"),
    ('data x : real from csv("\\x")\n' + W + "minimize w^2\n", 1, 25, "unknown escape '\\x'"),
    ('data x : real from csv("a\\N{nope}")\n' + W + "minimize w^2\n", 1, 26, "unknown escape '\\N'"),
    ("data x : real from csv('\\u0041')\n" + W + "minimize w^2\n", 1, 25, "unknown escape '\\u'"),
    (W + "minimize w^2\ntrain steps=1e999\n", 3, 13, "the number 1e999 is too large"),
    (DATA + W + "minimize E[x ~ data] (x - w)^2\ntrain batch=1e999\n", 4, 13, "too large"),
    (W + "minimize w^2\ntrain steps=3e9\n", 3, 7, "train option steps must be at most 2147483647"),
    (W + "minimize w^2\ntrain samples=2147483648\n", 3, 7, "must be at most"),
    (W + "minimize w^2 + 1e999\n", 2, 16, "too large: float32 holds at most 3.4e38"),
    (W + "minimize w^2 + " + "9" * 400 + "\n", 2, 16, "(400 characters) is too large"),
    (W + "minimize w^2 + 1e39\n", 2, 16, "1e39 is too large"),
    (W + "minimize w^2 + 1e-50 * w\n", 2, 16, "1e-50 is too small: float32 rounds it to 0"),
    (W + "const c = (-1)^0.5\nminimize (w - c)^2\n", 2, 11, "(-1)^0.5 has no real value"),
    (W + "minimize w^2\nreport r = (-8)^(1/3)\n", 3, 12, "(-8)^0.333333 has no real value"),
    (W + "const c = 10\nminimize w^2 + c^39\n", 3, 16, "overflows"),
    (W + "minimize w^2 + 1 / (2 - 2)\n", 2, 16, "division by zero"),
    (W + "minimize w^2 + 0^-1\n", 2, 16, "divides by zero"),
    (W + "minimize w^2 + log(0)\n", 2, 16, "log(0) has no real, finite value"),
    (W + "minimize w^2 + exp(1000)\n", 2, 16, "overflows"),
    (DATA + W + "minimize E[(x, x) ~ data] (x - w)^2\n", 3, 16, "'x' is bound twice"),
]


@pytest.mark.parametrize("text, line, col, words", LANGUAGE)
def test_language_errors_are_located(text, line, col, words):
    if "path=" in text:   # a positional and a keyword argument for the same parameter: the source's own check
        with pytest.raises(AttractorError, match="given twice"):
            compile_source(text, filename="p.att").load_data()
        return
    diagnosed(text, line, col, words)


def test_a_variable_named_self_works():
    mod = compile_source("param self : real = 1\nminimize (self - 2)^2\ntrain steps=50\n").build()
    params, _ = mod.fit({}, 50, 0)
    assert abs(float(params["self"]) - 2) < 1e-3


# ---- code generation --------------------------------------------------------------------------

@st.composite
def constant_expressions(draw, depth=0):
    """Random constant expressions: numbers (negative ones included), + - * / ^ and unary minus."""
    if depth >= 4 or draw(st.integers(0, 3)) == 0:
        value = draw(st.sampled_from([0.5, 1, 2, 3, 1.5, 4]))
        return f"-{value}" if draw(st.booleans()) and depth > 0 else str(value)
    op = draw(st.sampled_from(["+", "-", "*", "/", "^", "neg", "paren"]))
    a = draw(constant_expressions(depth=depth + 1))
    if op == "neg":
        return f"-({a})"
    if op == "paren":
        return f"({a})"
    b = draw(constant_expressions(depth=depth + 1))
    if op == "^":
        b = draw(st.sampled_from(["2", "3", "-1", "-2", "4", "0.5"]))
        return f"({a})^{b}"
    return f"{a} {op} ({b})" if draw(st.booleans()) else f"({a}) {op} {b}"


def _emitted_value(program, expr) -> float:
    """The expression as the backend writes it, run as Python (numpy standing in for jax.numpy)."""
    em = Emitter(program)
    fn = Fn(em, 0, {}, None)
    text = em.lower(expr, fn)
    scope = {"jnp": np}
    exec("\n".join(fn.lines), scope)   # noqa: S102 - the emitted temporaries, the point of the test
    with np.errstate(all="ignore"):
        return float(eval(text, scope))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(constant_expressions())
def test_emitted_arithmetic_agrees_with_constant_folding(text):
    try:
        prog = compile_source(f"param w : real\nconst c = -2\nminimize w^2\nreport r = {text}\n")
    except AttractorError as e:   # no real finite value: refused, never emitted
        assert any(w in e.message for w in ("no real value", "division by zero", "divides by zero", "overflows")), e
        return
    expr = prog.program.reports[0].expr
    folded = const_value(expr, prog.program)
    emitted = _emitted_value(prog.program, expr)
    if folded is None:   # const_value declines 0^0.5 (a zero base to a fractional power); Python agrees it is 0
        folded = eval(text.replace("^", "**"))
    assert emitted == pytest.approx(folded, rel=1e-9, abs=1e-12), (text, emitted, folded)


def test_negative_constants_to_powers():
    prog = compile_source("param w : real\nconst c = -2\nminimize w^2\n"
                          "report a = c^4\nreport b = c^-2\nreport d = c^6\nreport e = -2^2\nreport f = (-2)^3\n")
    mod = prog.build()
    import jax
    reps = mod.reports(mod.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(0), {})
    assert {k: float(v) for k, v in reps.items()} == {"a": 16.0, "b": 0.25, "d": 64.0, "e": -4.0, "f": -8.0}


def test_emitted_names_never_collide():
    """`data x_4` binds v_x_4; the latent v_x's temporaries once took the same name, so the loss
    was (v_x_4 - v_x_4) and mu stayed 0. The run must not depend on the data variable's name."""
    found = []
    for data_name in ("x_4", "x_9"):
        text = (f"data {data_name} : real from gaussian(mean=3, n=200)\nparam mu : real\n"
                f"minimize E[{data_name} ~ data] E[v_x ~ Normal(mu, 1)] ({data_name} - v_x)^2\n")
        mod = compile_source(text).build()
        params, _ = mod.fit(mod.load_data(), 200, 0)
        found.append(float(params["mu"]))
    assert found[0] > 0.1 and found[0] == pytest.approx(found[1], abs=1e-6)


def test_a_sum_of_600_terms_compiles_and_is_right():
    terms = " + ".join(f"(w - {i})^2" for i in range(600))
    mod = compile_source(f"param w : real\nminimize {terms}\n").build()
    import jax
    value = float(mod.LOSSES["theta"]({"w": np.float32(0.0)}, jax.random.PRNGKey(0), {}))
    assert value == pytest.approx(sum(i * i for i in range(600)), rel=1e-5)
    assert max(_nesting(line) for line in mod.SOURCE_TEXT.splitlines()) < 100


def _nesting(line: str) -> int:
    """The deepest parenthesis nesting on a line (Python's parser stops at 200)."""
    depth = deepest = 0
    for ch in line:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
    return deepest


def test_199_nested_calls_and_99_nested_expectations_compile_and_run():
    nested = "tanh(" * 199 + "w" + ")" * 199
    mod = compile_source(f"param w : real = 0.5\nminimize {nested}^2\n").build()
    params, _ = mod.fit({}, 3, 0)
    assert np.isfinite(float(params["w"]))
    text = DATA + "param w : real\nminimize " + "E[x ~ data] " * 99 + "(x - w)^2\n"
    mod = compile_source(text).build()
    data = mod.load_data()
    params, _ = mod.fit(data, 3, 0)
    assert np.isfinite(float(params["w"]))


# ---- the command line ----------------------------------------------------------------------------

def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "internal error" not in out.err, out.err
    return code, out.out, out.err


@pytest.fixture
def program(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "p.att"
    path.write_text(W + "minimize (w - 2)^2\ntrain steps=5\n")
    return path


@pytest.mark.parametrize("argv, option, words", [
    (["run", "p.att", "--steps", str(2**40)], "--steps", "from 0 to 2147483647"),
    (["run", "p.att", "--steps", "-5"], "--steps", "from 0 to 2147483647, got -5"),
    (["run", "p.att", "--steps", "1e3"], "--steps", "must be a whole number"),
    (["run", "p.att", "--seed", str(2**64)], "--seed", "from 0 to 4294967295"),
    (["check", "p.att", "--seed", "-1"], "--seed", "from 0"),
    (["compile", "p.att", "--emit", "jax", "-o", "p.att"], "-o", "is the program file itself"),
    (["compile", "p.att", "--emit", "jax", "-o", "no/such/dir/x.py"], "-o", "the folder no/such/dir does not exist"),
    (["compile", "p.att", "--emit", "jax", "-o", "."], "-o", "is a folder"),
    (["run", "p.att", "--samples", "no/x.npy"], "--samples", "does not exist"),
    (["run", "p.att", "--plot", "no/x.png"], "--plot", "does not exist"),
    (["run", "p.att", "--data", 'csv("\\x")'], "--data", "unknown escape"),
])
def test_command_line_errors_before_any_work(capsys, program, argv, option, words):
    before = program.read_text()
    code, out, err = cli(capsys, *argv)
    assert code == 1, err
    assert err.startswith(f"{option}: error: ") and words in err, err
    assert "objective" not in out and program.read_text() == before


@pytest.mark.parametrize("target", ["missing.att", "."])
def test_explain_on_a_missing_file_or_a_folder(capsys, program, target):
    code, _, err = cli(capsys, "explain", target)
    assert code == 1 and err.startswith(f"{target}: error: cannot read file"), err


def test_emit_is_written_whole(capsys, program):
    code, _, err = cli(capsys, "compile", "p.att", "--emit", "jax", "-o", "out.py")
    assert code == 0, err
    assert "def fit" in Path("out.py").read_text() and not list(Path(".").glob(".out*"))


def test_explain_on_an_ascii_terminal(tmp_path):
    path = tmp_path / "p.att"
    path.write_text(DATA + W + "minimize E[x ~ data] (x - w)^2\n")
    r = subprocess.run([sys.executable, "-m", "compiler", "explain", str(path)], capture_output=True, text=True,
                       env={"PYTHONIOENCODING": "ascii", "PATH": "/usr/bin:/bin"}, cwd=ROOT, check=False)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


def test_argparse_errors_exit_1(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run"])
    assert e.value.code == 1
    assert "error:" in capsys.readouterr().err


# ---- resources and budgets -------------------------------------------------------------------------

@pytest.mark.parametrize("text, words", [
    ("param w : real[100000, 100000]\nminimize sumsq(w)\n", "param w 40 GB"),
    ("data x : real[2] from ring8(n=1e9)\nparam w : real[2]\nminimize E[x ~ data] sumsq(x - w)\n", "data 24 GB"),
])
def test_a_run_that_cannot_fit_is_refused_with_the_estimate(capsys, tmp_path, monkeypatch, text, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("compiler.driver.resources.available_memory", lambda: 16 * 10**9)
    Path("p.att").write_text(text)
    code, _, err = cli(capsys, "run", "p.att", "--json")
    assert code == 1 and err.startswith("p.att:") and "needs about" in err and words in err and "--force" in err, err


WIDE_NET = DATA + "net f : mlp(1, 100000000, 1)\nminimize E[x ~ data] (f(x) - x)^2\n"


@pytest.mark.parametrize("command", ["run", "check", "field"])
def test_a_net_too_wide_is_refused_at_its_declaration_before_allocating(capsys, tmp_path, monkeypatch, command):
    """mlp(1, 1e8, 1): 1.2 GB of weights, 12 GB of activations for a step over 10 examples; the
    refusal names the net's declaration (line 2, column 5) in every command that allocates."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("compiler.driver.resources.available_memory", lambda: 16 * 10**9)
    Path("p.att").write_text(WIDE_NET)
    start = time.monotonic()
    code, _, err = cli(capsys, command, "p.att")
    head = next((line for line in err.splitlines() if "error:" in line), "")   # run prints the derivation first
    assert code == 1 and head.startswith("p.att:2:5: error: ") and f"`attractor {command}`" in head, err
    assert "one step through net f 12 GB" in head and "--force" in head, err
    assert "net f : mlp(1, 100000000, 1)" in err and time.monotonic() - start < 30


def test_check_leaves_the_optimiser_out_of_its_estimate():
    from compiler.driver.resources import estimate
    program = compile_source(WIDE_NET).program
    run = dict((what, size) for what, size, _ in estimate(program, program.data_source, ROOT))
    check = dict((what, size) for what, size, _ in estimate(program, program.data_source, ROOT, training=False))
    weights = (100000000 * 2 + 100000001) * 4
    assert run["net f"] == check["net f"] == weights
    assert run["gradients and adam state"] == 4 * weights and check["gradients"] == weights
    assert run["one step through net f"] == check["one step through net f"] == 3 * 100000002 * 10 * 4


def test_an_outer_budget_that_ends_first_reports_its_own_overrun():
    with pytest.raises(AttractorError, match="outer"), time_budget(0.1, "outer"):
        with time_budget(5, "inner"):
            time.sleep(2)


def test_latex_falls_back_to_structure_when_sympy_does_not_finish(monkeypatch):
    """SymPy that never returns (patched to spin) costs its share of the budget, not a hang: the
    expression is typeset node by node instead."""
    import compiler.math.latex as latex_module

    def spin(*args, **kwargs):
        while True:
            pass
    prog = compile_source(W + "minimize (w - 2)^2 + exp(w)\n")
    monkeypatch.setattr(latex_module, "to_sympy", spin)
    monkeypatch.setattr(latex_module, "SYMPY_SECONDS", 0.2)
    start = time.monotonic()
    text = prog.to_latex()
    assert time.monotonic() - start < 5
    assert r"\left(w - 2\right)^{2}" in text and r"\operatorname{exp}\left(w\right)" in text, text


def test_latex_of_a_rendering_shares_one_budget(monkeypatch):
    """Once a rendering has spent RENDERING_SECONDS in SymPy, the rest is typeset without it."""
    import compiler.math.latex as latex_module
    calls = []

    def slow(node, symbols):
        calls.append(node)
        time.sleep(0.1)
        raise latex_module.NotScalar("counted")
    terms = " + ".join(f"(w - {i})^2" for i in range(40))
    prog = compile_source(W + f"minimize {terms}\n")
    monkeypatch.setattr(latex_module, "to_sympy", slow)
    monkeypatch.setattr(latex_module, "RENDERING_SECONDS", 0.35)
    text = prog.to_latex()
    assert 1 <= len(calls) <= 5 and r"\left(w - 39\right)" in text


def test_latex_of_a_long_sum_calls_sympy_once_per_scalar_term(monkeypatch):
    """Linear, not quadratic: each maximal scalar subtree goes to SymPy once (the sum itself is not
    scalar: its expectations are not)."""
    import compiler.math.latex as latex_module
    seen = []
    real = latex_module.to_sympy
    monkeypatch.setattr(latex_module, "to_sympy", lambda node, symbols: seen.append(node) or real(node, symbols))
    terms = " + ".join(f"E[x ~ data] (x - w - {i})^2 + (w - {i})^2" for i in range(50))
    text = latex_module.latex(compile_source(DATA + W + f"minimize {terms}\n").typed.objective.expr)
    assert len(seen) == 100 and r"\left(w - 49\right)^{2}" in text and r"\mathbb{E}" in text


def test_the_grammar_tables_are_cached_per_user_and_a_damaged_cache_is_rebuilt(tmp_path):
    """The LALR tables go to $XDG_CACHE_HOME/attractor (never a shared temporary folder) and are
    read back; a damaged file is rebuilt silently; no cache folder, no cache, same parse."""
    code = ("import sys; from compiler.frontend.parser import parse, _lark; "
            "print(len(parse('param w : real\\nminimize (w - 1)^2\\n')), _lark().options.cache)")

    def parse_with(cache_home):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False,
                           env={"XDG_CACHE_HOME": str(cache_home), "PATH": "/usr/bin:/bin"})
        assert r.returncode == 0 and r.stderr == "", r.stderr
        return r.stdout.split()
    count, where = parse_with(tmp_path)
    cached = list((tmp_path / "attractor").glob("grammar-*.lark"))
    assert count == "2" and [str(c) for c in cached] == [where] and cached[0].stat().st_size > 10000
    cached[0].write_bytes(cached[0].read_bytes()[:500])   # a damaged file (a write cut short)
    assert parse_with(tmp_path)[0] == "2" and cached[0].stat().st_size > 10000
    assert parse_with(tmp_path / "no" / "such")[:2] == ["2", "False"]


def test_time_budget_ends_in_a_diagnostic():
    start = time.monotonic()
    with pytest.raises(AttractorError, match="too slow"), time_budget(0.2, "too slow"):
        while True:
            pass
    assert time.monotonic() - start < 5


def test_time_budgets_nest_and_restore():
    with time_budget(5, "outer"):
        with pytest.raises(AttractorError, match="inner"), time_budget(0.1, "inner"):
            time.sleep(2)
        time.sleep(0.05)   # the outer budget is still running, not fired


def test_no_budget_off_the_main_thread():
    done = []

    def work():
        with time_budget(0.01, "never"):
            time.sleep(0.05)
        done.append(True)
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert done == [True]


@pytest.mark.parametrize("generator, words", [
    ("(u - 1)^100", "did not finish within"),
    ("exp(exp(u) - exp(1)) - 1", "did not finish within"),
    ("max(1 / 0, (u - 1)^2)", "division by zero"),
])
def test_hard_divergences_end_in_a_diagnostic_at_the_definition(monkeypatch, generator, words):
    monkeypatch.setattr("compiler.rewrite.manager.PASS_SECONDS", 1.0)
    text = (DATA + "sampler g:\n    e ~ Normal(0, 1)\n    x = e\n"
            f"divergence d(u) = {generator}\nminimize d(data || g)\n")
    with pytest.raises(AttractorError) as e:
        compile_source(text, filename="p.att")
    head = str(e.value).splitlines()[0]
    assert head.startswith("p.att:5:") and words in head, str(e.value)
