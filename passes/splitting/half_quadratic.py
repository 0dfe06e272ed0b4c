"""The rule `half_quadratic`: split a non-smooth term of a linear map with a new variable.

    k·g(A x)   ~   k·g(z) + β/2·‖A x − z‖²,     z ← prox_{(k/β)·g}(A x) after every step
    A x ∈ box  ~   β/2·‖A x − z‖²,              z ← the projection of A x onto the box

for g with a known proximal map (norm1, sumsq; compiler.math.piecewise derives them) and
A x affine in the player's parameters. min over z of the new term is the Moreau envelope of
k·g at A x (for a box, of its indicator: β/2·dist²(A x, box)): at most the original and rising
to it as β → ∞ (relation `~`, exact in the limit). The weight k must be a positive constant
and the term must enter the loss linearly (+, −, constant factors), so that the z-step is
exactly the proximal map. A smooth g (sumsq) is split only with its weight written.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from compiler import ir
from compiler.analysis.constants import const_value
from compiler.analysis.problems import depends_on
from compiler.frontend.checker import broadcast
from compiler.ir.builtins import FUNCTIONS
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import number, show
from compiler.math.piecewise import PROX_FUNCTIONS, T, V, derive_prox
from compiler.rewrite.building import fresh, used_names
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule
from compiler.rewrite.strategies import ancestors

DEFAULTS = {"beta": 1.0, "growth": 1.005}
BETA_MAX_RANGE = 1e4          # beta_max defaults to this multiple of the initial beta
LINEAR = {"add", "sub", "neg"}


# ---- forms: affine maps, weights, linear paths, boxes ---------------------------------------------

def affine_shape(node: ir.Node, program: ir.Program, params: tuple[str, ...]):
    """The shape of `node` when it is an affine map of the parameters `params` (numbers,
    constants, +, −, negation, constant factors and divisors, diff, sum, mean), else None."""
    if isinstance(node, ir.Num) or const_value(node, program) is not None:
        return ()
    if isinstance(node, ir.Ref):
        d = program.decl(node.name)
        return d.shape if node.name in params and isinstance(d, ir.Param) else None
    if not isinstance(node, ir.Apply):
        return None
    fn, args = node.fn, node.args
    if fn in ("add", "sub"):
        a, b = (affine_shape(x, program, params) for x in args)
        return None if a is None or b is None else broadcast(a, b, node.loc)
    if fn in ("mul", "div"):
        for i in ((0, 1) if fn == "mul" else (1,)):
            if const_value(args[i], program) is not None:
                return affine_shape(args[1 - i], program, params)
        return None
    if fn in ("neg", "diff", "sum", "mean"):
        shape = affine_shape(args[0], program, params)
        if shape is None or fn == "neg":
            return shape
        if fn == "diff":
            return shape[:-1] + (shape[-1] - 1,) if shape and shape[-1] > 1 else None
        return ()
    return None


def weighted(node: ir.Node, program: ir.Program) -> tuple[ir.Node, ir.Node]:
    """(k, g) for k * g, g * k or g / c with a constant k (k = 1/c), or (1, g) for g itself."""
    if isinstance(node, ir.Apply) and node.fn == "mul":
        for i in (0, 1):
            if const_value(node.args[i], program) is not None:
                return node.args[i], node.args[1 - i]
    if isinstance(node, ir.Apply) and node.fn == "div" and const_value(node.args[1], program):
        return ir.Apply("div", (ir.Num(1), node.args[1])), node.args[0]
    return ir.Num(1), node


def linear_path(path, program: ir.Program) -> bool:
    """Every ancestor passes the term on linearly: +, −, negation, constant factors, Let bodies."""
    for parent, index in ancestors(path):
        if isinstance(parent, ir.Let) and index == 1:
            continue
        if not isinstance(parent, ir.Apply):
            return False
        if parent.fn in LINEAR:
            continue
        if parent.fn == "mul" and const_value(parent.args[1 - index], program) is not None:
            continue
        if parent.fn == "div" and index == 0 and const_value(parent.args[1], program):
            continue
        return False
    return True


def _reduces_affine_map(node: ir.Node, ctx: Context) -> bool:
    """Is `node` a reduction of an affine map of the player's parameters (norm2(A x),
    logsumexp(A x), sum(abs(A x)), ...)?"""
    if not (isinstance(node, ir.Apply) and FUNCTIONS.get(node.fn) and FUNCTIONS[node.fn].kind == "reduce"):
        return False
    arg = node.args[0]
    if node.fn in ("sum", "mean"):
        if not (isinstance(arg, ir.Apply) and FUNCTIONS.get(arg.fn) and FUNCTIONS[arg.fn].kind == "elementwise"):
            return False
        arg = arg.args[0]
    return affine_shape(arg, ctx.program, ctx.player.params) is not None and \
        depends_on(arg, ctx.program, set(ctx.player.params))


def box_form(c: ir.Constraint, program: ir.Program, params: tuple[str, ...]):
    """(A x, lo, hi, shape of A x) when `c` says that A x, affine in `params`, lies in a box:
    A x <= c, A x >= c or abs(A x) <= c with c constant (either side first); lo or hi is None
    where the box is unbounded."""
    if c.op == "==":
        return None
    small, big = (c.lhs, c.rhs) if c.op in ("<=", "<") else (c.rhs, c.lhs)     # small <= big
    upper, lower = const_value(big, program), const_value(small, program)
    if upper is not None and lower is None:
        if isinstance(small, ir.Apply) and small.fn == "abs" and upper >= 0:
            v, lo, hi = small.args[0], ir.Apply("neg", (big,)), big
        else:
            v, lo, hi = small, None, big
    elif lower is not None and upper is None:
        v, lo, hi = big, small, None
    else:
        return None
    shape = affine_shape(v, program, params)
    if shape is None or not depends_on(v, program, set(params)):
        return None
    return v, lo, hi, shape


def claims_box(c: ir.Constraint, program: ir.Program) -> bool:
    """Forced, the rule takes a box constraint on an affine map instead of the Lagrangian."""
    return box_form(c, program, program.players[0].params) is not None


def projection(v: ir.Node, lo: ir.Node | None, hi: ir.Node | None) -> ir.Node:
    """The projection onto [lo, hi], elementwise: the proximal map of the box's indicator."""
    if lo is not None:
        v = ir.Apply("max", (v, lo))
    return ir.Apply("min", (v, hi)) if hi is not None else v


