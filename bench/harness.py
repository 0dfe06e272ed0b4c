"""Side-by-side timing: contenders run alternately, several rounds after warm-up; medians
and ratios are reported, never asserted."""
from __future__ import annotations

import platform
import statistics
import subprocess
import time
from importlib import metadata
from typing import Callable


def alternate(contenders: dict[str, Callable[[], object]], rounds: int = 7, warmup: int = 1,
              repeat: int = 1) -> dict[str, float]:
    """Median seconds per call of each contender; calls interleave round by round.

    Each callable must block until its work is done (e.g. end with `.block_until_ready()`).
    """
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            t = time.perf_counter()
            for _ in range(repeat):
                fn()
            samples[name].append((time.perf_counter() - t) / repeat)
    return {k: statistics.median(v) for k, v in samples.items()}


def block(x):
    """Wait for every array in a pytree."""
    import jax
    return jax.block_until_ready(x)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def versions(names=("jax", "jaxlib", "optax", "numpy", "sympy", "lark", "scikit-learn", "numpyro", "evosax", "cvxpy")) -> str:
    out = []
    for n in names:
        try:
            out.append(f"{n} {metadata.version(n)}")
        except metadata.PackageNotFoundError:
            out.append(f"{n} (not installed)")
    return ", ".join(out)


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"
