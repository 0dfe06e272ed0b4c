"""The adversarial rule family: divergences that only samples can reach become games.

Each rule replaces a divergence between distributions known through samples (the data, a
sampler, a model that can be drawn from) or through an unnormalised density by an expression
whose gradients can be estimated from samples. Where a density ratio is missing, an auxiliary
player is introduced whose Bayes-optimal answer is that ratio, and the rewrite is a game:

* `classifier_ratio`: JS(P, Q) = ½(log 4 + max_D E_P log D + E_Q log(1 − D)), D* = p/(p + q),
  with a discriminator D = σ(V) (logit V; V* = log p/q); option `nonsaturating`.
* `conjugate`: D_f(P‖Q) = sup_T E_P[T] − E_Q[f*(T)], T* = f'(p/q); f*, dom f* and the critic
  activation T = g_f(V) are derived by SymPy from the generator f (compiler.math.convex).
* `denoising_score`: Fisher(data‖p) for a model with a density in x (explicit or Gibbs):
  Hyvärinen's E_data[½‖∇log p‖² + Δ log p] (= up to a constant), or denoising score matching
  E[½‖∇log p(x + σε) + ε/σ‖²] = Fisher(data ∗ N(0, σ²)‖p) + constant (Vincent 2011).

Draws from a sampler or model are paired with the data: `E[x ~ data] E[x ~ g] h(x)` takes one
draw of g per data example, so a minibatch sets the number of draws per step and the objective
on the whole data set averages as many draws as there are examples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import sympy as sp

from compiler import ir
from compiler.analysis.problems import block_latents, depends_on
from compiler.backend.lower import Emitter, Fn, ident, lowers, needs_key
from compiler.ir.builtins import NET_ACTIVATIONS, RESERVED
from compiler.driver.check import Certificate, certificate
from compiler.math.convex import T as TSYM
from compiler.math.convex import U, V, ConvexityError, check_generator, derive_conjugate, named_generator
from compiler.ir.diagnostics import AttractorError
from compiler.math.latex import latex
from compiler.rewrite.manager import RulePass
from compiler.rewrite.rule import Context, Rewrite, legacy_rule
from compiler.ir.printer import show
from compiler.math.symbolic import NotScalar, to_sympy

CLASSIFIER_KINDS = ("JS", "GAN")       # divergences a Bayes-optimal classifier gives
HIDDEN = 128                           # hidden width of an introduced critic net (option hidden=)
# Hidden activation of an introduced critic net (option act=), per rule: measured in
# bench/adversarial_*.py, a relu discriminator covers the ring's modes best, while a tanh critic,
# whose slope in x is smooth and bounded, keeps the pathwise gradients through f*(g_f(V(x)))
# steady (hellinger_fit: every seed within 0.03 of the target, relu: one seed in four stalls).
CRITIC_ACT = {"classifier_ratio": "relu", "conjugate": "tanh"}
SIGMA = 0.1                            # noise scale of denoising score matching (option sigma=)
DISCRETE = ("Bernoulli", "Categorical")


# ---- node types this family introduces ---------------------------------------------------------

@dataclass(frozen=True)
class Grad(ir.Node):
    """∇_var expr: the gradient of the scalar `expr` in the bound variable `var`, at its value
    (the score ∇_x log p(x) when `expr` is a log density)."""

    expr: ir.Node
    var: str

    def printed(self) -> tuple[str, int]:
        return f"grad_{self.var}({show(self.expr)})", 5

    def latexed(self) -> str:
        return rf"\nabla_{{{self.var}}} {latex(self.expr)}"


@dataclass(frozen=True)
class Laplacian(ir.Node):
    """Δ_var expr = tr ∇²_var expr, at the value of the bound variable `var`."""

    expr: ir.Node
    var: str

    def printed(self) -> tuple[str, int]:
        return f"laplacian_{self.var}({show(self.expr)})", 5

    def latexed(self) -> str:
        return rf"\Delta_{{{self.var}}} {latex(self.expr)}"


def _function_of(em: Emitter, node: Grad | Laplacian, fn: Fn) -> tuple[str, str]:
    """Emit `def f(at): return expr[var := at]`; return (f, the current value of var)."""
    if needs_key(node.expr):
        raise AttractorError(f"cannot differentiate {show(node.expr)} in {node.var}: it draws random numbers", node.loc)
    at = em.lower(ir.Ref(node.var), fn)
    name, arg = em.fresh("of_" + ident(node.var)), em.fresh(ident(node.var) + "_")
    inner = fn.child({node.var: arg}, None)
    inner.emit(f"return {em.lower(node.expr, inner)}")
    fn.emit(f"def {name}({arg}):")
    fn.lines.extend(inner.body())
    return name, fn.tmp(at, ident(node.var) + "_")


@lowers(Grad)
def _lower_grad(em: Emitter, node: Grad, fn: Fn) -> str:
    f, at = _function_of(em, node, fn)
    return f"jax.grad({f})({at})"


@lowers(Laplacian)
def _lower_laplacian(em: Emitter, node: Laplacian, fn: Fn) -> str:
    f, at = _function_of(em, node, fn)
    return f"jnp.trace(jnp.reshape(jax.hessian({f})({at}), (jnp.size({at}), jnp.size({at}))))"


# ---- helpers ---------------------------------------------------------------------------------------

def _add(*terms: ir.Node) -> ir.Node:
    """t1 + t2 + ..., a negated term written as a subtraction."""
    out = terms[0]
    for t in terms[1:]:
        negated = isinstance(t, ir.Apply) and t.fn == "neg"
        out = ir.Apply("sub", (out, t.args[0])) if negated else ir.Apply("add", (out, t))
    return out


def _fresh(program: ir.Program, base: str) -> str:
    """A name no declaration, block line, data variable or player uses."""
    taken = set(RESERVED) | {p.name for p in program.players} | {n for n, _ in program.data_vars}
    for d in program.decls:
        taken.add(getattr(d, "name", ""))
        if isinstance(d, ir.Block):
            taken |= {line.name for line in d.lines}
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}{i}"
    return name


def _side_name(side: ir.Node) -> str:
    return "data" if isinstance(side, ir.DataSet) else side.name


def _shared(program: ir.Program, node: ir.Divergence) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """The data variables both sides of the divergence produce, and their shapes."""
    def makes(side, v):
        return isinstance(side, ir.DataSet) or program.decl(side.name).line(v) is not None
    shared = tuple((v, s) for v, s in program.data_vars if makes(node.p, v) and makes(node.q, v))
    return tuple(v for v, _ in shared), tuple(s for _, s in shared)


def _sampleable(program: ir.Program, side: ir.Node, rule: str, divergence: ir.Divergence) -> None:
    """Refuse a side the rule cannot draw from: a Gibbs model or a conditional guide."""
    if isinstance(side, ir.DataSet):
        return
    block = program.decl(side.name)
    gibbs = next((l for l in block.lines if isinstance(l, ir.Tilde) and l.dist.family == "Gibbs"), None)
    if gibbs is not None:
        raise AttractorError(
            f"{rule} needs samples of both sides of {show(divergence)}, but {block.kind} {block.name} is a "
            f"Gibbs (unnormalised) model, which cannot be sampled", side.loc or divergence.loc)
    if block.given:
        raise AttractorError(
            f"{rule} needs samples of both sides of {show(divergence)}, but guide {block.name} is conditioned "
            f"on {', '.join(block.given)}: it has no samples of its own", side.loc or divergence.loc)


def _expect(side: ir.Node, binder: tuple[str, ...], body) -> ir.Node:
    """E over one side of `body(kind)`: the data, or one draw of a block per data example."""
    if isinstance(side, ir.DataSet):
        return ir.Expect(binder, ir.DataSet(), body("data"))
    draw = ir.Expect(binder, ir.Sample(side.name, binder), body("latent"))
    return ir.Expect(binder, ir.DataSet(), draw)


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


def _critic(program: ir.Program, binder, shapes, options: dict, base: str, divergence: ir.Divergence, rule: str) -> Critic:
    """A scalar critic V(x) of the shared variables: `mlp(d, H, H, 1; act=A)` owned by a new
    player (options hidden=H, act=A), or with `critic=linear` a bias-free linear function ψ·x."""
    kind = options.get("critic", "mlp")
    if kind not in ("mlp", "linear"):
        raise AttractorError(f"{rule}: critic must be mlp or linear, not {kind}", divergence.loc)
    wide = next((v for v, s in zip(binder, shapes) if len(s) > 1), None)
    if wide is not None:
        raise AttractorError(f"{rule}: the critic takes vectors, but '{wide}' has shape {shapes[binder.index(wide)]}", divergence.loc)
    player = _fresh(program, base)
    if kind == "linear":
        names = [_fresh(program, "psi" if len(binder) == 1 else f"psi_{v}") for v in binder]
        decls = tuple(ir.Param(n, s, owner=player) for n, s in zip(names, shapes))

        def linear(k):
            return _add(*(ir.Apply("dot" if s else "mul", (ir.Ref(n, "param"), ir.Ref(v, k)))
                          for n, v, s in zip(names, binder, shapes)))
        return Critic(player, decls, tuple(names), linear)
    hidden = options.get("hidden", HIDDEN)
    if not (isinstance(hidden, float | int) and hidden >= 1 and float(hidden).is_integer()):
        raise AttractorError(f"{rule}: hidden must be a positive integer width, not {hidden}", divergence.loc)
    act = options.get("act", CRITIC_ACT[rule])
    if act not in NET_ACTIVATIONS:
        raise AttractorError(f"{rule}: act must be one of {', '.join(NET_ACTIVATIONS)}, not {act}", divergence.loc)
    width = sum(math.prod(s) for s in shapes)
    net = ir.Net(player, (width, int(hidden), int(hidden), 1), act, owner=player)
    return Critic(player, (net,), (player,), lambda k: ir.NetCall(player, tuple(ir.Ref(v, k) for v in binder)))


def _sides(node: ir.Divergence, ctx: Context, rule: str):
    """The shared variables, their shapes, after checking that both sides can be drawn from."""
    for side in (node.p, node.q):
        _sampleable(ctx.program, side, rule, node)
    return _shared(ctx.program, node)


def _moves(side: ir.Node, binder, ctx: Context) -> bool:
    """Does this side's law depend on the parameters of the player whose loss holds it?"""
    if isinstance(side, ir.DataSet):
        return False
    return depends_on(ir.Sample(side.name, binder), ctx.program, set(ctx.player.params))


