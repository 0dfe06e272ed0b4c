"""Evolution strategies: the smoothing rewrite, its options and diagnostics, the emitted
population step, the certificate, and the es_zero_one example."""
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attractor import AttractorError, compile_file, compile_source
from compiler.driver.api import estimators
from compiler.driver.check import certify
from compiler.rewrite.rule import Context, Rewrite
from passes.evolution import evolution_strategy
from passes.evolution.nodes import Smoothed

ROOT = Path(__file__).resolve().parents[1]
HEAD = "data x : real[30], y : real from breast_cancer\nparam w : real[30]\nparam b : real\n"
ZERO_ONE = "E[(x, y) ~ data] [y * (dot(w, x) + b) <= 0]"


def test_es_zero_one_golden():
    prog = compile_file(ROOT / "examples" / "es_zero_one.att")
    [step] = prog.derivation.steps
    assert (step.rule, step.relation, step.before) == ("evolution_strategy", "min<=", ZERO_ONE)
    assert step.after == "E[(w', b') ~ Normal((w, b), 0.1^2) x64] E[(x, y) ~ data] [y * (dot(w', x) + b') <= 0]"
    assert step.note == "smooths over w, b with sigma = 0.1, population 64 in antithetic pairs, centred-rank fitness; forced by 'via'"
    player = prog.program.players[0]
    assert estimators(prog.program, player)["E[(w', b') ~ Normal((w, b), 0.1^2)]"] == "evolution_strategy"
    node = player.loss
    assert isinstance(node, Smoothed) and (node.samples, node.antithetic, node.shaping) == (64, True, "centered_rank")
    field = json.loads(prog.to_json())["field"]["players"][0]
    assert field["params"] == ["w", "b"] and field["sense"] == "min"


def test_only_the_parameters_of_the_kinks_are_smoothed():
    prog = compile_source(HEAD + f"param c : real\nminimize {ZERO_ONE} + sumsq(c - 1) via evolution_strategy\n"
                          "train steps=150, optimizer=adam(lr=0.05)\n")
    node = prog.program.players[0].loss
    assert node.binder == ("w'", "b'") and "sumsq(c - 1)" in str(node.body)
    mod, data = prog.build(), prog.load_data()
    params, _ = mod.fit(data, steps=150, seed=0)
    assert abs(float(params["c"]) - 1) < 0.05          # c keeps its pathwise gradient


def test_maximisation_is_a_lower_bound():
    prog = compile_source(HEAD + f"maximize -{ZERO_ONE} via evolution_strategy\n")
    assert prog.derivation.steps[0].relation == ">="


@pytest.mark.parametrize("options, words", [
    ("population=63", "population must be even with antithetic sampling"),
    ("sigma=0", "sigma must be a positive finite number, got 0"),
    ("sigma=-0.5", "sigma must be a positive finite number, got -0.5"),
    ("population=1, antithetic=false", "population must be an integer of at least 2"),
    ("population=10.5", "population must be an integer"),
    ("shaping=fitness", "unknown shaping 'fitness'"),
    ("antithetic=maybe", "antithetic must be true or false"),
    ("sigma_final=0", "sigma_final must be a positive number"),
    ("temperature=3", "rule evolution_strategy has no option 'temperature'"),
])
def test_option_diagnostics(options, words):
    with pytest.raises(AttractorError) as e:
        compile_source(HEAD + f"minimize {ZERO_ONE} via evolution_strategy({options})\n", filename="t.att")
    assert words in e.value.message
    assert (e.value.loc.line, e.value.loc.col) == (4, 58)


def test_other_diagnostics():
    with pytest.raises(AttractorError) as e:
        compile_source(HEAD + "minimize sumsq(w - 1) via evolution_strategy\n")
    assert "does not apply: every term of the objective has a useful gradient" in e.value.message
    with pytest.raises(AttractorError) as e:
        compile_source("data x : real[2] from gaussian(n=10)\nnet f : mlp(2, 4, 1)\n"
                       "minimize E[x ~ data] step(f(x)) via evolution_strategy\n")
    assert "depends on net 'f'" in e.value.message and (e.value.loc.line, e.value.loc.col) == (3, 22)


def test_odd_population_without_antithetic_pairs_runs():
    prog = compile_source(HEAD + f"minimize {ZERO_ONE} via evolution_strategy(population=7, antithetic=false, shaping=none)\n"
                          "train steps=3\n")
    mod, data = prog.build(), prog.load_data()
    _, history = mod.fit(data, steps=3, seed=0)
    assert np.isfinite(history[-1]["theta"])


def test_emitted_population_is_one_vmapped_call_and_ranks_share_ties():
    prog = compile_file(ROOT / "examples" / "es_zero_one.att")
    mod = prog.build()
    assert mod.SOURCE_TEXT.count("return es_smooth(fitness") == 1 and "values = jax.vmap(one)(eps)" in mod.SOURCE_TEXT
    ranks = np.asarray(mod.centered_ranks(jnp.asarray([1.0, 1.0, 0.0, 2.0])))
    np.testing.assert_allclose(ranks, [1.5 / 3 - 0.5, 1.5 / 3 - 0.5, -0.5, 0.5])
    assert float(jnp.sum(mod.centered_ranks(jnp.arange(64.0)))) == pytest.approx(0.0, abs=1e-5)


