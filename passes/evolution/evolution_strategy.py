"""evolution_strategy: min_θ f(θ)  <=  E[θ' ~ Normal(θ, σ² I)] f(θ')   for every θ.

A minimum is at most an average, so minimising the smoothed objective over the mean θ
minimises an upper bound of min f (for a maximisation, max f >= E f: a lower bound,
maximised). Its gradient in θ is the score-function estimate (1/(Nσ)) Σ_i w_i ε_i over a
population θ_i = θ + σ ε_i drawn in antithetic pairs ±ε, with w_i the centred ranks of f(θ_i)
(fitness shaping, invariant to any increasing transformation of f; `shaping=none` uses
f(θ_i) - mean f, the unbiased estimate). σ is fixed, or decays geometrically to `sigma_final`
over the training steps. The trained parameters are the mean θ.

The rule matches a player's whole loss with a non-differentiable node in it, and smooths it
over the parameters those nodes depend on; the other parameters keep their pathwise gradient.
With no optimizer written it trains the centre with Adam at step σ/2 (Adam moves each
coordinate about one step size per update, so the centre moves a fraction of the search scale).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compiler import ir
from compiler.analysis.problems import depends_on, problems
from compiler.ir.diagnostics import AttractorError, Loc
from compiler.ir.printer import number, show
from compiler.rewrite.rule import Context, Option, Rewrite, Rule
from passes.evolution.nodes import SHAPINGS, Search, Smoothed

DEFAULTS = {"sigma": 0.1, "population": 64, "antithetic": True, "shaping": "centered_rank", "sigma_final": 0.0}
SWITCH = {True: True, "true": True, "True": True, "yes": True, False: False, "false": False, "False": False, "no": False}


@dataclass(frozen=True)
class Switch(Option):
    """A yes/no option: `name=true` or `name=false` (also yes/no, 1/0, or the name alone for true)."""

    def read(self, rule: str, value: Any, loc: Loc | None) -> bool:
        if isinstance(value, (bool, float, str)) and value in SWITCH:
            return SWITCH[value]
        raise AttractorError(f"{rule}: {self.wording.format(value=value)}", loc)


OPTIONS = (
    Option("sigma", float, low=0, low_open=True, doc="the search scale σ (default 0.1)",
           wording="sigma must be a positive finite number, got {value}"),
    Option("population", int, low=2, doc="the number N of perturbed parameters per step (default 64)",
           wording="population must be an integer of at least 2, got {value}"),
    Switch("antithetic", bool, doc="draw the population in pairs ±ε (default true)",
           wording="antithetic must be true or false, got {value}"),
    Option("shaping", str, choices=SHAPINGS, doc="centered_rank (default) or none (f(θ_i) - mean f, unbiased)",
           wording=f"unknown shaping '{{value}}'; shapings are {', '.join(SHAPINGS)}"),
    Option("sigma_final", float, low=0, low_open=True, doc="σ decays geometrically to this value over training",
           wording="sigma_final must be a positive number, got {value}"),
)


@dataclass(frozen=True)
class Kinked:
    """A player's loss and the non-differentiable nodes in it."""

    loss: ir.Node
    nodes: tuple[ir.Node, ...]


def match(node: ir.Node, ctx: Context) -> Kinked | None:
    """A player's whole loss (the root: no path) with a non-differentiable node in it."""
    if ctx.path is not None or isinstance(node, Smoothed) or ctx.program.objective.sense == "estimate":
        return None
    found = tuple(p.node for p in problems(ctx.program, node) if p.kind == "nondiff")
    return Kinked(node, found) if found else None


def settings(ctx: Context) -> dict:
    """The options with their defaults; a population drawn in antithetic pairs must be even."""
    opts = {key: ctx.option(key, default) for key, default in DEFAULTS.items()}
    if opts["antithetic"] and opts["population"] % 2:
        via = ctx.program.objective.via
        raise AttractorError(f"evolution_strategy: population must be even with antithetic sampling (pairs θ ± σε), "
                             f"got {opts['population']}; use {opts['population'] + 1} or antithetic=false",
                             via.loc if via is not None else ctx.program.objective.loc)
    return opts


def smoothed_params(found: tuple[ir.Node, ...], program: ir.Program) -> tuple[str, ...]:
    """The learnables the non-differentiable nodes depend on, in declaration order; a net among
    them is an error in the program (the rule perturbs declared parameters, not a net's weights)."""
    names = tuple(n for n in program.learnable() if any(depends_on(f, program, {n}) for f in found))
    for n in names:
        if isinstance(program.decl(n), ir.Net):
            node = next(f for f in found if depends_on(f, program, {n}))
            raise AttractorError(f"evolution_strategy smooths declared parameters (param); {show(node)} depends on "
                                 f"net '{n}', whose weights it does not perturb", node.loc)
    return names


def build(found: Kinked, ctx: Context) -> Rewrite:
    opts = settings(ctx)
    names = smoothed_params(found.nodes, ctx.program)
    node = found.loss
    body = node
    for n in names:
        body = ir.substitute(body, n, ir.Ref(n + "'", "local", loc=node.loc))
    source = Search(tuple(ir.Ref(n, "param") for n in names), opts["sigma"])
    new = Smoothed(tuple(n + "'" for n in names), source, body, estimator="evolution_strategy",
                   samples=opts["population"], antithetic=opts["antithetic"], shaping=opts["shaping"],
                   sigma_final=opts["sigma_final"], loc=node.loc)
    sense = ctx.polarity if ctx.polarity else 1
    claim = "min f <= E f" if sense > 0 else "E f <= max f"
    conditions = (f"{claim} for every centre: an average is never below the minimum nor above the maximum",)
    schedule = f", decaying geometrically to {number(opts['sigma_final'])}" if opts["sigma_final"] else ""
    note = (f"smooths over {', '.join(names)} with sigma = {number(opts['sigma'])}{schedule}, population "
            f"{opts['population']}{' in antithetic pairs' if opts['antithetic'] else ''}, "
            f"{'centred-rank' if opts['shaping'] == 'centered_rank' else 'unshaped'} fitness")
    return Rewrite(new, "min<=" if sense > 0 else ">=", conditions, note=note,
                   training=(("optimizer", ("adam", (("lr", opts["sigma"] / 2),))),),
                   facts=(("params", names), ("sigma", opts["sigma"]), ("population", opts["population"]),
                          ("antithetic", opts["antithetic"]), ("shaping", opts["shaping"])))


RULE = Rule(
    "evolution_strategy", problem="nondiff", matches=(ir.Node,), relation="min<=",
    identity="min_theta f(theta) <= E[theta' ~ Normal(theta, sigma^2 I)] f(theta')",
    match=match, build=build, options=OPTIONS,
    unmatched="every term of the objective has a useful gradient (no step, sign, round, floor, norm0 or Iverson "
              "bracket in the parameters)")
