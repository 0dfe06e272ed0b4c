"""The splitting rule family: half-quadratic splitting of a non-smooth term of a linear map.

    f(x) + k·g(A x)   ~   f(x) + k·g(z) + β/2·‖A x − z‖²,    β raised on a schedule

for g with a known proximal map (norm1, sumsq: the maps SymPy derives in
compiler/math/piecewise.py) and A x affine in the player's parameters (sums, differences and
constant multiples of parameters, `diff`, `sum`, `mean`). Only when asked for
(`via half_quadratic(beta=…, growth=…, beta_max=…)`). A non-smooth g (norm1) is split
wherever it appears; a smooth one (sumsq) only as a penalty with its weight written,
`k * sumsq(A x)`, so that a bare sumsq(·) fit term stays with f in the x-step.

The indicator of a box is written as a constraint on an affine map: `subject to A x <= c`,
`A x >= c` or `abs(A x) <= c` (c constant). Forced with `via half_quadratic`, such a
constraint is split instead of going to the Lagrangian: f(x) + ι_box(z) + β/2‖A x − z‖²,
whose z-step is the projection onto the box, z ← min(max(A x, lo), hi) (the proximal map of
the indicator); min over z is β/2·dist²(A x, box), 0 where the constraint holds and rising
to the indicator's +∞ elsewhere as β → ∞ (a penalty method: relation `~`, exact in the limit).

The new objective is solved by alternation: an x-step (the player's gradient step on
f(x) + β/2‖A x − z‖², now smooth in x) and an exact z-step, z ← prox_{(k/β)·g}(A x), the
minimiser over z, in closed form after every step; then β ← min(growth·β, beta_max).
Relation `~`: min over z of k·g(z) + β/2‖v − z‖² is the Moreau envelope of k·g at v, at most
k·g(v) and increasing to it as β → ∞ (for norm1 within k²·m/(2β), m entries), so the split
objective approaches the original from below and is exact in the limit. The outer weight of
the term must be a positive constant along a linear path (+, −, constant factors), so that
the z-step is exactly the proximal map; the pass manager refuses a negative weight.

    half_quadratic.py   the rule: a term (or a box constraint) → its split, z's closed-form step
    passes.py           the pass: only when forced; terms, then claimed boxes, then training defaults
    certificates.py     the Moreau-envelope and penalty facts, numerically (loaded by `check` only)
"""
from passes.splitting.half_quadratic import HALF_QUADRATIC
from passes.splitting.passes import SplittingPass

RULES: tuple = (HALF_QUADRATIC,)
PASSES: tuple = (SplittingPass(),)
