"""The evolution-strategies rule family: an objective with no useful gradient is smoothed by
averaging it under a Gaussian search distribution around the parameters.

    evolution_strategy   min_θ f(θ)  <=  E[θ' ~ Normal(θ, σ² I)] f(θ')     for every θ

A minimum is at most an average, so minimising the smoothed objective over the mean θ
minimises an upper bound of min f (for a maximisation, max f >= E f: a lower bound,
maximised). Its gradient in θ is the score-function estimate (1/(Nσ)) Σ_i w_i ε_i over a
population θ_i = θ + σ ε_i drawn in antithetic pairs ±ε, with w_i the centred ranks of f(θ_i)
(fitness shaping, invariant to any increasing transformation of f; `shaping=none` uses
f(θ_i) - mean f, the unbiased estimate). The whole population is evaluated in one vmapped
call, with common random numbers for any randomness inside f. σ is fixed, or decays
geometrically to `sigma_final` over the training steps. The trained parameters are the mean θ.

The rule smooths a player's whole loss over the parameters its non-differentiable nodes
depend on; the other parameters keep their pathwise gradient. Without `via` it is taken when
some non-differentiable node has no convex surrogate (passes/relaxation.py).
"""
from __future__ import annotations

import math

import dataclasses
from dataclasses import dataclass

import numpy as np
import sympy as sp

from compiler import ir
from compiler.analysis.problems import depends_on, problems
from compiler.driver.check import Certificate, certificate
from compiler.backend.lower import RUNTIME_PARTS, Emitter, Fn, key_literal, lowers, num
from compiler.ir.diagnostics import AttractorError
from compiler.math.latex import latex
from compiler.rewrite.manager import RulePass
from compiler.rewrite.rule import Context, Rewrite, Step, legacy_rule
from compiler.ir.printer import number, show
from compiler.rewrite.building import fill_training, training_text
from passes.relaxation import forced_rival

DEFAULTS = {"sigma": 0.1, "population": 64, "antithetic": True, "shaping": "centered_rank", "sigma_final": 0.0}
SHAPINGS = ("centered_rank", "none")


@dataclass(frozen=True)
class Search(ir.Node):
    """Normal(θ, σ² I): the search distribution, centred at the current parameters θ."""

    params: tuple[ir.Node, ...]
    sigma: float

    def printed(self) -> tuple[str, int]:
        names = ", ".join(show(p) for p in self.params)
        centre = names if len(self.params) == 1 else f"({names})"
        return f"Normal({centre}, {number(self.sigma)}^2)", 5

    def latexed(self) -> str:
        return rf"\mathcal{{N}}\left({', '.join(latex(p) for p in self.params)};\, {number(self.sigma)}^2 I\right)"


@dataclass(frozen=True)
class Smoothed(ir.Expect):
    """E[θ' ~ Normal(θ, σ² I)] f(θ') with the evolution-strategies gradient in θ.

    `binder` names the perturbed parameters θ', `source` is a `Search`, `samples` the
    population; σ decays geometrically to `sigma_final` over training when it is positive.
    """

    antithetic: bool = True
    shaping: str = "centered_rank"
    sigma_final: float = 0.0


# ---- options --------------------------------------------------------------------------------

def _flag(value, loc) -> bool:
    if value in (True, 1.0, "true", "True", "yes"):
        return True
    if value in (False, 0.0, "false", "False", "no"):
        return False
    raise AttractorError(f"evolution_strategy: antithetic must be true or false, got {value}", loc)


def options(ctx: Context) -> dict:
    """The rule's options, validated: sigma > 0, an integer population ≥ 2 (even under
    antithetic sampling), a known shaping, 0 < sigma_final when given."""
    via = ctx.program.objective.via
    loc = via.loc if via is not None else ctx.program.objective.loc
    opts = {**DEFAULTS, **ctx.options}
    sigma, final, pop = opts["sigma"], opts["sigma_final"], opts["population"]
    if not isinstance(sigma, float) or not 0 < sigma < math.inf:
        raise AttractorError(f"evolution_strategy: sigma must be a positive finite number, got {sigma}", loc)
    if "sigma_final" in ctx.options and (not isinstance(final, float) or not 0 < final < math.inf):
        raise AttractorError(f"evolution_strategy: sigma_final must be a positive number, got {final}", loc)
    if not isinstance(pop, (int, float)) or isinstance(pop, bool) or pop != int(pop) or pop < 2:
        raise AttractorError(f"evolution_strategy: population must be an integer of at least 2, got {pop}", loc)
    antithetic = _flag(opts["antithetic"], loc)
    if antithetic and int(pop) % 2:
        raise AttractorError(f"evolution_strategy: population must be even with antithetic sampling (pairs θ ± σε), "
                             f"got {int(pop)}; use {int(pop) + 1} or antithetic=false", loc)
    if opts["shaping"] not in SHAPINGS:
        raise AttractorError(f"evolution_strategy: unknown shaping '{opts['shaping']}'; shapings are {', '.join(SHAPINGS)}", loc)
    return {"sigma": sigma, "population": int(pop), "antithetic": antithetic, "shaping": opts["shaping"],
            "sigma_final": float(final)}


