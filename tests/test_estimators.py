"""The estimator options (issue 20) and the K-draw bound of log E (issue 17): sticking the
landing, the doubly reparameterised gradient, Rao-Blackwellisation, the Concrete relaxation.

Each compiled program is built once per module; gradients are taken over a few hundred keys
of a one-point batch (seconds). The certificates (`attractor check`) measure more draws."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attractor import AttractorError, compile_source
from compiler import ir
from compiler.frontend.checker import check
from compiler.frontend.parser import parse
from compiler.rewrite.rule import Context, Refusal
from compiler.rewrite.strategies import positions
from passes.variational import relax_discrete, score_function

LINEAR = """data x : real from gaussian(mean=1, std=2, n=20)
param w : real = 0.8
param b : real = 0.3
param a : real
param c : real
param s : real
model p:
    z ~ Normal(0, 1)
    x ~ Normal(w * z + b, 1)
guide q(z | x):
    z ~ Normal(a * x + c, softplus(s))
minimize {objective}
"""
ELBO = "E[x ~ data] E[z ~ q(z | x)] (log q(z | x) - log p(x, z))"
MARGINAL = "E[x ~ data] -log p(x)"
BERNOULLI_GUIDE = """data x : real[4] from gaussian(mean=0, std=1, n=20)
net dec : mlp(12, 4)
net enc : mlp(4, 12)
model p:
    z ~ Bernoulli(logits=0) : real[12]
    x ~ Normal(dec(z), 1)
guide q(z | x):
    z ~ Bernoulli(logits=enc(x))
minimize E[x ~ data] -log p(x) via {via}
"""
X = np.array([1.3])


def posterior_params(w=0.8, b=0.3) -> dict:
    """The linear model's guide at the exact posterior N(w (x - b) / (w^2 + 1), 1 / (w^2 + 1))."""
    prec = w * w + 1
    values = {"w": w, "b": b, "a": w / prec, "c": -w * b / prec, "s": np.log(np.expm1(np.sqrt(1 / prec)))}
    return {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}


def gradients(prog, params, n=256) -> dict[str, np.ndarray]:
    mod = prog.build()
    batch = mod.full_batch({"x": X})
    grad = jax.grad(mod.LOSSES["theta"])
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    return {k: np.asarray(v) for k, v in jax.jit(jax.vmap(lambda key: grad(params, key, batch)))(keys).items()}


def losses(prog, params, n=256) -> np.ndarray:
    mod = prog.build()
    batch = mod.full_batch({"x": X} if "x" in prog.source.split("minimize")[0] else {})
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    return np.asarray(jax.jit(jax.vmap(lambda key: mod.LOSSES["theta"](params, key, batch)))(keys))


@pytest.fixture(scope="module")
def stl():
    return compile_source(LINEAR.format(objective=ELBO), via="reparameterize(stl)")


@pytest.fixture(scope="module")
def dreg():
    return compile_source(LINEAR.format(objective=MARGINAL), via="jensen(iwae=5, dreg)")


# ---- sticking the landing ----------------------------------------------------------------------------

def test_stl_stops_the_guide_parameters_and_records_it(stl):
    step = stl.derivation.steps[-1]
    assert step.rule == "reparameterize" and step.fact("stl") is True and step.relation == "="
    assert "stop_params(log q(z | x))" in step.after
    assert "analytic_kl" not in [s.rule for s in stl.derivation.steps]


def test_stl_gradient_has_zero_variance_at_the_exact_posterior_and_plain_does_not(stl):
    at_posterior = posterior_params()
    sticking = gradients(stl, at_posterior)
    plain = gradients(compile_source(LINEAR.format(objective=ELBO), via="reparameterize"), at_posterior)
    for name in "acs":
        assert np.var(sticking[name]) < 1e-9
    assert max(np.var(plain[name]) for name in "acs") > 1e-3
    assert np.allclose(sticking["w"].mean(), plain["w"].mean(), atol=4 * plain["w"].std() / 16 + 1e-3)


def test_stl_with_a_bernoulli_guide_is_refused_at_the_via():
    source = BERNOULLI_GUIDE.format(via="reparameterize(stl)")
    with pytest.raises(AttractorError) as e:
        compile_source(source)
    assert "<input>:9:36: error:" in str(e.value) and "stl needs a reparameterised guide" in str(e.value)


# ---- DReG --------------------------------------------------------------------------------------------

def test_dreg_has_the_value_of_the_bound_and_zero_variance_at_the_posterior(dreg):
    plain = compile_source(LINEAR.format(objective=MARGINAL), via="jensen(iwae=5)")
    params = {k: jnp.asarray(v, jnp.float32) for k, v in {"w": 0.8, "b": 0.3, "a": 0.2, "c": 0.1, "s": -0.5}.items()}
    assert np.allclose(losses(dreg, params, 16), losses(plain, params, 16), rtol=1e-5, atol=1e-5)
    assert dreg.derivation.steps[0].fact("dreg") is True
    doubly = gradients(dreg, posterior_params())
    assert max(np.var(doubly[name]) for name in "acs") < 1e-9


