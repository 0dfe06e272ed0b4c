"""score_function: ∇E[w ~ q_ψ] f(w) = E[(f(w) - b) ∇log q_ψ(w) + ∇f(w)] for any baseline b
independent of w (the score function, REINFORCE), written as the surrogate

    f + stop(f - b) · (S - stop(S)),   S the sum of the score terms log q_ψ(w),

whose value is f and whose gradient is ∇f + (f - b)∇S, unbiased for ∇E[f].

Relation `=` (equal value, unbiased gradient). Applies when a moving law has no
reparameterisation (Bernoulli, Categorical) or f is not differentiable in the draws; with
`via score_function` to every moving law. Baseline: leave-one-out over K draws per point,
b_k = mean_{j≠k} f(w_j) (option `samples=K`, default the `train samples=` value or 4;
`baseline=none` drops it, for comparison); when f already couples the draws (an
importance-weighted bound f = logmeanexp_j w_j), b_k is f with w_k replaced by the mean of the
others (VIMCO) and each draw's score term is weighted by K, the score of the K-draw joint law
being a sum; likewise for f = phi(mean_j X_j) (jensen_convex), with b_k = phi(mean_{j≠k} X_j).

Option rao_blackwell: with f = sum_t c_t T_t a sum of terms (log densities split into their
factors), each drawn variable w's score multiplies only the terms that depend on w (its own
factors and those downstream of it):

    grad E[f] = E[sum_w sum_i (f_{w,i} - b_{w,i}) grad log q_psi(w_i | pa(w)) + grad f],

f_{w,i} the terms that read w, with an elementwise factor log F(w; args) of w itself (args free
of drawn variables, so the elements w_i are independent given pa(w)) taken element i only.
Unbiased: a term T that does not read w_i has E[T grad log q(w_i | pa)] = E[T E[grad log q(w_i | pa) | pa, rest]] = 0
(the score has mean zero). The leave-one-out baseline is kept, per variable and element.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from compiler import ir
from compiler.ir.diagnostics import AttractorError
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule
from passes.variational.nodes import LogProb, OverDraws
from passes.variational.sampling import Draws, fresh_name, inline, line_expr, moving_expectation

SCORE_SAMPLES = 4        # draws per expectation for the leave-one-out baseline, unless told
BASELINES = ("leave_one_out", "none")   # `via score_function(baseline=none)`: plain REINFORCE, for comparison


@dataclass(frozen=True)
class ScoreEstimate:
    """What the rule established about an expectation: its draws, how many per point, which
    baseline centres f ("vimco", "leave_one_out" or "none"), the weight of the score terms,
    and whether reparameterisable laws get score terms too (forced, or f not smooth)."""

    draws: Draws
    samples: int
    baseline: str
    weight: float
    score_all: bool
    rao_blackwell: bool = False


def match_score(node: ir.Expect, ctx: Context) -> ScoreEstimate | Refusal | None:
    """An expectation under a moving law that the pathwise gradient cannot take (or any, when forced)."""
    draws = moving_expectation(node, ctx)
    if draws is None:
        return None
    kinds = draws.kinds.values()
    if not ctx.forced and "score" not in kinds and draws.smooth:
        return Refusal("every moving law is reparameterisable and the body is differentiable in the draws: "
                       "the pathwise gradient applies", node.loc)
    if not any(k in ("score", "pathwise") for k in kinds):
        return Refusal("no drawn variable's law depends on the parameters", node.loc)
    score_all = ctx.forced or not draws.smooth
    baseline = ctx.option("baseline", "leave_one_out")
    rao_blackwell = bool(ctx.option("rao_blackwell"))
    if any(n.op == "logmeanexp" for n in _own_draw_nodes(node.body)):
        if rao_blackwell:
            return Refusal("rao_blackwell splits f into terms, but the importance-weighted bound couples every term "
                           "through its log-mean-exp (VIMCO's baseline applies: drop rao_blackwell)", node.loc)
        vimco = "vimco" if baseline == "leave_one_out" else baseline
        return ScoreEstimate(draws, node.samples, vimco, float(node.samples), score_all)
    if any(n.op == "mean" for n in _own_draw_nodes(node.body)):      # phi(mean of K draws): jensen_convex
        if rao_blackwell:
            return Refusal("rao_blackwell splits f into terms, but f couples the draws through their mean", node.loc)
        coupled = "loo_coupled" if baseline == "leave_one_out" else baseline
        return ScoreEstimate(draws, node.samples, coupled, float(node.samples), score_all)
    samples = ctx.option("samples", ctx.program.train.option("samples", SCORE_SAMPLES))
    if samples != int(samples) or samples < (2 if baseline == "leave_one_out" else 1):
        raise AttractorError("score_function needs a whole number of samples >= 2 for its leave-one-out baseline, "
                             f"got {samples:g}", node.loc or ctx.program.objective.loc)
    return ScoreEstimate(draws, max(int(samples), node.samples), baseline, 1.0, score_all, rao_blackwell)


def build_score(found: ScoreEstimate, ctx: Context) -> Rewrite:
    """The sampler inlined with score terms S, the body bound once as f, and the surrogate."""
    node, program = found.draws.expect, ctx.program
    taken = set(ir.free_names(node.body)) | {getattr(d, "name", "") for d in program.decls}
    for line in found.draws.lines:
        taken |= {line.name} | ir.free_names(line_expr(line))
    signal = ir.Ref(fresh_name("f", taken), "local")
    expect = ir.Expect(node.binder, node.source, node.body, node.reduce, samples=found.samples, loc=node.loc)
    block = node.source.model if isinstance(node.source, ir.Sample) else ""
    done = inline(expect, found.draws.lines, found.draws.kinds, program, score_all=found.score_all,
                  body=signal, label_block=block)
    if found.rao_blackwell:
        return _build_rao_blackwell(found, done, signal, ctx)
    score = done.score[0]
    for s in done.score[1:]:
        score = ir.Apply("add", (score, s))
    if found.baseline == "vimco":
        baseline = _replace_over_draws(node.body, "logmeanexp", "loo_logmeanexp")
        baseline_text = "b_k = f with w_k replaced by the mean of the other log-weights (VIMCO)"
    elif found.baseline == "loo_coupled":
        baseline = _replace_over_draws(node.body, "mean", "loo_mean")
        baseline_text = "b_k = f with the mean over the draws replaced by the mean over the other draws"
    elif found.baseline == "leave_one_out":
        baseline = OverDraws("loo_mean", signal)
        baseline_text = f"b_k = mean of f over the other {found.samples - 1} draws of the same point (leave-one-out)"
    else:
        baseline, baseline_text = ir.Num(0), "no baseline (b = 0)"
    centred = ir.Apply("stop", (ir.Apply("sub", (signal, baseline)),))
    if found.weight != 1.0:
        centred = ir.Apply("mul", (ir.Num(found.weight), centred))
    score_change = ir.Apply("sub", (score, ir.Apply("stop", (score,))))      # 0 in value, ∇S in gradient
    surrogate = ir.Apply("add", (ir.Apply("mul", (centred, score_change)), signal))
    new = _replace_ref(done.node, signal.name, ir.Let(signal.name, node.body, surrogate))
    return Rewrite(new,
                   conditions=done.how + (f"{baseline_text}: independent of the draw it centres, "
                                          "so the gradient stays unbiased",),
                   note=f"score-function gradient, {found.samples} draws per point; the surrogate's value is f "
                        "(log q - stop(log q) = 0) and its gradient is (f - b) grad log q + grad f",
                   facts=(("baseline", found.baseline), ("samples", found.samples),
                          ("families", found.draws.families("score", *(("pathwise",) if found.score_all else ())))))


def _build_rao_blackwell(found: ScoreEstimate, done, signal: ir.Ref, ctx: Context) -> Rewrite:
    """f + sum_w sum(stop(f_w - b_w) * (S_w - stop(S_w))), S_w the elementwise score of w and f_w the
    terms of f that read w (see the module docstring)."""
    node, program, lines, kinds = found.draws.expect, ctx.program, found.draws.lines, found.draws.kinds
    scored = [ln.name for ln in lines if isinstance(ln, ir.Tilde)
              and (kinds[ln.name] == "score" or (found.score_all and kinds[ln.name] == "pathwise"))]
    reads = _score_ancestry(lines, set(scored))
    terms = [(sign, t) for sign, term in _additive_terms(node.body) for t in _factors(term, program, sign)]
    change, texts = None, []
    for name, score in zip(scored, done.score):
        parts = []
        for sign, term in terms:
            own = _own_factor(term, name, reads)
            if own is not None:
                parts.append((sign, own))
            elif name in set().union(*(reads.get(n, set()) for n in ir.free_names(term))):
                parts.append((sign, term))
        if not parts:
            continue
        signal_w = _signed_sum(parts)
        baseline = OverDraws("loo_mean", signal_w) if found.baseline == "leave_one_out" else ir.Num(0)
        elementwise = dataclasses.replace(score, elementwise=True)
        centred = ir.Apply("stop", (ir.Apply("sub", (signal_w, baseline)),))
        score_change = ir.Apply("sub", (elementwise, ir.Apply("stop", (elementwise,))))
        piece = ir.Apply("sum", (ir.Apply("mul", (centred, score_change)),))
        change = piece if change is None else ir.Apply("add", (change, piece))
        texts.append(f"{name}: {len(parts)} of {len(terms)} terms")
    surrogate = ir.Apply("add", (change, signal)) if change is not None else signal
    new = _replace_ref(done.node, signal.name, ir.Let(signal.name, node.body, surrogate))
    baseline_text = (f"b = mean over the other {found.samples - 1} draws of the same point, per variable and element "
                     "(leave-one-out)") if found.baseline == "leave_one_out" else "no baseline (b = 0)"
    return Rewrite(new,
                   conditions=done.how + (
                       "Rao-Blackwellised: each score multiplies only the terms that read its variable "
                       f"({'; '.join(texts)}); a term that does not read w_i has zero covariance with the score of w_i",
                       f"{baseline_text}: independent of the draw it centres, so the gradient stays unbiased"),
                   note=f"Rao-Blackwellised score-function gradient, {found.samples} draws per point",
                   facts=(("baseline", found.baseline), ("samples", found.samples), ("rao_blackwell", True),
                          ("families", found.draws.families("score", *(("pathwise",) if found.score_all else ())))))


def _additive_terms(node: ir.Node, sign: int = 1) -> list[tuple[int, ir.Node]]:
    """`node` as a signed sum of terms (through +, - and negation)."""
    if isinstance(node, ir.Apply) and node.fn in ("add", "sub"):
        a, b = node.args
        return _additive_terms(a, sign) + _additive_terms(b, sign if node.fn == "add" else -sign)
    if isinstance(node, ir.Apply) and node.fn == "neg":
        return _additive_terms(node.args[0], -sign)
    return [(sign, node)]


def _factors(term: ir.Node, program: ir.Program, sign: int) -> list[ir.Node]:
    """A `log block(vars | given)` term split into one log-density factor per variable (blocks
    made of draws only); any other term whole."""
    if not (isinstance(term, ir.Apply) and term.fn == "log" and isinstance(term.args[0], ir.Density)):
        return [term]
    density = term.args[0]
    block = program.decl(density.model)
    if not isinstance(block, ir.Block) or any(not isinstance(ln, ir.Tilde) for ln in block.lines):
        return [term]
    out = []
    for line in block.lines:
        if line.name in density.vars:
            parents = sorted(ir.free_names(line.dist) - {getattr(d, "name", "") for d in program.decls})
            label = f"{block.name}({line.name}{' | ' + ', '.join(parents) if parents else ''})"
            out.append(LogProb(line.dist, ir.Ref(line.name, "latent"), label, loc=line.loc))
    return out


def _score_ancestry(lines, scored: set[str]) -> dict[str, set[str]]:
    """For each sampler line, the scored variables its value depends on (itself included)."""
    reads: dict[str, set[str]] = {}
    for line in lines:
        expr = line_expr(line)
        reads[line.name] = ({line.name} & scored).union(*(reads.get(n, set()) for n in ir.free_names(expr)))
    return reads


def _own_factor(term: ir.Node, name: str, reads: dict[str, set[str]]) -> ir.Node | None:
    """The elementwise form of log F(name; args) when `term` is that factor and its args read no
    drawn variable (so element i reads only name_i)."""
    if not (isinstance(term, LogProb) and term.value == ir.Ref(name, "latent")):
        return None
    if set().union(*(reads.get(n, set()) for n in ir.free_names(term.dist))):
        return None
    return dataclasses.replace(term, elementwise=True)


def _signed_sum(parts: list[tuple[int, ir.Node]]) -> ir.Node:
    sign, out = parts[0]
    out = out if sign > 0 else ir.Apply("neg", (out,))
    for sign, term in parts[1:]:
        out = ir.Apply("add" if sign > 0 else "sub", (out, term))
    return out


def _own_draw_nodes(body: ir.Node):
    """OverDraws nodes of `body` that refer to its own draws (not to a nested K-draw)."""
    if isinstance(body, OverDraws):
        yield body
    if isinstance(body, ir.Expect) and body.samples > 1:
        return
    for c in body.children():
        yield from _own_draw_nodes(c)


def _replace_over_draws(body: ir.Node, old: str, new: str) -> ir.Node:
    """`body` with its own `old` reductions over the draws (not a nested K-draw's) made `new`."""
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


RULE = Rule(
    "score_function", problem="estimator", matches=(ir.Expect,), relation="=",
    identity="grad E[w ~ q_psi] f(w) = E[(f(w) - b) grad log q_psi(w) + grad f(w)], b independent of w",
    match=match_score, build=build_score,
    unmatched="the objective has no expectation under a law that depends on the parameters",
    options=(Option("samples", int, low=1,
                    doc="K draws per point, for the leave-one-out baseline (default: train samples=, else 4)"),
             Option("baseline", str, choices=BASELINES,
                    doc="leave_one_out (default; VIMCO inside an importance-weighted bound) "
                        "or none (plain REINFORCE)"),
             Option("rao_blackwell", bool,
                    doc="each latent's score multiplies only the terms that read it (its own factors elementwise)")),
    variants=({}, {"rao_blackwell": True}))