# ---- the rule ---------------------------------------------------------------------------------

def _smoothed_params(found: list[ir.Node], ctx: Context) -> tuple[str, ...]:
    """The learnables the non-differentiable nodes depend on, in declaration order."""
    program = ctx.program
    names = tuple(n for n in program.learnable() if any(depends_on(f, program, {n}) for f in found))
    for n in names:
        if isinstance(program.decl(n), ir.Net):
            node = next(f for f in found if depends_on(f, program, {n}))
            raise AttractorError(f"evolution_strategy smooths declared parameters (param); {show(node)} depends on "
                                 f"net '{n}', whose weights it does not perturb", node.loc)
    return names


def evolution_strategy(node: ir.Node, ctx: Context) -> Rewrite | None:
    """min_θ f(θ)  <=  E[θ' ~ Normal(θ, σ² I)] f(θ') for every θ: the loss, smoothed over the
    parameters its non-differentiable nodes depend on (relation <=; >= for a maximisation,
    where the average is at most the maximum). Matches a player's whole loss."""
    if ctx.path is not None or isinstance(node, Smoothed) or ctx.program.objective.sense == "estimate":
        return None
    found = [p.node for p in problems(ctx.program, node) if p.kind == "nondiff"]
    if not found:
        return None
    opts = options(ctx)
    names = _smoothed_params(found, ctx)
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
    return Rewrite(new, "<=" if sense > 0 else ">=", conditions, note=note)


EVOLUTION_STRATEGY = legacy_rule("evolution_strategy", "nondiff", evolution_strategy, tuple(DEFAULTS))


class EvolutionPass(RulePass):
    """evolution_strategy, unless `via` forces a rival rule (a relaxation)."""

    def accepts(self, program: ir.Program, plan) -> bool:
        via = plan.via
        return not forced_rival(via, self.rules)

    def apply(self, program: ir.Program, plan) -> tuple[ir.Program, list[Step]]:
        via = plan.via
        from passes.relaxation import PASSES as RELAXATION
        left = RELAXATION[0].covers(program)
        program, steps = super().apply(program, plan)
        if via is not None and via.name == EVOLUTION_STRATEGY.name:
            if not steps:
                raise AttractorError("rule evolution_strategy does not apply: every term of the objective has a useful "
                                     "gradient (no step, sign, round, floor, norm0 or Iverson bracket in the parameters)", via.loc)
            why = "forced by 'via'"
        else:
            why = f"evolution strategies chosen: no convex surrogate keeps the bound for {', '.join(show(n) for n in left)}"
        steps = [dataclasses.replace(s, note=f"{s.note}; {why}") for s in steps]
        if steps:
            program, steps[-1] = _training_defaults(program, steps[-1])
        return program, steps


def _training_defaults(program: ir.Program, step: Step) -> tuple[ir.Program, Step]:
    """Where the train line names no optimizer: Adam with step sigma/2 (Adam moves each
    coordinate about one step size per update, so the centre moves a fraction of the search
    scale), the largest sigma of the program's searches."""
    sigma = max(n.source.sigma for pl in program.players for n in pl.loss.walk() if isinstance(n, Smoothed))
    defaults = (("optimizer", ("adam", (("lr", sigma / 2),))),)
    note = training_text(program.train, defaults)
    return (dataclasses.replace(program, train=fill_training(program.train, defaults)),
            dataclasses.replace(step, note=step.note + note))


PASSES: tuple = (EvolutionPass("evolution", (EVOLUTION_STRATEGY,), "evolution"),)


# ---- lowering ---------------------------------------------------------------------------------

