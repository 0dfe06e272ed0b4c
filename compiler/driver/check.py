"""`attractor check`: numerical certificates of every recorded relation.

The certificates of each rule family live in `passes/<family>/certificates.py` (a dict
`CERTIFICATES`); this driver loads them, and runs the certificate of every rule the
derivation used, once per rule. A step whose rule has no certificate fails the check.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

import passes
from compiler.rewrite.certificate import Certificate


def family_certificates() -> dict[str, Callable]:
    """Every rule's certificate, by rule: `CERTIFICATES` of passes/<family>/certificates.py
    for each family in `passes.FAMILIES` (loaded here only, never by the compiler)."""
    table: dict[str, Callable] = {}
    for family in passes.FAMILIES:
        table.update(importlib.import_module(f"passes.{family}.certificates").CERTIFICATES)
    return table


def declared_game_certificate(prog, step, seed: int) -> list[Certificate]:
    """A declared game: each player's component of the field is the derivative of its own loss in its
    own parameters with every other player's parameters held fixed — v_p = -dL_i/dp (minimize) or
    +dL_i/dp (maximize) for p of player i — checked against central differences of the losses at
    random points (float64 differences of the float32 losses, step 1e-2 relative)."""
    import jax
    import numpy as np

    mod = prog.build()
    batch = mod.load_data() if hasattr(mod, "load_data") else {}
    owner = {p: pl for pl in prog.program.players for p in pl.params}
    worst, key = 0.0, jax.random.PRNGKey(seed)
    for trial in range(3):
        params = jax.tree.map(lambda a: a + jax.random.normal(jax.random.fold_in(key, trial), a.shape) * 0.5,
                              mod.init(jax.random.fold_in(key, 100 + trial)))
        field = mod.field(params, key, batch)
        for name, pl in owner.items():
            flat = np.asarray(params[name], np.float64).ravel()
            for i in range(min(flat.size, 4)):
                h = 1e-2 * max(1.0, abs(flat[i]))
                values = []
                for sign in (1, -1):
                    moved = flat.copy()
                    moved[i] += sign * h
                    trial_params = {**params, name: moved.reshape(np.shape(params[name])).astype(np.float32)}
                    values.append(float(mod.losses(trial_params, key, batch)[pl.name]))
                slope = (values[0] - values[1]) / (2 * h) * (1 if pl.sense == "max" else -1)
                got = float(np.asarray(field[name]).ravel()[i])
                worst = max(worst, abs(got - slope) / max(1.0, abs(slope)))
    ok = worst < 5e-2
    return [Certificate(step.rule, f"player {step.player}'s field is the gradient of its own loss in its own "
                        "parameters, the other players' held fixed",
                        f"largest relative difference from central differences at 3 random points: {worst:.2g}", ok)]


DRIVER_CERTIFICATES = {"declared_game": declared_game_certificate}   # steps the driver itself records


def certify(prog, seed: int = 0) -> list[Certificate]:
    """Run the certificate of every rule the derivation used, once per rule."""
    certificates = family_certificates()
    out: list[Certificate] = []
    seen: set[str] = set()
    for step in prog.derivation.steps:
        if step.rule in seen:
            continue
        seen.add(step.rule)
        fn = certificates.get(step.rule) or DRIVER_CERTIFICATES.get(step.rule)
        if fn is None:
            out.append(Certificate(step.rule, f"relation {step.relation}", "no certificate is registered for this rule", False))
            continue
        out.extend(fn(prog, step, seed))
    return out + variance_certificates(prog, seed)


def variance_certificates(prog, seed: int) -> list[Certificate]:
    """For a divergence estimated from samples by a critic: is the estimator's variance finite at
    the initial parameters (compiler.driver.tails: the tail index of its summands at a fitted
    density ratio at most 1/2)? Nothing where it cannot be measured."""
    import jax

    from compiler.driver import tails
    step = tails.ratio_step(prog)
    if step is None:
        return []
    mod = prog.build()
    finite, text = tails.diagnose(prog, mod, mod.init(jax.random.PRNGKey(seed)), prog.load_data(), seed)
    if finite is None:
        return []
    return [Certificate(step.rule, "the estimator's variance is finite: the summands E_P f'(r), E_Q f*(f'(r)) have "
                        "tail index <= 1/2", text, finite)]
