"""What an expectation draws, and its sampler inlined: the machinery the estimator rules
(`reparameterize`, `score_function`) share.

`E[v ~ D] f` is rewritten by *inlining* the sampler of D: every line the drawn variables
need is turned, in order, into

* `E[eps ~ base] (... with w = T(args, eps))` for a parameter-dependent line w ~ F(args) of a
  reparameterisable family (x = T(ε) derived by SymPy in
  `compiler.math.distributions.reparameterization`),
* `E[w ~ F(args)]` with a stop-gradient on w and a score term log F(w; args) for a
  parameter-dependent line of any other family (score function),
* `E[w ~ F(args)]` for a line whose law is fixed, and `... with w = value` for `w = value`,

so the printed form is the estimator itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from compiler import ir
from compiler.analysis.constants import const_value
from compiler.analysis.problems import depends_on
from compiler.ir.builtins import DISTRIBUTIONS, FUNCTIONS
from compiler.ir.printer import show
from compiler.math.distributions import EPS, PARAMETERS, reparameterization
from compiler.rewrite.rule import Context
from compiler.rewrite.strategies import ancestors
from passes.variational.nodes import LogProb

REPARAMETERIZABLE = tuple(name for name, fam in DISTRIBUTIONS.items() if fam.reparam)


def fresh_name(base: str, taken: set[str]) -> str:
    """`base`, or `base_1`, `base_2`, ... whichever is not in `taken` (and is then taken)."""
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def line_expr(line: ir.Node) -> ir.Node:
    """What a block line reads: the law of `w ~ F(...)`, the value of `w = value`."""
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
    for line in reversed([ln for ln in block.lines if ln.name not in given]):
        if line.name in needed:
            keep.append(line)
            needed |= ir.free_names(line_expr(line))
    return tuple(reversed(keep))


def moving_names(ctx: Context) -> set[str]:
    """Variables bound above the node whose values move with the parameters (pathwise)."""
    out: set[str] = set()
    for parent, i in reversed(list(ancestors(ctx.path))):
        if isinstance(parent, ir.Let) and i == 1 and moves(parent.value, ctx.program, out):
            out.add(parent.name)
        elif isinstance(parent, ir.Expect) and i == 1 and parent.estimator == "pathwise":
            out |= {v for v in parent.binder if moves(parent.source, ctx.program, out)}
    return out


def moves(node: ir.Node, program: ir.Program, moving: set[str]) -> bool:
    """Does `node` change with the parameters, directly or through a moving variable?"""
    return depends_on(node, program) or bool(ir.free_names(node) & moving)


def classify(lines, program: ir.Program, moving: set[str]) -> dict[str, str]:
    """For each Tilde line: 'fixed' (its law does not move), 'pathwise' or 'score'."""
    moving, out = set(moving), {}
    for line in lines:
        expr = line_expr(line)
        if moves(expr, program, moving):
            moving.add(line.name)
            if isinstance(line, ir.Tilde):
                out[line.name] = "pathwise" if line.dist.family in REPARAMETERIZABLE else "score"
        elif isinstance(line, ir.Tilde):
            out[line.name] = "fixed"
    return out


def smooth_in(body: ir.Node, names: set[str]) -> bool:
    """No Iverson bracket or piecewise-constant function of `names` in `body`."""
    for n in body.walk():
        step = isinstance(n, ir.Apply) and n.fn in FUNCTIONS and not FUNCTIONS[n.fn].smooth
        rough = isinstance(n, ir.Compare) or step
        if rough and ir.free_names(n) & names:
            return False
    return True


@dataclass(frozen=True)
class Draws:
    """An expectation under a moving law without an estimator: the sampler lines it needs,
    how each drawn variable moves (`classify`), and whether the body is smooth in them."""

    expect: ir.Expect
    lines: tuple[ir.Node, ...]
    kinds: dict
    smooth: bool

    def family(self, name: str) -> str:
        """The distribution family of the drawn variable `name`."""
        return next(line.dist.family for line in self.lines if line.name == name)

    def families(self, *kinds: str) -> tuple[str, ...]:
        """The families of the draws of the given kinds ('fixed', 'pathwise', 'score'), sorted."""
        return tuple(sorted({self.family(name) for name, kind in self.kinds.items() if kind in kinds}))


def moving_expectation(node: ir.Expect, ctx: Context) -> Draws | None:
    """The draws of `node` when it is an expectation under a moving law without an estimator."""
    if node.estimator or not isinstance(node.source, (ir.Dist, ir.Sample)):
        return None
    moving = moving_names(ctx)
    if not moves(node.source, ctx.program, moving):
        return None
    lines = drawn_lines(node, ctx.program)
    return Draws(node, lines, classify(lines, ctx.program, moving), smooth_in(node.body, {ln.name for ln in lines}))


# ---- SymPy → IR for the derived transforms ------------------------------------------------------

def from_sympy(expr: sp.Expr, names: dict[sp.Symbol, ir.Node]) -> ir.Node:
    """An IR expression for a SymPy expression built from + * ^ exp log and `names`."""
    if expr in names:
        return names[expr]
    if expr.is_Number:
        return ir.Num(float(expr))
    if isinstance(expr, sp.Add):
        terms = sorted(expr.args, key=lambda t: (t.has(EPS), bool(t.as_coeff_Mul()[0] < 0), str(t)))
        out = from_sympy(terms[0], names)
        for t in terms[1:]:
            negative = t.as_coeff_Mul()[0] < 0
            out = ir.Apply("sub", (out, from_sympy(-t, names))) if negative else \
                ir.Apply("add", (out, from_sympy(t, names)))
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


def _sympy_number(v: float) -> sp.Expr:
    return sp.Integer(int(v)) if float(v).is_integer() else sp.Float(v)


def reparameterized(dist: ir.Dist, eps: ir.Node) -> tuple[ir.Dist, ir.Node, str]:
    """(base law, T(args, eps), derivation): w = T(args, ε) has law `dist` when ε ~ base."""
    symbols = {k: sp.Symbol(k, real=True) for k in PARAMETERS[dist.family]}
    base, base_params, generic = reparameterization(dist.family, symbols)
    constants = {symbols[k]: _sympy_number(v) for k in symbols if (v := const_value(dist.param(k))) is not None}
    transform = generic.subs(constants)
    names = {symbols[k]: dist.param(k) for k in symbols} | {EPS: eps}
    base_dist = ir.Dist(base, tuple(base_params), tuple(ir.Num(float(v)) for v in base_params.values()),
                        dist.shape, loc=dist.loc)
    how = f"{dist.family}({', '.join(symbols)}) is x = {generic}, epsilon ~ {show(base_dist)}"
    return base_dist, from_sympy(transform, names), how


# ---- the inlining both estimator rules share -------------------------------------------------

@dataclass
class Inlined:
    node: ir.Node
    score: tuple[ir.Node, ...]      # log-density terms of the score-function draws
    how: tuple[str, ...]            # one line per drawn variable: its estimator


def relaxed_bernoulli(dist: ir.Dist, noise: ir.Node, temperature: float) -> ir.Node:
    """The Concrete (Gumbel-softmax) relaxation of a Bernoulli draw from uniform noise u:
    sigmoid((logits + log u - log(1 - u)) / temperature), logits = log p - log(1 - p) for probs=p.
    Hard Bernoulli(logits) draws are its limit as the temperature -> 0."""
    if "logits" in dist.keys:
        logits = dist.param("logits")
    else:
        p = dist.param("probs")
        logits = ir.Apply("sub", (ir.Apply("log", (p,)), ir.Apply("log", (ir.Apply("sub", (ir.Num(1), p)),))))
    logistic = ir.Apply("sub", (ir.Apply("log", (noise,)), ir.Apply("log", (ir.Apply("sub", (ir.Num(1), noise)),))))
    return ir.Apply("sigmoid", (ir.Apply("div", (ir.Apply("add", (logits, logistic)), ir.Num(temperature))),))


def inline(expect: ir.Expect, lines, kinds: dict[str, str], program: ir.Program,
           score_all: bool, body: ir.Node | None = None, label_block: str = "",
           relax: float | None = None) -> Inlined:
    """`expect` with its sampler inlined (see the module docstring); `body` replaces its body.
    With `relax` (a temperature), a moving Bernoulli draw becomes its Concrete relaxation of
    uniform noise instead of a score-function draw.

    Non-drawn names that would capture a free name of the body are renamed.
    """
    body = expect.body if body is None else body
    taken = set(ir.free_names(body)) | {ln.name for ln in lines} | {getattr(d, "name", "") for d in program.decls}
    for line in lines:
        taken |= ir.free_names(line_expr(line))
    clash = ir.free_names(body) - set(expect.binder)
    rename: dict[str, ir.Node] = {}
    wrappers, score, how = [], [], []
    for line in lines:
        expr = line_expr(line)
        for old, new in rename.items():
            expr = ir.substitute(expr, old, new)
        name = line.name
        if name in clash and name not in expect.binder:
            name = fresh_name(name, taken)
            rename[line.name] = ir.Ref(name, "latent")
        if isinstance(line, ir.Assign):
            wrappers.append(("let", name, expr))
            continue
        kind = kinds[line.name]
        if kind == "score" and relax is not None and expr.family == "Bernoulli":
            noise = fresh_name(f"u_{name}", taken)
            wrappers.append(("draw", noise, ir.Dist("Uniform", ("low", "high"), (ir.Num(0.0), ir.Num(1.0)), expr.shape,
                                                    loc=expr.loc), "pathwise"))
            wrappers.append(("let", name, relaxed_bernoulli(expr, ir.Ref(noise, "latent"), relax)))
            how.append(f"{line.name} ~ Bernoulli: relaxed (Concrete), {name} = sigmoid((logits + log u - log(1 - u)) / "
                       f"{relax:g}), u ~ Uniform(0, 1)")
        elif kind == "score" or (score_all and kind == "pathwise"):
            wrappers.append(("draw", name, expr, "score_function"))
            parents = sorted(ir.free_names(expr) - {getattr(d, "name", "") for d in program.decls})
            label = f"{label_block}({name}{' | ' + ', '.join(parents) if parents else ''})" if label_block else ""
            score.append(LogProb(expr, ir.Ref(name, "latent"), label, loc=line.loc))
            how.append(f"{line.name} ~ {expr.family}: score function")
        elif kind == "pathwise":
            eps = fresh_name(f"eps_{name}", taken)
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
