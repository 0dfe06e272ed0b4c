"""The splitting rule family: half-quadratic splitting of a non-smooth term of a linear map.

    f(x) + k·g(A x)   ~   f(x) + k·g(z) + β/2·‖A x − z‖²,    β raised on a schedule

for g with a known proximal map (norm1, sumsq: the table and the maps SymPy derives in
passes/relaxation.py) and A x affine in the player's parameters (sums, differences and
constant multiples of parameters, `diff`, `sum`, `mean`). Only when asked for
(`via half_quadratic(beta=…, growth=…, beta_max=…)`). A non-smooth g (norm1) is split
wherever it appears; a smooth one (sumsq) only as a penalty with its weight written,
`k * sumsq(A x)`, so that a bare sumsq(·) fit term stays with f in the x-step.

The indicator of a box is written as a constraint on an affine map: `subject to A x <= c`,
`A x >= c` or `abs(A x) <= c` (c constant). Forced with `via half_quadratic`, such a
constraint is split instead of going to the Lagrangian: f(x) + ι_box(z) + β/2‖A x − z‖²,
whose z-step is the projection onto the box, z ← min(max(A x, lo), hi) (the proximal map of
the indicator); min over z is β/2·dist²(A x, box), 0 where the constraint holds and rising
to the indicator's +∞ elsewhere as β → ∞ (a penalty method: relation `~`, exact in the limit).

The new objective is solved by alternation: an x-step (the player's gradient step on
f(x) + β/2‖A x − z‖², now smooth in x) and an exact z-step, z ← prox_{(k/β)·g}(A x), the
minimiser over z, in closed form after every step; then β ← min(growth·β, beta_max).
Relation `~`: min over z of k·g(z) + β/2‖v − z‖² is the Moreau envelope of k·g at v, at most
k·g(v) and increasing to it as β → ∞ (for norm1 within k²·m/(2β), m entries), so the split
objective approaches the original from below and is exact in the limit. The outer weight of
the term must be a positive constant along a linear path (+, −, constant factors), so that
the z-step is exactly the proximal map; the pass manager refuses a negative weight.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import sympy as sp

from compiler import ir
from compiler.analysis.problems import depends_on
from compiler.ir.builtins import FUNCTIONS
from compiler.driver.check import Certificate, certificate
from compiler.frontend.checker import broadcast
from compiler.ir.diagnostics import AttractorError
from compiler.rewrite.manager import RulePass
from compiler.rewrite.rule import Context, Rewrite, Step, legacy_rule
from compiler.ir.printer import number, shape_text, show
from compiler.rewrite.strategies import ancestors, positions
from compiler.analysis.constants import const_value
from compiler.rewrite.building import fill_training, fresh, standard_form, training_text, used_names, violation
from compiler.rewrite.manager import constraint_text
from passes.lagrangian import CLAIMS
from compiler.math.piecewise import PROX_FUNCTIONS, T, V, derive_prox

DEFAULTS = {"beta": 1.0, "growth": 1.005}
BETA_MAX_RANGE = 1e4          # beta_max defaults to this multiple of the initial beta
TRAINING = (("steps", 3000), ("optimizer", ("adam", (("lr", 0.01),))), ("schedule", "cosine"))
LINEAR = {"add", "sub", "neg"}


def affine_shape(node: ir.Node, program: ir.Program, params: tuple[str, ...]):
    """The shape of `node` when it is an affine map of the parameters `params` (numbers,
    constants, +, −, negation, constant factors and divisors, diff, sum, mean), else None."""
    if isinstance(node, ir.Num) or const_value(node, program) is not None:
        return ()
    if isinstance(node, ir.Ref):
        d = program.decl(node.name)
        return d.shape if node.name in params and isinstance(d, ir.Param) else None
    if not isinstance(node, ir.Apply):
        return None
    fn, args = node.fn, node.args
    if fn in ("add", "sub"):
        a, b = (affine_shape(x, program, params) for x in args)
        return None if a is None or b is None else broadcast(a, b, node.loc)
    if fn in ("mul", "div"):
        for i in ((0, 1) if fn == "mul" else (1,)):
            if const_value(args[i], program) is not None:
                return affine_shape(args[1 - i], program, params)
        return None
    if fn in ("neg", "diff", "sum", "mean"):
        shape = affine_shape(args[0], program, params)
        if shape is None or fn == "neg":
            return shape
        if fn == "diff":
            return shape[:-1] + (shape[-1] - 1,) if shape and shape[-1] > 1 else None
        return ()
    return None


def weighted(node: ir.Node, program: ir.Program) -> tuple[ir.Node, ir.Node] | None:
    """(k, g) for k * g, g * k or g / c with a constant k (k = 1/c), or (1, g) for g itself."""
    if isinstance(node, ir.Apply) and node.fn == "mul":
        for i in (0, 1):
            if const_value(node.args[i], program) is not None:
                return node.args[i], node.args[1 - i]
    if isinstance(node, ir.Apply) and node.fn == "div" and const_value(node.args[1], program):
        return ir.Apply("div", (ir.Num(1), node.args[1])), node.args[0]
    return ir.Num(1), node


def linear_path(path, program: ir.Program) -> bool:
    """Every ancestor passes the term on linearly: +, −, negation, constant factors, Let bodies."""
    for parent, index in ancestors(path):
        if isinstance(parent, ir.Let) and index == 1:
            continue
        if not isinstance(parent, ir.Apply):
            return False
        if parent.fn in LINEAR:
            continue
        if parent.fn == "mul" and const_value(parent.args[1 - index], program) is not None:
            continue
        if parent.fn == "div" and index == 0 and const_value(parent.args[1], program):
            continue
        return False
    return True


def candidate(node: ir.Node, ctx: Context):
    """(k, g, A x, shape of A x) when `node` is k * g(A x) with a known proximal map for g,
    A x affine in the player's parameters, reached along a linear path; else None. A smooth
    g needs its weight k written."""
    k, g = weighted(node, ctx.program)
    if not (isinstance(g, ir.Apply) and g.fn in PROX_FUNCTIONS) or g is node and FUNCTIONS[g.fn].smooth:
        return None
    v = g.args[0]
    shape = affine_shape(v, ctx.program, ctx.player.params)
    if shape is None or not depends_on(v, ctx.program, set(ctx.player.params)) or not linear_path(ctx.path, ctx.program):
        return None
    return k, g, v, shape


def _no_prox(node: ir.Node, ctx: Context) -> bool:
    """Is `node` a non-smooth or non-quadratic reduction of an affine map (norm2(A x),
    logsumexp(A x), sum(abs(A x)), ...) whose g this rule has no proximal map for?"""
    if not (isinstance(node, ir.Apply) and FUNCTIONS.get(node.fn) and FUNCTIONS[node.fn].kind == "reduce"):
        return False
    if node.fn in PROX_FUNCTIONS:
        return False
    arg = node.args[0]
    if node.fn in ("sum", "mean"):
        if not (isinstance(arg, ir.Apply) and FUNCTIONS.get(arg.fn) and FUNCTIONS[arg.fn].kind == "elementwise"):
            return False
        arg = arg.args[0]
    params = set(ctx.player.params)
    return affine_shape(arg, ctx.program, ctx.player.params) is not None and depends_on(arg, ctx.program, params)


def _applies_somewhere(ctx: Context) -> bool:
    """Has the rule split a term of this program already, or can it split one of the loss or
    a box constraint?"""
    if any(k == "split" for k, _ in ctx.program.auxiliary) or \
            any(box_form(c, ctx.program, ctx.player.params) for c in ctx.program.constraints):
        return True
    sense = 1 if ctx.player.sense == "min" else -1
    return any(candidate(n, dataclasses.replace(ctx, polarity=pol, path=path)) is not None
               for n, pol, path in positions(ctx.player.loss, ctx.program, sense))


def _number_option(ctx: Context, key: str, default: float, low: float, what: str) -> float:
    value = ctx.option(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < low:
        raise AttractorError(f"half_quadratic({key}=...) must be {what}", ctx.program.objective.via.loc)
    return float(value)


def prox_node(kind: str, v: ir.Node, t: ir.Node) -> ir.Sym:
    """prox_{t·g}(v) for g of `kind`, the SymPy-derived closed form, applied elementwise."""
    return ir.Sym(f"prox_{kind}", sp.srepr(derive_prox(kind)), (str(V), str(T)), (v, t))


def box_form(c: ir.Constraint, program: ir.Program, params: tuple[str, ...]):
    """(A x, lo, hi, shape of A x) when `c` says that A x, affine in `params`, lies in a box:
    A x <= c, A x >= c or abs(A x) <= c with c constant (either side first); lo or hi is None
    where the box is unbounded."""
    if c.op == "==":
        return None
    small, big = (c.lhs, c.rhs) if c.op in ("<=", "<") else (c.rhs, c.lhs)     # small <= big
    upper, lower = const_value(big, program), const_value(small, program)
    if upper is not None and lower is None:
        if isinstance(small, ir.Apply) and small.fn == "abs" and upper >= 0:
            v, lo, hi = small.args[0], ir.Apply("neg", (big,)), big
        else:
            v, lo, hi = small, None, big
    elif lower is not None and upper is None:
        v, lo, hi = big, small, None
    else:
        return None
    shape = affine_shape(v, program, params)
    if shape is None or not depends_on(v, program, set(params)):
        return None
    return v, lo, hi, shape


def projection(v: ir.Node, lo: ir.Node | None, hi: ir.Node | None) -> ir.Node:
    """The projection onto [lo, hi], elementwise: the proximal map of the box's indicator."""
    if lo is not None:
        v = ir.Apply("max", (v, lo))
    return ir.Apply("min", (v, hi)) if hi is not None else v


