"""The variational rule family: Jensen bounds on marginal likelihoods, closed-form KL terms,
and the gradient estimators of expectations under distributions that depend on the parameters.

    enumerate       log p(x) = logsumexp_z log p(x, z), z discrete with <= 1024 joint states     (=)
                    (with continuous latents c too: inside the ELBO over c                      (<=))
    gaussian_marginal  z ~ N(a, s), x ~ N(w z + b, sigma): log p(x) = log N(x; w a + b, sqrt(w^2 s^2 + sigma^2))  (=)
    jensen          -log p(x) <= E_q[log q(z | x) - log p(x, z)]                      (<=; >= for log p(x))
                    gap KL(q(z | x) || p(z | x)); iwae=K: log p(x) >= E[log (1/K) sum_k p(x, z_k)/q(z_k | x)]
    closed_form_expectation  phi(E[z ~ D] f(z)) = phi(F), F the integral of f times D's density by SymPy (=)
    exact_expectation  E[z ~ D(theta)] f(z) = F(theta), the same integral, before the estimators  (=)
    jensen_convex   phi(E[X]) <= E[phi((1/K) sum_k X_k)], phi convex (SymPy), K draws of X's own law (<=)
                    (>= for a concave phi entering the minimised loss negatively)
    analytic_kl     E_q[log q(z | x) - log p(x, z)] = KL(q(z | x) || p(z)) - E_q[log p(x | z)]   (=)
    reparameterize  E[w ~ F_psi] f(w) = E[eps ~ base] f(T_psi(eps)), T derived by SymPy             (=)
    score_function  grad E[w ~ q_psi] f(w) = E[(f(w) - b) grad log q_psi(w) + grad f(w)]            (=)
    relax_discrete  E[z ~ Bernoulli(l)] f(z) ~ E[u ~ Uniform] f(sigmoid((l + logit u) / tau))  (~, only via)

The estimator rules rewrite `E[v ~ D] f` by inlining the sampler of D (`sampling.inline`), so
the printed form is the estimator itself. Score terms S enter as the surrogate
`stop(f - b) * (S - stop(S)) + f`: its value is f and its gradient is ∇f + (f - b)∇S, unbiased
for ∇E[f] whenever the baseline b does not depend on the draw (leave-one-out over K draws; VIMCO
inside an importance-weighted bound).

    nodes.py            LogProb, OverDraws, ClosedKL and their lowering
    enumeration.py      the rule enumerate; gaussian_marginal.py the rule gaussian_marginal
                        (gaussian_marginal_mv.py: its case of vector latents through @ / dot, a low-rank
                        multivariate Normal: probabilistic PCA, factor analysis)
    jensen.py           the rule jensen; guides.py: the declared guide checked, or an automatic one
    closed_form_expectation.py  the rule closed_form_expectation: exact before jensen_convex's bound
    exact_expectation.py  the rule exact_expectation: an expectation alone in closed form, before the estimators
    jensen_convex.py    the rule jensen_convex: Jensen's bound for a convex function of an expectation
    analytic_kl.py      the rule analytic_kl
    sampling.py         what an expectation draws, and its sampler inlined (both estimator rules)
    reparameterize.py   the rule reparameterize
    score_function.py   the rule score_function
    relax_discrete.py   the rule relax_discrete
    certificates.py     each relation measured on random instances (loaded by `check` only)
"""
from compiler.rewrite.manager import RulePass
from passes.variational import (
    analytic_kl,
    closed_form_expectation,
    enumeration,
    exact_expectation,
    gaussian_marginal,
    jensen,
    jensen_convex,
    relax_discrete,
    reparameterize,
    score_function,
)

RULES: tuple = (enumeration.RULE, gaussian_marginal.RULE, jensen.RULE, closed_form_expectation.RULE, jensen_convex.RULE,
                analytic_kl.RULE, reparameterize.RULE, score_function.RULE, exact_expectation.RULE, relax_discrete.RULE)
# the closed form runs first (stage "exact"): exact before the bounds of jensen (log E) and jensen_convex
PASSES: tuple = (RulePass("closed_form_expectation", (closed_form_expectation.RULE,), "exact"),
                 RulePass("jensen", (enumeration.RULE, gaussian_marginal.RULE, jensen.RULE), "jensen"),
                 RulePass("jensen_convex", (jensen_convex.RULE,), "jensen"),
                 RulePass("analytic_kl", (analytic_kl.RULE,), "analytic_kl"),
                 RulePass("estimators", (reparameterize.RULE, score_function.RULE, exact_expectation.RULE,
                                         relax_discrete.RULE), "estimators"))
# exact_expectation after the estimators in rule order (--no-search: a SymPy integral per expectation
# is not spent unasked); the search ranks it first, exact before unbiased (SPEC 9.4)
