"""The variational rule family: Jensen bounds on marginal likelihoods (`jensen`), closed-form
KL terms (`analytic_kl`), and the gradient estimators of expectations under distributions
that depend on the parameters (`reparameterize`, `score_function`).

The estimator rules rewrite `E[v ~ D] f` by *inlining* the sampler of D: every line the
drawn variables need is turned, in order, into

* `E[eps ~ base] (... with w = T(args, eps))` for a parameter-dependent line w ~ F(args) of a
  reparameterisable family (x = T(ε) derived by SymPy in `distributions_math.reparameterization`),
* `E[w ~ F(args)]` with a stop-gradient on w and a score term log F(w; args) for a
  parameter-dependent line of any other family (score function),
* `E[w ~ F(args)]` for a line whose law is fixed, and `... with w = value` for `w = value`,

so the printed form is the estimator itself. Score terms enter as the surrogate
`stop(f - b) * (S - stop(S)) + f`, S the sum of the score terms: its value is f and its
gradient is ∇f + (f - b)∇S, unbiased for ∇E[f] whenever b does not depend on the draw.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
import sympy as sp

from compiler import ir
from compiler.analysis.problems import block_latents, depends_on, missing_latents
from compiler.backend.lower import DRAWS_AXIS, Emitter, Fn, dist_logprob, lowers
from compiler.ir.builtins import DISTRIBUTIONS, FUNCTIONS
from compiler.driver.check import Certificate, certificate
from compiler.ir.diagnostics import AttractorError
from compiler.math.distributions import EPS, PARAMETERS, kl_closed_form, reparameterization
from compiler.rewrite.manager import RulePass
from compiler.rewrite.rule import Context, Rewrite, legacy_rule
from compiler.ir.printer import show
from compiler.rewrite.strategies import ancestors
from compiler.analysis.constants import const_value

REPARAMETERIZABLE = tuple(name for name, fam in DISTRIBUTIONS.items() if fam.reparam)
SCORE_SAMPLES = 4        # draws per expectation for the leave-one-out baseline, unless told
BASELINES = ("leave_one_out", "none")   # `via score_function(baseline=none)`: plain REINFORCE, for comparison


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

    def latexed(self) -> str:
        from compiler.math.latex import latex
        return rf"\log {latex(self.dist)}\left[{latex(self.value)}\right]"


@lowers(LogProb)
def _lower_logprob(em: Emitter, node: LogProb, fn: Fn) -> str:
    return dist_logprob(em, node.dist, fn.tmp(em.lower(node.value, fn), "v"), fn)


@dataclass(frozen=True)
class OverDraws(ir.Node):
    """A reduction of `value` (v) across the K draws of the innermost expectation with K > 1
    samples, evaluated at every draw k: `loo_mean` the mean of v over the other draws,
    `logmeanexp` log (1/K) sum_j exp v_j, `loo_logmeanexp` the same with v_k replaced by
    the mean of the others (VIMCO's baseline)."""

    op: str
    value: ir.Node

    def printed(self) -> tuple[str, int]:
        return f"{self.op}[draws]({show(self.value)})", 5

    def latexed(self) -> str:
        from compiler.math.latex import latex
        return rf"\operatorname{{{self.op.replace('_', '-')}}}_{{k}}\left({latex(self.value)}\right)"


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


@dataclass(frozen=True)
class ClosedKL(ir.Node):
    """KL(q_family(args_q) || p_family(args_p)) summed over an event of `shape`: `form` is the
    elementwise SymPy closed form, broadcast to the event."""

    q_family: str
    p_family: str
    form: ir.Sym
    shape: tuple[int, ...]

    def printed(self) -> tuple[str, int]:
        args = ", ".join(show(a) for a in self.form.args)
        event = f" : real[{', '.join(map(str, self.shape))}]" if self.shape else ""
        return f"KL[{self.q_family} || {self.p_family}]({args}{event})", 5

    def latexed(self) -> str:
        from compiler.math.latex import latex
        args = ", ".join(latex(a) for a in self.form.args)
        return rf"\mathrm{{KL}}\left[\mathrm{{{self.q_family}}} \,\|\, \mathrm{{{self.p_family}}}\right]\left({args}\right)"


@lowers(ClosedKL)
def _lower_closed_kl(em: Emitter, node: ClosedKL, fn: Fn) -> str:
    shape = "(" + "".join(f"{d}, " for d in node.shape) + ")"
    return f"jnp.sum(jnp.broadcast_to({em.lower(node.form, fn)}, {shape}))"


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
        terms = sorted(expr.args, key=lambda t: (t.has(EPS), bool(t.as_coeff_Mul()[0] < 0), str(t)))
        out = from_sympy(terms[0], names)
        for t in terms[1:]:
            negative = t.as_coeff_Mul()[0] < 0
            out = ir.Apply("sub", (out, from_sympy(-t, names))) if negative else ir.Apply("add", (out, from_sympy(t, names)))
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
    or 4; `baseline=none` drops it, for comparison); when f already couples the draws (an
    importance-weighted bound f = logmeanexp_j w_j), b_k is f with w_k replaced by the mean of
    the others (VIMCO) and each draw's score term is weighted by K, the score of the K-draw
    joint law being a sum.
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
    samples = ctx.option("samples", ctx.program.train.option("samples", SCORE_SAMPLES))
    baseline_kind = ctx.option("baseline", "leave_one_out")
    if baseline_kind not in BASELINES:
        raise AttractorError(f"score_function(baseline=...) is one of {', '.join(BASELINES)}, not '{baseline_kind}'",
                             ctx.program.objective.via.loc)
    coupled = [n for n in _own_draw_nodes(node.body) if n.op == "logmeanexp"]
    if coupled:
        samples, weight = node.samples, float(node.samples)
        baseline = _replace_over_draws(node.body, "logmeanexp", "loo_logmeanexp")
        baseline_text = "b_k = f with w_k replaced by the mean of the other log-weights (VIMCO)"
    else:
        if samples != int(samples) or samples < (2 if baseline_kind == "leave_one_out" else 1):
            raise AttractorError(f"score_function needs a whole number of samples >= 2 for its leave-one-out baseline, got {samples:g}",
                                 node.loc or ctx.program.objective.loc)
        samples, weight = max(int(samples), node.samples), 1.0
        baseline = None
        baseline_text = f"b_k = mean of f over the other {samples - 1} draws of the same point (leave-one-out)"
    if baseline_kind == "none":
        baseline, baseline_text = ir.Num(0), "no baseline (b = 0)"
    taken = set(ir.free_names(node.body)) | {getattr(d, "name", "") for d in ctx.program.decls}
    for line in lines:
        taken |= {line.name} | ir.free_names(_line_expr(line))
    signal = ir.Ref(_fresh("f", taken), "local")
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


