"""`attractor run --plot OUT.png`: losses and reports over steps; for a 2-D sampler, its
samples over the data. Needs matplotlib (the `plot` extra)."""
from __future__ import annotations

import numpy as np

from compiler.ir.diagnostics import AttractorError


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise AttractorError("--plot needs matplotlib: pip install 'attractor[plot]'", None, "--plot") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_run(path: str, history: list[dict], report_history: list[dict], mod, params, data) -> None:
    import jax
    plt = _pyplot()
    scatter = hasattr(mod, "sample") and len(mod.DATA_VARS) == 1 and mod.DATA_SHAPES[mod.DATA_VARS[0]] == (2,)
    fig, axes = plt.subplots(1, 2 if scatter else 1, figsize=(11 if scatter else 6, 4.2))
    ax = axes[0] if scatter else axes
    steps = [h["step"] for h in history]
    for player in mod.PLAYERS:
        ax.plot(steps, [h[player] for h in history], label=f"loss {player}")
    for name in mod.REPORTS:
        pts = [(r["step"], r[name]) for r in report_history if name in r]
        if pts:
            ax.plot(*zip(*pts), "--", label=f"report {name}")
    ax.set_xlabel("step")
    ax.legend()
    ax.set_title("training")
    if scatter:
        x = np.asarray(data[mod.DATA_VARS[0]])
        s = np.asarray(mod.sample(params, jax.random.PRNGKey(7), 2000))
        ax2 = axes[1]
        ax2.scatter(x[:2000, 0], x[:2000, 1], s=3, alpha=0.3, label="data")
        ax2.scatter(s[:, 0], s[:, 1], s=3, alpha=0.5, label="samples")
        ax2.set_aspect("equal")
        ax2.legend()
        ax2.set_title("samples over data")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
