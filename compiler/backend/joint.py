"""Every player's loss in one function, each shared random draw made once.

The players of a game average over the same things: a GAN's generator and discriminator both
take E[x ~ data] and E[eps ~ Normal(0, 1)] of terms in gen(eps). Lowered one loss at a time,
each loss draws its own copy of the same noise, and XLA does not merge two copies of a
random-number computation inside the training loop, so the noise and all that is computed
from it (the generator's forward pass) is computed once per player.

`joint_losses(ctx, key, batch)` lowers the losses together. Player p's loss reads the
parameters `ctx[p]`, so that one gradient of sum_p sign_p L_p(ctx[p]), each player's own
parameters differentiated in its own context, is the vector field. Expectations with the same
header become one function that returns every member's body (`lower.lower_together`, the one
lowering of expectations: a single loss is the group of one); a draw whose distribution is the
same in every context (no parameters, the same bound values) is made once, other draws reuse
the same key or noise in each context.
"""
from __future__ import annotations

from compiler import ir
from compiler.backend.lower import Emitter, Fn, key_literal, lower_together


def joint_function(em: Emitter, players: list[ir.Player]) -> list[str]:
    """`def joint_losses(ctx, key, batch)`: every player's loss, player p reading `ctx[p]`."""
    scope = Fn(em, 1, {}, "key")
    views = []
    for pl in players:
        params = em.fresh("params")
        scope.emit(f"{params} = ctx[{key_literal(pl.name)}]")
        views.append(scope.view(params=params))
    em.share(*(pl.loss for pl in players))
    values = lower_together(em, [(view, pl.loss) for view, pl in zip(views, players)])
    doc = "Every player's loss, player p reading the parameters ctx[p]; shared draws are made once."
    result = "{" + ", ".join(f"{key_literal(pl.name)}: {v}" for pl, v in zip(players, values)) + "}"
    scope.emit(f"return {result}")
    return ["def joint_losses(ctx, key, batch):", f'    """{doc}"""'] + scope.body()
