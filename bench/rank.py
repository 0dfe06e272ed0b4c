"""`explain --rank` on every example (issue 20, SPEC 9.4): the time it takes and whether the
measured choice differs from rule order.

Each example runs in a fresh process, `python -m compiler explain FILE --rank --json` with the
default search budget (10 s), timed from the command line to its exit (JAX's start included:
what a user waits for); the choice at each node is compared with rule order's (the first
alternative of `explain FILE --rank --json --no-search`). `python bench/rank.py` prints the section.

Then relaxations against evolution strategies: `explain --rank` (text) of the 0-1 loss of a linear
classifier, where relax_step (a pointwise bound, `<=`) and evolution strategies on the whole loss
(`min<=`) both apply, and of a rounded weight in least squares, where no convex surrogate keeps
the bound and evolution strategies are the only row.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def explain(example: Path, *flags: str) -> tuple[dict | None, float, str]:
    started = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "compiler", "explain", str(example), "--rank", "--json", *flags],
                       capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    if r.returncode != 0:
        return None, seconds, (r.stderr.strip().splitlines() or ["exit " + str(r.returncode)])[-1]
    return json.loads(r.stdout), seconds, ""


def run() -> str:
    lines = ["## explain --rank on every example (issue 20, SPEC 9.4)", "",
             "`python -m compiler explain FILE --rank --json` in a fresh process (default search budget 10 s; "
             "seconds include starting Python and JAX), against `--no-search` (rule order; `--rank` still measures every row). "
             "A node is listed when it has more than one derivation; measured: alternatives with a gradient variance.", "",
             "| example | seconds (--rank) | seconds (--no-search) | nodes with a choice | measured | chosen | rule order | differs |",
             "|---|---|---|---|---|---|---|---|"]
    differ = 0
    for example in sorted((ROOT / "examples").glob("*.att")):
        ranked, seconds, error = explain(example)
        plain, plain_seconds, plain_error = explain(example, "--no-search")
        if ranked is None or plain is None:
            lines.append(f"| {example.name} | {seconds:.1f} | {plain_seconds:.1f} | error: {error or plain_error} | | | | |")
            continue
        chosen = [next(a["derivation"] for a in n["alternatives"] if a["chosen"]) for n in ranked["nodes"]]
        order = [next(a["derivation"] for a in n["alternatives"] if a["chosen"]) for n in plain["nodes"]]
        measured = sum(a["grad_variance"] is not None for n in ranked["nodes"] for a in n["alternatives"])
        total = sum(len(n["alternatives"]) for n in ranked["nodes"])
        differs = chosen != order
        differ += differs
        lines.append(f"| {example.name} | {seconds:.1f} | {plain_seconds:.1f} | {len(ranked['nodes'])} | {measured}/{total} | "
                     f"{', '.join(chosen) or '-'} | {', '.join(order) or '-'} | {'yes' if differs else 'no'} |")
        print(lines[-1], flush=True)
    lines += ["", f"The measured choice differs from rule order on {differ} example(s).", ""]
    return "\n".join(lines + nondiff()) + "\n"


ZERO_ONE = """data x : real[30], y : real from breast_cancer
param w : real[30]
param b : real
minimize E[(x, y) ~ data] [y * (dot(w, x) + b) <= 0]
"""
ROUNDED = """data x : real[3], y : real from sparse_regression(n=50, d=3, k=2, noise=0.1, seed=0)
param w : real[3]
minimize E[(x, y) ~ data] (dot(round(w / 0.5) * 0.5, x) - y)^2
"""


def nondiff() -> list[str]:
    """`explain --rank` of the two programs of the module docstring, in fresh processes, timed."""
    lines = ["### Relaxations against evolution strategies", ""]
    with tempfile.TemporaryDirectory() as folder:
        for name, text in (("zero_one.att", ZERO_ONE), ("rounded.att", ROUNDED)):
            path = Path(folder) / name
            path.write_text(text)
            started = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "compiler", "explain", str(path), "--rank"],
                               capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - started
            lines += [f"`attractor explain {name} --rank` ({seconds:.1f} s):", "", "```", *text.strip().splitlines(), "",
                      *(r.stdout.strip() if r.returncode == 0 else r.stderr.strip()).splitlines(), "```", ""]
    return lines


if __name__ == "__main__":
    print(run())
