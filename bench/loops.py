"""Whole training loops, side by side: the emitted `fit` against the same loop written by hand
in JAX as one jitted `fori_loop` (and, for vae.att, NumPyro SVI in a `fori_loop`).

For vae.att, sbn.att, gan_ring.att, es_zero_one.att and hellinger_fit.att. Each contender runs N
steps from the same start, in one process, alternately, several rounds after a warm-up; the
medians and the ratios emitted / by hand (and emitted / NumPyro) are reported, with the ratio of the
fastest rounds (the least disturbed on a shared machine) and the median of the per-round ratios
(paired: the load that varies between rounds cancels) beside them. The emitted side
is `fit(data, N, chunk=N)` as users call it: its host work (initial parameters, data
conversion, the loss history) is inside the time, its compilation (a first call) is not. The
hand-written loops draw the minibatch and the noise of step t from fold_in(key, t) like the
emitted loop, and average the iterates over the last tenth in the games, as the emitted loop
does (TAIL_AVERAGE).

Run: `python bench/loops.py [--only vae sbn ...] [--scale 1.0] [--rounds 5]`; numpyro is optional.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from harness import block, machine, versions  # noqa: E402
from variational_vae import negative_elbo  # noqa: E402

from attractor import compile_file  # noqa: E402


def mlp(layers, x, act=jax.nn.relu):
    for layer in layers[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def loop(step, batch_size):
    """The hand-written loop: `length` steps in one jitted fori_loop, step t drawing its
    minibatch and noise from fold_in(key, t)."""
    @jax.jit
    def run(state, key, data, length):
        def body(t, state):
            kb, ks = jax.random.split(jax.random.fold_in(key, t))
            rows = jax.random.randint(kb, (batch_size,), 0, data.shape[0]) if batch_size else slice(None)
            return step(state, ks, data[rows], t, length)
        return jax.lax.fori_loop(0, length, body, state)
    return run


def tail_average(average, params, t, length):
    """The mean of the iterates of the last tenth of the run (the emitted TAIL_AVERAGE)."""
    n = t + 1 - (length - length // 10)
    weight = 1.0 / jnp.maximum(n, 1).astype(jnp.float32)
    return jax.tree.map(lambda a, x: a + weight * (x - a), average, params)


# ---- vae.att ---------------------------------------------------------------------------------------

def vae_step(opt):
    def step(state, key, x, t, length):
        params, opt_state = state
        grads = jax.grad(negative_elbo)(params, key, x)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state
    return step


def numpyro_loop(init, batch_size, lr):
    """NumPyro SVI (Trace_ELBO) on the same model and guide, `length` updates in a fori_loop;
    None without numpyro."""
    try:
        import numpyro
        import numpyro.distributions as dist
        from numpyro.infer import SVI, Trace_ELBO
    except ImportError:
        return None, None

    def net(name, template):
        return [{"w": numpyro.param(f"{name}_w{i}", l["w"]), "b": numpyro.param(f"{name}_b{i}", l["b"])}
                for i, l in enumerate(template)]

    def model(x):
        decoder = net("decoder", init["decoder"])
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([8]).to_event(1))
            numpyro.sample("x", dist.Bernoulli(logits=mlp(decoder, z)).to_event(1), obs=x)

    def guide(x):
        mu, sd = net("enc_mu", init["enc_mu"]), net("enc_sd", init["enc_sd"])
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("z", dist.Normal(mlp(mu, x), jax.nn.softplus(mlp(sd, x))).to_event(1))

    svi = SVI(model, guide, numpyro.optim.Adam(lr), Trace_ELBO())

    @jax.jit
    def run(svi_state, key, data, length):
        def body(t, svi_state):
            rows = jax.random.randint(jax.random.fold_in(key, t), (batch_size,), 0, data.shape[0])
            return svi.update(svi_state, data[rows])[0]
        return jax.lax.fori_loop(0, length, body, svi_state)
    return svi, run


# ---- sbn.att ---------------------------------------------------------------------------------------

def sbn_step(opt, draws=4):
    """Score-function gradients with a leave-one-out baseline over `draws` draws per example,
    the KL to Bernoulli(1/2) in closed form."""
    def loss(params, key, x):
        logits = mlp(params["enc"], x)                                     # (B, 16)
        u = jax.random.uniform(key, (x.shape[0], draws, logits.shape[-1]))
        z = jax.lax.stop_gradient((u < jax.nn.sigmoid(logits)[:, None]).astype(jnp.float32))
        out = mlp(params["dec"], z)                                        # (B, draws, 64)
        f = -jnp.sum(x[:, None] * out - jax.nn.softplus(out), axis=-1)     # -log p(x | z)
        baseline = (jnp.sum(f, axis=1, keepdims=True) - f) / (draws - 1)
        log_q = jnp.sum(z * logits[:, None] - jax.nn.softplus(logits[:, None]), axis=-1)
        surrogate = jax.lax.stop_gradient(f - baseline) * (log_q - jax.lax.stop_gradient(log_q)) + f
        kl = jnp.sum(logits * jax.nn.sigmoid(logits) + jnp.log(2.0) - jax.nn.softplus(logits), axis=-1)
        return jnp.mean(jnp.mean(surrogate, axis=1) + kl)

    def step(state, key, x, t, length):
        params, opt_state = state
        grads = jax.grad(loss)(params, key, x)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state
    return step


# ---- gan_ring.att ----------------------------------------------------------------------------------

def gan_step(opt):
    """Simultaneous: the discriminator ascends the JS bound, the generator descends its
    nonsaturating loss; the noise drawn once for both."""
    def losses(gen, disc, real, eps):
        d_real, d_fake = mlp(disc, real)[:, 0], mlp(disc, mlp(gen, eps))[:, 0]
        base = jnp.log(4.0) + jnp.mean(jax.nn.log_sigmoid(d_real))
        return 0.5 * (base - jnp.mean(jax.nn.log_sigmoid(d_fake))), 0.5 * (base + jnp.mean(jax.nn.log_sigmoid(-d_fake)))

    def step(state, key, real, t, length):
        params, opts, average = state
        eps = jax.random.normal(key, real.shape)
        gg = jax.grad(lambda g: losses(g, params["disc"], real, eps)[0])(params["gen"])
        gd = jax.grad(lambda d: -losses(params["gen"], d, real, eps)[1])(params["disc"])
        ug, og = opt.update(gg, opts[0], params["gen"])
        ud, od = opt.update(gd, opts[1], params["disc"])
        params = {"gen": optax.apply_updates(params["gen"], ug), "disc": optax.apply_updates(params["disc"], ud)}
        return params, (og, od), tail_average(average, params, t, length)
    return step


# ---- hellinger_fit.att -----------------------------------------------------------------------------

def hellinger_step(opt):
    """The sampler mu + exp(log_sd) eps against a tanh critic v: T = 1 - exp(-v) on the data,
    f*(T) = expm1(v) on the samples; the critic ascends, the sampler descends."""
    def value(mu, log_sd, critic, x, eps):
        c = lambda u: mlp(critic, u[:, None], jnp.tanh)[:, 0]
        return jnp.mean(1 - jnp.exp(-c(x))) - jnp.mean(jnp.expm1(c(mu + jnp.exp(log_sd) * eps)))

    def step(state, key, x, t, length):
        params, opts, average = state
        eps = jax.random.normal(key, x.shape)
        g_theta = jax.grad(lambda th: value(th["mu"], th["log_sd"], params["critic"], x, eps))(
            {"mu": params["mu"], "log_sd": params["log_sd"]})
        g_critic = jax.grad(lambda c: -value(params["mu"], params["log_sd"], c, x, eps))(params["critic"])
        ut, ot = opt.update(g_theta, opts[0], {"mu": params["mu"], "log_sd": params["log_sd"]})
        uc, oc = opt.update(g_critic, opts[1], params["critic"])
        theta = optax.apply_updates({"mu": params["mu"], "log_sd": params["log_sd"]}, ut)
        params = {**theta, "critic": optax.apply_updates(params["critic"], uc)}
        return params, (ot, oc), tail_average(average, params, t, length)
    return step


# ---- es_zero_one.att -------------------------------------------------------------------------------

def es_step(opt, population=64, sigma=0.1):
    """OpenAI-ES on the 0-1 loss: antithetic pairs, centred ranks, Adam on the mean."""
    def centred_ranks(values):
        below = jnp.sum(values[None, :] < values[:, None], axis=1)
        ties = jnp.sum(values[None, :] == values[:, None], axis=1)
        return (below + 0.5 * (ties - 1)) / (values.shape[0] - 1) - 0.5

    def step(state, key, data, t, length):
        mu, opt_state = state
        X, y = data[:, :-1], data[:, -1]
        half = jax.random.normal(key, (population // 2, mu.shape[0]))
        eps = jnp.concatenate([half, -half])
        theta = mu + sigma * eps
        fitness = jnp.mean(jnp.where(y * (theta[:, :-1] @ X.T + theta[:, -1:]) <= 0, 1.0, 0.0), axis=1)
        grad = centred_ranks(fitness) @ eps / (population * sigma)
        updates, opt_state = opt.update(grad, opt_state, mu)
        return optax.apply_updates(mu, updates), opt_state
    return step


# ---- the benchmark ---------------------------------------------------------------------------------

def contenders(name: str, steps: int, compiled: dict | None = None):
    """(emitted fit, {hand-written loops}) for examples/NAME.att, each a blocking callable;
    `compiled`, where given, receives for each a function returning its loop's optimised HLO."""
    prog = compile_file(ROOT / "examples" / f"{name}.att")
    mod, data = prog.build(), prog.load_data()
    arrays = mod.as_data(data)
    key = jax.random.PRNGKey(3)
    params = mod.init(jax.random.PRNGKey(0))
    length = jnp.asarray(steps, jnp.int32)
    emitted = lambda: mod.fit(data, steps, 0, chunk=steps)
    hand = {}
    hand_args = {}
    if compiled is not None:
        compiled["emitted"] = lambda: mod.train_steps.lower(mod.initial_state(key, steps), key, arrays, length,
                                                            mod.BATCH).compile().as_text()
    if name == "vae":
        opt = optax.adam(1e-3)
        run = loop(vae_step(opt), 128)
        state = (params, opt.init(params))
        hand["by hand (fori_loop)"] = lambda: block(run(state, key, arrays["x"], length))
        hand_args["by hand (fori_loop)"] = (run, state, arrays["x"])
        svi, numpyro_run = numpyro_loop(params, 128, 1e-3)
        if svi is not None:
            svi_state = svi.init(jax.random.PRNGKey(0), arrays["x"][:128])
            hand["NumPyro SVI (fori_loop)"] = lambda: block(numpyro_run(svi_state, key, arrays["x"], length))
    elif name == "sbn":
        opt = optax.adam(1e-3)
        run = loop(sbn_step(opt), 128)
        state = (params, opt.init(params))
        hand["by hand (fori_loop)"] = lambda: block(run(state, key, arrays["x"], length))
        hand_args["by hand (fori_loop)"] = (run, state, arrays["x"])
    elif name == "gan_ring":
        opt = optax.adam(1e-4, b1=0.5)
        run = loop(gan_step(opt), 256)
        state = (params, (opt.init(params["gen"]), opt.init(params["disc"])), params)
        hand["by hand (fori_loop)"] = lambda: block(run(state, key, arrays["x"], length))
        hand_args["by hand (fori_loop)"] = (run, state, arrays["x"])
    elif name == "hellinger_fit":
        opt = optax.adam(1e-2)
        run = loop(hellinger_step(opt), 512)
        theta = {"mu": params["mu"], "log_sd": params["log_sd"]}
        state = (params, (opt.init(theta), opt.init(params["critic"])), params)
        hand["by hand (fori_loop)"] = lambda: block(run(state, key, arrays["x"], length))
        hand_args["by hand (fori_loop)"] = (run, state, arrays["x"])
    elif name == "es_zero_one":
        opt = optax.adam(0.05)
        run = loop(es_step(opt), None)
        mu = jnp.zeros(31)
        xy = jnp.concatenate([arrays["x"], arrays["y"][:, None]], axis=1)
        hand["by hand (fori_loop)"] = lambda: block(run((mu, opt.init(mu)), key, xy, length))
        hand_args["by hand (fori_loop)"] = (run, (mu, opt.init(mu)), xy)
    if compiled is not None:
        for who, (run, state, xs) in hand_args.items():
            compiled[who] = lambda run=run, state=state, xs=xs: run.lower(state, key, xs, length).compile().as_text()
    return emitted, hand


