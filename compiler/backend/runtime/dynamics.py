"""The dynamics a step follows (SPEC section 4): the direction each player moves along, then
one optimiser step per moving player. The emitted `step` calls one of the steps below."""
import jax

from compiler.backend.runtime.program import (
    CONSENSUS_GAMMA,
    LOSSES,
    LR,
    MOVING,
    PLAYERS,
    SGA_LAMBDA,
)
from compiler.backend.runtime.training import (
    closed_form_updates,
    field_and_losses,
    negate,
    player_field,
    shard_batch,
    update_player,
)


def with_schedule(state, batch):
    """The batch sharded over the devices, with the step number and the run's length (for
    schedules inside a loss)."""
    return {**shard_batch(batch), "#step": state["step"], "#total": state["total"]}


def players_step(state, key, batch, direction):
    """Every moving player takes an optimiser step along `direction` at the same parameters,
    then the closed-form updates: (state, key, batch) -> (state, losses)."""
    batch = with_schedule(state, batch)
    v, values = direction(state["params"], key, batch)
    for p in MOVING:
        state = update_player(state, p, v, key, batch)
    state = closed_form_updates(state, key, batch)
    return {**state, "step": state["step"] + 1}, values


def simultaneous_step(state, key, batch):
    """Simultaneous dynamics: every player follows its own gradient field."""
    return players_step(state, key, batch, field_and_losses)


def extragradient_direction(params, key, batch):
    """Extragradient: extrapolate a step of size LR along the field, take the field there."""
    v, values = field_and_losses(params, key, batch)
    look = {**params, **jax.tree.map(lambda x, d: x + LR * d, {k: params[k] for k in v}, v)}
    v2, _ = field_and_losses(look, key, batch)
    return v2, values


def extragradient_step(state, key, batch):
    return players_step(state, key, batch, extragradient_direction)


def sga_direction(params, key, batch):
    """Symplectic gradient adjustment: xi + lambda A^T xi, A the antisymmetric part of the
    Jacobian J of xi = -v."""
    v, values = field_and_losses(params, key, batch)
    moving = {k: params[k] for k in v}

    def xi_fn(ps):
        return negate(field_and_losses({**params, **ps}, key, batch)[0])
    xi = negate(v)
    _, jxi = jax.jvp(xi_fn, (moving,), (xi,))
    _, vjp = jax.vjp(xi_fn, moving)
    (jtxi,) = vjp(xi)
    adjusted = jax.tree.map(lambda a, b, c: a + SGA_LAMBDA * 0.5 * (b - c), xi, jtxi, jxi)
    return negate(adjusted), values


def sga_step(state, key, batch):
    return players_step(state, key, batch, sga_direction)


def consensus_direction(params, key, batch):
    """Consensus optimisation: xi + gamma J^T xi, the gradient of |xi|^2 / 2 added."""
    v, values = field_and_losses(params, key, batch)
    moving = {k: params[k] for k in v}

    def xi_fn(ps):
        return negate(field_and_losses({**params, **ps}, key, batch)[0])
    xi = negate(v)
    _, vjp = jax.vjp(xi_fn, moving)
    (jtxi,) = vjp(xi)
    adjusted = jax.tree.map(lambda a, b: a + CONSENSUS_GAMMA * b, xi, jtxi)
    return negate(adjusted), values


def consensus_step(state, key, batch):
    return players_step(state, key, batch, consensus_direction)


def alternating_step(state, key, batch):
    """Alternating dynamics: players move in turn, each seeing the others' new parameters."""
    batch = with_schedule(state, batch)
    values = {}
    for p in PLAYERS:
        if PLAYERS[p]:
            v, values[p] = player_field(p, state["params"], key, batch)
            state = update_player(state, p, v, key, batch)
        else:
            values[p] = LOSSES[p](state["params"], key, batch)
    state = closed_form_updates(state, key, batch)
    return {**state, "step": state["step"] + 1}, values


STEPS_OF_DYNAMICS = {"simultaneous": simultaneous_step, "extragradient": extragradient_step, "sga": sga_step,
                     "consensus": consensus_step, "alternating": alternating_step}