def _pairing_note(node: ir.Divergence) -> str:
    blocks = [s.name for s in (node.p, node.q) if not isinstance(s, ir.DataSet)]
    return (f"draws of {' and '.join(blocks)} are paired with data examples (E[x ~ data] E[x ~ {blocks[0]}]: one draw per example)"
            if blocks else "")


# ---- classifier_ratio --------------------------------------------------------------------------------

P_, Q_, D_ = sp.symbols("p q D", positive=True)


@lru_cache(maxsize=None)
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
            "at D*: (p + q) log 2 + p log D* + q log(1 - D*) = p log(p/M) + q log(q/M), M = (p + q)/2, "
            "so 1/2 (log 4 + E_P log D* + E_Q log(1 - D*)) = JS(P, Q)",
            "D = sigmoid(V): log D = log_sigmoid(V), log(1 - D) = log_sigmoid(-V); optimal logit V* = log(p/q)")


def classifier_ratio(node: ir.Node, ctx: Context) -> Rewrite | None:
    """JS(P, Q) = ½(log 4 + max_D E_P log D + E_Q log(1 − D)), D = σ(V_ψ); GAN = 2 JS − log 4
    is the same game without the affine map.

    Relation `>=` for every discriminator (the original is at least the rewritten), `=` at the
    Bayes-optimal D* = p/(p + q); the discriminator is a new player maximising the bound, so the
    rewrite is a game. Option `nonsaturating`: the generator instead minimises −E_Q log D on
    each side it moves (−E_P log(1 − D) for P), a general-sum game with the same fixed point
    D = ½, P = Q; relation `~` for its loss. Options `critic=mlp|linear`, `hidden=H`, `act=A`.
    """
    if not isinstance(node, ir.Divergence):
        return None
    if node.kind not in CLASSIFIER_KINDS:
        if ctx.forced:
            raise AttractorError(f"classifier_ratio gives JS and GAN divergences, not {node.kind}; "
                                 f"{'denoising_score' if node.kind == 'Fisher' else 'conjugate'} handles {node.kind}", node.loc)
        return None
    binder, shapes = _sides(node, ctx, "classifier_ratio")
    critic = _critic(ctx.program, binder, shapes, ctx.options, "disc", node, "classifier_ratio")

    def log_d(side, sign):
        return _expect(side, binder, lambda k: ir.Apply("log_sigmoid", (critic(k) if sign > 0 else ir.Apply("neg", (critic(k),)),)))

    def scaled(*terms):
        return ir.Apply("mul", (ir.Num(0.5), _add(ir.Apply("log", (ir.Num(4),)), *terms))) if node.kind == "JS" else _add(*terms)

    bound = scaled(log_d(node.p, +1), log_d(node.q, -1))
    relation, loss = ">=", bound
    conditions = (f"P = {_side_name(node.p)}, Q = {_side_name(node.q)}: both can be sampled",) + classifier_identity()
    if node.kind == "GAN":
        conditions += ("GAN(P || Q) = 2 JS(P, Q) - log 4 = max_D E_P log D + E_Q log(1 - D)",)
    note = f"discriminator D = sigmoid({critic.describe()}); player {critic.player} maximises the bound"
    if ctx.option("nonsaturating"):
        moved = [(_moves(node.p, binder, ctx), node.p, -1), (_moves(node.q, binder, ctx), node.q, +1)]
        if any(m for m, _, _ in moved):
            terms = [ir.Apply("neg", (log_d(side, sign),)) if m else log_d(side, -sign) for m, side, sign in moved]
            loss, relation = ir.Surrogate(scaled(*terms), critic.player), "~"
            conditions += ("nonsaturating: the generator minimises -E_Q log D (and -E_P log(1 - D) where it moves P) instead of "
                           "E_Q log(1 - D): the same stationary point P = Q, D = 1/2, with strong gradients where D rejects its samples",)
            note += f"; nonsaturating generator loss: a general-sum game, the discriminator keeps the {node.kind} bound"
    pairing = _pairing_note(node)
    note += f"; {pairing}" if pairing else ""
    player = ir.Player(critic.player, critic.params, "max", bound)
    return Rewrite(loss, relation, conditions, critic.decls, (player,), game=True, note=note)


