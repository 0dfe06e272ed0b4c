"""Honest numbers, the parts of issue 17 beyond test_honest.py (SPEC section 9.2): verdicts of
games, heavy-tailed ratio estimators, the search scale of evolution strategies, and the
standard error of an objective averaged over data minibatches."""
from pathlib import Path

from attractor import compile_source
from compiler.backend.runtime import verdict as V

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
    assert "critic disc is not at its Bayes-optimal value" in text and "field does not shrink" in text


def test_a_dirac_gan_by_sga_settles_at_the_equilibrium():
    _, params, result = run(dirac_gan("sga"))
    assert abs(float(params["theta"])) < 1e-2 and abs(result["objective"]) < 1e-3
    assert result["converged"] is True and result["warnings"] == []


def test_game_verdict_names_a_stalled_player_and_a_critic_off_its_optimum():
    ok, warnings = V.game_verdict({"g": 1.0, "d": 1.0}, {"g": 1.0, "d": 0.01}, {"d": (0.0, 0.0)}, 0.5)
    assert not ok and any("player g stalled" in w for w in warnings)
    ok, warnings = V.game_verdict({"g": 1.0, "d": 1.0}, {"g": 0.01, "d": 0.01}, {"d": (0.3, 0.01)}, 0.5)
    assert not ok and len(warnings) == 1 and "critic d is not at its Bayes-optimal value" in warnings[0]
    ok, warnings = V.game_verdict({"g": 1.0, "d": 1.0}, {"g": 0.01, "d": 0.01}, {"d": (0.3, 0.2)}, 0.5)
    assert ok and warnings == []   # a gain within three standard errors is noise
