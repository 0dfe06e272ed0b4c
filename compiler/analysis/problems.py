"""What makes an objective intractable: the checker's classification of nodes.

Each intractable node belongs to a *problem* (marginal, divergence, nondiff, estimator,
plugin, constraint); rule families register the rules that answer each problem.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.ir.builtins import FUNCTIONS, OPERATIONS
from compiler.ir.printer import show


@dataclass(frozen=True)
class Problem:
    node: ir.Node
    kind: str          # marginal | divergence | nondiff | estimator | plugin | constraint
    reason: str


def block_latents(program: ir.Program, block: ir.Block) -> tuple[str, ...]:
    """Random variables of a model that are not observed data."""
    data = {n for n, _ in program.data_vars}
    return tuple(v for v in block.random_vars() if v not in data)


def depends_on(node: ir.Node, program: ir.Program, names: set[str] | None = None) -> bool:
    """Does `node` depend on learnable parameters (all of them, or those in `names`)?"""
    learn = set(program.learnable()) if names is None else names
    for n in node.walk():
        if isinstance(n, ir.Ref) and n.name in learn:
            return True
        if isinstance(n, ir.NetCall) and n.net in learn:
            return True
        if isinstance(n, (ir.Density, ir.Sample)):
            block = program.decl(n.model)
            if isinstance(block, ir.Block) and any(depends_on(l, program, names) for l in block.lines):
                return True
    return False


def missing_latents(program: ir.Program, density: ir.Density) -> tuple[str, ...]:
    block = program.decl(density.model)
    if not isinstance(block, ir.Block) or block.kind == "sampler":
        return ()
    known = set(density.vars) | set(density.given) | set(block.given)
    needed, frontier = set(), list(density.vars)
    while frontier:   # the unknown ancestors of the variables asked for: they are integrated out
        line = block.line(frontier.pop())
        if line is None:
            continue
        for name in ir.free_names(line.dist if isinstance(line, ir.Tilde) else line.value):
            if name not in known and name not in needed and block.line(name) is not None:
                needed.add(name)
                frontier.append(name)
    return tuple(v for v in block.random_vars() if v in needed)


def log_marginal(node: ir.Node, program: ir.Program) -> tuple[bool, ir.Density, tuple[str, ...]] | None:
    """`log p(x)` or `-log p(x)` whose model has latents to integrate out, as (negated, the density,
    the latents); None for anything else."""
    negated = isinstance(node, ir.Apply) and node.fn == "neg"
    inner = node.args[0] if negated else node
    if not (isinstance(inner, ir.Apply) and inner.fn == "log" and isinstance(inner.args[0], ir.Density)):
        return None
    latents = missing_latents(program, inner.args[0])
    return (negated, inner.args[0], latents) if latents else None


# Positions in which a node's value enters linearly: an unbiased estimate there stays unbiased.
LINEAR_IN_EVERY_ARGUMENT = {name for name, op in OPERATIONS.items() if op.multilinear}


def linear_arguments(n: ir.Node) -> tuple[ir.Node, ...] | None:
    """The children of `n` in which it is linear (affine), or None if `n` is linear in all of
    them. Sums, scalings and products (of independently drawn estimates, E[XY] = E[X]E[Y]) keep
    an unbiased estimate unbiased; a quotient does in its numerator only; every other function
    (log, exp, sqrt, powers, max, a comparison, a network, a distribution's parameter) does not."""
    if isinstance(n, ir.Apply):
        if n.fn in LINEAR_IN_EVERY_ARGUMENT:
            return None
        return n.args[:1] if n.fn == "div" else ()
    if isinstance(n, (ir.Compare, ir.NetCall, ir.Dist, ir.Sym)):
        return ()
    if isinstance(n, ir.Expect):      # an average of its body; its source is where draws come from
        return None if not isinstance(n.source, ir.Dist) else (n.body,)
    return None


def stochastic_expectation(program: ir.Program, n: ir.Node) -> bool:
    """Is `n` an expectation the emitted code estimates from draws instead of computing it: one
    under a distribution (Monte Carlo), or over the data set when training takes minibatches?"""
    if not isinstance(n, ir.Expect):
        return False
    if isinstance(n.source, ir.DataSet):
        return bool(program.train.option("batch"))
    return True


def plugin_expectation(program: ir.Program, n: ir.Node) -> ir.Expect | None:
    """A stochastic expectation that enters `n` nonlinearly, through linear positions below it:
    the value a one-draw (or one-minibatch) plug-in would put where f(E[...]) stands. f(mean of
    draws) is a biased estimate of f(E[...]) for a nonlinear f (Jensen: E log X <= log E X)."""
    linear = linear_arguments(n)
    if linear is None:
        return None
    inside = [c for c in n.children() if not any(c is a for a in linear)]
    stack = list(inside)
    while stack:
        m = stack.pop()
        if stochastic_expectation(program, m):
            return m
        below = linear_arguments(m)
        stack.extend(m.children() if below is None else below)
    return None


def problems(program: ir.Program, root: ir.Node) -> list[Problem]:
    """Intractable nodes in `root`, outermost first."""
    return [p for n in root.walk() if (p := node_problem(program, n)) is not None]


def node_problem(program: ir.Program, n: ir.Node) -> Problem | None:
    """What makes the node `n` itself intractable, if anything (its children not considered)."""
    if isinstance(n, ir.Density):
        missing = missing_latents(program, n)
        if missing:
            return Problem(n, "marginal", f"{n.model}({', '.join(n.vars)}) is an integral over the latent {', '.join(missing)}")
    elif isinstance(n, ir.Divergence):
        need = ("the score (gradient of the log density) of a distribution known only through samples"
                if n.kind == "Fisher" else "the density ratio of distributions known only through samples or unnormalised densities")
        return Problem(n, "divergence", f"{n.kind} needs {need}")
    elif isinstance(n, ir.Apply) and n.fn in FUNCTIONS and not FUNCTIONS[n.fn].smooth and depends_on(n, program):
        return Problem(n, "nondiff", f"{n.fn} is piecewise constant in the parameters: its gradient is zero almost everywhere")
    elif isinstance(n, ir.Compare) and depends_on(n, program):
        return Problem(n, "nondiff", "an Iverson bracket is piecewise constant in the parameters: its gradient is zero almost everywhere")
    elif isinstance(n, ir.Expect) and not n.estimator and not isinstance(n.source, ir.DataSet) \
            and depends_on(n.source, program):
        return Problem(n, "estimator", "an expectation under a distribution that depends on the parameters needs a gradient estimator")
    elif (inner := plugin_expectation(program, n)) is not None:
        what = "a minibatch mean" if isinstance(inner.source, ir.DataSet) else "a Monte Carlo average of draws"
        return Problem(n, "plugin", f"a nonlinear function of {show(inner)}, which is estimated by {what}, so one "
                                    "estimate put inside it is biased (Jensen); bound it (E[log X] <= log E[X]: the "
                                    "expectation outside the function) or compute the expectation exactly")
    return None


def program_problems(program: ir.Program) -> list[Problem]:
    out = []
    for c in program.constraints:
        out.append(Problem(c, "constraint", "a constrained problem is not a plain minimisation"))
    for p in program.players:
        out.extend(problems(program, p.loss))
    return out
