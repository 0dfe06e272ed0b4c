"""Writes the emitted module: constants, the runtime library, losses, field, step, fit, main."""
from __future__ import annotations

import textwrap

from compiler import ir
from compiler.backend.lower import RUNTIME_PARTS, SITE_MARK, Emitter, Fn, block_sample, ident, key_literal, num
from compiler.backend.defaults import training
from compiler.ir.diagnostics import AttractorError
from compiler.backend.joint import joint_function
from compiler.ir.printer import show, shape_text
from compiler.analysis.constants import const_value

RUNTIME = '''
LOG_2PI = 1.8378770664093453
ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "softplus": jax.nn.softplus,
               "sigmoid": jax.nn.sigmoid, "elu": jax.nn.elu, "swish": jax.nn.swish}


def mlp_init(key, widths):
    """LeCun-normal weights, zero biases."""
    layers = []
    for m, n in zip(widths[:-1], widths[1:]):
        key, k = jax.random.split(key)
        layers.append({"w": jax.random.normal(k, (m, n)) / np.sqrt(m), "b": jnp.zeros((n,))})
    return layers


def mlp(layers, x, act):
    f = ACTIVATIONS[act]
    for layer in layers[:-1]:
        x = f(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


@jax.custom_jvp
def wright_omega(z):
    """W(e^z): the root w > 0 of w + log w = z, by Newton steps, which from these starts stay
    below the root and rise to it quadratically; e^z itself below z = -20."""
    zc = jnp.maximum(z, -20.0)
    w = jnp.where(zc > 1.0, zc - jnp.log(jnp.maximum(zc, 1.0)), jnp.log1p(jnp.exp(jnp.minimum(zc, 1.0))))
    for _ in range(6):
        w = w * (1.0 + zc - jnp.log(w)) / (1.0 + w)
    return jnp.where(z < -20.0, jnp.exp(z), w)


@wright_omega.defjvp
def _wright_omega_jvp(primals, tangents):
    w = wright_omega(primals[0])
    return w, tangents[0] * w / (1.0 + w)


def safe_norm(x):
    sq = jnp.sum(jnp.square(x))
    return jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)


def normal_logpdf(x, loc, scale):
    return -0.5 * jnp.square((x - loc) / scale) - jnp.log(scale) - 0.5 * LOG_2PI


def laplace_logpdf(x, loc, scale):
    return -jnp.abs(x - loc) / scale - jnp.log(2.0 * scale)


def lognormal_logpdf(x, loc, scale):
    return normal_logpdf(jnp.log(x), loc, scale) - jnp.log(x)


def uniform_logpdf(x, low, high):
    return jnp.where((x >= low) & (x <= high), -jnp.log(high - low), -jnp.inf)


def bernoulli_logits_logpmf(x, logits):
    return x * logits - jax.nn.softplus(logits)


def bernoulli_probs_logpmf(x, probs):
    return x * jnp.log(probs) + (1.0 - x) * jnp.log1p(-probs)


def categorical_logpmf(x, logits):
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, x.astype(jnp.int32)[..., None], axis=-1)[..., 0]


def _shape(shape, *params):
    return jnp.broadcast_shapes(shape, *(jnp.shape(p) for p in params))


def normal_sample(key, loc, scale, shape):
    return loc + scale * jax.random.normal(key, _shape(shape, loc, scale))


def laplace_sample(key, loc, scale, shape):
    return loc + scale * jax.random.laplace(key, _shape(shape, loc, scale))


def lognormal_sample(key, loc, scale, shape):
    return jnp.exp(normal_sample(key, loc, scale, shape))


def uniform_sample(key, low, high, shape):
    return low + (high - low) * jax.random.uniform(key, _shape(shape, low, high))


def bernoulli_logits_sample(key, logits, shape):
    return jax.random.bernoulli(key, jax.nn.sigmoid(logits), _shape(shape, logits)).astype(jnp.float32)


def bernoulli_probs_sample(key, probs, shape):
    return jax.random.bernoulli(key, probs, _shape(shape, probs)).astype(jnp.float32)


def categorical_sample(key, logits, shape):
    return jax.random.categorical(key, logits, shape=_shape(shape, logits[..., 0])).astype(jnp.float32)


def soft_threshold(x, t):
    """prox of t*norm1: sign(x) max(|x| - t, 0)."""
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - t, 0.0)


PROX_MAPS = {
    "norm1": soft_threshold,
    "sumsq": lambda x, t: x / (1.0 + 2.0 * t),
    "nonneg": lambda x, t: jnp.maximum(x, 0.0),
}

# the terms the proximal maps apply, as values (an indicator is 0 where the map keeps x)
PROX_TERMS = {
    "norm1": lambda x: jnp.sum(jnp.abs(x)),
    "sumsq": lambda x: jnp.sum(jnp.square(x)),
    "nonneg": lambda x: 0.0,
}
'''

