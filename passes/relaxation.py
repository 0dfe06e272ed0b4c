"""The relaxation rule family: piecewise-constant terms replaced by convex ones, and convex
non-smooth terms applied as proximal steps.

    relax_l0    norm0(w)  ~  norm1(w)                 convex envelope of norm0 on ‖w‖∞ ≤ 1
    relax_step  [s <= 0]  <= max(0, 1 - s)            hinge: convex, an upper bound on the line
                          <= log2(1 + exp(-s))        logistic, on request
    proximal    c * norm1(w), c * sumsq(w)  =  the same term, applied after each gradient step
                by its proximal map (soft-thresholding, shrinkage), so that solutions are
                exactly sparse

SymPy does the scalar mathematics: it cuts a function of one variable at its kinks, proves
convexity piece by piece (second derivative ≥ 0, slopes rising across kinks), proves that a
surrogate bounds the 0-1 loss from above on the whole real line, and derives proximal maps.
The relaxations are bounds in one direction only; the pass manager refuses them under a
negative weight or inside a maximisation.

Without `via`, relaxation is chosen when every non-differentiable node of the program has a
convex surrogate that keeps the bound's direction; otherwise the pass stands aside and
evolution strategies smooth the objective as a whole (passes/evolution.py).
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import sympy as sp
from sympy.core.relational import Relational

from compiler import ir
from compiler.analysis import depends_on, node_problem
from compiler.certify import Certificate, certificate
from compiler.defaults import plain_gradient
from compiler.diagnostics import AttractorError
from compiler.pipeline import STAGES, Context, Rewrite, Rule, RulePass, Step, _check_direction
from compiler.printer import show
from compiler.strategies import const_value, positions

S = sp.Symbol("s", real=True)      # the margin of a 0-1 loss [s <= 0]
X = sp.Symbol("x", real=True)      # the argument of a proximal map
V = sp.Symbol("v", real=True)      # the point a proximal map is taken at
T = sp.Symbol("t", positive=True)  # the step of a proximal map

SURROGATES = {
    "hinge": sp.Max(0, 1 - S),
    "logistic": sp.log(1 + sp.exp(-S)) / sp.log(2),
}
LOGISTIC_LABEL = "logistic2"       # how the printer shows log2(1 + exp(-s))


class RelaxationError(Exception):
    """SymPy could not prove what a relaxation needs (convexity, the bound)."""


def zero_one(strict: bool) -> sp.Expr:
    """The 0-1 loss [s <= 0] (or [s < 0]) as a SymPy function of the margin s."""
    return sp.Heaviside(-S, 0 if strict else 1)


# ---- functions of one real variable, cut at their kinks ---------------------------------------

def _cuts(f: sp.Expr, x: sp.Symbol, lo, hi) -> list:
    """Points of (lo, hi) where a piece of f ends (Piecewise conditions, Max, Min, Abs, ...)."""
    pw = sp.piecewise_fold(f.rewrite(sp.Piecewise))
    points = set()
    for r in pw.atoms(Relational):
        roots = sp.solveset(r.lhs - r.rhs, x, sp.Interval.open(lo, hi))
        if not isinstance(roots, sp.FiniteSet):
            raise RelaxationError(f"cannot find where {r} changes for real {x}")
        points |= set(roots)
    return sorted(points, key=float)


def _at(pw: sp.Expr, x: sp.Symbol, x0) -> sp.Expr:
    """The smooth branch of the piecewise function `pw` in force around x = x0."""
    if not isinstance(pw, sp.Piecewise):
        return pw
    return next(e for e, c in pw.args if bool(c.subs(x, x0)))


def _inside(a, b):
    """A point of the open interval (a, b)."""
    if a == -sp.oo:
        return sp.Integer(0) if b == sp.oo else b - 1
    return a + 1 if b == sp.oo else (a + b) / 2


def pieces(f: sp.Expr, x: sp.Symbol, lo=-sp.oo, hi=sp.oo) -> list[tuple]:
    """f on (lo, hi) cut at its kinks: [(a, b, smooth branch of f on (a, b)), ...]."""
    lo, hi = sp.sympify(lo), sp.sympify(hi)
    pw = sp.piecewise_fold(f.rewrite(sp.Piecewise))
    ends = [lo, *_cuts(f, x, lo, hi), hi]
    return [(a, b, _at(pw, x, _inside(a, b))) for a, b in zip(ends, ends[1:])]


def _never_negative(e: sp.Expr, x: sp.Symbol, a, b) -> bool:
    """e ≥ 0 on (a, b): from SymPy's assumptions, by solving e < 0, or — when SymPy cannot
    solve it — because e is monotone there with a non-negative limit at the lower end."""
    interval = sp.Interval.open(a, b)
    for form in (e, sp.simplify(e)):
        if form.is_nonnegative or sp.solveset(form < 0, x, interval) is sp.S.EmptySet:
            return True
    slope = sp.diff(e, x)
    for falls, end in ((sp.solveset(slope > 0, x, interval), b), (sp.solveset(slope < 0, x, interval), a)):
        if falls is sp.S.EmptySet:
            limit = sp.limit(e, x, end, "-" if end == b else "+")
            return bool(limit.is_nonnegative)
    return False


def convex_on(f: sp.Expr, x: sp.Symbol, lo=-sp.oo, hi=sp.oo) -> str:
    """Prove f convex on (lo, hi): f'' ≥ 0 on every piece, f continuous with rising slope at
    every kink. Returns the statement checked; raises RelaxationError otherwise."""
    parts = pieces(f, x, lo, hi)
    for a, b, g in parts:
        if not _never_negative(sp.diff(g, x, 2), x, a, b):
            raise RelaxationError(f"{f} is not convex: its second derivative {sp.simplify(sp.diff(g, x, 2))} is negative somewhere on ({a}, {b})")
    kinks = []
    for (_, k, left), (_, _, right) in zip(parts, parts[1:]):
        if sp.simplify(left.subs(x, k) - right.subs(x, k)) != 0:
            raise RelaxationError(f"{f} jumps at {x} = {k}")
        dl, dr = sp.simplify(sp.diff(left, x).subs(x, k)), sp.simplify(sp.diff(right, x).subs(x, k))
        if not bool(dl <= dr):
            raise RelaxationError(f"{f} is not convex: its slope falls from {dl} to {dr} at {x} = {k}")
        kinks.append(f"slope {dl} -> {dr} at {x} = {k}")
    where = "the real line" if (lo, hi) == (-sp.oo, sp.oo) else f"[{lo}, {hi}]"
    return f"{f} is convex on {where} (SymPy: second derivative >= 0 on every piece" + \
        ("; " + ", ".join(kinks) if kinks else "") + ")"


def below(f: sp.Expr, g: sp.Expr, x: sp.Symbol, lo=-sp.oo, hi=sp.oo, names: tuple[str, str] | None = None) -> str:
    """Prove f ≤ g on [lo, hi] (closed where finite): on every piece of g - f and at every cut.
    `names` are how the statement shows f and g."""
    lo, hi = sp.sympify(lo), sp.sympify(hi)
    gap = g - f
    ends = [e for e in (lo, hi) if e.is_finite]
    for a, b, piece in pieces(gap, x, lo, hi):
        if not _never_negative(piece, x, a, b):
            raise RelaxationError(f"{f} <= {g} fails on ({a}, {b})")
    for k in _cuts(gap, x, lo, hi) + ends:
        if not bool(gap.subs(x, k) >= 0):
            raise RelaxationError(f"{f} <= {g} fails at {x} = {k}")
    where = "every real " + str(x) if (lo, hi) == (-sp.oo, sp.oo) else f"{x} in [{lo}, {hi}]"
    f_text, g_text = names or (str(f), str(g))
    return f"{f_text} <= {g_text} for {where} (SymPy: on every piece and at every kink)"


@lru_cache(maxsize=None)
def step_surrogate(kind: str, strict: bool) -> tuple[sp.Expr, tuple[str, ...]]:
    """The surrogate φ of [s <= 0] and what SymPy proved: φ convex, φ(s) ≥ [s <= 0] for all s."""
    phi = SURROGATES[kind]
    names = ("[s < 0]" if strict else "[s <= 0]", str(phi))
    return phi, (convex_on(phi, S), below(zero_one(strict), phi, S, names=names))


@lru_cache(maxsize=None)
def l0_envelope() -> tuple[str, ...]:
    """|u| is the convex envelope of [u != 0] on [-1, 1]: a convex minorant there that equals
    [u != 0] at u = -1, 0, 1 and is affine in between, so no convex minorant exceeds it."""
    u = sp.Symbol("u", real=True)
    indicator = sp.Piecewise((0, sp.Eq(u, 0)), (1, True))
    ends = (-1, 0, 1)
    tight = all(sp.Abs(u).subs(u, e) == indicator.subs(u, e) for e in ends)
    affine = all(sp.diff(g, u, 2) == 0 for _, _, g in pieces(sp.Abs(u), u, -1, 1))
    if not (tight and affine):
        raise RelaxationError("|u| is not the convex envelope of [u != 0] on [-1, 1]")
    return (convex_on(sp.Abs(u), u),
            below(sp.Abs(u), indicator, u, -1, 1, names=("|u|", "[u != 0]")),
            "|u| = [u != 0] at u = -1, 0, 1 and is affine in between: no convex minorant is larger, so norm1 is "
            "the convex envelope of norm0 on the box max|w_i| <= 1")


# ---- the rules -----------------------------------------------------------------------------------

def _nondiff(node: ir.Node, program: ir.Program) -> bool:
    found = node_problem(program, node)
    return found is not None and found.kind == "nondiff"


def _is_zero(node: ir.Node) -> bool:
    return isinstance(node, ir.Num) and node.value == 0


def margin(node: ir.Node) -> tuple[ir.Node, bool] | None:
    """(s, strict) when `node` is the 0-1 loss [s <= 0] (strict: [s < 0]) in one of its
    spellings: [a <= b], [a < b], [b >= a], [b > a] (s = a - b), step(u) = [-u <= 0]."""
    loc = node.loc
    if isinstance(node, ir.Compare) and node.op in ("<=", "<", ">=", ">"):
        a, b = (node.lhs, node.rhs) if node.op in ("<=", "<") else (node.rhs, node.lhs)
        if _is_zero(b):
            s = a
        elif _is_zero(a):
            s = ir.Apply("neg", (b,), loc=loc)
        else:
            s = ir.Apply("sub", (a, b), loc=loc)
        return s, node.op in ("<", ">")
    if isinstance(node, ir.Apply) and node.fn == "step":
        u = node.args[0]
        s = u.args[0] if isinstance(u, ir.Apply) and u.fn == "neg" else ir.Apply("neg", (u,), loc=loc)
        return s, False
    return None


def _surrogate_option(ctx: Context, node: ir.Node) -> str:
    kind = ctx.option("surrogate", "hinge")
    flags = [k for k in SURROGATES if ctx.option(k) is True]
    if flags:
        kind = flags[0]
    if kind not in SURROGATES:
        raise AttractorError(f"relax_step: unknown surrogate '{kind}'; surrogates are {', '.join(SURROGATES)}",
                             _via_loc(ctx, node))
    return kind


def _via_loc(ctx: Context, node: ir.Node):
    via = ctx.program.objective.via
    return via.loc if via is not None and via.loc is not None else node.loc


def _not_applicable(ctx: Context, node: ir.Node, rule: str, what: str, other: str) -> None:
    """A forced relaxation meets a non-differentiable node it cannot relax: say so, there."""
    if ctx.forced and _nondiff(node, ctx.program):
        raise AttractorError(f"{rule} relaxes {what}; {show(node)} is not one ({other})", node.loc)


def relax_step(node: ir.Node, ctx: Context) -> Rewrite | None:
    """[s <= 0]  <=  φ(s), φ(s) = max(0, 1 - s) (hinge) or log2(1 + exp(-s)) (logistic).

    Both surrogates are convex and lie above the 0-1 loss at every real s (SymPy proves it),
    so the relaxed objective is an upper bound — valid where the term is minimised with a
    non-negative weight. The hinge also asks for a margin of 1 (large-margin classification).
    """
    found = margin(node)
    if found is None:
        _not_applicable(ctx, node, "relax_step", "0-1 losses [s <= 0], [s < 0], [s >= 0], [s > 0] and step(s)",
                        "relax_step has no surrogate for it; evolution_strategy smooths any such term")
        return None
    if not depends_on(node, ctx.program):
        return None
    s, strict = found
    kind = _surrogate_option(ctx, node)
    phi, proved = step_surrogate(kind, strict)
    if kind == "hinge":
        new = ir.Apply("max", (ir.Num(0), ir.Apply("sub", (ir.Num(1), s), loc=node.loc)), loc=node.loc)
    else:
        new = ir.Sym(LOGISTIC_LABEL, sp.srepr(phi), ("s",), (s,), loc=node.loc)
    note = f"{LOGISTIC_LABEL}(s) = log2(1 + exp(-s))" if kind == "logistic" else "hinge: asks for a margin of 1"
    return Rewrite(new, "<=", proved, note=note)


def relax_l0(node: ir.Node, ctx: Context) -> Rewrite | None:
    """norm0(w)  ~  norm1(w): norm1 is the convex envelope of norm0 on the box ‖w‖∞ ≤ 1 (the
    largest convex function below it there), equal to it at the box's vertices.

    A relaxation, not a bound everywhere (relation ~): it lies below norm0 on the box and can
    exceed it outside. Valid only where the term is minimised with a non-negative weight.
    """
    is_norm0 = lambda n: isinstance(n, ir.Apply) and n.fn == "norm0"  # noqa: E731
    if not is_norm0(node):
        _not_applicable(ctx, node, "relax_l0", "norm0 only", "relax_step relaxes 0-1 losses")
        return None
    if not depends_on(node, ctx.program):
        return None
    return Rewrite(ir.Apply("norm1", node.args, loc=node.loc), "~", l0_envelope(),
                   note="scale the variables so that |w_i| <= 1 holds at the solution for the envelope to be tight")


PATTERNS = {"relax_step": "0-1 loss [s <= 0] or step(-s)", "relax_l0": "norm0 term"}
RELAX_STEP = Rule("relax_step", "nondiff", relax_step, ("surrogate", "hinge", "logistic"))
RELAX_L0 = Rule("relax_l0", "nondiff", relax_l0)


def forced_rival(via: ir.RuleRef | None, own: tuple[Rule, ...]) -> bool:
    """Does `via` force a rule of another pass that answers the same problem as `own`?"""
    if via is None or any(r.name == via.name for r in own):
        return False
    from passes import PIPELINE
    problems_here = {r.problem for r in own if r.problem}
    return any(r.name == via.name and r.problem in problems_here for p in PIPELINE for r in getattr(p, "rules", ()))


class RelaxationPass(RulePass):
    """relax_l0 and relax_step, taken only when they can relax every non-differentiable node."""

    def accepts(self, program: ir.Program, via: ir.RuleRef | None) -> bool:
        if via is not None and any(r.name == via.name for r in self.rules):
            return True
        return not forced_rival(via, self.rules) and self.covers(program) == []

    def covers(self, program: ir.Program) -> list[ir.Node]:
        """The non-differentiable nodes no relaxation can take (in the bound's direction)."""
        left = []
        for player in program.players:
            sense = 1 if player.sense == "min" else -1
            for node, pol, path in positions(player.loss, program, sense):
                if not _nondiff(node, program):
                    continue
                ctx = Context(program, player, pol, {}, False, path)
                if not any(_keeps_direction(rule, node, ctx) for rule in self.rules):
                    left.append(node)
        return left

    def apply(self, program: ir.Program, via: ir.RuleRef | None) -> tuple[ir.Program, list[Step]]:
        program, steps = super().apply(program, via)
        if via is not None and via.name in PATTERNS and not steps:
            raise AttractorError(f"rule {via.name} does not apply: the objective has no {PATTERNS[via.name]} "
                                 "in its parameters", via.loc)
        why = "forced by 'via'" if via is not None and via.name in {r.name for r in self.rules} else \
            "relaxation chosen: every non-differentiable term has a convex surrogate, so the problem stays convex"
        return program, [dataclasses.replace(s, note=f"{s.note}; {why}" if s.note else why) for s in steps]


def _keeps_direction(rule: Rule, node: ir.Node, ctx: Context) -> bool:
    try:
        rw = rule(node, ctx)
        if rw is None:
            return False
        _check_direction(rule, rw, node, ctx.polarity, ctx.program)
        return True
    except AttractorError:
        return False


# ---- proximal steps --------------------------------------------------------------------------------

PROX_FUNCTIONS = {"norm1": sp.Abs(X), "sumsq": X ** 2}   # separable: g(w) = sum_i g(w_i)


@lru_cache(maxsize=None)
def derive_prox(kind: str) -> sp.Expr:
    """prox_{t g}(v) = argmin_x ½(x - v)² + t g(x) for the scalar g of `kind`, by SymPy:
    a stationary point inside a smooth piece of g, or a kink x = k when v - k lies between
    t times g's slopes on either side of it."""
    g = PROX_FUNCTIONS[kind]
    parts = pieces(g, X)
    cases = []
    for a, b, branch in parts:
        for x in sp.solve(sp.Eq(X - V + T * sp.diff(branch, X), 0), X):
            cond = sp.And(*(c for c in (x > a if a.is_finite else True, x < b if b.is_finite else True) if c is not True))
            cases.append((sp.simplify(x), cond if cond != sp.And() else True))
    for (_, k, left), (_, _, right) in zip(parts, parts[1:]):
        cases.append((k, sp.And(V - k >= T * sp.diff(left, X).subs(X, k), V - k <= T * sp.diff(right, X).subs(X, k))))
    return sp.Piecewise(*cases[:-1], (cases[-1][0], True))


def _weighted(term: ir.Node, program: ir.Program) -> tuple[float, ir.Node]:
    """(c, g) for a term c * g, g * c or g / c with a constant c; else (1, term)."""
    if isinstance(term, ir.Apply) and term.fn == "mul":
        for i in (0, 1):
            c = const_value(term.args[i], program)
            if c is not None:
                return c, term.args[1 - i]
    if isinstance(term, ir.Apply) and term.fn == "div":
        c = const_value(term.args[1], program)
        if c:
            return 1 / c, term.args[0]
    return 1.0, term


def _terms(loss: ir.Node) -> list[ir.Node]:
    """The loss as a sum of terms (only through +: a subtracted term is not a penalty)."""
    if isinstance(loss, ir.Apply) and loss.fn == "add":
        return _terms(loss.args[0]) + _terms(loss.args[1])
    return [loss]


def _sum(terms: list[ir.Node]) -> ir.Node:
    if not terms:
        return ir.Num(0)
    out = terms[0]
    for t in terms[1:]:
        out = ir.Apply("add", (out, t), loc=t.loc)
    return out


def prox_term(term: ir.Node, player: ir.Player, program: ir.Program) -> tuple[str, str, float] | None:
    """(param, kind, weight) when `term` is c * norm1(w) or c * sumsq(w), c ≥ 0, w a
    parameter of `player`."""
    c, g = _weighted(term, program)
    if c < 0 or not (isinstance(g, ir.Apply) and g.fn in PROX_FUNCTIONS):
        return None
    arg = g.args[0]
    if not (isinstance(arg, ir.Ref) and arg.name in player.params and isinstance(program.decl(arg.name), ir.Param)):
        return None
    return arg.name, g.fn, c


class ProximalPass:
    """c * norm1(w) + f(w)  =  f(w) with w ← prox_{η c norm1}(w) after each gradient step of
    size η (c * sumsq(w) likewise): proximal gradient descent minimises the same objective,
    and soft-thresholding sets coordinates exactly to zero. Relation = (nothing is
    approximated). Taken for top-level terms of a minimising player's loss when the player is
    trained by plain gradient steps (the step the proximal map needs), one map per parameter.
    """

    name = "proximal"
    stage = STAGES["proximal"]
    rules: tuple = ()

    def accepts(self, program: ir.Program, via: ir.RuleRef | None) -> bool:
        return True

    def apply(self, program: ir.Program, via: ir.RuleRef | None) -> tuple[ir.Program, list[Step]]:
        players, steps = list(program.players), []
        for index, player in enumerate(players):
            if player.sense != "min":
                continue
            moved, keep = {}, []
            for term in _terms(player.loss):
                hit = prox_term(term, player, program)
                if hit and hit[0] not in moved and all(p != hit[0] for p, _, _ in player.prox):
                    moved[hit[0]] = (term, hit)
                else:
                    keep.append(term)
            rest = _sum(keep)
            trial = dataclasses.replace(program, players=tuple(dataclasses.replace(p, loss=rest) if p is player else p for p in players))
            if not moved or not plain_gradient(trial, rest):
                continue
            prox = tuple((param, kind, ir.Num(weight)) for _, (param, kind, weight) in moved.values())
            players[index] = dataclasses.replace(player, loss=rest, prox=player.prox + prox)
            for term, (param, kind, weight) in moved.values():
                steps.append(Step("proximal", "=", player.name, show(term),
                                  f"proximal step {param} <- prox[{show(ir.Num(weight))} * {kind}]({param})", show(rest),
                                  conditions=(f"prox of t * {PROX_FUNCTIONS[kind]} at v, derived by SymPy: {derive_prox(kind)}",),
                                  note="applied after every gradient step, with that step's size", node=rest))
        return dataclasses.replace(program, players=tuple(players)), steps


PASSES: tuple = (RelaxationPass("relaxation", (RELAX_L0, RELAX_STEP), "relaxation"), ProximalPass())


# ---- certificates --------------------------------------------------------------------------------

def step_losses(prog, step) -> tuple[ir.Node, ir.Node] | None:
    """The loss of the step's player just before and just after `step` (None for a player
    the derivation introduced)."""
    steps = prog.steps.steps
    index = next(i for i, s in enumerate(steps) if s is step)
    before = next((s.node for s in reversed(steps[:index]) if s.player == step.player), None)
    if before is None:
        typed = {p.name: p.loss for p in prog.typed.players}
        if step.player not in typed:
            return None
        before = typed[step.player]
    return before, step.node


def loss_module(prog, loss: ir.Node):
    """The emitted module of `prog` with its first player's loss replaced by `loss` (no proximal
    maps): `mod.objective(params, key, data)` evaluates that loss on the whole data set."""
    first = dataclasses.replace(prog.program.players[0], loss=loss, prox=())
    program = dataclasses.replace(prog.program, players=(first,) + prog.program.players[1:])
    return dataclasses.replace(prog, program=program).build()


def _random_params(mod, rng, draw):
    """The module's initial parameters with every declared parameter replaced by `draw(shape)`."""
    import jax
    import jax.numpy as jnp
    params = mod.init(jax.random.PRNGKey(0))
    return {k: jnp.asarray(draw(np.shape(v)), jnp.float32) if not isinstance(v, list) else v for k, v in params.items()}


def _compare_losses(prog, step, seed, draw, what, holds) -> list:
    """Evaluate the loss before and after `step` at random parameters; `holds(before, after)`."""
    import jax
    losses = step_losses(prog, step)
    if losses is None:
        return []
    rng = np.random.default_rng(seed)
    data = prog.load_data()
    before, after = (loss_module(prog, loss) for loss in losses)
    key = jax.random.PRNGKey(seed)
    pairs = []
    for _ in range(8):
        params = _random_params(before, rng, lambda shape: draw(rng, shape))
        pairs.append((before.objective(params, key, data), after.objective(params, key, data)))
    failing = [p for p in pairs if not holds(*p)]
    shown = ", ".join(f"{b:.5g} -> {a:.5g}" for b, a in (failing or pairs)[:3])
    return [Certificate(step.rule, f"{what}, on the program at 8 random parameter points",
                        f"{'fails' if failing else 'before -> after'}: {shown}, ...", not failing)]


@certificate("relax_step")
def certify_relax_step(prog, step, seed: int) -> list:
    """The surrogate lies above the 0-1 loss at 100000 random margins (and at its kinks); the
    relaxed objective is above the original at random parameters."""
    rng = np.random.default_rng(seed)
    kind = "logistic" if LOGISTIC_LABEL in step.after else "hinge"
    phi, _ = step_surrogate(kind, False)
    s = np.concatenate([rng.normal(0, 3, 100_000), [0.0, 1.0, -1e-7, 1e-7]])
    surrogate = sp.lambdify(S, phi, "numpy")(s)
    loss = (s <= 0).astype(float)
    out = [Certificate("relax_step", f"{phi} >= [s <= 0] at 100004 random margins",
                       f"smallest gap {np.min(surrogate - loss):.3g}", bool(np.all(surrogate >= loss)))]
    return out + _compare_losses(prog, step, seed, lambda r, shape: r.normal(0, 1, shape),
                                 "original objective <= relaxed objective", lambda b, a: a >= b - 1e-5 * abs(b))


def _lower_hull(u: np.ndarray, f: np.ndarray) -> np.ndarray:
    """The lower convex envelope of the points (u, f) (u sorted), evaluated at u."""
    hull: list[int] = []
    for i in range(len(u)):
        while len(hull) >= 2 and (f[hull[-1]] - f[hull[-2]]) * (u[i] - u[hull[-2]]) >= (f[i] - f[hull[-2]]) * (u[hull[-1]] - u[hull[-2]]):
            hull.pop()
        hull.append(i)
    return np.interp(u, u[hull], f[hull])


@certificate("relax_l0")
def certify_relax_l0(prog, step, seed: int) -> list:
    """Envelope: the lower convex hull of [u != 0] on a grid of [-1, 1] is |u|; on the program,
    the relaxed objective is below the original in the box max|w_i| <= 1 and equal to it at
    the box's vertices."""
    u = np.linspace(-1, 1, 2001)
    hull = _lower_hull(u, (u != 0).astype(float))
    out = [Certificate("relax_l0", "|u| is the convex envelope of [u != 0] on [-1, 1] (lower convex hull on a 2001-point grid)",
                       f"largest difference {np.max(np.abs(hull - np.abs(u))):.2g}", bool(np.allclose(hull, np.abs(u), atol=1e-12)))]
    tol = lambda b: 1e-5 * max(1.0, abs(b))  # noqa: E731
    out += _compare_losses(prog, step, seed, lambda r, shape: r.uniform(-1, 1, shape),
                           "relaxed objective <= original in the box", lambda b, a: a <= b + tol(b))
    out += _compare_losses(prog, step, seed + 1, lambda r, shape: r.integers(-1, 2, shape).astype(float),
                           "relaxed objective = original at the box's vertices", lambda b, a: abs(a - b) <= tol(b))
    return out


@certificate("proximal")
def certify_proximal(prog, step, seed: int) -> list:
    """The emitted proximal map equals the SymPy-derived prox and a brute-force minimiser of
    ½(x - v)² + t g(x) at random (v, t)."""
    from scipy.optimize import minimize_scalar
    kind = next(k for k in PROX_FUNCTIONS if f"* {k}]" in step.after)
    mod = prog.build()
    rng = np.random.default_rng(seed)
    v, t = rng.normal(0, 2, 200), rng.uniform(0.01, 2, 200)
    emitted = np.asarray(mod.PROX_MAPS[kind](v.astype(np.float32), t.astype(np.float32)), float)
    derived = sp.lambdify((V, T), derive_prox(kind), "numpy")
    g = sp.lambdify(X, PROX_FUNCTIONS[kind], "numpy")
    brute = np.array([minimize_scalar(lambda x: 0.5 * (x - vi) ** 2 + ti * g(x), bounds=(-10, 10), method="bounded",
                                      options={"xatol": 1e-10}).x for vi, ti in zip(v, t)])
    symbolic = np.array([float(derived(vi, ti)) for vi, ti in zip(v, t)])
    return [Certificate("proximal", f"the {kind} proximal map is argmin_x 1/2 (x - v)^2 + t * {PROX_FUNCTIONS[kind]} (200 random v, t)",
                        f"emitted vs SymPy {np.max(np.abs(emitted - symbolic)):.2g}, vs brute force {np.max(np.abs(emitted - brute)):.2g}",
                        bool(np.allclose(emitted, symbolic, atol=1e-5) and np.allclose(emitted, brute, atol=1e-4)))]
