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

`maximum_likelihood`, `explicit_kl` and `explicit_divergence` (any other f-divergence between two
densities, by Monte Carlo over draws of Q) are the routes that need no game (`densities` holds what
they share), run before the games, with `entropy_game` (KL(sampler || density): a game for the sampler's
entropy only). One module per rule; `sides` and
`critic` hold what the game rules share, `nodes` the node types the family introduces (∇ and Δ)
and their lowering; `certificates` is loaded by `attractor check`.
"""
from compiler.rewrite.manager import RulePass
from passes.adversarial import (
    classifier_ratio,
    conjugate,
    denoising_score,
    entropy_game,
    explicit_divergence,
    explicit_kl,
    maximum_likelihood,
)

EXACT = (maximum_likelihood.RULE, explicit_kl.RULE, explicit_divergence.RULE, entropy_game.RULE)
RULES = (*EXACT, classifier_ratio.RULE, conjugate.RULE, denoising_score.RULE)

PASSES: tuple = (RulePass("exact", EXACT, "exact"),
                 RulePass("adversarial", RULES[len(EXACT):], "adversarial"))