DYNAMICS_CODE = {
    "simultaneous": '''
def direction(params, key, batch):
    """Simultaneous dynamics: every player follows its own gradient field."""
    return field_and_losses(params, key, batch)
''',
    "extragradient": '''
def direction(params, key, batch):
    """Extragradient: extrapolate a step of size LR along the field, take the field there."""
    v, values = field_and_losses(params, key, batch)
    look = {**params, **jax.tree.map(lambda x, d: x + LR * d, {k: params[k] for k in v}, v)}
    v2, _ = field_and_losses(look, key, batch)
    return v2, values
''',
    "sga": '''
def direction(params, key, batch):
    """Symplectic gradient adjustment: xi + lambda * A^T xi, A the antisymmetric part of J."""
    v, values = field_and_losses(params, key, batch)
    moving = {k: params[k] for k in v}
    xi_fn = lambda ps: negate(field_and_losses({**params, **ps}, key, batch)[0])
    xi = negate(v)
    _, jxi = jax.jvp(xi_fn, (moving,), (xi,))
    _, vjp = jax.vjp(xi_fn, moving)
    (jtxi,) = vjp(xi)
    adjusted = jax.tree.map(lambda a, b, c: a + SGA_LAMBDA * 0.5 * (b - c), xi, jtxi, jxi)
    return negate(adjusted), values
''',
    "consensus": '''
def direction(params, key, batch):
    """Consensus optimisation: xi + gamma * J^T xi, the gradient of |xi|^2 / 2 added."""
    v, values = field_and_losses(params, key, batch)
    moving = {k: params[k] for k in v}
    xi_fn = lambda ps: negate(field_and_losses({**params, **ps}, key, batch)[0])
    xi = negate(v)
    _, vjp = jax.vjp(xi_fn, moving)
    (jtxi,) = vjp(xi)
    adjusted = jax.tree.map(lambda a, b: a + CONSENSUS_GAMMA * b, xi, jtxi)
    return negate(adjusted), values
''',
}


def _tuple(items) -> str:
    items = list(items)
    return "(" + "".join(f"{i}, " for i in items) + ")" if items else "()"


def _text_literal(text: str) -> str:
    """A user string (a file path) as code points: no user text reaches the source."""
    return f"text_of({_tuple(str(ord(c)) for c in text)})"