# ---- jensen ----------------------------------------------------------------------------------

SUPPORT_TEXT = {"real": "the real line", "positive": "(0, inf)", "binary": "{0, 1}",
                "categorical": "{0, ..., K-1}", "interval": "an interval"}


def _support(dist: ir.Dist, program: ir.Program) -> tuple:
    """The support of a law: its kind, and for an interval the bounds (None if not constant)."""
    kind = DISTRIBUTIONS[dist.family].support
    if kind == "interval":
        return kind, const_value(dist.param("low"), program), const_value(dist.param("high"), program)
    return (kind,)


def _support_text(support: tuple) -> str:
    if support[0] == "interval":
        return "[" + ", ".join("?" if b is None else f"{b:g}" for b in support[1:]) + "]"
    return SUPPORT_TEXT[support[0]]


def _guide_for(model: ir.Block, latents: tuple[str, ...], observed: tuple[str, ...], program: ir.Program):
    """The declared guide of `model` (checked against its latents), or None."""
    guides = [b for b in program.of_type(ir.Block) if b.kind == "guide" and set(b.latents) & set(model.random_vars())]
    if not guides:
        return None
    if len(guides) > 1:
        raise AttractorError(f"model {model.name} has several guides ({', '.join(g.name for g in guides)}): "
                             "declare one guide that draws all its latents", guides[1].loc)
    guide = guides[0]
    for z in guide.latents:
        if z in observed or z not in latents and z in model.random_vars():
            raise AttractorError(f"guide {guide.name} draws '{z}', which model {model.name} observes: a guide draws latents only", guide.loc)
        if z not in latents:
            raise AttractorError(f"guide {guide.name} draws '{z}', but model {model.name} has no latent '{z}'", guide.loc)
    missing = [z for z in latents if z not in guide.latents]
    if missing:
        raise AttractorError(f"guide {guide.name} does not draw model {model.name}'s latent '{missing[0]}': "
                             f"a guide must draw every latent ({', '.join(latents)})", guide.loc)
    unbound = [g for g in guide.given if g not in observed]
    if unbound:
        raise AttractorError(f"guide {guide.name} is given '{unbound[0]}', which log {model.name}(...) does not observe", guide.loc)
    return guide


def _covers(guide: ir.Block, model: ir.Block, program: ir.Program) -> tuple[str, ...]:
    """Side condition: for every latent, supp q = supp p (so the bound is finite and the
    posterior is covered); refused with a diagnostic otherwise."""
    out = []
    for z in guide.latents:
        q_line, p_line = guide.line(z), model.line(z)
        if not isinstance(q_line, ir.Tilde) or not isinstance(p_line, ir.Tilde):
            raise AttractorError(f"'{z}' must be drawn (z ~ ...) in both guide {guide.name} and model {model.name}", q_line.loc)
        sq, sp_ = _support(q_line.dist, program), _support(p_line.dist, program)
        if sq[0] != sp_[0] or None not in sq + sp_ and sq != sp_:
            raise AttractorError(
                f"guide {guide.name} draws '{z}' from {q_line.dist.family} (support {_support_text(sq)}), but model "
                f"{model.name}'s '{z}' is {p_line.dist.family} (support {_support_text(sp_)}): the guide's support must be the "
                "latent's support, or the bound is -infinity or never tight", q_line.dist.loc or q_line.loc)
        assumed = " (bounds not constant: assumed equal)" if None in sq + sp_ else ""
        out.append(f"supp {guide.name}({z}) = supp {model.name}({z}) = {_support_text(sp_)} "
                   f"({q_line.dist.family} guide, {p_line.dist.family} prior){assumed}")
    return tuple(out)


