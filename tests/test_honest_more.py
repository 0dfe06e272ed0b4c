"""Honest numbers, the parts of issue 17 beyond test_honest.py (SPEC section 9.2): verdicts of
games, heavy-tailed ratio estimators, the search scale of evolution strategies, and the
standard error of an objective averaged over data minibatches."""
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from attractor import compile_file, compile_source
from compiler.backend.runtime import verdict as V
from compiler.driver import tails
from compiler.driver.check import certify
from compiler.driver.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def dirac_gan(dynamics: str, steps: int = 1000):
    """examples/dirac_gan.att (data and generator point masses at 0 and theta, D = sigmoid(psi x))
    with the given dynamics."""
    text = (EXAMPLES / "dirac_gan.att").read_text().replace("dynamics=simultaneous", f"dynamics={dynamics}")
    return compile_source(text.replace("steps=1000", f"steps={steps}"), filename=str(EXAMPLES / "dirac_gan.att"))


def run(prog, **kwargs):
    mod, data = prog.build(), prog.load_data()
    params, history = mod.fit(data, **kwargs)
    return mod, params, mod.summary(params, data, history[-1]["step"], 0.0, history=history)


def test_a_dirac_gan_by_simultaneous_gradient_does_not_settle_and_says_why():
    """Simultaneous gradient play circles the equilibrium theta = psi = 0 (Jacobian eigenvalues
    +-i/4): the averaged iterate is off it, and the discriminator alone can still gain."""
    _, params, result = run(dirac_gan("simultaneous"))
    assert abs(float(params["theta"])) > 0.1   # off the equilibrium: a true verdict is "not converged"
    assert result["converged"] is False
    text = " ".join(result["warnings"])
    assert "critic disc is not at its Bayes-optimal value" in text and "not an equilibrium of the game" in text


def test_a_dirac_gan_by_sga_settles_at_the_equilibrium():
    """Its field has no randomness, so it is settled only at a zero of the field (|v| <= sqrt(1e-7)
    (1 + |f|)): at 1000 steps |v| = 7e-4 is not yet, at 3000 it is."""
    _, _, result = run(dirac_gan("sga"))
    assert result["converged"] is False and "not a zero of it" in " ".join(result["warnings"])
    _, params, result = run(dirac_gan("sga", steps=3000))
    assert abs(float(params["theta"])) < 1e-2 and abs(result["objective"]) < 1e-3
    assert result["converged"] is True and result["warnings"] == []


def test_a_game_written_by_hand_circling_its_equilibrium_is_not_converged():
    """examples/dirac_gan_players.att (extragradient, lr 0.05, 2000 steps) ends at distance 0.2
    from theta = psi = 0 with a value 0.5% from the equilibrium's: its field (no draws) is not zero."""
    _, params, result = run(compile_file(EXAMPLES / "dirac_gan_players.att"))
    assert math.hypot(float(params["theta"]), float(params["psi"])) > 0.1
    assert result["converged"] is False and "not an equilibrium of the game" in " ".join(result["warnings"])
    ok, _ = V.game_verdict({"g": 1.0, "d": 1.0}, {"g": 1e-5, "d": 1e-5}, {}, 0.0, exact_tolerance=1e-7)
    assert ok


def test_game_verdict_names_a_stalled_player_and_a_critic_off_its_optimum():
    ok, warnings = V.game_verdict({"g": 1.0, "d": 1.0}, {"g": 1.0, "d": 0.01}, {"d": (0.0, 0.0)}, 0.5)
    assert not ok and any("player g stalled" in w for w in warnings)
    ok, warnings = V.game_verdict({"g": 1.0, "d": 1.0}, {"g": 0.01, "d": 0.01}, {"d": (0.3, 0.01)}, 0.5)
    assert not ok and len(warnings) == 1 and "critic d is not at its Bayes-optimal value" in warnings[0]
    ok, warnings = V.game_verdict({"g": 1.0, "d": 1.0}, {"g": 0.01, "d": 0.01}, {"d": (0.3, 0.2)}, 0.5)
    assert ok and warnings == []   # a gain within three standard errors is noise


