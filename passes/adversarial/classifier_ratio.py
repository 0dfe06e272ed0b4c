"""classifier_ratio: JS(P, Q) = ½(log 4 + max_D E_P log D + E_Q log(1 − D)), D* = p/(p + q).

The discriminator D = σ(V) (logit V; V* = log p/q) is a new player maximising the bound, so the
rewrite is a game: relation `>=` for every discriminator, `=` at the Bayes-optimal one.
GAN(P‖Q) = 2 JS − log 4 is the same game without the affine map. Option `nonsaturating`: the
generator minimises −E_Q log D on each side it moves (−E_P log(1 − D) for P), a general-sum
game with the same fixed point D = ½, P = Q; relation `~` for its loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from compiler import ir
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule
from passes.adversarial.critic import critic_game, critic_options, make_critic
from passes.adversarial.sides import expect_over, moves, sampled_sides, side_name, sum_of

CLASSIFIER_KINDS = ("JS", "GAN")       # divergences a Bayes-optimal classifier gives

P_, Q_, D_ = sp.symbols("p q D", positive=True)


@cache
def classifier_identity() -> tuple[str, ...]:
    """Derive, pointwise in x, the Bayes-optimal discriminator and the value it attains.

    h(D) = p log D + q log(1 − D) is concave on (0, 1) and maximised at D* = p/(p + q), where
    (p + q) log 2 + h(D*) = p log(p/m) + q log(q/m), m = (p + q)/2; integrated (∫p = ∫q = 1),
    ½(log 4 + E_P log D* + E_Q log(1 − D*)) = JS(P, Q) = ½KL(P‖M) + ½KL(Q‖M)."""
    h = P_ * sp.log(D_) + Q_ * sp.log(1 - D_)
    (dstar,) = sp.solve(sp.diff(h, D_), D_)
    curvature = sp.simplify(sp.diff(h, D_, 2))
    if not sp.simplify(curvature * D_**2 * (1 - D_)**2).is_negative:
        raise RuntimeError(f"internal: h''(D) = {curvature} is not negative")
    m = (P_ + Q_) / 2
    js = (P_ * sp.log(P_ / m) + Q_ * sp.log(Q_ / m)) / 2
    gap = sp.expand_log(sp.simplify((P_ + Q_) * sp.log(2) + h.subs(D_, dstar) - 2 * js), force=True)
    if sp.simplify(gap) != 0:
        raise RuntimeError(f"internal: the value at D* differs from JS by {gap}")
    return (f"D*(x) = {dstar} maximises p log D + q log(1 - D) (SymPy: h''(D) = {curvature} < 0 on 0 < D < 1)",
            ("at D*: (p + q) log 2 + p log D* + q log(1 - D*) = p log(p/M) + q log(q/M), M = (p + q)/2, "
             "so 1/2 (log 4 + E_P log D* + E_Q log(1 - D*)) = JS(P, Q)"),
            "D = sigmoid(V): log D = log_sigmoid(V), log(1 - D) = log_sigmoid(-V); optimal logit V* = log(p/q)")


@dataclass(frozen=True)
class Found:
    """A JS or GAN divergence whose sides can both be sampled, and the variables they share."""

    divergence: ir.Divergence
    binder: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]


def match(node: ir.Divergence, ctx: Context) -> Found | Refusal:
    if node.kind not in CLASSIFIER_KINDS:
        other = "denoising_score" if node.kind == "Fisher" else "conjugate"
        return Refusal(f"classifier_ratio gives JS and GAN divergences, not {node.kind}; {other} handles {node.kind}")
    binder, shapes = sampled_sides(node, ctx, "classifier_ratio")
    return Found(node, binder, shapes)


def build(found: Found, ctx: Context) -> Rewrite:
    """The JS (GAN) bound at a discriminator σ(V) owned by a new max player; with
    `nonsaturating`, the generator's surrogate loss beside it."""
    node, binder = found.divergence, found.binder
    critic = make_critic(ctx.program, binder, found.shapes, ctx.options, "disc", node, "classifier_ratio")

    def log_d(side, sign):
        return expect_over(side, binder, lambda k: ir.Apply(
            "log_sigmoid", (critic(k) if sign > 0 else ir.Apply("neg", (critic(k),)),)), bool(ctx.program.data_vars))

    def scaled(*terms):
        if node.kind == "JS":
            return ir.Apply("mul", (ir.Num(0.5), sum_of(ir.Apply("log", (ir.Num(4),)), *terms)))
        return sum_of(*terms)

    bound = scaled(log_d(node.p, +1), log_d(node.q, -1))
    relation, loss, nonsaturating = ">=", bound, False
    conditions = (f"P = {side_name(node.p)}, Q = {side_name(node.q)}: both can be sampled",) + classifier_identity()
    if node.kind == "GAN":
        conditions += ("GAN(P || Q) = 2 JS(P, Q) - log 4 = max_D E_P log D + E_Q log(1 - D)",)
    note = f"discriminator D = sigmoid({critic.describe()}); player {critic.player} maximises the bound"
    if ctx.option("nonsaturating"):
        moved = [(moves(node.p, binder, ctx), node.p, -1), (moves(node.q, binder, ctx), node.q, +1)]
        if any(m for m, _, _ in moved):
            nonsaturating = True
            terms = [ir.Apply("neg", (log_d(side, sign),)) if m else log_d(side, -sign) for m, side, sign in moved]
            loss, relation = ir.Surrogate(scaled(*terms), critic.player), "~"
            conditions += (("nonsaturating: the generator minimises -E_Q log D (and -E_P log(1 - D) where it moves "
                            "P) instead of E_Q log(1 - D): the same stationary point P = Q, D = 1/2, with strong "
                            "gradients where D rejects its samples"),)
            note += f"; nonsaturating generator loss: a general-sum game, the discriminator keeps the {node.kind} bound"
    facts = (("divergence", node.kind), ("critic", critic.player), ("optimal_logit", "log(p/q)"),
             ("nonsaturating", nonsaturating))
    return critic_game(loss, relation, conditions, critic, bound, node, note, facts)


RULE = Rule(
    "classifier_ratio", problem="divergence", matches=(ir.Divergence,), relation=">=",
    identity="JS(P, Q) = 1/2 (log 4 + max_D E_P log D + E_Q log(1 - D)),  D* = p/(p + q)",
    match=match, build=build,
    options=(Option("nonsaturating", bool, doc=("the generator minimises -E_Q log D instead of E_Q log(1 - D) "
                                                "(a general-sum game with the same fixed point; relation ~)")),
             *critic_options("classifier_ratio")),
)
