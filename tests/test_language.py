"""The language additions of SPEC §9.5: array literals, eye/zeros/ones, initial and random initial
values, indexing and static slices, one-argument max/min, concat; user-declared players."""
from __future__ import annotations

import jax
import numpy as np
import pytest
import sympy as sp

from attractor import AttractorError, compile_source
from compiler import ir
from compiler.frontend.checker import check
from compiler.frontend.parser import parse
from compiler.ir.builtins import FUNCTIONS, OPERATIONS
from compiler.ir.printer import show
from compiler.math.latex import latex
from compiler.math.symbolic import to_sympy


def objective(text: str) -> ir.Node:
    return check(parse(text)).objective.expr


def loss_at_init(text: str, seed: int = 0):
    mod = compile_source(text).build()
    params = mod.init(jax.random.PRNGKey(seed))
    return mod, params, {k: float(v) for k, v in mod.losses(params, jax.random.PRNGKey(seed), {}).items()}


# ---- parsing, printing, the checker's shapes --------------------------------------------------

@pytest.mark.parametrize("written, printed", [
    ("sum([1, 2] * w[0:2])", "sum([1, 2] * w[0:2])"),
    ("sumsq(A - [[1, 0], [0, 1]])", "sumsq(A - [[1, 0], [0, 1]])"),
    ("A[1, 0] + A[0][1]", "A[1][0] + A[0][1]"),
    ("w[-1] + sum(w[:2]) + sum(w[1:])", "w[2] + sum(w[0:2]) + sum(w[1:3])"),
    ("max(w) - min(w) + max(w[0], 1)", "max(w) - min(w) + max(w[0], 1)"),
    ("sumsq(concat(w, [1]) - ones(4)) + sum(zeros(2, 3)) + sum(eye(2) * A)",
     "sumsq(concat(w, [1]) - ones(4)) + sum(zeros(2, 3)) + sum(eye(2) * A)"),
])
def test_array_syntax_prints_as_written_with_indices_resolved(written, printed):
    e = objective(f"param w : real[3]\nparam A : real[2, 2]\nminimize {written}\n")
    assert show(e) == printed


def test_a_one_element_list_is_a_list_and_a_comparison_stays_an_iverson_bracket():
    e = objective("param w : real[3]\nminimize sum([w[0]]) + [w[0] <= 1]\n")
    listed, bracket = e.args
    assert listed.args[0].fn == "array" and len(listed.args[0].args) == 1
    assert isinstance(bracket, ir.Compare)


def test_constants_index_and_size():
    e = objective("const k = 1\nconst n = 2\nparam w : real[3]\nminimize w[k] + w[k + 1] + sum(eye(n))\n")
    assert show(e) == "w[1] + w[2] + sum(eye(2))"


@pytest.mark.parametrize("program, col, words", [
    ("minimize 0\nconst m = [[1, 0], [0]]\n", 20, "ragged array literal"),
    ("param w : real[3]\nminimize w[3]\n", 12, "index 3 is out of range"),
    ("param w : real[3]\nminimize w[-4]\n", 12, "index -4 is out of range"),
    ("param w : real[3]\nminimize w[0.5]\n", 12, "an index must be an integer"),
    ("param w : real[3]\nparam v : real\nminimize w[v]\n", 12, "an index must be an integer"),
    ("param w : real[3]\nminimize sum(w[2:1])\n", 16, "is empty"),
    ("param w : real[3]\nminimize w[0, 1]\n", 10, "2 indices for a value of shape real[3]"),
    ("param A : real[2, 2]\nminimize sum(A[0:1, 1])\n", 16, "a slice a:b may only be the last index"),
    ("param w : real[3]\nparam v : real[2]\nminimize sumsq(w[0:3] - v)\n", 16, "do not broadcast"),
    ("minimize 0\nparam A : real[2] = eye(2)\n", 21, "larger than the parameter"),
    ("minimize sum(zeros(0))\n", 20, "must be positive"),
    ("param w : real[2]\nminimize sum(concat(w, eye(2)))\n", 14, "concat joins along the first axis"),
])
def test_bad_arrays_are_located_diagnostics(program, col, words):
    line = program.count("\n")
    with pytest.raises(AttractorError) as info:
        compile_source(program, filename="bad.att")
    head = str(info.value).splitlines()[0]
    assert head.startswith(f"bad.att:{line}:{col}: error: ") and words in head, head


def test_latex_and_sympy_of_arrays():
    e = objective("param A : real[2, 2]\nparam w : real[3]\nminimize sumsq(A - [[1, 0], [0, 1]]) + w[2] + max(w)\n")
    text = latex(e)
    assert r"\begin{bmatrix}1 & 0 \\ 0 & 1\end{bmatrix}" in text and r"\max\left(w\right)" in text
    w = sp.Symbol("w", real=True)
    assert to_sympy(ir.Apply("index", (ir.Ref("w", "param"), ir.Num(2.0)))) == sp.IndexedBase(w)[2]


# ---- numbers through the emitted module ---------------------------------------------------------

