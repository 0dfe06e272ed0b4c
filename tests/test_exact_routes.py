"""Exact routes first (issue 20, SPEC §9.3): maximum likelihood for KL(data || q), closed forms or
Monte Carlo with both densities for KL(p || q), no game where densities exist."""
from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from attractor import compile_source

MLE = """
data x : real from gaussian(mean=2, std=0.5, n=2000)
param mu : real
param ls : real
model q:
    x ~ Normal(mu, exp(ls))
minimize KL(data || q)
train steps=1500, batch=256, optimizer=adam(lr=1e-2)
"""

TWO_NORMALS = """
data x : real from gaussian(mean=0, std=1, n=100)
param mu : real
param ls : real
model q:
    x ~ Normal(mu, exp(ls))
model p:
    x ~ Normal(1, 2)
minimize KL(q || p)
train steps=1500, optimizer=adam(lr=1e-2)
"""


def test_kl_from_data_is_maximum_likelihood_with_one_player():
    prog = compile_source(MLE)
    (step,) = prog.derivation.steps
    assert step.rule == "maximum_likelihood" and step.relation == "=+c"
    assert step.fact("constant") == "-H(data)"
    assert [p.name for p in prog.program.players] == ["theta"]
    mod, data = prog.build(), prog.load_data()
    params, _ = mod.fit(data, steps=1500, seed=0)
    x = np.asarray(data["x"], np.float64)
    assert abs(float(params["mu"]) - x.mean()) < 0.02
    assert abs(float(np.exp(params["ls"])) - x.std()) < 0.02


def test_kl_between_two_normals_is_the_closed_form_and_reaches_the_truth():
    prog = compile_source(TWO_NORMALS)
    (step,) = prog.derivation.steps
    assert step.rule == "explicit_kl" and step.relation == "=" and step.fact("route") == "closed_form"
    assert "derived by SymPy" in " ".join(step.conditions)
    mod, data = prog.build(), prog.load_data()
    params, _ = mod.fit(data, steps=1500, seed=0)
    assert abs(float(params["mu"]) - 1.0) < 0.02 and abs(float(np.exp(params["ls"])) - 2.0) < 0.02


def test_conjugate_still_forced_for_an_estimate():
    prog = compile_source("""
data x : real from gaussian(mean=0, std=1, n=500)
model q:
    x ~ Normal(1, 1.5)
estimate KL(data || q) via conjugate
""")
    assert [s.rule for s in prog.derivation.steps][0] == "conjugate"


def test_game_without_via_for_a_sampler_side():
    prog = compile_source("""
data x : real from gaussian(mean=0, std=1, n=500)
param a : real
sampler g:
    e ~ Normal(0, 1)
    x = a + e
minimize JS(data || g)
""")
    assert prog.derivation.steps[0].rule == "classifier_ratio"


def _loss(prog, params=None):
    mod, data = prog.build(), prog.load_data()
    params = mod.init(jax.random.PRNGKey(0)) if params is None else params
    return mod, data, params, float(mod.LOSSES["theta"](params, None, mod.full_batch(data)))


def test_enumerated_mixture_is_the_exact_log_likelihood():
    from scipy import stats
    prog = compile_source("""
data x : real from gaussian(mean=0, std=1, n=300)
param m : real[2] = [-1, 2]
param a : real = 0.5
model q:
    z ~ Bernoulli(logits=a)
    x ~ Normal(m[0] + z * (m[1] - m[0]), 1)
minimize E[x ~ data] -log q(x)
""")
    assert [s.rule for s in prog.derivation.steps] == ["enumerate"]
    mod, data, params, value = _loss(prog)
    x = np.asarray(data["x"], np.float64)
    w = 1 / (1 + np.exp(-0.5))
    exact = -np.mean(np.log((1 - w) * stats.norm.pdf(x, -1, 1) + w * stats.norm.pdf(x, 2, 1)))
    assert abs(value - exact) < 1e-4 * abs(exact)


def test_enumerated_categorical_and_vector_latents_build():
    for source in ("tests/golden/enumerate/categorical.att", "tests/golden/enumerate/forced_limit.att"):
        from pathlib import Path
        prog = compile_source(Path(source).read_text(), filename=source)
        assert prog.derivation.steps[0].rule == "enumerate"
        assert np.isfinite(_loss(prog)[3])


# ---- certificates of the exact routes ------------------------------------------------------------------

def _certified(source: str, rule: str, seed: int = 0):
    from compiler.driver.check import certify
    return [c for c in certify(compile_source(source), seed=seed) if c.rule == rule]


MIXTURE = """
data x : real from gaussian(mean=0, std=1, n=50)
param m : real[2]
param c : real[3]
model q:
    z ~ Bernoulli(logits=m[0]) : real[2]
    k ~ Categorical(logits=c)
    x ~ Normal(m[1] * k + sum(z), 1)
minimize E[x ~ data] -log q(x)
"""


def test_maximum_likelihood_certificate_passes():
    results = _certified(MLE, "maximum_likelihood")
    assert len(results) == 4 and all(c.passed for c in results), [(c.claim, c.evidence) for c in results]


def test_maximum_likelihood_certificate_fails_for_a_wrong_rewrite(monkeypatch):
    """-2 log q(x) in place of -log q(x): KL - objective is no longer one constant, and the gradient differs."""
    from compiler import ir
    from passes.adversarial import maximum_likelihood
    right = maximum_likelihood.log_density
    monkeypatch.setattr(maximum_likelihood, "log_density",
                        lambda block, binder: ir.Apply("mul", (ir.Num(2.0), right(block, binder))))
    results = _certified(MLE, "maximum_likelihood")
    assert results and not any(c.passed for c in results)


def test_explicit_kl_certificates_pass_for_both_routes():
    closed = _certified(TWO_NORMALS, "explicit_kl")
    monte_carlo = _certified(Path("tests/golden/explicit_kl/monte_carlo.att").read_text(), "explicit_kl")
    assert len(closed) == 1 and len(monte_carlo) == 2
    assert all(c.passed for c in closed + monte_carlo), [(c.claim, c.evidence) for c in closed + monte_carlo]


def test_explicit_kl_certificate_fails_for_a_wrong_closed_form(monkeypatch):
    """A closed form off by 0.05 nats is caught by the quadrature."""
    from compiler import ir
    from passes.adversarial import explicit_kl
    right = explicit_kl.closed_kl

    def wrong(p_law, q_law, shape):
        term, text = right(p_law, q_law, shape)
        return ir.Apply("add", (term, ir.Num(0.05))), text
    monkeypatch.setattr(explicit_kl, "closed_kl", wrong)
    results = _certified(TWO_NORMALS, "explicit_kl")
    assert results and not any(c.passed for c in results)


def test_enumerate_certificate_passes():
    results = _certified(MIXTURE, "enumerate")
    assert len(results) == 2 and all(c.passed for c in results), [(c.claim, c.evidence) for c in results]


def test_enumerate_certificate_fails_when_a_state_is_dropped(monkeypatch):
    """An enumeration that forgets the last state of its first latent is not the marginal likelihood."""
    from passes.variational import enumeration
    right = enumeration.SumOut

    def missing_one(binder, states, shapes, body, loc=None):
        return right(binder, (states[0] - 1,) + states[1:], shapes, body, loc=loc)
    monkeypatch.setattr(enumeration, "SumOut", missing_one)
    results = _certified(MIXTURE, "enumerate")
    assert results and not any(c.passed for c in results)