# ---- conjugate ---------------------------------------------------------------------------------------------

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
        raise AttractorError(f"divergence {d.name}: the generator f({d.var}) = {show(d.body)} must depend on {d.var} only, "
                             f"but it uses {', '.join(extra)}", d.loc)
    return f, d


def _interval(lo, hi, lo_closed, hi_closed) -> str:
    return f"{'[' if lo_closed else '('}{lo}, {hi}{']' if hi_closed else ')'}"


def conjugate_parts(program: ir.Program, node: ir.Divergence):
    """(Conjugate, side conditions) of the divergence, or an AttractorError at its definition."""
    f, where = generator_of(program, node)
    try:
        checks = ["f(1) = -log(4): GAN(P || Q) = 2 JS(P, Q) - log 4"] if node.kind == "GAN" else check_generator(f)
        c = derive_conjugate(f)
    except ConvexityError as e:
        raise AttractorError(f"divergence {node.kind} is not an f-divergence conjugate can rewrite: {e}", where.loc or node.loc) from None
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


def conjugate(node: ir.Node, ctx: Context) -> Rewrite | None:
    """D_f(P‖Q) = E_Q f(p/q) = sup_T E_P[T] − E_Q[f*(T)] (Nguyen, Wainwright & Jordan 2010),
    T = g_f(V_ψ) with the activation g_f mapping ℝ onto dom f*; f*, dom f*, g_f and f*∘g_f
    are derived by SymPy from f (a builtin generator or the user's `divergence name(u) = ...`).

    Relation `>=` for every critic (Fenchel–Young), `=` at T* = f'(p/q); the critic is a new
    player maximising the bound (a game). f must be convex on u > 0 with f(1) = 0 (GAN:
    2 JS − log 4, f(1) = −log 4), else the rule refuses at the divergence's definition.
    Options `critic=mlp|linear`, `hidden=H`, `act=A`; `nonsaturating`: a sampler Q minimises
    −E_Q[T] instead of −E_Q[f*(T)], a general-sum game with the same fixed point, relation `~`.
    """
    if not isinstance(node, ir.Divergence):
        return None
    if node.kind == "Fisher":
        if ctx.forced:
            raise AttractorError("Fisher is not an f-divergence: denoising_score handles it", node.loc)
        return None
    c, conditions = conjugate_parts(ctx.program, node)
    binder, shapes = _sides(node, ctx, "conjugate")
    critic = _critic(ctx.program, binder, shapes, ctx.options, "critic", node, "conjugate")
    name = node.kind

    def closed_form(label, expr):
        return lambda k: ir.Sym(label, sp.srepr(expr), (str(V),), (critic(k),))

    bound = ir.Apply("sub", (_expect(node.p, binder, closed_form(f"T_{name}", c.activation)),
                             _expect(node.q, binder, closed_form(f"fstarT_{name}", c.fstar_of_activation))))
    conditions = (f"P = {_side_name(node.p)}, Q = {_side_name(node.q)}: both can be sampled",) + conditions
    note = (f"critic T = T_{name}({critic.describe()}); player {critic.player} maximises the bound, "
            f"tight at T*(x) = f'(p(x)/q(x)), f'(u) = {c.critic_of_ratio}")
    if c.optimal_output is not None:
        note += f", i.e. at {critic.describe()} = {c.optimal_output.subs(U, sp.Symbol('p(x)/q(x)'))}"
    loss, relation = bound, ">="
    if ctx.option("nonsaturating"):
        if _moves(node.p, binder, ctx):
            raise AttractorError(f"conjugate(nonsaturating) changes the loss of a sampler on the right of {name}(P || Q); "
                                 f"here P = {_side_name(node.p)} moves", node.loc)
        if _moves(node.q, binder, ctx):
            loss, relation = ir.Surrogate(ir.Apply("neg", (_expect(node.q, binder, closed_form(f"T_{name}", c.activation)),)), critic.player), "~"
            conditions += ("nonsaturating: the generator minimises -E_Q[T] instead of -E_Q[f*(T)] (f-GAN, Nowozin et al. "
                           "2016, sec. 3.2): both are stationary where T is constant on Q's support, as at P = Q, and "
                           "-E_Q[T] keeps its gradient where the critic rejects Q's samples and f*(T) is flat",)
            note += f"; nonsaturating generator loss: a general-sum game, the critic keeps the {name} bound"
    pairing = _pairing_note(node)
    note += f"; {pairing}" if pairing else ""
    player = ir.Player(critic.player, critic.params, "max", bound)
    return Rewrite(loss, relation, conditions, critic.decls, (player,), game=True, note=note)


