"""conjugate: D_f(P‖Q) = E_Q f(p/q) = sup_T E_P[T] − E_Q[f*(T)], T* = f'(p/q) (Nguyen,
Wainwright & Jordan 2010).

The critic T = g_f(V_ψ), with the activation g_f mapping ℝ onto dom f*, is a new player
maximising the bound (a game): relation `>=` for every critic (Fenchel–Young), `=` at T*.
f*, dom f*, g_f and f*∘g_f are derived by SymPy from the generator f (a builtin, or the user's
`divergence name(u) = ...`; compiler.math.convex); f must be convex on u > 0 with f(1) = 0
(GAN: 2 JS − log 4, f(1) = −log 4), else the rule refuses at the divergence's definition.
Option `nonsaturating`: a sampler Q minimises −E_Q[T] instead of −E_Q[f*(T)], a general-sum
game with the same fixed point, relation `~`.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from compiler import ir
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import show
from compiler.math.convex import Conjugate, ConvexityError, U, V, check_generator, derive_conjugate, named_generator
from compiler.math.symbolic import NotScalar, to_sympy
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule
from passes.adversarial.critic import critic_game, critic_options, make_critic
from passes.adversarial.sides import expect_over, moves, sampled_sides, side_name


def generator_of(program: ir.Program, node: ir.Divergence) -> tuple[sp.Expr, ir.Node]:
    """The generator f(u) of an f-divergence and where to report a problem with it (the user's
    `divergence name(u) = ...` definition, or the divergence itself for a builtin)."""
    d = program.decl(node.kind)
    if not isinstance(d, ir.DivergenceDef):
        return named_generator(node.kind), node
    try:
        f = to_sympy(d.body, {d.var: U}, program)
    except NotScalar:
        raise AttractorError(f"divergence {d.name}: SymPy cannot read the generator f({d.var}) = {show(d.body)}; "
                             "write it with numbers, constants, arithmetic and scalar functions", d.loc) from None
    extra = sorted(str(s) for s in f.free_symbols - {U})
    if extra:
        raise AttractorError(f"divergence {d.name}: the generator f({d.var}) = {show(d.body)} must depend on {d.var} "
                             f"only, but it uses {', '.join(extra)}", d.loc)
    return f, d


def _interval(lo, hi, lo_closed, hi_closed) -> str:
    return f"{'[' if lo_closed else '('}{lo}, {hi}{']' if hi_closed else ')'}"


def conjugate_parts(program: ir.Program, node: ir.Divergence) -> tuple[Conjugate, tuple[str, ...]]:
    """(Conjugate, side conditions) of the divergence, or an AttractorError at its definition."""
    f, where = generator_of(program, node)
    try:
        checks = ["f(1) = -log(4): GAN(P || Q) = 2 JS(P, Q) - log 4"] if node.kind == "GAN" else check_generator(f)
        c = derive_conjugate(f)
    except ConvexityError as e:
        raise AttractorError(f"divergence {node.kind} is not an f-divergence conjugate can rewrite: {e}",
                             where.loc or node.loc) from None
    name = node.kind
    # a log-ratio critic: T is f' at the ratio its output stands for, f*(T) the Fenchel-Young equality
    at_ratio, equality = ("", "") if c.optimal_output is None else (
        f"f'(u) at u = {c.ratio_of_output} = ", f"u f'(u) - f(u) at u = {c.ratio_of_output} (Fenchel-Young equality) = ")
    conditions = (
        f"f(u) = {c.f}",
        *checks,
        f"f*(t) = sup_u t*u - f(u) = {c.fstar} on dom f* = {_interval(*c.domain)}",
        "Fenchel-Young: f*(t) >= t*u - f(u), so E_P[T] - E_Q[f*(T)] <= D_f(P || Q) for every critic T",
        f"T_{name}(v) = {at_ratio}{c.activation} maps the critic's output onto dom f*",
        f"fstarT_{name}(v) = f*(T_{name}(v)) = {equality}{c.fstar_of_activation}",
    )
    return c, conditions


@dataclass(frozen=True)
class Found:
    """An f-divergence whose sides can both be sampled, its derived conjugate and side conditions."""

    divergence: ir.Divergence
    conjugate: Conjugate
    conditions: tuple[str, ...]
    binder: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]


def match(node: ir.Divergence, ctx: Context) -> Found | Refusal:
    if node.kind == "Fisher":
        return Refusal("Fisher is not an f-divergence: denoising_score handles it")
    c, conditions = conjugate_parts(ctx.program, node)
    binder, shapes = sampled_sides(node, ctx, "conjugate")
    if ctx.option("nonsaturating") and moves(node.p, binder, ctx):
        return Refusal(f"conjugate(nonsaturating) changes the loss of a sampler on the right of {node.kind}(P || Q); "
                       f"here P = {side_name(node.p)} moves")
    return Found(node, c, conditions, binder, shapes)


def build(found: Found, ctx: Context) -> Rewrite:
    """The variational bound at a critic T = g_f(V) owned by a new max player; with
    `nonsaturating` and a moving Q, the generator's surrogate −E_Q[T] beside it."""
    node, c, binder = found.divergence, found.conjugate, found.binder
    critic = make_critic(ctx.program, binder, found.shapes, ctx.options, "critic", node, "conjugate")
    name = node.kind

    def closed_form(label, expr):
        return lambda k: ir.Sym(label, sp.srepr(expr), (str(V),), (critic(k),))

    paired = bool(ctx.program.data_vars)
    bound = ir.Apply("sub", (expect_over(node.p, binder, closed_form(f"T_{name}", c.activation), paired),
                             expect_over(node.q, binder, closed_form(f"fstarT_{name}", c.fstar_of_activation), paired)))
    conditions = (f"P = {side_name(node.p)}, Q = {side_name(node.q)}: both can be sampled",) + found.conditions
    note = (f"critic T = T_{name}({critic.describe()}); player {critic.player} maximises the bound, "
            f"tight at T*(x) = f'(p(x)/q(x)), f'(u) = {c.critic_of_ratio}")
    if c.optimal_output is not None:
        note += f", i.e. at {critic.describe()} = {c.optimal_output.subs(U, sp.Symbol('p(x)/q(x)'))}"
    loss, relation, nonsaturating = bound, ">=", False
    if ctx.option("nonsaturating") and moves(node.q, binder, ctx):
        nonsaturating = True
        generator_loss = ir.Apply("neg", (expect_over(node.q, binder, closed_form(f"T_{name}", c.activation), paired),))
        loss, relation = ir.Surrogate(generator_loss, critic.player), "~"
        conditions += (("nonsaturating: the generator minimises -E_Q[T] instead of -E_Q[f*(T)] (f-GAN, Nowozin et al. "
                        "2016, sec. 3.2): both are stationary where T is constant on Q's support, as at P = Q, and "
                        "-E_Q[T] keeps its gradient where the critic rejects Q's samples and f*(T) is flat"),)
        note += f"; nonsaturating generator loss: a general-sum game, the critic keeps the {name} bound"
    facts = (("divergence", name), ("conjugate", c), ("critic", critic.player), ("nonsaturating", nonsaturating))
    return critic_game(loss, relation, conditions, critic, bound, node, note, facts)


RULE = Rule(
    "conjugate", problem="divergence", matches=(ir.Divergence,), relation=">=",
    identity="D_f(P || Q) = sup_T E_P[T] - E_Q[f*(T)],  T* = f'(p/q)",
    match=match, build=build,
    options=(Option("nonsaturating", bool, doc=("a sampler Q minimises -E_Q[T] instead of -E_Q[f*(T)] "
                                                "(a general-sum game with the same fixed point; relation ~)")),
             *critic_options("conjugate")),
)
