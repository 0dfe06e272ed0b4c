"""jensen_convex (issue 17, SPEC 9.3): a convex function of a Monte Carlo expectation gets the
K-draw Jensen bound with its relation, a concave one entering a minimised loss positively is
refused at its node, and a program with the bound trains to the optimum of what was written."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attractor import AttractorError, compile_source
from passes.variational.certificates import certify_jensen_convex

RECIPROCAL = ("param a : real = 0.5\nminimize 1 / E[z ~ Normal(0, 1)] softplus(a * z) + 0.05 * a^2\n"
              "train optimizer=adam(lr=0.02)\n")


def _truth(a):
    """The objective as written (minimum 1.12566 at a = 2.33), E[softplus(a z)] by quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    return 1 / float(np.sum(weights * np.logaddexp(0.0, a * nodes)) / np.sqrt(2 * np.pi)) + 0.05 * a * a


@pytest.mark.parametrize("objective,relation", [
    ("exp(E[z ~ Normal(m, 1)] f(z)) + m^2", "<="),
    ("1 / E[z ~ Normal(0, 1)] exp(m * z + f(z))", "<="),
    ("-sqrt(E[z ~ Normal(0, 1)] exp(m * z + f(z)))", ">="),
    ("(E[z ~ Normal(m, 1)] f(z))^2", "<="),
])
def test_convex_functions_of_expectations_are_bounded(objective, relation):
    prog = compile_source(f"param m : real = 0.5\nnet f : mlp(1, 8, 1)\nminimize {objective}\n")
    step = prog.derivation.steps[0]
    assert step.rule == "jensen_convex" and step.relation == relation and step.fact("draws") == 16
    assert f"relation: original {relation} rewritten" in str(prog.derivation)
    assert "x16" in step.after and "mean[draws]" in step.after


@pytest.mark.parametrize("objective,why", [
    ("sqrt(E[z ~ Normal(0, 1)] exp(m * z + f(z)))", "sqrt(u) is not proved convex"),
    ("-exp(E[z ~ Normal(0, 1)] f(m * z))", "-exp(u) (the term enters the minimised loss negatively) is not proved convex"),
])
def test_the_wrong_direction_is_refused_at_the_node_saying_why(objective, why):
    with pytest.raises(AttractorError) as e:
        compile_source(f"param m : real = 0.5\nnet f : mlp(1, 8, 1)\nminimize {objective} + m^2\n")
    assert "<input>:3:" in str(e.value) and "intractable" in str(e.value) and why in str(e.value)


def test_a_bad_number_of_draws_is_a_located_diagnostic():
    with pytest.raises(AttractorError) as e:
        compile_source(RECIPROCAL.replace("0.05 * a^2", "0.05 * a^2 via jensen_convex(draws=0)"))
    assert "<input>:2:" in str(e.value) and "draws=K needs a whole number K >= 1, got 0" in str(e.value)


def test_the_certificate_passes():
    assert all(c.passed for c in certify_jensen_convex(None, None, 1))


def test_the_score_function_gradient_of_the_coupled_bound_agrees_with_the_pathwise_one():
    """phi(mean of K draws) couples the draws: the score term of each draw is weighted by K and
    centred by phi at the mean of the others, so it agrees with the pathwise gradient."""
    source = "param m : real = 0.3\nminimize (E[z ~ Normal(m, 1)] softplus(z))^2\n"
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    grads = {}
    for via in ("reparameterize", "score_function"):
        prog = compile_source(source, via=via)
        assert [s.rule for s in prog.derivation.steps] == ["jensen_convex", via]
        mod = prog.build()
        grad = jax.jit(jax.vmap(lambda k: jax.grad(mod.LOSSES["theta"])({"m": jnp.float32(0.3)}, k, mod.full_batch({}))["m"]))
        grads[via] = np.asarray(grad(keys), np.float64)
    means = {k: v.mean() for k, v in grads.items()}
    se = np.hypot(*(v.std() / np.sqrt(len(v)) for v in grads.values()))
    assert abs(means["reparameterize"] - means["score_function"]) < 4 * se, (means, se)
    assert abs(means["score_function"]) > 8 * se       # not the zero gradient of a baseline equal to f


def test_a_bounded_program_trains_to_the_optimum_of_what_was_written():
    prog = compile_source(RECIPROCAL)
    assert "relation: original <= rewritten" in str(prog.derivation)
    mod = prog.build()
    data = prog.load_data()
    params, history = mod.fit(data, steps=2000)
    a = float(params["a"])
    grid = np.linspace(0.0, 5.0, 251)
    best = min(_truth(g) for g in grid)
    assert _truth(a) < best + 0.01 * abs(best), (a, _truth(a), best)
    keys = jax.random.split(jax.random.PRNGKey(1), 2000)
    loss = jax.jit(jax.vmap(lambda k: mod.LOSSES["theta"](params, k, mod.full_batch({}))))
    values = np.asarray(loss(keys), np.float64)
    assert values.mean() + 4 * values.std() / np.sqrt(len(values)) >= _truth(a)    # the bound lies above the truth
