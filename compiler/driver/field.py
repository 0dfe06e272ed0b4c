"""`attractor field`: the Jacobian of the (dynamics-transformed) vector field at a point,
classified by its eigenvalues, and a stream plot for two-parameter fields.

The field is the direction the dynamics moves the parameters in, as a function of the
parameters: v for `simultaneous` (and for `alternating`, whose continuous-time limit it is),
v(θ + ηv) for `extragradient`, the adjusted fields of `sga` and `consensus`. At a fixed point
v = 0 the eigenvalues λ of ∂v/∂θ decide: all Re λ < 0, a stable attractor; Re λ = 0 with
Im λ ≠ 0, a rotation (gradient descent circles the equilibrium); mixed signs, a saddle.
"""
from __future__ import annotations

import numpy as np

from compiler.driver.api import compile_file
from compiler.ir.diagnostics import AttractorError

MAX_PARAMS = 400


def classify(eigenvalues: np.ndarray) -> str:
    """Stable attractor / repeller / saddle / rotation, from the eigenvalues of dv/dθ."""
    scale = max(1.0, float(np.max(np.abs(eigenvalues)))) if eigenvalues.size else 1.0
    tol = 1e-6 * scale
    re, im = eigenvalues.real, eigenvalues.imag
    if np.all(re < -tol):
        return "stable attractor" + (" (spiral)" if np.any(np.abs(im) > tol) else "")
    if np.any(re > tol) and np.any(re < -tol):
        return "saddle"
    if np.all(re > tol):
        return "repeller"
    if np.any(np.abs(im) > tol) and np.all(re <= tol):
        return "rotation" if np.all(np.abs(re) <= tol) else "marginal (rotation with damping on some directions)"
    return "degenerate"


def _point(mod, params: dict, at: str, data, seed: int, steps: int | None) -> dict:
    """The parameters at `init`, after training (`final`), or with scalars set (`name=value,...`)."""
    if at == "init":
        return params
    if at == "final":
        return mod.fit(data, steps if steps is not None else mod.STEPS, seed)[0]
    params = dict(params)
    for item in at.split(","):
        name, _, value = (s.strip() for s in item.partition("="))
        if name not in params:
            raise AttractorError(f"--at: no parameter '{name}'; the parameters are {', '.join(sorted(params))}", None, "--at")
        if np.ndim(params[name]) != 0:
            raise AttractorError(f"--at: '{name}' is not a scalar parameter", None, "--at")
        try:
            params[name] = params[name] * 0 + float(value)
        except ValueError:
            raise AttractorError(f"--at: '{value}' is not a number", None, "--at") from None
    return params


def field_at(prog, at: str = "init", seed: int = 0, steps: int | None = None):
    """(module, params, flat point, parameter labels, v(flat)) for the dynamics of `prog`."""
    import jax
    from jax.flatten_util import ravel_pytree
    mod = prog.build()
    data = prog.load_data()
    _, k_init = jax.random.split(jax.random.PRNGKey(seed))
    params = mod.init(k_init)
    names = [k for p in mod.MOVING for k in mod.PLAYERS[p]]
    size = ravel_pytree({k: params[k] for k in names})[0].size
    if size > MAX_PARAMS:
        raise AttractorError(f"the field has {size} parameters; 'field' computes Jacobians for at most {MAX_PARAMS}", None, prog.filename)
    params = _point(mod, params, at, data, seed, steps)
    batch = mod.full_batch(data)
    moving = {k: params[k] for k in names}
    flat, unravel = ravel_pytree(moving)
    labels = [jax.tree_util.keystr(path).strip("[]'\"") for path, _ in jax.tree_util.tree_flatten_with_path(moving)[0]]
    fkey = jax.random.PRNGKey(seed + 3)
    direction = getattr(mod, "direction", None)

    @jax.jit
    def v(x):
        merged = {**params, **unravel(x)}
        d = direction(merged, fkey, batch)[0] if direction is not None else mod.field(merged, fkey, batch)
        return ravel_pytree({k: d[k] for k in moving})[0]
    return mod, params, flat, labels, v


def jacobian_report(prog, at="init", seed=0, steps=None) -> dict:
    import jax
    _, _, flat, labels, v = field_at(prog, at, seed, steps)
    J = np.asarray(jax.jacfwd(v)(flat), dtype=np.float64)
    eig = np.linalg.eigvals(J)
    return {"at": at, "point": np.asarray(flat), "labels": labels, "field": np.asarray(v(flat)), "jacobian": J,
            "eigenvalues": eig, "class": classify(eig), "v": v}