RUNTIME_PARTS["evolution_strategy"] = '''
def es_sigma(sigma, final, batch):
    """The search scale: sigma, or geometric from sigma to final over the steps of the run
    (the final value when no step is known, as when evaluating)."""
    if final <= 0.0:
        return sigma
    if "#step" not in batch:
        return final
    frac = jnp.clip(batch["#step"] / jnp.maximum(batch["#total"] - 1, 1), 0.0, 1.0)
    return sigma * (final / sigma) ** frac


def centered_ranks(values):
    """Ranks of `values` scaled to [-0.5, 0.5]; tied values share their mean rank."""
    below = jnp.sum(values[None, :] < values[:, None], axis=1)
    ties = jnp.sum(values[None, :] == values[:, None], axis=1)
    return (below + 0.5 * (ties - 1)) / (values.shape[0] - 1) - 0.5


def es_smooth(fitness, params, names, key, fitness_key, sigma, population, antithetic, shaping):
    """E[theta ~ Normal(mu, sigma^2 I)] fitness(theta) over the parameters `names`, mu their values.

    Value: the population average, a Monte Carlo estimate of the smoothed objective.
    Gradient in mu: the evolution-strategies estimate (1 / (N sigma)) sum_i w_i eps_i, with
    theta_i = mu + sigma eps_i (antithetic pairs +-eps, one flat draw over all of `names`) and
    w_i the centred ranks of fitness(theta_i) ("none": fitness(theta_i) - mean); the population
    is evaluated in one vmapped call with common random numbers. Other parameters get the
    pathwise gradient.
    """
    shapes = [jnp.shape(params[k]) for k in names]
    cuts = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    flat = lambda tree: jnp.concatenate([jnp.ravel(tree[k]) for k in names])  # noqa: E731
    unravel = lambda v: {k: p.reshape(s) for k, p, s in zip(names, jnp.split(v, cuts), shapes)}  # noqa: E731
    mu = jax.lax.stop_gradient(flat(params))
    half = population // 2 if antithetic else population
    eps = jax.random.normal(key, (half, mu.shape[0]))
    if antithetic:
        eps = jnp.concatenate([eps, -eps])

    def one(e):
        return fitness({**params, **unravel(mu + sigma * e)}, fitness_key)

    values = jax.vmap(one)(eps)
    fixed = jax.lax.stop_gradient(values)
    weights = centered_ranks(fixed) if shaping == "centered_rank" else fixed - jnp.mean(fixed)
    grad = jax.lax.stop_gradient(weights @ eps / (population * sigma))
    return jnp.mean(values) + jnp.sum(grad * (flat(params) - mu))
'''


@lowers(Smoothed)
def _smoothed(em: Emitter, node: Smoothed, fn: Fn) -> str:
    """The body becomes `fitness(params, key)` evaluated at perturbed parameters (its
    `params` shadows the loss's), handed to the runtime's `es_smooth`."""
    names = [p.name for p in node.source.params]
    inner = fn.child({b: f"params[{key_literal(n)}]" for b, n in zip(node.binder, names)}, "key", params="params")
    inner.emit(f"return {em.lower(node.body, inner)}")
    fitness = em.fresh("fitness")
    fn.emit(f"def {fitness}(params, key):")
    fn.lines.extend(inner.body())
    sigma = f"es_sigma({num(node.source.sigma)}, {num(node.sigma_final)}, batch)"
    names_code = "(" + "".join(f"{key_literal(n)}, " for n in names) + ")"
    shaping = SHAPINGS[SHAPINGS.index(node.shaping)]
    return (f"es_smooth({fitness}, {fn.params}, {names_code}, {fn.subkey()}, {fn.subkey()}, {sigma}, "
            f"{int(node.samples)}, {bool(node.antithetic)}, \"{shaping}\")")


# ---- certificates ------------------------------------------------------------------------------

def smoothed_test_function(d: int) -> tuple[sp.Expr, list[sp.Symbol], sp.Expr]:
    """A smooth test function f(θ) = Σ cos θ_i + θ_i²/2 + θ_i/2 of d variables and its Gaussian
    smoothing E f(μ + σε), integrated by SymPy (in μ and σ)."""
    theta = sp.symbols(f"theta0:{d}", real=True)
    mu = sp.symbols(f"mu0:{d}", real=True)
    sigma, e = sp.Symbol("sigma", positive=True), sp.Symbol("e", real=True)
    term = lambda x: sp.cos(x) + x ** 2 / 2 + x / 2  # noqa: E731
    density = sp.exp(-e ** 2 / 2) / sp.sqrt(2 * sp.pi)
    m = sp.Symbol("m", real=True)
    parts = sp.Add.make_args(sp.expand(sp.expand_trig(term(m + sigma * e))))   # integrated term by term
    smooth_one = sp.simplify(sum(sp.integrate(p * density, (e, -sp.oo, sp.oo)) for p in parts))
    smoothed = sum(smooth_one.subs(m, mi) for mi in mu)
    return sum(term(t) for t in theta), list(mu) + [sigma], smoothed


