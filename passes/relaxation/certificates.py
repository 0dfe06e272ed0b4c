"""Numerical certificates of the relaxation family, loaded by `attractor check` only.

    relax_step   the surrogate lies above the 0-1 loss; the relaxed objective is above the original
    relax_l0     |u| is the convex envelope of [u != 0] on [-1, 1]; below in the box, equal at its vertices
    proximal     the emitted map is argmin_x ½(x - v)² + t g(x)
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from compiler.math.piecewise import (
    PROX_FUNCTIONS,
    S,
    T,
    V,
    X,
    derive_prox,
    step_surrogate,
)
from compiler.rewrite.certificate import Certificate, loss_module, step_losses


def _random_params(mod, draw):
    """The module's initial parameters with every declared parameter replaced by `draw(shape)`."""
    import jax
    import jax.numpy as jnp
    params = mod.init(jax.random.PRNGKey(0))
    return {k: jnp.asarray(draw(np.shape(v)), jnp.float32) if not isinstance(v, list) else v for k, v in params.items()}


def _compare_losses(prog, step, seed, draw, what, holds) -> list[Certificate]:
    """Evaluate the loss before and after `step` at random parameters; `holds(before, after)`."""
    import jax
    losses = step_losses(prog, step)
    if losses is None:
        return []
    rng = np.random.default_rng(seed)
    data = prog.load_data()
    before, after = (loss_module(prog, loss) for loss in losses)
    key = jax.random.PRNGKey(seed)
    pairs = []
    for _ in range(8):
        params = _random_params(before, lambda shape: draw(rng, shape))
        pairs.append((before.objective(params, key, data), after.objective(params, key, data)))
    failing = [p for p in pairs if not holds(*p)]
    shown = ", ".join(f"{b:.5g} -> {a:.5g}" for b, a in (failing or pairs)[:3])
    return [Certificate(step.rule, f"{what}, on the program at 8 random parameter points",
                        f"{'fails' if failing else 'before -> after'}: {shown}, ...", not failing)]


def certify_relax_step(prog, step, seed: int) -> list[Certificate]:
    """The surrogate lies above the 0-1 loss at 100000 random margins (and at its kinks); the
    relaxed objective is above the original at random parameters."""
    rng = np.random.default_rng(seed)
    phi, _ = step_surrogate(step.fact("surrogate"), False)
    s = np.concatenate([rng.normal(0, 3, 100_000), [0.0, 1.0, -1e-7, 1e-7]])
    surrogate = sp.lambdify(S, phi, "numpy")(s)
    loss = (s <= 0).astype(float)
    out = [Certificate("relax_step", f"{phi} >= [s <= 0] at 100004 random margins",
                       f"smallest gap {np.min(surrogate - loss):.3g}", bool(np.all(surrogate >= loss)))]
    return out + _compare_losses(prog, step, seed, lambda r, shape: r.normal(0, 1, shape),
                                 "original objective <= relaxed objective", lambda b, a: a >= b - 1e-5 * abs(b))


def lower_hull(u: np.ndarray, f: np.ndarray) -> np.ndarray:
    """The lower convex envelope of the points (u, f) (u sorted), evaluated at u."""
    hull: list[int] = []
    for i in range(len(u)):
        while len(hull) >= 2 and ((f[hull[-1]] - f[hull[-2]]) * (u[i] - u[hull[-2]])
                                  >= (f[i] - f[hull[-2]]) * (u[hull[-1]] - u[hull[-2]])):
            hull.pop()
        hull.append(i)
    return np.interp(u, u[hull], f[hull])


def certify_relax_l0(prog, step, seed: int) -> list[Certificate]:
    """Envelope: the lower convex hull of [u != 0] on a grid of [-1, 1] is |u|; on the program,
    the relaxed objective is below the original in the box max|w_i| <= 1 and equal to it at
    the box's vertices."""
    u = np.linspace(-1, 1, 2001)
    hull = lower_hull(u, (u != 0).astype(float))
    out = [Certificate("relax_l0", "|u| is the convex envelope of [u != 0] on [-1, 1] (lower convex hull on a "
                       "2001-point grid)", f"largest difference {np.max(np.abs(hull - np.abs(u))):.2g}",
                       bool(np.allclose(hull, np.abs(u), atol=1e-12)))]
    tol = lambda b: 1e-5 * max(1.0, abs(b))
    out += _compare_losses(prog, step, seed, lambda r, shape: r.uniform(-1, 1, shape),
                           "relaxed objective <= original in the box", lambda b, a: a <= b + tol(b))
    out += _compare_losses(prog, step, seed + 1, lambda r, shape: r.integers(-1, 2, shape).astype(float),
                           "relaxed objective = original at the box's vertices", lambda b, a: abs(a - b) <= tol(b))
    return out


def certify_proximal(prog, step, seed: int) -> list[Certificate]:
    """The emitted proximal map equals the SymPy-derived prox and a brute-force minimiser of
    ½(x - v)² + t g(x) at random (v, t)."""
    from scipy.optimize import minimize_scalar
    kind = step.fact("kind")
    mod = prog.build()
    rng = np.random.default_rng(seed)
    v, t = rng.normal(0, 2, 200), rng.uniform(0.01, 2, 200)
    emitted = np.asarray(mod.PROX_MAPS[kind](v.astype(np.float32), t.astype(np.float32)), float)
    derived = sp.lambdify((V, T), derive_prox(kind), "numpy")
    g = sp.lambdify(X, PROX_FUNCTIONS[kind], "numpy")
    brute = np.array([minimize_scalar(lambda x, vi=vi, ti=ti: 0.5 * (x - vi) ** 2 + ti * g(x), bounds=(-10, 10),
                                      method="bounded", options={"xatol": 1e-10}).x for vi, ti in zip(v, t)])
    symbolic = np.array([float(derived(vi, ti)) for vi, ti in zip(v, t)])
    return [Certificate("proximal", f"the {kind} proximal map is argmin_x 1/2 (x - v)^2 + t * {PROX_FUNCTIONS[kind]} "
                        "(200 random v, t)",
                        f"emitted vs SymPy {np.max(np.abs(emitted - symbolic)):.2g}, "
                        f"vs brute force {np.max(np.abs(emitted - brute)):.2g}",
                        bool(np.allclose(emitted, symbolic, atol=1e-5) and np.allclose(emitted, brute, atol=1e-4)))]


CERTIFICATES = {"relax_step": certify_relax_step, "relax_l0": certify_relax_l0, "proximal": certify_proximal}