def test_sigma_schedule():
    prog = compile_source(HEAD + f"minimize {ZERO_ONE} via evolution_strategy(sigma=0.5, sigma_final=0.05)\ntrain steps=101\n")
    mod = prog.build()
    assert "decaying geometrically to 0.05" in prog.derivation.steps[0].note
    sigma = lambda batch: float(mod.es_sigma(0.5, 0.05, batch))
    run = lambda t, total=101: {"#step": jnp.asarray(t), "#total": jnp.asarray(total)}
    assert sigma(run(0)) == pytest.approx(0.5)
    assert sigma(run(50)) == pytest.approx(np.sqrt(0.5 * 0.05), rel=1e-5)
    assert sigma(run(100)) == pytest.approx(0.05) == sigma({})
    assert sigma(run(100, total=201)) == pytest.approx(np.sqrt(0.5 * 0.05), rel=1e-5)   # follows the steps run
    assert float(mod.es_sigma(0.5, 0.0, run(50))) == 0.5


def test_gradient_estimate_is_unbiased_without_shaping():
    """The emitted estimator on f(θ) = ½‖θ - c‖²: E f(μ + σε) = ½‖μ - c‖² + const, gradient μ - c."""
    mod = compile_file(ROOT / "examples" / "es_zero_one.att").build()
    c = jnp.asarray([1.0, -2.0, 0.5])
    mu = jnp.zeros(3)
    fitness = lambda p, key: 0.5 * jnp.sum(jnp.square(p["t"] - c))

    def grad(key):
        k1, k2 = jax.random.split(key)
        return jax.grad(lambda p: mod.es_smooth(fitness, p, ("t",), k1, k2, 0.3, 16, True, "none"))({"t": mu})["t"]
    draws = np.asarray(jax.vmap(grad)(jax.random.split(jax.random.PRNGKey(0), 3000)))
    se = draws.std(0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(0) - np.asarray(mu - c)) < 4 * se + 1e-6)


def test_certificate_passes():
    results = certify(compile_file(ROOT / "examples" / "es_zero_one.att"))
    assert [r.rule for r in results] == ["evolution_strategy"] * 3
    assert all(r.passed for r in results), [r for r in results if not r.passed]


@pytest.mark.slow
def test_es_zero_one_trains_to_a_low_error():
    prog = compile_file(ROOT / "examples" / "es_zero_one.att")
    mod, data = prog.build(), prog.load_data()
    params, history = mod.fit(data, steps=mod.STEPS, seed=0)
    error = mod.reports(params, jax.random.PRNGKey(0), data)["error"]
    assert error < 0.03, error
    assert history[-1]["theta"] < history[0]["theta"]


def test_default_optimizer_follows_the_search_scale():
    """With no optimizer written, ES trains the centre with Adam at sigma/2 (recorded in the
    derivation), enough to reach the minimum of a staircase from 0."""
    prog = compile_source("param a : real\nminimize round(a - 3)^2 + 0.01 * (a - 3)^2 via evolution_strategy(sigma=0.5, population=32)\n")
    assert prog.program.train.option("optimizer") == ("adam", (("lr", 0.25),))
    assert "training where the train line is silent: optimizer=adam(lr=0.25)" in prog.derivation.steps[-1].note
    params, _ = prog.build().fit({}, seed=0)
    assert abs(float(params["a"]) - 3) < 0.5


def test_rule_object_matches_a_whole_loss_with_a_kink():
    typed = compile_source(HEAD + f"minimize {ZERO_ONE} + sumsq(w)\n").typed
    player = typed.players[0]
    rw = evolution_strategy.RULE(player.loss, Context(typed, player, 1, {}, False, None))
    assert isinstance(rw, Rewrite) and rw.relation == "min<=" and isinstance(rw.node, Smoothed)
    assert dict(rw.facts)["params"] == ("w", "b") and dict(rw.training)["optimizer"] == ("adam", (("lr", 0.05),))
    inner = player.loss.args[0]
    assert evolution_strategy.RULE(inner, Context(typed, player, 1, {}, False, ((None, player.loss, 0)))) is None   # not the root
    assert evolution_strategy.RULE(rw.node, Context(typed, player, 1, {}, False, None)) is None                     # already smoothed
    smooth = compile_source(HEAD + "minimize sumsq(w - 1)\n").typed
    assert evolution_strategy.RULE(smooth.players[0].loss, Context(smooth, smooth.players[0], 1, {}, False, None)) is None


def test_typed_options_read_in_the_rules_words():
    assert evolution_strategy.RULE.option("population").read("evolution_strategy", 8.0, None) == 8
    assert evolution_strategy.RULE.option("antithetic").read("evolution_strategy", "false", None) is False
    assert evolution_strategy.RULE.option("antithetic").read("evolution_strategy", True, None) is True
    with pytest.raises(AttractorError, match="sigma must be a positive finite number, got -1"):
        evolution_strategy.RULE.option("sigma").read("evolution_strategy", -1.0, None)
    with pytest.raises(AttractorError, match="sigma must be a positive finite number, got inf"):
        evolution_strategy.RULE.option("sigma").read("evolution_strategy", float("inf"), None)
    with pytest.raises(AttractorError, match="too large"):      # sigma=1e400 never reaches the rule: the front end
        compile_source(HEAD + f"minimize {ZERO_ONE} via evolution_strategy(sigma=1e400)\n")