AUTOMATIC = {"real": "Normal", "positive": "LogNormal", "binary": "Bernoulli"}


def automatic_guide(model: ir.Block, latents, observed, program: ir.Program, owner: str,
                    hidden: int | None) -> tuple[ir.Block, tuple[ir.Net, ...]]:
    """An amortised mean-field guide q(z | observed): per latent, the family of its support
    (Normal on the real line: diagonal, loc and softplus(scale) from two MLPs of the observed
    values; LogNormal on (0, inf); Bernoulli with MLP logits on {0, 1})."""
    taken = {getattr(d, "name", "") for d in program.decls} | set(model.random_vars())
    for d in program.of_type(ir.Block):
        taken |= {l.name for l in d.lines}
    shapes = dict(program.data_vars)
    width_in = 0
    for v in observed:
        if len(shapes[v]) > 1:
            raise AttractorError(f"an automatic guide reads the observed values with an MLP: '{v}' must be a scalar or a vector", model.loc)
        width_in += shapes[v][0] if shapes[v] else 1
    name = _fresh(f"q_{model.name}", taken)
    lines, nets = [], []
    for z in latents:
        line = model.line(z)
        kind = DISTRIBUTIONS[line.dist.family].support
        if kind not in AUTOMATIC or len(line.shape or ()) > 1:
            raise AttractorError(f"no automatic guide for '{z}' ({line.dist.family}, support {SUPPORT_TEXT[kind]}"
                                 f"{', not a vector' if len(line.shape or ()) > 1 else ''}): declare guide q({z} | ...)", line.loc)
        width_out = line.shape[0] if line.shape else 1
        width = hidden or min(256, max(32, 2 * (width_in + width_out)))
        family = AUTOMATIC[kind]
        keys = ("logits",) if family == "Bernoulli" else ("loc", "scale")
        made = [ir.Net(_fresh(f"{name}_{z}_{k}", taken), (width_in, width, width_out), owner=owner) for k in keys]
        calls = [ir.NetCall(n.name, tuple(ir.Ref(v, "given") for v in observed)) for n in made]
        if family != "Bernoulli":
            calls[1] = ir.Apply("softplus", (calls[1],))
        lines.append(ir.Tilde(z, ir.Dist(family, keys, tuple(calls), line.shape or ()), line.shape))
        nets += made
    return ir.Block("guide", name, tuple(lines), tuple(latents), tuple(observed), loc=model.loc), tuple(nets)


def jensen(node: ir.Node, ctx: Context) -> Rewrite | None:
    """-log p(x) = -log E_q[p(x, z) / q(z | x)] <= E_q[log q(z | x) - log p(x, z)] (Jensen:
    log is concave), the gap being KL(q(z | x) || p(z | x)) >= 0; `log p(x)` alone gets the
    ELBO, relation `>=`. q is the declared guide, or an automatic amortised one
    (`automatic_guide`; option hidden=H sets its MLPs' width). Option iwae=K:
    log p(x) >= E[log (1/K) sum_k p(x, z_k) / q(z_k | x)], z_k iid ~ q, a bound that
    tightens as K grows (Burda et al. 2016).

    Side conditions: x observed, the guide draws exactly the model's latents, and for each
    latent supp q = supp p.
    """
    negated = isinstance(node, ir.Apply) and node.fn == "neg"
    inner = node.args[0] if negated else node
    if not (isinstance(inner, ir.Apply) and inner.fn == "log" and isinstance(inner.args[0], ir.Density)):
        return None
    density, program = inner.args[0], ctx.program
    if not missing_latents(program, density):
        return None
    model = program.decl(density.model)
    if model.kind != "model":
        raise AttractorError(f"jensen bounds the marginal likelihood of a model; {model.name} is a {model.kind}", density.loc)
    data = {n for n, _ in program.data_vars}
    observed = density.vars + density.given
    unobserved = [v for v in observed if v not in data]
    if unobserved:
        raise AttractorError(f"log {show(density)} marginalises the latents given '{unobserved[0]}', but '{unobserved[0]}' "
                             f"is not observed: declare it as data (data {unobserved[0]} : ...) and bind it with E[... ~ data]", density.loc)
    left_out = [v for v in model.random_vars() if v in data and v not in observed]
    if left_out:
        raise AttractorError(f"log {show(density)} leaves out the observed '{left_out[0]}': write {model.name}({', '.join(observed + (left_out[0],))})", density.loc)
    latents = tuple(v for v in block_latents(program, model) if v not in observed)
    k = ctx.option("iwae", 1)
    if k != int(k) or k < 1:
        raise AttractorError(f"jensen(iwae=K) needs a whole number K >= 1, got {k:g}", program.objective.via.loc)
    guide, decls = _guide_for(model, latents, observed, program), ()
    if guide is None:
        guide, nets = automatic_guide(model, latents, observed, program, ctx.player.name, ctx.option("hidden"))
        decls = nets + (guide,)
    conditions = (f"{', '.join(observed)} observed (data); the latents {', '.join(latents)} are drawn by guide "
                  f"{guide.name}({', '.join(guide.latents)} | {', '.join(guide.given)})",) + _covers(guide, model, program)
    sample = ir.Sample(guide.name, guide.latents, guide.given)
    log_q = ir.Apply("log", (ir.Density(guide.name, guide.latents, guide.given),))
    log_joint = ir.Apply("log", (ir.Density(model.name, density.vars + guide.latents, density.given),))
    if k == 1:
        body = ir.Apply("sub", (log_q, log_joint) if negated else (log_joint, log_q))
        new = ir.Expect(guide.latents, sample, body, loc=node.loc)
        bound = "ELBO"
        gap = f"gap = KL({guide.name}({', '.join(guide.latents)} | {', '.join(guide.given)}) || {model.name}({', '.join(guide.latents)} | {', '.join(observed)})) >= 0"
    else:
        iwae = ir.Expect(guide.latents, sample, OverDraws("logmeanexp", ir.Apply("sub", (log_joint, log_q))), samples=int(k), loc=node.loc)
        new = ir.Apply("neg", (iwae,)) if negated else iwae
        bound = f"importance-weighted bound, K = {int(k)}"
        gap = "gap >= 0, non-increasing in K, -> 0 as K -> infinity (the guide covers the posterior)"
    return Rewrite(new, "<=" if negated else ">=", conditions + (gap,), decls,
                   note=f"{bound}; guide {guide.name}" + (" (automatic, amortised)" if decls else " (declared)"))