# ---- denoising_score ------------------------------------------------------------------------------------

def _score_model(node: ir.Divergence, ctx: Context) -> ir.Block:
    """The model p of Fisher(data || p), checked: its density in the data is differentiable."""
    program = ctx.program
    if not isinstance(node.p, ir.DataSet):
        raise AttractorError(f"denoising_score rewrites Fisher(data || p): the first side must be the data, not {_side_name(node.p)}",
                             node.p.loc or node.loc)
    block = program.decl(_side_name(node.q))
    if block.kind != "model":
        raise AttractorError(f"Fisher(data || {block.name}) needs the score of {block.name}, but {block.kind} {block.name} "
                             "has no density", node.q.loc or node.loc)
    latents = block_latents(program, block)
    if latents:
        raise AttractorError(f"the score of model {block.name} is an integral over its latent {', '.join(latents)}: "
                             "denoising_score needs a model with a density in the data alone", node.q.loc or node.loc)
    for line in block.lines:
        if isinstance(line, ir.Tilde) and line.dist.family in DISCRETE:
            raise AttractorError(f"Fisher(data || {block.name}) differentiates log {block.name} in {line.name}, "
                                 f"but {line.name} ~ {line.dist.family} is discrete", line.loc or node.loc)
    return block


def _relu_nets(program: ir.Program, block: ir.Block) -> list[str]:
    nets = set()
    for line in block.lines:
        for n in line.walk():
            if isinstance(n, ir.NetCall):
                nets.add(n.net)
            if isinstance(n, ir.Ref) and n.kind == "net":
                nets.add(n.name)
    return sorted(n for n in nets if program.decl(n).act == "relu")


