"""Memory estimates made before anything is allocated, and the refusal of a program that cannot fit.

The estimate, in float32 bytes, adds
  - parameters: every `param` and every net's weights and biases (those rules introduced too);
  - optimiser state: the gradient, the optimiser's moments (Adam-like: two per parameter,
    SGD: one) and the running average a game or an estimate keeps;
  - data: what the source holds once loaded (compiler.data.datasets.estimate);
  - a step: for every net call in a loss, its activations and their gradients,
    sum(widths) * 3 numbers per example, times the examples of a batch and the draws of the
    expectations around the call; counted net by net, so that a refusal points at the net.
It is an order of magnitude, not a measurement: it exists to refuse `real[1e5, 1e5]` or an mlp of
width 1e8 with a message instead of an out-of-memory error (or a machine that swaps) after the fact.
"""
from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

from compiler import ir
from compiler.data import datasets
from compiler.ir.diagnostics import AttractorError

FLOAT = 4
USABLE = 0.8   # the share of the available memory a run may plan to use


def available_memory() -> int | None:
    """Bytes this process can still use: MemAvailable, bounded by a cgroup limit where one is set."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            found.append(int(limit))
    except OSError:
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(found)


def _net_size(widths) -> int:
    return sum(a * b + b for a, b in itertools.pairwise(widths))


def _draws_around(loss: ir.Node) -> dict[int, int]:
    """For each net call in `loss` (by id), the product of the draws of the expectations around it."""
    out: dict[int, int] = {}
    stack = [(loss, 1)]
    while stack:
        node, draws = stack.pop()
        if isinstance(node, ir.Expect):
            draws *= max(1, int(getattr(node, "samples", 1) or 1))
        if isinstance(node, ir.NetCall):
            out[id(node)] = max(out.get(id(node), 1), draws)
        stack.extend((child, draws) for child in node.children())
    return out


def estimate(program: ir.Program, data_source: ir.Source | None, base_dir: Path,
             training: bool = True) -> list[tuple[str, int, ir.Node | None]]:
    """(what, bytes, the declaration responsible) for each part of a run's memory; without
    `training` (the certificates of `check` evaluate losses and gradients but keep no optimiser)
    the optimiser's state is left out."""
    parts: list[tuple[str, int, ir.Node | None]] = []
    params = 0
    for d in program.decls:
        if isinstance(d, ir.Param):
            size = math.prod(d.shape) * FLOAT
        elif isinstance(d, ir.Net):
            size = (_net_size(d.widths) if d.widths else d.size) * FLOAT   # a Python net: its parameters as counted
        else:
            continue
        params += size
        parts.append((f"{'param' if isinstance(d, ir.Param) else 'net'} {d.name}", size, d))
    optimizer = program.train.option("optimizer")
    name = optimizer if isinstance(optimizer, str) else (optimizer[0] if optimizer else "adam")
    moments = 1 if name == "sgd" else 2
    if training:
        parts.append((f"gradients and {name} state", params * (1 + moments + 1), None))
    else:
        parts.append(("gradients", params, None))
    examples = None
    if data_source is not None and program.data_vars:
        examples, size = datasets.estimate(data_source.name, data_source.args, dict(data_source.kwargs),
                                           list(program.data_vars), base_dir)
        parts.append(("data", size, program.of_type(ir.DataDecl)[0] if program.of_type(ir.DataDecl) else None))
    batch = program.train.option("batch") or examples or 1
    nets = {d.name: d for d in program.of_type(ir.Net)}
    step = dict.fromkeys(nets, 0)   # the activations of a step, net by net: each is charged to its declaration
    for player in program.players:
        draws = _draws_around(player.loss)
        for node in player.loss.walk():
            if isinstance(node, ir.NetCall) and node.net in nets:
                net = nets[node.net]
                width = math.prod(net.shape_in) + math.prod(net.shape_out) if net.python else sum(net.widths)
                step[node.net] += 3 * width * int(batch) * draws.get(id(node), 1) * FLOAT
    parts.extend((f"one step through net {name}", size, nets[name]) for name, size in step.items() if size)
    return parts


def human(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            return f"{size:.3g} {unit}" if unit != "bytes" else f"{int(size)} bytes"
        size /= 1000
    return f"{size:.3g} PB"


def check_memory(prog, override: ir.Source | None = None, force: bool = False, command: str = "run") -> None:
    """Refuse (AttractorError at the declaration of the largest part, else at the largest
    parameter or net) a `command` (run, check, field) whose estimate exceeds the memory
    available, unless `force`. `check` trains nothing: its estimate has no optimiser state."""
    if force:
        return
    available = available_memory()
    if available is None:
        return
    source = override if override is not None else prog.program.data_source
    base = Path(prog.filename).resolve().parent if Path(prog.filename).exists() else Path.cwd()
    parts = estimate(prog.program, source, base, training=command != "check")
    total = sum(size for _, size, _ in parts)
    if total <= USABLE * available:
        return
    what, _, decl = max(parts, key=lambda p: p[1])
    if decl is None:   # optimiser state or a step: the largest declaration it comes from
        decl = max((p for p in parts if isinstance(p[2], (ir.Param, ir.Net))), key=lambda p: p[1], default=(None, 0, None))[2]
    listed = ", ".join(f"{name} {human(size)}" for name, size, _ in sorted(parts, key=lambda p: -p[1]) if size)
    loc = getattr(decl, "loc", None) or prog.program.objective.loc
    raise AttractorError(f"`attractor {command}` on this program needs about {human(total)} of memory ({listed}), more than the "
                         f"{human(available)} available; the largest part is {what}. "
                         f"Shrink it, or pass --force to try anyway", loc, prog.filename, prog.source)
