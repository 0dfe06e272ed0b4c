"""The data inside the support of the models that observe them.

A model that observes a data variable x through `x ~ D(...)` has log p(x) = -inf wherever x lies
outside the support of D: a LogNormal at x <= 0, a Bernoulli at x not in {0, 1}, a Categorical at
a negative or fractional index, a Uniform(a, b) with constant bounds outside [a, b]. A run on
such data diverges at its first step with a NaN that says nothing of the cause, so the data are
checked when they are loaded, and a program that takes such a model's log-density at the data
refused at the `~` line that observes them, with how many values are outside and the first of
them. (JS(data, p) and the other bounded divergences stay finite where p vanishes: not checked.)
"""
from __future__ import annotations

import numpy as np

from compiler import ir
from compiler.analysis.constants import const_value
from compiler.ir.diagnostics import AttractorError
from compiler.math.distributions import support

SHOWN = 3    # values outside the support quoted in the diagnostic


def outside(dist: ir.Dist, values: np.ndarray, program: ir.Program) -> tuple[np.ndarray, str] | None:
    """(mask of the values outside the support of `dist`, the support in words), or None where
    the support is the real line or depends on the parameters (bounds that are not constants)."""
    kind = support(dist.family, dict(zip(dist.keys, dist.args)))
    if kind[0] == "positive":
        return ~(values > 0), "x > 0"
    if kind[0] == "binary":
        return ~((values == 0) | (values == 1)), "x in {0, 1}"
    if kind[0] == "categorical":
        return ~((values >= 0) & (values == np.round(values))), "x a non-negative integer (a state index)"
    if kind[0] == "interval":
        low, high = const_value(kind[1], program), const_value(kind[2], program)
        if low is None or high is None:
            return None
        return ~((values >= low) & (values <= high)), f"{low:g} <= x <= {high:g}"
    return None


def log_density_used(program: ir.Program, model: str) -> bool:
    """Does the program take the log-density of `model` at the data: a density p(x) inside an
    average over the data, E[x ~ data] ... p(x) ..., or KL(data || p) (maximum likelihood)? Other
    divergences with the data (JS(data, p), TV, ...) stay finite where p vanishes: not checked."""
    for node in program.walk():
        if isinstance(node, ir.Expect) and isinstance(node.source, ir.DataSet) and any(
                isinstance(inner, ir.Density) and inner.model == model for inner in node.body.walk()):
            return True
        if isinstance(node, ir.Divergence) and node.kind == "KL" and isinstance(node.p, ir.DataSet) \
                and isinstance(node.q, ir.Ref) and node.q.name == model:
            return True
    return False


def check_support(program: ir.Program, data: dict, filename: str, source: str | None) -> None:
    """Raise a located error where the program takes the log-density of a model at data it
    observes through a law whose support excludes some of their values (module docstring)."""
    for block in program.of_type(ir.Block):
        if block.kind != "model" or not log_density_used(program, block.name):
            continue
        for line in block.lines:
            if not (isinstance(line, ir.Tilde) and line.name in data and isinstance(line.dist, ir.Dist)):
                continue
            values = np.asarray(data[line.name], np.float64)
            found = outside(line.dist, values, program)
            if found is None or not found[0].any():
                continue
            mask, words = found
            bad = values[mask]
            shown = ", ".join(f"{v:g}" for v in bad.ravel()[:SHOWN])
            count = int(mask.sum())
            verb = "is" if count == 1 else "are"
            raise AttractorError(
                f"{count} of the {values.size} values of data {line.name} {verb} outside the support of "
                f"{line.dist.family} ({words}), e.g. {shown}: log {block.name}({line.name}) is -infinity there",
                line.loc, filename, source)
