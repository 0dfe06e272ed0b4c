"""More exact routes (issue 20, SPEC §9.3): discrete latents summed out inside the bound of the
continuous ones, the linear-Gaussian marginal in closed form, and the entropy-only game for a
sampler against a density."""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from attractor import AttractorError, compile_source

GOLDEN = Path(__file__).resolve().parent / "golden"


def _certified(prog, rule: str, seed: int = 0):
    from compiler.driver.check import certify
    return [c for c in certify(prog, seed=seed) if c.rule == rule]


# ---- enumeration inside the bound of continuous latents --------------------------------------------

@pytest.fixture(scope="module")
def inside_bound():
    return compile_source((GOLDEN / "enumerate" / "with_continuous.att").read_text())


def test_discrete_latent_is_summed_out_inside_the_elbo(inside_bound):
    step = inside_bound.derivation.steps[0]
    assert step.rule == "enumerate" and step.relation == "<="
    assert step.fact("latents") == ("c",) and step.fact("continuous") == ("z",) and step.fact("configurations") == 2
    assert [s.rule for s in inside_bound.derivation.steps] == ["enumerate", "reparameterize"]


def test_inside_bound_is_the_elbo_over_z_with_c_summed(inside_bound):
    """At the initial parameters (m = 0, a = 0, w = 0, guide N(0, softplus(0))), log p(x, z) = log N(z; 0, 1) +
    log N(x; 0, 1) whatever c, so the bound's mean is KL(q || N(0, 1)) - mean log N(x; 0, 1), known exactly."""
    from scipy import stats
    mod, data = inside_bound.build(), inside_bound.load_data()
    params, batch = mod.init(jax.random.PRNGKey(0)), mod.full_batch(data)
    keys = jax.random.split(jax.random.PRNGKey(1), 2000)
    values = np.asarray(jax.vmap(lambda k: mod.LOSSES["theta"](params, k, batch))(keys), np.float64)
    s = np.log1p(np.e ** 0)   # softplus(0)
    kl = -np.log(s) + (s ** 2 - 1) / 2
    exact = kl - np.mean(stats.norm.logpdf(np.asarray(data["x"], np.float64)))
    assert abs(values.mean() - exact) < 4 * values.std() / np.sqrt(len(values)) + 1e-5


def test_inside_bound_with_an_automatic_guide_and_loglik_sign():
    source = (GOLDEN / "enumerate" / "with_continuous.att").read_text()
    source = source.replace("guide q(z | x):\n    z ~ Normal(gm * x, softplus(gs))\n", "")
    prog = compile_source(source)
    step = prog.derivation.steps[0]
    assert step.rule == "enumerate" and step.fact("automatic_guide") and step.fact("guide") == "q_p"
    up = compile_source(source.replace("minimize E[x ~ data] -log p(x)", "maximize E[x ~ data] log p(x)"))
    assert up.derivation.steps[0].rule == "enumerate" and up.derivation.steps[0].relation == ">="


def test_guide_that_draws_the_discrete_latent_keeps_jensen():
    prog = compile_source((GOLDEN / "enumerate" / "guide_draws_discrete.att").read_text())
    assert prog.derivation.steps[0].rule == "jensen"


def test_forced_enumerate_beyond_the_limit_with_continuous_latents_is_located():
    path = GOLDEN / "enumerate" / "forced_with_continuous_beyond_limit.att"
    with pytest.raises(AttractorError) as err:
        compile_source(path.read_text(), filename=str(path))
    assert "2048 joint configurations" in str(err.value) and err.value.loc.line == 8


def test_inside_bound_certificate_passes_and_fails_for_a_dropped_state(inside_bound, monkeypatch):
    results = _certified(inside_bound, "enumerate")
    assert len(results) == 3 and all(c.passed for c in results), [(c.claim, c.evidence) for c in results]
    from passes.variational import enumeration
    right = enumeration.SumOut

    def missing_one(binder, states, shapes, body, loc=None):
        return right(binder, (states[0] - 1,) + states[1:], shapes, body, loc=loc)
    monkeypatch.setattr(enumeration, "SumOut", missing_one)
    from passes.variational.certificates import _certify_inside_bound
    assert not _certify_inside_bound(np.random.default_rng(0)).passed


# ---- the linear-Gaussian marginal ------------------------------------------------------------------

@pytest.fixture(scope="module")
def linear_gaussian():
    return compile_source((GOLDEN / "gaussian_marginal" / "linear.att").read_text())


def test_linear_gaussian_marginal_is_exact_and_before_jensen(linear_gaussian):
    from scipy import stats
    (step,) = linear_gaussian.derivation.steps
    assert step.rule == "gaussian_marginal" and step.relation == "=" and step.fact("slopes") == ("w",)
    mod, data = linear_gaussian.build(), linear_gaussian.load_data()
    params = mod.init(jax.random.PRNGKey(0))
    value = float(mod.LOSSES["theta"](params, None, mod.full_batch(data)))
    x = np.asarray(data["x"], np.float64)
    exact = -np.mean(stats.norm.logpdf(x, 0.0, np.sqrt(0.5 ** 2 + 1)))
    assert abs(value - exact) < 1e-5 * abs(exact)