# ---- analytic_kl ----------------------------------------------------------------------------------

def _resolved(expr: ir.Node, block: ir.Block) -> ir.Node:
    """`expr` with the block's `v = value` lines substituted, so it reads only outside names."""
    for line in reversed(block.lines):
        if isinstance(line, ir.Assign) and line.name in ir.free_names(expr):
            expr = ir.substitute(expr, line.name, line.value)
    return expr


def _shared(dist: ir.Dist, z: str, lets: list, taken: set[str]) -> ir.Dist:
    """`dist` with each compound parameter replaced by a name bound once (`lets`)."""
    args = []
    for key, arg in zip(dist.keys, dist.args):
        if isinstance(arg, (ir.Num, ir.Ref)):
            args.append(arg)
        else:
            name = _fresh(f"{key}_{z}", taken)
            lets.append((name, arg))
            args.append(ir.Ref(name, "local"))
    return dataclasses.replace(dist, args=tuple(args))


def _parents(block: ir.Block, names, known) -> tuple[str, ...]:
    """The names in `known` that the block's lines for `names` read (the others do not
    change the conditional density, so they are left out of the printed form)."""
    read = set().union(*(ir.free_names(_resolved(block.line(n).dist, block)) for n in names))
    return tuple(k for k in known if k in read)


def _natural(dist: ir.Dist, key: str) -> ir.Node:
    """The parameter `key` of PARAMETERS (Bernoulli: logits, from probs if need be)."""
    if key == "logits" and "probs" in dist.keys:
        probs = dist.param("probs")
        return ir.Apply("sub", (ir.Apply("log", (probs,)), ir.Apply("log", (ir.Apply("sub", (ir.Num(1), probs)),))))
    return dist.param(key)


def closed_kl(q_dist: ir.Dist, p_dist: ir.Dist, shape) -> tuple[ClosedKL, str] | None:
    """KL(q || p) summed over the event, as the SymPy closed form of `kl_closed_form`."""
    cf = kl_closed_form(q_dist.family, p_dist.family)
    if cf is None or cf.expr == sp.oo:
        return None
    args = tuple(_natural(q_dist, k) for k in PARAMETERS[q_dist.family]) + tuple(_natural(p_dist, k) for k in PARAMETERS[p_dist.family])
    form = ir.Sym(f"KL_{q_dist.family}_{p_dist.family}", sp.srepr(cf.expr),
                  tuple(str(s) for s in cf.q_params + cf.p_params), args)
    return ClosedKL(q_dist.family, p_dist.family, form, tuple(shape or ())), f"KL({q_dist.family} || {p_dist.family}) = {cf.expr} per element, derived by SymPy: {cf.how}"