class ModuleWriter:
    def __init__(self, program: ir.Program, title: str, dynamics: str | None, program_dir: str | None = None):
        self.program = program
        self.program_dir = program_dir
        self.title = ident(title)
        self.dynamics = dynamics or program.train.option("dynamics", "simultaneous")
        self.em = Emitter(program)

    # ---- pieces ------------------------------------------------------------------------
    def constants(self) -> list[str]:
        p, t = self.program, self.program.train
        data = p.data_vars
        players = {pl.name: pl for pl in p.players}
        tr = training(p)
        name, kwargs = tr.optimizer
        kwargs = dict(kwargs)
        lr = kwargs.pop("lr", 1e-3)
        opt_args = ", ".join([f"learning_rate=LR"] + [f"{ident(k)}={num(v) if k != 'nesterov' else bool(v)}" for k, v in kwargs.items()])
        steps = tr.steps
        lines = [
            f"DATA_VARS = {_tuple(key_literal(n) for n, _ in data)}",
            "DATA_SHAPES = {" + ", ".join(f"{key_literal(n)}: {_tuple(map(str, s))}" for n, s in data) + "}",
            "PLAYERS = {" + ", ".join(f"{key_literal(pl.name)}: {_tuple(key_literal(x) for x in pl.params)}" for pl in p.players) + "}",
            "SENSES = {" + ", ".join(f'{key_literal(pl.name)}: "{pl.sense}"' for pl in p.players) + "}",
            "MOVING = tuple(p for p in PLAYERS if PLAYERS[p])",
            "PROX = {" + ", ".join(f"{key_literal(param)}: (\"{kind}\", {num(const_value(w, p))})"
                                    for pl in p.players for param, kind, w in pl.prox) + "}",
            f"STEPS = {int(steps)}",
            f"BATCH = {t.option('batch') if t.option('batch') else None}",
            f"LR = {num(lr)}",
            f"SGA_LAMBDA = {num(p.aux('sga_lambda', 1.0))}",
            f"CONSENSUS_GAMMA = {num(p.aux('consensus_gamma', 0.1))}",
            f"DYNAMICS = \"{ident(self.dynamics)}\"",
            f"LIPSCHITZ_STEP = {tr.lipschitz}   # {tr.reason}",
            f"BACKTRACK = {tr.backtrack}",
        ]
        cosine = tr.schedule == "cosine"
        lines.append(f"COSINE = {cosine}   # the step decays from LR to 0 over the steps run (cosine)")
        lines.append(f"TAIL_AVERAGE = len(MOVING) > 1 or {p.objective.sense == 'estimate'}"
                     "   # a game or an estimate: fit returns the mean iterate of the last tenth of the run")
        optimizer = f"optax.{ident(name)}"
        lines.append(f"OPTIMIZER = {f'optax.inject_hyperparams({optimizer})' if tr.lipschitz or cosine else optimizer}({opt_args})")
        src = p.data_source
        if src is not None:
            args = ", ".join(_text_literal(a) if isinstance(a, str) else num(a) for a in src.args)
            kws = ", ".join(f"{key_literal(k)}: {_text_literal(v) if isinstance(v, str) else num(v)}" for k, v in src.kwargs)
            lines.append(f"SOURCE = (\"{ident(src.name)}\", {_tuple([args] if args else [])}, {{{kws}}})")
            lines.append(f"PROGRAM_DIR = {_text_literal(self.program_dir) if self.program_dir else None}   "
                         "# data paths are relative to the program file")
        else:
            lines.append("SOURCE = None")
        return lines

    def init(self) -> list[str]:
        out = ["def init(key):", '    """Initial parameters: zeros (or the declared value) and LeCun-normal nets."""', "    params = {}"]
        for i, d in enumerate(self.program.decls):
            if isinstance(d, ir.Param):
                value = const_value(d.init, self.program) if d.init is not None else 0.0
                shape = _tuple(map(str, d.shape))
                out.append(f"    params[{key_literal(d.name)}] = jnp.full({shape}, {num(value)}, jnp.float32)")
            elif isinstance(d, ir.Net):
                out.append(f"    params[{key_literal(d.name)}] = mlp_init(jax.random.fold_in(key, {i}), {_tuple(map(str, d.widths))})")
        out.append("    return params")
        return out

    def function(self, name: str, node: ir.Node, doc: str) -> list[str]:
        fn = Fn(self.em, 1, {}, "key")
        fn.emit(f"return {self.em.lower(node, fn)}")
        return [f"def {name}(params, key, batch):", f'    """{doc}"""'] + fn.body()

    def losses(self) -> list[str]:
        out: list[str] = []
        for pl in self.program.players:
            out += self.function(f"loss_{ident(pl.name)}", pl.loss, f"{pl.sense}: {show(pl.loss)}".replace('"', "'").replace("\\", "/")) + ["", ""]
        out.append("LOSSES = {" + ", ".join(f"{key_literal(pl.name)}: loss_{ident(pl.name)}" for pl in self.program.players) + "}")
        return out

    def objective(self) -> list[str]:
        """`OBJECTIVE`: the main player's loss, or where it trains on a surrogate (a
        nonsaturating generator loss), the same loss with the bound its opponent keeps."""
        main = self.program.players[0]
        if not any(isinstance(n, ir.Surrogate) for n in main.loss.walk()):
            return [f"OBJECTIVE = loss_{ident(main.name)}"]
        self.em.value_mode = True
        try:
            out = self.function("objective_value", main.loss, "The objective's value: each surrogate loss replaced by the bound its opponent keeps.")
        finally:
            self.em.value_mode = False
        return out + ["", "", "OBJECTIVE = objective_value"]

    def joint(self) -> list[str]:
        """With several moving players, `joint_losses` (compiler.backend.joint): the field in one pass."""
        players = self.program.players
        if sum(1 for pl in players if pl.params) < 2:
            return ["JOINT = None   # one moving player: the field is the gradient of its loss"]
        return joint_function(self.em, players) + ["", "", "JOINT = joint_losses"]

    def reports(self) -> list[str]:
        out: list[str] = []
        for r in self.program.reports:
            out += self.function(f"report_{ident(r.name)}", r.expr, show(r.expr)) + ["", ""]
        out.append("REPORTS = {" + ", ".join(f"{key_literal(r.name)}: report_{ident(r.name)}" for r in self.program.reports) + "}")
        return out

    def updates(self) -> list[str]:
        """Parameters rules set in closed form (auxiliary ("update", (param, value))): exact
        minimisers of a player's loss, schedules; applied in order after every step."""
        out: list[str] = []
        updates = [v for k, v in self.program.auxiliary if k == "update"]
        for param, value in updates:
            out += self.function(f"update_{ident(param)}", value, f"{param} <- {show(value)}".replace('"', "'").replace("\\", "/")) + ["", ""]
        out.append("UPDATES = " + _tuple(f"({key_literal(param)}, update_{ident(param)})" for param, _ in updates))
        return out

    def sampler(self) -> list[str]:
        samplers = [b for b in self.program.of_type(ir.Block) if b.kind == "sampler"]
        if not samplers:
            return []
        b = samplers[0]
        data = [n for n, _ in self.program.data_vars if b.line(n)] or [b.lines[-1].name]
        fn = Fn(self.em, 2, {}, "key")
        drawn = block_sample(self.em, ir.Sample(b.name, tuple(data)), fn)
        fn.emit("return " + ", ".join(drawn[n] for n in data))
        return (["def sample(params, key, n):", f'    """n draws of sampler {ident(b.name)}."""', "    def one(key):"]
                + fn.body() + ["    return jax.vmap(one)(jax.random.split(key, n))"])

    def source(self) -> str:
        p = self.program
        header = [
            f'"""Emitted by attractor from {self.title}.att: the vector field and its training loop.',
            "",
            "Players:",
        ] + [f"  {pl.name} ({pl.sense} over {', '.join(pl.params) or 'nothing'}): {show(pl.loss)}" for pl in p.players] + [
            '"""',
            "import argparse",
            "import json",
            "import sys",
            "import time",
            "from functools import partial",
            "",
            "import jax",
            "import jax.numpy as jnp",
            "import numpy as np",
            "import optax",
            "",
            "",
            "def text_of(codes):",
            '    """Text stored as code points (file names: no user text in the source)."""',
            '    return "".join(map(chr, codes))',
            "",
            "",
        ]
        main_player = p.players[0].name
        extras = [RUNTIME_PARTS[k] for k in sorted(RUNTIME_PARTS)]
        body = (header + self.constants() + [RUNTIME] + extras + self.init() + ["", ""] + self.losses() + ["", ""] + self.joint() + ["", ""] + self.objective() + ["", ""]
                + self.updates() + ["", ""] + self.reports() + ["", ""] + self.sampler() + ["", ""])
        body.append(TRAINING.replace("MAIN_PLAYER", key_literal(main_player))
                    .replace("IS_ESTIMATE", str(p.objective.sense == "estimate")))
        body.append(DYNAMICS_CODE.get(self.dynamics, "") if self.dynamics != "alternating" else "")
        body.append(STEP_CODE["alternating" if self.dynamics == "alternating" else "default"])
        body.append(MAIN)
        text = "\n".join(body)
        if SITE_MARK in text:
            raise AttractorError("internal: a random site was left unresolved in the emitted module")
        return text


