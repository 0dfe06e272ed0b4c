"""The evolution-strategies rule family: an objective with no useful gradient is smoothed by
averaging it under a Gaussian search distribution around the parameters.

    evolution_strategy   min_θ f(θ)  <=  E[θ' ~ Normal(θ, σ² I)] f(θ')     for every θ

A minimum is at most an average, so minimising the smoothed objective over the mean θ
minimises an upper bound of min f (for a maximisation, max f >= E f: a lower bound,
maximised). Its gradient in θ is the score-function estimate (1/(Nσ)) Σ_i w_i ε_i over a
population θ_i = θ + σ ε_i drawn in antithetic pairs ±ε, with w_i the centred ranks of f(θ_i).
The whole population is evaluated in one vmapped call, with common random numbers for any
randomness inside f.

Without `via` the rule is taken when some non-differentiable node has no convex surrogate that
keeps the bound's direction: the relaxation pass then stands aside (the manager's `covers_all`
policy) and this family smooths the whole loss.

`evolution_strategy` holds the rule, `passes` the pass, `nodes` the search distribution and
the smoothed expectation with their lowering, `certificates` (loaded by `attractor check`
only) the numerical evidence.
"""
from passes.evolution import evolution_strategy
from passes.evolution.passes import EvolutionPass

RULES = (evolution_strategy.RULE,)

PASSES: tuple = (EvolutionPass("evolution", RULES, "evolution"),)