def analytic_kl(node: ir.Node, ctx: Context) -> Rewrite | None:
    """E_q[log q(z | x) - log p(x, z)] = KL(q(z | x) || p(z)) - E_q[log p(x | z)] when the
    KL between the guide's law of z and the prior of z has a closed form (derived by SymPy).

    Relation `=`. Side condition (mean field): the two laws of z depend on no other latent,
    so the KL is a function of the observed values only. Latents without a closed form keep
    their log-ratio inside the expectation.
    """
    if not isinstance(node, ir.Expect) or node.estimator or not isinstance(node.source, ir.Sample):
        return None
    program, guide = ctx.program, ctx.program.decl(node.source.model)
    body = node.body
    if guide.kind != "guide" or not (isinstance(body, ir.Apply) and body.fn == "sub"):
        return None
    logs = [a.args[0] if isinstance(a, ir.Apply) and a.fn == "log" and isinstance(a.args[0], ir.Density) else None for a in body.args]
    if None in logs:
        return None
    is_q = [d.model == guide.name and set(d.vars) == set(guide.latents) and not set(d.given) - set(guide.given) for d in logs]
    if is_q[0] == is_q[1]:
        return None
    q_density, p_density = (logs[0], logs[1]) if is_q[0] else (logs[1], logs[0])
    model = program.decl(p_density.model)
    if not isinstance(model, ir.Block) or model.kind != "model" or not set(guide.latents) <= set(p_density.vars):
        return None
    latents = set(guide.random_vars()) | set(block_latents(program, model))
    closed, how = [], []
    for z in guide.latents:
        q_line, p_line = guide.line(z), model.line(z)
        if not isinstance(q_line, ir.Tilde) or not isinstance(p_line, ir.Tilde):
            continue
        q_dist, p_dist = _resolved(q_line.dist, guide), _resolved(p_line.dist, model)
        if (ir.free_names(q_dist) | ir.free_names(p_dist)) & latents:
            continue
        if kl_closed_form(q_dist.family, p_dist.family) not in (None, sp.oo):
            closed.append((z, q_dist, p_dist, q_line.shape))
    if not closed:
        return None
    names = [z for z, *_ in closed]
    rest = tuple(z for z in guide.latents if z not in names)
    observed = tuple(v for v in p_density.vars if v not in guide.latents)
    neg_elbo = ir.Apply("neg", (ir.Apply("log", (ir.Density(model.name, observed, p_density.given + guide.latents),)),))
    if rest:
        log_q = ir.Apply("log", (ir.Density(guide.name, rest, _parents(guide, rest, q_density.given + tuple(names))),))
        log_p = ir.Apply("log", (ir.Density(model.name, rest, p_density.given + observed + tuple(names)),))
        neg_elbo = ir.Apply("add", (neg_elbo, ir.Apply("sub", (log_q, log_p))))
    lets: list[tuple[str, ir.Node]] = []
    if not rest:   # every latent is drawn from its own law: its parameters are computed once, for the draw and the KL
        taken = ir.free_names(node) | set(guide.latents) | {getattr(d, "name", "") for d in program.decls}
        closed = [(z, _shared(q, z, lets, taken), p, shape) for z, q, p, shape in closed]
    how, kl = [], None
    for z, q_dist, p_dist, shape in closed:
        term, text = closed_kl(q_dist, p_dist, shape)
        kl = term if kl is None else ir.Apply("add", (kl, term))
        how.append(text)
    body = neg_elbo if is_q[0] else (neg_elbo.args[0] if not rest else ir.Apply("neg", (neg_elbo,)))
    if rest:
        expect = ir.Expect(node.binder, node.source, body, node.reduce, samples=node.samples, loc=node.loc)
    else:
        expect = body
        for i, (z, q_dist, _, shape) in reversed(list(enumerate(closed))):
            expect = ir.Expect((z,), dataclasses.replace(q_dist, shape=tuple(shape or ())), expect,
                               samples=node.samples if i == 0 else 1, loc=node.loc)
    new = ir.Apply("add" if is_q[0] else "sub", (expect, kl))
    for name, value in reversed(lets):
        new = ir.Let(name, value, new)
    return Rewrite(new, "=", tuple(how) + (f"mean field: the guide's and the prior's laws of {', '.join(names)} "
                                           "depend on no latent, so E_q[log q - log p] over them is their KL exactly",),
                   note=f"closed-form KL for {', '.join(names)}; the expectation keeps the likelihood term"
                        + ("; the guide's parameters are computed once, for the draw and the KL" if lets else ""))


JENSEN = (legacy_rule("jensen", "marginal", jensen, ("iwae", "hidden")),)
ANALYTIC_KL = (legacy_rule("analytic_kl", "", analytic_kl),)
ESTIMATORS = (
    legacy_rule("reparameterize", "estimator", reparameterize),
    legacy_rule("score_function", "estimator", score_function, ("samples", "baseline")),
)

PASSES: tuple = (RulePass("jensen", JENSEN, "jensen"), RulePass("analytic_kl", ANALYTIC_KL, "analytic_kl"),
                 RulePass("estimators", ESTIMATORS, "estimators"))


# ---- certificates (`attractor check`) ------------------------------------------------------------

def _module(source: str, via: str | None = None):
    """Compile and build a random instance of a rule."""
    from compiler.driver.api import compile_source
    return compile_source(source, via=via, filename="<certificate>").build()


def _mean_se(values) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, np.float64)
    return values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(len(values))


def _losses(mod, params, batch, keys) -> np.ndarray:
    """The loss at `params` once per key (one compiled function, called in a loop)."""
    import jax
    loss = jax.jit(lambda k: mod.LOSSES["theta"](params, k, batch))
    return np.asarray([float(loss(k)) for k in keys])


def _gradients(mod, params, batch, keys) -> dict[str, np.ndarray]:
    import jax
    grad = jax.grad(mod.LOSSES["theta"])
    return {k: np.asarray(v) for k, v in jax.jit(jax.vmap(lambda key: grad(params, key, batch)))(keys).items()}


REPEATS = 200
PPCA = """data x : real[{d}] from npz("{path}")
param W : real[{d}, {k}]
param b : real[{d}]
param A : real[{k}, {d}]
param c : real[{k}]
param s : real[{k}]
model p:
    z ~ Normal(0, 1) : real[{k}]
    x ~ Normal(W @ z + b, {sigma})
guide q(z | x):
    z ~ Normal(A @ x + c, softplus(s))
minimize E[x ~ data] -log p(x)
"""


