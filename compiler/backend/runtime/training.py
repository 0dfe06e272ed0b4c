"""The training loop of an emitted module: the vector field, optimiser steps, `fit`, `summary`.

Parameters are a dict name -> array; player p moves PLAYERS[p]. The field is
v = (-grad_theta1 L1, +-grad_theta2 L2, ...): minus the gradient for a minimising player, plus
for a maximising one; an optimiser step of each moving player along its part of v is one step of
the dynamics. `train_steps` runs many steps as one jitted `fori_loop`; `fit` calls it in chunks.
"""
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from compiler.backend.runtime.program import (
    AS_WRITTEN,
    AS_WRITTEN_DRAWS,
    AS_WRITTEN_ESTIMATOR,
    AS_WRITTEN_REASON,
    BACKTRACK,
    BATCH,
    COSINE,
    DATA_SHAPES,
    DATA_VARS,
    DETERMINISTIC,
    EXACT_FIELD,
    IS_ESTIMATE,
    JOINT,
    LIPSCHITZ_STEP,
    LOSSES,
    LR,
    MAIN_PLAYER,
    MOVING,
    OBJECTIVE,
    OBJECTIVE_DRAWS,
    OPTIMIZER,
    PLAYERS,
    PROX,
    REPORT_DRAWS,
    REPORTS,
    SENSES,
    STEPS,
    TAIL_AVERAGE,
    TOLERANCE,
    UPDATES,
    init,
    step,
)
from compiler.backend.runtime.prox import PROX_MAPS, PROX_TERMS
from compiler.backend.runtime.verdict import HISTORY_POINTS, TAIL, nonfinite, settled, verdict

# Data parallelism: a mesh over every local device; batches are split along it, parameters
# and optimiser state are replicated (multi-host: call jax.distributed.initialize() first).
MESH = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
BATCH_SHARDING = jax.sharding.NamedSharding(MESH, jax.sharding.PartitionSpec("data"))
REPLICATED = jax.sharding.NamedSharding(MESH, jax.sharding.PartitionSpec())
MAX_STEPS = 2**31 - 1   # step counts are int32 on the device
EVALUATION_KEYS = 8     # a value that draws is averaged over at least this many keys, with its standard error
# ... and, where those are fewer than SMALL_SAMPLE example-draws, over more keys (vmapped chunks)
# while its standard error is above EVALUATION_RTOL (1 + |value|), up to EVALUATION_DRAWS
# example-draws in all: a program with few examples or none (E[z ~ Normal(m, 1)] f(z) alone) is not
# judged on 8 draws
EVALUATION_RTOL = 1e-3
EVALUATION_DRAWS = 2**16
SMALL_SAMPLE = 2**10    # values from fewer example-draws than this are extended (more_draws)
# Values over the data (objective, as_written, reports): a data set of more than EXACT_DATA_LIMIT
# examples is evaluated in batches of EVALUATION_BATCH, every batch (exact) up to EXACT_BATCHES of
# them, beyond that a random sample of SAMPLED_BATCHES batches with its standard error over batches.
EXACT_DATA_LIMIT = 100_000
EVALUATION_BATCH = 10_000
EXACT_BATCHES = 100
SAMPLED_BATCHES = 32


def shard_batch(batch):
    """Split every data array of the batch over the devices (when its size allows)."""
    n = len(MESH.devices.flat)
    return {k: jax.lax.with_sharding_constraint(v, BATCH_SHARDING) if k in DATA_VARS and v.shape[0] % n == 0 else v
            for k, v in batch.items()}


def own(tree, player):
    """The entries of `tree` for the parameters `player` moves."""
    return {k: tree[k] for k in PLAYERS[player]}


def negate(tree):
    return jax.tree.map(lambda x: -x, tree)


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


def separate_field_and_losses(params, key, batch):
    """The field, each moving player's gradient taken of its own loss, and every loss."""
    v, values = {}, {}
    for p in PLAYERS:
        if PLAYERS[p]:
            vp, values[p] = player_field(p, params, key, batch)
            v.update(vp)
        else:
            values[p] = LOSSES[p](params, key, batch)
    return v, values