def _explicit_smooth(block: ir.Block) -> bool:
    """A closed-form log density, smooth on the whole space: Normal lines, no net, no kink."""
    from compiler.backend.defaults import KINKED
    return (all(l.dist.family == "Normal" for l in block.lines if isinstance(l, ir.Tilde))
            and not any(isinstance(n, ir.NetCall) or isinstance(n, ir.Apply) and n.fn in KINKED
                        for l in block.lines for n in l.walk()))


def denoising_score(node: ir.Node, ctx: Context) -> Rewrite | None:
    """Fisher(data‖p) = E_data ½‖∇log p_data − ∇log p‖² without the data's score.

    Hyvärinen's form (option `hyvarinen`; the default for an explicit model whose log
    density is smooth in closed form: Normal lines, no net):
    E_data[½‖∇log p‖² + Δ log p] = Fisher(data‖p) − ½E_data‖∇log p_data‖², relation `=` up
    to that constant (integration by parts; p_data ∇log p → 0 at infinity).
    Denoising score matching (Vincent 2011; the default otherwise, e.g. a Gibbs(energy) net;
    option `denoising` or sigma=σ): with x̃ = x + σε, ε ~ N(0, I),
    E ½‖∇log p(x̃) + ε/σ‖² = Fisher(data ∗ N(0, σ²I)‖p) + C: the Bayes-optimal score of the
    denoising task is the smoothed data score; relation `~` (exact for the data smoothed at
    scale σ, tending to Fisher(data‖p) as σ → 0).
    Either way the normaliser of p never appears: Gibbs(energy) models fit as they are.
    """
    if not isinstance(node, ir.Divergence) or node.kind != "Fisher":
        return None
    block = _score_model(node, ctx)
    binder, shapes = _shared(ctx.program, node)
    log_p = ir.Apply("log", (ir.Density(block.name, binder),))
    scope = f"model {block.name}: log {block.name}({', '.join(binder)}) has no latent; its normaliser does not depend on {', '.join(binder)}"
    denoise = ctx.option("denoising") or ctx.option("sigma") is not None
    if ctx.option("hyvarinen") and denoise:
        raise AttractorError("denoising_score: choose hyvarinen or denoising (sigma=...), not both", node.loc)
    if ctx.option("hyvarinen") or not denoise and _explicit_smooth(block):
        relu = _relu_nets(ctx.program, block)
        if relu:
            raise AttractorError(f"Hyvarinen's form needs the Laplacian of log {block.name}, which is zero almost everywhere "
                                 f"for the relu net {relu[0]}: use denoising score matching (the default)", node.loc)
        body = _add(*(_add(ir.Apply("mul", (ir.Num(0.5), ir.Apply("sumsq", (Grad(log_p, v),)))), Laplacian(log_p, v))
                      for v in binder))
        return Rewrite(ir.Expect(binder, ir.DataSet(), body), "=",
                       (scope, "Hyvarinen (2005), integration by parts: E_data <grad log p_data, grad log p> = -E_data laplacian log p "
                               "when p_data grad log p -> 0 at infinity",
                        "Fisher(data || p) = E_data[1/2 |grad log p|^2 + laplacian log p] + 1/2 E_data |grad log p_data|^2"),
                       note="Hyvarinen's score matching, exact: equal up to the constant 1/2 E_data |grad log p_data|^2, "
                            "which no parameter moves" + ("" if ctx.option("hyvarinen") else
                                                          "; chosen because log p is smooth in closed form "
                                                          "(via denoising_score(denoising) for the denoising task)"))
    sigma = ctx.option("sigma", SIGMA)
    if not (isinstance(sigma, float | int) and sigma > 0):
        raise AttractorError(f"denoising_score: sigma must be a positive number, not {sigma}", node.loc)
    eps = {v: _fresh(ctx.program, f"eps_{v}" if len(binder) > 1 else "eps") for v in binder}
    body = _add(*(ir.Apply("mul", (ir.Num(0.5), ir.Apply("sumsq", (
        ir.Apply("add", (Grad(log_p, v), ir.Apply("div", (ir.Ref(eps[v], "latent"), ir.Num(sigma))))),)))) for v in binder))
    for v in reversed(binder):
        body = ir.Let(v, ir.Apply("add", (ir.Ref(v, "data"), ir.Apply("mul", (ir.Num(sigma), ir.Ref(eps[v], "latent"))))), body)
    for v, s in reversed(tuple(zip(binder, shapes))):
        body = ir.Expect((eps[v],), ir.Dist("Normal", ("loc", "scale"), (ir.Num(0), ir.Num(1)), s), body)
    return Rewrite(ir.Expect(binder, ir.DataSet(), body), "~",
                   (scope, f"Vincent (2011): with x~ = x + {show(ir.Num(sigma))} eps, grad log N(x~; x, sigma^2) = -eps/sigma, so "
                           f"E 1/2 |grad log p(x~) + eps/sigma|^2 = Fisher(data * N(0, sigma^2) || p) + const",
                    "the Bayes-optimal score of the denoising task is the score of the data smoothed at scale sigma; "
                    "the surrogate tends to Fisher(data || p) + const as sigma -> 0"),
                   note=f"denoising score matching at sigma = {show(ir.Num(sigma))}: exact for the smoothed data, up to a constant")


