"""The relaxation rule family: piecewise-constant terms replaced by convex ones, and convex
non-smooth terms applied as proximal steps.

    relax_l0    norm0(w)  ~  norm1(w)                 convex envelope of norm0 on ‖w‖∞ ≤ 1
    relax_step  [s <= 0]  <= max(0, 1 - s)            hinge: convex, an upper bound on the line
                          <= log2(1 + exp(-s))        logistic, on request
    proximal    c * norm1(w), c * sumsq(w)  =  the same term, applied after each gradient step
                by its proximal map (soft-thresholding, shrinkage), so that solutions are
                exactly sparse

SymPy does the scalar mathematics (compiler.math.piecewise): it cuts a function of one
variable at its kinks, proves convexity piece by piece (second derivative ≥ 0, slopes rising
across kinks), proves that a surrogate bounds the 0-1 loss from above on the whole real line,
and derives proximal maps. The relaxations are bounds in one direction only; the pass manager
refuses them under a negative weight or inside a maximisation.

Without `via`, relaxation is chosen when every non-differentiable node of the program has a
convex surrogate that keeps the bound's direction; otherwise the pass stands aside (the
manager's `covers_all` policy) and evolution strategies smooth the objective as a whole.

One module per rule; `passes` holds the two passes, `nodes` the proximal step the family shows,
`certificates` (loaded by `attractor check` only) the numerical evidence for each relation.
"""
from passes.relaxation import proximal, relax_l0, relax_step
from passes.relaxation.passes import ProximalPass, RelaxationPass

RULES = (relax_l0.RULE, relax_step.RULE, proximal.RULE)

PASSES: tuple = (RelaxationPass("relaxation", (relax_l0.RULE, relax_step.RULE), "relaxation"), ProximalPass())