def joint_field_and_losses(params, key, batch):
    """One gradient of sum_p sign_p L_p(ctx[p]) through JOINT, ctx[p] the parameters with player
    p's own ones as the variables: each player differentiates its loss in its own parameters
    only, the others enter at their values (still traced, so Jacobians of the field keep the
    cross terms)."""
    def signed_total(mine):
        values = JOINT({p: {**params, **mine[p]} if p in mine else params for p in PLAYERS}, key, batch)
        return sum(values[p] if SENSES[p] == "min" else -values[p] for p in mine), values
    grads, values = jax.grad(signed_total, has_aux=True)({p: own(params, p) for p in MOVING})
    return {k: g for p in MOVING for k, g in negate(grads[p]).items()}, values


def field_and_losses(params, key, batch):
    """The field and every player's loss: with several moving players through JOINT (the draws
    they share made once), else each player's gradient of its own loss."""
    if JOINT is None:
        return separate_field_and_losses(params, key, batch)
    else:
        return joint_field_and_losses(params, key, batch)


def field(params, key, batch):
    """The vector field v = (-grad_theta1 L1, +-grad_theta2 L2, ...) over all moving parameters."""
    return field_and_losses(params, key, batch)[0]


def init_state(params, total=STEPS):
    """Parameters, optimiser states, the step number and the number of steps of the run
    (schedules follow it); in a game or an estimate, the tail average of the iterates."""
    return {"params": params, "opt": {p: OPTIMIZER.init(own(params, p)) for p in MOVING},
            "step": jnp.zeros((), jnp.int32), "total": jnp.asarray(total, jnp.int32),
            **({"average": params} if TAIL_AVERAGE else {})}


@partial(jax.jit, out_shardings=REPLICATED)
def initial_state(key, total):
    """init_state(init(key), total) as one compiled call, replicated over the devices: drawn
    eagerly and then placed, every net's weights and every optimiser moment would cost a dispatch
    of its own on each `fit` (about 6 ms for a VAE, as much as 15 of its steps on a CPU)."""
    return init_state(init(key), total)


