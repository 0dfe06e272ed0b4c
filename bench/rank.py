"""`explain --rank` on every example (issue 20, SPEC 9.4): the time it takes and whether the
measured choice differs from rule order.

Each example runs in a fresh process, `python -m compiler explain FILE --rank --json` with the
default search budget (10 s), timed from the command line to its exit (JAX's start included:
what a user waits for); the choice at each node is compared with rule order's (the first
alternative of `explain FILE --rank --json --no-search`). `python bench/rank.py` prints the section.
"""
from __future__ import annotations

import json
import subprocess
import sys
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
             "seconds include starting Python and JAX), against `--no-search` (rule order, nothing measured). "
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
    lines += ["", f"The measured choice differs from rule order on {differ} example(s)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