def test_dreg_without_iwae_is_a_diagnostic_at_the_via():
    with pytest.raises(AttractorError) as e:
        compile_source(LINEAR.format(objective=MARGINAL + " via jensen(dreg)"))
    assert "<input>:12:36: error:" in str(e.value) and "jensen(iwae=K, dreg)" in str(e.value)


def test_dreg_with_a_bernoulli_guide_is_refused():
    with pytest.raises(AttractorError, match="dreg needs a reparameterised guide"):
        compile_source(BERNOULLI_GUIDE.format(via="jensen(iwae=3, dreg)"))


# ---- Rao-Blackwellisation ----------------------------------------------------------------------------

RAO = """param a : real[3] = [0.3, -0.5, 1.0]
param v : real[3] = [0.2, 0.4, -0.3]
param w : real[3] = [1.0, -0.7, 0.5]
model r:
    z ~ Bernoulli(logits=v) : real[3]
minimize E[z ~ Bernoulli(logits=a)] (log r(z) + (sum(w * z) - 1)^2)
"""


def test_rao_blackwell_keeps_the_value_and_scores_elementwise():
    prog = compile_source(RAO, via="score_function(rao_blackwell)")
    step = prog.derivation.steps[-1]
    assert step.fact("rao_blackwell") is True and "elementwise(log r(z))" in step.after
    params = {k: jnp.asarray(v, jnp.float32) for k, v in
              {"a": [0.3, -0.5, 1.0], "v": [0.2, 0.4, -0.3], "w": [1.0, -0.7, 0.5]}.items()}
    plain = compile_source(RAO, via="score_function")
    assert np.allclose(losses(prog, params, 8), losses(plain, params, 8), atol=1e-5)


def test_rao_blackwell_does_not_apply_inside_an_importance_weighted_bound():
    program = check(parse(BERNOULLI_GUIDE.format(via="jensen(iwae=2)").replace(" via jensen(iwae=2)", "")))
    node = ir.Expect(("z",), ir.Sample("q", ("z",), ("x",)),
                     score_function.OverDraws("logmeanexp", ir.Apply("log", (ir.Density("p", ("x", "z"), ()),))),
                     samples=2)
    ctx = Context(program, program.players[0], 1, {"rao_blackwell": True}, True, None)
    out = score_function.RULE(node, ctx)
    assert isinstance(out, Refusal) and "log-mean-exp" in out.reason


# ---- the Concrete relaxation -------------------------------------------------------------------------

def test_relax_discrete_applies_only_when_forced():
    source = "param a : real[3]\nminimize E[z ~ Bernoulli(logits=a)] sum(z)\n"
    assert [s.rule for s in compile_source(source).derivation.steps] == ["score_function"]
    program = check(parse(source))
    node = next(n for n, _, _ in positions(program.players[0].loss, program) if isinstance(n, ir.Expect))
    assert relax_discrete.RULE(node, Context(program, program.players[0])) is None
    forced = compile_source(source, via="relax_discrete(temperature=0.1)").derivation.steps[-1]
    assert forced.relation == "~" and forced.fact("temperature") == 0.1 and "sigmoid" in forced.after


def test_relaxed_value_approaches_the_discrete_one_as_the_temperature_falls():
    source = "param a : real[3] = [0.5, -1, 2]\nminimize E[z ~ Bernoulli(logits=a)] sum(z)\n"
    params = {"a": jnp.asarray([0.5, -1.0, 2.0], jnp.float32)}
    exact = float(jax.nn.sigmoid(params["a"]).sum())
    gaps = [abs(losses(compile_source(source, via=f"relax_discrete(temperature={t})"), params, 4000).mean() - exact)
            for t in (2.0, 0.05)]
    assert gaps[1] < gaps[0]


# ---- the K-draw bound of log E -----------------------------------------------------------------------

LOG_E = "param m : real = 1\nminimize -log E[z ~ Normal(0, 1)] exp(m * z)\n"


def test_log_expectation_is_bounded_with_default_draws_and_the_bound_tightens():
    prog = compile_source(LOG_E, via="jensen")      # without via, closed_form_expectation computes it exactly
    step = prog.derivation.steps[0]
    assert step.rule == "jensen" and step.relation == "<=" and step.fact("iwae") == 16
    params, truth = {"m": jnp.asarray(1.0, jnp.float32)}, -0.5
    means = {}
    for k in (1, 16):
        values = losses(compile_source(LOG_E, via=f"jensen(iwae={k})"), params, 2000)
        means[k] = values.mean()
        assert means[k] + 4 * values.std() / np.sqrt(len(values)) >= truth
    assert means[16] < means[1]


def test_log_expectation_in_the_wrong_direction_is_refused_naming_the_node():
    with pytest.raises(AttractorError) as e:
        compile_source("param m : real\nminimize log E[z ~ Normal(0, 1)] exp(m * z) + m^2\n", via="jensen")
    assert "2:10: error: rule jensen refused" in str(e.value) and "log(E[z ~ Normal(0, 1)] exp(m * z))" in str(e.value)
