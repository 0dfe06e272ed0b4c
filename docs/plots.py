"""Draw the training pictures of the docs pages with `attractor run FILE --plot docs/NAME.png`.

`python docs/plots.py` retrains each example as written (a few minutes on two cores) and
rewrites the PNGs; tests/test_docs.py checks that every page shows a picture that exists.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# page -> (example, picture)
PLOTS = {
    "variational.md": ("vae.att", "vae_training.png"),
    "adversarial.md": ("gan_ring.att", "gan_ring_training.png"),
    "evolution.md": ("es_zero_one.att", "es_zero_one_training.png"),
    "relaxation.md": ("svm_hinge.att", "svm_hinge_training.png"),
    "lagrangian.md": ("constrained.att", "constrained_training.png"),
    "splitting.md": ("fused_lasso.att", "fused_lasso_training.png"),
}


def main(only: list[str]) -> int:
    for page, (example, picture) in PLOTS.items():
        if only and page not in only:
            continue
        cmd = [sys.executable, "-m", "compiler", "run", f"examples/{example}", "--json", "--plot", f"docs/{picture}"]
        print(" ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