def prox_node(kind: str, v: ir.Node, t: ir.Node) -> ir.Sym:
    """prox_{t·g}(v) for g of `kind`, the SymPy-derived closed form, applied elementwise."""
    return ir.Sym(f"prox_{kind}", sp.srepr(derive_prox(kind)), (str(V), str(T)), (v, t))


# ---- match ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Split:
    """What `match` finds: the term k·g(A x) or the box lo <= A x <= hi (`g` and `k` None);
    `v` is A x, `shape` its shape."""

    node: ir.Node
    v: ir.Node
    shape: tuple
    g: ir.Apply | None = None
    k: ir.Node | None = None
    lo: ir.Node | None = None
    hi: ir.Node | None = None


def match_split(node: ir.Node, ctx: Context) -> Split | Refusal | None:
    """A box constraint on an affine map; or a term k·g(A x), g with a known proximal map, A x
    affine in the player's parameters, k a positive constant, on a linear path to the loss.
    A reduction of an affine map whose g has no proximal map, or a g of the table whose
    argument, weight or place does not fit, is refused with the reason."""
    if isinstance(node, ir.Constraint):
        box = box_form(node, ctx.program, ctx.player.params)
        if box is None:
            return Refusal(f"not a box on an affine map of {', '.join(ctx.player.params)}", node.loc)
        v, lo, hi, shape = box
        return Split(node, v, tuple(shape), lo=lo, hi=hi)
    k, g = weighted(node, ctx.program)
    if not (isinstance(g, ir.Apply) and g.fn in PROX_FUNCTIONS):
        if _reduces_affine_map(node, ctx) and linear_path(ctx.path, ctx.program):
            return Refusal(f"{show(node)} has no known proximal map (known: {', '.join(sorted(PROX_FUNCTIONS))}); "
                           "the rule splits a term k * g(A x) whose g has one", node.loc)
        return None
    if g is node and FUNCTIONS[g.fn].smooth:
        return None            # a bare smooth term (a fit term) stays with the x-step
    v = g.args[0]
    shape = affine_shape(v, ctx.program, ctx.player.params)
    if shape is None or not depends_on(v, ctx.program, set(ctx.player.params)):
        return Refusal(f"the argument {show(v)} of {g.fn} is not an affine map of {', '.join(ctx.player.params)}")
    if not linear_path(ctx.path, ctx.program):
        return Refusal(f"{show(node)} does not enter the loss linearly (through +, -, constant factors)")
    if const_value(k, ctx.program) <= 0:
        return Refusal(f"the weight {show(k)} of {show(g)} is not positive")
    return Split(node, v, tuple(shape), g, k)


# ---- build ------------------------------------------------------------------------------------------

def _coupling(beta: ir.Node, v: ir.Node, z: ir.Node) -> ir.Node:
    """β/2·‖v − z‖²."""
    return ir.Apply("mul", (ir.Apply("div", (beta, ir.Num(2))), ir.Apply("sumsq", (ir.Apply("sub", (v, z)),))))


