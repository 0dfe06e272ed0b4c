"""Certificates of the half_quadratic rule: the Moreau-envelope facts (the split objective below
the original, rising to it as β grows; the closed-form z the exact minimiser) and, for a box,
the penalty facts, on the program at random parameters and on a random instance of every g
with a known proximal map. Loaded by the `check` driver only (`CERTIFICATES`)."""
from __future__ import annotations

import dataclasses

import numpy as np

from compiler import ir
from compiler.analysis.constants import const_value
from compiler.rewrite.building import standard_form, violation
from compiler.rewrite.certificate import Certificate

INSTANCES = {"norm1": "param w : real[8]\nminimize sumsq(w - 1) + 0.3 * norm1(diff(w)) via half_quadratic\n",
             "sumsq": "param w : real[8]\nminimize sumsq(w - 1) + 0.3 * sumsq(diff(w)) via half_quadratic\n",
             "box": "param w : real[8]\nminimize sumsq(w - 1) via half_quadratic\nsubject to abs(diff(w)) <= 0.3\n"}


def _loss_before(prog, step) -> ir.Node:
    """The step's player's loss just before `step`."""
    steps = prog.derivation.steps
    index = next(i for i, s in enumerate(steps) if s is step)
    earlier = [s.node for s in steps[:index] if s.player == step.player]
    return earlier[-1] if earlier else next(p.loss for p in prog.typed.players if p.name == step.player)


def _alone(prog, player: ir.Player, loss: ir.Node, reports=()):
    """The program's module with `player` alone, its loss `loss`, and only `reports`."""
    return dataclasses.replace(prog, program=dataclasses.replace(
        prog.program, players=(dataclasses.replace(player, loss=loss, prox=()),), auxiliary=(), reports=reports)).build()




class _Split:
    """One split of a compiled program, at random parameters: the player's loss just before
    and just after the step, and the z-step, all emitted and jitted."""

    def __init__(self, prog, step, seed: int):
        import jax
        self.rng = np.random.default_rng(seed)
        self.player = next(p for p in prog.program.players if p.name == step.player)
        self.z, self.beta = step.fact("z"), step.fact("beta")
        self.moving = [n for n in self.player.params if isinstance(prog.program.decl(n), ir.Param)]
        mod = prog.build()
        self.data = prog.load_data()
        self.batch = mod.full_batch(self.data)
        self.key = jax.random.PRNGKey(seed)
        self.z_step = dict(mod.UPDATES)[self.z]
        self.new, self.old = (self._loss_of(_alone(prog, self.player, loss)) for loss in (step.node, _loss_before(prog, step)))
        self.init = mod.init(self.key)
        self.beta0 = float(self.init[self.beta])
        self.betas = self.beta0 * np.array([1.0, 10.0, 100.0, 1000.0])

    def _loss_of(self, module):
        """The player's loss in `module`, jitted, at the split's key and batch."""
        import jax
        return jax.jit(lambda ps: module.LOSSES[self.player.name](ps, self.key, self.batch))

    def params(self, scale: float) -> dict:
        import jax.numpy as jnp
        out = dict(self.init)
        for name in self.moving:
            out[name] = jnp.asarray(scale * self.rng.normal(size=np.shape(out[name])), jnp.float32)
        return out

    def at(self, params: dict, beta: float) -> dict:
        import jax.numpy as jnp
        out = {**params, self.beta: jnp.asarray(beta, jnp.float32)}
        out[self.z] = self.z_step(out, self.key, self.batch)
        return out

    def minimal(self, at: dict, project=lambda z: z) -> bool:
        """Random perturbations of the closed-form z (kept in the domain by `project`) never
        lower the split objective."""
        import jax.numpy as jnp
        value = float(self.new(at))
        def moved():
            step = self.rng.normal(0, 0.05, size=np.shape(at[self.z]))
            return jnp.asarray(project(np.asarray(at[self.z]) + step), jnp.float32)
        return all(float(self.new({**at, self.z: moved()})) >= value - 1e-6 * (1 + abs(value)) for _ in range(10))


