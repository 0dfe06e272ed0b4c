"""Issue 19 numbers: hostile inputs by kind (diagnostics, internal errors, hangs, silent wrong
results) and compile time against objective size. Writes a markdown table on stdout.

    python bench/robustness.py [--expressions N] [--programs N]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_fuzz import EXAMPLES, TOKENS  # noqa: E402
from test_robustness import LANGUAGE, _emitted_value  # noqa: E402

from attractor import AttractorError, compile_source  # noqa: E402
from compiler.analysis.constants import const_value  # noqa: E402
from compiler.driver.cli import main  # noqa: E402

HANG_SECONDS = 60


def classify(thunk) -> str:
    """'ok', 'diagnostic', 'internal' (any other exception) or 'hang'."""
    from compiler.ir.budget import time_budget
    try:
        with time_budget(HANG_SECONDS, "hang"):
            thunk()
        return "ok"
    except AttractorError as e:
        return "hang" if e.message == "hang" else "diagnostic"
    except Exception:   # what the issue counts as an internal error
        return "internal"


def expression(rng: random.Random, depth: int = 0) -> str:
    if depth >= 4 or rng.random() < 0.3:
        v = rng.choice(["0.5", "1", "2", "3", "1.5", "4"])
        return f"-{v}" if depth and rng.random() < 0.5 else v
    op = rng.choice(["+", "-", "*", "/", "^", "neg"])
    a = expression(rng, depth + 1)
    if op == "neg":
        return f"-({a})"
    if op == "^":
        return f"({a})^{rng.choice(['2', '3', '-1', '-2', '4', '0.5'])}"
    return f"({a}) {op} ({expression(rng, depth + 1)})"


def constant_expressions(n: int) -> dict:
    rng = random.Random(0)
    out = {"attempts": n, "diagnostic": 0, "internal": 0, "hang": 0, "wrong": 0}
    for _ in range(n):
        text = expression(rng)
        try:
            prog = compile_source(f"param w : real\nminimize w^2\nreport r = {text}\n")
        except AttractorError:
            out["diagnostic"] += 1
            continue
        expr = prog.program.reports[0].expr
        folded = const_value(expr, prog.program)
        folded = eval(text.replace("^", "**")) if folded is None else folded
        if not np.isclose(_emitted_value(prog.program, expr), folded, rtol=1e-9, atol=1e-12):
            out["wrong"] += 1
    return out


def programs(n: int) -> dict:
    """Random token soups and mutated examples through the front end and the passes."""
    rng = random.Random(1)
    out = {"attempts": n, "ok": 0, "diagnostic": 0, "internal": 0, "hang": 0, "wrong": 0}
    for i in range(n):
        if i % 2:
            text = " ".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 40)))
        else:
            text = rng.choice(EXAMPLES)
            for _ in range(rng.randint(1, 3)):
                a = rng.randint(0, len(text))
                b = min(len(text), a + rng.randint(0, 12))
                text = text[:a] + rng.choice([*TOKENS, "", " ", "x", "9"]) + text[b:]
        out[classify(lambda: compile_source(text, filename="p.att"))] += 1
    return out


def issue_cases() -> dict:
    out = {"attempts": len(LANGUAGE), "diagnostic": 0, "internal": 0, "hang": 0, "wrong": 0}
    for text, *_ in LANGUAGE:
        kind = classify(lambda: compile_source(text, filename="p.att").load_data())
        out[kind if kind != "ok" else "wrong"] += 1
    return out


def command_lines() -> dict:
    cases = [["run", "p.att", "--steps", str(2**40)], ["run", "p.att", "--seed", str(2**64)],
             ["run", "p.att", "--steps", "-5"], ["compile", "p.att", "--emit", "jax", "-o", "p.att"],
             ["compile", "p.att", "--emit", "jax", "-o", "no/such/dir/x.py"],
             ["compile", "p.att", "--emit", "jax", "-o", "."],
             ["run", "p.att", "--samples", "no/x.npy"], ["run", "p.att", "--plot", "no/x.png"],
             ["explain", "missing.att"], ["explain", "."], ["run", "p.att", "--data", 'csv("\\x")'],
             ["run", "p.att", "--data", 'npz("\\N{nope}")'], ["run", "p.att", "--steps", "abc"]]
    out = {"attempts": len(cases), "diagnostic": 0, "internal": 0, "hang": 0, "wrong": 0}
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        Path("p.att").write_text("param w : real = 1\nminimize (w - 2)^2\ntrain steps=5\n")
        for argv in cases:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = main(argv)
                except SystemExit as e:
                    code = e.code
            text = err.getvalue()
            if "internal error" in text or "Traceback" in text:
                out["internal"] += 1
            elif code == 1 and "error:" in text and Path("p.att").read_text().startswith("param"):
                out["diagnostic"] += 1
            else:
                out["wrong"] += 1
    return out


def compile_times(sizes) -> list[tuple[int, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"s{n}.att"
            terms = " + ".join(f"{i % 7 + 1} * E[x ~ data] (x - w - {i})^2" if i % 2 else f"(w - {i})^2"
                               for i in range(n))
            path.write_text(f"data x : real from gaussian(n=100)\nparam w : real\nminimize {terms}\n")
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "compiler", "compile", str(path)],
                           capture_output=True, check=True, cwd=ROOT)
            rows.append((n, time.perf_counter() - start))
    return rows


def run() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--expressions", type=int, default=2000)
    ap.add_argument("--programs", type=int, default=1000)
    args = ap.parse_args()
    kinds = {"issue 19 cases (language, data)": issue_cases(), "command lines": command_lines(),
             "random constant expressions": constant_expressions(args.expressions),
             "random and mutated programs": programs(args.programs)}
    print("| kind | attempts | diagnostics | internal errors | hangs | silent wrong results |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, r in kinds.items():
        print(f"| {kind} | {r['attempts']} | {r['diagnostic']} | {r['internal']} | {r['hang']} | {r['wrong']} |")
    print("\n| terms | `attractor compile` seconds |\n|---:|---:|")
    for n, seconds in compile_times([100, 400, 800, 1600, 5000]):
        print(f"| {n} | {seconds:.1f} |")


if __name__ == "__main__":
    run()
