"""Draw docs/dirac_gan.png: the Dirac-GAN field under each dynamics, with the discrete steps.

    .venv/bin/python docs/dirac_gan.py

Each panel is the field the dynamics follows (`attractor field examples/dirac_gan.att
--dynamics D --plot ...` draws one of them), its fixed point classified from the eigenvalues of
its Jacobian, and 2000 steps of the emitted training loop (SGD, step 0.1) from theta = 1, psi = 0.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from attractor import compile_file  # noqa: E402
from compiler.driver.field import draw_field, field_at, jacobian_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DYNAMICS = ("simultaneous", "alternating", "extragradient", "sga", "consensus")
STEPS = 2000


def trajectory(prog) -> np.ndarray:
    """(psi, theta) every 10 steps of the emitted training loop."""
    mod, data = prog.build(), prog.load_data()
    points = [(0.0, 1.0)]
    mod.fit(data, STEPS, 0, callback=lambda done, total, record, params: points.append(
        (float(params["psi"]), float(params["theta"]))), chunk=10)
    return np.asarray(points)


def main() -> None:
    fig, axes = plt.subplots(2, 3, figsize=(14, 9.5))
    spectra = {}
    for ax, dynamics in zip(axes.flat, DYNAMICS):
        prog = compile_file(ROOT / "examples" / "dirac_gan.att", dynamics=dynamics)
        _, _, _, labels, v = field_at(prog, "theta=0,psi=0")
        report = jacobian_report(prog, "theta=0,psi=0")
        spectra[dynamics] = report["eigenvalues"]
        path = trajectory(prog)
        title = f"{dynamics}: {report['class']}\nafter {STEPS} steps |(psi, theta)| = {np.hypot(*path[-1]):.3f}"
        draw_field(ax, v, np.zeros(2), labels, title, trajectory=path)
    ax = axes.flat[-1]
    for (dynamics, eig), marker in zip(spectra.items(), "os^Dv"):
        ax.plot(eig.real, eig.imag, marker, markersize=9, fillstyle="none", label=dynamics)
    ax.axvline(0, color="gray", linewidth=0.8)
    ax.set_xlabel("Re lambda")
    ax.set_ylabel("Im lambda")
    ax.set_title("eigenvalues of dv/d(psi, theta) at the equilibrium")
    ax.legend()
    fig.suptitle("Dirac-GAN (examples/dirac_gan.att): simultaneous gradients rotate, damped dynamics converge")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "dirac_gan.png", dpi=80)


if __name__ == "__main__":
    main()
