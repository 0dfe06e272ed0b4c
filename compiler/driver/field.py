"""`attractor field`: the linearisation of the (dynamics-transformed) vector field at a point,
classified by its eigenvalues, the stability of the discrete update the run takes, and a
stream plot for two-parameter fields.

The field is the direction the dynamics moves the parameters in, as a function of the
parameters: v for `simultaneous` (and for `alternating`, whose continuous-time limit it is),
v(θ + ηv) for `extragradient`, the adjusted fields of `sga` and `consensus`. At a fixed point
v = 0 the eigenvalues λ of J = ∂v/∂θ decide the flow θ' = v(θ): all Re λ < 0, a stable
attractor; Re λ = 0 with Im λ ≠ 0, a rotation (gradient descent circles the equilibrium);
mixed signs, a saddle.

The run does not follow the flow but its discrete update T(θ) = prox_η(θ + η v(θ)), η the
step the run takes (1/L where it is set from the data) and prox_η the proximal maps of the
non-smooth terms (the identity where there are none). A fixed point of the run is one of T
(lasso's optimum is one of T, not a zero of v, whose norm1 term has no gradient there), and it
is stable when the spectral radius of ∂T/∂θ = ∂prox · (I + ηJ) is below 1: a flow that is
stable can still be unstable at a step too large (|1 + ηλ| > 1).

Any size: with up to DENSE_LIMIT parameters J is formed (forward mode) and every eigenvalue
computed; beyond, the leading eigenvalues (largest real part, largest modulus) come from
Arnoldi iterations (ARPACK, implicitly restarted) on Jacobian-vector products, never forming J.
A stochastic field (one that changes with the random key) is averaged over FIELD_KEYS keys:
the linearisation of E[v], not of one draw. A program trained on minibatches follows the field
of the whole data set in expectation; with more than FIELD_POINTS rows that field is estimated
on FIELD_POINTS rows drawn once (a stochastic field too).
"""
from __future__ import annotations

import numpy as np

from compiler.driver.api import compile_file
from compiler.driver.rank import search_options
from compiler.driver.resources import check_memory
from compiler.ir.diagnostics import AttractorError

DENSE_LIMIT = 400      # parameters up to which J is formed and every eigenvalue computed
LEADING = 4            # eigenvalues of each end of the spectrum Arnoldi computes beyond DENSE_LIMIT
FIELD_KEYS = 8         # random keys a stochastic field is averaged over
FIELD_POINTS = 4096    # a minibatch-trained field on more data is evaluated on this many rows drawn once
ARNOLDI_RESTARTS = 10  # implicit restarts of each Arnoldi run (what converged by then is reported)
SHOWN = 6              # eigenvalues printed at each end of the spectrum


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


def step_sizes(mod, params: dict, data) -> dict:
    """Each moving player's step η as the run takes it: 1/L from the data at `params` where the
    module sets it so (LIPSCHITZ_STEP), else the learning rate LR."""
    if not mod.LIPSCHITZ_STEP:
        return {p: float(mod.LR) for p in mod.MOVING}
    state = mod.lipschitz_step(mod.init_state(params), data)
    return {p: float(state["opt"][p].hyperparams["learning_rate"]) for p in mod.MOVING}


def field_at(prog, at: str = "init", seed: int = 0, steps: int | None = None):
    """(module, params, flat point, parameter labels, v(flat), T(flat), sampling, steps) for the
    dynamics of `prog`: v the field (averaged over FIELD_KEYS keys where it is stochastic), T
    the discrete update prox_η(θ + η v(θ)) at the run's steps η; `sampling` says over how many
    keys and data rows v is evaluated."""
    import jax
    from jax.flatten_util import ravel_pytree
    mod = prog.build()
    data = prog.load_data()
    _, k_init = jax.random.split(jax.random.PRNGKey(seed))
    params = _point(mod, mod.init(k_init), at, data, seed, steps)
    flat, labels, v, one, keys, stochastic, unravel, subsample, rows = linearised(mod, prog.dynamics, params, data, seed)
    eta = step_sizes(mod, params, data)
    owner = {k: p for p in mod.MOVING for k in mod.PLAYERS[p]}
    proximal = {k for k in getattr(mod, "PROX", {}) if k in owner}

    @jax.jit
    def update(x):
        moved = unravel(x + 0.0)
        d = unravel(v(x))
        new = {k: jax.tree.map(lambda a, b, e=eta[owner[k]]: a + e * b, moved[k], d[k]) for k in moved}
        for k in proximal:
            new[k] = mod.apply_prox({k: new[k]}, eta[owner[k]])[k]
        return ravel_pytree(new)[0]
    return mod, params, flat, labels, v, update, {"keys": FIELD_KEYS if stochastic else 1,
                                                  "rows": FIELD_POINTS if subsample else rows}, eta