@certificate("jensen")
def certify_jensen(prog, step, seed: int) -> list[Certificate]:
    """On a random probabilistic PCA (log p(x) exact: x ~ Normal(b, W W^T + sigma^2 I)) with a
    random linear guide, the bound is above -log p(x) for K = 1 and K = 8, and tighter at K = 8;
    on the program itself, the K = 8 bound is below the K = 1 bound at its initial parameters."""
    import jax
    import jax.numpy as jnp
    import tempfile
    from pathlib import Path
    rng = np.random.default_rng(seed)
    d, k, sigma, n = 3, 2, 0.5, 6
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npz"
        x = rng.normal(size=(n, d)) * 1.5
        np.savez(path, x=x)
        source = PPCA.format(d=d, k=k, sigma=sigma, path=path.as_posix())
        params = {"W": rng.normal(size=(d, k)), "b": rng.normal(size=d), "A": rng.normal(size=(k, d)) * 0.3,
                  "c": rng.normal(size=k) * 0.3, "s": rng.normal(size=k) * 0.3}
        cov = params["W"] @ params["W"].T + sigma**2 * np.eye(d)
        diff = x - params["b"]
        exact = np.mean(0.5 * np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
                        + 0.5 * np.linalg.slogdet(cov)[1] + 0.5 * d * np.log(2 * np.pi))
        gap = np.mean(_posterior_kl(params, x, sigma))
        keys = jax.random.split(jax.random.PRNGKey(seed), 20)
        copies = {"x": np.tile(x, (REPEATS, 1))}       # each call averages REPEATS draws per example
        bounds = {}
        for K in (1, 8):
            mod = _module(source, via=f"jensen(iwae={K})")
            bounds[K] = _mean_se(_losses(mod, jax.tree.map(jnp.asarray, params), mod.full_batch(copies), keys))
    out = []
    for K, (m, se) in bounds.items():
        out.append(Certificate("jensen", f"-log p(x) <= bound (K = {K}) on a random PPCA",
                               f"-log p(x) = {exact:.4f} exactly; bound = {m:.4f} +- {3 * se:.4f} (3 s.e., {20 * REPEATS} draws per example)",
                               bool(exact <= m + 3 * se)))
    (m1, s1), (m8, s8) = bounds[1], bounds[8]
    out.append(Certificate("jensen", "gap = KL(q(z | x) || p(z | x)) on the PPCA (K = 1)",
                           f"bound - (-log p(x)) = {m1 - exact:.4f} +- {3 * s1:.4f}; exact KL to the posterior {gap:.4f}",
                           bool(abs(m1 - exact - gap) <= 3 * s1 + 1e-3)))
    out.append(Certificate("jensen", "the K = 8 bound is tighter than K = 1 on the PPCA",
                           f"K = 8: {m8:.4f}, K = 1: {m1:.4f} (-log p(x) = {exact:.4f})", bool(m8 <= m1 + 3 * np.hypot(s1, s8))))
    out.extend(_tightens_on_program(prog, seed))
    return out


def _posterior_kl(params: dict, x: np.ndarray, sigma: float) -> np.ndarray:
    """KL(q(z | x) || p(z | x)) per example for the PPCA: both laws are Gaussian, the
    posterior N(S W^T (x - b) / sigma^2, S) with S = (I + W^T W / sigma^2)^-1."""
    W, k = params["W"], params["W"].shape[1]
    S = np.linalg.inv(np.eye(k) + W.T @ W / sigma**2)
    m = (x - params["b"]) @ W @ S.T / sigma**2
    var_q = np.log1p(np.exp(params["s"])) ** 2
    mu_q = x @ params["A"].T + params["c"]
    P = np.linalg.inv(S)
    diff = m - mu_q
    return 0.5 * (np.trace(P @ np.diag(var_q)) + np.einsum("ni,ij,nj->n", diff, P, diff) - k
                  + np.linalg.slogdet(S)[1] - np.sum(np.log(var_q)))


def _tightens_on_program(prog, seed: int) -> list[Certificate]:
    """IWAE K = 8 vs K = 1 on the program's own model, data and initial parameters."""
    import jax
    from compiler.driver.api import compile_source
    try:
        data = prog.load_data()
    except AttractorError as e:
        return [Certificate("jensen", "the bound tightens with K on this program", f"skipped: {e.message}", True)]
    data = {k: np.asarray(v)[:64] for k, v in data.items()}
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), 16)
    values = {}
    for K in (1, 8):
        mod = compile_source(prog.source, via=f"jensen(iwae={K})", filename=prog.filename).build()
        params = mod.init(jax.random.PRNGKey(seed))
        values[K] = _mean_se(_losses(mod, params, mod.full_batch(data), keys))
    (m1, s1), (m8, s8) = values[1], values[8]
    sign = 1 if prog.program.players[0].sense == "min" else -1
    return [Certificate("jensen", "the bound tightens with K on this program (initial parameters, 64 examples)",
                        f"K = 1: {m1:.4f} +- {3 * s1:.4f}; K = 8: {m8:.4f} +- {3 * s8:.4f}",
                        bool(sign * (m8 - m1) <= 3 * np.hypot(s1, s8)))]