def test_the_emitted_module_computes_each_array_operation():
    text = ("param A : real[2, 2] = eye(2)\nparam w : real[4] = [0.5, -1, 2, 3]\n"
            "minimize sumsq(A - [[1, 0], [0, 3]]) + A[0, 1]^2 + max(w) - min(w[1:]) "
            "+ sumsq(concat(w[:2], [1, 2]) - ones(4)) + w[-1] * A[1][1]\n")
    mod, params, losses = loss_at_init(text)
    np.testing.assert_array_equal(params["A"], np.eye(2))
    np.testing.assert_array_equal(params["w"], [0.5, -1, 2, 3])
    w, a = np.array([0.5, -1, 2, 3]), np.eye(2)
    expected = (np.sum((a - [[1, 0], [0, 3]]) ** 2) + a[0, 1] ** 2 + w.max() - w[1:].min()
                + np.sum((np.concatenate([w[:2], [1, 2]]) - 1) ** 2) + w[-1] * a[1, 1])
    assert losses["theta"] == pytest.approx(expected)


def test_indexing_data_inside_an_expectation():
    text = ("data x : real[3] from gaussian(mean=1, std=1, n=50)\nparam b : real[2] = [1, 2]\n"
            "minimize E[x ~ data] (sumsq(x[1:] - b) + 0 * x[0])\n")
    mod = compile_source(text).build()
    data = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    params, _ = mod.fit({"x": data}, steps=2000, seed=0)
    np.testing.assert_allclose(params["b"], data[:, 1:].mean(0), atol=2e-2)


def test_random_initial_values_are_drawn_with_the_declared_scale_and_seeded():
    text = "param W : real[30, 40] ~ Normal(0.5, 0.1)\nparam u : real[5] ~ Uniform(-1, 1)\nminimize sumsq(W) + sum(u)\n"
    mod = compile_source(text).build()
    first, again = mod.init(jax.random.PRNGKey(0)), mod.init(jax.random.PRNGKey(0))
    assert first["W"].shape == (30, 40)
    assert float(first["W"].mean()) == pytest.approx(0.5, abs=0.02)
    assert float(first["W"].std()) == pytest.approx(0.1, abs=0.01)
    assert np.all(np.abs(np.asarray(first["u"])) <= 1)
    np.testing.assert_array_equal(first["W"], again["W"])
    assert not np.array_equal(first["W"], mod.init(jax.random.PRNGKey(1))["W"])
    assert "param W : real[30, 40] ~ Normal(0.5, 0.1)" in str(compile_source(text).ir)


def test_a_random_initial_value_takes_only_constants():
    with pytest.raises(AttractorError, match="a random initial value may only use numbers and constants"):
        compile_source("param s : real = 1\nparam W : real[3] ~ Normal(0, s)\nminimize sumsq(W)\n")


# ---- players declared by hand -------------------------------------------------------------------

DIRAC = ("param theta : real = 1\nparam psi : real = 1\n"
         "player critic over psi: maximize -softplus(-psi * theta) - softplus(0)\n"
         "player generator over theta: minimize -softplus(-psi * theta)\n")


def test_declared_players_make_the_field_and_record_a_game():
    prog = compile_source(DIRAC + "train steps=10\n")
    assert [(pl.name, pl.params, pl.sense) for pl in prog.program.players] == [
        ("critic", ("psi",), "max"), ("generator", ("theta",), "min")]
    assert [(s.rule, s.relation, s.player) for s in prog.derivation.steps] == [
        ("declared_game", "~", "critic"), ("declared_game", "~", "generator")]
    field = prog.build().field({"theta": np.float32(1), "psi": np.float32(1)}, jax.random.PRNGKey(0), {})
    # v_psi = +dV/dpsi = theta * sigmoid(-psi theta), v_theta = -dV/dtheta = -psi * sigmoid(-psi theta)
    s = 1 / (1 + np.exp(1.0))
    assert float(field["psi"]) == pytest.approx(s) and float(field["theta"]) == pytest.approx(-s)


@pytest.mark.parametrize("dynamics, converges", [("simultaneous", False), ("extragradient", True)])
def test_the_dirac_gan_by_hand_circles_or_converges_by_its_dynamics(dynamics, converges):
    prog = compile_source(DIRAC + f"train steps=3000, optimizer=sgd(lr=0.1), dynamics={dynamics}\n")
    params, _ = prog.build().fit(None, steps=3000, seed=0)
    radius = float(np.hypot(params["theta"], params["psi"]))
    assert (radius < 0.3) == converges, radius


