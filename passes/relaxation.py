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
from compiler.analysis.problems import depends_on, node_problem
from compiler.driver.check import Certificate, certificate
from compiler.backend.defaults import plain_gradient
from compiler.ir.diagnostics import AttractorError
from compiler.rewrite.manager import STAGES, RulePass, check_direction
from compiler.rewrite.rule import Context, Rewrite, Step, legacy_rule
from compiler.ir.printer import show
from compiler.rewrite.strategies import positions
from compiler.math.piecewise import S, X, V, T, SURROGATES, LOGISTIC_LABEL, below, step_surrogate, l0_envelope, PROX_FUNCTIONS, derive_prox
from compiler.analysis.constants import const_value

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
RELAX_STEP = legacy_rule("relax_step", "nondiff", relax_step, ("surrogate", "hinge", "logistic"))
RELAX_L0 = legacy_rule("relax_l0", "nondiff", relax_l0)


def forced_rival(via: ir.RuleRef | None, own: tuple[Rule, ...]) -> bool:
    """Does `via` force a rule of another pass that answers the same problem as `own`?"""
    if via is None or any(r.name == via.name for r in own):
        return False
    from passes import PIPELINE
    problems_here = {r.problem for r in own if r.problem}
    return any(r.name == via.name and r.problem in problems_here for p in PIPELINE for r in getattr(p, "rules", ()))


class RelaxationPass(RulePass):
    """relax_l0 and relax_step, taken only when they can relax every non-differentiable node."""

    def accepts(self, program: ir.Program, plan) -> bool:
        via = plan.via
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

    def apply(self, program: ir.Program, plan) -> tuple[ir.Program, list[Step]]:
        via = plan.via
        program, steps = super().apply(program, plan)
        if via is not None and via.name in PATTERNS and not steps:
            raise AttractorError(f"rule {via.name} does not apply: the objective has no {PATTERNS[via.name]} "
                                 "in its parameters", via.loc)
        why = "forced by 'via'" if via is not None and via.name in {r.name for r in self.rules} else \
            "relaxation chosen: every non-differentiable term has a convex surrogate, so the problem stays convex"
        return program, [dataclasses.replace(s, note=f"{s.note}; {why}" if s.note else why) for s in steps]


def _keeps_direction(rule, node: ir.Node, ctx: Context) -> bool:
    try:
        rw = rule(node, ctx)
        if rw is None:
            return False
        check_direction(rule, rw, node, ctx.polarity, ctx.program)
        return True
    except AttractorError:
        return False


# ---- proximal steps --------------------------------------------------------------------------------

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

    def accepts(self, program: ir.Program, plan) -> bool:
        via = plan.via
        return True

    def apply(self, program: ir.Program, plan) -> tuple[ir.Program, list[Step]]:
        via = plan.via
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