RULES = (
    legacy_rule("classifier_ratio", "divergence", classifier_ratio, ("nonsaturating", "critic", "hidden", "act")),
    legacy_rule("conjugate", "divergence", conjugate, ("nonsaturating", "critic", "hidden", "act")),
    legacy_rule("denoising_score", "divergence", denoising_score, ("hyvarinen", "denoising", "sigma")),
)

PASSES: tuple = (RulePass("adversarial", RULES, "adversarial"),)


# ---- certificates: random Gaussian instances, integrals by quadrature -------------------------------

_X = np.linspace(-16.0, 16.0, 64001)
_PAIRS = 3
_CRITICS = 24
_V_MAX = 700.0   # an infinite optimal critic output (where p or q underflows) is put here


def _pdf(m: float, s: float) -> np.ndarray:
    return np.exp(-0.5 * ((_X - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))


def _integral(y: np.ndarray) -> float:
    return float(np.trapezoid(y, _X))


def _gaussian_pairs(rng: np.random.Generator):
    """P = N(m_p, s_p²), Q = N(m_q, s_q²) with s_q > s_p, so every f-divergence is finite."""
    for _ in range(_PAIRS):
        m_p, m_q = rng.uniform(-1.0, 1.0, 2)
        s_p = rng.uniform(0.6, 1.2)
        yield (m_p, s_p), (m_q, s_p * rng.uniform(1.1, 1.6))


def _random_logits(rng: np.random.Generator) -> list[np.ndarray]:
    """Bounded random critic outputs V(x) = a0 + Σ_k a_k tanh(b_k x + c_k)."""
    out = []
    for _ in range(_CRITICS):
        a = rng.normal(0.0, 1.0, 4)
        b, c = rng.normal(0.0, 1.5, 3), rng.normal(0.0, 1.0, 3)
        out.append(a[0] + sum(a[k + 1] * np.tanh(b[k] * _X + c[k]) for k in range(3)))
    return out


def _divergence_of(prog, step) -> ir.Divergence:
    """The divergence of the source program that the step rewrote."""
    return next(n for n in prog.typed.objective.expr.walk() if isinstance(n, ir.Divergence) and show(n) == step.before)


def _options(prog, step) -> dict:
    via = prog.program.objective.via
    return dict(via.options) if via is not None and via.name == step.rule else {}


def _bound_certificates(rule: str, name: str, truth, bound, optimal_logit, seed: int) -> list[Certificate]:
    """`bound(p, q, V)` is never above `truth(p, q)`, for random bounded critic outputs V and
    for small perturbations of the optimal one, and equals it at `optimal_logit(p, q)` (unclipped:
    Jeffreys' T* = log u + 1 − 1/u needs V far below −30 where q ≫ p; ±∞ becomes ±700)."""
    rng = np.random.default_rng(seed)
    gaps, errors, values = [], [], []
    with np.errstate(all="ignore"):
        for (m_p, s_p), (m_q, s_q) in _gaussian_pairs(rng):
            p, q = _pdf(m_p, s_p), _pdf(m_q, s_q)
            d = truth(p, q)
            best = np.nan_to_num(optimal_logit(p, q), nan=0.0, posinf=_V_MAX, neginf=-_V_MAX)
            critics = _random_logits(rng) + [best + 0.05 * v / np.max(np.abs(v)) for v in _random_logits(rng)]
            values.append(d)
            gaps.append(max(bound(p, q, v) - d for v in critics))
            errors.append(abs(bound(p, q, best) - d) / max(1.0, abs(d)))
    worst = max(gaps)
    return [
        Certificate(rule, f"the rewritten objective is at most {name}(P || Q) for every critic",
                    f"{_PAIRS} Gaussian pairs ({name} = {', '.join(f'{x:.4g}' for x in values)}) x {2 * _CRITICS} critics "
                    f"(random, and perturbations of the optimal one): largest bound - {name} = {worst:.3g}", bool(worst <= 1e-7)),
        Certificate(rule, f"the bound reaches {name}(P || Q) at the optimal critic",
                    f"largest relative error at the optimum: {max(errors):.3g}", bool(max(errors) <= 1e-6)),
    ]


def _inverse_activation(c):
    """v(t) with g_f(v(t)) = t: the root SymPy finds that is real inside dom f*; a t at a
    closed end of the domain (TV: t* = ±1/2) is moved inside by a relative 1e-12 first."""
    inside = c.activation.subs(V, 0)
    lo, hi = (float(e) for e in c.domain[:2])
    margin = 1e-12 * (hi - lo) if np.isfinite(hi - lo) else 0.0
    for root in sp.solve(sp.Eq(c.activation, TSYM), V):
        at = complex(root.subs(TSYM, inside).evalf())
        if abs(at.imag) < 1e-12 and abs(at.real) < 1e-9:
            inverse = sp.lambdify(TSYM, root, "numpy")
            return lambda t: inverse(np.clip(t, lo + margin, hi - margin))
    raise RuntimeError(f"internal: cannot invert the critic activation {c.activation}")


@certificate("conjugate")
def certify_conjugate(prog, step, seed: int) -> list[Certificate]:
    """E_P[T(V)] − E_Q[f*(T(V))] ≤ D_f(P‖Q) = ∫ q f(p/q) at random V, = at T* = f'(p/q); with
    `nonsaturating`, the generator's −E_Q[T] at T* is stationary where Q = P and pushes Q
    towards P elsewhere."""
    node = _divergence_of(prog, step)
    c, _ = conjugate_parts(prog.typed, node)
    f, act, fstar_act = (sp.lambdify(s, e, "numpy") for s, e in ((U, c.f), (V, c.activation), (V, c.fstar_of_activation)))
    def at(fn, x):
        return fn(x) + 0 * x   # constants broadcast to the grid

    if c.optimal_output is None:
        tstar, vstar = sp.lambdify(U, c.critic_of_ratio, "numpy"), _inverse_activation(c)

        def optimal(p, q):
            return vstar(at(tstar, p / q))
    else:
        log_ratio = sp.lambdify(U, c.optimal_output, "numpy")

        def optimal(p, q):
            return at(log_ratio, p / q)
    out = _bound_certificates(
        "conjugate", node.kind, lambda p, q: _integral(q * at(f, p / q)),
        lambda p, q, v: _integral(p * at(act, v)) - _integral(q * at(fstar_act, v)),
        optimal, seed)
    if step.relation == "~":
        out.append(_nonsaturating_certificate("conjugate", lambda q, p, q0: -_integral(q * at(act, optimal(p, q0))), seed))
    return out


def _log_sigmoid(v: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -v)


@certificate("classifier_ratio")
def certify_classifier_ratio(prog, step, seed: int) -> list[Certificate]:
    """½(log 4 + E_P log σ(V) + E_Q log σ(−V)) ≤ JS(P, Q) at random V, = at V* = log p/q (GAN:
    without the affine map, against 2 JS − log 4); with `nonsaturating`, the generator's loss
    at D* is stationary exactly where Q = P and pushes Q towards P elsewhere."""
    node = _divergence_of(prog, step)
    js = node.kind == "JS"

    def game(p, q, v):
        value = _integral(p * _log_sigmoid(v)) + _integral(q * _log_sigmoid(-v))
        return 0.5 * (math.log(4) + value) if js else value

    def truth(p, q):
        m = (p + q) / 2
        half = 0.5 * (_integral(p * np.log(p / m)) + _integral(q * np.log(q / m)))
        return half if js else 2 * half - math.log(4)

    out = _bound_certificates("classifier_ratio", node.kind, truth, game, lambda p, q: np.log(p / q), seed)
    if step.relation == "~":
        out.append(_nonsaturating_certificate(
            "classifier_ratio", lambda q, p, q0: -_integral(q * _log_sigmoid(np.log(p / q0))), seed))
    return out


def _nonsaturating_certificate(rule: str, generator_loss, seed: int) -> Certificate:
    """For P = N(0, 1), Q_θ = N(θ, 1) and the optimal critic of Q_θ0 held fixed, the
    derivative of `generator_loss(q_θ, p, q_θ0)` at θ0 is zero for θ0 = 0 and has the sign of θ0."""
    rng = np.random.default_rng(seed)
    p, h, checks = _pdf(0.0, 1.0), 1e-4, []
    for theta0 in (0.0, *rng.uniform(-2.0, 2.0, 4)):
        q0 = _pdf(theta0, 1.0)
        slope = (generator_loss(_pdf(theta0 + h, 1.0), p, q0) - generator_loss(_pdf(theta0 - h, 1.0), p, q0)) / (2 * h)
        checks.append((theta0, slope))
    ok = abs(checks[0][1]) < 1e-8 and all(np.sign(s) == np.sign(t) for t, s in checks[1:])
    return Certificate(rule, "nonsaturating: at the optimal critic, the generator's gradient vanishes at Q = P and points Q towards P",
                       "d/dtheta at theta0: " + ", ".join(f"{t:+.2f} -> {s:+.3g}" for t, s in checks), bool(ok))


@certificate("denoising_score")
def certify_denoising_score(prog, step, seed: int) -> list[Certificate]:
    """For data N(m, s²) and random Gaussian models N(μ, τ²), the rewritten objective differs
    from Fisher(data‖p) (Hyvärinen) or from Fisher(data ∗ N(0, σ²)‖p) (denoising) by one
    constant, the same for every model."""
    options = _options(prog, step)
    rng = np.random.default_rng(seed)
    m, s = rng.uniform(-1.0, 1.0), rng.uniform(0.5, 1.5)
    models = [(rng.uniform(-2.0, 2.0), rng.uniform(0.3, 2.0)) for _ in range(6)]

    def fisher(data_sd, mu, tau):
        x = _X
        return _integral(_pdf(m, data_sd) * 0.5 * (-(x - m) / data_sd**2 + (x - mu) / tau**2) ** 2)

    if step.relation == "=":   # Hyvarinen's form
        name, expected = "Fisher(data || p)", 0.5 / s**2   # 1/2 E|grad log p_data|^2
        pairs = [(fisher(s, mu, tau), _integral(_pdf(m, s) * (0.5 * ((_X - mu) / tau**2) ** 2 - 1 / tau**2))) for mu, tau in models]
    else:
        sigma = options.get("sigma", SIGMA)
        eps, weights = np.polynomial.hermite_e.hermegauss(40)
        weights = weights / weights.sum()
        # 1/2 E|grad log p_data_sigma|^2 - 1/2 E|eps/sigma|^2
        name, expected = f"Fisher(data * N(0, {sigma:g}^2) || p)", 0.5 / (s**2 + sigma**2) - 0.5 / sigma**2
        pairs = []
        for mu, tau in models:
            noisy = _X[:, None] + sigma * eps[None, :]
            inner = 0.5 * (-(noisy - mu) / tau**2 + eps[None, :] / sigma) ** 2 @ weights
            pairs.append((fisher(math.hypot(s, sigma), mu, tau), _integral(_pdf(m, s) * inner)))
    offsets = [truth - rewritten for truth, rewritten in pairs]
    spread = max(offsets) - min(offsets)
    claim = f"{name} - rewritten objective is one constant for every model"
    evidence = f"data N({m:.3g}, {s:.3g}^2), {len(models)} random Gaussian models: offsets {min(offsets):.6g} .. {max(offsets):.6g}"
    ok = spread <= 1e-6 * max(1.0, abs(offsets[0]))
    evidence += f", expected {expected:.6g}"
    ok = ok and abs(offsets[0] - expected) <= 1e-6 * max(1.0, abs(expected))
    return [Certificate("denoising_score", claim, evidence, bool(ok))]
