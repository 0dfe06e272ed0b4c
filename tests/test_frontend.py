"""Parser, checker and printer: every SPEC program parses and type-checks; precedence; goldens."""
import dataclasses
from pathlib import Path

import pytest

from compiler import ir
from compiler.frontend.checker import check
from compiler.frontend.parser import parse
from compiler.ir.printer import program_text, show, to_json

ROOT = Path(__file__).resolve().parents[1]
SPEC_EXAMPLES = ["vae", "gan_ring", "kl_estimate", "hellinger_fit", "es_zero_one", "svm_hinge",
                 "lasso", "constrained", "sbn", "score_matching"]

PRELUDE = """data x : real[3], y : real from gaussian(n=10)
param w : real[3]
param a : real
"""


def expr(text: str) -> ir.Node:
    """The typed objective of `minimize TEXT` over the prelude's declarations."""
    return check(parse(PRELUDE + f"minimize {text}\n")).objective.expr


@pytest.mark.parametrize("name", SPEC_EXAMPLES)
def test_spec_examples_parse_and_check(name):
    program = check(parse((ROOT / "examples" / f"{name}.att").read_text()))
    assert program.players[0].loss == program.objective.expr


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "examples").glob("*.att")))
def test_a_printed_program_reparses_to_the_same_ir(name):
    """print, parse, check: the same typed program (players are the checker's, not written)."""
    program = check(parse((ROOT / "examples" / f"{name}.att").read_text()), ROOT / "examples")
    declared = program.players if program.aux("declared_game") else ()   # players written by hand print
    printed = program_text(dataclasses.replace(program, players=declared))
    assert check(parse(printed + "\n"), ROOT / "examples") == program


def test_spec_examples_are_verbatim_from_the_spec():
    spec = (ROOT.parent / "shared" / "SPEC.md")
    if not spec.exists():
        pytest.skip("shared/SPEC.md is not beside the checkout")
    text = spec.read_text()
    for name in SPEC_EXAMPLES:
        body = (ROOT / "examples" / f"{name}.att").read_text().splitlines()[1:]
        for line in body:
            assert ("    " + line).rstrip() in text, (name, line)


@pytest.mark.parametrize("source, printed", [
    ("log(a)^2", "log(a)^2"),
    ("log a^2", "log(a^2)"),
    ("-a^2", "-a^2"),
    ("a^-1", "a^-1"),
    ("2^3^a", "2^3^a"),
    ("E[x ~ data] 2 * a", "E[x ~ data] 2 * a"),
    ("E[x ~ data] (2 * sum(x))", "E[x ~ data] (2 * sum(x))"),
    ("0.5 * E[(x, y) ~ data] (dot(w, x) - y)^2 + a", "0.5 * E[(x, y) ~ data] (dot(w, x) - y)^2 + a"),
    ("a - (a - a)", "a - (a - a)"),
    ("(a - a) - a", "a - a - a"),
    ("sum[(x, y) ~ data] [y * dot(w, x) <= 0]", "sum[(x, y) ~ data] [y * dot(w, x) <= 0]"),
    ("max(a, 0) + min(a, 1) + abs a", "max(a, 0) + min(a, 1) + abs(a)"),
])
def test_precedence_and_printing(source, printed):
    assert show(expr(source)) == printed


def test_prefix_expectation_scopes_only_the_next_unary():
    e = expr("E[x ~ data] 2 * a")
    assert isinstance(e, ir.Apply) and e.fn == "mul"
    assert isinstance(e.args[0], ir.Expect) and e.args[0].body == ir.Num(2.0)


def test_caret_is_right_associative_and_binds_tighter_than_minus():
    e = expr("-a^2")
    assert e == ir.Apply("neg", (ir.Apply("pow", (ir.Ref("a", "param"), ir.Num(2.0))),))
    e = expr("2^3^a")
    assert e.args[1] == ir.Apply("pow", (ir.Num(3.0), ir.Ref("a", "param")))


def test_call_versus_prefix_function():
    assert expr("log(a)^2") == ir.Apply("pow", (ir.Apply("log", (ir.Ref("a", "param"),)), ir.Num(2.0)))
    assert expr("log a^2") == ir.Apply("log", (ir.Apply("pow", (ir.Ref("a", "param"), ir.Num(2.0))),))


def test_structural_equality_ignores_locations():
    a = parse("minimize a\n")[0].expr
    b = parse("\n\nminimize    a\n")[0].expr
    assert a == b and a.loc != b.loc and hash(a) == hash(b)


def test_shapes_are_inferred():
    p = check(parse((ROOT / "examples" / "vae.att").read_text()))
    model = p.decl("p")
    assert [l.shape for l in model.lines] == [(8,), (64,)]
    guide = p.decl("q")
    assert guide.lines[0].shape == (8,)


def test_golden_ir_text():
    src = """# comment line
data x : real[2] from ring8(n=100)
net f : mlp(2, 4, 1; act=tanh)
param c : real = 0.5
const k = 2
minimize E[x ~ data] (f(x) - c)^2 + k * c^2
report half = c / 2
train steps=10, batch=8, optimizer=adam(lr=0.01, b1=0.5), dynamics=alternating
"""
    assert program_text(check(parse(src))) == """data x : real[2] from ring8(n=100)
net f : mlp(2, 4, 1; act=tanh)
param c : real = 0.5
const k = 2
minimize E[x ~ data] (f(x) - c)^2 + k * c^2
report half = c / 2
train steps=10, batch=8, optimizer=adam(lr=0.01, b1=0.5), dynamics=alternating
player theta (min over f, c): E[x ~ data] (f(x) - c)^2 + k * c^2"""


