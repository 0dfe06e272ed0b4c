"""gaussian_marginal for vector latents entering through `@` / `dot` (issue 20, "exact where exact
exists"): probabilistic PCA and factor analysis get their exact marginal likelihood, a low-rank
multivariate Normal, instead of an ELBO."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from attractor import AttractorError, compile_source

GOLDEN = Path(__file__).resolve().parent / "golden" / "gaussian_marginal"

PPCA = """data x : real[5] from npz("{path}")
param W : real[5, 2] ~ Normal(0, 0.1)
param b : real[5]
param ls : real
model p:
    z ~ Normal(0, 1) : real[2]
    x ~ Normal(W @ z + b, exp(ls)) : real[5]
minimize E[x ~ data] -log p(x)
"""


def _ppca_data(path: Path, n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(5, 2))
    x = 1.5 * rng.normal(size=(n, 2)) @ w.T + 0.4 * rng.normal(size=(n, 5)) + np.arange(5.0)
    np.savez(path, x=x)
    return x


def _dense_nll(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    """-mean log N(x; mean, cov) in float64 with the full covariance (slogdet, solve)."""
    r = np.atleast_2d(x - mean)
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("ni,ni->n", r, np.linalg.solve(cov, r.T).T)
    return float(np.mean(0.5 * (cov.shape[0] * np.log(2 * np.pi) + logdet + quad)))


def _loss(prog, params: dict, x: np.ndarray) -> float:
    mod = prog.build()
    return float(mod.LOSSES["theta"]({k: jnp.asarray(v, jnp.float32) for k, v in params.items()}, None,
                                     mod.full_batch({"x": x})))


@pytest.fixture(scope="module")
def ppca(tmp_path_factory):
    path = tmp_path_factory.mktemp("ppca") / "pp.npz"
    x = _ppca_data(path)
    return compile_source(PPCA.replace("{path}", path.as_posix())), x


def test_ppca_is_exact_before_jensen(ppca):
    prog, _ = ppca
    (step,) = prog.derivation.steps
    assert step.rule == "gaussian_marginal" and step.relation == "="
    assert step.fact("form") == "low-rank" and step.fact("latents") == ("z",) and step.fact("slopes") == ("W",)


def test_ppca_objective_equals_the_dense_gaussian(ppca):
    prog, x = ppca
    rng = np.random.default_rng(1)
    for _ in range(3):
        p = {"W": rng.normal(size=(5, 2)), "b": rng.normal(size=5), "ls": float(rng.normal() * 0.5)}
        want = _dense_nll(x, p["b"], p["W"] @ p["W"].T + np.exp(2 * p["ls"]) * np.eye(5))
        assert abs(_loss(prog, p, x) - want) <= 1e-5 * abs(want)


def test_ppca_training_reaches_the_maximum_likelihood(ppca):
    """Tipping & Bishop: the PPCA maximum of the likelihood, from the sample covariance's eigenvalues
    l_1 >= ... >= l_d: -ll/n = 1/2 (d log 2 pi + sum_{i<=q} log l_i + (d - q) log mean_{i>q} l_i + d)."""
    prog, x = ppca
    mod = prog.build()
    params, _ = mod.fit({"x": x}, steps=2000, seed=0)
    d, q = 5, 2
    eig = np.sort(np.linalg.eigvalsh(np.cov(x.T, bias=True)))[::-1]
    best = 0.5 * (d * np.log(2 * np.pi) + np.log(eig[:q]).sum() + (d - q) * np.log(eig[q:].mean()) + d)
    final = float(mod.LOSSES["theta"](params, None, mod.full_batch({"x": x})))
    assert final >= best - 1e-4 * best            # the maximum cannot be beaten (float32 slack)
    assert abs(final - best) <= 1e-3 * best


def test_factor_analysis_with_two_latents_and_prior_means(tmp_path):
    """Two vector latents (one through A @ z, one through a diagonal scaling of B @ u), prior means
    m and 1, prior scales 2 and 0.5, a per-component noise scale."""
    rng = np.random.default_rng(2)
    x = rng.normal(1.0, 2.0, size=(50, 4))
    np.savez(tmp_path / "x.npz", x=x)
    source = (GOLDEN / "factor_analysis_two_latents.att").read_text().replace(
        'gaussian(mean=1, std=2, n=200)', f'npz("{(tmp_path / "x.npz").as_posix()}")')
    prog = compile_source(source)
    assert [s.rule for s in prog.derivation.steps] == ["gaussian_marginal"]
    p = {"A": rng.normal(size=(4, 2)), "B": rng.normal(size=(4, 3)), "m": rng.normal(size=2),
         "c": rng.normal(size=4), "lp": rng.normal(size=4) * 0.3}
    cb = p["c"][:, None] * p["B"]
    mean = p["A"] @ p["m"] - cb @ np.ones(3)
    cov = np.diag(np.exp(2 * p["lp"])) + 4 * p["A"] @ p["A"].T + 0.25 * cb @ cb.T
    want = -_dense_nll(x, mean, cov)              # the objective as written: mean log p(x)
    assert abs(_loss(prog, p, x) - want) <= 1e-5 * abs(want)


def test_scalar_x_through_dot(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    np.savez(tmp_path / "x.npz", x=x)
    prog = compile_source(f"""data x : real from npz("{(tmp_path / 'x.npz').as_posix()}")
