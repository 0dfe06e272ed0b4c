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
being a sum.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.ir.diagnostics import AttractorError
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule
from passes.variational.nodes import OverDraws
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
    if any(n.op == "logmeanexp" for n in _own_draw_nodes(node.body)):
        vimco = "vimco" if baseline == "leave_one_out" else baseline
        return ScoreEstimate(draws, node.samples, vimco, float(node.samples), score_all)
    samples = ctx.option("samples", ctx.program.train.option("samples", SCORE_SAMPLES))
    if samples != int(samples) or samples < (2 if baseline == "leave_one_out" else 1):
        raise AttractorError("score_function needs a whole number of samples >= 2 for its leave-one-out baseline, "
                             f"got {samples:g}", node.loc or ctx.program.objective.loc)
    return ScoreEstimate(draws, max(int(samples), node.samples), baseline, 1.0, score_all)


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
    score = done.score[0]
    for s in done.score[1:]:
        score = ir.Apply("add", (score, s))
    if found.baseline == "vimco":
        baseline = _replace_over_draws(node.body, "logmeanexp", "loo_logmeanexp")
        baseline_text = "b_k = f with w_k replaced by the mean of the other log-weights (VIMCO)"
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
                        "or none (plain REINFORCE)")))
