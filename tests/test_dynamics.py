"""Game dynamics as transformations of the vector field, checked on the Dirac-GAN
(examples/dirac_gan.att): data at 0, generator at theta, linear discriminator sigmoid(psi x).

With L = 1/2 (log 4 + log sigmoid(0) + log sigmoid(-psi theta)) the simultaneous field
v = (-dL/dtheta, +dL/dpsi) has the Jacobian [[0, a], [-a, 0]] (a = 1/4, in the order psi,
theta: [[0, -a], [a, 0]]) at the equilibrium: eigenvalues +-ia, a rotation. SGA adds
-lambda a^2, consensus -gamma a^2, extragradient -eta a^2 to the real parts."""
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attractor import compile_file, compile_source
from compiler.driver.cli import main
from compiler.driver.field import classify, jacobian_report

ROOT = Path(__file__).resolve().parents[1]
DIRAC = ROOT / "examples" / "dirac_gan.att"
A = 0.25
DYNAMICS = ("simultaneous", "alternating", "extragradient", "sga", "consensus")


@pytest.fixture(scope="module")
def dirac():
    return {d: compile_file(DIRAC, dynamics=d) for d in DYNAMICS}


def at_equilibrium(prog):
    return jacobian_report(prog, "theta=0,psi=0")


@pytest.mark.parametrize("dynamics,damping", [
    ("simultaneous", 0.0), ("alternating", 0.0), ("sga", 1.0 * A**2), ("consensus", 0.1 * A**2), ("extragradient", 0.1 * A**2)])
def test_dirac_gan_eigenvalues(dirac, dynamics, damping):
    r = at_equilibrium(dirac[dynamics])
    assert np.linalg.norm(r["field"]) == 0.0
    eig = sorted(r["eigenvalues"], key=lambda z: z.imag)
    np.testing.assert_allclose(eig, [-damping - A * 1j, -damping + A * 1j], atol=1e-6)
    assert r["class"] == ("rotation" if damping == 0 else "stable attractor (spiral)")


def test_classification_of_eigenvalues():
    assert classify(np.array([-1.0, -2.0])) == "stable attractor"
    assert classify(np.array([1.0, -2.0])) == "saddle"
    assert classify(np.array([1.0, 2.0])) == "repeller"
    assert classify(np.array([0.5j, -0.5j])) == "rotation"


def test_dynamics_are_transformations_of_the_field(dirac):
    """At a point off the equilibrium, each direction equals its formula in v and J = dv/dx."""
    from jax.flatten_util import ravel_pytree
    x = jnp.asarray([-0.4, 0.7])   # (psi, theta)
    base = dirac["simultaneous"].build()
    batch = base.full_batch(dirac["simultaneous"].load_data())
    key = jax.random.PRNGKey(0)

    def flat_field(mod, fn):
        def f(z):
            params = {"psi": z[0], "theta": z[1]}
            return ravel_pytree(fn(mod, params))[0]
        return f
    v = flat_field(base, lambda m, p: m.field(p, key, batch))
    J = np.asarray(jax.jacfwd(v)(x), np.float64)
    vx = np.asarray(v(x), np.float64)
    xi, H = -vx, -J                                  # the players' gradients and their Jacobian
    expected = {
        "sga": -(xi + base.SGA_LAMBDA * 0.5 * (H - H.T).T @ xi),
        "consensus": -(xi + base.CONSENSUS_GAMMA * H.T @ xi),
        "extragradient": np.asarray(v(x + base.LR * vx), np.float64),
        "simultaneous": vx,
    }
    for name, want in expected.items():
        mod = dirac[name].build()
        got = flat_field(mod, lambda m, p: direction(m, name)(p, key, batch)[0])(x)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-7, err_msg=name)


def direction(mod, dynamics):
    """The emitted direction of `dynamics` (simultaneous: the field itself)."""
    return getattr(mod, f"{dynamics}_direction", None) or mod.field_and_losses


def radii_after(prog, steps=1000):
    """Distance from the equilibrium (0, 0) of the last iterate, and of the parameters `fit`
    returns (for a game, the mean iterate of the last tenth of the run)."""
    mod, last = prog.build(), {}
    params, _ = mod.fit(prog.load_data(), steps=steps, seed=0, callback=lambda d, t, r, p: last.update(p), chunk=10)
    return float(np.hypot(last["theta"], last["psi"])), float(np.hypot(params["theta"], params["psi"]))