def _random_params(family: str, rng) -> dict[str, float]:
    if family == "Uniform":
        low = rng.uniform(-1, 0)
        return {"low": low, "high": low + rng.uniform(0.5, 2)}
    if family == "Bernoulli":
        return {"logits": rng.uniform(-2, 2)}
    return {"loc": rng.uniform(-1, 1), "scale": rng.uniform(0.5, 1.5)}


def _scipy_law(family: str, v: dict):
    from scipy import stats
    if family == "Normal":
        return stats.norm(v["loc"], v["scale"])
    if family == "Laplace":
        return stats.laplace(v["loc"], v["scale"])
    if family == "LogNormal":
        return stats.lognorm(v["scale"], scale=np.exp(v["loc"]))
    if family == "Uniform":
        return stats.uniform(v["low"], v["high"] - v["low"])
    return stats.bernoulli(1 / (1 + np.exp(-v["logits"])))


@certificate("analytic_kl")
def certify_analytic_kl(prog, step, seed: int) -> list[Certificate]:
    """Every emitted closed-form KL, printed to JAX as the backend prints it, against a Monte
    Carlo estimate of E_q[log q - log p] (SciPy laws, 200000 draws) at random parameters."""
    import jax
    import jax.numpy as jnp
    from compiler.math.distributions import to_jax_source
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    for node in (n for pl in prog.program.players for n in pl.loss.walk() if isinstance(n, ClosedKL)):
        if (node.q_family, node.p_family) in seen:
            continue
        seen.add((node.q_family, node.p_family))
        qv = _random_params(node.q_family, rng)
        pv = _random_params(node.p_family, rng)
        if node.p_family == "Uniform":
            pv = {"low": qv.get("low", 0) - 0.5, "high": qv.get("high", 0) + 0.5}
        expr = sp.sympify(node.form.expr)
        values = [qv[k] for k in PARAMETERS[node.q_family]] + [pv[k] for k in PARAMETERS[node.p_family]]
        names = {s: f"a[{node.form.symbols.index(str(s))}]" for s in expr.free_symbols}
        closed = float(eval(to_jax_source(expr, names), {"jnp": jnp, "jax": jax, "a": jnp.asarray(values)}))
        q, p = _scipy_law(node.q_family, qv), _scipy_law(node.p_family, pv)
        draws = q.rvs(size=200_000, random_state=rng)
        logq = q.logpmf(draws) if node.q_family == "Bernoulli" else q.logpdf(draws)
        logp = p.logpmf(draws) if node.p_family == "Bernoulli" else p.logpdf(draws)
        m, se = _mean_se(logq - logp)
        out.append(Certificate("analytic_kl", f"KL({node.q_family} || {node.p_family}) closed form = E_q[log q - log p]",
                               f"closed form {closed:.5f}; Monte Carlo {m:.5f} +- {4 * se:.5f} (4 s.e.) at {qv}, {pv}",
                               bool(abs(closed - m) <= 4 * se + 1e-4)))
    return out


TEST_FUNCTION = "tanh(z - 0.3) + 0.2 * square(z)"


def _instance_source(family: str) -> str:
    args = {"Normal": "a, exp(b)", "Laplace": "a, exp(b)", "LogNormal": "a, exp(b)", "Uniform": "a, a + exp(b)"}[family]
    return f"param a : real\nparam b : real\nminimize E[z ~ {family}({args})] ({TEST_FUNCTION})\n"


def _exact_mean(family: str, a: float, b: float) -> float:
    """E[f(z)] by adaptive quadrature of the density (SciPy)."""
    from scipy import integrate
    v = {"low": a, "high": a + np.exp(b)} if family == "Uniform" else {"loc": a, "scale": np.exp(b)}
    law = _scipy_law(family, v)
    f = lambda z: np.tanh(z - 0.3) + 0.2 * z**2
    lo, hi = law.support()
    return integrate.quad(lambda z: f(z) * law.pdf(z), lo, hi, epsabs=1e-11, epsrel=1e-11, limit=200)[0]


def _check_gradient(rule: str, what: str, estimates: dict, exact: dict) -> Certificate:
    worst, lines = True, []
    for name, samples in estimates.items():
        m, se = _mean_se(samples)
        ok = np.all(np.abs(m - exact[name]) <= 4 * se + 1e-4)
        worst &= bool(ok)
        lines.append(f"d/d{name}: estimate {np.round(m, 4).tolist()} +- {np.round(4 * se, 4).tolist()}, exact {np.round(exact[name], 4).tolist()}")
    return Certificate(rule, f"the {what} gradient estimate matches the exact gradient (4 s.e.)", "; ".join(lines), worst)


def _families(prog, allowed) -> list[str]:
    found = {n.family for n in prog.typed.walk() if isinstance(n, ir.Dist) and n.family in allowed}
    return sorted(found) or [allowed[0]]


