"""Certificates of the lagrangian rule: weak duality and the saddle value on random constrained
least squares (exact optima in closed form), and the pointwise facts behind the saddle on the
program itself. Loaded by the `check` driver only (`CERTIFICATES`)."""
from __future__ import annotations

import numpy as np

from compiler import ir
from compiler.ir.printer import number
from compiler.rewrite.certificate import Certificate
from passes.lagrangian.lagrangian import PLAYER

INSTANCES = {
    "ineq": "data x : real[{d}], y : real\nparam w : real[{d}]\nminimize E[(x, y) ~ data] (dot(w, x) - y)^2\nsubject to sumsq(w) <= {c}\n",
    "eq": "data x : real[{d}], y : real\nparam w : real[{d}]\nminimize E[(x, y) ~ data] (dot(w, x) - y)^2\nsubject to sum(w) == {c}\n",
}


def exact_ball_least_squares(X: np.ndarray, y: np.ndarray, radius2: float) -> tuple[float, float]:
    """(min mean((Xw - y)^2) subject to |w|^2 <= radius2, its multiplier μ) by bisection on μ
    in (XᵀX/n + μI) w = Xᵀy/n, the stationarity condition of f + μ(|w|^2 - radius2)."""
    n, d = X.shape
    G, b = X.T @ X / n, X.T @ y / n
    w_of = lambda mu: np.linalg.solve(G + mu * np.eye(d), b)
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
    mult = prog.derivation.steps[0].fact("multiplier")
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
    """The name of the report the pass added for the largest violation (a fact of its last step)."""
    return next(s.fact("violation") for s in prog.derivation.steps if s.rule == "lagrangian" and s.fact("violation"))


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
        Certificate("lagrangian", "sup over the multipliers of L is +inf where a constraint fails: the terms grow linearly, "
                    "at rate |violation|^2, along the violated entries",
                    f"{seen['infeasible']} infeasible random points; largest relative error of the rate {worst_growth:.1e}",
                    bool(growth_ok)),
    ]


def certify_lagrangian(prog, step, seed: int) -> list[Certificate]:
    """Weak duality and the saddle value on random constrained least squares (a ball and a
    linear equality, exact optima in closed form); on the program itself, the pointwise
    facts behind the saddle: L ≤ f where feasible, sup over the multipliers = +∞ elsewhere."""
    return _weak_duality("ineq", seed) + _weak_duality("eq", seed) + _pointwise(prog, seed)


CERTIFICATES = {"lagrangian": certify_lagrangian}
