"""Players declared by the user (SPEC §9.5): `player NAME over P1, P2: minimize|maximize EXPR`.

A declared game replaces the single player `theta` the checker otherwise makes from the
objective: player i moves only its parameters P_i along -grad_{P_i} L_i (minimize) or
+grad_{P_i} L_i (maximize); every other player's parameters enter L_i as constants. Each
learnable parameter is moved by exactly one player; one that no player lists stays at its
initial value (a constant of the game).
"""
from __future__ import annotations

from compiler import ir
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import shape_text


def check_players(declared: list[ir.Player], learnable: tuple[str, ...], checked_loss) -> tuple[ir.Player, ...]:
    """The typed players; `checked_loss(expr) -> (node, shape)` checks one loss."""
    owner: dict[str, str] = {}
    names: set[str] = set()
    out = []
    for pl in declared:
        if pl.name in names:
            raise AttractorError(f"player {pl.name} is declared twice", pl.loc)
        names.add(pl.name)
        for p in pl.params:
            if p not in learnable:
                raise AttractorError(f"player {pl.name} is over '{p}', which is not a parameter or a net of the "
                                     "program", pl.loc)
            if p in owner:
                raise AttractorError(f"player {pl.name} is over '{p}', which player {owner[p]} already owns: "
                                     "each parameter is moved by one player", pl.loc)
            owner[p] = pl.name
        loss, shape = checked_loss(pl.loss)
        if shape:
            raise AttractorError(f"player {pl.name}'s loss must be a scalar, but it has shape {shape_text(shape)}",
                                 pl.loss.loc or pl.loc)
        out.append(ir.Player(pl.name, pl.params, pl.sense, loss, loc=pl.loc))
    return tuple(out)


def objective_of(players: list[ir.Player]) -> ir.Objective:
    """A program made only of players reports its first player's loss as its objective."""
    first = players[0]
    return ir.Objective("minimize" if first.sense == "min" else "maximize", first.loss, loc=first.loc)