def tail_average(state):
    """Polyak-Ruppert tail averaging for games and estimates: `average` follows the iterate
    until the last tenth of the run, then is the running mean of the iterates since. At a
    constant step, simultaneous play circles or hovers about a stable equilibrium (the last
    iterate of a bilinear game never converges), and a critic hovers about its optimum; the
    mean of the iterates does not."""
    n = state["step"] - (state["total"] - state["total"] // 10)
    weight = 1.0 / jnp.maximum(n, 1).astype(jnp.float32)
    average = jax.tree.map(lambda a, x: a + weight * (x - a), state["average"], state["params"])
    return {**state, "average": average}


def apply_prox(new, step_size):
    """x <- prox_{step_size * weight * g}(x) for each parameter with a proximal term g."""
    if PROX:   # folded away in a program without proximal terms, with the maps
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
    new = dict(optax.apply_updates(mine, updates))
    if PROX:
        new = apply_prox(new, taken_lr(opt))
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


def tree_norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def largest_curvature(loss, mine, key, iters):
    """The largest eigenvalue of the Hessian of `loss` at `mine`, by power iteration on
    Hessian-vector products."""
    grad = jax.grad(loss)

    def hvp(v):
        return jax.jvp(grad, (mine,), (v,))[1]

    def power(_, v):
        hv = hvp(v)
        return jax.tree.map(lambda x: x / jnp.maximum(tree_norm(hv), 1e-30), hv)
    start = jax.tree.map(lambda x: jax.random.normal(key, jnp.shape(x)), mine)
    top = jax.jit(lambda v: jax.lax.fori_loop(0, iters, power, v))(start)
    return tree_norm(hvp(top)) / jnp.maximum(tree_norm(top), 1e-30)


def lipschitz_step(state, data, iters=100):
    """Every player's step set to 1/L, L the largest eigenvalue of the Hessian of its loss at
    the current parameters over the whole data set."""
    batch, key, params = full_batch(data), jax.random.PRNGKey(0), state["params"]
    opts = dict(state["opt"])
    for p in MOVING:
        loss = partial(player_loss, p, params, key, batch)
        lipschitz = largest_curvature(loss, own(params, p), key, iters)
        step_size = 1.0 / jnp.maximum(lipschitz, 1e-6)
        opts[p] = opts[p]._replace(hyperparams={**opts[p].hyperparams, "learning_rate": step_size})
    return {**state, "opt": opts}


def player_loss(player, params, key, batch, mine):
    """`player`'s loss as a function of its own parameters `mine`."""
    return LOSSES[player]({**params, **mine}, key, batch)


def minibatch(data, key, size):
    """`size` examples drawn uniformly with replacement (size None: the whole data set), and
    the data set's size `#n` (a sum over the data is n times the mean)."""
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
        if TAIL_AVERAGE:
            state = tail_average(state)
        return state, jax.tree.map(lambda a, b: a + jnp.mean(b), total, values)
    zeros = {p: jnp.zeros((), jnp.float32) for p in PLAYERS}
    state, total = jax.lax.fori_loop(0, length, body, (state, zeros))
    return state, jax.tree.map(lambda t: t / jnp.maximum(length, 1), total)


def as_data(data):
    """The data variables as float32 arrays, checked against the program's declarations: each
    present, shaped (n, *declared shape), all with the same n > 0 (a ValueError otherwise)."""
    arrays = {}
    for name in DATA_VARS:
        if name not in data:
            given = ", ".join(map(str, data)) or "none"
            raise ValueError(f"the data have no variable '{name}' (variables given: {given})")
        array = np.asarray(data[name], np.float32)
        if array.ndim == 0 or array.shape[1:] != tuple(DATA_SHAPES[name]):
            want = "(n, " + ", ".join(map(str, DATA_SHAPES[name])) + ")" if DATA_SHAPES[name] else "(n,)"
            raise ValueError(f"data variable '{name}' has shape {array.shape}, expected {want}")
        arrays[name] = array
    rows = {name: array.shape[0] for name, array in arrays.items()}
    if len(set(rows.values())) > 1:
        raise ValueError(f"the data variables have different numbers of examples ({rows})")
    if 0 in rows.values():
        raise ValueError("the data have no examples")
    return {k: jnp.asarray(v) for k, v in arrays.items()}


def check_steps(steps):
    """`steps`, a whole number from 0 to MAX_STEPS (a ValueError otherwise)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 0 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be a whole number from 0 to {MAX_STEPS}, got {steps!r}")
    return int(steps)


def fit(data, steps=None, seed=0, batch_size=BATCH, callback=None, chunk=None, seconds_per_call=0.25,
        checkpoint=None, resume=None):
    """Train from init(seed) for `steps` steps; returns (params, history).

    The steps run on the device in calls of `chunk` steps, or (chunk=None) of as many as take
    about `seconds_per_call`, so that the host (progress, history) costs nothing per step.
    `train_steps` is traced and compiled before the first step, by a call of no step: each
    history entry has `seconds` (training time so far, compilation excluded) and
    `compile_seconds` (that first call; near zero when this process compiled it already).

    `resume(state) -> (state, history)` continues a run from a saved training state of the same
    structure as `state` (parameters, optimiser states, step, averaged iterate) and its history;
    `checkpoint(state, history)` is called after every call of `train_steps`. On several processes
    (jax.distributed) every process makes the same calls: each of the history's cap of steps. Step t draws from
    fold_in(key, t) whatever the calls, so a resumed run ends where an uninterrupted one does.
    """
    tolerance = TOLERANCE if steps is None else None   # steps given: always honoured
    steps = check_steps(STEPS if steps is None else steps)
    data = as_data(data)
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)
    state = initial_state(k_init, steps)
    if LIPSCHITZ_STEP:
        state = lipschitz_step(state, data)
    started = time.perf_counter()   # trace and compile (a call of no step: later calls reuse the executable)
    jax.block_until_ready(train_steps(state, key, data, jnp.asarray(0, jnp.int32), batch_size))
    compile_seconds = time.perf_counter() - started
    history = History()
    if resume is not None:
        state, resumed = resume(state)
        history = History(resumed)
    done, seconds = (history[-1]["step"], history[-1]["seconds"]) if history else (0, 0.0)
    length = chunk or 1
    while done < steps:
        # at least HISTORY_POINTS entries; a run to tolerance, whose length is not known, grows
        # its chunks with the steps done (about 20 entries per factor e of steps)
        cap = max(1, done // 20) if tolerance is not None else max(1, steps // HISTORY_POINTS)
        length = min(length, steps - done, cap if chunk is None else length)
        t = time.perf_counter()
        state, values = train_steps(state, key, data, jnp.asarray(length, jnp.int32), batch_size)
        record = {p: float(v) for p, v in values.items()}
        elapsed = time.perf_counter() - t
        done, seconds = done + length, seconds + elapsed
        history.append({"step": done, "seconds": seconds, "compile_seconds": compile_seconds, **record})
        if tolerance is None and history.tail_start is None and done >= steps - steps / TAIL and done < steps:
            history.tail_start = jax.tree.map(np.asarray, state["params"])
        if checkpoint is not None:
            checkpoint(state, history)
        if callback is not None:
            callback(done, steps, record, state["params"])
        if nonfinite(record) or tolerance is not None and settled(history, MAIN_PLAYER, tolerance) \
                and stationary(state["params"], key, data, record[MAIN_PLAYER], tolerance):
            break   # diverged (the verdict names it), or converged to the tolerance asked for
        if chunk is None and jax.process_count() == 1:
            length = max(1, min(10 * length, int(length * seconds_per_call / max(elapsed, 1e-6))))
        elif chunk is None:   # several processes: the calls' lengths may not depend on any one clock
            length = cap
    return state["average" if TAIL_AVERAGE else "params"], history


class History(list):
    """A run's history entries (a list), and `tail_start`: the parameters at the first entry of
    the last fifth of a run of a given length (None in a run to tolerance, in a run resumed past
    that point, or before it), so the verdict can compare the objective at both ends of the last
    fifth with the same draws (`tail_change`)."""

    tail_start = None


def objective_change(pair, key, batch):
    """f(pair[0]) - f(pair[1]) of the compiled objective, with the same key and batch."""
    return OBJECTIVE(pair[0], key, batch) - OBJECTIVE(pair[1], key, batch)


def tail_change(params, key, data, history, eval_batch=None):
    """(f(end) - f(start of the last fifth), its standard error) of the compiled objective, both
    ends evaluated on the same keys and data (common random numbers: the difference is far less
    noisy than either value, so a slow descent that the history's one-draw losses hide is seen);
    None without `history.tail_start`."""
    start = getattr(history, "tail_start", None)
    if start is None:
        return None
    data = as_data(data)
    n = data[DATA_VARS[0]].shape[0] if DATA_VARS else 1
    one_pass = n <= EXACT_DATA_LIMIT and (eval_batch is None or eval_batch >= n)
    if one_pass and not (OBJECTIVE_DRAWS and n * EVALUATION_KEYS < SMALL_SAMPLE):
        # one pass over the data at each key, through the objective as already compiled: no new program
        compiled, batch = jax.jit(OBJECTIVE), minibatch(data, None, None)
        keys = jax.random.split(key, EVALUATION_KEYS) if OBJECTIVE_DRAWS else key[None]
        diffs = np.asarray([float(compiled(params, k, batch)) - float(compiled(start, k, batch)) for k in keys])
        value, stderr = float(diffs.mean()), standard_error(diffs)
    else:
        value, stderr, _ = averaged(objective_change, (params, start), key, data, OBJECTIVE_DRAWS, eval_batch)
    if PROX:
        value = value + float(sum(weight * (PROX_TERMS[kind](params[name]) - PROX_TERMS[kind](start[name]))
                                  for name, (kind, weight) in PROX.items() if name in PLAYERS[MAIN_PLAYER]))
    return value, stderr


def full_batch(data):
    return minibatch(as_data(data), None, None)


def objective(params, key, data, stderr=False, eval_batch=None):
    """The compiled objective at `params` over the whole data set (`objective_over_data`). With
    `stderr`: (value, standard error)."""
    value, error, _ = objective_over_data(params, key, data, eval_batch)
    return (value, error) if stderr else value


def objective_over_data(params, key, data, eval_batch=None):
    """(value, standard error, how) of the compiled objective at `params`, with the terms its
    proximal maps apply: over the whole data set, in batches where it is large (`averaged`);
    averaged over EVALUATION_KEYS keys where it draws."""
    value, error, how = averaged(OBJECTIVE, params, key, data, OBJECTIVE_DRAWS, eval_batch)
    if PROX:
        value = value + float(sum(weight * PROX_TERMS[kind](params[name]) for name, (kind, weight) in PROX.items()
                                  if name in PLAYERS[MAIN_PLAYER]))
    return value, error, how


def averaged(f, params, key, data, draws, eval_batch=None):
    """(mean, standard error, how) of f(params, key, data set): `how` is None for one pass over the
    whole data set, else names the data batches it was computed on (`over_batches`).

    Where f draws (`draws`) it is averaged over EVALUATION_KEYS keys split from `key`: a Monte
    Carlo value is never one draw. A data set of more than EXACT_DATA_LIMIT examples (or any
    `eval_batch` smaller than it) is evaluated in batches. f is compiled once per batch shape
    (called as it is, every operation would be compiled on its own: seconds for a small program)."""
    data = as_data(data)
    n = data[DATA_VARS[0]].shape[0] if DATA_VARS else 1
    size = eval_batch or (EVALUATION_BATCH if n > EXACT_DATA_LIMIT else None)
    keys = jax.random.split(key, EVALUATION_KEYS) if draws else key[None]
    compiled = jax.jit(f)
    if size is not None and size < n and DATA_VARS:
        batches = np.array_split(np.arange(n), -(-n // size))
        if additive(compiled, params, keys, data, batches[:2], n):
            return over_batches(compiled, params, keys, data, batches, n, draws)
    batch = minibatch(data, None, None)
    values = np.asarray([float(compiled(params, k, batch)) for k in keys], np.float64)
    if draws:
        values = more_draws(f, params, key, batch, values, n)
    return float(values.mean()), standard_error(values), None


def more_draws(f, params, key, batch, values, n):
    """`values` (f at independent keys) extended by further keys until their standard error is at
    most EVALUATION_RTOL (1 + |mean|) or n x keys reaches EVALUATION_DRAWS (n examples a pass; at
    least EVALUATION_KEYS keys in all), where they hold fewer than SMALL_SAMPLE example-draws (a
    program with little data or none: with more, they are already a sample of thousands, and a
    second compiled program would cost more than it tells). The keys come in chunks of one vmapped call of about
    EVALUATION_DRAWS / 16 example-draws; each chunk's keys are split from fold_in(key, chunk), so
    the value is deterministic for the key, and the stop depends on the values only."""
    if n * len(values) >= SMALL_SAMPLE:
        return values
    limit = max(len(values), EVALUATION_DRAWS // max(n, 1))
    chunk = max(EVALUATION_KEYS, EVALUATION_DRAWS // 16 // max(n, 1))
    batched = None
    while len(values) < limit and standard_error(values) > EVALUATION_RTOL * (1 + abs(float(values.mean()))):
        if batched is None:
            batched = jax.jit(jax.vmap(f, in_axes=(None, 0, None)))
        keys = jax.random.split(jax.random.fold_in(key, len(values)), chunk)
        values = np.concatenate([values, np.asarray(batched(params, keys, batch), np.float64)])
    return values


SAMPLE_PARTS = 20    # disjoint parts of the data whose values give an estimate's error over the data sample


def sampling_error(f, params, key, data):
    """The standard error of f (a mean over the examples) as an estimate of its value under the law
    the data are drawn from, not of the data set at hand: f on SAMPLE_PARTS disjoint random parts of
    the rows (one key each), the standard deviation of those values over sqrt(SAMPLE_PARTS). It holds
    the examples' spread and the draws' noise together. For an `estimate` of a divergence with data
    on one side, where the data are a sample of P; 0 with fewer than 2 examples a part, or where f
    is not a mean over the examples (a nonlinear function of a data mean)."""
    data = as_data(data)
    n = data[DATA_VARS[0]].shape[0] if DATA_VARS else 0
    if n < 2 * SAMPLE_PARTS:
        return 0.0
    parts = np.array_split(np.random.default_rng(0).permutation(n), SAMPLE_PARTS)
    compiled = jax.jit(f)
    keys = jax.random.split(key, SAMPLE_PARTS)
    if not additive(compiled, params, keys[:4], data, parts[:2], n):
        return 0.0
    values = np.asarray([float(compiled(params, k, rows(data, part))) for k, part in zip(keys, parts)], np.float64)
    return standard_error(values)


def standard_error(values):
    """The standard error of the mean of independent `values` (0 for one value)."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def rows(data, index):
    """The examples `index` of the data set, with its full size `#n` (a sum over the data is n times the mean)."""
    return {**{k: data[k][index] for k in DATA_VARS}, "#n": jnp.asarray(data[DATA_VARS[0]].shape[0], jnp.float32)}


def additive(compiled, params, keys, data, pair, n):
    """Is f a mean over the examples (plus terms without data), so that its value on the data set
    is the size-weighted mean of its values on batches? Checked on two batches A, B:
    f(A u B) = (|A| f(A) + |B| f(B)) / (|A| + |B|), to 1e-4 relative where f does not draw, within
    4 standard errors of the paired differences over the keys where it does. (A nonlinear
    function of a data mean, log E[x ~ data] ..., fails: it is then evaluated in one pass.)"""
    a, b = pair
    both = np.concatenate([a, b])
    diffs = np.asarray([float(compiled(params, k, rows(data, both)))
                        - (len(a) * float(compiled(params, k, rows(data, a))) + len(b) * float(compiled(params, k, rows(data, b))))
                        / len(both) for k in keys], np.float64)
    scale = float(compiled(params, keys[0], rows(data, both)))
    return bool(abs(diffs.mean()) <= 4 * standard_error(diffs) + 1e-4 * (1 + abs(scale)))


def over_batches(compiled, params, keys, data, batches, n, draws):
    """(mean, standard error, how) of f over data batches (f a mean over the examples).

    Up to EXACT_BATCHES batches: every batch, weighted by its size, so the mean over the data
    set exactly (standard error over the keys where f draws, else 0). More: a simple random
    sample of SAMPLED_BATCHES batches (without replacement, one key per batch), the size-weighted
    mean of their values and its standard error over batches, s / sqrt(m) with the finite
    population correction sqrt(1 - m/N) where f does not draw (draws add noise the correction
    does not remove): an estimator, named in `how`, never exact."""
    count = len(batches)
    size = max(len(b) for b in batches)
    if count <= EXACT_BATCHES:
        sizes = np.asarray([len(b) for b in batches], np.float64)
        values = np.asarray([sizes @ [float(compiled(params, jax.random.fold_in(k, i), rows(data, b))) for i, b in enumerate(batches)] / n
                             for k in keys], np.float64)
        return float(values.mean()), standard_error(values), f"all {count} data batches of {size}"
    seed = int(jax.random.randint(keys[0], (), 0, 2**31 - 1))
    chosen = np.sort(np.random.default_rng(seed).choice(count, min(SAMPLED_BATCHES, count), replace=False))
    sizes = np.asarray([len(batches[i]) for i in chosen], np.float64)
    values = np.asarray([float(compiled(params, jax.random.fold_in(keys[0], i), rows(data, batches[i]))) for i in chosen], np.float64)
    correction = 1.0 if draws else np.sqrt(1 - len(chosen) / count)
    return float(sizes @ values / sizes.sum()), standard_error(values) * correction, \
        f"data batches ({len(chosen)} of {count}, {size} examples each)"


def written(params, key, data, eval_batch=None):
    """(as_written, its standard error, its estimator, a warning or None): the objective as the
    user wrote it at `params` (SPEC section 9.2), None with a warning where it has no estimator.
    Estimated from a sample of data batches, the estimator says so ("data batches (m of N ...)")."""
    if AS_WRITTEN is None:
        return None, None, None, f"as_written is null: {AS_WRITTEN_REASON}"
    value, stderr, how = averaged(AS_WRITTEN, params, key, data, AS_WRITTEN_DRAWS, eval_batch)
    estimator = AS_WRITTEN_ESTIMATOR
    if how is not None and how.startswith("data batches"):
        estimator = how if estimator == "exact" else f"{estimator}, {how}"
    return value, stderr, estimator, None


def reports(params, key, data, eval_batch=None):
    """Each report at `params`, over the whole data set (averaged over EVALUATION_KEYS keys where
    it draws: an importance-weighted estimate of -log p(x), a Monte Carlo average; in batches
    where the data set is large, as `averaged` says)."""
    return {name: averaged(f, params, key, data, REPORT_DRAWS.get(name, False), eval_batch)[0] for name, f in REPORTS.items()}


def gradient_mapping(params, key, data):
    """|x - prox_eta(x + eta v(x))| / eta over the main player's parameters, eta the run's step
    (1/L at `params` where the run sets it so): zero exactly at a fixed point of the update."""
    eta = LR
    if LIPSCHITZ_STEP:
        eta = lipschitz_step(init_state(params), data)["opt"][MAIN_PLAYER].hyperparams["learning_rate"]
    v = jax.jit(field)(params, key, full_batch(data))
    moved = apply_prox({k: params[k] + eta * v[k] for k in PLAYERS[MAIN_PLAYER]}, eta)
    return float(jnp.sqrt(sum(jnp.sum(jnp.square(moved[k] - params[k])) for k in moved)) / eta)


def stationary(params, key, data, value, tolerance):
    """Is the (proximal-)gradient mapping at `params` under sqrt(tolerance) (1 + |value|)? (A step
    refused by backtracking leaves the objective unchanged without the point being optimal.)"""
    return gradient_mapping(params, key, data) <= np.sqrt(tolerance) * (1 + abs(value))


def moving_field_norms(params, key, batch):
    """|v_p| of each moving player's part of the field."""
    v = field(params, key, batch)
    return {p: tree_norm(own(v, p)) for p in MOVING}


def field_norms(params, key, data):
    """|v_p| of each moving player's part of the field, on the whole data set (one compiled call)."""
    return {p: float(norm) for p, norm in jax.jit(moving_field_norms)(params, key, full_batch(data)).items()}


def best_response_gap(params, key, data, player, steps):
    """How far a maximising player (a critic) is from its best response to the others at
    `params`, as (gain, standard error): its loss after `steps` more steps of the run's optimiser
    on its own parameters alone, the other players held fixed, minus its loss now, on the whole
    data set with the same EVALUATION_KEYS keys (paired differences). A critic at its
    Bayes-optimal value for the current generator gains nothing; a gain g means the plug-in
    divergence it gives is low by at least g."""
    data = as_data(data)
    k_train, k_eval = jax.random.split(key)

    def ascent(mine):
        def body(t, carry):
            mine, opt = carry
            kb, ks = jax.random.split(jax.random.fold_in(k_train, t))
            grad = jax.grad(lambda m: -LOSSES[player]({**params, **m}, ks, minibatch(data, kb, BATCH)))(mine)
            updates, opt = OPTIMIZER.update(grad, opt, mine)
            return optax.apply_updates(mine, updates), opt
        return jax.lax.fori_loop(0, steps, body, (mine, OPTIMIZER.init(mine)))[0]
    best = {**params, **jax.jit(ascent)(own(params, player))}
    batch = full_batch(data)
    keys = jax.random.split(k_eval, EVALUATION_KEYS)
    loss = jax.jit(LOSSES[player])
    gains = np.asarray([float(loss(best, k, batch)) - float(loss(params, k, batch)) for k in keys], np.float64)
    return float(gains.mean()), float(gains.std(ddof=1) / np.sqrt(len(gains)))


def best_response_steps(steps):
    """The steps a critic's best response gets at the end of a game: as many as the averaging
    window of the run (its last tenth), at least 200 and at most 2000."""
    return int(min(max(200, steps // 10), 2000))


def summary(params, data, steps, seconds, seed=0, compile_seconds=None, history=None, eval_batch=None, judged=True):
    """What a run reports (SPEC section 9.2): `seconds` is the training time without compilation,
    `compile_seconds` the tracing and compilation; `converged` and `warnings` judge the run from
    its `history` (module verdict). `steps` is the number of steps taken (a run to tolerance or
    one that diverged stops early). NaN and infinities stay floats here: `json_safe` writes them.
    Values over the data are exact (one pass, or every batch of `eval_batch` examples); on a data
    set too large for that they are estimated from a sample of batches, with a warning naming it.
    With `judged` false (evaluating saved parameters, no run to judge) `converged` is None and the
    warnings are those of the estimates only."""
    key = jax.random.PRNGKey(seed + 1)
    history = history or []
    steps = history[-1]["step"] if history else steps
    value, value_stderr, how = objective_over_data(params, key, data, eval_batch)
    as_written, as_written_stderr, estimator, null_warning = written(params, key, data, eval_batch)
    if IS_ESTIMATE and DATA_VARS:     # the data are a sample of P: their spread is part of the estimate's error
        value_stderr = max(value_stderr, sampling_error(OBJECTIVE, params, key, data))
        if as_written_stderr is not None and AS_WRITTEN is OBJECTIVE:
            as_written_stderr = value_stderr
    values = reports(params, key, data, eval_batch)
    converged, warnings = None, []
    if judged:
        mapping = gradient_mapping(params, key, data) if DETERMINISTIC and LIPSCHITZ_STEP and history else None
        start, end, gaps = None, None, {}
        if len(MOVING) > 1 and history:
            first = jax.jit(init)(jax.random.split(jax.random.PRNGKey(seed))[1])
            start, end = field_norms(first, key, data), field_norms(params, key, data)
            gaps = {p: best_response_gap(params, key, data, p, best_response_steps(steps))
                    for p in MOVING if SENSES[p] == "max"}
        change = tail_change(params, key, data, history, eval_batch) if not DETERMINISTIC and len(MOVING) == 1 else None
        converged, warnings = verdict(history, list(PLAYERS), list(MOVING), DETERMINISTIC, TOLERANCE or 1e-7, value,
                                      values, mapping, start, end, gaps, EXACT_FIELD, change)
    if null_warning:
        warnings = warnings + [null_warning]
    if how is not None and how.startswith("data batches"):
        warnings = warnings + [f"objective estimated from {how}: objective_stderr is its standard error over batches, "
                               "not an exact value over the data"]
    return {"steps": steps, "seconds_per_step": seconds / max(steps, 1), "compile_seconds": compile_seconds,
            "objective": value, "objective_stderr": value_stderr, "as_written": as_written,
            "as_written_stderr": as_written_stderr, "as_written_estimator": estimator,
            "reports": values, "estimate": value if IS_ESTIMATE else None,
            "converged": converged, "warnings": warnings}
