"""examples/gan_ring.att: mode coverage under each dynamics, and the emitted step against the
same GAN step written by hand in JAX.

Quality: after the program's 10000 steps (batch 256, Adam 1e-4, b1 0.5), 2000 samples of the
generator (what `attractor run --samples` saves); a mode is covered when at least 1% of the
samples lie within 0.1 of its centre; "within 0.1" is the fraction of samples within 0.1 of
some centre. Speed: median seconds per step of 100-step jitted chunks (minibatch sampling
included), emitted and hand-written called alternately. The hand-written step either draws the
generator's noise once for both players, or once in each player's loss (each loss a separate
function: the noise and the generator's forward pass are then computed once per player, since on
the CPU XLA does not merge two copies of a random-number loop inside the training loop). The
emitted module takes the field from `joint_losses` (compiler/joint.py), which draws shared noise
once, as the first hand-written step does.

Run as `python bench/adversarial_gan.py [--steps N] [--seeds 0 1] [--dynamics D ...]`.
"""
from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from harness import alternate, block, machine, versions  # noqa: E402

from attractor import compile_file  # noqa: E402

FILE = ROOT / "examples" / "gan_ring.att"
DYNAMICS = ("simultaneous", "alternating", "extragradient", "sga", "consensus")
CENTRES = 2.0 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)


def modes(samples: np.ndarray) -> tuple[int, float]:
    """(modes covered, fraction of samples within 0.1 of a centre)."""
    d = np.linalg.norm(samples[:, None, :] - CENTRES[None], axis=2)
    near = d < 0.1
    return int(np.sum(near.mean(0) >= 0.01)), float(near.any(1).mean())


def train(dynamics: str, seed: int, steps: int | None) -> tuple[int, float, float]:
    prog = compile_file(FILE, dynamics=dynamics)
    mod, data = prog.build(), prog.load_data()
    started = time.perf_counter()
    params, _ = mod.fit(data, steps or mod.STEPS, seed)
    seconds = time.perf_counter() - started
    covered, near = modes(np.asarray(mod.sample(params, jax.random.PRNGKey(seed + 2), 2000)))
    return covered, near, seconds / (steps or mod.STEPS)


# ---- the same GAN step by hand ------------------------------------------------------------------------

def mlp_init(key, widths):
    layers = []
    for m, n in zip(widths[:-1], widths[1:]):
        key, k = jax.random.split(key)
        layers.append({"w": jax.random.normal(k, (m, n)) / np.sqrt(m), "b": jnp.zeros((n,))})
    return layers


def mlp(layers, x, act=jax.nn.relu):
    for layer in layers[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


OPT = optax.adam(1e-4, b1=0.5)


def hand_losses(gen, disc, real, eps):
    fake = mlp(gen, eps)
    d_real, d_fake = mlp(disc, real)[:, 0], mlp(disc, fake)[:, 0]
    base = jnp.log(4.0) + jnp.mean(jax.nn.log_sigmoid(d_real))
    return 0.5 * (base + jnp.mean(jax.nn.log_sigmoid(-d_fake))), 0.5 * (base - jnp.mean(jax.nn.log_sigmoid(d_fake)))


def hand_step(state, key, data, shared):
    """Simultaneous: the discriminator ascends the JS bound, the generator descends its
    nonsaturating loss, both at the current parameters. `shared`: the noise is drawn once and
    both losses see it (XLA then computes the generator's forward pass once); otherwise each
    player's loss draws it from the same key, as the emitted losses do."""
    gen, disc, og, od = state
    kb, ke = jax.random.split(key)
    real = data[jax.random.randint(kb, (256,), 0, data.shape[0])]
    eps = jax.random.normal(ke, (256, 2))

    def noise():
        return eps if shared else jax.random.normal(ke, (256, 2))
    gd = jax.grad(lambda d: -hand_losses(gen, d, real, noise())[0])(disc)
    gg = jax.grad(lambda g: hand_losses(g, disc, real, noise())[1])(gen)
    ug, og = OPT.update(gg, og, gen)
    ud, od = OPT.update(gd, od, disc)
    return (optax.apply_updates(gen, ug), optax.apply_updates(disc, ud), og, od), None


@partial(jax.jit, static_argnums=(3, 4))
def hand_chunk(state, key, data, length, shared):
    return jax.lax.scan(lambda s, k: hand_step(s, k, data, shared), state, jax.random.split(key, length))[0]


def step_times(rounds: int = 21) -> dict[str, float]:
    prog = compile_file(FILE)
    mod, data = prog.build(), prog.load_data()
    arrays = mod.as_data(data)
    state = jax.device_put(mod.init_state(mod.init(jax.random.PRNGKey(0))), mod.REPLICATED)
    gen, disc = mlp_init(jax.random.PRNGKey(1), (2, 128, 128, 2)), mlp_init(jax.random.PRNGKey(2), (2, 128, 128, 1))
    hand = (gen, disc, OPT.init(gen), OPT.init(disc))
    key = jax.random.PRNGKey(3)
    times = alternate({
        "emitted": lambda: block(mod.train_steps(state, key, arrays, 100, 256)),
        "by hand": lambda: block(hand_chunk(hand, key, arrays["x"], 100, True)),
        "by hand, per-player draws": lambda: block(hand_chunk(hand, key, arrays["x"], 100, False)),
    }, rounds=rounds)
    return {k: v / 100 for k, v in times.items()}


def run(seeds=(0, 1), dynamics=DYNAMICS, steps=None) -> str:
    lines = ["## GAN on a ring of 8 Gaussians (classifier_ratio, nonsaturating)", "",
             f"`examples/gan_ring.att` as written{'' if steps is None else f' but {steps} steps'}; "
             "2000 samples; a mode is covered with >= 1% of the samples within 0.1 of its centre.", "",
             "| dynamics | seed | modes covered | within 0.1 | ms per step (fit) |", "|---|---|---|---|---|"]
    for d in dynamics:
        for s in (seeds if d == "simultaneous" else seeds[:1]):
            covered, near, sec = train(d, s, steps)
            lines.append(f"| {d} | {s} | {covered}/8 | {100 * near:.0f}% | {1e3 * sec:.2f} |")
    t = step_times()
    lines += ["", "| step (simultaneous, jitted 100-step chunks) | ms per step | emitted / this |", "|---|---|---|"]
    lines += [f"| {name} | {1e3 * sec:.3f} | {t['emitted'] / sec:.3f} |" for name, sec in t.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--dynamics", nargs="+", default=list(DYNAMICS))
    args = ap.parse_args()
    print(f"Machine: {machine()}\n\nVersions: {versions()}\n")
    print(run(tuple(args.seeds), tuple(args.dynamics), args.steps))