TRAINING = '''
# Data parallelism: a mesh over every local device; batches are split along it, parameters
# and optimiser state are replicated (multi-host: call jax.distributed.initialize() first).
MESH = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
BATCH_SHARDING = jax.sharding.NamedSharding(MESH, jax.sharding.PartitionSpec("data"))
REPLICATED = jax.sharding.NamedSharding(MESH, jax.sharding.PartitionSpec())


def shard_batch(batch):
    """Split every data array of the batch over the devices (when its size allows)."""
    n = len(MESH.devices.flat)
    return {k: jax.lax.with_sharding_constraint(v, BATCH_SHARDING) if k in DATA_VARS and v.shape[0] % n == 0 else v
            for k, v in batch.items()}


def own(tree, player):
    return {k: tree[k] for k in PLAYERS[player]}


def negate(tree):
    return jax.tree.map(lambda x: -x, tree)


def scale_tree(tree, c):
    return jax.tree.map(lambda x: c * x, tree)


def losses(params, key, batch):
    """Every player's loss."""
    return {p: f(params, key, batch) for p, f in LOSSES.items()}


def player_field(player, params, key, batch):
    """-grad (min) or +grad (max) of a player's loss in its own parameters, and the loss."""
    def f(mine):
        return LOSSES[player]({**params, **mine}, key, batch)
    value, grad = jax.value_and_grad(f)(own(params, player))
    sign = -1.0 if SENSES[player] == "min" else 1.0
    return jax.tree.map(lambda g: sign * g, grad), value


def field_and_losses(params, key, batch):
    """The field and every player's loss. With several moving players, one gradient of
    sum_p sign_p L_p(ctx[p]) through JOINT, ctx[p] the parameters with player p's own ones as
    the variables: each player differentiates its loss in its own parameters only, the others
    enter at their values (still traced, so Jacobians of the field keep the cross terms)."""
    if JOINT is None:
        v, values = {}, {}
        for p in PLAYERS:
            if PLAYERS[p]:
                vp, values[p] = player_field(p, params, key, batch)
                v.update(vp)
            else:
                values[p] = LOSSES[p](params, key, batch)
        return v, values

    def signed_total(mine):
        values = JOINT({p: {**params, **mine[p]} if p in mine else params for p in PLAYERS}, key, batch)
        return sum(values[p] if SENSES[p] == "min" else -values[p] for p in mine), values
    grads, values = jax.grad(signed_total, has_aux=True)({p: own(params, p) for p in MOVING})
    return {k: g for p in MOVING for k, g in negate(grads[p]).items()}, values


def field(params, key, batch):
    """The vector field v = (-grad_theta1 L1, +-grad_theta2 L2, ...) over all moving parameters."""
    return field_and_losses(params, key, batch)[0]


def init_state(params, total=STEPS):
    """Parameters, optimiser states, the step number and the number of steps of the run
    (schedules follow it)."""
    return {"params": params, "opt": {p: OPTIMIZER.init(own(params, p)) for p in MOVING},
            "step": jnp.zeros((), jnp.int32), "total": jnp.asarray(total, jnp.int32),
            **({"average": params} if TAIL_AVERAGE else {})}


def tail_average(state):
    """Polyak-Ruppert tail averaging for games and estimates: `average` follows the iterate
    until the last tenth of the run, then is the running mean of the iterates since. At a
    constant step, simultaneous play circles or hovers about a stable equilibrium (the last
    iterate of a bilinear game never converges), and a critic hovers about its optimum; the
    mean of the iterates does not."""
    if not TAIL_AVERAGE:
        return state
    n = state["step"] - (state["total"] - state["total"] // 10)
    weight = 1.0 / jnp.maximum(n, 1).astype(jnp.float32)
    average = jax.tree.map(lambda a, x: a + weight * (x - a), state["average"], state["params"])
    return {**state, "average": average}


def apply_prox(new, step_size):
    for name, (kind, weight) in PROX.items():
        if name in new:
            new[name] = PROX_MAPS[kind](new[name], step_size * weight)
    return new


def update_player(state, player, v, key, batch):
    """One optimiser step of `player` along its field, then its proximal maps."""
    mine = own(state["params"], player)
    opt = state["opt"][player]
    if COSINE:
        opt = opt._replace(hyperparams={**opt.hyperparams, "learning_rate": cosine_lr(state["step"], state["total"])})
    updates, opt = OPTIMIZER.update(negate(own(v, player)), opt, mine)
    new = apply_prox(dict(optax.apply_updates(mine, updates)), taken_lr(opt))
    if BACKTRACK:
        new, opt = backtrack(state["params"], player, mine, new, opt, key, batch)
    return {**state, "params": {**state["params"], **new}, "opt": {**state["opt"], player: opt}}


def backtrack(params, player, mine, new, opt, key, batch):
    """Keep a step of 1/L only if it does not raise the objective (with its proximal terms);
    otherwise stay and halve the step: L estimated at the start may grow along the way."""
    sign = 1.0 if SENSES[player] == "min" else -1.0

    def value(ps):
        full = {**params, **ps}
        return sign * LOSSES[player](full, key, batch) + sum(
            weight * PROX_TERMS[kind](full[name]) for name, (kind, weight) in PROX.items() if name in ps)
    before, after = value(mine), value(new)
    keep = jnp.isfinite(after) & (after <= before + 1e-6 * jnp.abs(before))
    new = jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, mine)
    lr = opt.hyperparams["learning_rate"]
    opt = opt._replace(hyperparams={**opt.hyperparams, "learning_rate": jnp.where(keep, lr, 0.5 * lr)})
    return new, opt


def closed_form_updates(state, key, batch):
    """UPDATES after the players' steps, in order, each seeing the parameters set before it."""
    params = dict(state["params"])
    for name, f in UPDATES:
        params[name] = jnp.broadcast_to(jnp.asarray(f(params, key, batch), params[name].dtype), params[name].shape)
    return {**state, "params": params}


def cosine_lr(step, total):
    """LR decayed to 0 along half a cosine over the `total` steps of the run."""
    frac = jnp.clip(step / jnp.maximum(total, 1), 0.0, 1.0)
    return jnp.asarray(LR * 0.5 * (1.0 + jnp.cos(jnp.pi * frac)), jnp.float32)


def taken_lr(opt):
    """The size of the step just taken: set from the data (LIPSCHITZ_STEP) or the schedule, else LR."""
    return opt.hyperparams["learning_rate"] if LIPSCHITZ_STEP or COSINE else LR


def lipschitz_step(state, data, iters=100):
    """Every player's step set to 1/L, L the largest eigenvalue of the Hessian of its loss at
    the current parameters over the whole data set (power iteration on Hessian-vector products)."""
    batch, key, params = full_batch(data), jax.random.PRNGKey(0), state["params"]
    opts = dict(state["opt"])
    for p in MOVING:
        grad = jax.grad(lambda mine: LOSSES[p]({**params, **mine}, key, batch))
        mine = own(params, p)
        hvp = lambda v: jax.jvp(grad, (mine,), (v,))[1]
        norm = lambda tree: jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))

        def power(_, v):
            hv = hvp(v)
            return scale_tree(hv, 1.0 / jnp.maximum(norm(hv), 1e-30))
        start = jax.tree.map(lambda x: jax.random.normal(key, jnp.shape(x)), mine)
        top = jax.jit(lambda v: jax.lax.fori_loop(0, iters, power, v))(start)
        lipschitz = norm(hvp(top)) / jnp.maximum(norm(top), 1e-30)
        opts[p] = opts[p]._replace(hyperparams={**opts[p].hyperparams, "learning_rate": 1.0 / jnp.maximum(lipschitz, 1e-6)})
    return {**state, "opt": opts}


def minibatch(data, key, size):
    n = data[DATA_VARS[0]].shape[0] if DATA_VARS else 1
    if size is None:
        return {**data, "#n": jnp.asarray(n, jnp.float32)}
    idx = jax.random.randint(key, (size,), 0, n)
    return {**{k: data[k][idx] for k in DATA_VARS}, "#n": jnp.asarray(n, jnp.float32)}


@partial(jax.jit, static_argnums=(4,))
def train_steps(state, key, data, length, batch_size):
    """`length` steps of the dynamics (a traced count: one compilation serves every length),
    and each player's loss averaged over them. Step t draws from fold_in(key, t), so a run
    does not depend on how it is cut into calls."""
    def body(_, carry):
        state, total = carry
        kb, ks = jax.random.split(jax.random.fold_in(key, state["step"]))
        state, values = step(state, ks, minibatch(data, kb, batch_size))
        state = tail_average(state)
        return state, jax.tree.map(lambda a, b: a + jnp.mean(b), total, values)
    zeros = {p: jnp.zeros((), jnp.float32) for p in PLAYERS}
    state, total = jax.lax.fori_loop(0, length, body, (state, zeros))
    return state, jax.tree.map(lambda t: t / jnp.maximum(length, 1), total)


def as_data(data):
    return {k: jnp.asarray(np.asarray(data[k], np.float32)) for k in DATA_VARS}


def fit(data, steps=STEPS, seed=0, batch_size=BATCH, callback=None, chunk=None, seconds_per_call=0.25):
    """Train from init(seed) for `steps` steps; returns (params, history).

    The steps run on the device in calls of `chunk` steps, or (chunk=None) of as many as take
    about `seconds_per_call`, so that the host (progress, history) costs nothing per step.
    """
    data = as_data(data)
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)
    state = jax.device_put(init_state(init(k_init), steps), REPLICATED)
    if LIPSCHITZ_STEP:
        state = lipschitz_step(state, data)
    history, done, started, length = [], 0, time.perf_counter(), chunk or 1
    while done < steps:
        length = min(length, steps - done)
        t = time.perf_counter()
        state, values = train_steps(state, key, data, jnp.asarray(length, jnp.int32), batch_size)
        record = {p: float(v) for p, v in values.items()}
        elapsed = time.perf_counter() - t
        done += length
        history.append({"step": done, "seconds": time.perf_counter() - started, **record})
        if callback is not None:
            callback(done, steps, record, state["params"])
        if chunk is None:
            length = max(1, min(10 * length, int(length * seconds_per_call / max(elapsed, 1e-6))))
    return state["average" if TAIL_AVERAGE else "params"], history


def full_batch(data):
    return minibatch(as_data(data), None, None)


def objective(params, key, data):
    """The compiled objective at `params`, over the whole data set, with the terms its
    proximal maps apply."""
    value = OBJECTIVE(params, key, full_batch(data))
    return float(value + sum(weight * PROX_TERMS[kind](params[name]) for name, (kind, weight) in PROX.items()
                             if name in PLAYERS[MAIN_PLAYER]))


def reports(params, key, data):
    """Each report at `params`, over the whole data set."""
    batch = full_batch(data)
    return {name: float(f(params, key, batch)) for name, f in REPORTS.items()}


def summary(params, data, steps, seconds, seed=0):
    key = jax.random.PRNGKey(seed + 1)
    value = objective(params, key, data)
    return {"steps": steps, "seconds_per_step": seconds / max(steps, 1), "objective": value,
            "reports": reports(params, key, data), "estimate": value if IS_ESTIMATE else None}
'''

