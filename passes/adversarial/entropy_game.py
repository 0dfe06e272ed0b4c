"""entropy_game: KL(g || p) for a sampler g (samples, no density) against a model p with a density,
normalised or Gibbs (unnormalised, p = p~/Z), with a game for the entropy term only (SPEC §9.3).

    KL(g || p) = E_g log g(x) - E_g log p~(x) + log Z
               = E_g[log g(x)/r(x)] + E_g log r(x) - E_g log p~(x) + log Z

for any reference density r. r is a diagonal Normal fitted to g's samples by maximum likelihood
(player `ref`: max E_g log r(x)); log g/r is the Bayes-optimal logit V* of a classifier between
g's samples (label 1) and r's (label 0), a new player maximising E_g log sigma(V) + E_r log sigma(-V).
The sampler's player minimises E_g[V(x) + log r(x) - log p~(x)], x = T_theta(eps) reparameterised
through the sampler; the other players' parameters are constants in its loss. Its gradient is that
of the KL at V = V*, whatever r: grad_theta E_g[log g(x)] = E[grad_x log g(x) . dT/dtheta] (the score
term has mean 0), and grad_x (V* + log r) = grad_x log g. Relation `=+c` (c = log Z, no parameter
moves it; 0 for a normalised p) at the classifier's optimum.

Side conditions: g is a sampler; p's density is explicit in the shared variables (no latents) and,
when it is a Gibbs model, no parameter of the sampler's player moves its energy (log Z would move).
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.analysis.problems import depends_on, missing_latents
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule
from passes.adversarial.critic import critic_options, make_critic
from passes.adversarial.densities import log_density
from passes.adversarial.sides import fresh_name, sum_of
from passes.variational.nodes import LogProb

DRAWS = 256      # draws of g (and of r) per step (option draws=N)


@dataclass(frozen=True)
class SamplerToDensity:
    divergence: ir.Divergence
    sampler: ir.Block
    target: ir.Block
    gibbs: bool
    binder: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]


def match(node: ir.Divergence, ctx: Context) -> SamplerToDensity | Refusal | None:
    """KL(g || p) with g a sampler and p a model with a density in g's variables."""
    if node.kind != "KL" or isinstance(node.p, ir.DataSet) or isinstance(node.q, ir.DataSet):
        return None
    program = ctx.program
    g, p = program.decl(node.p.name), program.decl(node.q.name)
    if not (isinstance(g, ir.Block) and g.kind == "sampler"):
        return None
    if not (isinstance(p, ir.Block) and p.kind == "model") or p.given:
        return Refusal(f"{node.q.name} is not a model with a density")
    binder = tuple(v for v in p.random_vars() if g.line(v) is not None)
    if not binder:
        return Refusal(f"sampler {g.name} draws none of model {p.name}'s variables")
    hidden = missing_latents(program, ir.Density(p.name, binder))
    if hidden:
        return Refusal(f"model {p.name}'s density in {', '.join(binder)} integrates over its latents {', '.join(hidden)}")
    gibbs = any(isinstance(line, ir.Tilde) and line.dist.family == "Gibbs" for line in p.lines)
    if gibbs and depends_on(ir.Density(p.name, binder), program, set(ctx.player.params)):
        return Refusal(f"the energy of the Gibbs model {p.name} moves with player {ctx.player.name}'s parameters, so "
                       "log Z is not a constant: train the energy with another player")
    shapes = tuple(tuple(p.line(v).shape or ()) for v in binder)
    return SamplerToDensity(node, g, p, gibbs, binder, shapes)


def build(found: SamplerToDensity, ctx: Context) -> Rewrite:
    node, g, p, binder, shapes = found.divergence, found.sampler, found.target, found.binder, found.shapes
    program, draws = ctx.program, ctx.option("draws", DRAWS)
    critic = make_critic(program, binder, shapes, ctx.options, "disc", node, "entropy_game")
    ref = fresh_name(program, "ref")
    decls, refs = [], []
    for v, s in zip(binder, shapes):
        loc, log_scale = fresh_name(program, f"{ref}_loc_{v}"), fresh_name(program, f"{ref}_logscale_{v}")
        decls += [ir.Param(loc, s, owner=ref), ir.Param(log_scale, s, owner=ref)]
        refs.append(ir.Dist("Normal", ("loc", "scale"), (ir.Ref(loc, "param"), ir.Apply("exp", (ir.Ref(log_scale, "param"),))), s))

    def log_r(kind):
        return sum_of(*(LogProb(r, ir.Ref(v, kind), label=f"{ref}({v})") for v, r in zip(binder, refs)))

    def over_g(body):
        return ir.Expect(binder, ir.Sample(g.name, binder), body, samples=draws)

    over_r = ir.Apply("log_sigmoid", (ir.Apply("neg", (critic("latent"),)),))
    for i in reversed(range(len(binder))):           # independent draws of each variable from its reference
        over_r = ir.Expect((binder[i],), refs[i], over_r, samples=draws if i == 0 else 1)
    return_note = f"reference r = {' x '.join(f'Normal over {v}' for v in binder)}, diagonal"
    classifier = ir.Apply("add", (over_g(ir.Apply("log_sigmoid", (critic("latent"),))), over_r))
    fit = over_g(log_r("latent"))
    loss = over_g(sum_of(critic("latent"), log_r("latent"), ir.Apply("neg", (log_density(p, binder),))))
    players = (ir.Player(ref, tuple(d.name for d in decls), "max", fit),
               ir.Player(critic.player, critic.params, "max", classifier))
    constant = "log Z" if found.gibbs else "0 (p is normalised)"
    conditions = (f"g = sampler {g.name}: samples, no density; p = model {p.name}: "
                  + ("Gibbs, p = p~/Z" if found.gibbs else "normalised density"),
                  f"KL(g || p) = E_g[log g/r] + E_g log r - E_g log p~ + log Z for any density r ({return_note}, "
                  f"player {ref} fits it to g's samples by maximum likelihood)",
                  f"classifier sigma(V) of g's samples against r's (player {critic.player}): Bayes-optimal logit V* = log g/r",
                  "the sampler's loss E_g[V + log r - log p~]: at V = V*, its gradient is the KL's (grad_x (V* + log r) = "
                  "grad_x log g; the score term of E_g log g has mean 0)",
                  f"constant c = {constant}: no parameter moves it")
    if found.gibbs:
        conditions += (f"the energy of {p.name} reads no parameter of player {ctx.player.name}",)
    note = (f"entropy-only game: the cross-entropy term is reparameterised through {g.name}; a classifier against a "
            f"fitted reference density estimates -H({g.name}); {draws} draws per step")
    facts = (("constant", "log Z" if found.gibbs else "0"), ("critic", critic.player), ("reference", ref),
             ("optimal_logit", "log(g/r)"), ("gibbs", found.gibbs))
    return Rewrite(loss, "=+c" if found.gibbs else "=", conditions, tuple(decls) + critic.decls, players, game=True,
                   note=note, facts=facts)


RULE = Rule(
    "entropy_game", problem="divergence", matches=(ir.Divergence,), relation="=+c",
    identity="KL(g || p~/Z) = E_g[V*(x) + log r(x) - log p~(x)] + log Z,  V* = log g/r by a classifier",
    match=match, build=build,
    options=(Option("draws", int, low=2, wording="draws must be a whole number >= 2, not {value}",
                    doc=f"draws of the sampler and of the reference per step (default {DRAWS})"),
             *critic_options("entropy_game")),
    unmatched="the objective has no KL(g || p) with g a sampler and p a model with a density")