def linearised(mod, dynamics: str, params: dict, data, seed: int):
    """The moving parameters of `params` flattened, their labels, the field v(flat) (averaged over
    FIELD_KEYS keys where it is stochastic), one key's field one(flat, key), the keys, whether it
    is stochastic, the unflattening, and whether (and on how many rows) the data are subsampled."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
    names = [k for p in mod.MOVING for k in mod.PLAYERS[p]]
    rows = next(iter(data.values())).shape[0] if data else 0
    subsample = bool(mod.BATCH) and rows > FIELD_POINTS
    batch = (mod.minibatch(mod.as_data(data), jax.random.PRNGKey(seed + 4), FIELD_POINTS) if subsample
             else mod.full_batch(data))
    moving = {k: params[k] for k in names}
    flat, unravel = ravel_pytree(moving)
    labels = [jax.tree_util.keystr(path).strip("[]'\"") for path, _ in jax.tree_util.tree_flatten_with_path(moving)[0]]
    direction = getattr(mod, f"{dynamics}_direction", None) or getattr(mod, "direction", None)

    @jax.jit
    def one(x, key):
        merged = {**params, **unravel(x)}
        d = direction(merged, key, batch)[0] if direction is not None else mod.field(merged, key, batch)
        return ravel_pytree({k: d[k] for k in moving})[0]
    keys = jax.random.split(jax.random.PRNGKey(seed + 3), FIELD_KEYS)
    stochastic = bool(jnp.any(one(flat, keys[0]) != one(flat, keys[1])))
    if stochastic:
        v = jax.jit(lambda x: jnp.mean(jax.vmap(lambda k: one(x, k))(keys), axis=0))
    else:
        v = jax.jit(lambda x: one(x, keys[0]))
    return flat, labels, v, one, keys, stochastic, unravel, subsample, rows


def judge_stability(prog, mod, params: dict, data, result: dict, seed: int = 0) -> dict:
    """A run's summary with a warning (and `converged` false) where the returned parameters are
    not a stable attractor of the dynamics the run followed: J = dv/dθ there has an eigenvalue of
    positive real part, so a small displacement along it grows (for one minimising player J = -H:
    a saddle or a maximum of the objective, where the gradient vanishes and the objective is flat,
    yet not a minimum). Up to DENSE_LIMIT parameters (J formed, every eigenvalue), not for a run
    that diverged. A stochastic field is averaged over FIELD_KEYS keys; its noise is read from
    the two halves of the keys, and an eigenvalue counts only where it is positive beyond
    sqrt(1e-7) of the spectrum's scale in the whole average and in each half."""
    import jax
    import jax.numpy as jnp
    value = result.get("objective")
    if value is None or not np.isfinite(value):
        return result
    flat, labels, v, one, keys, stochastic, *_ = linearised(mod, prog.dynamics, params, data, seed)
    n = int(flat.size)
    if n == 0 or n > DENSE_LIMIT:
        return result

    def top(some_keys):
        mean = jax.jit(lambda x: jnp.mean(jax.vmap(lambda k: one(x, k))(some_keys), axis=0))
        eig = np.linalg.eigvals(np.asarray(jax.jacfwd(mean)(flat), np.float64))
        return eig, float(np.max(eig.real))
    eig, largest = top(keys)
    if not np.all(np.isfinite(eig)):
        return result
    scale = max(1.0, float(np.max(np.abs(eig))))
    threshold = 1e-7 ** 0.5 * scale
    halves = [top(keys[: FIELD_KEYS // 2])[1], top(keys[FIELD_KEYS // 2:])[1]] if stochastic else [largest]
    if not (largest > threshold and min(halves) > threshold):
        return result
    kind = "a saddle or a maximum of the objective, not a minimum" if len(mod.MOVING) == 1 else \
        "not a stable equilibrium of the game"
    warning = (f"the returned parameters are not a stable attractor of the training dynamics: dv/dtheta has an "
               f"eigenvalue of real part {largest:+.3g} there ({classify(eig)}; {n} parameters"
               f"{f', averaged over {FIELD_KEYS} keys' if stochastic else ''}): {kind}, where the run stalled")
    return {**result, "converged": False, "warnings": list(result["warnings"]) + [warning]}


def spectrum(fn, x, n: int, which: tuple[str, ...]) -> np.ndarray:
    """Eigenvalues of the Jacobian of `fn` at `x`: all of them (J formed) up to DENSE_LIMIT
    parameters, else the LEADING ones of each kind in `which` (ARPACK codes: LR largest real part,
    LM largest modulus) by Arnoldi iterations on Jacobian-vector products."""
    import jax
    if n <= DENSE_LIMIT:
        return np.linalg.eigvals(np.asarray(jax.jacfwd(fn)(x), dtype=np.float64))
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigs
    jvp = jax.jit(lambda t: jax.jvp(fn, (x,), (t,))[1])
    op = LinearOperator((n, n), matvec=lambda t: np.asarray(jvp(np.asarray(t, np.float32).ravel()), np.float64),
                        dtype=np.float64)
    found = []
    for code in which:
        try:
            found.append(eigs(op, k=LEADING, which=code, ncv=4 * LEADING + 4, maxiter=ARNOLDI_RESTARTS, tol=1e-2,
                              return_eigenvectors=False))
        except ArpackNoConvergence as e:   # what converged is still an eigenvalue
            found.append(e.eigenvalues)
        except ArpackError:                # the Krylov space closed early (J t in span of t): plain Arnoldi
            found.append(ritz_values(op.matvec, n))
    return np.unique(np.round(np.concatenate(found), 10))


def ritz_values(matvec, n: int, size: int = 30) -> np.ndarray:
    """Eigenvalues of the Hessenberg matrix H of `size` Arnoldi steps from a random start (Q^T J Q
    on the Krylov space): exact when the space closes before `size` steps (J t in the span)."""
    q = np.random.default_rng(0).standard_normal(n)
    basis, H = [q / np.linalg.norm(q)], np.zeros((size + 1, size))
    for j in range(size):
        w = np.asarray(matvec(basis[j]), np.float64)
        for i in range(j + 1):
            H[i, j] = basis[i] @ w
            w = w - H[i, j] * basis[i]
        H[j + 1, j] = np.linalg.norm(w)
        if H[j + 1, j] <= 1e-8 * max(1.0, float(np.abs(H[: j + 1, j]).max())):
            return np.linalg.eigvals(H[: j + 1, : j + 1])
        basis.append(w / H[j + 1, j])
    return np.linalg.eigvals(H[:size, :size])


def jacobian_report(prog, at="init", seed=0, steps=None) -> dict:
    """The field and the discrete update at the point: |v|, the eigenvalues of J = ∂v/∂θ and
    their classification (the flow), the residual |T(θ) - θ| / η (the proximal-gradient mapping:
    zero exactly at a fixed point of the run) and the spectral radius of ∂T/∂θ."""
    mod, _, flat, labels, v, update, sampling, eta = field_at(prog, at, seed, steps)
    n = int(flat.size)
    eig = spectrum(v, flat, n, ("LR", "LM"))
    moved = np.asarray(update(flat), np.float64)
    step = min(eta.values()) if eta else 1.0
    mapping = np.linalg.norm(moved - np.asarray(flat, np.float64)) / max(step, 1e-30)
    radius = float(np.max(np.abs(spectrum(update, flat, n, ("LM",))))) if n else 0.0
    return {"at": at, "point": np.asarray(flat), "labels": labels, "field": np.asarray(v(flat)),
            "eigenvalues": eig, "class": classify(eig), "v": v, "dense": n <= DENSE_LIMIT,
            "sampling": sampling, "step": eta, "proximal": bool(getattr(mod, "PROX", None)),
            "mapping": float(mapping), "radius": radius}


def _sampling_text(sampling: dict) -> str:
    parts = [f"averaged over {sampling['keys']} random keys (the field is stochastic)"] if sampling["keys"] > 1 else []
    if sampling["rows"] == FIELD_POINTS:
        parts.append(f"on {sampling['rows']} rows of the data drawn once")
    return f" ({'; '.join(parts)})" if parts else ""


def field_command(args) -> str:
    prog = compile_file(args.file, dynamics=args.dynamics, **search_options(args))
    check_memory(prog, None, args.force, "field")
    r = jacobian_report(prog, args.at, args.seed, args.steps)
    n = r["point"].size
    note = " (the simultaneous field: its continuous-time limit)" if prog.dynamics == "alternating" else ""
    lines = [f"field of {args.file} at {r['at']} (dynamics: {prog.dynamics}{note})",
             f"  |v| = {np.linalg.norm(r['field']):.4g} over {n} parameters" + _sampling_text(r["sampling"])]
    if n <= 8:
        lines.append("  point: " + ", ".join(f"{name} = {x:.4g}" for name, x in zip(r["labels"], r["point"])))
    lines.append("  eigenvalues of dv/dtheta" + ("" if r["dense"] else
                 f" (the leading ones by real part and by modulus, Arnoldi iterations on Jacobian-vector "
                 f"products: {n} parameters)") + ":")
    eig = sorted(r["eigenvalues"], key=lambda z: (z.real, z.imag))
    shown = eig if len(eig) <= 2 * SHOWN else eig[:SHOWN] + [None] + eig[-SHOWN:]
    for e in shown:
        lines.append(f"    {e.real:+.5g} {e.imag:+.5g}i" if e is not None else f"    ... ({len(eig) - 2 * SHOWN} more)")
    fixed = r["mapping"] <= 1e-5 * max(1.0, float(np.linalg.norm(r["point"])))
    etas = sorted(set(r["step"].values()))
    proximal = " with its proximal maps" if r["proximal"] else ""
    lines.append(f"  discrete update at step {', '.join(f'{e:.4g}' for e in etas)}{proximal}: spectral radius "
                 f"{r['radius']:.5g} ({'stable' if r['radius'] < 1 else 'unstable'}), "
                 f"|T(x) - x| / step = {r['mapping']:.4g} ({'a fixed point' if fixed else 'not a fixed point'})")
    lines.append(f"  classification: {r['class']} (the flow)"
                 + ("" if fixed else " (of the linearisation; this point is not a fixed point)"))
    if args.plot:
        if n != 2:
            raise AttractorError(f"--plot draws two-parameter fields only; this one has {n}", None, args.file)
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