def _schedule(ctx: Context, z: str, shape, z_step_of, loc):
    """The new variable z, the weight β and its schedule: (decls, β, auxiliary updates, note)."""
    beta0 = _number_option(ctx, "beta", DEFAULTS["beta"], 1e-12, "a positive number")
    growth = _number_option(ctx, "growth", DEFAULTS["growth"], 1.0, "a number >= 1")
    beta_max = _number_option(ctx, "beta_max", BETA_MAX_RANGE * beta0, beta0, "a number >= beta")
    beta = fresh(used_names(ctx.program) | {z}, "beta")
    bref = ir.Ref(beta, "param")
    z_step = z_step_of(bref)
    schedule = ir.Apply("min", (ir.Apply("mul", (ir.Num(growth), bref)), ir.Num(beta_max)))
    decls = (ir.Param(z, tuple(shape), None, loc=loc), ir.Param(beta, (), ir.Num(beta0), loc=loc))
    note = (f"x-step: player {ctx.player.name}'s gradient step on the smooth part; z-step (exact, after every step): "
            f"{z} <- {show(z_step)}; schedule: {beta} <- {show(schedule)} after every step, from {beta} = {number(beta0)}")
    return decls, bref, (("update", (beta, schedule)), ("update", (z, z_step))), note


def _coupling(beta: ir.Node, v: ir.Node, z: ir.Node) -> ir.Node:
    """β/2·‖v − z‖²."""
    return ir.Apply("mul", (ir.Apply("div", (beta, ir.Num(2))), ir.Apply("sumsq", (ir.Apply("sub", (v, z)),))))