def samples(contenders, rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each call of each contender; calls interleave round by round, after `warmup`
    rounds that are not kept. The order within a round rotates from one round to the next, so
    that no contender always runs first (after the others' work) or last."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    times = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(mine: list[float], theirs: list[float]) -> float:
    """The median over rounds of mine / theirs within each round: the two calls of a round run
    back to back, under the same load, so a load that changes from round to round (other jobs
    on a shared machine) cancels in each ratio, where it does not in a ratio of medians."""
    return statistics.median(a / b for a, b in zip(mine, theirs))


def hlo_counts(text: str) -> dict[str, int]:
    """Instruction counts of an optimised HLO module: the instructions of the computations
    that run as such (the entry, loop bodies and conditions: `ops`, parameters, constants
    and tuples aside), the fusions among them, and the dots and reduces anywhere."""
    computations: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("%") or line.startswith("ENTRY %"):
            current = computations.setdefault(line.removeprefix("ENTRY ").split()[0], [])
        elif line.startswith("  ") and " = " in line and computations:
            current.append(line)
    called = set(re.findall(r"(?:calls|to_apply)=(%[\w.\-]+)", text))
    counts = {"ops": 0, "fusions": 0, "dots": 0, "reduces": 0}
    for name, lines in computations.items():
        for line in lines:
            op = re.search(r" = .*?([a-z][a-z0-9\-]*)\(", line).group(1)
            counts["dots"] += op in ("dot", "convolution")
            counts["reduces"] += op == "reduce"
            if name not in called and op not in ("parameter", "constant", "get-tuple-element", "tuple"):
                counts["ops"] += 1
                counts["fusions"] += op == "fusion"
    return counts


def hlo_table(names) -> str:
    """HLO counts of each contender's whole loop, side by side."""
    lines = ["| program | contender | ops | fusions | dots | reduces |", "|---|---|---|---|---|---|"]
    for name in names:
        compiled: dict = {}
        contenders(name, STEPS[name], compiled)
        for who, text in compiled.items():
            c = hlo_counts(text())
            lines.append(f"| {name}.att | {who} | {c['ops']} | {c['fusions']} | {c['dots']} | {c['reduces']} |")
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


STEPS = {"vae": 500, "sbn": 300, "gan_ring": 200, "es_zero_one": 1000, "hellinger_fit": 300}


def run(names=tuple(STEPS), scale: float = 1.0, rounds: int = 5) -> str:
    lines = ["## Training loops: the emitted fit against the same loop by hand", "",
             ("Whole loops of N steps from the same start, alternately, after a warm-up; medians of "
              f"{rounds} rounds (`python bench/loops.py`), the ratio of the fastest rounds (on a shared "
              "machine the least disturbed) and the median of the ratios within each round (paired)."), "",
             "| program | N | emitted fit ms/step | contender | contender ms/step | emitted / contender "
             "| ratio of the fastest rounds | paired ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for name in names:
        steps = max(10, int(STEPS[name] * scale))
        emitted, hand = contenders(name, steps)
        times = samples({"emitted": emitted, **hand}, rounds=rounds)
        median = {who: statistics.median(ts) for who, ts in times.items()}
        for who in hand:
            lines.append(f"| {name}.att | {steps} | {1e3 * median['emitted'] / steps:.3f} | {who} | "
                         f"{1e3 * median[who] / steps:.3f} | {median['emitted'] / median[who]:.3f} | "
                         f"{min(times['emitted']) / min(times[who]):.3f} | {paired_ratio(times['emitted'], times[who]):.3f} |")
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=list(STEPS), default=list(STEPS))
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every N")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--hlo", action="store_true", help="count the instructions of each loop's optimised HLO instead of timing")
    args = ap.parse_args()
    print(f"Machine: {machine()}, devices {jax.devices()}\nVersions: {versions()}\n", flush=True)
    print(hlo_table(args.only) if args.hlo else run(args.only, args.scale, args.rounds))
