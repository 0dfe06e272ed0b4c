"""The lagrangian rule family: constraints become a multiplier player.

    minimize f(θ)  subject to  g_i(θ) <= 0,  h_j(θ) == 0
      =  min_θ max_{λ >= 0, ν}  L(θ, λ, ν),    L = f + Σ λ_i·g_i + Σ ν_j·h_j

For fixed θ, sup over λ ≥ 0 of λ·g is 0 when g ≤ 0 and +∞ otherwise (sup over ν of ν·h is 0
when h = 0), so the sup over the multipliers of L is f on the feasible set and +∞ off it: the
min-max is the constrained problem (relation `=` at the saddle point). Weak duality: for every
λ ≥ 0 and ν, the dual value d(λ, ν) = min_θ L(θ, λ, ν) is at most the constrained minimum,
because L ≤ f at every feasible θ (dual value ≤ primal value). Vector-valued constraints hold
elementwise, with one multiplier per entry. `g >= c` is `c - g <= 0`; a strict `<` is relaxed
to its closure `<=` (the infimum is the same).

Dynamics. Plain gradient descent-ascent on L rotates around the saddle (the multiplier sees
only the linear term λ·g, so the game is not strongly concave in λ). The rule therefore uses
the augmented Lagrangian (Hestenes, Powell, Rockafellar) with ρ > 0 (`lagrangian(rho=…)`,
default 1; rho=0 is the classical L):

    λ·g  →  λ·s + ρ/2·s²,   s = max(g, -λ/ρ)        ν·h  →  ν·h + ρ/2·h²

The sup over λ ≥ 0 (ν) of the new term is again 0 on the feasible set and +∞ off it, and the
term is ≤ 0 at every feasible θ, so the saddle point, its value and weak duality are
unchanged; the added curvature ρ·∇g∇gᵀ damps the rotation. The multipliers ascend (a max
player), λ ≥ 0 is kept by projecting after every step (the proximal map of the indicator of
λ ≥ 0, `nonneg`), and where the `train` line is silent both players take Adam steps of size
0.01 decaying to zero (cosine) over 3000 steps, moving simultaneously: with a decaying
step, simultaneous descent-ascent settles on the saddle instead of circling it.

The family adds reports: every multiplier (the largest magnitude of a vector multiplier) and
`violation`, the largest violation max(g, 0) or |h| over all constraints and entries.

    lagrangian.py     the rule: one constraint → its (augmented) multiplier term
    passes.py         the pass: all constraints → one multiplier player, reports, training
    certificates.py   weak duality and the saddle value, numerically (loaded by `check` only)
"""
from passes.lagrangian.lagrangian import LAGRANGIAN
from passes.lagrangian.passes import LagrangianPass

RULES: tuple = (LAGRANGIAN,)
PASSES: tuple = (LagrangianPass(),)
