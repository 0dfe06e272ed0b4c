"""jensen_convex: Jensen's bound for a convex function of an expectation estimated from draws.

A nonlinear function phi of an expectation E_p[X] that the emitted code estimates from draws
is biased if one draw is put inside it. With s the sign of the term in the minimised loss
(+1: the loss grows with it, -1: it falls) and s*phi convex on the range of X,

    s*phi(E_p[X]) <= E[s*phi((1/K) sum_k X(z_k))],   z_k iid ~ p

(Jensen: the K-draw mean is unbiased for E_p[X] and s*phi is convex). The bound is
non-increasing in K and tight as K -> infinity: the K-draw mean decreases in the convex order
(the mean of K + 1 draws is the average of its K + 1 leave-one-out means of K draws). So the
rewrite is an upper bound of the minimised objective; the step's relation reads
`phi(E X) <= E[phi(mean)]` for s = +1 and `>=` for s = -1 (a concave phi entering negatively).

phi is the matched node with the expectation replaced by a variable u (other parts of it are
constants, parameters or opaque values); its convexity is proved by SymPy: s*phi'' >= 0 for
every u in the range of X (u > 0 when X > 0 is proved: exp, softplus, a density, a positive
draw...; u >= 0 for squares, |.|, sqrt; the real line otherwise) and every value of the
other symbols. Where the proof fails, or the direction would give a lower bound of a minimised
term (+sqrt(E X), -exp(E X)), the rule refuses and the node stays intractable.

`log E` is not taken here: it is jensen's K-draw bound (jensen(iwae=K)), computed by a
log-mean-exp. Expectations over minibatches of data are refused here (their bound is the
minibatch itself, not a K-draw mean).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.calculus.util import continuous_domain

from compiler import ir
from compiler.analysis.problems import node_problem, plugin_expectation
from compiler.ir.builtins import DISTRIBUTIONS, OPERATIONS
from compiler.ir.printer import show
from compiler.math.piecewise import RelaxationError, convex_on, pieces
from compiler.math.symbolic import NotScalar, to_sympy
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule
from passes.variational.nodes import OverDraws

CONVEX_DRAWS = 16     # K of the K-draw bound when jensen_convex(draws=K) does not say

# the range of a draw, by the support of its family
SUPPORT_ASSUMPTIONS = {"positive": {"positive": True}, "binary": {"nonnegative": True},
                       "categorical": {"nonnegative": True}}
RANGES = {"positive": "> 0", "nonnegative": ">= 0", "real": "real"}


@dataclass(frozen=True)
class ConvexOfExpectation:
    """`phi(E_p[X])` at a node of sign `sign` in the minimised loss: the expectation, phi as a
    SymPy function of `u`, the range of X, the convexity proof of sign*phi and the K of the bound."""

    node: ir.Node
    expect: ir.Expect
    phi: sp.Expr
    u: sp.Symbol
    sign: int
    range: str              # positive | nonnegative | real
    proof: str
    draws: int


class _Scalar:
    """IR -> SymPy for the proofs: built-in functions become SymPy's, parameters and draws real
    symbols (a draw with the assumptions of its law's support), a density a positive opaque
    symbol, anything else SymPy does not model (a network, another expectation) an opaque real one."""

    def __init__(self, program: ir.Program, symbols: dict[str, sp.Symbol]):
        self.program, self.symbols, self.opaque = program, symbols, 0

    def fresh(self, **assumptions) -> sp.Symbol:
        self.opaque += 1
        return sp.Dummy(f"a{self.opaque}", **assumptions)

    def __call__(self, n: ir.Node, target: ir.Node | None = None) -> sp.Expr:
        """`n` as SymPy, the node `target` (identity) as the symbol `u`."""
        if n is target:
            return self.symbols["#u"]
        if isinstance(n, ir.Apply) and n.fn in OPERATIONS and OPERATIONS[n.fn].sympy is not None:
            return OPERATIONS[n.fn].sympy(sp, *(self(a, target) for a in n.args))
        if isinstance(n, (ir.Num, ir.Ref)):
            return to_sympy(n, self.symbols, self.program)
        if target is not None and any(m is target for m in n.walk()):
            raise NotScalar(f"{show(n)} is not a closed-form function of {show(target)}")
        return self.fresh(positive=True) if isinstance(n, ir.Density) else self.fresh(real=True)


def _range_of(expect: ir.Expect, program: ir.Program) -> str:
    """positive, nonnegative or real: what SymPy proves of the body X for every draw."""
    symbols = {}
    if isinstance(expect.source, ir.Dist):
        family = DISTRIBUTIONS.get(expect.source.family)
        assumptions = SUPPORT_ASSUMPTIONS.get(family.support if family else "", {"real": True})
        symbols = {name: sp.Symbol(name, **assumptions) for name in expect.binder}
    try:
        x = _Scalar(program, symbols)(expect.body)
    except (NotScalar, TypeError, ValueError):
        return "real"
    if x.is_positive:
        return "positive"
    return "nonnegative" if x.is_nonnegative else "real"


def _never_negative(e: sp.Expr, u: sp.Symbol, interval: sp.Interval) -> bool:
    """e >= 0 on the interval, e continuous there: from SymPy's assumptions, or because e < 0 has no solution."""
    if continuous_domain(e, u, interval) != interval:
        return False
    return any(form.is_nonnegative or sp.solveset(form < 0, u, interval) is sp.S.EmptySet for form in (e, sp.simplify(e)))


def _convexity(phi: sp.Expr, u: sp.Symbol, where: str) -> str:
    """Prove phi convex in u on the range: phi continuous there (finite at u = 0 for a
    non-negative range), phi'' continuous and >= 0 on every piece between kinks, the slope
    rising at every kink (`convex_on`). Raises RelaxationError otherwise."""
    lo = -sp.oo if where == "real" else 0
    domain = sp.Interval(lo, sp.oo, left_open=where != "nonnegative", right_open=True)
    try:
        if continuous_domain(phi, u, domain) != domain:
            raise RelaxationError(f"{sp.sstr(phi)} is not finite and continuous for every u {RANGES[where]}")
        parts = pieces(phi, u, lo, sp.oo)
        for a, b, branch in parts:
            second = sp.simplify(sp.diff(branch, u, 2))
            if not _never_negative(second, u, sp.Interval.open(a, b)):
                raise RelaxationError(f"its second derivative {sp.sstr(second)} is not proved >= 0 on ({a}, {b})")
        convex_on(phi, u, lo, sp.oo)      # the slopes at the kinks
    except (NotImplementedError, TypeError, ValueError, AttributeError, RecursionError) as e:
        raise RelaxationError(f"SymPy cannot decide the sign of the second derivative of {phi} ({type(e).__name__})") from None
    seconds = ", ".join(sp.sstr(sp.simplify(sp.diff(b, u, 2))) for _, _, b in parts)
    kinks = f", the slope rising at its {len(parts) - 1} kink{'s' if len(parts) > 2 else ''}" if len(parts) > 1 else ""
    return f"{sp.sstr(phi)} is convex for u {RANGES[where]} (SymPy: continuous, second derivative {seconds} >= 0{kinks})"


def match_convex(node: ir.Node, ctx: Context) -> ConvexOfExpectation | Refusal | None:
    """`phi(E[X])` where the plugin problem stands: s*phi proved convex on the range of X, else a refusal."""
    program = ctx.program
    found = node_problem(program, node)
    if found is None or found.kind != "plugin":
        return None
    expect = plugin_expectation(program, node)
    here = node.loc or program.objective.loc
    if isinstance(expect.source, ir.DataSet):
        return Refusal(f"{show(expect)} is a minibatch mean, not an average of draws; train on the full data set "
                       "(no batch=) to compute it exactly", here)
    if isinstance(node, ir.Apply) and node.fn == "log":
        return Refusal("the log of an expectation is bounded by jensen's K-draw bound (jensen(iwae=K))", here)
    if expect.samples != 1 or expect.reduce != "mean":
        return Refusal(f"{show(expect)} already averages several draws or is a sum", here)
    if ctx.polarity == 0:
        return Refusal("the objective is not monotone in this term, so a bound of it says nothing", here)
    outside = ir.free_names(_replace(node, expect, ir.Num(0)))
    if outside & set(expect.binder):
        return Refusal(f"the draw {', '.join(sorted(outside & set(expect.binder)))} is also a name outside the "
                       "expectation", here)
    taken = ir.free_names(node) | {getattr(d, "name", "") for d in program.decls}
    where = _range_of(expect, program)
    u = sp.Symbol(next(n for n in ("u", "u_", "u__", "u_e") if n not in taken),
                  **({"positive": True} if where == "positive" else {"nonnegative": True} if where == "nonnegative"
                     else {"real": True}))
    try:
        phi = _Scalar(program, {"#u": u})(node, expect)
    except (NotScalar, TypeError, ValueError) as e:
        return Refusal(f"it is not a closed-form function of the expectation ({e})", here)
    sign = ctx.polarity
    signed = sign * phi
    try:
        proof = _convexity(signed, u, where)
    except RelaxationError as e:
        entering = "" if sign == 1 else " (the term enters the minimised loss negatively)"
        return Refusal(f"with u = {show(expect)} (u {RANGES[where]}), {sp.sstr(signed)}{entering} is not proved "
                       f"convex ({e}), so Jensen gives no upper bound of the minimised objective", here)
    return ConvexOfExpectation(node, expect, phi, u, sign, where, proof, ctx.option("draws", CONVEX_DRAWS))


def _replace(node: ir.Node, old: ir.Node, new: ir.Node) -> ir.Node:
    """`node` with the subtree `old` (by identity) replaced by `new`."""
    if node is old:
        return new
    kids = node.children()
    return node.with_children(tuple(_replace(c, old, new) for c in kids)) if kids else node


def build_convex(found: ConvexOfExpectation, ctx: Context) -> Rewrite:
    """s*phi(E X) <= E[s*phi(mean of K draws X_k)]: the node becomes the K-draw expectation of
    phi at the mean of its K draws."""
    expect, k = found.expect, found.draws
    body = _replace(found.node, expect, OverDraws("mean", expect.body) if k > 1 else expect.body)   # K = 1: E[phi(X)]
    new = ir.Expect(expect.binder, expect.source, body, expect.reduce, samples=k, loc=found.node.loc)
    signed = "phi" if found.sign == 1 else "-phi"
    default = "" if ctx.option("draws") is not None else f" (default K = {CONVEX_DRAWS}; set it with jensen_convex(draws=K))"
    return Rewrite(new, "<=" if found.sign == 1 else ">=",
                   (f"phi(u) = {sp.sstr(found.phi)} at u = {show(expect)}; X {RANGES[found.range]}"
                    + (" (SymPy)" if found.range != "real" else ""),
                    f"{signed} convex: {found.proof}",
                    f"Jensen with K = {k}: the mean of K draws is unbiased for E[X], so {signed}(E[X]) <= "
                    f"E[{signed}(mean of K draws)]; the gap is non-increasing in K and -> 0 as K -> infinity",
                    f"the draws come from the expectation's own law {show(expect.source)}"),
                   note=f"a {'convex' if found.sign == 1 else 'concave'} function of an expectation bounded by "
                        f"{k} draw{'s' if k > 1 else ''} instead of a one-draw plug-in{default}",
                   facts=(("bound", "jensen_convex"), ("draws", k), ("phi", sp.sstr(found.phi)),
                          ("sign", found.sign), ("range", found.range), ("convexity", found.proof)))


RULE = Rule(
    "jensen_convex", problem="plugin", matches=(ir.Apply,), relation="<=",
    identity="phi(E[X]) <= E[phi((1/K) sum_k X_k)]   (phi convex, proved by SymPy; >= for a concave phi entering negatively)",
    match=match_convex, build=build_convex,
    unmatched="the objective has no nonlinear function of an expectation estimated from draws",
    options=(Option("draws", int, low=1, wording="draws=K needs a whole number K >= 1, got {value}",
                    doc=f"K draws averaged inside phi (default {CONVEX_DRAWS}); K = 1 is E[phi(X)]"),))
