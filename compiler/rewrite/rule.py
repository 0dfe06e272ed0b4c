"""What a rule is: the node types it matches, a pure match, a build, its relation and identity.

    Rule("relax_l0", problem="nondiff", matches=(ir.Apply,), relation="~",
         identity="norm0(w) ~ norm1(w)   (convex envelope on |w_i| <= 1)",
         match=match_norm0, build=build_norm1)

`rule(node, ctx)` returns a `Rewrite` (the rule applies), a `Refusal` (the node is of the
rule's kind but the rule cannot take it, and says why) or None (not this rule's business).
A rule never raises to decline: the pass manager turns a refusal of a forced rule into the one
diagnostic. A rule may still raise `AttractorError` for a user error it finds while building
(a bad option value, an underivable conjugate).

Relations read `original RELATION rewritten`:
    =      equal
    <=     the rewritten objective is an upper bound (pointwise)
    >=     a lower bound for every auxiliary value, equal at the sup (a game)
    ~      a surrogate: no order
    =+c    equal up to an additive constant that does not depend on any parameter
    min<=  min original <= min rewritten, not pointwise (smoothing)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

from compiler import ir
from compiler.ir.diagnostics import AttractorError, Loc
from compiler.ir.printer import constraint_text, show

RELATIONS = ("=", "<=", ">=", "~", "=+c", "min<=")


@dataclass(frozen=True)
class Option:
    """A typed option of `via rule(...)`: a flag (`kind=bool`) or `key=value` of `kind`
    int, float or str (a name), within [low, high] or among `choices`. `wording`, when given,
    is the refusal of a bad value in the rule's own words (formatted with `{value}`)."""

    name: str
    kind: type = bool
    doc: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    low_open: bool = False
    wording: str = ""

    def read(self, rule: str, value: Any, loc: Loc | None) -> Any:
        """The option's value, converted and checked; a diagnostic at `loc` otherwise."""
        if self.wording:
            try:
                return dataclasses.replace(self, wording="").read(rule, value, loc)
            except AttractorError:
                raise AttractorError(f"{rule}: {self.wording.format(value=value)}", loc) from None
        where = f"rule {rule}: option '{self.name}'"
        if self.kind is bool:
            if value is True:
                return True
            raise AttractorError(f"{where} is a flag: write it alone, without a value", loc)
        if value is True:
            raise AttractorError(f"{where} needs a value ({self.name}=...)", loc)
        if self.kind is str:
            if not isinstance(value, str):
                raise AttractorError(f"{where} takes a name, not {value!r}", loc)
            out = value
        elif self.kind is int:
            if isinstance(value, str) or not float(value).is_integer():
                raise AttractorError(f"{where} takes an integer, not {value}", loc)
            out = int(value)
        else:
            if isinstance(value, str) or not math.isfinite(float(value)):
                raise AttractorError(f"{where} takes a finite number, not {value}", loc)
            out = float(value)
        if self.choices and out not in self.choices:
            raise AttractorError(f"{where} is one of {', '.join(map(str, self.choices))}, not {out}", loc)
        below = self.low is not None and (out <= self.low if self.low_open else out < self.low)
        if below or (self.high is not None and out > self.high):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            raise AttractorError(f"{where} must lie in {'(' if self.low_open else '['}{lo}, {hi}], not {out:g}", loc)
        return out


@dataclass(frozen=True)
class Refusal:
    """The node is of the rule's kind, but the rule does not apply to it: `reason` says why."""

    reason: str
    loc: Loc | None = None