def _es_gradients(mod, fitness, mu, sigma, population, antithetic, shaping, repeats, seed):
    """`repeats` independent ES gradient estimates at mu from the emitted `es_smooth`."""
    import jax

    def grad(key):
        k1, k2 = jax.random.split(key)
        loss = lambda p: mod.es_smooth(fitness, p, ("theta",), k1, k2, sigma, population, antithetic, shaping)  # noqa: E731
        return jax.grad(loss)({"theta": mu})["theta"]
    return np.asarray(jax.jit(jax.vmap(grad))(jax.random.split(jax.random.PRNGKey(seed), repeats)), float)


@certificate("evolution_strategy")
def certify_evolution_strategy(prog, step, seed: int) -> list[Certificate]:
    """On the program: at random centres, the minimum of f over the sampled points is below the
    smoothed objective's confidence interval (min f <= E f). On a smooth test function whose
    smoothing SymPy integrates: the emitted estimator with the program's σ, population and
    antithetic pairs, unshaped, matches the exact gradient of the smoothed objective within
    4 standard errors; with centred ranks it points the same way (cosine > 0.9)."""
    import jax
    import jax.numpy as jnp
    from passes.relaxation import loss_module, step_losses
    node = next(n for n in step.node.walk() if isinstance(n, Smoothed))
    sigma, population, antithetic = node.source.sigma, node.samples, node.antithetic
    out = []
    losses = step_losses(prog, step)
    if losses is not None:
        mod, data = loss_module(prog, losses[0]), prog.load_data()
        batch, key = mod.full_batch(data), jax.random.PRNGKey(seed)
        rng = np.random.default_rng(seed)
        base = mod.init(key)
        names = [p.name for p in node.source.params]
        rows = []
        for _ in range(3):
            centre = {k: v + rng.normal(0, 0.5, np.shape(v)).astype(np.float32) if k in names else v for k, v in base.items()}
            draws = {k: jnp.asarray(np.asarray(v)[None] + sigma * rng.normal(size=(512,) + np.shape(v)), jnp.float32) if k in names else v
                     for k, v in centre.items()}
            values = np.asarray(jax.vmap(lambda p: mod.LOSSES[prog.program.players[0].name](p, key, batch),
                                         in_axes=({k: 0 if k in names else None for k in draws},))(draws), float)
            rows.append((values.min(), values.mean(), values.std(ddof=1) / np.sqrt(len(values))))
        out.append(Certificate("evolution_strategy", "min f <= E[theta ~ Normal(mu, sigma^2)] f(theta), at 3 random centres (512 draws each)",
                               "; ".join(f"min {m:.4g} <= mean {a:.4g} +- {4 * s:.2g}" for m, a, s in rows),
                               all(m <= a + 4 * s for m, a, s in rows)))
    d = 4
    f, symbols, smoothed = smoothed_test_function(d)
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-1.5, 1.5, d)
    at = {**dict(zip(symbols[:-1], mu)), symbols[-1]: sigma}
    exact = np.array([float(sp.diff(smoothed, m).subs(at)) for m in symbols[:-1]])
    theta = sp.symbols(f"theta0:{d}", real=True)
    code = sp.lambdify([theta], f, "jax")
    fitness = lambda p, key: code(list(p["theta"]))  # noqa: E731
    mod = prog.build()
    mu_j = jnp.asarray(mu, jnp.float32)
    raw = _es_gradients(mod, fitness, mu_j, sigma, population, antithetic, "none", 2000, seed)
    mean, se = raw.mean(0), raw.std(0, ddof=1) / np.sqrt(len(raw))
    out.append(Certificate("evolution_strategy", f"E[ES gradient] = grad E f(mu + sigma eps) on a smooth test function "
                           f"(sigma {number(sigma)}, population {population}, unshaped, 2000 repeats)",
                           f"exact {np.round(exact, 4).tolist()}, estimate {np.round(mean, 4).tolist()} +- {np.round(4 * se, 4).tolist()}",
                           bool(np.all(np.abs(mean - exact) <= 4 * se + 1e-4))))
    ranked = _es_gradients(mod, fitness, mu_j, sigma, population, antithetic, node.shaping, 200, seed + 1).mean(0)
    cosine = float(ranked @ exact / (np.linalg.norm(ranked) * np.linalg.norm(exact)))
    out.append(Certificate("evolution_strategy", f"the {node.shaping} estimate points along the exact gradient (200 repeats)",
                           f"cosine {cosine:.4f}", cosine > 0.9))
    return out
