"""The pass manager: named passes, each with `accepts` and `apply`, recording derivation steps.

A `Rule` is a pure function `(node, ctx) -> Rewrite | None` plus its name and the problem it
answers. A `RulePass` tries a table of rules at every position of every player's loss,
outermost first, until none applies; the manager refuses any rewrite that would move a bound
in the wrong direction, and records every step it takes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from compiler import ir
from compiler.analysis import program_problems
from compiler.diagnostics import AttractorError
from compiler.printer import show
from compiler.strategies import positions, replace_at

RELATIONS = ("=", "<=", ">=", "~")


@dataclass(frozen=True)
class Rewrite:
    """What a rule returns: the replacement and what it costs.

    `relation` reads `original RELATION replacement`. A rewrite may introduce declarations
    (nets, params) and players; `game` marks `>=` rewrites closed by a max player.
    """

    node: ir.Node
    relation: str
    conditions: tuple[str, ...] = ()
    decls: tuple[ir.Node, ...] = ()
    players: tuple[ir.Player, ...] = ()
    auxiliary: tuple = ()
    game: bool = False
    note: str = ""


@dataclass(frozen=True)
class Context:
    program: ir.Program
    player: ir.Player
    polarity: int                  # +1: the player's loss grows with this node
    options: dict = field(default_factory=dict)   # from `via rule(...)` when this rule is forced
    forced: bool = False
    path: tuple = ()

    def option(self, key: str, default=None):
        return self.options.get(key, default)


@dataclass(frozen=True)
class Rule:
    name: str
    problem: str                   # the analysis problem it answers (or "" for optional rules)
    fn: Callable[[ir.Node, Context], Rewrite | None]
    options: tuple[str, ...] = ()  # option names accepted in `via name(...)`

    def __call__(self, node: ir.Node, ctx: Context) -> Rewrite | None:
        return self.fn(node, ctx)


@dataclass(frozen=True)
class Step:
    rule: str
    relation: str
    player: str
    before: str
    after: str
    result: str
    introduces: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    note: str = ""
    node: ir.Node | None = field(default=None, compare=False, repr=False)   # the loss after the step


STAGES = {"lagrangian": 10, "jensen": 20, "adversarial": 30, "analytic_kl": 40, "relaxation": 50,
          "evolution": 55, "splitting": 60, "proximal": 70, "estimators": 80}


class RulePass:
    """Exhaustively apply a table of rules to every player's loss.

    `stage` (a key of STAGES) places the pass in the pipeline.
    """

    def __init__(self, name: str, rules: tuple[Rule, ...], stage: str):
        self.name = name
        self.rules = rules
        self.stage = STAGES[stage]

    def accepts(self, program: ir.Program, via: ir.RuleRef | None) -> bool:
        return True

    def enabled(self, program: ir.Program, via: ir.RuleRef | None) -> tuple[Rule, ...]:
        """Rules of this pass that may run: a forced rule excludes its competitors."""
        if via is None:
            return self.rules
        forced = next((r for r in self.rules if r.name == via.name), None)
        if forced is None:
            return self.rules
        return tuple(r for r in self.rules if r is forced or r.problem != forced.problem or not r.problem)

    def apply(self, program: ir.Program, via: ir.RuleRef | None) -> tuple[ir.Program, list[Step]]:
        steps: list[Step] = []
        rules = self.enabled(program, via)
        for _ in range(100):
            for index, player in enumerate(program.players):
                hit = self._first(program, player, rules, via)
                if hit is not None:
                    program, step = _commit(program, index, player, *hit)
                    steps.append(step)
                    break
            else:
                return program, steps
        raise AttractorError(f"pass {self.name} did not terminate", program.objective.loc)

    def _first(self, program, player, rules, via):
        sense = 1 if player.sense == "min" else -1
        for node, pol, path in positions(player.loss, program, sense):
            for rule in rules:
                forced = via is not None and via.name == rule.name
                ctx = Context(program, player, pol, dict(via.options) if forced else {}, forced, path)
                rw = rule(node, ctx)
                if rw is not None:
                    _check_direction(rule, rw, node, pol, program)
                    return rule, node, path, rw
        return None


def _check_direction(rule: Rule, rw: Rewrite, node: ir.Node, polarity: int, program: ir.Program) -> None:
    """A bound may only replace a term in the direction that keeps it a bound."""
    if rw.relation == "=" or rw.game or program.objective.sense == "estimate":
        return
    needs = {"<=": 1, "~": 1, ">=": -1}[rw.relation]
    if polarity == needs:
        return
    what = {"<=": "an upper bound", "~": "a relaxation", ">=": "a lower bound"}[rw.relation]
    if polarity == 0:
        why = "the objective is not monotone in this term, so the bound says nothing about it"
    elif rw.relation == ">=":
        why = "the term is minimised, and minimising a lower bound drives it to -infinity, not to the optimum"
    elif program.objective.sense == "maximize":
        why = ("the objective is maximised, and the surrogate can grow where the term does not, "
               "so maximising the surrogate would not maximise the objective")
    elif polarity == -1:
        why = ("the term enters with a negative weight, so minimising the objective pushes the term up, and the "
               "surrogate can grow where the term does not")
    else:
        why = "the bound points the wrong way"
    raise AttractorError(f"rule {rule.name} refused: it would substitute {what} ({rw.relation}) for {show(node)}, but {why}", node.loc or program.objective.loc)


def _commit(program: ir.Program, index: int, player: ir.Player, rule: Rule, node: ir.Node,
            path, rw: Rewrite) -> tuple[ir.Program, Step]:
    new_loss = replace_at(path, rw.node)
    players = list(program.players)
    players[index] = dataclasses.replace(player, loss=new_loss)
    players.extend(rw.players)
    for i, p in enumerate(players):   # new learnables owned by an existing player join its parameters
        owned = tuple(d.name for d in rw.decls if isinstance(d, (ir.Param, ir.Net)) and d.owner == p.name
                      and d.name not in p.params)
        if owned:
            players[i] = dataclasses.replace(p, params=p.params + owned)
    decls = program.decls + rw.decls
    program = dataclasses.replace(program, players=tuple(players), decls=decls,
                                  auxiliary=program.auxiliary + rw.auxiliary)
    introduces = tuple(_introduced(d) for d in rw.decls) + tuple(
        f"player {p.name} ({p.sense} over {', '.join(p.params)}): {show(p.loss)}" for p in rw.players)
    step = Step(rule.name, rw.relation, player.name, show(node), show(rw.node), show(new_loss),
                introduces, rw.conditions, rw.note, new_loss)
    return program, step


def _introduced(d: ir.Node) -> str:
    from compiler.printer import _decl
    head, *body = _decl(d)
    head = head.split("    #")[0]
    return f"{head} {'; '.join(line.strip() for line in body)}" if body else head


# ---- the manager ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Derivation:
    objective: str
    steps: tuple[Step, ...]


def run_passes(program: ir.Program, passes, via: ir.RuleRef | None) -> tuple[ir.Program, Derivation]:
    known = {r.name: r for p in passes for r in getattr(p, "rules", ())}
    if via is not None:
        rule = known.get(via.name)
        if rule is None:
            raise AttractorError(f"unknown rule '{via.name}'; rules are {', '.join(sorted(known))}", via.loc)
        keys = [k for k, _ in via.options]
        twice = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
        if twice is not None:
            raise AttractorError(f"rule {via.name}: option '{twice}' is given twice", via.loc)
        bad = [k for k, _ in via.options if k not in rule.options]
        if bad:
            accepted = ", ".join(rule.options) or "none"
            raise AttractorError(f"rule {via.name} has no option '{bad[0]}' (options: {accepted})", via.loc)
    objective = show(program.objective.expr)
    steps: list[Step] = []
    for p in passes:
        if p.accepts(program, via):
            program, done = p.apply(program, via)
            steps.extend(done)
    if via is not None and not any(s.rule == via.name for s in steps):
        raise AttractorError(f"rule {via.name} does not apply to this objective", via.loc)
    left = program_problems(program)
    if left:
        problem = left[0]
        tried = sorted(r.name for r in known.values() if r.problem == problem.kind)
        tried_text = ", ".join(tried) if tried else "none exists yet"
        raise AttractorError(
            f"intractable: {show(problem.node) if not isinstance(problem.node, ir.Constraint) else 'subject to ...'}: "
            f"{problem.reason}; rules tried: {tried_text}",
            problem.node.loc or program.objective.loc)
    return program, Derivation(objective, tuple(steps))
