"""Choosing among derivations by measuring (SPEC 9.4): the manager's policy, the measured choice,
`explain --rank [--json]`, determinism, `--no-search`, the budget, and bad input."""
import json
from pathlib import Path

import pytest

from attractor import compile_file, compile_source
from compiler import ir
from compiler.driver import rank
from compiler.driver.cli import main
from compiler.rewrite.manager import TIERS, Alternative, Choice, Decision, ranked, run_passes, tier
from compiler.rewrite.rule import Rewrite, Rule

ROOT = Path(__file__).resolve().parent.parent

# E[z ~ Normal(m, 1)] sumsq(z - 2) = (z - 2)^2 for a scalar z: the pathwise gradient is
# 2 (m + eps - 2), of variance 4; the score function's, (z - 2)^2 (z - m) less a leave-one-out
# baseline, is larger. Written with sumsq, which SymPy does not model, so that no closed form
# (exact_expectation, which takes (z - 2)^2 and ranks first) leaves only the two estimators
PATHWISE = "param m : real = 0.5\nminimize E[z ~ Normal(m, 1)] sumsq(z - 2)\n"
CLOSED = "param m : real = 0.5\nminimize E[z ~ Normal(m, 1)] (z - 2)^2\n"
BUDGET = "600"          # measurements finish on a loaded machine: the choice is the measured one
# the 0-1 loss of a linear classifier (issue 20): relaxed by a hinge (<=) or smoothed by ES (min<=)
ZERO_ONE = ("data x : real[30], y : real from breast_cancer\nparam w : real[30]\nparam b : real\n"
            "minimize E[(x, y) ~ data] [y * (dot(w, x) + b) <= 0]\n")
REGRESSION = "data x : real[3], y : real from sparse_regression(n=50, d=3, k=2, noise=0.1, seed=0)\nparam w : real[3]\n"
# a rounded weight has no convex surrogate; a 0-1 loss subtracted is one in the wrong direction
ROUNDED = REGRESSION + "minimize E[(x, y) ~ data] (dot(round(w / 0.5) * 0.5, x) - y)^2\n"
WRONG_WAY = REGRESSION + "param b : real\nminimize E[(x, y) ~ data] (sumsq(w) - [y * (dot(w, x) + b) <= 0])\n"


@pytest.fixture(autouse=True)
def searching_by_default(monkeypatch):
    """These tests are of the search: the user's default, not the suite's (conftest.py)."""
    from compiler.driver.api import NO_SEARCH_VARIABLE
    monkeypatch.delenv(NO_SEARCH_VARIABLE, raising=False)


@pytest.fixture(scope="module")
def program_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rank") / "pathwise.att"
    path.write_text(PATHWISE)
    return path


@pytest.fixture(scope="module")
def ranked_program(program_file):
    return compile_file(program_file, search=True, search_budget=float(BUDGET), rank=True)