def build_split(found: Split, ctx: Context) -> Rewrite:
    """The new variable z (set after every step to its exact minimiser: the proximal map of
    (k/β)·g, or the projection onto the box), the weight β ← min(growth·β, beta_max)."""
    beta0, growth = ctx.option("beta", DEFAULTS["beta"]), ctx.option("growth", DEFAULTS["growth"])
    beta_max = ctx.option("beta_max", BETA_MAX_RANGE * beta0)
    if beta_max < beta0:
        raise AttractorError(f"half_quadratic: {BETA_MAX.wording}", ctx.program.objective.via.loc)
    v, node = found.v, found.node
    z = fresh(used_names(ctx.program), "z")
    beta = fresh(used_names(ctx.program) | {z}, "beta")
    zref, bref = ir.Ref(z, "param"), ir.Ref(beta, "param")
    box = found.g is None
    z_step = projection(v, found.lo, found.hi) if box else prox_node(found.g.fn, v, ir.Apply("div", (found.k, bref)))
    schedule = ir.Apply("min", (ir.Apply("mul", (ir.Num(growth), bref)), ir.Num(beta_max)))
    decls = (ir.Param(z, found.shape, None, loc=node.loc), ir.Param(beta, (), ir.Num(beta0), loc=node.loc))
    note = (f"x-step: player {ctx.player.name}'s gradient step on the smooth part; z-step (exact, after every step): "
            f"{z} <- {show(z_step)}; schedule: {beta} <- {show(schedule)} after every step, from {beta} = {number(beta0)}")
    params = ", ".join(ctx.player.params)
    if box:
        lo, hi = found.lo, found.hi
        bounds = f"[{show(lo) if lo is not None else '-inf'}, {show(hi) if hi is not None else 'inf'}]"
        replacement = _coupling(bref, v, zref)
        conditions = (
            f"the indicator of the box {bounds} has the projection as its proximal map: {show(projection(ir.Ref('v'), lo, hi))}",
            f"A x = {show(v)} is affine in {params}",
            (f"min over {z} in the box of the penalty is {beta}/2 * dist(A x, box)^2: 0 where the constraint holds, "
             f"rising to the indicator (+inf) elsewhere as {beta} -> inf (a penalty: the split objective approaches "
             "the constrained one from below)"),
        )
    else:
        k, g = found.k, found.g.fn
        kept = found.g.with_children((zref,))
        weighted_g = kept if const_value(k, ctx.program) == 1 and isinstance(k, ir.Num) else ir.Apply("mul", (k, kept))
        replacement = ir.Apply("add", (weighted_g, _coupling(bref, v, zref)), loc=node.loc)
        conditions = (
            f"{g} has a known proximal map (SymPy): prox_(t*{g})(v) = {derive_prox(g)}",
            f"A x = {show(v)} is affine in {params}; the term enters linearly with weight {show(k)} > 0",
            (f"min over {z} of the new term is the Moreau envelope of {show(k)} * {g} at A x: "
             f"<= the original, and -> it as {beta} -> inf (the split objective approaches the original from below)"),
        )
    return Rewrite(replacement, conditions=conditions, decls=decls,
                   auxiliary=(("update", (beta, schedule)), ("update", (z, z_step))), note=note,
                   facts=(("z", z), ("beta", beta), ("g", "box" if box else found.g.fn), ("weight", found.k), ("map", v),
                          ("lo", found.lo), ("hi", found.hi)))


BETA_MAX = Option("beta_max", float, low=0, low_open=True, doc="the largest β (default 1e4·beta)",
                  wording="the largest weight (beta_max=...) must be a number >= beta")

HALF_QUADRATIC = Rule(
    "half_quadratic", problem="", matches=(ir.Apply, ir.Constraint), relation="~",
    identity="k·g(A x)  ~  k·g(z) + β/2·‖A x − z‖²,  z = prox_{(k/β)·g}(A x)   (Moreau envelope; exact as β → ∞)",
    match=match_split, build=build_split,
    options=(Option("beta", float, low=0, low_open=True, doc="the initial weight β of the coupling (default 1)",
                    wording="the initial weight (beta=...) must be a positive number"),
             Option("growth", float, low=1, doc="β ← growth·β after every step (default 1.005)",
                    wording="the growth of beta (growth=...) must be a number >= 1"),
             BETA_MAX),
    claims=claims_box,
    unmatched=f"the objective has no term k * g(A x) with a known proximal map ({', '.join(sorted(PROX_FUNCTIONS))}) "
              "on an affine map A x of its parameters, and no box constraint on one")
