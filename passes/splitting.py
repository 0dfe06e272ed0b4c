"""The splitting rule family: half-quadratic splitting of a non-smooth term of a linear map.

    f(x) + k·g(A x)   ~   f(x) + k·g(z) + β/2·‖A x − z‖²,    β raised on a schedule

for g with a known proximal map (norm1, sumsq: the table and the maps SymPy derives in
passes/relaxation.py) and A x affine in the player's parameters (sums, differences and
constant multiples of parameters, `diff`, `sum`, `mean`). Only when asked for
(`via half_quadratic(beta=…, growth=…, beta_max=…)`). A non-smooth g (norm1) is split
wherever it appears; a smooth one (sumsq) only as a penalty with its weight written,
`k * sumsq(A x)`, so that a bare sumsq(·) fit term stays with f in the x-step.

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
from compiler.analysis import depends_on
from compiler.builtins import FUNCTIONS
from compiler.certify import Certificate, certificate
from compiler.checker import broadcast
from compiler.diagnostics import AttractorError
from compiler.pipeline import Context, Rewrite, Rule, RulePass, Step
from compiler.printer import number, show
from compiler.strategies import ancestors, const_value, positions
from passes.lagrangian import fill_training, fresh, training_text, used_names
from passes.relaxation import PROX_FUNCTIONS, T, V, derive_prox

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
    """Has the rule split a term of this program already, or can it split one of the loss?"""
    if any(k == "split" for k, _ in ctx.program.auxiliary):
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


def half_quadratic(node: ir.Node, ctx: Context) -> Rewrite | None:
    """k·g(A x) → k·g(z) + β/2·‖A x − z‖², z a new variable set after every step to the
    exact minimiser prox_{(k/β)·g}(A x), β ← min(growth·β, beta_max) after every step.

    Relation `~`: min over z of the new term is the Moreau envelope of k·g at A x, at most
    k·g(A x) and equal to it as β → ∞ (a relaxation from below, exact in the limit).
    """
    if not ctx.forced:
        return None
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
    beta0 = _number_option(ctx, "beta", DEFAULTS["beta"], 1e-12, "a positive number")
    growth = _number_option(ctx, "growth", DEFAULTS["growth"], 1.0, "a number >= 1")
    beta_max = _number_option(ctx, "beta_max", BETA_MAX_RANGE * beta0, beta0, "a number >= beta")
    used = used_names(ctx.program)
    z = fresh(used, "z")
    beta = fresh(used | {z}, "beta")
    zref, bref = ir.Ref(z, "param"), ir.Ref(beta, "param")
    kept = g.with_children((zref,))
    coupling = ir.Apply("mul", (ir.Apply("div", (bref, ir.Num(2))), ir.Apply("sumsq", (ir.Apply("sub", (v, zref)),))))
    weighted_g = kept if const_value(k, ctx.program) == 1 and isinstance(k, ir.Num) else ir.Apply("mul", (k, kept))
    replacement = ir.Apply("add", (weighted_g, coupling), loc=node.loc)
    z_step = prox_node(g.fn, v, ir.Apply("div", (k, bref)))
    schedule = ir.Apply("min", (ir.Apply("mul", (ir.Num(growth), bref)), ir.Num(beta_max)))
    decls = (ir.Param(z, tuple(shape), None, loc=node.loc), ir.Param(beta, (), ir.Num(beta0), loc=node.loc))
    conditions = (
        f"{g.fn} has a known proximal map (SymPy): prox_(t*{g.fn})(v) = {derive_prox(g.fn)}",
        f"A x = {show(v)} is affine in {', '.join(ctx.player.params)}; the term enters linearly with weight {show(k)} > 0",
        f"min over {z} of the new term is the Moreau envelope of {show(k)} * {g.fn} at A x: "
        f"<= the original, and -> it as {beta} -> inf (the split objective approaches the original from below)",
    )
    note = (f"x-step: player {ctx.player.name}'s gradient step on the smooth part; z-step (exact, after every step): "
            f"{z} <- {show(z_step)}; schedule: {beta} <- {show(schedule)} after every step, from {beta} = {number(beta0)}")
    return Rewrite(replacement, "~", conditions, decls=decls,
                   auxiliary=(("update", (beta, schedule)), ("update", (z, z_step)), ("split", (z, beta))), note=note)


HALF_QUADRATIC = Rule("half_quadratic", "", half_quadratic, options=("beta", "growth", "beta_max"))


class SplittingPass(RulePass):
    """The half_quadratic rule wherever it applies; then the training defaults of the module
    docstring where the `train` line is silent (Adam with a cosine-decaying step, 3000 steps)."""

    def apply(self, program: ir.Program, via: ir.RuleRef | None) -> tuple[ir.Program, list[Step]]:
        program, steps = super().apply(program, via)
        if steps:
            note = f"; training where the train line is silent: {training_text(program.train, TRAINING)}"
            steps[-1] = dataclasses.replace(steps[-1], note=steps[-1].note + note)
            program = dataclasses.replace(program, train=fill_training(program.train, TRAINING))
        return program, steps


PASSES: tuple = (SplittingPass("splitting", (HALF_QUADRATIC,), "splitting"),)


# ---- certificates --------------------------------------------------------------------------

INSTANCE = "param w : real[8]\nminimize sumsq(w - 1) + 0.3 * {g}(diff(w)) via half_quadratic\n"


def _loss_before(prog, step) -> ir.Node:
    """The step's player's loss just before `step`."""
    steps = prog.steps.steps
    index = next(i for i, s in enumerate(steps) if s is step)
    earlier = [s.node for s in steps[:index] if s.player == step.player]
    return earlier[-1] if earlier else next(p.loss for p in prog.typed.players if p.name == step.player)


def _loss_function(prog, player: ir.Player, loss: ir.Node, key, batch):
    """The jitted loss `loss` of `player`, emitted alone in the program's module."""
    import jax
    alone = dataclasses.replace(prog, program=dataclasses.replace(
        prog.program, players=(dataclasses.replace(player, loss=loss, prox=()),), auxiliary=()))
    mod = alone.build()
    return jax.jit(lambda ps: mod.LOSSES[player.name](ps, key, batch))


