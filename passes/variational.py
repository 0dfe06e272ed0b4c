"""The variational rule family: gradient estimators of expectations under distributions that
depend on the parameters (`reparameterize`, `score_function`).

Both rules rewrite `E[v ~ D] f` by *inlining* the sampler of D: every line the drawn
variables need is turned, in order, into

* `E[eps ~ base] (... with w = T(args, eps))` for a parameter-dependent line w ~ F(args) of a
  reparameterisable family (x = T(ε) derived by SymPy in `distributions_math.reparameterization`),
* `E[w ~ F(args)]` with a stop-gradient on w and a score term log F(w; args) for a
  parameter-dependent line of any other family (score function),
* `E[w ~ F(args)]` for a line whose law is fixed, and `... with w = value` for `w = value`,

so the printed form is the estimator itself. Score terms enter as the surrogate
`f + stop(f - b) * (S - stop(S))`, S the sum of the score terms: its value is f and its
gradient is ∇f + (f - b)∇S, unbiased for ∇E[f] whenever b does not depend on the draw.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from compiler import ir
from compiler.analysis import depends_on
from compiler.backend import DRAWS_AXIS, Emitter, Fn, dist_logprob, lowers
from compiler.builtins import DISTRIBUTIONS, FUNCTIONS
from compiler.diagnostics import AttractorError
from compiler.distributions_math import EPS, PARAMETERS, reparameterization
from compiler.pipeline import Context, Rewrite, Rule, RulePass
from compiler.printer import show
from compiler.strategies import ancestors

REPARAMETERIZABLE = tuple(name for name, fam in DISTRIBUTIONS.items() if fam.reparam)
SCORE_SAMPLES = 4        # draws per expectation for the leave-one-out baseline, unless told


# ---- node types this family introduces -------------------------------------------------------

@dataclass(frozen=True)
class LogProb(ir.Node):
    """log F(value; args) of a distribution, summed over its event; `label` is how it prints
    (the density of the block line it came from, e.g. `q(z | x)`)."""

    dist: ir.Dist
    value: ir.Node
    label: str = ""

    def printed(self) -> tuple[str, int]:
        return f"log {self.label or show(self.dist) + '[' + show(self.value) + ']'}", 3


@lowers(LogProb)
def _lower_logprob(em: Emitter, node: LogProb, fn: Fn) -> str:
    return dist_logprob(em, node.dist, fn.tmp(em.lower(node.value, fn), "v"), fn)


OVER_DRAWS = {
    "loo_mean": "the mean of v over the other draws",
    "logmeanexp": "log of the mean of exp(v) over all draws",
    "loo_logmeanexp": "log-mean-exp over the draws with this draw's v replaced by the mean of the others",
}


@dataclass(frozen=True)
class OverDraws(ir.Node):
    """A reduction of `value` across the K draws of the innermost expectation with K > 1
    samples (see OVER_DRAWS); evaluated at every draw, so it may differ from draw to draw."""

    op: str
    value: ir.Node

    def printed(self) -> tuple[str, int]:
        return f"{self.op}[draws]({show(self.value)})", 5


@lowers(OverDraws)
def _lower_over_draws(em: Emitter, node: OverDraws, fn: Fn) -> str:
    axis = fn.env.get(DRAWS_AXIS)
    if axis is None:
        raise AttractorError(f"{node.op}[draws] needs an enclosing expectation with several draws", node.loc)
    v = fn.tmp(em.lower(node.value, fn), "v")
    every = fn.tmp(f"jax.lax.all_gather({v}, {axis})", "draws")
    k = f"{every}.shape[0]"
    if node.op == "logmeanexp":
        return f"(jax.nn.logsumexp({every}, axis=0) - jnp.log({k}))"
    others = fn.tmp(f"(jnp.sum({every}, axis=0) - {v}) / ({k} - 1)", "others")
    if node.op == "loo_mean":
        return others
    mine = f"jax.lax.axis_index({axis})"
    return f"(jax.nn.logsumexp({every}.at[{mine}].set({others}), axis=0) - jnp.log({k}))"


# ---- helpers ---------------------------------------------------------------------------------

def _fresh(base: str, taken: set[str]) -> str:
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def _line_expr(line: ir.Node) -> ir.Node:
    return line.dist if isinstance(line, ir.Tilde) else line.value


def drawn_lines(expect: ir.Expect, program: ir.Program) -> tuple[ir.Node, ...]:
    """The sampler lines `expect` needs, in order: a Dist source is one line; a block is
    pruned to the ancestors of the drawn variables, without the lines it is given."""
    src = expect.source
    if isinstance(src, ir.Dist):
        return (ir.Tilde(expect.binder[0], src, src.shape, loc=src.loc),)
    block = program.decl(src.model)
    given = set(src.given) | set(block.given)
    needed, keep = set(expect.binder), []
    for line in reversed([l for l in block.lines if l.name not in given]):
        if line.name in needed:
            keep.append(line)
            needed |= ir.free_names(_line_expr(line))
    return tuple(reversed(keep))


def moving_names(ctx: Context) -> set[str]:
    """Variables bound above the node whose values move with the parameters (pathwise)."""
    out: set[str] = set()
    for parent, i in reversed(list(ancestors(ctx.path))):
        if isinstance(parent, ir.Let) and i == 1 and _moves(parent.value, ctx.program, out):
            out.add(parent.name)
        elif isinstance(parent, ir.Expect) and i == 1 and parent.estimator == "pathwise":
            out |= {v for v in parent.binder if _moves(parent.source, ctx.program, out)}
    return out


def _moves(node: ir.Node, program: ir.Program, moving: set[str]) -> bool:
    return depends_on(node, program) or bool(ir.free_names(node) & moving)


def _classify(lines, program, moving) -> dict[str, str]:
    """For each Tilde line: 'fixed' (its law does not move), 'pathwise' or 'score'."""
    moving, out = set(moving), {}
    for line in lines:
        expr = _line_expr(line)
        if _moves(expr, program, moving):
            moving.add(line.name)
            if isinstance(line, ir.Tilde):
                out[line.name] = "pathwise" if line.dist.family in REPARAMETERIZABLE else "score"
        elif isinstance(line, ir.Tilde):
            out[line.name] = "fixed"
    return out


def _smooth_in(body: ir.Node, names: set[str]) -> bool:
    """No Iverson bracket or piecewise-constant function of `names` in `body`."""
    for n in body.walk():
        rough = isinstance(n, ir.Compare) or (isinstance(n, ir.Apply) and n.fn in FUNCTIONS and not FUNCTIONS[n.fn].smooth)
        if rough and ir.free_names(n) & names:
            return False
    return True


def _candidate(node: ir.Node, ctx: Context):
    """(lines, kinds) when `node` is an expectation under a moving law without an estimator."""
    if not isinstance(node, ir.Expect) or node.estimator or isinstance(node.source, ir.DataSet):
        return None
    if not isinstance(node.source, (ir.Dist, ir.Sample)):
        return None
    moving = moving_names(ctx)
    if not _moves(node.source, ctx.program, moving):
        return None
    lines = drawn_lines(node, ctx.program)
    return lines, _classify(lines, ctx.program, moving)


# ---- SymPy → IR for the derived transforms ------------------------------------------------------

def from_sympy(expr: sp.Expr, names: dict[sp.Symbol, ir.Node]) -> ir.Node:
    """An IR expression for a SymPy expression built from + * ^ exp log and `names`."""
    if expr in names:
        return names[expr]
    if expr.is_Number:
        return ir.Num(float(expr))
    if isinstance(expr, sp.Add):
        terms = sorted(expr.args, key=lambda t: (t.has(EPS), str(t)))
        out = from_sympy(terms[0], names)
        for t in terms[1:]:
            c, rest = t.as_coeff_Mul()
            out = ir.Apply("sub", (out, from_sympy(-t, names))) if c < 0 else ir.Apply("add", (out, from_sympy(t, names)))
        return out
    if isinstance(expr, sp.Mul):
        c, rest = expr.as_coeff_Mul()
        if c == -1:
            return ir.Apply("neg", (from_sympy(rest, names),))
        factors = sorted(expr.args, key=lambda t: (t.has(EPS), str(t)))
        out = from_sympy(factors[0], names)
        for f in factors[1:]:
            out = ir.Apply("mul", (out, from_sympy(f, names)))
        return out
    if isinstance(expr, sp.Pow):
        return ir.Apply("pow", (from_sympy(expr.base, names), from_sympy(expr.exp, names)))
    if isinstance(expr, (sp.exp, sp.log)):
        return ir.Apply(type(expr).__name__, (from_sympy(expr.args[0], names),))
    raise ValueError(f"cannot express {expr} in the IR")


def reparameterized(dist: ir.Dist, eps: ir.Node) -> tuple[ir.Dist, ir.Node, str]:
    """(base law, T(args, eps), derivation): w = T(args, ε) has law `dist` when ε ~ base."""
    symbols = {k: sp.Symbol(k, real=True) for k in PARAMETERS[dist.family]}
    base, base_params, transform = reparameterization(dist.family, symbols)
    names = {symbols[k]: dist.param(k) for k in symbols} | {EPS: eps}
    base_dist = ir.Dist(base, tuple(base_params), tuple(ir.Num(float(v)) for v in base_params.values()),
                        dist.shape, loc=dist.loc)
    how = f"{dist.family}({', '.join(symbols)}) is x = {transform}, epsilon ~ {show(base_dist)}"
    return base_dist, from_sympy(transform, names), how


# ---- the inlining both estimator rules share -------------------------------------------------

@dataclass
class Inlined:
    node: ir.Node
    score: tuple[ir.Node, ...]      # log-density terms of the score-function draws
    how: tuple[str, ...]            # one line per drawn variable: its estimator


def inline(expect: ir.Expect, lines, kinds: dict[str, str], program: ir.Program,
           score_all: bool, body: ir.Node | None = None, label_block: str = "") -> Inlined:
    """`expect` with its sampler inlined (see the module docstring); `body` replaces its body.

    Non-drawn names that would capture a free name of the body are renamed.
    """
    body = expect.body if body is None else body
    taken = set(ir.free_names(body)) | {l.name for l in lines} | {getattr(d, "name", "") for d in program.decls}
    for line in lines:
        taken |= ir.free_names(_line_expr(line))
    clash = ir.free_names(body) - set(expect.binder)
    rename: dict[str, ir.Node] = {}
    wrappers, score, how = [], [], []
    for line in lines:
        expr = _line_expr(line)
        for old, new in rename.items():
            expr = ir.substitute(expr, old, new)
        name = line.name
        if name in clash and name not in expect.binder:
            name = _fresh(name, taken)
            rename[line.name] = ir.Ref(name, "latent")
        if isinstance(line, ir.Assign):
            wrappers.append(("let", name, expr))
            continue
        kind = kinds[line.name]
        if kind == "score" or (score_all and kind == "pathwise"):
            wrappers.append(("draw", name, expr, "score_function"))
            parents = sorted(ir.free_names(expr) - {getattr(d, "name", "") for d in program.decls})
            label = f"{label_block}({name}{' | ' + ', '.join(parents) if parents else ''})" if label_block else ""
            score.append(LogProb(expr, ir.Ref(name, "latent"), label, loc=line.loc))
            how.append(f"{line.name} ~ {expr.family}: score function")
        elif kind == "pathwise":
            eps = _fresh(f"eps_{name}", taken)
            base, value, derived = reparameterized(expr, ir.Ref(eps, "latent"))
            wrappers.append(("draw", eps, base, "pathwise"))
            wrappers.append(("let", name, value))
            how.append(f"{line.name} ~ {expr.family}: pathwise, {derived}")
        else:
            wrappers.append(("draw", name, expr, "pathwise"))
            how.append(f"{line.name} ~ {show(expr)}: fixed law, drawn as is")
    return Inlined(_wrap(wrappers, body, expect.samples), tuple(score), tuple(how))


def _wrap(wrappers, body: ir.Node, samples: int) -> ir.Node:
    """Nest the wrappers around `body`; the outermost draw carries the `samples`."""
    first = next((i for i, w in enumerate(wrappers) if w[0] == "draw"), None)
    out = body
    for i, w in reversed(list(enumerate(wrappers))):
        if w[0] == "let":
            out = ir.Let(w[1], w[2], out)
        else:
            out = ir.Expect((w[1],), w[2], out, estimator=w[3], samples=samples if i == first else 1)
    return out


def _block_name(expect: ir.Expect) -> str:
    return expect.source.model if isinstance(expect.source, ir.Sample) else ""


# ---- the rules ---------------------------------------------------------------------------------

def reparameterize(node: ir.Node, ctx: Context) -> Rewrite | None:
    """E[w ~ F_ψ] f(w) = E[ε ~ base] f(T_ψ(ε)) for reparameterisable F (Normal, Laplace,
    Uniform, LogNormal): the pathwise gradient E[∇_ψ f(T_ψ(ε))] is unbiased.

    Relation `=`. Side conditions: every moving law is reparameterisable and f is
    differentiable in the draws (no Iverson bracket or piecewise-constant function of them).
    """
    found = _candidate(node, ctx)
    if found is None:
        return None
    lines, kinds = found
    if "score" in kinds.values() or not _smooth_in(node.body, {l.name for l in lines}):
        return None
    done = inline(node, lines, kinds, ctx.program, score_all=False)
    return Rewrite(done.node, "=",
                   conditions=done.how + ("the body is differentiable in the draws: no Iverson bracket or step of them",),
                   note="pathwise gradient: the draws are differentiable functions of the parameters and fixed noise")


def score_function(node: ir.Node, ctx: Context) -> Rewrite | None:
    """∇E[w ~ q_ψ] f(w) = E[(f(w) - b) ∇log q_ψ(w) + ∇f(w)] for any b independent of w
    (score function, REINFORCE), as the surrogate f + stop(f - b)·(log q - stop(log q)).

    Relation `=` (equal value, unbiased gradient). Applies when a moving law has no
    reparameterisation (Bernoulli, Categorical) or f is not differentiable in the draws; with
    `via score_function` to every moving law. Baseline: leave-one-out over K draws per
    point, b_k = mean_{j≠k} f(w_j) (option `samples=K`, default the `train samples=` value
    or 4); when f already couples the draws (an importance-weighted bound
    f = logmeanexp_j w_j), b_k is f with w_k replaced by the mean of the others (VIMCO) and
    each draw's score term is weighted by K, the score of the K-draw joint law being a sum.
    """
    found = _candidate(node, ctx)
    if found is None:
        return None
    lines, kinds = found
    smooth = _smooth_in(node.body, {l.name for l in lines})
    if not ctx.forced and "score" not in kinds.values() and smooth:
        return None
    if not any(k in ("score", "pathwise") for k in kinds.values()):
        return None
    samples = int(ctx.option("samples", ctx.program.train.option("samples", SCORE_SAMPLES)))
    coupled = [n for n in _own_draw_nodes(node.body) if n.op == "logmeanexp"]
    if coupled:
        samples, weight = node.samples, float(node.samples)
        baseline = _replace_over_draws(node.body, "logmeanexp", "loo_logmeanexp")
        baseline_text = "b_k = f with w_k replaced by the mean of the other log-weights (VIMCO)"
    else:
        if samples < 2:
            raise AttractorError("score_function needs samples >= 2 for its leave-one-out baseline", node.loc)
        samples, weight = max(samples, node.samples), 1.0
        baseline = None
        baseline_text = f"b_k = mean of f over the other {samples - 1} draws of the same point (leave-one-out)"
    signal = ir.Ref(_fresh("f", set(ir.free_names(node.body)) | {getattr(d, "name", "") for d in ctx.program.decls}), "local")
    expect = ir.Expect(node.binder, node.source, node.body, node.reduce, samples=samples, loc=node.loc)
    done = inline(expect, lines, kinds, ctx.program, score_all=ctx.forced or not smooth,
                  body=signal, label_block=_block_name(node))
    score = done.score[0]
    for s in done.score[1:]:
        score = ir.Apply("add", (score, s))
    b = OverDraws("loo_mean", signal) if baseline is None else baseline
    centred = ir.Apply("stop", (ir.Apply("sub", (signal, b)),))
    if weight != 1.0:
        centred = ir.Apply("mul", (ir.Num(weight), centred))
    surrogate = ir.Apply("add", (ir.Apply("mul", (centred, ir.Apply("sub", (score, ir.Apply("stop", (score,)))))), signal))
    new = _replace_ref(done.node, signal.name, ir.Let(signal.name, node.body, surrogate))
    return Rewrite(new, "=",
                   conditions=done.how + (baseline_text + ": independent of the draw it centres, so the gradient stays unbiased",),
                   note=f"score-function gradient, {samples} draws per point; the surrogate's value is f "
                        "(log q - stop(log q) = 0) and its gradient is (f - b) grad log q + grad f")


def _own_draw_nodes(body: ir.Node):
    """OverDraws nodes of `body` that refer to its own draws (not to a nested K-draw)."""
    if isinstance(body, OverDraws):
        yield body
    if isinstance(body, ir.Expect) and body.samples > 1:
        return
    for c in body.children():
        yield from _own_draw_nodes(c)


def _replace_over_draws(body: ir.Node, old: str, new: str) -> ir.Node:
    if isinstance(body, OverDraws) and body.op == old:
        return OverDraws(new, body.value, loc=body.loc)
    if isinstance(body, ir.Expect) and body.samples > 1:
        return body
    kids = body.children()
    return body.with_children(tuple(_replace_over_draws(c, old, new) for c in kids)) if kids else body


def _replace_ref(root: ir.Node, name: str, value: ir.Node) -> ir.Node:
    """Put `value` where the placeholder body `Ref(name)` sits (the innermost wrapper)."""
    if isinstance(root, ir.Ref) and root.name == name:
        return value
    kids = root.children()
    return root.with_children(tuple(_replace_ref(c, name, value) for c in kids)) if kids else root


RULES = (
    Rule("reparameterize", "estimator", reparameterize),
    Rule("score_function", "estimator", score_function, ("samples",)),
)

PASSES: tuple = (RulePass("estimators", RULES, "estimators"),)