STEP_CODE = {
    "default": '''
@jax.jit
def step(state, key, batch):
    """One step of the dynamics: (state, key, batch) -> (state, losses)."""
    batch = {**shard_batch(batch), "#step": state["step"], "#total": state["total"]}
    v, values = direction(state["params"], key, batch)
    for p in MOVING:
        state = update_player(state, p, v, key, batch)
    state = closed_form_updates(state, key, batch)
    return {**state, "step": state["step"] + 1}, values
''',
    "alternating": '''
@jax.jit
def step(state, key, batch):
    """Alternating dynamics: players move in turn, each seeing the others' new parameters."""
    batch = {**shard_batch(batch), "#step": state["step"], "#total": state["total"]}
    values = {}
    for p in PLAYERS:
        if PLAYERS[p]:
            v, values[p] = player_field(p, state["params"], key, batch)
            state = update_player(state, p, v, key, batch)
        else:
            values[p] = LOSSES[p](state["params"], key, batch)
    state = closed_form_updates(state, key, batch)
    return {**state, "step": state["step"] + 1}, values
''',
}

MAIN = '''
def load_data():
    from pathlib import Path
    from compiler.data.datasets import load
    if SOURCE is None:
        return {}
    name, args, kwargs = SOURCE
    variables = [(v, DATA_SHAPES[v]) for v in DATA_VARS]
    here = Path(PROGRAM_DIR) if PROGRAM_DIR and Path(PROGRAM_DIR).is_dir() else Path(__file__).resolve().parent
    return load(name, args, kwargs, variables, here)


def progress_bar(done, total, record, params):
    width = 30
    filled = int(width * done / max(total, 1))
    text = " ".join(f"{k}={v:.4g}" for k, v in record.items())
    sys.stderr.write(f"\\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {text}")
    sys.stderr.flush()
    if done >= total:
        sys.stderr.write("\\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from compiler.data.datasets import DatasetError
    try:
        data = load_data()
    except DatasetError as e:
        sys.exit(f"error: {e}")
    started = time.perf_counter()
    params, history = fit(data, args.steps, args.seed, callback=None if args.json else progress_bar)
    result = summary(params, data, args.steps, time.perf_counter() - started, args.seed)
    print(json.dumps(result) if args.json else result)


if __name__ == "__main__":
    main()
'''


def emit_module(program: ir.Program, title: str = "program", dynamics: str | None = None,
                program_dir: str | None = None) -> str:
    """The emitted module; `program_dir` (the program file's folder) anchors relative data paths."""
    return ModuleWriter(program, title, dynamics, program_dir).source()