def envelope_certificates(prog, step, seed: int, label: str) -> list[Certificate]:
    """At random parameters, for β growing over four decades: the split objective with the
    closed-form z is <= the original and rises to it (gap falling like 1/β); and the
    closed-form z is the minimiser (random perturbations of z never lower the objective)."""
    import jax
    import jax.numpy as jnp
    rng = np.random.default_rng(seed)
    player = next(p for p in prog.program.players if p.name == step.player)
    splits = [v for k, v in prog.program.auxiliary if k == "split"]
    z, beta = splits[[s for s in prog.steps.steps if s.rule == HALF_QUADRATIC.name].index(step)]
    mod = prog.build()
    batch = mod.full_batch(prog.load_data())
    key = jax.random.PRNGKey(seed)
    updates = dict(mod.UPDATES)
    new_loss, old_loss = (_loss_function(prog, player, loss, key, batch) for loss in (step.node, _loss_before(prog, step)))
    params = mod.init(key)
    for name in player.params:
        if isinstance(prog.program.decl(name), ir.Param):
            params[name] = jnp.asarray(rng.normal(size=np.shape(params[name])), jnp.float32)
    beta0 = float(params[beta])
    betas = beta0 * np.array([1.0, 10.0, 100.0, 1000.0])
    exact = float(old_loss(params))
    gaps, minimal = [], True
    for b in betas:
        at = {**params, beta: jnp.asarray(b, jnp.float32)}
        at[z] = updates[z](at, key, batch)
        value = float(new_loss(at))
        gaps.append(exact - value)
        for _ in range(10):
            moved = {**at, z: at[z] + jnp.asarray(rng.normal(0, 0.05, size=np.shape(at[z])), jnp.float32)}
            minimal &= float(new_loss(moved)) >= value - 1e-6 * (1 + abs(value))
    gaps = np.asarray(gaps)
    tol = 1e-6 * (1 + abs(exact))
    text = ", ".join(f"beta={b:g}: {g:.3g}" for b, g in zip(betas, gaps))
    return [
        Certificate("half_quadratic", f"{label}: split objective <= original, approaching it as beta grows (gap ~ 1/beta)",
                    f"original {exact:.6g}; original - split {text}",
                    bool(np.all(gaps >= -tol) and np.all(np.diff(gaps) <= tol) and gaps[-1] <= gaps[0] / 100 + tol)),
        Certificate("half_quadratic", f"{label}: the closed-form z-step is the exact minimiser over z",
                    "40 random perturbations of z (4 values of beta) never lower the split objective", bool(minimal)),
    ]


@certificate("half_quadratic")
def certify_half_quadratic(prog, step, seed: int) -> list[Certificate]:
    """The envelope facts on the program at random parameters, and on a random instance of
    every g with a known proximal map."""
    from compiler.api import compile_source
    out = envelope_certificates(prog, step, seed, "the program")
    for kind in sorted(PROX_FUNCTIONS):
        instance = compile_source(INSTANCE.format(g=kind), filename="<certificate>")
        out += envelope_certificates(instance, instance.steps.steps[0], seed, f"0.3 * {kind}(diff(w)) on a random instance")
    return out
