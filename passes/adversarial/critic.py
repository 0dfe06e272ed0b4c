"""The critic a game rule introduces: a scalar V(x) of the variables both sides share, owned by
a new player that maximises the bound, and its typed options.

`critic=mlp` (the default): `mlp(d, H, H, 1; act=A)` with H = `hidden` (128) and A = `act`;
`critic=linear`: a bias-free linear function ψ·x. The default activation is per rule, measured
in bench/adversarial_*.py: a relu discriminator covers the ring's modes best, while a tanh
critic, whose slope in x is smooth and bounded, keeps the pathwise gradients through
f*(g_f(V(x))) steady (hellinger_fit: every seed within 0.03 of the target, relu: one seed in
four stalls).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from compiler import ir
from compiler.ir.builtins import NET_ACTIVATIONS
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import show
from compiler.rewrite.rule import Option, Rewrite
from passes.adversarial.sides import fresh_name, pairing_note, sum_of

HIDDEN = 128                           # hidden width of an introduced critic net (option hidden=)
CRITIC_ACT = {"classifier_ratio": "relu", "conjugate": "tanh", "entropy_game": "relu"}   # hidden activation (option act=), per rule


def critic_options(rule: str) -> tuple[Option, ...]:
    """The options of a rule that introduces a critic: its form, width and activation."""
    return (
        Option("critic", str, choices=("mlp", "linear"), wording="critic must be mlp or linear, not {value}",
               doc="the critic V(x): an mlp owned by a new player (default), or a bias-free linear function psi . x"),
        Option("hidden", int, low=1, wording="hidden must be a positive integer width, not {value}",
               doc=f"hidden width of the critic mlp (default {HIDDEN})"),
        Option("act", str, choices=NET_ACTIVATIONS, wording=f"act must be one of {', '.join(NET_ACTIVATIONS)}, not {{value}}",
               doc=f"hidden activation of the critic mlp (default {CRITIC_ACT[rule]})"),
    )


@dataclass(frozen=True)
class Critic:
    """An introduced critic: its player's name, declarations, and V(x) as a function of the
    kind of the bound variables."""

    player: str
    decls: tuple[ir.Node, ...]
    params: tuple[str, ...]
    out: Callable[[str], ir.Node]

    def __call__(self, kind: str) -> ir.Node:
        return self.out(kind)

    def describe(self) -> str:
        return show(self.out("data"))


def make_critic(program: ir.Program, binder, shapes, options: dict, base: str, divergence: ir.Divergence,
                rule: str) -> Critic:
    """A scalar critic V(x) of the shared variables: `mlp(d, H, H, 1; act=A)` owned by a new
    player (options hidden=H, act=A), or with `critic=linear` a bias-free linear function ψ·x."""
    wide = next((v for v, s in zip(binder, shapes) if len(s) > 1), None)
    if wide is not None:
        raise AttractorError(f"{rule}: the critic takes vectors, but '{wide}' has shape {shapes[binder.index(wide)]}",
                             divergence.loc)
    player = fresh_name(program, base)
    if options.get("critic", "mlp") == "linear":
        names = [fresh_name(program, "psi" if len(binder) == 1 else f"psi_{v}") for v in binder]
        decls = tuple(ir.Param(n, s, owner=player) for n, s in zip(names, shapes))

        def linear(k):
            return sum_of(*(ir.Apply("dot" if s else "mul", (ir.Ref(n, "param"), ir.Ref(v, k)))
                            for n, v, s in zip(names, binder, shapes)))
        return Critic(player, decls, tuple(names), linear)
    hidden = options.get("hidden", HIDDEN)
    width = sum(math.prod(s) for s in shapes)
    net = ir.Net(player, (width, hidden, hidden, 1), options.get("act", CRITIC_ACT[rule]), owner=player)
    return Critic(player, (net,), (player,), lambda k: ir.NetCall(player, tuple(ir.Ref(v, k) for v in binder)))


def critic_game(loss: ir.Node, relation: str, conditions: tuple, critic, bound: ir.Node, divergence: ir.Divergence,
                note: str, facts: tuple) -> Rewrite:
    """The rewrite of a game rule: `loss` for the player whose loss held the divergence, and the
    critic as a new player maximising `bound` (>= the divergence for every critic, = at the sup)."""
    pairing = pairing_note(divergence)
    note += f"; {pairing}" if pairing else ""
    player = ir.Player(critic.player, critic.params, "max", bound)
    return Rewrite(loss, relation, conditions, critic.decls, (player,), game=True, note=note, facts=facts)