def test_discrete_dirac_gan_dynamics(dirac):
    """From (theta, psi) = (1, 0), 1000 SGD steps of size 0.1: simultaneous steps spiral out,
    alternating ones circle, the damped dynamics spiral in (SGA fastest). The mean iterate
    of the last 100 steps, which `fit` returns, is nearer the equilibrium than the circling
    iterates (about 2 rad of arc in 100 steps: the chord mean is at 0.83 of the radius)."""
    radii = {d: radii_after(dirac[d]) for d in DYNAMICS}
    r = {d: last for d, (last, _) in radii.items()}
    assert r["simultaneous"] > 1.2
    assert 0.7 < r["alternating"] < 1.3
    assert r["extragradient"] < 0.85 and r["consensus"] < 0.85
    assert r["sga"] < 0.05
    assert radii["alternating"][1] < 0.9 * r["alternating"]


def test_every_dynamics_trains_a_small_gan():
    src = ("data x : real from gaussian(mean=1, std=0.5, n=200)\nparam mu : real\nsampler g:\n"
           "    eps ~ Normal(0, 1) : real\n    x = mu + eps\nminimize JS(data, g) via classifier_ratio(nonsaturating, critic=linear)\n"
           "train steps=5, batch=16\n")
    prog = compile_source(src)
    for d in DYNAMICS:
        mod = prog.build(d)
        assert hasattr(mod, f"{d}_step")
        params, history = mod.fit(prog.load_data(), steps=5, seed=0)
        assert float(params["mu"]) != 0.0 and all(np.isfinite(v) for h in history for v in h.values())


def test_dynamics_flag_overrides_the_train_line():
    assert hasattr(compile_file(DIRAC, dynamics="sga").build(), "sga_step")
    assert hasattr(compile_file(DIRAC).build(), "simultaneous_step")


def test_field_command_prints_and_plots(tmp_path, capsys):
    out = tmp_path / "field.png"
    assert main(["field", str(DIRAC), "--at", "theta=0,psi=0", "--dynamics", "consensus", "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert "classification: stable attractor (spiral)" in text and "point: psi = 0, theta = 0" in text
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert main(["field", str(DIRAC)]) == 0
    assert "not a fixed point" in capsys.readouterr().out


@pytest.mark.parametrize("args,words", [
    (["--at", "phi=1"], "--at: no parameter 'phi'"),
    (["--at", "theta=abc"], "'abc' is not a number"),
])
def test_field_bad_points(args, words, capsys):
    assert main(["field", str(DIRAC), *args]) == 1
    assert words in capsys.readouterr().err


def test_field_of_any_size_by_arnoldi_and_plots_of_two_parameters_only(tmp_path, capsys):
    """Beyond DENSE_LIMIT parameters the leading eigenvalues come from Arnoldi iterations on
    Jacobian-vector products: sum(exp(a) - 2a) over 500 entries has v = 2 - exp(a), J = -e I at a = 1."""
    big = tmp_path / "big.att"
    big.write_text("param a : real[500] = 1\nminimize sum(exp(a) - 2 * a)\n")
    r = jacobian_report(compile_file(big))
    assert not r["dense"] and r["class"] == "stable attractor"
    np.testing.assert_allclose(r["eigenvalues"], -np.e, rtol=1e-3)
    assert main(["field", str(big)]) == 0
    assert "Arnoldi" in capsys.readouterr().out
    three = tmp_path / "three.att"
    three.write_text("param a : real[3] = 1\nminimize sumsq(a)\n")
    assert main(["field", str(three), "--plot", str(tmp_path / "x.png")]) == 1
    assert "two-parameter fields only" in capsys.readouterr().err


def test_field_judges_the_discrete_update_with_its_proximal_maps(capsys):
    """Lasso's optimum is no zero of v (norm1 has no gradient there) but a fixed point of the
    proximal update the run takes, stable at the run's step 1/L; the Dirac-GAN's equilibrium is
    a rotation of the flow and unstable under simultaneous steps (|1 + i eta a| > 1)."""
    r = jacobian_report(compile_file(ROOT / "examples" / "lasso.att"), "final")
    assert np.linalg.norm(r["field"]) > 1e-2 and r["mapping"] < 1e-4 and r["radius"] < 1 and r["proximal"]
    d = jacobian_report(compile_file(DIRAC), "theta=0,psi=0")
    np.testing.assert_allclose(d["radius"], abs(1 + 0.1 * A * 1j), rtol=1e-5)
