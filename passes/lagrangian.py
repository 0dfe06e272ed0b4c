"""The lagrangian rule family: constraints become a multiplier player.

    minimize f(θ)  subject to  g_i(θ) <= 0,  h_j(θ) == 0
      =  min_θ max_{λ >= 0, ν}  L(θ, λ, ν),    L = f + Σ λ_i·g_i + Σ ν_j·h_j

For fixed θ, sup over λ ≥ 0 of λ·g is 0 when g ≤ 0 and +∞ otherwise (sup over ν of ν·h is 0
when h = 0), so the sup over the multipliers of L is f on the feasible set and +∞ off it: the
min-max is the constrained problem (relation `=` at the saddle point). Weak duality: for every
λ ≥ 0 and ν, the dual value d(λ, ν) = min_θ L(θ, λ, ν) is at most the constrained minimum,
because L ≤ f at every feasible θ (dual value ≤ primal value). Vector-valued constraints hold
elementwise, with one multiplier per entry. `g >= c` is `c - g <= 0`; a strict `<` is relaxed
to its closure `<=` (the infimum is the same).

Dynamics. Plain gradient descent-ascent on L rotates around the saddle (the multiplier sees
only the linear term λ·g, so the game is not strongly concave in λ). The rule therefore uses
the augmented Lagrangian (Hestenes, Powell, Rockafellar) with ρ > 0 (`lagrangian(rho=…)`,
default 1; rho=0 is the classical L):

    λ·g  →  λ·s + ρ/2·s²,   s = max(g, -λ/ρ)        ν·h  →  ν·h + ρ/2·h²

The sup over λ ≥ 0 (ν) of the new term is again 0 on the feasible set and +∞ off it, and the
term is ≤ 0 at every feasible θ, so the saddle point, its value and weak duality are
unchanged; the added curvature ρ·∇g∇gᵀ damps the rotation. The multipliers ascend (a max
player), λ ≥ 0 is kept by projecting after every step (the proximal map of the indicator of
λ ≥ 0, `nonneg`), and where the `train` line is silent both players take Adam steps of size
0.01 decaying to zero (cosine) over 3000 steps, moving simultaneously: with a decaying
step, simultaneous descent-ascent settles on the saddle instead of circling it.

The rule adds reports: every multiplier (the largest magnitude of a vector multiplier) and
`violation`, the largest violation max(g, 0) or |h| over all constraints and entries.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from compiler import ir
from compiler.driver.check import Certificate, certificate
from compiler.ir.diagnostics import AttractorError
from compiler.rewrite.manager import STAGES
from compiler.rewrite.rule import Context, Rewrite, Step, legacy_rule
from compiler.ir.printer import number, shape_text, show
from compiler.rewrite.building import add, fill_training, fresh, mul, standard_form, training_text, used_names, violation
from compiler.rewrite.manager import constraint_text

PLAYER = "multipliers"
DEFAULT_RHO = 1.0
TRAINING = (("steps", 3000), ("optimizer", ("adam", (("lr", 0.01),))), ("schedule", "cosine"),
            ("dynamics", "simultaneous"))


# ---- building blocks ---------------------------------------------------------------------

def _pair(mult: ir.Node, value: ir.Node, shape) -> ir.Node:
    """mult·value for a scalar constraint, sum(mult * value) for a vector one."""
    return mul(mult, value) if not shape else ir.Apply("sum", (mul(mult, value),))


def _square(value: ir.Node, shape) -> ir.Node:
    return ir.Apply("pow", (value, ir.Num(2))) if not shape else ir.Apply("sumsq", (value,))


def multiplier_term(kind: str, expr: ir.Node, mult: str, shape, rho: float, local: str) -> ir.Node:
    """λ·g (ν·h) for rho = 0; else the augmented λ·s + ρ/2·s², s = max(g, -λ/ρ) (ν·h + ρ/2·h²),
    with s (h) bound once by a Let named `local`."""
    lam = ir.Ref(mult, "param")
    if rho == 0:
        return _pair(lam, expr, shape)
    s = ir.Ref(local, "local")
    floor = ir.Apply("neg", (lam,)) if rho == 1 else ir.Apply("div", (ir.Apply("neg", (lam,)), ir.Num(rho)))
    value = ir.Apply("max", (expr, floor)) if kind == "ineq" else expr
    return ir.Let(local, value, add(_pair(lam, s, shape), mul(ir.Num(rho / 2), _square(s, shape))))


def _rho(ctx: Context, loc) -> float:
    rho = ctx.option("rho", DEFAULT_RHO)
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or rho < 0 or not np.isfinite(rho):
        raise AttractorError("lagrangian(rho=...) needs a number >= 0 (0: the plain Lagrangian)", loc)
    return float(rho)


# ---- the rule -----------------------------------------------------------------------------

def lagrangian(node: ir.Node, ctx: Context) -> Rewrite | None:
    """`subject to g <= 0` → the multiplier term λ·g of L = f + Σλ·g + Σν·h, λ ≥ 0 a new
    parameter of the multiplier player (h == 0 → ν·h, ν free); augmented when rho > 0.

    Identity: sup over λ ≥ 0 of the term is 0 where g ≤ 0 and +∞ elsewhere, so
    min_θ max_λ L is the constrained minimum (`=` at the saddle). Bound: for every λ ≥ 0 the
    dual value min_θ L is ≤ the constrained minimum (weak duality: original >= dual).
    """
    if not isinstance(node, ir.Constraint):
        return None
    program = ctx.program
    if not ctx.player.params:
        raise AttractorError("a constraint needs parameters that move, but an estimate has none", node.loc)
    rho = _rho(ctx, program.objective.via.loc if ctx.forced else node.loc)
    kind, expr = standard_form(node)
    index = next(i for i, c in enumerate(program.constraints, 1) if c is node)
    used = used_names(program)
    mult = fresh(used, f"{'lambda' if kind == 'ineq' else 'nu'}_{index}")
    local = fresh(used | {mult}, f"{'s' if kind == 'ineq' else 'h'}_{index}")
    term = multiplier_term(kind, expr, mult, node.shape, rho, local)
    decl = ir.Param(mult, tuple(node.shape), None, owner=PLAYER, loc=node.loc)
    where = "g" if kind == "ineq" else "h"
    form = f"{where} = {show(expr)}" + (f", elementwise over {shape_text(node.shape)} (one multiplier per entry)" if node.shape else "")
    conditions = [
        (f"sup over {mult} >= 0 of the term is 0 where g <= 0 and +inf elsewhere: min-max = the constrained minimum (= at the saddle)"
         if kind == "ineq" else
         f"sup over {mult} of the term is 0 where h == 0 and +inf elsewhere: min-max = the constrained minimum (= at the saddle)"),
        f"weak duality: for every {mult}{' >= 0' if kind == 'ineq' else ''}, min over {', '.join(ctx.player.params)} of L <= the constrained minimum (dual value <= primal value)",
    ]
    if kind == "ineq":
        conditions.append(f"{mult} >= 0 kept by projection after every ascent step (proximal map of the indicator of {mult} >= 0)")
    if node.op in ("<", ">"):
        conditions.append(f"strict {node.op} relaxed to its closure (same infimum)")
    note = form + "; " + (f"augmented Lagrangian, rho = {number(rho)}: {'λ·g → λ·s + ρ/2·s², s = max(g, -λ/ρ)' if kind == 'ineq' else 'ν·h → ν·h + ρ/2·h²'}"
            " — the same saddle point, value and weak duality, with curvature that damps the rotation of gradient descent-ascent"
            if rho > 0 else "plain Lagrangian (rho = 0): gradient descent-ascent may circle the saddle; rho > 0 damps it")
    return Rewrite(term, "=", tuple(conditions), decls=(decl,), note=note)


LAGRANGIAN = legacy_rule("lagrangian", "constraint", lagrangian, options=("rho",))

CLAIMS: dict = {}
"""rule name -> predicate(constraint, program): constraints that rule takes instead of the
Lagrangian when it is forced with `via` (half_quadratic splits a box on a linear map)."""


def claimed(c: ir.Constraint, program: ir.Program, via: ir.RuleRef | None) -> bool:
    return via is not None and via.name in CLAIMS and CLAIMS[via.name](c, program)


class LagrangianPass:
    """Every constraint becomes a multiplier term of the first player's loss; one new player,
    `multipliers`, maximises the multiplier terms (minimises them for a maximisation), with
    λ ≥ 0 projected after each step. Adds the multiplier and violation reports, and the
    training defaults of the module docstring where the `train` line is silent."""

    name = "lagrangian"
    stage = STAGES["lagrangian"]
    rules = (LAGRANGIAN,)

    def accepts(self, program: ir.Program, plan) -> bool:
        via = plan.via
        return any(not claimed(c, program, via) for c in program.constraints)

    def apply(self, program: ir.Program, plan) -> tuple[ir.Program, list[Step]]:
        via = plan.via
        forced = via is not None and via.name == LAGRANGIAN.name
        theta = program.players[0]
        sign = 1 if theta.sense == "min" else -1
        steps: list[Step] = []
        loss, terms, mults, prox, worst = theta.loss, None, [], [], None
        left = tuple(c for c in program.constraints if claimed(c, program, via))
        for c in (c for c in program.constraints if c not in left):
            ctx = Context(program, theta, 1, dict(via.options) if forced else {}, forced, None)
            rw = LAGRANGIAN(c, ctx)
            decl = rw.decls[0]
            kind, expr = standard_form(c)
            loss = add(loss, rw.node, sign)
            terms = rw.node if terms is None else add(terms, rw.node)
            mults.append(decl.name)
            if kind == "ineq":
                prox.append((decl.name, "nonneg", ir.Num(1)))
            program = dataclasses.replace(program, decls=program.decls + rw.decls)
            used = used_names(program)
            ref = ir.Ref(decl.name, "param")
            report = (ir.Report(decl.name, ref) if not c.shape else
                      ir.Report(fresh(used, f"{decl.name}_max"), ir.Apply("amax", (ir.Apply("abs", (ref,)),))))
            program = dataclasses.replace(program, reports=program.reports + (report,))
            v = violation(kind, expr, c.shape)
            worst = v if worst is None else ir.Apply("max", (worst, v))
            steps.append(Step(LAGRANGIAN.name, rw.relation, theta.name, constraint_text(c), show(rw.node), show(loss),
                              (f"param {decl.name} : {shape_text(decl.shape)}    # multiplier, player {PLAYER}",),
                              rw.conditions, rw.note, loss))
        player = ir.Player(PLAYER, tuple(mults), "max" if sign > 0 else "min",
                           terms if sign > 0 else ir.Apply("neg", (terms,)), prox=tuple(prox))
        report = ir.Report(fresh(used_names(program), "violation"), worst)
        train = fill_training(program.train, TRAINING)
        last = steps[-1]
        steps[-1] = dataclasses.replace(
            last, introduces=last.introduces + (f"player {PLAYER} ({player.sense} over {', '.join(mults)}): {show(player.loss)}",),
            note=last.note + training_text(program.train, TRAINING))
        theta = dataclasses.replace(theta, loss=loss)
        program = dataclasses.replace(program, players=(theta, *program.players[1:], player), constraints=left,
                                      reports=program.reports + (report,), train=train)
        return program, steps


PASSES: tuple = (LagrangianPass(),)


# ---- certificates --------------------------------------------------------------------------

INSTANCES = {
    "ineq": "data x : real[{d}], y : real\nparam w : real[{d}]\nminimize E[(x, y) ~ data] (dot(w, x) - y)^2\nsubject to sumsq(w) <= {c}\n",
    "eq": "data x : real[{d}], y : real\nparam w : real[{d}]\nminimize E[(x, y) ~ data] (dot(w, x) - y)^2\nsubject to sum(w) == {c}\n",
}


def exact_ball_least_squares(X: np.ndarray, y: np.ndarray, radius2: float) -> tuple[float, float]:
    """(min mean((Xw - y)^2) subject to |w|^2 <= radius2, its multiplier μ) by bisection on μ
    in (XᵀX/n + μI) w = Xᵀy/n, the stationarity condition of f + μ(|w|^2 - radius2)."""
    n, d = X.shape
    G, b = X.T @ X / n, X.T @ y / n
    w_of = lambda mu: np.linalg.solve(G + mu * np.eye(d), b)  # noqa: E731
    mu_lo, mu_hi = 0.0, 1.0
    if w_of(0.0) @ w_of(0.0) <= radius2:
        w = w_of(0.0)
        return float(np.mean((X @ w - y) ** 2)), 0.0
    while w_of(mu_hi) @ w_of(mu_hi) > radius2:
        mu_hi *= 2
    for _ in range(200):
        mid = (mu_lo + mu_hi) / 2
        mu_lo, mu_hi = (mid, mu_hi) if w_of(mid) @ w_of(mid) > radius2 else (mu_lo, mid)
    w = w_of(mu_hi)
    return float(np.mean((X @ w - y) ** 2)), mu_hi


def exact_sum_least_squares(X: np.ndarray, y: np.ndarray, total: float) -> tuple[float, float]:
    """(min mean((Xw - y)^2) subject to sum(w) = total, its multiplier ν): the KKT system
    2(XᵀX/n) w + ν 1 = 2 Xᵀy/n, 1ᵀw = total."""
    n, d = X.shape
    K = np.block([[2 * X.T @ X / n, np.ones((d, 1))], [np.ones((1, d)), np.zeros((1, 1))]])
    sol = np.linalg.solve(K, np.concatenate([2 * X.T @ y / n, [total]]))
    w = sol[:d]
    return float(np.mean((X @ w - y) ** 2)), float(sol[d])


def dual_value(mod, params: dict, batch, moving: str) -> float:
    """min over `moving` of the first player's loss, the other parameters held (L-BFGS on a
    convex instance); an upper estimate of the dual value, so `dual <= primal` is certified."""
    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize
    key = jax.random.PRNGKey(0)
    loss = jax.jit(jax.value_and_grad(lambda w: mod.LOSSES["theta"]({**params, moving: w}, key, batch)))

    def f(w):
        value, grad = loss(jnp.asarray(w, jnp.float32))
        return float(value), np.asarray(grad, np.float64)
    start = np.zeros(np.shape(params[moving]))
    return float(minimize(f, start, jac=True, method="L-BFGS-B", options={"gtol": 1e-9, "ftol": 1e-15, "maxiter": 500}).fun)


def _weak_duality(kind: str, seed: int) -> list[Certificate]:
    import jax
    import jax.numpy as jnp
    from compiler.driver.api import compile_source
    rng = np.random.default_rng(seed)
    n, d = 24, 4
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    w_ls = np.linalg.lstsq(X, y, rcond=None)[0]
    c = round(0.25 * float(w_ls @ w_ls), 3) if kind == "ineq" else round(float(np.sum(w_ls)) - 1.0, 3)
    X, y = X.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)
    primal, star = exact_ball_least_squares(X, y, c) if kind == "ineq" else exact_sum_least_squares(X, y, c)
    prog = compile_source(INSTANCES[kind].format(d=d, c=number(c)), filename="<certificate>")
    mod = prog.build()
    mult = prog.program.players[-1].params[0]
    batch = mod.full_batch({"x": X, "y": y})
    params = mod.init(jax.random.PRNGKey(seed))
    scales = (0.0, 0.3, 0.7, 1.0, 1.5, 3.0)
    values = [star * s if kind == "ineq" else star + (s - 1.0) * (abs(star) + 1.0) for s in scales]
    duals = [dual_value(mod, {**params, mult: jnp.asarray(v, jnp.float32)}, batch, "w") for v in values]
    tol = 1e-5 * abs(primal)
    what = f"sumsq(w) <= {number(c)}" if kind == "ineq" else f"sum(w) == {number(c)}"
    at_star = duals[scales.index(1.0)]
    listing = ", ".join(f"{mult}={v:.3g}: {dv:.6g}" for v, dv in zip(values, duals))
    return [
        Certificate("lagrangian", f"weak duality on a random constrained least squares ({what}): dual value <= primal value for every multiplier",
                    f"primal {primal:.6g} (exact); dual values (min over w of L, L-BFGS) {listing}",
                    bool(all(dv <= primal + tol for dv in duals))),
        Certificate("lagrangian", f"the saddle: at the exact multiplier {mult} = {star:.6g} the dual value is the primal value ({what})",
                    f"dual {at_star:.7g}, primal {primal:.7g}, relative gap {abs(at_star - primal) / abs(primal):.1e}",
                    bool(abs(at_star - primal) <= 1e-4 * abs(primal))),
    ]


def _violation_report(prog) -> str:
    """The name of the report the rule added for the largest violation."""
    worst = None
    handled = {s.before for s in prog.steps.steps if s.rule == LAGRANGIAN.name}
    for c in (c for c in prog.typed.constraints if constraint_text(c) in handled):
        kind, expr = standard_form(c)
        v = violation(kind, expr, c.shape)
        worst = v if worst is None else ir.Apply("max", (worst, v))
    return next(r.name for r in prog.program.reports if r.expr == worst)


def _pointwise(prog, seed: int) -> list[Certificate]:
    """On the program: at random parameters, the multiplier terms are <= 0 where the
    constraints hold (so L <= f there), and grow without bound along the violated entries."""
    import jax
    import jax.numpy as jnp
    rng = np.random.default_rng(seed)
    mod = prog.build()
    player = next(p for p in prog.program.players if p.name == PLAYER)
    theta = prog.program.players[0]
    sign = 1.0 if player.sense == "max" else -1.0
    nonneg = {p for p, kind, _ in player.prox if kind == "nonneg"}
    batch = mod.full_batch(prog.load_data())
    key = jax.random.PRNGKey(seed)
    base = mod.init(key)
    violation_name = _violation_report(prog)
    term = jax.jit(lambda ps: sign * mod.LOSSES[PLAYER](ps, key, batch))
    slope = jax.jit(jax.grad(lambda m, ps: sign * mod.LOSSES[PLAYER]({**ps, **m}, key, batch)))
    feasible_ok, growth_ok, seen = True, True, {"feasible": 0, "infeasible": 0}
    worst_feasible, worst_growth = -np.inf, 0.0
    zero = {m: jnp.zeros_like(base[m]) for m in player.params}
    own = [n for n in theta.params if isinstance(prog.program.decl(n), ir.Param)]
    penalty = jax.jit(jax.value_and_grad(lambda t, ps: sign * mod.LOSSES[PLAYER]({**ps, **t}, key, batch)))

    def feasible_point(params):
        """Minimise the penalty (the terms at zero multipliers: 1/2 |violation|^2) by L-BFGS."""
        from jax.flatten_util import ravel_pytree
        from scipy.optimize import minimize
        flat, unravel = ravel_pytree({n: params[n] for n in own})

        def f(v):
            value, grad = penalty(unravel(jnp.asarray(v, jnp.float32)), params)
            return float(value), np.asarray(ravel_pytree(grad)[0], np.float64)
        best = minimize(f, np.asarray(flat, np.float64), jac=True, method="L-BFGS-B",
                        options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 500}).x
        return {**params, **unravel(jnp.asarray(best, jnp.float32))}

    def check_feasible(params, viol):
        nonlocal feasible_ok, worst_feasible
        seen["feasible"] += 1
        for _ in range(8):
            draws = {m: jnp.asarray(np.abs(rng.exponential(3.0, size=np.shape(base[m]))) if m in nonneg
                                    else rng.normal(0, 3.0, size=np.shape(base[m])), jnp.float32) for m in player.params}
            slack = viol * sum(float(jnp.sum(jnp.abs(d))) for d in draws.values())   # a near-feasible point
            value = float(term({**params, **draws}))
            worst_feasible = max(worst_feasible, value)
            feasible_ok &= value <= slack + 1e-6 * (1 + abs(value))

    for scale in np.geomspace(0.01, 3.0, 12):
        params = dict(base)
        for name in own:
            params[name] = jnp.asarray(scale * rng.normal(size=np.shape(base[name])), jnp.float32)
        params.update(zero)
        viol = mod.reports(params, key, prog.load_data())[violation_name]
        if viol <= 0:
            check_feasible(params, 0.0)
        else:
            seen["infeasible"] += 1
            grad = slope(zero, params)
            direction = {m: jnp.maximum(g, 0.0) if m in nonneg else g for m, g in grad.items()}
            norm2 = float(sum(jnp.sum(jnp.square(g)) for g in direction.values()))
            t1, t2 = 1e3, 1e4
            v1 = float(term({**params, **{m: t1 * g for m, g in direction.items()}}))
            v2 = float(term({**params, **{m: t2 * g for m, g in direction.items()}}))
            rate = (v2 - v1) / (t2 - t1)
            worst_growth = max(worst_growth, abs(rate - norm2) / norm2)
            growth_ok &= norm2 > 0 and abs(rate - norm2) <= 1e-2 * norm2
    found = ""
    if not seen["feasible"]:   # equalities: random points are never feasible; minimise the penalty to one
        for scale in (0.1, 1.0, 3.0):
            start = {**base, **zero, **{n: jnp.asarray(scale * rng.normal(size=np.shape(base[n])), jnp.float32) for n in own}}
            params = feasible_point(start)
            viol = mod.reports(params, key, prog.load_data())[violation_name]
            if viol <= 1e-4:
                check_feasible(params, viol)
        found = " (found by minimising the penalty from random starts, violation <= 1e-4)"
    return [
        Certificate("lagrangian", "L <= f where the constraints hold: the multiplier terms are <= 0 for every multiplier (weak duality, pointwise)",
                    f"{seen['feasible']} feasible random points{found} x 8 random multipliers; largest term {worst_feasible:.3g}",
                    bool(feasible_ok and seen["feasible"])),
        Certificate("lagrangian", "sup over the multipliers of L is +inf where a constraint fails: the terms grow linearly, at rate |violation|^2, along the violated entries",
                    f"{seen['infeasible']} infeasible random points; largest relative error of the rate {worst_growth:.1e}",
                    bool(growth_ok)),
    ]


@certificate("lagrangian")
def certify_lagrangian(prog, step, seed: int) -> list[Certificate]:
    """Weak duality and the saddle value on random constrained least squares (a ball and a
    linear equality, exact optima in closed form); on the program itself, the pointwise
    facts behind the saddle: L ≤ f where feasible, sup over the multipliers = +∞ elsewhere."""
    return _weak_duality("ineq", seed) + _weak_duality("eq", seed) + _pointwise(prog, seed)
