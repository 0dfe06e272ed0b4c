"""`make bench`: every benchmark side by side with its peer; results to bench/RESULTS.md.

Each `bench/bench_*.py` module defines `run() -> str`, a Markdown section with medians and
ratios. A module that fails is reported in the results with its error, not skipped silently.
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


def main(argv: list[str]) -> int:
    only = set(argv)
    modules = ["compile_time"] + sorted(p.stem for p in HERE.glob("bench_*.py"))
    sections, failed = [], 0
    started = time.time()
    for name in modules:
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