def field_command(args) -> str:
    prog = compile_file(args.file, dynamics=args.dynamics)
    r = jacobian_report(prog, args.at, args.seed, args.steps)
    note = " (the simultaneous field: its continuous-time limit)" if prog.dynamics == "alternating" else ""
    lines = [f"field of {args.file} at {r['at']} (dynamics: {prog.dynamics}{note})",
             f"  |v| = {np.linalg.norm(r['field']):.4g} over {r['point'].size} parameters"]
    if r["point"].size <= 8:
        lines.append("  point: " + ", ".join(f"{n} = {x:.4g}" for n, x in zip(r["labels"], r["point"])))
    lines.append("  eigenvalues of dv/dtheta:")
    for e in sorted(r["eigenvalues"], key=lambda z: (z.real, z.imag)):
        lines.append(f"    {e.real:+.5g} {e.imag:+.5g}i")
    lines.append(f"  classification: {r['class']}" + ("" if np.linalg.norm(r["field"]) < 1e-6 else " (of the linearisation; this point is not a fixed point)"))
    if args.plot:
        if r["point"].size != 2:
            raise AttractorError(f"--plot draws two-parameter fields only; this one has {r['point'].size}", None, args.file)
        stream_plot(args.plot, r["v"], r["point"], r["labels"], title=f"{prog.title}, {prog.dynamics}")
        lines.append(f"  stream plot written to {args.plot}")
    return "\n".join(lines)


def fixed_points(v, center: np.ndarray, radius: float, starts: int = 12) -> list[tuple[np.ndarray, str]]:
    """Zeros of v in the square of half-side `radius` around `center`, by Newton's method from
    the grid points where |v| is smallest, each with its classification."""
    import jax
    import jax.numpy as jnp
    xs = np.linspace(-radius, radius, 21)
    grid = np.stack(np.meshgrid(center[0] + xs, center[1] + xs), -1).reshape(-1, 2).astype(np.float32)
    speed = np.linalg.norm(np.asarray(jax.vmap(v)(jnp.asarray(grid))), axis=1)
    jac = jax.jit(jax.jacfwd(v))
    found: list[tuple[np.ndarray, str]] = []
    for x in grid[np.argsort(speed)[:starts]]:
        x = np.asarray(x, np.float64)
        for _ in range(30):
            J, f = np.asarray(jac(jnp.asarray(x, jnp.float32)), np.float64), np.asarray(v(jnp.asarray(x, jnp.float32)), np.float64)
            try:
                x = x - np.linalg.solve(J, f)
            except np.linalg.LinAlgError:
                break
        inside = np.all(np.abs(x - center) <= radius)
        if inside and np.linalg.norm(np.asarray(v(jnp.asarray(x, jnp.float32)))) < 1e-5 \
                and not any(np.linalg.norm(x - y) < 1e-3 * max(1.0, radius) for y, _ in found):
            found.append((x, classify(np.linalg.eigvals(np.asarray(jac(jnp.asarray(x, jnp.float32)), np.float64)))))
    return found


def draw_field(ax, v, center: np.ndarray, labels, title: str = "", radius: float = 2.0, trajectory=None) -> None:
    """A stream plot of the 2-D field v on `ax`, coloured by speed, with its fixed points
    (filled: stable attractor; open: anything else) and an optional trajectory."""
    import jax
    import jax.numpy as jnp
    xs = np.linspace(center[0] - radius, center[0] + radius, 41)
    ys = np.linspace(center[1] - radius, center[1] + radius, 41)
    X, Y = np.meshgrid(xs, ys)
    V = np.asarray(jax.vmap(v)(jnp.stack([X.ravel(), Y.ravel()], axis=1).astype(jnp.float32)))
    U, W = V[:, 0].reshape(X.shape), V[:, 1].reshape(X.shape)
    ax.streamplot(X, Y, U, W, density=1.1, color=np.hypot(U, W), cmap="viridis", linewidth=0.8)
    for x, kind in fixed_points(v, center, radius):
        stable = kind.startswith("stable")
        ax.plot([x[0]], [x[1]], "o", markersize=9, markeredgecolor="red", markeredgewidth=2,
                markerfacecolor="red" if stable else "white", label=f"fixed point: {kind}", zorder=5)
    if trajectory is not None:
        ax.plot(trajectory[:, 0], trajectory[:, 1], "-", color="tab:orange", linewidth=1.2, label="discrete steps", zorder=4)
        ax.plot(trajectory[:1, 0], trajectory[:1, 1], "s", color="tab:orange", zorder=4)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=7)


def stream_plot(path: str, v, center: np.ndarray, labels, title: str = "", radius: float = 2.0) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 5))
    draw_field(ax, v, center, labels, title, radius)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