def split_box(node: ir.Constraint, ctx: Context) -> Rewrite | None:
    """`subject to A x in [lo, hi]` → the penalty β/2·‖A x − z‖², z ← the projection of A x."""
    box = box_form(node, ctx.program, ctx.player.params)
    if box is None:
        return None
    v, lo, hi, shape = box
    z = fresh(used_names(ctx.program), "z")
    zref = ir.Ref(z, "param")
    decls, beta, updates, note = _schedule(ctx, z, shape, lambda b: projection(v, lo, hi), node.loc)
    bounds = f"[{show(lo) if lo is not None else '-inf'}, {show(hi) if hi is not None else 'inf'}]"
    conditions = (
        f"the indicator of the box {bounds} has the projection as its proximal map: {show(projection(ir.Ref('v'), lo, hi))}",
        f"A x = {show(v)} is affine in {', '.join(ctx.player.params)}",
        f"min over {z} in the box of the penalty is {beta.name}/2 * dist(A x, box)^2: 0 where the constraint holds, "
        f"rising to the indicator (+inf) elsewhere as {beta.name} -> inf (a penalty: the split objective approaches the constrained one from below)",
    )
    return Rewrite(_coupling(beta, v, zref), "~", conditions, decls=decls,
                   auxiliary=updates + (("split", (z, beta.name, "box")),), note=note)


