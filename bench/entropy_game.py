"""The entropy-only game (passes/adversarial/entropy_game.py): a sampler g = a + exp(ls) * eps fitted
to a normalised target p = N(2, 0.5) by minimize KL(g || p) (tests/golden/entropy_game/normal_target.att,
1500 steps): the fitted mean and sd against 2 and 0.5, per seed, with the seconds of each run (the first
includes XLA compilation). A Gibbs target is the same loss plus the constant log Z (relation =+c); its
energy is a net in the language, so it is compiled (golden gibbs_target.att), not benchmarked here.

Run as `python bench/entropy_game.py [--seeds 0 1 2]`; prints a Markdown section.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from attractor import compile_source  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    prog = compile_source((ROOT / "tests/golden/entropy_game/normal_target.att").read_text())
    mod, data = prog.build(), prog.load_data()
    print("## Entropy-only game: sampler against N(2, 0.5)\n")
    print("| seed | mean | sd | |mean - 2| | |sd - 0.5| | seconds |")
    print("|---|---|---|---|---|---|")
    for seed in args.seeds:
        start = time.perf_counter()
        params, _ = mod.fit(data, steps=args.steps, seed=seed)
        mean, sd = float(params["a"]), float(np.exp(params["ls"]))
        print(f"| {seed} | {mean:.4f} | {sd:.4f} | {abs(mean - 2):.4f} | {abs(sd - 0.5):.4f} | "
              f"{time.perf_counter() - start:.1f} |")


if __name__ == "__main__":
    main()
