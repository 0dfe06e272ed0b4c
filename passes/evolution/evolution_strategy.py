"""evolution_strategy: min_θ f(θ)  <=  E[θ' ~ Normal(θ, σ² I)] f(θ')   for every θ.

A minimum is at most an average, so minimising the smoothed objective over the mean θ
minimises an upper bound of min f (for a maximisation, max f >= E f: a lower bound,
maximised). Its gradient in θ is the score-function estimate (1/(Nσ)) Σ_i w_i ε_i over a
population θ_i = θ + σ ε_i drawn in antithetic pairs ±ε, with w_i the centred ranks of f(θ_i)
(fitness shaping, invariant to any increasing transformation of f; `shaping=none` uses
f(θ_i) - mean f, the unbiased estimate). σ is fixed, or decays geometrically to `sigma_final`
over the training steps. The trained parameters are the mean θ.

σ is chosen from the scale of the non-differentiable nodes' arguments where it is not written:
round(u), floor(u), ceil(u) are constant on cells of width 1 in u, so of width h = 1 / |du/dθ|
in a parameter θ that u is affine in (round(w / 0.5) * 0.5: h = 0.5). A search that is to move
between cells needs σ of the order of a cell, and one that is to settle in the best cell needs
σ well under it: σ starts at h (the smallest cell where several parameters have grids) and is
learned by SNES (below; with `adapt=false`, it decays geometrically to h / 10 instead). With
no such grid (an Iverson bracket of a margin, which is unchanged by scaling a linear
classifier) σ = 0.1. The choice and its reason are a fact of the step and
in its note.

With `adapt`, σ is learned: separable natural evolution strategies (SNES; Wierstra et al.
2014), one σ_j per coordinate, a parameter `NAME_log_sigma` (log σ) of the player beside each
smoothed NAME. With utilities u_k (log-rank weights summing to 0, the best draw highest),
    μ <- μ + η_μ σ ⊙ Σ_k u_k ε_k,        log σ <- log σ + (η_σ / 2) Σ_k u_k (ε_k² - 1),
η_μ = 1 (plain steps: the default optimizer is sgd(lr=1)) and η_σ = (3 + ln d) / (5 √d), d the
number of coordinates searched: σ grows along directions where better draws lie far out and
shrinks where they lie near, so it need not be guessed.

The rule matches a player's whole loss with a non-differentiable node in it, and smooths it
over the parameters those nodes depend on; the other parameters keep their pathwise gradient.
Its rewrite names the nodes it answers (fact `answers`), so that the search among derivations
offers it at each of them beside their relaxations (on the whole loss that holds the node), and
says that its relation is not pointwise (fact `pointwise` False): min f <= E f bounds the best
value, not f at the centre training returns, so it ranks after a pointwise bound (SPEC 9.1, 9.4).
With no optimizer written it trains the centre with Adam at step σ/2 (Adam moves each
coordinate about one step size per update, so the centre moves a fraction of the search scale).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import sympy as sp

from compiler import ir
from compiler.analysis.problems import depends_on, problems
from compiler.ir.diagnostics import AttractorError, Loc
from compiler.ir.printer import number, show
from compiler.math.symbolic import NotScalar, to_sympy
from compiler.rewrite.rule import Context, Option, Rewrite, Rule
from passes.evolution.nodes import SCALE_SUFFIX, SHAPINGS, Search, Smoothed

DEFAULTS = {"sigma": None, "population": 64, "antithetic": True, "shaping": "centered_rank", "sigma_final": 0.0,
            "adapt": None}
DEFAULT_SIGMA = 0.1          # σ where no grid in the kinks' arguments sets it
GRID_DECAY = 10              # σ chosen from a cell of width h decays to h / GRID_DECAY
GRID_FUNCTIONS = ("round", "floor", "ceil")   # constant on cells of width 1 in their argument
SWITCH = {True: True, "true": True, "True": True, "yes": True, False: False, "false": False, "False": False, "no": False}


@dataclass(frozen=True)
class Switch(Option):
    """A yes/no option: `name=true` or `name=false` (also yes/no, 1/0, or the name alone for true)."""

    def read(self, rule: str, value: Any, loc: Loc | None) -> bool:
        if isinstance(value, (bool, float, str)) and value in SWITCH:
            return SWITCH[value]
        raise AttractorError(f"{rule}: {self.wording.format(value=value)}", loc)


OPTIONS = (
    Option("sigma", float, low=0, low_open=True,
           doc="the search scale σ (default: the cell width of a round/floor/ceil in the parameters, else 0.1)",
           wording="sigma must be a positive finite number, got {value}"),
    Option("population", int, low=2, doc="the number N of perturbed parameters per step (default 64)",
           wording="population must be an integer of at least 2, got {value}"),
    Switch("antithetic", bool, doc="draw the population in pairs ±ε (default true)",
           wording="antithetic must be true or false, got {value}"),
    Option("shaping", str, choices=SHAPINGS, doc="centered_rank (default) or none (f(θ_i) - mean f, unbiased)",
           wording=f"unknown shaping '{{value}}'; shapings are {', '.join(SHAPINGS)}"),
    Option("sigma_final", float, low=0, low_open=True, doc="σ decays geometrically to this value over training",
           wording="sigma_final must be a positive number, got {value}"),
    Switch("adapt", bool, doc="learn one σ per coordinate by separable natural evolution strategies (SNES)",
           wording="adapt must be true or false, got {value}"),
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


def grid_cell(nodes: tuple[ir.Node, ...], names: tuple[str, ...], program: ir.Program) -> tuple[float, str] | None:
    """(h, the node that sets it): the narrowest cell h = 1 / |du/dθ| among the round/floor/ceil(u)
    in `nodes` (and inside them) whose argument u is affine in a parameter θ of `names` with a
    constant coefficient; None when there is none."""
    best = None
    for node in nodes:
        for n in node.walk():
            if not (isinstance(n, ir.Apply) and n.fn in GRID_FUNCTIONS and len(n.args) == 1):
                continue
            symbols = {name: sp.Symbol(name, real=True) for name in names}
            try:
                u = to_sympy(n.args[0], symbols, program)
            except (NotScalar, TypeError, ValueError):
                continue
            for name in names:
                slope = sp.diff(u, symbols[name])
                if slope.free_symbols or slope == 0 or not slope.is_finite:
                    continue
                cell = 1.0 / abs(float(slope))
                if best is None or cell < best[0]:
                    best = (cell, f"the cell width of {show(n)} in {name}")
    return best


def search_scale(opts: dict, found: Kinked, names: tuple[str, ...], program: ir.Program) -> tuple[float, float, str]:
    """(σ, the σ it decays to or 0, why): as written, else from a grid in the kinks' arguments
    (σ = h decaying to h / GRID_DECAY), else DEFAULT_SIGMA."""
    if opts["sigma"] is not None:
        return opts["sigma"], opts["sigma_final"], "as written"
    cell = grid_cell(found.nodes, names, program)
    if cell is None:
        return DEFAULT_SIGMA, opts["sigma_final"], "the default: no rounding grid in the arguments of the kinks"
    width, why = cell
    final = opts["sigma_final"] or (0.0 if opts["adapt"] else width / GRID_DECAY)
    return width, final, why


def build(found: Kinked, ctx: Context) -> Rewrite:
    opts = settings(ctx)
    names = smoothed_params(found.nodes, ctx.program)
    if opts["adapt"] is None:   # not written: learned from a grid's cell where one sets the start, else fixed
        opts["adapt"] = opts["sigma"] is None and opts["sigma_final"] == 0.0 and grid_cell(found.nodes, names, ctx.program) is not None
    sigma, sigma_final, why = search_scale(opts, found, names, ctx.program)
    node = found.loss
    body = node
    for n in names:
        body = ir.substitute(body, n, ir.Ref(n + "'", "local", loc=node.loc))
    sense = ctx.polarity if ctx.polarity else 1
    scales, decls = (), ()
    if opts["adapt"]:
        scales = tuple(n + SCALE_SUFFIX for n in names)
        taken = [s for s in scales if any(getattr(d, "name", None) == s for d in ctx.program.decls)]
        if taken:
            via = ctx.program.objective.via
            raise AttractorError(f"evolution_strategy(adapt) names its learned search scales {', '.join(scales)}, but "
                                 f"'{taken[0]}' is declared already; rename it", via.loc if via is not None else node.loc)
        decls = tuple(ir.Param(s, ctx.program.decl(n).shape, init=ir.Num(math.log(sigma)), owner=ctx.player.name)
                      for s, n in zip(scales, names))
    source = Search(tuple(ir.Ref(n, "param") for n in names), sigma, tuple(ir.Ref(s, "param") for s in scales))
    new = Smoothed(tuple(n + "'" for n in names), source, body, estimator="evolution_strategy",
                   samples=opts["population"], antithetic=opts["antithetic"], shaping=opts["shaping"],
                   sigma_final=0.0 if opts["adapt"] else sigma_final, sense=sense, loc=node.loc)
    claim = "min f <= E f" if sense > 0 else "E f <= max f"
    conditions = (f"{claim} for every centre: an average is never below the minimum nor above the maximum",)
    if opts["adapt"]:
        schedule = " initially, one per coordinate learned by SNES (log-scale parameters " + ", ".join(scales) + ")"
    else:
        schedule = f", decaying geometrically to {number(sigma_final)}" if sigma_final else ""
    chosen = "" if why == "as written" else f" ({why})"
    shaping = "SNES utilities" if opts["adapt"] else "centred-rank" if opts["shaping"] == "centered_rank" else "unshaped"
    note = (f"smooths over {', '.join(names)} with sigma = {number(sigma)}{chosen}{schedule}, population "
            f"{opts['population']}{' in antithetic pairs' if opts['antithetic'] else ''}, {shaping} fitness")
    optimizer = ("sgd", (("lr", 1.0),)) if opts["adapt"] else ("adam", (("lr", sigma / 2),))
    return Rewrite(new, "min<=" if sense > 0 else ">=", conditions, decls=decls, note=note,
                   training=(("optimizer", optimizer),),
                   roles=tuple((s, f"log of the search scale of {n}, learned (SNES)") for s, n in zip(scales, names)),
                   facts=(("params", names), ("sigma", sigma), ("sigma_final", sigma_final), ("sigma_source", why),
                          ("adapt", opts["adapt"]), ("population", opts["population"]),
                          ("antithetic", opts["antithetic"]), ("shaping", opts["shaping"]),
                          ("answers", found.nodes), ("pointwise", False)))


RULE = Rule(
    "evolution_strategy", problem="nondiff", matches=(ir.Node,), relation="min<=",
    identity="min_theta f(theta) <= E[theta' ~ Normal(theta, sigma^2 I)] f(theta')",
    match=match, build=build, options=OPTIONS,
    unmatched="every term of the objective has a useful gradient (no step, sign, round, floor, norm0 or Iverson "
              "bracket in the parameters)")