def _explain(capsys, *argv):
    code = main(["explain", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- the policy (no measuring) ----------------------------------------------------------------------

def _alternative(relation: str, name: str, drawn: bool = False) -> Alternative:
    """An alternative whose rewrite is 0, or an expectation under a law (drawn: estimated from draws)."""
    node = ir.Expect("z", ir.Ref("q", "dist"), ir.Num(0)) if drawn else ir.Num(0)
    rw = Rewrite(node, relation=relation)
    return Alternative(Rule(name, "estimator", (ir.Expect,), relation, name, None, None), (), rw, tier(rw))


def test_classes_order_exact_unbiased_bounds_surrogates_and_measurement_orders_within_one():
    alts = (_alternative("~", "surrogate"), _alternative("<=", "bound"), _alternative("=", "unbiased", drawn=True),
            _alternative("=+c", "exact"), _alternative("=", "unbiased_2", drawn=True))
    assert [TIERS[a.tier] for a in alts] == ["surrogate", "bound", "unbiased", "exact", "unbiased"]
    decision = Decision("theta: x", "theta", alts[0].rewrite.node, alts)
    assert decision.best == (3,)
    # unmeasured: class, then rule order
    assert [alts[i].rule.name for i in ranked(decision, {})] == ["exact", "unbiased", "unbiased_2", "bound", "surrogate"]
    # measured: variance x cost within the class (2 x 10 = 20 < 1 x 30 = 30), an unmeasured one after
    assert [alts[i].rule.name for i in ranked(decision, {2: (1.0, 30.0), 4: (2.0, 10.0)})][:3] == \
        ["exact", "unbiased_2", "unbiased"]
    assert [alts[i].rule.name for i in ranked(decision, {4: (2.0, 10.0)})][:3] == ["exact", "unbiased_2", "unbiased"]


def test_the_manager_asks_the_chooser_and_records_its_choice_and_the_runners_up():
    from compiler.frontend.checker import check
    from compiler.frontend.parser import parse
    from passes import PIPELINE
    typed = check(parse(PATHWISE))
    asked = []

    def take_score_function(decision):
        asked.append(decision)
        labels = [a.label for a in decision.alternatives]
        return Choice(labels.index("score_function"), "taken for the test", (("reparameterize", "=", "not measured"),))

    _, derivation = run_passes(typed, PIPELINE, None, take_score_function)
    assert [a.label for a in asked[0].alternatives][:2] == ["reparameterize", "score_function"]
    step = derivation.steps[-1]
    assert step.rule == "score_function" and step.fact("chosen") == "score_function"
    assert step.fact("runners_up") == (("reparameterize", "=", "not measured"),) and "taken for the test" in step.note
    # without a chooser (compile_source's default): rule order, nothing recorded
    _, plain = run_passes(typed, PIPELINE, None)
    assert plain.steps[-1].rule == "reparameterize" and plain.steps[-1].fact("chosen") is None


def test_via_fixes_the_rule_and_nothing_is_searched_for_its_problem():
    prog = compile_source(PATHWISE, via="score_function", search=True, search_budget=0.0, rank=True)
    assert prog.derivation.steps[-1].rule == "score_function" and prog.ranking.nodes == []


# ---- measuring ---------------------------------------------------------------------------------------

def test_the_lower_variance_derivation_is_measured_and_chosen(ranked_program):
    [node] = ranked_program.ranking.nodes
    rows = {r.derivation: r for r in node.rows}
    path, score = rows["reparameterize"], rows["score_function"]
    assert path.chosen and not score.chosen and sum(r.chosen for r in node.rows) == 1
    assert 2.0 < path.measurement.grad_variance < 6.5        # 4 (the sample variance of 32 draws)
    assert score.measurement.grad_variance > path.measurement.grad_variance
    assert all(r.measurement.ms_per_step > 0 and r.measurement.cost > 0 for r in node.rows)
    step = ranked_program.derivation.steps[-1]
    assert step.rule == "reparameterize" and step.fact("chosen") == "reparameterize"
    assert "score_function" in [name for name, _, _ in step.fact("runners_up")]
    assert "chosen by measuring" in step.note
    steps = json.loads(ranked_program.to_json())["steps"]
    assert steps[-1]["chosen"] == "reparameterize"
    assert {r["derivation"] for r in steps[-1]["runners_up"]} >= {"score_function"}
    assert all("grad variance" in r["measured"] for r in steps[-1]["runners_up"])


def test_the_search_is_deterministic_for_a_seed(ranked_program):
    first = {r.derivation: r.measurement.grad_variance for r in ranked_program.ranking.nodes[0].rows}
    kept = dict(rank._measured)
    rank._measured.clear()             # measure again, not from the cache
    again = compile_source(PATHWISE, search=True, search_budget=float(BUDGET), rank=True)
    rank._measured.update(kept)
    second = {r.derivation: r.measurement.grad_variance for r in again.ranking.nodes[0].rows}
    assert second == first
    assert [r.chosen for r in again.ranking.nodes[0].rows] == [r.chosen for r in ranked_program.ranking.nodes[0].rows]
    assert again.derivation.steps[-1].rule == ranked_program.derivation.steps[-1].rule


def test_explain_rank_json_has_exactly_the_schema_of_spec_9_4(ranked_program, program_file, capsys):
    code, out, err = _explain(capsys, program_file, "--rank", "--json", "--search-budget", BUDGET)
    assert code == 0, err
    table = json.loads(out)
    assert set(table) == {"nodes"} and len(table["nodes"]) == 1
    node = table["nodes"][0]
    assert set(node) == {"node", "alternatives"} and node["node"] == "E[z ~ Normal(m, 1)] sumsq(z - 2)"
    types = {"derivation": str, "relation": str, "grad_variance": float, "ms_per_step": float, "chosen": bool}
    for alternative in node["alternatives"]:
        assert set(alternative) == set(types)
        assert all(isinstance(alternative[k], t) for k, t in types.items()), alternative
        assert alternative["relation"] in ("=", "<=", ">=", "~", "=+c", "min<=")
    assert [a["derivation"] for a in node["alternatives"] if a["chosen"]] == ["reparameterize"]


def test_explain_rank_text_is_an_aligned_table_marking_the_choice(ranked_program, program_file, capsys):
    code, out, err = _explain(capsys, program_file, "--rank", "--search-budget", BUDGET)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "node: E[z ~ Normal(m, 1)] sumsq(z - 2)   (player theta)"
    header = lines[1]
    for column in ("derivation", "relation", "class", "grad variance", "ms/step"):
        assert column in header
    chosen = [line for line in lines[2:] if line.startswith("  *")]
    assert len(chosen) == 1 and "reparameterize" in chosen[0] and "unbiased" in chosen[0]
    rows = [line for line in lines[2:] if line.strip().startswith(("*", "reparameterize", "score_function"))]
    at = header.index("relation")
    assert all(row[at] in "=<>~m" for row in rows)      # the relation column starts at the same place in every row
    assert any(line.startswith("  chosen: chosen by measuring") for line in lines)


def test_no_search_keeps_rule_order_and_still_measures_every_alternative(program_file, capsys):
    code, out, err = _explain(capsys, program_file, "--rank", "--json", "--no-search")
    assert code == 0, err
    [node] = json.loads(out)["nodes"]
    assert node["alternatives"][0]["derivation"] == "reparameterize" and node["alternatives"][0]["chosen"]
    assert all(set(a) == {"derivation", "relation", "grad_variance", "ms_per_step", "chosen"} for a in node["alternatives"])
    assert all(isinstance(a["grad_variance"], float) and a["ms_per_step"] > 0 for a in node["alternatives"])
    variance = {a["derivation"]: a["grad_variance"] for a in node["alternatives"]}
    assert 2.0 < variance["reparameterize"] < 6.5 < variance["score_function"]


def test_one_derivation_in_the_best_class_measures_nothing_and_a_spent_budget_chooses_in_rule_order():
    before = len(rank._measured)
    # the hinge is the only bound among relax_step and evolution strategies: listed, not measured
    [node] = compile_source(ZERO_ONE, search=True).ranking.nodes
    assert len(rank._measured) == before and all(r.measurement is None for r in node.rows)
    assert [r.derivation for r in node.rows if r.chosen] == ["relax_step"]
    variant = PATHWISE.replace("z - 2", "z - 3")
    spent = compile_source(variant, search=True, search_budget=0.0)        # searching, not ranking: nothing measured
    assert spent.ranking.budget_spent and len(rank._measured) == before
    assert spent.derivation.steps[-1].rule == "reparameterize" and "budget ran out" in spent.derivation.steps[-1].note
    ranked_spent = compile_source(variant, search=True, search_budget=0.0, rank=True)   # ranking: every row measured
    assert ranked_spent.ranking.budget_spent
    [node] = ranked_spent.ranking.nodes
    assert "budget ran out" in node.how and [r.derivation for r in node.rows if r.chosen] == ["reparameterize"]
    assert all(r.measurement is not None and r.measurement.usable for r in node.rows)


def test_an_alternative_that_cannot_be_measured_says_why_and_only_it_is_null():
    row = rank.Row("score_function", "=", "unbiased", rank.Measurement(failed="the program's data have no source"), False)
    ok = rank.Row("reparameterize", "=", "unbiased", rank.Measurement(4.0, 10.0, 0.5), True)
    nan = rank.Row("other", "=", "unbiased", rank.Measurement(float("nan"), 10.0, 0.5), False)
    table = rank.Ranking([rank.NodeRanking("E[...]", "theta", (ok, row, nan), "chosen in rule order", "reparameterize")])
    alternatives = json.loads(table.to_json())["nodes"][0]["alternatives"]       # strict JSON: no NaN
    assert alternatives[0] == {"derivation": "reparameterize", "relation": "=", "grad_variance": 4.0, "ms_per_step": 0.5, "chosen": True}
    assert alternatives[1]["grad_variance"] is None and alternatives[1]["error"] == "the program's data have no source"
    assert alternatives[2]["grad_variance"] is None and "grad_variance is nan" in alternatives[2]["error"]
    assert "the program's data have no source" in table.text()


# ---- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["missing.att", "--rank"], "missing.att: error: cannot read file"),
    (["PROGRAM", "--rank", "--search-budget", "-1"], "--search-budget must be a number of seconds >= 0"),
    (["PROGRAM", "--rank", "--search-budget", "soon"], "--search-budget must be a number of seconds, got 'soon'"),
    (["PROGRAM", "--json"], "--json prints the table of --rank"),
])
def test_bad_input_is_a_located_diagnostic(program_file, capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = _explain(capsys, *[str(program_file) if a == "PROGRAM" else a for a in argv])
    assert code == 1 and message in err and "Traceback" not in err and out == ""


def test_compile_search_and_explain_name_the_choice_and_the_runners_up(ranked_program, program_file, capsys):
    from compiler.driver.explain import explain
    text = explain(str(program_file), search=True, search_budget=float(BUDGET))
    assert "taken: reparameterize (=)" in text and "runner-up: score_function (=): grad variance" in text
    code = main(["compile", str(program_file), "--format", "json", "--no-search"])      # rule order: no choice recorded
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert code == 0 and steps[-1]["rule"] == "reparameterize" and "chosen" not in steps[-1]


def test_every_command_searches_by_default_and_the_environment_can_keep_rule_order(program_file, capsys, monkeypatch):
    """SPEC 9.4: without `via` the compiler chooses by measuring (the suite runs with
    ATTRACTOR_NO_SEARCH set, conftest.py; a user's environment has it unset)."""
    from compiler.driver.api import NO_SEARCH_VARIABLE
    code = main(["compile", str(program_file), "--format", "json", "--search-budget", BUDGET])
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert code == 0 and steps[-1]["chosen"] == "reparameterize"
    assert any(r["derivation"] == "score_function" and "grad variance" in r["measured"] for r in steps[-1]["runners_up"])
    assert compile_file(program_file, search_budget=float(BUDGET)).recorded[-1].fact("chosen") == "reparameterize"
    monkeypatch.setenv(NO_SEARCH_VARIABLE, "1")
    code = main(["compile", str(program_file), "--format", "json"])
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert code == 0 and steps[-1]["rule"] == "reparameterize" and "chosen" not in steps[-1]


def test_run_json_says_how_long_the_search_measured(program_file, capsys):
    code = main(["run", str(program_file), "--steps", "20", "--json", "--search-budget", BUDGET])
    searched = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    code_plain = main(["run", str(program_file), "--steps", "20", "--json", "--no-search"])
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == code_plain == 0 and searched["search_seconds"] > 0 and plain["search_seconds"] == 0.0


def test_an_exact_route_is_ranked_against_the_game_of_a_later_pass():
    """KL(data || q) with q explicit: maximum likelihood (the exact pass) and the conjugate critic
    game (the adversarial pass) answer the same node; the table lists both, measured, and the
    exact one is taken without measuring it against the game."""
    src = ("param mu : real = 0.0\nparam s : real = 0.0\ndata x : real from gaussian(mean=2, std=0.5, n=500)\n"
           "model q:\n    x ~ Normal(mu, softplus(s))\nminimize KL(data || q)\ntrain steps=100, batch=128\n")
    [node] = compile_source(src, search=True, search_budget=float(BUDGET), rank=True).ranking.nodes
    rows = {r.derivation: r for r in node.rows}
    assert set(rows) >= {"maximum_likelihood", "conjugate"} and rows["maximum_likelihood"].chosen
    assert rows["maximum_likelihood"].tier == "exact" and rows["maximum_likelihood"].measurement.grad_variance == 0
    assert rows["conjugate"].tier == "bound" and rows["conjugate"].measurement.grad_variance > 0
    assert "the only exact derivation" in node.how
    assert compile_source(src, search=True).recorded[-1].rule == "maximum_likelihood"


# ---- relaxations against evolution strategies (issue 20) ------------------------------------------------

def test_an_evolution_strategy_is_a_surrogate_and_ranks_after_a_pointwise_bound():
    """`min<=` orders only the minima: it ranks with the surrogates, after `<=`, whatever the sense
    (a smoothing of a maximised loss records `>=` for the direction check and says it is not pointwise)."""
    smoothing = Rewrite(ir.Num(0), relation="min<=", facts=(("pointwise", False),))
    maximised = Rewrite(ir.Num(0), relation=">=", facts=(("pointwise", False),))
    assert [TIERS[tier(rw)] for rw in (Rewrite(ir.Num(0), relation="<="), smoothing, maximised,
                                       Rewrite(ir.Num(0), relation=">=", game=True))] == ["bound", "surrogate", "surrogate", "bound"]
    alts = (Alternative(Rule("es", "nondiff", (ir.Node,), "min<=", "es", None, None), (), smoothing, tier(smoothing), True),
            _alternative("<=", "hinge"))
    decision = Decision("theta: x", "theta", ir.Num(0), alts)
    assert decision.best == (1,) and ranked(decision, {0: (0.0, 1.0)}) == [1, 0]


@pytest.fixture(scope="module")
def zero_one_ranked():
    return compile_source(ZERO_ONE, search=True, search_budget=float(BUDGET), rank=True)


def test_the_zero_one_loss_ranks_the_hinge_against_evolution_strategies_and_takes_the_bound(zero_one_ranked):
    [node] = zero_one_ranked.ranking.nodes
    assert node.node == "[y * (dot(w, x) + b) <= 0]" and node.player == "theta"
    rows = {r.derivation: r for r in node.rows}
    assert list(rows) == ["relax_step", "evolution_strategy"]             # best first
    hinge, es = rows["relax_step"], rows["evolution_strategy"]
    assert (hinge.relation, hinge.tier, es.relation, es.tier) == ("<=", "bound", "min<=", "surrogate")
    assert hinge.chosen and not es.chosen
    assert hinge.measurement.grad_variance == 0.0         # full batch, no draw: the hinge's gradient is exact
    assert es.measurement.grad_variance > 0 and es.measurement.cost > hinge.measurement.cost
    assert es.note == "applied to player theta's whole loss, which holds the node" and hinge.note == ""
    step = zero_one_ranked.derivation.steps[-1]
    assert step.rule == "relax_step" and step.fact("chosen") == "relax_step"
    assert [name for name, _, _ in step.fact("runners_up")] == ["evolution_strategy"]
    assert "runner-up evolution_strategy (min<=, on the whole loss) is a surrogate derivation" in step.note
    assert "it ranks after a bound one" in step.note and "relaxation chosen" not in step.note
    assert "the surrogate is convex in the parameters" in step.note


def test_the_zero_one_choice_is_deterministic_and_rule_order_keeps_todays_derivation(zero_one_ranked):
    kept = dict(rank._measured)
    rank._measured.clear()             # measure again, not from the cache
    again = compile_source(ZERO_ONE, search=True, search_budget=float(BUDGET), rank=True)
    rank._measured.update(kept)
    variance = [{r.derivation: r.measurement.grad_variance for r in p.ranking.nodes[0].rows} for p in (zero_one_ranked, again)]
    assert variance[0] == variance[1]
    assert [r.chosen for r in again.ranking.nodes[0].rows] == [r.chosen for r in zero_one_ranked.ranking.nodes[0].rows]
    plain = compile_source(ZERO_ONE, search=False)
    [step] = plain.derivation.steps
    assert step.rule == "relax_step" and step.fact("chosen") is None
    assert "relaxation chosen: every non-differentiable term has a convex surrogate" in step.note
    assert plain.program == zero_one_ranked.program                # the search compiles the same program
    searched = compile_source(ZERO_ONE, search=True)               # searching without ranking: nothing measured
    assert searched.program == plain.program and searched.derivation.steps[0].fact("chosen") == "relax_step"


def test_explain_rank_json_lists_both_with_their_relations_and_says_where_es_applies(zero_one_ranked, tmp_path, capsys):
    path = tmp_path / "zero_one.att"
    path.write_text(ZERO_ONE)
    code, out, err = _explain(capsys, path, "--rank", "--json", "--search-budget", BUDGET)
    assert code == 0, err
    [node] = json.loads(out)["nodes"]
    assert node["node"] == "[y * (dot(w, x) + b) <= 0]"
    hinge, es = node["alternatives"]
    fields = {"derivation", "relation", "grad_variance", "ms_per_step", "chosen"}
    assert set(hinge) == fields and set(es) == fields | {"note"}
    assert (hinge["derivation"], hinge["relation"], hinge["chosen"]) == ("relax_step", "<=", True)
    assert (es["derivation"], es["relation"], es["chosen"]) == ("evolution_strategy", "min<=", False)
    assert hinge["grad_variance"] == 0.0 < es["grad_variance"] and "whole loss" in es["note"]
    code, out, err = _explain(capsys, path, "--rank", "--search-budget", BUDGET)
    assert code == 0, err
    assert "runner-up evolution_strategy (min<=, on the whole loss)" in out
    assert "applied to player theta's whole loss, which holds the node" in out


def test_the_search_may_take_evolution_strategies_at_the_node_and_then_smooths_the_whole_loss():
    from compiler.analysis.problems import program_problems
    from compiler.frontend.checker import check
    from compiler.frontend.parser import parse
    from passes import PIPELINE
    typed = check(parse(ZERO_ONE))

    def take_es(decision):
        labels = [a.label for a in decision.alternatives]
        return Choice(labels.index("evolution_strategy"), "taken for the test", (("relax_step", "<=", "not measured"),))

    program, derivation = run_passes(typed, PIPELINE, None, take_es)
    [step] = derivation.steps
    assert step.rule == "evolution_strategy" and step.relation == "min<=" and step.fact("chosen") == "evolution_strategy"
    assert step.matched == typed.players[0].loss and "taken for the test" in step.note
    assert "relaxation chosen" not in step.note and program_problems(program) == []


@pytest.mark.parametrize("source, why", [
    (ROUNDED, "no convex surrogate keeps the bound for round(w / 0.5) (relax_l0: it relaxes norm0 only"),
    (WRONG_WAY, "rule relax_step refused: it would substitute an upper bound (<=) for [y * (dot(w, x) + b) <= 0], "
                "but the term enters with a negative weight"),
])
def test_where_no_convex_surrogate_keeps_the_bound_evolution_strategies_are_the_only_row_and_it_says_why(source, why):
    prog = compile_source(source, search=True, search_budget=float(BUDGET), rank=True)
    [node] = prog.ranking.nodes
    [row] = node.rows
    assert row.derivation == "evolution_strategy" and row.relation == "min<=" and row.chosen
    assert row.note.startswith("the only alternative: ") and why in row.note
    assert row.measurement.usable and row.measurement.grad_variance > 0        # measured for the table
    assert node.how.startswith("the only derivation")
    [alternative] = json.loads(prog.ranking.to_json())["nodes"][0]["alternatives"]
    assert set(alternative) == {"derivation", "relation", "grad_variance", "ms_per_step", "chosen", "note"}
    plain = compile_source(source, search=False)       # the same program and note as rule order
    assert plain.program == prog.program and plain.derivation.steps[-1].note == prog.derivation.steps[-1].note


def test_a_closed_form_expectation_ranks_before_both_estimators():
    """E[z ~ Normal(m, 1)] (z - 2)^2 = (m - 2)^2 + 1 (SymPy): exact_expectation, gradient variance 0,
    is chosen over reparameterize and score_function, which are still measured as runners-up; in
    rule order (no search) the estimators keep their place."""
    prog = compile_source(CLOSED, search=True, search_budget=float(BUDGET), rank=True)
    (node,) = prog.ranking.nodes
    rows = {r.derivation: r for r in node.rows}
    assert [r.derivation for r in node.rows if r.chosen] == ["exact_expectation"]
    assert rows["exact_expectation"].tier == "exact" and rows["exact_expectation"].measurement.grad_variance == 0
    assert {"reparameterize", "score_function"} <= set(rows)
    assert compile_source(CLOSED, search=False).derivation.steps[-1].rule == "reparameterize"
