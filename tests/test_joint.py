"""compiler.backend.joint: with several moving players the field comes from one function of every
player's loss, in which the draws the players share are made once (one noise array for the
batch, mapped through each context), and random sites get keys without a fold_in when a scope
has only one."""
import dataclasses
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from attractor import compile_file, compile_source
from compiler import ir
from compiler.backend.emit import emit_module
from compiler.backend.lower import outer_expectations
from compiler.rewrite.strategies import bottom_up

ROOT = Path(__file__).resolve().parents[1]
GAN = ROOT / "examples" / "gan_ring.att"


def section(source: str, start: str, end: str) -> str:
    return source[source.index(start):source.index(end, source.index(start))]


def module_of(source: str):
    import types
    mod = types.ModuleType("emitted")
    exec(compile(source, "<emitted>", "exec"), mod.__dict__)  # noqa: S102 - the emitted module, changed by the test
    return mod


def per_player_field(mod, params, key, batch):
    """Each player's gradient in its own parameters, its loss lowered on its own."""
    v = {}
    for p in mod.MOVING:
        v.update(mod.player_field(p, params, key, batch)[0])
    return v


def assert_same_field(mod, data, batch_size=64):
    """At float32 matmul precision on every device (a GPU's default TF32 would make the two
    orders of summation differ by ~1e-4), the joint field equals the per-player one."""
    key = jax.random.PRNGKey(4)
    params = mod.init(jax.random.PRNGKey(0))
    batch = mod.minibatch(mod.as_data(data), jax.random.PRNGKey(1), batch_size)
    with jax.default_matmul_precision("highest"):
        v, values = jax.jit(mod.field_and_losses)(params, key, batch)
        want = per_player_field(mod, params, key, batch)
        separate = mod.losses(params, key, batch)
    assert set(v) == set(want)
    for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    for p, value in separate.items():
        np.testing.assert_allclose(float(values[p]), float(value), rtol=1e-6, atol=1e-6)


def test_gan_draws_its_noise_once_for_both_players():
    prog = compile_file(GAN)
    source = prog.emit()
    joint = section(source, "def joint_losses", "JOINT = ")
    apart = section(source, "def loss_theta", "LOSSES = ")
    assert joint.count("location_scale_from_noise(") == 1 and apart.count("location_scale_from_noise(") == 2
    assert joint.count("jax.random.normal(") == 1 and apart.count("jax.random.normal(") == 2
    eps = re.search(r"(eps_\d+) = location_scale_from_noise", joint).group(1)
    assert len(re.findall(rf'mlp\(params\d+\["gen"\], {eps}, "relu"\)', joint)) == 2


@pytest.mark.parametrize("name", ["gan_ring.att", "hellinger_fit.att", "dirac_gan.att"])
def test_joint_field_is_each_players_gradient_of_its_own_loss(name):
    """Same key, same noise: the one-pass field equals the per-player gradients exactly."""
    prog = compile_file(ROOT / "examples" / name)
    mod = prog.build()
    assert mod.JOINT is not None
    assert_same_field(mod, prog.load_data())


def test_one_moving_player_has_no_joint_function():
    mod = compile_file(ROOT / "examples" / "vae.att").build()
    assert mod.JOINT is None


def _with_losses(prog, change):
    players = tuple(dataclasses.replace(pl, loss=change(pl)) for pl in prog.program.players)
    return dataclasses.replace(prog.program, players=players)


def test_expectations_under_a_let_are_lowered_in_each_context():
    """Non-match: a let binds a name, so what is under it is not merged; each player draws."""
    prog = compile_file(GAN)
    program = _with_losses(prog, lambda pl: ir.Let("c", ir.Num(0.0), pl.loss))
    assert all(outer_expectations(pl.loss) == [] for pl in program.players)
    source = emit_module(program, "gan_ring")
    joint = section(source, "def joint_losses", "JOINT = ")
    assert joint.count("location_scale_from_noise(") == 2
    # each context now takes its own random sites: fix the noise (sigma 0) to compare the field
    fixed = source.replace("return loc + scale * _noise(eps, loc, scale)", "return loc + 0.0 * _noise(eps, loc, scale)")
    assert fixed != source
    assert_same_field(module_of(fixed), prog.load_data())