@pytest.mark.parametrize("program, col, words", [
    (DIRAC + "player other over psi: minimize psi^2\n", 8, "which player critic already owns"),
    (DIRAC + "player other over phi: minimize psi^2\n", 8, "'phi', which is not a parameter"),
    (DIRAC + "player critic over psi: minimize psi^2\n", 8, "declared twice"),
    ("param w : real[2]\nplayer p over w, w: minimize sumsq(w)\n", 18, "listed twice"),
    ("param w : real[2]\nplayer p over w: minimize w\n", 27, "must be a scalar"),
    ("param w : real[2]\nplayer p over w: estimate sumsq(w)\n", 18, "not a player's sense"),
])
def test_bad_players_are_located_diagnostics(program, col, words):
    line = program.count("\n")
    with pytest.raises(AttractorError) as info:
        compile_source(program, filename="bad.att")
    head = str(info.value).splitlines()[0]
    assert head.startswith(f"bad.att:{line}:{col}: error: ") and words in head, head


def test_the_check_certifies_each_players_field():
    from compiler.driver.check import certify
    results = certify(compile_source(DIRAC))
    assert results and all(c.passed for c in results), results


# ---- the printer prints what the parser reads ---------------------------------------------------

VEC = (3,)
# (operation, result shape, argument shapes, how it is written); every operation a program can
# write appears; `stop`, `log2` and `log_sigmoid` are made only by rules and are not written
ROUND_TRIP = [("add", s, (s, s), "({} + {})") for s in ((), VEC)] + [
    ("sub", VEC, (VEC, VEC), "({} - {})"), ("mul", (), ((), ()), "({} * {})"), ("div", VEC, (VEC, ()), "({} / {})"),
    ("matmul", (), (VEC, VEC), "({} @ {})"), ("matmul", VEC, (VEC,), "(A @ {})"), ("pow", (), ((), ()), "({})^({})"),
    ("neg", VEC, (VEC,), "-({})"), ("max", (), ((), ()), "max({}, {})"), ("min", VEC, (VEC, VEC), "min({}, {})"),
    ("amax", (), (VEC,), "max({})"), ("amin", (), (VEC,), "min({})"), ("dot", (), (VEC, VEC), "dot({}, {})"),
    ("diff", VEC, (VEC,), "concat(diff({}), [0])"), ("array", VEC, ((), (), ()), "[{}, {}, {}]"),
    ("index", (), (VEC,), "({})[1]"), ("slice", (), (VEC,), "sum(({})[0:2])"), ("eye", VEC, (VEC,), "(eye(3) @ {})"),
    ("zeros", VEC, (VEC,), "({} + zeros(3))"), ("ones", VEC, (VEC,), "({} * ones(3))"),
    ("concat", VEC, (VEC, VEC), "concat(({})[0:1], ({})[1:3])"),
] + [(n, s, (s,), n + "({})") for n, op in FUNCTIONS.items() if op.kind == "elementwise" and op.user for s in ((), VEC)] \
  + [(n, (), (VEC,), n + "({})") for n, op in FUNCTIONS.items() if op.kind == "reduce" and op.user]
LEAVES = {(): ["a", "w[0]", "2.5", "0.125"], VEC: ["w", "A[1]", "[1, 2, 3]"]}


def _random_text(rng, shape, depth: int, root: tuple | None = None) -> str:
    """A random well-typed expression of `shape`, its outermost operation `root` where given."""
    if root is None and (depth == 0 or rng.random() < 0.2):
        return LEAVES[shape][rng.integers(len(LEAVES[shape]))]
    if root is None:
        fitting = [t for t in ROUND_TRIP if t[1] == shape]
        root = fitting[rng.integers(len(fitting))]
    _, _, args, written = root
    return written.format(*(_random_text(rng, s, depth - 1) for s in args))


def test_printing_then_parsing_gives_the_same_ir_for_every_operation():
    """parse(print(ir)) == ir for random programs in which every operation appears at the root and
    below it: the printer writes each operation as the parser reads it (`max(v)`, not `amax(v)`)."""
    prelude = "param w : real[3]\nparam A : real[3, 3]\nparam a : real\nminimize "
    rng = np.random.default_rng(0)
    seen = set()
    for root in ROUND_TRIP:
        for _ in range(3):
            text = _random_text(rng, root[1], 3, root)
            if root[1]:
                text = f"sum({text})"
            typed = objective(prelude + text + "\n")
            printed = show(typed)
            assert objective(prelude + printed + "\n") == typed, (text, printed)
            seen |= {n.fn for n in typed.walk() if isinstance(n, ir.Apply)}
    written_only_by_rules = {"stop", "log2", "log_sigmoid"}
    in_blocks_only = {"take"}     # w[c], c a discrete draw of the same block: below
    assert seen == set(OPERATIONS) - written_only_by_rules - in_blocks_only


def test_an_index_by_a_discrete_draw_prints_as_it_is_written():
    from compiler.driver.api import compile_source
    prog = compile_source("data x : real from gaussian(mean=0, std=1, n=10)\nparam m : real[3]\nparam a : real[3]\n"
                          "model p:\n    c ~ Categorical(logits=a)\n    x ~ Normal(m[c], 1)\n"
                          "minimize E[x ~ data] -log p(x)\n")
    [line] = [line for line in prog.typed.decl("p").lines if line.name == "x"]
    assert line.dist.args[0].fn == "take" and show(line.dist.args[0]) == "m[c]"
