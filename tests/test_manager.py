"""The pass manager (compiler.rewrite.manager): passes run to a fixed point, a `Context` built
with its defaults is the root's, `via` disables the forced rule's rivals, its options are typed
and read at the `via`, and a forced rule that cannot apply is one diagnostic."""
from pathlib import Path

import pytest

from attractor import AttractorError, compile_source
from compiler import ir
from compiler.frontend.checker import check
from compiler.frontend.parser import parse
from compiler.rewrite.manager import make_plan
from compiler.rewrite.rule import Context, Refusal, Rewrite
from passes import PIPELINE

ROOT = Path(__file__).resolve().parents[1]
RULES = {r.name: r for p in PIPELINE for r in p.rules}
HEAD = "data x : real[3], y : real from gaussian(n=20)\nparam w : real[3]\nparam mu : real\n"


def independent_expectations(n: int) -> str:
    """n expectations under a parameter-dependent distribution, each needing its own estimator."""
    terms = " + ".join(f"E[z{i} ~ Normal(mu, 1)] (z{i} - {i % 7})^2" for i in range(n))
    return f"param mu : real\nminimize {terms}\n"


def test_a_pass_runs_to_a_fixed_point_not_to_a_rewrite_count():
    prog = compile_source(independent_expectations(101))
    assert [s.rule for s in prog.derivation.steps] == ["reparameterize"] * 101
    assert [s.matched.binder for s in prog.derivation.steps] == [(f"z{i}",) for i in range(101)]


@pytest.mark.slow
def test_a_thousand_independent_expectations_compile():
    prog = compile_source(independent_expectations(1000))
    steps = prog.derivation.steps
    assert len(steps) == 1000 and {s.rule for s in steps} == {"reparameterize"}
    estimators = [n.estimator for n in prog.program.players[0].loss.walk() if isinstance(n, ir.Expect)]
    assert estimators == ["pathwise"] * 1000


def typed(name: str) -> ir.Program:
    return check(parse((ROOT / "examples" / f"{name}.att").read_text()), ROOT / "examples")


@pytest.mark.parametrize("example", sorted(p.stem for p in (ROOT / "examples").glob("*.att")))
def test_every_rule_takes_a_context_built_with_its_defaults(example):
    """Context(program, player) is the root of the player's loss: no rule fails on its defaults."""
    program = typed(example)
    player = program.players[0]
    for rule in RULES.values():
        try:
            out = rule(player.loss, Context(program, player))
        except AttractorError:
            continue             # a user error the rule found while building: a diagnostic, not a crash
        assert out is None or isinstance(out, (Rewrite, Refusal)), rule.name


def test_a_rule_at_the_root_rewrites_with_the_default_context():
    program = check(parse(HEAD + "minimize E[z ~ Normal(mu, 1)] (z - 2)^2\n"))
    rewrite = RULES["reparameterize"](program.players[0].loss, Context(program, program.players[0]))
    assert isinstance(rewrite, Rewrite) and rewrite.node.estimator == "pathwise"
    program = check(parse(HEAD + "minimize (round(mu) - 2)^2\n"))
    smoothed = RULES["evolution_strategy"](program.players[0].loss, Context(program, program.players[0]))
    assert isinstance(smoothed, Rewrite)


def test_forcing_a_rule_disables_the_other_rules_of_its_problem_in_every_pass():
    program = check(parse(HEAD + "minimize E[z ~ Normal(mu, 1)] (z - 2)^2 via score_function\n"))
    plan = make_plan(PIPELINE, program.objective.via)
    assert plan.disabled == {r.name for r in RULES.values() if r.problem == "estimator"} - {"score_function"}
    for forced, rivals in [("relax_step", {"relax_l0", "evolution_strategy"}), ("jensen", {"enumerate", "gaussian_marginal"})]:
        via = parse(f"minimize 0 via {forced}\n")[0].via
        assert make_plan(PIPELINE, via).disabled == rivals
    prog = compile_source(HEAD + "minimize E[z ~ Normal(mu, 1)] (z - 2)^2 via score_function\n")
    assert [s.rule for s in prog.derivation.steps] == ["score_function"]
    assert prog.derivation.steps[0].options == ()


def test_a_forced_rule_records_its_options():
    prog = compile_source(HEAD + "minimize E[z ~ Normal(mu, 1)] (z - 2)^2 via score_function(samples=8)\n")
    assert prog.derivation.steps[0].options == (("samples", 8),)


@pytest.mark.parametrize("via, message", [
    ("jensen(iwae=1.5)", "iwae"),
    ("jensen(iwae)", "iwae"),
    ("score_function(nonsense=1)", "has no option 'nonsense'"),
    ("lagrangian(rho=1, rho=2)", "option 'rho' is given twice"),
    ("nonsense", "unknown rule 'nonsense'"),
])
def test_a_bad_via_is_one_diagnostic_at_the_via(via, message):
    line = f"minimize E[(x, y) ~ data] (dot(w, x) - y)^2 via {via}"
    with pytest.raises(AttractorError) as failure:
        compile_source(HEAD + line + "\n", filename="t.att")
    text = str(failure.value)
    assert message in text
    assert text.startswith(f"t.att:4:{line.index(via) + 1}: error: ")
    assert text.count("error:") == 1


def test_a_forced_rule_that_refuses_is_one_diagnostic_at_the_node():
    line = "minimize E[z ~ Normal(mu, 1)] (z - 2)^2 + E[u ~ Bernoulli(logits=mu)] u via reparameterize"
    with pytest.raises(AttractorError) as failure:
        compile_source(HEAD + line + "\n", filename="t.att")
    text = str(failure.value)
    assert text.startswith(f"t.att:4:{line.index('E[u') + 1}: error: rule reparameterize does not apply")
    assert "no reparameterisation" in text
    assert text.count("does not apply") == 1 and text.count("error:") == 1