def half_quadratic(node: ir.Node, ctx: Context) -> Rewrite | None:
    """k·g(A x) → k·g(z) + β/2·‖A x − z‖², z a new variable set after every step to the
    exact minimiser prox_{(k/β)·g}(A x), β ← min(growth·β, beta_max) after every step; a
    box constraint on A x → β/2·‖A x − z‖², z ← the projection of A x onto the box.

    Relation `~`: min over z of the new term is the Moreau envelope of k·g at A x (of the
    box's indicator), at most the original and equal to it as β → ∞ (a relaxation from
    below, exact in the limit).
    """
    if not ctx.forced:
        return None
    if isinstance(node, ir.Constraint):
        return split_box(node, ctx)
    hit = candidate(node, ctx)
    if hit is None:
        if _no_prox(node, ctx) and linear_path(ctx.path, ctx.program) and not _applies_somewhere(ctx):
            known = ", ".join(sorted(PROX_FUNCTIONS))
            raise AttractorError(f"half_quadratic: {show(node)} has no known proximal map (known: {known}); "
                                 "the rule splits a term k * g(A x) whose g has one", node.loc)
        return None
    k, g, v, shape = hit
    if const_value(k, ctx.program) <= 0:
        return None
    z = fresh(used_names(ctx.program), "z")
    zref = ir.Ref(z, "param")
    decls, bref, updates, note = _schedule(ctx, z, shape, lambda b: prox_node(g.fn, v, ir.Apply("div", (k, b))), node.loc)
    beta = bref.name
    kept = g.with_children((zref,))
    weighted_g = kept if const_value(k, ctx.program) == 1 and isinstance(k, ir.Num) else ir.Apply("mul", (k, kept))
    replacement = ir.Apply("add", (weighted_g, _coupling(bref, v, zref)), loc=node.loc)
    conditions = (
        f"{g.fn} has a known proximal map (SymPy): prox_(t*{g.fn})(v) = {derive_prox(g.fn)}",
        f"A x = {show(v)} is affine in {', '.join(ctx.player.params)}; the term enters linearly with weight {show(k)} > 0",
        f"min over {z} of the new term is the Moreau envelope of {show(k)} * {g.fn} at A x: "
        f"<= the original, and -> it as {beta} -> inf (the split objective approaches the original from below)",
    )
    return Rewrite(replacement, "~", conditions, decls=decls, auxiliary=updates + (("split", (z, beta, g.fn)),), note=note)


HALF_QUADRATIC = legacy_rule("half_quadratic", "", half_quadratic, options=("beta", "growth", "beta_max"))


CLAIMS[HALF_QUADRATIC.name] = lambda c, program: box_form(c, program, program.players[0].params) is not None


class SplittingPass(RulePass):
    """The half_quadratic rule wherever it applies in the losses, then on the box constraints
    it claimed from the Lagrangian (with a `violation` report); then the training defaults of
    the module docstring where the `train` line is silent (Adam, cosine-decaying step)."""

    def apply(self, program: ir.Program, plan) -> tuple[ir.Program, list[Step]]:
        via = plan.via
        program, steps = super().apply(program, plan)
        if via is not None and via.name == HALF_QUADRATIC.name and program.constraints:
            program, boxed = self._boxes(program, via)
            steps += boxed
        if steps:
            steps[-1] = dataclasses.replace(steps[-1], note=steps[-1].note + training_text(program.train, TRAINING))
            program = dataclasses.replace(program, train=fill_training(program.train, TRAINING))
        return program, steps


    def _boxes(self, program: ir.Program, via: ir.RuleRef) -> tuple[ir.Program, list[Step]]:
        theta = program.players[0]
        sign = 1 if theta.sense == "min" else -1
        steps, worst = [], None
        for c in program.constraints:
            rw = HALF_QUADRATIC(c, Context(program, theta, 1, dict(via.options), True, None))
            loss = ir.Apply("add" if sign > 0 else "sub", (theta.loss, rw.node))
            theta = dataclasses.replace(theta, loss=loss)
            program = dataclasses.replace(program, decls=program.decls + rw.decls, auxiliary=program.auxiliary + rw.auxiliary,
                                          constraints=tuple(k for k in program.constraints if k is not c),
                                          players=(theta, *program.players[1:]))
            kind, expr = standard_form(c)
            v = violation(kind, expr, c.shape)
            worst = v if worst is None else ir.Apply("max", (worst, v))
            steps.append(Step(HALF_QUADRATIC.name, rw.relation, theta.name, constraint_text(c), show(rw.node), show(loss),
                              tuple(f"param {d.name} : {shape_text(d.shape)}" + (f" = {show(d.init)}" if d.init else "") for d in rw.decls),
                              rw.conditions, rw.note, loss))
        report = ir.Report(fresh(used_names(program), "violation"), worst)
        return dataclasses.replace(program, reports=program.reports + (report,)), steps