def envelope_certificates(prog, step, seed: int, label: str) -> list[Certificate]:
    """At random parameters, for β growing over three decades: the split objective with the
    closed-form z is <= the original and rises to it (gap falling like 1/β); and the
    closed-form z is the minimiser (random perturbations of z never lower the objective)."""
    split = _Split(prog, step, seed)
    params = split.params(1.0)
    exact = float(split.old(params))
    gaps, minimal = [], True
    for b in split.betas:
        at = split.at(params, b)
        gaps.append(exact - float(split.new(at)))
        minimal &= split.minimal(at)
    gaps = np.asarray(gaps)
    tol = 1e-6 * (1 + abs(exact))
    text = ", ".join(f"beta={b:g}: {g:.3g}" for b, g in zip(split.betas, gaps))
    return [
        Certificate("half_quadratic", f"{label}: split objective <= original, approaching it as beta grows (gap ~ 1/beta)",
                    f"original {exact:.6g}; original - split {text}",
                    bool(np.all(gaps >= -tol) and np.all(np.diff(gaps) <= tol) and gaps[-1] <= gaps[0] / 100 + tol)),
        Certificate("half_quadratic", f"{label}: the closed-form z-step is the exact minimiser over z",
                    "40 random perturbations of z (4 values of beta) never lower the split objective", bool(minimal)),
    ]


def box_certificates(prog, step, seed: int, label: str) -> list[Certificate]:
    """At random parameters inside and outside the box: the penalty is 0 where the
    constraint holds and grows linearly in β elsewhere (to the indicator's +∞); the
    projection is the minimiser over z in the box."""
    split = _Split(prog, step, seed)
    c, lo, hi = step.matched, step.fact("lo"), step.fact("hi")
    low = -np.inf if lo is None else const_value(lo, prog.program)
    high = np.inf if hi is None else const_value(hi, prog.program)
    kind, expr = standard_form(c)
    report = _alone(prog, split.player, split.player.loss, (ir.Report("violation", violation(kind, expr, c.shape)),))
    inside, outside, zero_ok, growth_ok, minimal, worst = 0, 0, True, True, True, 0.0
    for scale in (0.01, 0.03, 1.0, 3.0):
        params = split.params(scale)
        exact = float(split.old(params))
        penalties = []
        for b in split.betas:
            at = split.at(params, b)
            penalties.append(float(split.new(at)) - exact)
            minimal &= split.minimal(at, lambda z: np.clip(z, low, high))
        tol = 1e-6 * (1 + abs(exact))
        if report.reports(params, split.key, split.data)["violation"] <= 0:
            inside += 1
            zero_ok &= all(abs(p) <= tol for p in penalties)
        else:
            outside += 1
            ratios = np.asarray(penalties[1:]) / np.asarray(penalties[:-1])
            worst = max(worst, float(np.max(np.abs(ratios - 10))) / 10)
            growth_ok &= penalties[0] > 0 and worst <= 1e-2
    return [
        Certificate("half_quadratic", f"{label}: where the constraint holds the split objective is the original",
                    f"{inside} random points inside the box, 4 values of beta", bool(inside and zero_ok)),
        Certificate("half_quadratic", f"{label}: outside the box the penalty grows linearly in beta (to the indicator's +inf)",
                    f"{outside} random points outside; largest relative deviation from x10 per decade {worst:.1e}",
                    bool(outside and growth_ok)),
        Certificate("half_quadratic", f"{label}: the projection is the exact minimiser over z in the box",
                    "random perturbations of z, projected into the box, never lower the split objective", bool(minimal)),
    ]


def certify_half_quadratic(prog, step, seed: int) -> list[Certificate]:
    """The envelope facts on the program at random parameters (its first split), and on a
    random instance of every g with a known proximal map and of a box."""
    from compiler.driver.api import compile_source
    checks = {"box": box_certificates}
    out = checks.get(step.fact("g"), envelope_certificates)(prog, step, seed, "the program")
    for kind, source in INSTANCES.items():
        instance = compile_source(source, filename="<certificate>")
        label = f"{kind} on a random instance"
        out += checks.get(kind, envelope_certificates)(instance, instance.derivation.steps[0], seed, label)
    return out


CERTIFICATES = {"half_quadratic": certify_half_quadratic}