@certificate("reparameterize")
def certify_reparameterize(prog, step, seed: int) -> list[Certificate]:
    """For each reparameterisable family of the program: the pathwise gradient of
    E[z ~ F(a, exp b)] f(z) at random (a, b) against finite differences of the quadrature value."""
    import jax
    import jax.numpy as jnp
    rng = np.random.default_rng(seed)
    out = []
    for family in _families(prog, REPARAMETERIZABLE):
        a, b = rng.uniform(-0.5, 0.5), rng.uniform(-0.7, 0.2)
        mod = _module(_instance_source(family), via="reparameterize")
        params = {"a": jnp.asarray(a, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
        keys = jax.random.split(jax.random.PRNGKey(seed), 10000)
        h = 1e-4
        exact = {"a": (_exact_mean(family, a + h, b) - _exact_mean(family, a - h, b)) / (2 * h),
                 "b": (_exact_mean(family, a, b + h) - _exact_mean(family, a, b - h)) / (2 * h)}
        out.append(_check_gradient("reparameterize", f"pathwise ({family})", _gradients(mod, params, mod.full_batch({}), keys), exact))
    return out


SCORE_INSTANCES = {
    "Bernoulli": ("param a : real[3]\nparam v : real[3]\nminimize E[z ~ Bernoulli(logits=a)] (sum(z * v) - 1)^2\n",
                  lambda rng: {"a": rng.normal(size=3), "v": rng.normal(size=3)}),
    "Categorical": ("param a : real[4]\nparam v : real\nminimize E[z ~ Categorical(logits=a)] (v * z - 1)^2\n",
                    lambda rng: {"a": rng.normal(size=4), "v": rng.normal()}),
}


def _enumerated(family: str, params):
    """E[f(z)] of a SCORE_INSTANCES program by summing over every state (written directly)."""
    import jax
    import jax.numpy as jnp
    if family == "Bernoulli":
        states = jnp.asarray(list(itertools.product((0.0, 1.0), repeat=3)))
        logq = jnp.sum(states * params["a"] - jax.nn.softplus(params["a"]), axis=1)
        return jnp.sum(jnp.exp(logq) * (states @ params["v"] - 1) ** 2)
    states = jnp.arange(4.0)
    return jnp.sum(jax.nn.softmax(params["a"]) * (params["v"] * states - 1) ** 2)


@certificate("score_function")
def certify_score_function(prog, step, seed: int) -> list[Certificate]:
    """For Bernoulli and Categorical latents with few states: the score-function gradient
    (leave-one-out baseline) against the gradient of the exact sum over all states; and the
    VIMCO form when the program uses it."""
    import jax
    import jax.numpy as jnp
    rng = np.random.default_rng(seed)
    out = []
    for family in _families(prog, tuple(SCORE_INSTANCES)):
        source, draw = SCORE_INSTANCES[family]
        mod = _module(source, via="score_function")
        params = {k: jnp.asarray(v, jnp.float32) for k, v in draw(rng).items()}
        exact = {k: np.asarray(v) for k, v in jax.grad(lambda p: _enumerated(family, p))(params).items()}
        keys = jax.random.split(jax.random.PRNGKey(seed), 10000)
        out.append(_check_gradient("score_function", f"score-function ({family})", _gradients(mod, params, mod.full_batch({}), keys), exact))
    if any("VIMCO" in c for s in prog.steps.steps if s.rule == "score_function" for c in s.conditions):
        out.append(_certify_vimco(seed))
    return out


VIMCO = """data x : real[2] from npz("{path}")
param a : real[2]
param w : real[2]
model p:
    z ~ Bernoulli(logits=0) : real[2]
    x ~ Normal(w * z, 1)
guide q(z | x):
    z ~ Bernoulli(logits=a)
minimize E[x ~ data] -log p(x) via jensen(iwae=2)
"""


def _certify_vimco(seed: int) -> Certificate:
    """Importance-weighted bound (K = 2) of a two-bit Bernoulli model: the VIMCO gradient
    against the gradient of the exact sum over all 4^2 pairs of draws."""
    import tempfile
    from pathlib import Path
    import jax
    import jax.numpy as jnp
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 1.0, size=(1, 2))
    params = {"a": jnp.asarray(rng.normal(size=2), jnp.float32), "w": jnp.asarray(rng.normal(size=2), jnp.float32)}
    states = jnp.asarray(list(itertools.product((0.0, 1.0), repeat=2)))

    def exact(p):
        logq = jnp.sum(states * p["a"] - jax.nn.softplus(p["a"]), axis=1)
        logp = jnp.sum(-0.5 * (x[0] - p["w"] * states) ** 2, axis=1) - jnp.log(2 * jnp.pi) + 2 * jnp.log(0.5)
        logw = logp - logq
        bound = jnp.logaddexp(logw[:, None], logw[None, :]) - jnp.log(2.0)
        return -jnp.sum(jnp.exp(logq[:, None] + logq[None, :]) * bound)

    want = {k: np.asarray(v) for k, v in jax.grad(exact)(params).items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npz"
        np.savez(path, x=x)
        mod = _module(VIMCO.format(path=path.as_posix()))
        keys = jax.random.split(jax.random.PRNGKey(seed), 10000)
        got = _gradients(mod, params, mod.full_batch({"x": x}), keys)
    return _check_gradient("score_function", "VIMCO (importance-weighted bound, K = 2, Bernoulli)", got, want)