def test_json_form_is_structural():
    j = to_json(expr("a + 1"))
    assert j["node"] == "Apply" and j["fn"] == "add" and j["text"] == "a + 1"
    assert j["args"][0] == {"node": "Ref", "name": "a", "kind": "param", "text": "a"}


def test_blocks_with_comments_and_blank_lines():
    src = """data x : real from gaussian(n=10)
param m : real

model p:
    # the mean
    x ~ Normal(m, 1)

    # trailing comment
minimize E[x ~ data] -log p(x)
"""
    p = check(parse(src))
    assert show(p.objective.expr) == "E[x ~ data] -log p(x)"


def test_divergence_forms():
    src = """data x : real from gaussian(n=10)
param m : real
sampler g:
    e ~ Normal(0, 1)
    x = m + e
divergence hel(u) = (sqrt(u) - 1)^2
minimize hel(data || g) + JS(data, g) + KL(data || g)
"""
    e = check(parse(src)).objective.expr
    kinds = [n.kind for n in e.walk() if isinstance(n, ir.Divergence)]
    assert kinds == ["hel", "JS", "KL"]


@pytest.mark.parametrize("text", [
    "E[e ~ Normal(0, 1) : real[3]] sum((w + e)^2)",
    "E[(x, y) ~ data] (dot(w, x) - y)^2 + a * norm1(w)",
    "-log(a^2 + 1) / (2 - a) - -a",
    "sum[(x, y) ~ data] max(0, 1 - y * dot(w, x))",
    "E[e ~ Bernoulli(probs=0.3) : real[3]] dot(w, e)",
])
def test_printed_objective_reparses_to_the_same_ir(text):
    e = expr(text)
    assert expr(show(e)) == e


def test_type_annotation_sets_the_shape_of_a_drawn_variable():
    e = expr("E[e ~ Normal(0, 1) : real[3]] sum(w * e)")
    assert e.source.shape == (3,)


# ---- the builtin tables and the grammar agree ----------------------------------------------

def test_the_grammars_prefix_functions_are_the_operation_tables():
    from compiler.frontend.parser import _lark
    from compiler.ir.builtins import OPERATIONS, PREFIX_FUNCTIONS
    pattern = next(t.pattern.value for t in _lark().terminals if t.name == "PREFIX_FN")
    assert pattern.split("(?!")[0].strip("()").split("|") == list(PREFIX_FUNCTIONS)
    assert set(PREFIX_FUNCTIONS) == {n for n, op in OPERATIONS.items() if op.user and op.arity == 1
                                     and op.kind != "arithmetic"}


@pytest.mark.parametrize("name", sorted(n for n, op in __import__("compiler.ir.builtins", fromlist=["x"])
                                        .OPERATIONS.items() if op.user and op.kind != "arithmetic"))
def test_every_user_operation_is_written_checked_printed_and_reparsed(name):
    from compiler.ir.builtins import OPERATIONS
    op = OPERATIONS[name]
    call = f"{name}(w, w)" if op.arity == 2 else f"{name}(w)"
    e = expr(f"sum({call})")             # sum: a scalar objective whatever the shape
    assert isinstance(e.args[0], ir.Apply) and e.args[0].fn == name and len(e.args[0].args) == op.arity
    assert expr(show(e)) == e
    if op.prefix:
        assert expr(f"sum({name} w)") == e


def test_every_operation_lowers_and_converts_to_sympy_where_modelled():
    import sympy as sp

    from compiler.ir.builtins import OPERATIONS
    from compiler.math.symbolic import to_sympy
    a, b = ir.Ref("a", "param"), ir.Ref("b", "param")
    for name, op in OPERATIONS.items():
        args = ["x0", "x1", "x2"][:op.arity]
        assert op.lowered(args).count("x0") == 1, name
        if op.sympy is not None:
            assert isinstance(to_sympy(ir.Apply(name, (a, b)[:op.arity])), sp.Basic), name


def test_every_distribution_family_is_checked_and_has_runtime_densities_and_samplers():
    import jax

    from compiler.backend.runtime import distributions as runtime
    from compiler.ir.builtins import DISTRIBUTIONS
    for family, spec in DISTRIBUTIONS.items():
        if family == "Gibbs":       # an energy: a density up to a constant, never sampled
            continue
        keys = [k.split("|") for k in spec.params]
        for variant in (keys[0] if len(keys) == 1 else [None]):
            prefix = family.lower() + (f"_{variant}" if variant and family == "Bernoulli" else "")
            assert hasattr(runtime, prefix + ("_logpmf" if not spec.reparam else "_logpdf")), prefix
            assert hasattr(runtime, prefix + "_sample"), prefix
            if spec.noise:
                assert hasattr(jax.random, spec.noise[0]) and hasattr(runtime, spec.noise[1].format(variant)), family
        args = ", ".join(f"{k[0]}=0.5" if not spec.reparam else str(i + 0.5) for i, k in enumerate(keys))
        dist = expr(f"E[e ~ {family}({args})] e").source
        assert dist.family == family
