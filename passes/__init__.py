"""Rule families, one module each; `PIPELINE` is the order in which their passes run.

1. constraints become a multiplier player (lagrangian)
2. marginal likelihoods become bounds (jensen)
3. divergences become games (classifier_ratio, conjugate, denoising_score)
4. KL terms with a closed form are replaced by it (analytic_kl)
5. non-differentiable terms are relaxed (relax_l0, relax_step) or smoothed (evolution_strategy)
6. splitting (half_quadratic, only when asked for)
7. non-smooth convex terms with a known proximal map become proximal steps
8. expectations under parameter-dependent distributions get estimators (reparameterize, score_function)
"""
from passes import adversarial, evolution, lagrangian, relaxation, splitting, variational

# the packages passes/<family>/ whose certificates.py `attractor check` loads
FAMILIES = ("adversarial", "evolution", "lagrangian", "relaxation", "splitting", "variational")

PIPELINE: tuple = tuple(sorted(
    (p for module in (lagrangian, variational, adversarial, relaxation, evolution, splitting)
     for p in module.PASSES),
    key=lambda p: p.stage))