param w : real[3]
param b : real
model p:
    z ~ Normal(0.5, 2) : real[3]
    x ~ Normal(dot(w, z) + b, 0.7)
minimize E[x ~ data] -log p(x)
""")
    assert prog.derivation.steps[0].rule == "gaussian_marginal"
    p = {"w": rng.normal(size=3), "b": float(rng.normal())}
    var = 0.49 + 4 * np.sum(p["w"] ** 2)
    want = _dense_nll(x[:, None], np.array([0.5 * p["w"].sum() + p["b"]]), np.array([[var]]))
    assert abs(_loss(prog, p, x) - want) <= 1e-5 * abs(want)


@pytest.mark.parametrize("case", ["mv_prior_reads_latent", "mv_nonlinear"])
def test_not_linear_gaussian_keeps_the_bound(case):
    prog = compile_source((GOLDEN / f"{case}.att").read_text())
    assert prog.derivation.steps[0].rule == "jensen"


def test_latent_on_the_left_of_matmul_is_refused_when_forced():
    with pytest.raises(AttractorError, match="a latent on the left of @"):
        compile_source("""data x : real[3] from gaussian(mean=1, std=2, n=50)
param W : real[2, 3]
model p:
    z ~ Normal(0, 1) : real[2]
    x ~ Normal(z @ W, 1) : real[3]
minimize E[x ~ data] -log p(x) via gaussian_marginal
""")


def _certified(prog, seed: int = 0):
    from compiler.driver.check import certify
    return [c for c in certify(prog, seed=seed) if c.rule == "gaussian_marginal"]


def test_certificate_passes_and_fails_for_a_wrong_form(monkeypatch):
    prog = compile_source((GOLDEN / "ppca.att").read_text())
    (result,) = _certified(prog)
    assert result.passed, result.evidence
    from compiler import ir
    from passes.variational import gaussian_marginal_mv
    right = gaussian_marginal_mv.match_low_rank

    def noisier(node, ctx):                      # the noise scale off by 5%: a wrong marginal
        found = right(node, ctx)
        return dataclasses.replace(found, noise=ir.Apply("mul", (ir.Num(1.05), found.noise)))

    monkeypatch.setattr(gaussian_marginal_mv, "match_low_rank", noisier)
    (result,) = _certified(prog)
    assert not result.passed


def test_low_rank_density_at_a_zero_factor(ppca):
    """W = 0: the capacitance is I, the density the isotropic Normal."""
    prog, x = ppca
    p = {"W": np.zeros((5, 2)), "b": np.zeros(5), "ls": 0.0}
    want = _dense_nll(x, np.zeros(5), np.eye(5))
    got = _loss(prog, p, x)
    assert np.isfinite(got) and abs(got - want) <= 1e-5 * want


def test_woodbury_and_determinant_lemma_are_checked_by_sympy(ppca):
    from compiler.math.distributions import low_rank_normal_identities
    prog, _ = ppca
    (step,) = prog.derivation.steps
    assert low_rank_normal_identities() in step.conditions
    assert "(2 x 2) and F (2 x 1)" in low_rank_normal_identities(2, 1)


def test_scalar_latent_scaling_a_vector_latent_term_is_refused_when_forced():
    """u * (W @ z) is bilinear in (u, z): not a linear-Gaussian model, whatever the shapes."""
    with pytest.raises(AttractorError, match=r"u \* \(W @ z\): a product or quotient of latent terms"):
        compile_source("""data x : real[3] from gaussian(mean=1, std=2, n=50)
param W : real[3, 2]
model p:
    u ~ Normal(0, 1)
    z ~ Normal(0, 1) : real[2]
    x ~ Normal(u * (W @ z), 1) : real[3]
minimize E[x ~ data] -log p(x) via gaussian_marginal
""")


def test_a_scalar_latent_shared_by_a_vector_x_is_the_exact_rank_one_marginal(tmp_path):
    """x ~ Normal(c * z + b, 1) : real[3], z ~ Normal(0.5, 2) a scalar: x ~ N(b + 0.5 c, I + 4 c c^T)
    (the components correlated through z), equal to the dense Gaussian at random parameters."""
    rng = np.random.default_rng(4)
    x = rng.normal(1.0, 2.0, size=(60, 3))
    np.savez(tmp_path / "x.npz", x=x)
    source = (GOLDEN / "shared_scalar.att").read_text().replace(
        'gaussian(mean=1, std=2, n=200)', f'npz("{(tmp_path / "x.npz").as_posix()}")')
    prog = compile_source(source)
    assert [s.rule for s in prog.derivation.steps] == ["gaussian_marginal"]
    p = {"c": rng.normal(size=3), "b": rng.normal(size=3)}
    want = _dense_nll(x, p["b"] + 0.5 * p["c"], np.eye(3) + 4 * np.outer(p["c"], p["c"]))
    assert abs(_loss(prog, p, x) - want) <= 1e-5 * abs(want)
    (result,) = _certified(prog)
    assert result.passed, result.evidence


def test_a_scalar_latent_inside_dot_is_refused_when_forced():
    with pytest.raises(AttractorError, match="a scalar latent inside dot"):
        compile_source("""data x : real[3] from gaussian(mean=1, std=2, n=50)
param w : real[3]
model p:
    z ~ Normal(0, 1)
    x ~ Normal(dot(w, z * ones(3)) * ones(3), 1) : real[3]
minimize E[x ~ data] -log p(x) via gaussian_marginal
""")