ROUNDED = """data x : real[4], y : real from npz("{path}")
param w : real[4]
minimize E[(x, y) ~ data] (dot(round(w / 0.5) * 0.5, x) - y)^2{via}
"""


def correlated_regression(path, seed):
    """y = x w + noise with strongly correlated features (pairwise correlation 0.85): moving one
    weight by one cell at a time gets stuck, a search must move several at once."""
    rng = np.random.default_rng(seed)
    root = np.linalg.cholesky(0.85 * np.ones((4, 4)) + 0.15 * np.eye(4))
    x = rng.standard_normal((200, 4)) @ root.T
    y = x @ rng.uniform(-2, 2, 4) + 0.1 * rng.standard_normal(200)
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.float32))
    grid = np.array(list(itertools.product(np.arange(-3, 3.01, 0.5), repeat=4)))
    return float(np.min(np.mean((grid @ x.T - y) ** 2, axis=1)))   # brute force over the 0.5 grid


def rounded_fit(path, via=""):
    prog = compile_source(ROUNDED.format(path=path, via=via))
    _, _, result = run(prog)
    return prog, result


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evolution_strategies_take_sigma_from_the_rounding_grid_and_find_the_optimum(tmp_path, seed):
    best = correlated_regression(tmp_path / "d.npz", seed)
    prog, result = rounded_fit(tmp_path / "d.npz")
    [step] = prog.derivation.steps
    assert step.fact("sigma") == 0.5 and step.fact("adapt") and "round(w / 0.5)" in step.fact("sigma_source")
    assert result["as_written_estimator"] == "exact"
    assert result["as_written"] <= best * 1.03


def test_the_fixed_default_sigma_is_far_from_the_optimum_on_the_same_problem(tmp_path):
    best = correlated_regression(tmp_path / "d.npz", 2)
    _, result = rounded_fit(tmp_path / "d.npz", " via evolution_strategy(sigma=0.1)")
    assert result["as_written"] > 1.5 * best


NEYMAN = """data x : real from gaussian(mean=0, std=1, n=50000)
sampler g:
    eps ~ Normal(0, 1) : real
    x = SCALE * eps
divergence neyman(u) = (1 - u)^2 / u
estimate neyman(data || g) via conjugate
train steps=100, batch=512, optimizer=adam(lr=1e-3)
"""


def test_hill_estimator_reads_the_tail_index_of_a_pareto_sample():
    rng = np.random.default_rng(0)
    assert tails.hill(rng.pareto(1.5, 50000) + 1) == pytest.approx(1 / 1.5, abs=0.08)
    assert tails.hill(rng.standard_normal(50000)) < 0.3


@pytest.mark.parametrize("scale, finite", [("1.3", False), ("1.05", True)])
def test_check_flags_a_neyman_chi2_of_infinite_variance(scale, finite):
    """Neyman's chi^2 between N(0, 1) data and N(0, s^2) samples: E_P (q/p)^4 < infinity iff
    s^2 < 4/3, so the estimator's variance is infinite at s = 1.3 and finite at s = 1.05."""
    prog = compile_source(NEYMAN.replace("SCALE", scale))
    [cert] = [c for c in certify(prog) if "variance is finite" in c.claim]
    assert cert.passed is finite


