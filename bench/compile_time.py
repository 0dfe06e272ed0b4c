"""Compile time: parse → passes → emitted source (no JAX import, no jit) for every example,
its growth with objective size, and the jit time of each emitted step."""
from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

from attractor import compile_file, compile_source

ROOT = Path(__file__).resolve().parents[1]


def source_time(fn, rounds=5) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def synthetic(terms: int) -> str:
    body = " + ".join(f"{(i % 7) + 1} * sumsq(w - {i % 5})" for i in range(terms))
    return f"param w : real[4]\nminimize {body}\n"


def examples() -> list[dict]:
    rows = []
    for path in sorted((ROOT / "examples").glob("*.att")):
        try:
            seconds = source_time(lambda: compile_file(path).emit())
            rows.append({"example": path.name, "compile_ms": seconds * 1e3})
        except Exception as e:  # a program that does not compile yet is reported, not hidden
            rows.append({"example": path.name, "compile_ms": None, "error": str(e).splitlines()[0]})
    return rows


def growth(sizes=(10, 100, 1000)) -> tuple[list[dict], float]:
    rows = [{"terms": n, "compile_ms": source_time(lambda: compile_source(synthetic(n)).emit(), rounds=3) * 1e3} for n in sizes]
    xs = [math.log(r["terms"]) for r in rows]
    ys = [math.log(r["compile_ms"]) for r in rows]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return rows, slope


def jit_times() -> list[dict]:
    import jax
    rows = []
    for path in sorted((ROOT / "examples").glob("*.att")):
        try:
            prog = compile_file(path)
            mod = prog.build()
            data = mod.as_data(prog.load_data())
            state = mod.init_state(mod.init(jax.random.PRNGKey(0)))
            batch = mod.minibatch(data, jax.random.PRNGKey(1), mod.BATCH)
            t = time.perf_counter()
            mod.step.lower(state, jax.random.PRNGKey(2), batch).compile()
            rows.append({"example": path.name, "jit_s": time.perf_counter() - t})
        except Exception as e:
            rows.append({"example": path.name, "jit_s": None, "error": str(e).splitlines()[0]})
    return rows


def run() -> str:
    lines = ["## Compile time (parse → passes → emitted source; target ≤ 100 ms)", "",
             "| example | compile (ms) | jit of step (s) |", "|---|---|---|"]
    jits = {r["example"]: r for r in jit_times()}
    for r in examples():
        c = f"{r['compile_ms']:.1f}" if r["compile_ms"] is not None else f"error: {r['error']}"
        j = jits[r["example"]]
        jt = f"{j['jit_s']:.2f}" if j["jit_s"] is not None else "—"
        lines.append(f"| {r['example']} | {c} | {jt} |")
    rows, slope = growth()
    lines += ["", "Growth with objective size (synthetic sum of terms):", "",
              "| terms | compile (ms) |", "|---|---|"]
    lines += [f"| {r['terms']} | {r['compile_ms']:.1f} |" for r in rows]
    lines += ["", f"Fitted exponent: compile time ∝ terms^{slope:.2f} (target ≤ 1.2)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