def test_linear_gaussian_fit_reaches_the_moments(linear_gaussian):
    mod, data = linear_gaussian.build(), linear_gaussian.load_data()
    params, _ = mod.fit(data, steps=800, seed=0)
    x = np.asarray(data["x"], np.float64)
    assert abs(float(params["b"]) - x.mean()) < 0.02
    assert abs(float(params["w"]) ** 2 + 1 - x.var()) < 0.05 * x.var()


def test_non_affine_or_latent_scale_keeps_the_bound():
    for case in ("nonlinear_mean", "scale_depends_on_z"):
        prog = compile_source((GOLDEN / "gaussian_marginal" / f"{case}.att").read_text())
        assert prog.derivation.steps[0].rule == "jensen", case


def test_shared_scalar_latent_is_not_elementwise_but_low_rank():
    """One scalar z shared by the components of a vector x correlates them: not the elementwise
    form, but the low-rank one (x ~ N(0, I + w w^T): a column w of the factor)."""
    prog = compile_source("""
data x : real[3] from gaussian(mean=1, std=2, n=50)
param w : real[3]
model p:
    z ~ Normal(0, 1)
    x ~ Normal(w * z, 1)
minimize E[x ~ data] -log p(x)
""")
    (step,) = prog.derivation.steps
    assert step.rule == "gaussian_marginal" and "a scalar latent shared by the components" in " ".join(step.conditions)


def test_gaussian_marginal_certificate_passes_and_fails_for_a_wrong_form(linear_gaussian, monkeypatch):
    results = _certified(linear_gaussian, "gaussian_marginal")
    assert len(results) == 1 and results[0].passed, results[0].evidence
    import dataclasses

    from passes.variational import gaussian_marginal
    right = gaussian_marginal.linear_gaussian_marginal()
    wrong = dataclasses.replace(right, variance=right.w ** 2 * right.s ** 2 + 1.1 * right.sigma ** 2)
    monkeypatch.setattr(gaussian_marginal, "linear_gaussian_marginal", lambda: wrong)
    results = _certified(linear_gaussian, "gaussian_marginal")
    assert results and not results[0].passed


# ---- the entropy-only game: a sampler against a density --------------------------------------------

@pytest.fixture(scope="module")
def sampler_game():
    return compile_source((GOLDEN / "entropy_game" / "normal_target.att").read_text())


def test_sampler_against_a_density_is_an_entropy_game(sampler_game):
    step = sampler_game.derivation.steps[0]
    assert step.rule == "entropy_game" and step.relation == "=" and step.fact("constant") == "0"
    players = {p.name: p for p in sampler_game.program.players}
    assert set(players) == {"theta", "ref", "disc"}
    assert players["ref"].sense == "max" and players["disc"].sense == "max"
    assert players["theta"].params == ("a", "ls")


@pytest.mark.slow
def test_entropy_game_moves_the_sampler_toward_the_target():
    """Target N(2, 0.5), sampler N(0, 1) at start: 300 steps bring the mean past 1.5 and the sd within 0.15
    (bench/entropy_game.py runs 1500 steps: both within 0.01)."""
    source = (GOLDEN / "entropy_game" / "normal_target.att").read_text()
    prog = compile_source(source.replace("minimize KL(g || p)", "minimize KL(g || p) via entropy_game(draws=64, hidden=16)"))
    params, _ = prog.build().fit(prog.load_data(), steps=300, seed=0)
    assert float(params["a"]) > 1.5 and abs(float(np.exp(params["ls"])) - 0.5) < 0.15


def test_gibbs_target_records_log_z():
    prog = compile_source((GOLDEN / "entropy_game" / "gibbs_target.att").read_text())
    step = next(s for s in prog.derivation.steps if s.rule == "entropy_game")
    assert step.relation == "=+c" and step.fact("constant") == "log Z" and step.player == "amortise"


def test_energy_moved_by_the_same_player_is_refused_at_the_divergence():
    path = GOLDEN / "entropy_game" / "energy_moves.att"
    with pytest.raises(AttractorError) as err:
        compile_source(path.read_text(), filename=str(path))
    assert "log Z is not a constant" in str(err.value) and err.value.loc.line == 9


@pytest.mark.slow
def test_entropy_game_certificate_passes(sampler_game):
    from passes.adversarial.certificates import certify_entropy_game
    (result,) = certify_entropy_game(sampler_game, sampler_game.derivation.steps[0], seed=0)
    assert result.passed, result.evidence


@pytest.mark.slow
def test_entropy_game_certificate_fails_without_the_reference_term(sampler_game, monkeypatch):
    """Dropping log r from the sampler's loss leaves E_g[V] - E_g log p, off the KL by about H(g)."""
    from passes.adversarial import entropy_game
    from passes.adversarial.certificates import certify_entropy_game
    right = entropy_game.sum_of
    monkeypatch.setattr(entropy_game, "sum_of", lambda *t: right(t[0], t[2]) if len(t) == 3 else right(*t))
    (result,) = certify_entropy_game(sampler_game, sampler_game.derivation.steps[0], seed=0)
    assert not result.passed, result.evidence