def test_run_warns_of_the_heavy_tailed_ratio(tmp_path, capsys):
    src = tmp_path / "neyman.att"
    src.write_text(NEYMAN.replace("SCALE", "1.3"))
    assert main(["run", str(src), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["converged"] is False and any("infinite variance" in w for w in result["warnings"])


@pytest.mark.parametrize("scale, flagged", [("1.3", True), ("1.05", False)])
def test_eval_keeps_the_warnings_of_its_estimates(tmp_path, capsys, scale, flagged):
    """`eval` judges no run (no `converged`), but an estimate of infinite variance at the saved
    parameters is still named, in the JSON and on stderr."""
    src, params = tmp_path / "neyman.att", tmp_path / "p.npz"
    src.write_text(NEYMAN.replace("SCALE", scale).replace("steps=100", "steps=5"))
    assert main(["run", str(src), "--json", "--save", str(params)]) == 0
    capsys.readouterr()
    assert main(["eval", str(src), "--params", str(params), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "converged" not in result
    assert any("infinite variance" in w for w in result["warnings"]) is flagged
    assert main(["eval", str(src), "--params", str(params)]) == 0
    assert ("warning:" in capsys.readouterr().err) is flagged


LATENT_MODEL = """param a : real = A
param s : real = -3.0
data x : real from gaussian(mean=0, std=1, n=20000)
model p:
    z ~ Normal(0, 1)
    x ~ Normal(a * z, softplus(s))
minimize Chi2(data || p)
train steps=100, batch=256, optimizer=adam(lr=1e-2)
"""


@pytest.mark.parametrize("a, finite", [("0.3", False), ("1.0", True)])
def test_check_draws_a_latent_model_by_ancestral_sampling_to_judge_the_tails(a, finite):
    """Pearson's chi^2 between N(0, 1) data and a model whose marginal is N(0, s_q^2), s_q^2 =
    a^2 + softplus(-3)^2: the summands f'(r) = 2(r - 1) on P and r^2 - 1 on Q have finite variance
    iff E_P r^2 and E_Q r^4 are finite, i.e. s_q^2 > 3/4 (the model side drawn, not skipped)."""
    prog = compile_source(LATENT_MODEL.replace("A", a))
    [cert] = [c for c in certify(prog) if "variance is finite" in c.claim]
    assert cert.passed is finite


QUARTIC = """param m : real = START
minimize -m^2 + 0.1 * m^4
"""


@pytest.mark.parametrize("start, stalled", [("0", True), ("1", False)])
def test_a_run_that_stops_where_the_gradient_vanishes_at_a_maximum_is_not_converged(tmp_path, capsys, start, stalled):
    """-m^2 + 0.1 m^4 from m = 0: the gradient is exactly 0, the objective does not change, yet
    m = 0 is its maximum (dv/dm = +2): not converged, and said why; from m = 1 the run reaches the
    minimum m = sqrt(5), a stable attractor (dv/dm = -4)."""
    src = tmp_path / "quartic.att"
    src.write_text(QUARTIC.replace("START", start))
    assert main(["run", str(src), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    flagged = [w for w in result["warnings"] if "not a stable attractor" in w]
    assert bool(flagged) is stalled and result["converged"] is (not stalled)
    if stalled:
        assert "real part +2 " in flagged[0] and "a saddle or a maximum" in flagged[0]


def test_the_k_draw_bound_of_log_e_stalled_at_its_maximum_is_not_converged(tmp_path, capsys):
    """The program of issue 17: -log E[exp(m z)] + 0.3 m^2, started at m = 0 where its gradient
    vanishes by symmetry, which is a maximum (of the true objective -0.2 m^2: dv/dm = +0.4; of the
    16-draw bound, its field averaged over 8 keys: about +0.65): the default run barely moves and
    must not be called converged."""
    src = tmp_path / "log_e.att"
    src.write_text("param m : real\nminimize -log E[z ~ Normal(0, 1)] exp(m * z) + 0.3 * m^2\n")
    assert main(["run", str(src), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["converged"] is False
    assert any("not a stable attractor" in w for w in result["warnings"])


def test_an_estimate_from_a_data_sample_carries_the_samples_error():
    """estimate KL(data || q) on 1000 points of N(0, 1), q = N(1, 1.5): the truth is 0.3499. The
    plug-in critic's value varies with the sample (sd of its summand ~0.9, so ~0.03 over 1000
    points); the standard error says so, not only the draws' noise (0.01), and covers the truth."""
    import math
    prog = compile_source("data x : real from gaussian(mean=0, std=1, n=1000)\nmodel q:\n    x ~ Normal(1, 1.5)\n"
                          "estimate KL(data || q)\n")
    mod, data = prog.build(), prog.load_data()
    params, history = mod.fit(data, seed=0)
    result = mod.summary(params, data, history[-1]["step"], 0.0, history=history)
    truth = math.log(1.5) + 2 / (2 * 2.25) - 0.5
    assert result["objective_stderr"] > 0.02 and result["as_written_stderr"] == result["objective_stderr"]
    assert abs(result["objective"] - truth) < 3 * result["objective_stderr"]


SHIFTED_SQUARE = "param m : real\nminimize E[z ~ Normal(m, 1)] (z - 2)^2\nTRAIN\n"


@pytest.mark.parametrize("train, settled", [("", False), ("train steps=3000, optimizer=adam(lr=1e-2)", True)])
def test_a_slow_descent_under_one_draw_noise_is_not_converged(train, settled):
    """E[z ~ Normal(m, 1)] (z - 2)^2 = (m - 2)^2 + 1, one draw a step. The default 1000 Adam steps
    of 1e-3 move m from 0 to about 0.8: the objective still falls by ~0.34 over the last fifth, yet
    each history entry's one-draw losses (sd ~2.9) hide that slope from the trend test. Both ends
    of the last fifth evaluated with the same draws see it (standard error ~0.001). With steps
    enough the run reaches m = 2, is judged converged, and its value is the minimum 1 within its
    standard error, which is now that of thousands of draws, not of 8."""
    prog = compile_source(SHIFTED_SQUARE.replace("TRAIN", train))
    mod, params, result = run(prog)
    m = float(params["m"])
    assert result["objective"] == pytest.approx((m - 2) ** 2 + 1, abs=5 * result["objective_stderr"])
    assert result["objective_stderr"] < 0.02
    assert result["converged"] is settled
    moving = [w for w in result["warnings"] if "with the same draws at both ends" in w]
    assert bool(moving) is (not settled)
    if settled:
        assert abs(m - 2) < 0.1


def test_an_expectation_with_no_data_is_averaged_over_many_draws():
    """estimate E[z ~ Normal(0, 1)] exp(z) = e^(1/2): with no data each key is one draw, so the
    value is averaged over keys until its standard error is 1e-3 of 1 + |value| or 2^16 draws; it
    covers the truth (8 draws gave 1.28 +- 0.28)."""
    prog = compile_source("estimate E[z ~ Normal(0, 1)] exp(z)\n")
    _, _, result = run(prog)
    assert result["objective_stderr"] < 0.02
    assert abs(result["objective"] - math.exp(0.5)) < 4 * result["objective_stderr"]


def test_a_deterministic_objective_whose_optimum_is_zero_is_judged_by_its_absolute_change():
    """max(|w0 - 1|, |w1 + 2|) has its minimum 0 at (1, -2). Near it the objective's relative change
    is meaningless (1e-7 to 1e-6 is a change of 900%): the verdict takes the change against
    max(|f|, 1), as the gradient mapping is taken against 1 + |f|, and calls the run converged."""
    prog = compile_source("param w : real[2]\nminimize max(abs(w[0] - 1), abs(w[1] + 2))\n")
    mod, params, result = run(prog)
    assert np.allclose(np.asarray(params["w"]), [1.0, -2.0], atol=1e-3)
    assert result["objective"] < 1e-3 and result["converged"] is True, result["warnings"]


def test_relative_change_is_against_the_floor_given():
    history = [{"step": 1, "theta": 1e-6}, {"step": 2, "theta": 1e-7}]
    assert V.relative_change(history, "theta") == pytest.approx(9.0)
    assert V.relative_change(history, "theta", floor=1.0) == pytest.approx(9e-7)