@dataclass(frozen=True)
class Rewrite:
    """What a rule builds: the replacement and what it costs.

    `relation` reads `original RELATION replacement`; left empty, it is the rule's. A rewrite
    may introduce declarations (nets, params; `owner=` the player) and players; `game` marks
    `>=` rewrites closed by a max player; `facts` are the named results the rule established
    (read by certificates and explain, never recovered from text). `roles` says what a new
    declaration is (shown after it in the step); `reports` are quantities `run` reports;
    `training` are defaults for the `train` options the program leaves unset (named in the note).
    A rewrite that takes a term out of the loss (a proximal map) gives the loss left (`loss`) and
    the maps the player applies after each gradient step (`prox`); `node` then shows the map.
    """

    node: ir.Node
    relation: str = ""
    conditions: tuple[str, ...] = ()
    decls: tuple[ir.Node, ...] = ()
    players: tuple[ir.Player, ...] = ()
    auxiliary: tuple = ()
    game: bool = False
    note: str = ""
    facts: tuple = ()          # ((name, value), ...)
    roles: tuple = ()          # ((declared name, what it is), ...)
    reports: tuple[ir.Report, ...] = ()
    training: tuple = ()       # ((train option, default), ...)
    loss: ir.Node | None = None   # the player's whole loss after it, when a term leaves the loss (proximal)
    prox: tuple = ()           # ((param, kind, weight), ...) proximal maps the player applies after each step
    options: tuple = ()        # ((key, value), ...) the options the search gave the rule (a variant), recorded on the step


@dataclass(frozen=True)
class Context:
    """Where a rule is tried: the program, the player whose loss holds the node, the node's
    polarity (+1: the loss grows with it, -1: falls, 0: unknown), the typed options of
    `via rule(...)` when this rule is forced, and the path from the node to the root."""

    program: ir.Program
    player: ir.Player
    polarity: int = 1
    options: dict = field(default_factory=dict)
    forced: bool = False
    path: tuple | None = None      # linked (parent path, parent, index); None at the root

    def option(self, key: str, default=None):
        return self.options.get(key, default)


@dataclass(frozen=True)
class Rule:
    """A rewrite rule: `match(node, ctx)` is pure and returns what `build(found, ctx)` needs
    (or a Refusal, or None); `build` makes the Rewrite. `problem` is the analysis problem the
    rule answers (compiler.analysis.problems; "" for optional rules): forcing a rule with `via`
    disables every other rule of its problem. `unmatched` is why a forced rule that found
    nothing to rewrite does not apply ("the objective has no norm0 term in its parameters").
    `variants` are the option sets the search among derivations may try at a node (SPEC 9.4);
    `{}` is the rule as written."""

    name: str
    problem: str
    matches: tuple[type, ...]
    relation: str
    identity: str
    match: Callable[[ir.Node, Context], Any]
    build: Callable[[Any, Context], Rewrite]
    options: tuple[Option, ...] = ()
    claims: Callable[[ir.Constraint, ir.Program], bool] | None = None
    unmatched: str = ""
    variants: tuple[dict, ...] = ({},)     # option sets a measuring search may try for the rule

    def __post_init__(self):
        assert self.relation in RELATIONS, self.relation

    def __call__(self, node: ir.Node, ctx: Context) -> Rewrite | Refusal | None:
        if not isinstance(node, self.matches):
            return None
        found = self.match(node, ctx)
        if found is None or isinstance(found, Refusal):
            return found
        rw = self.build(found, ctx)
        return rw if rw.relation else _with_relation(rw, self.relation)

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


def _with_relation(rw: Rewrite, relation: str) -> Rewrite:
    from dataclasses import replace
    return replace(rw, relation=relation)


@dataclass(frozen=True)
class Step:
    """One derivation step: the rule, the relation, the player, the matched node, what replaced
    it and the player's loss after it, what it introduced, the side conditions and facts.

    `before`, `after` and `result` are those nodes printed, made when first read: a derivation
    of n steps over a loss of n terms is printed in O(n^2), but compiled in far less.
    """

    rule: str
    relation: str
    player: str
    matched: ir.Node               # the node the rule matched (for a constraint, the constraint)
    replacement: ir.Node           # what the rule put in its place
    node: ir.Node                  # the player's loss after the step
    introduces: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    note: str = ""
    options: tuple = ()            # ((key, value), ...) the rule was given
    facts: tuple = ()              # ((name, value), ...) the rule established

    @cached_property
    def before(self) -> str:
        return constraint_text(self.matched) if isinstance(self.matched, ir.Constraint) else show(self.matched)

    @cached_property
    def after(self) -> str:
        return show(self.replacement)

    @cached_property
    def result(self) -> str:
        return show(self.node)

    def fact(self, name: str, default=None):
        return dict(self.facts).get(name, default)
