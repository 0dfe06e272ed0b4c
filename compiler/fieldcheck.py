"""`attractor field`: the Jacobian of the (dynamics-transformed) vector field at a point,
classified by its eigenvalues, and a stream plot for two-parameter fields."""
from __future__ import annotations

import numpy as np

from compiler.api import compile_file
from compiler.diagnostics import AttractorError

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


def field_at(prog, at: str = "init", seed: int = 0, steps: int | None = None):
    """(module, params, flat point, unravel, v(flat), batch)."""
    import jax
    from jax.flatten_util import ravel_pytree
    mod = prog.build()
    data = prog.load_data()
    key = jax.random.PRNGKey(seed)
    _, k_init = jax.random.split(key)
    params = mod.init(k_init)
    if at == "final":
        params, _ = mod.fit(data, steps if steps is not None else mod.STEPS, seed)
    elif at != "init":
        for item in at.split(","):
            name, _, value = item.partition("=")
            if name.strip() not in params:
                raise AttractorError(f"--at: no parameter '{name.strip()}'", None, "--at")
            try:
                params[name.strip()] = params[name.strip()] * 0 + float(value)
            except ValueError:
                raise AttractorError(f"--at: '{value}' is not a number", None, "--at") from None
    batch = mod.full_batch(data)
    moving = {k: params[k] for p in mod.MOVING for k in mod.PLAYERS[p]}
    flat, unravel = ravel_pytree(moving)
    if flat.size > MAX_PARAMS:
        raise AttractorError(f"the field has {flat.size} parameters; 'field' computes Jacobians for at most {MAX_PARAMS}", None, prog.filename)
    fkey = jax.random.PRNGKey(seed + 3)

    def v(x):
        merged = {**params, **unravel(x)}
        d = mod.direction(merged, fkey, batch)[0] if hasattr(mod, "direction") else mod.field(merged, fkey, batch)
        return ravel_pytree({k: d[k] for k in moving})[0]
    return mod, params, flat, unravel, v, batch


def jacobian_report(prog, at="init", seed=0, steps=None):
    import jax
    mod, params, flat, unravel, v, _ = field_at(prog, at, seed, steps)
    J = np.asarray(jax.jacfwd(v)(flat), dtype=np.float64)
    eig = np.linalg.eigvals(J)
    return {"at": at, "point": np.asarray(flat), "field": np.asarray(v(flat)), "jacobian": J,
            "eigenvalues": eig, "class": classify(eig), "v": v}


def field_command(args) -> str:
    prog = compile_file(args.file, dynamics=args.dynamics)
    r = jacobian_report(prog, args.at, args.seed, args.steps)
    lines = [f"field of {args.file} at {r['at']} (dynamics: {prog.dynamics})",
             f"  |v| = {np.linalg.norm(r['field']):.4g} over {r['point'].size} parameters",
             "  eigenvalues of dv/dtheta:"]
    for e in sorted(r["eigenvalues"], key=lambda z: (z.real, z.imag)):
        lines.append(f"    {e.real:+.5g} {e.imag:+.5g}i")
    lines.append(f"  classification: {r['class']}")
    if args.plot:
        if r["point"].size != 2:
            raise AttractorError("--plot draws two-parameter fields only", None, args.file)
        stream_plot(args.plot, r["v"], r["point"], title=f"{prog.title}: {r['class']}")
        lines.append(f"  stream plot written to {args.plot}")
    return "\n".join(lines)


def stream_plot(path: str, v, center: np.ndarray, title: str = "", radius: float = 2.0) -> None:
    import jax
    import jax.numpy as jnp
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = np.linspace(center[0] - radius, center[0] + radius, 41)
    ys = np.linspace(center[1] - radius, center[1] + radius, 41)
    X, Y = np.meshgrid(xs, ys)
    pts = jnp.stack([X.ravel(), Y.ravel()], axis=1).astype(jnp.float32)
    V = np.asarray(jax.vmap(v)(pts))
    U, W = V[:, 0].reshape(X.shape), V[:, 1].reshape(X.shape)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.streamplot(X, Y, U, W, density=1.2, color=np.hypot(U, W), cmap="viridis")
    speed = np.hypot(U, W).ravel()
    i = int(np.argmin(speed))
    ax.plot([pts[i, 0]], [pts[i, 1]], "r*", markersize=14, label="fixed point")
    ax.set_title(title)
    ax.legend(loc="upper right")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