def test_expectations_with_different_headers_are_not_merged():
    """Non-match: two draws per example for one player, one for the other: two draw functions."""
    prog = compile_file(GAN)

    def twice(pl):
        if pl.name != "disc":
            return pl.loss
        return bottom_up(pl.loss, lambda n: dataclasses.replace(n, samples=2)
                         if isinstance(n, ir.Expect) and not isinstance(n.source, ir.DataSet) else None)
    source = emit_module(_with_losses(prog, twice), "gan_ring")
    joint = section(source, "def joint_losses", "JOINT = ")
    assert joint.count("location_scale_from_noise(") == 2 and len(re.findall(r"def draw\d+\(", joint)) == 2
    mod = module_of(source)
    key, params = jax.random.PRNGKey(4), mod.init(jax.random.PRNGKey(0))
    batch = mod.minibatch(mod.as_data(prog.load_data()), jax.random.PRNGKey(1), 32)
    v = mod.field(params, key, batch)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(v))


def test_draws_that_depend_on_parameters_are_made_in_each_context_from_one_key():
    """mu + exp(log_sd) * eps: the base draw is parameter-free and made once, the sample that
    moves with the parameters is computed in each player's context. A draw from Laplace(mu, 1)
    itself (not reparameterised by a rule) is made in each context, from the same key."""
    source = compile_file(ROOT / "examples" / "hellinger_fit.att").emit()
    joint = section(source, "def joint_losses", "JOINT = ")
    assert joint.count("location_scale_from_noise(") == 1 and joint.count('["log_sd"]') == 2
    src = ("data x : real from gaussian(mean=1, std=0.5, n=200)\nparam mu : real\nsampler g:\n"
           "    x ~ Laplace(mu, 1) : real\nminimize JS(data, g) via classifier_ratio(critic=linear)\n"
           "train steps=5, batch=16\n")
    prog = compile_source(src)

    def unreparameterised(n):   # E[eps ~ Laplace(0, 1)] (f(x) with x = mu + eps) -> E[x ~ Laplace(mu, 1)] f(x)
        if isinstance(n, ir.Expect) and isinstance(n.source, ir.Dist) and isinstance(n.body, ir.Let):
            return ir.Expect((n.body.name,), ir.Dist("Laplace", ("loc", "scale"), (ir.Ref("mu"), ir.Num(1.0))), n.body.body)
        return None
    program = _with_losses(prog, lambda pl: bottom_up(pl.loss, unreparameterised))
    source = emit_module(program, "laplace")
    joint = section(source, "def joint_losses", "JOINT = ")
    keys = re.findall(r"location_scale_from_noise\((\w+), params\d+\[\"mu\"\]", joint)
    assert len(keys) == 2 and len(set(keys)) == 1
    assert_same_field(module_of(source), prog.load_data(), batch_size=16)


def test_a_scope_with_one_random_site_uses_its_key_and_several_fold_in():
    source = compile_file(GAN).emit()
    loss = section(source, "def loss_theta", "def loss_disc")
    assert "fold_in" not in loss and "jax.random.normal(key, (" in loss
    src = ("data x : real from gaussian(mean=1, std=0.5, n=200)\nparam mu : real\nsampler g:\n"
           "    a ~ Normal(0, 1) : real\n    b ~ Normal(0, 1) : real\n    x = mu + a * b\n"
           "minimize JS(data, g) via classifier_ratio(critic=linear)\ntrain steps=5, batch=16\n")
    loss = section(compile_source(src).emit(), "def loss_theta", "LOSSES = ")
    assert "jax.random.fold_in(key, 1)" in loss and "jax.random.fold_in(key, 2)" in loss
