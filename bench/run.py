"""`make bench`: every benchmark side by side with its peer; results to bench/RESULTS.md.

Each module of MODULES defines `run() -> str`, a Markdown section with medians and ratios.
A module that fails is reported in the results with its error, not skipped silently.
`python bench/run.py NAME ...` runs only those modules and prints them (RESULTS.md is kept).
"""
from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import commit, machine, versions  # noqa: E402

MODULES = ("compile_time", "hand_steps", "loops", "variational_vae", "variational_sbn", "adversarial_divergences",
           "adversarial_gan", "evolution_es", "relaxation_convex", "constraints_cvxpy", "rank", "honest")


def main(argv: list[str]) -> int:
    only = set(argv)
    unknown = only - set(MODULES)
    if unknown:
        print(f"unknown benchmark {', '.join(sorted(unknown))}; benchmarks are {', '.join(MODULES)}")
        return 2
    sections, failed = [], 0
    started = time.time()
    for name in MODULES:
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        t = time.time()
        try:
            text = importlib.import_module(name).run()
        except Exception:
            failed += 1
            text = f"## {name}\n\nFAILED:\n\n```\n{traceback.format_exc()}```\n"
        print(text, flush=True)
        sections.append(text + f"\n_{name}: {time.time() - t:.0f} s_\n")
    header = ["# Benchmark results", "",
              f"Machine: {machine()}", "",
              f"Versions: {versions()}", "",
              f"Commit: {commit()}; total time {time.time() - started:.0f} s; written by `make bench`.", ""]
    if not only:
        (HERE / "RESULTS.md").write_text("\n".join(header + sections))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