PASSES: tuple = (SplittingPass("splitting", (HALF_QUADRATIC,), "splitting"),)


# ---- certificates --------------------------------------------------------------------------

INSTANCES = {"norm1": "param w : real[8]\nminimize sumsq(w - 1) + 0.3 * norm1(diff(w)) via half_quadratic\n",
             "sumsq": "param w : real[8]\nminimize sumsq(w - 1) + 0.3 * sumsq(diff(w)) via half_quadratic\n",
             "box": "param w : real[8]\nminimize sumsq(w - 1) via half_quadratic\nsubject to abs(diff(w)) <= 0.3\n"}


def _loss_before(prog, step) -> ir.Node:
    """The step's player's loss just before `step`."""
    steps = prog.steps.steps
    index = next(i for i, s in enumerate(steps) if s is step)
    earlier = [s.node for s in steps[:index] if s.player == step.player]
    return earlier[-1] if earlier else next(p.loss for p in prog.typed.players if p.name == step.player)


def _alone(prog, player: ir.Player, loss: ir.Node, reports=()):
    """The program's module with `player` alone, its loss `loss`, and only `reports`."""
    return dataclasses.replace(prog, program=dataclasses.replace(
        prog.program, players=(dataclasses.replace(player, loss=loss, prox=()),), auxiliary=(), reports=reports)).build()


def split_of(prog, step) -> tuple[str, str, str]:
    """(z, β, kind of g or "box") of a half_quadratic step of a compiled program."""
    splits = [v for k, v in prog.program.auxiliary if k == "split"]
    return splits[[s for s in prog.steps.steps if s.rule == HALF_QUADRATIC.name].index(step)]


class _Split:
    """One split of a compiled program, at random parameters: the player's loss just before
    and just after the step, and the z-step, all emitted and jitted."""

    def __init__(self, prog, step, seed: int):
        import jax
        self.rng = np.random.default_rng(seed)
        self.player = next(p for p in prog.program.players if p.name == step.player)
        self.z, self.beta, _ = split_of(prog, step)
        self.moving = [n for n in self.player.params if isinstance(prog.program.decl(n), ir.Param)]
        mod = prog.build()
        self.data = prog.load_data()
        self.batch = mod.full_batch(self.data)
        self.key = jax.random.PRNGKey(seed)
        self.z_step = dict(mod.UPDATES)[self.z]
        self.new, self.old = (jax.jit(lambda ps, m=_alone(prog, self.player, loss): m.LOSSES[self.player.name](ps, self.key, self.batch))
                              for loss in (step.node, _loss_before(prog, step)))
        self.init = mod.init(self.key)
        self.beta0 = float(self.init[self.beta])
        self.betas = self.beta0 * np.array([1.0, 10.0, 100.0, 1000.0])

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
        return all(float(self.new({**at, self.z: jnp.asarray(project(np.asarray(at[self.z]) + self.rng.normal(0, 0.05, size=np.shape(at[self.z]))), jnp.float32)}))
                   >= value - 1e-6 * (1 + abs(value)) for _ in range(10))


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
    c = next(c for c in prog.typed.constraints if constraint_text(c) == step.before)
    _, lo, hi, _ = box_form(c, prog.typed, split.player.params)
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


@certificate("half_quadratic")
def certify_half_quadratic(prog, step, seed: int) -> list[Certificate]:
    """The envelope facts on the program at random parameters (its first split), and on a
    random instance of every g with a known proximal map and of a box."""
    from compiler.driver.api import compile_source
    checks = {"box": box_certificates}
    out = checks.get(split_of(prog, step)[2], envelope_certificates)(prog, step, seed, "the program")
    for kind, source in INSTANCES.items():
        instance = compile_source(source, filename="<certificate>")
        label = f"{kind} on a random instance"
        out += checks.get(kind, envelope_certificates)(instance, instance.steps.steps[0], seed, label)
    return out
