"""The objective as the user wrote it, at the final parameters (SPEC section 9.2, `as_written`).

The compiled objective is what training minimises: a bound (the ELBO), a surrogate (norm1 for
norm0, a smoothed loss), or an objective equal up to a constant. `as_written` is the typed
objective itself, chosen here and lowered by the emitter into `AS_WRITTEN(params, key, batch)`:

- no intractable node but piecewise-constant ones (norm0 counts non-zeros, a 0-1 loss counts
  errors, a rounding rounds) and expectations under parameter-dependent distributions (only their
  gradient needed a rule): the typed objective, estimator "exact", or, where it draws, the program
  compiled again with `via exact_expectation` when that leaves no draw (every expectation in
  closed form: "exact"), else the typed objective's Monte Carlo average ("monte_carlo");
- a log marginal likelihood log p(x) of a model whose latents can be summed out (`enumerate`: few
  discrete states) or integrated in closed form (`gaussian_marginal`): that exact value, estimator
  "exact" (or "monte_carlo" where continuous latents keep draws);
- another log marginal likelihood log p(x) of a model with latents: the importance-weighted bound
  log (1/K) sum_k p(x, z_k)/q(z_k | x) with K = 100 draws from the guide (the program compiled
  again with `via jensen(iwae=100)`), estimator "iwae(K=100)": a consistent estimate, biased
  towards a larger -log p(x) by at most the gap of the K = 100 bound;
- a nonlinear function of an expectation over draws (the plugin problem) whose expectations all have
  a closed form: the program compiled again with `via closed_form_expectation` (relation `=`),
  estimator "exact" (or "monte_carlo" when draws remain);
- a divergence between two models with densities: the program compiled again with `via
  explicit_kl` or `via explicit_divergence` (relation `=`), estimator "exact" for a closed form,
  else "monte_carlo";
- a divergence estimated by a critic: the compiled objective at the trained critic, estimator
  "plug-in critic";
- anything else (an objective equal to the compiled one up to an unknown constant, an
  automatic guide that the K = 100 compilation would build anew): None, with the reason.

Reports are lowered as written; a report of an intractable marginal is replaced the same way
by its importance-weighted estimate (else refused at compile time, at the report's location).
"""
from __future__ import annotations

import dataclasses

from compiler import ir
from compiler.analysis.problems import problems, program_problems
from compiler.frontend.parser import parse
from compiler.ir.diagnostics import AttractorError
from compiler.rewrite.manager import run_passes

IWAE_DRAWS = 100
IWAE = f"iwae(K={IWAE_DRAWS})"
EXPLICIT_DIVERGENCES = ("explicit_kl", "explicit_divergence")   # routes of relation = between two densities
EXACT_MARGINALS = ("enumerate", "gaussian_marginal")            # log p(x) exactly: latents summed or integrated out
VALUE_KINDS = {"nondiff", "estimator", "constraint"}   # problems of the gradient or the feasible set, not the value


@dataclasses.dataclass(frozen=True)
class AsWritten:
    """The expression whose value is the objective as written (None: not estimated, `reason` says
    why), the program it is lowered in, and the estimator named in the run's JSON."""

    expr: ir.Node | None
    program: ir.Program | None
    estimator: str | None
    reason: str | None = None


def _iwae_program(typed: ir.Program, expr: ir.Node, compiled: ir.Program,
                  rule: str = f"jensen(iwae={IWAE_DRAWS})") -> ir.Program:
    """`typed` with objective `minimize expr via RULE` (default jensen(iwae=100)), one player whose
    loss is `expr` (a report's expression is not the objective's), rewritten; an
    AttractorError when the rewriting fails or introduces parameters the compiled program does not
    have (an automatic guide built anew would be untrained)."""
    via = parse(f"minimize 0 via {rule}\n")[0].via
    failure = None
    for sense in ("minimize", "maximize"):   # -log p(x) is bounded above for a minimisation, log p(x) below
        objective = dataclasses.replace(typed.objective, expr=expr, sense=sense, via=via)
        alone = ir.Player("theta", typed.learnable(), sense[:3], expr)    # expr's value only: no constraint, no game
        try:
            program, _ = run_passes(dataclasses.replace(typed, objective=objective, reports=(), constraints=(),
                                                        players=(alone,)), _pipeline(), via)
            break
        except AttractorError as e:
            failure = failure or e
    else:
        raise failure
    new = set(program.learnable()) - set(compiled.learnable())
    if new:
        raise AttractorError(f"its estimate would need parameters the run does not train ({', '.join(sorted(new))})")
    return program


def _pipeline():
    from passes import PIPELINE
    return PIPELINE


def _draws(expr: ir.Node) -> bool:
    return any(isinstance(n, ir.Expect) and not isinstance(n.source, ir.DataSet) for n in expr.walk())


def exact_route(typed: ir.Program, expr: ir.Node, compiled: ir.Program, kinds: set[str]) -> ir.Program | None:
    """`expr` compiled by the first rule of relation = that takes its intractable part (latents
    summed or integrated out, an expectation in closed form, a divergence between two densities):
    the program whose loss is its value; None where no such rule applies."""
    rest = kinds - VALUE_KINDS
    rules = EXACT_MARGINALS if rest == {"marginal"} else EXPLICIT_DIVERGENCES if rest == {"divergence"} else \
        ("closed_form_expectation",) if rest == {"plugin"} else \
        ("exact_expectation",) if not rest and "estimator" in kinds else ()
    for rule in rules:
        try:
            return _iwae_program(typed, expr, compiled, rule)
        except AttractorError:
            continue
    return None


def as_written(typed: ir.Program, compiled: ir.Program) -> AsWritten:
    """What `AS_WRITTEN` evaluates for the program `typed` that compiled to `compiled`."""
    expr = typed.objective.expr
    kinds = {p.kind for p in program_problems(typed)} - {"constraint"}
    if kinds <= VALUE_KINDS:
        program = exact_route(typed, expr, compiled, kinds) if _draws(expr) else None
        if program is not None and not _draws(program.players[0].loss):   # every expectation in closed form
            return AsWritten(program.players[0].loss, program, "exact")
        return AsWritten(expr, typed, "monte_carlo" if _draws(expr) else "exact")
    program = exact_route(typed, expr, compiled, kinds)
    if program is not None:
        loss = program.players[0].loss
        return AsWritten(loss, program, "monte_carlo" if _draws(loss) else "exact")
    if kinds == {"marginal"}:
        try:
            program = _iwae_program(typed, expr, compiled)
        except AttractorError as e:
            return AsWritten(None, None, None, f"-log p(x) not estimated: {e.message}")
        return AsWritten(program.players[0].loss, program, IWAE)
    if kinds - VALUE_KINDS == {"plugin"}:
        return AsWritten(None, None, None, "no closed form of the objective as written: the expectation inside a "
                         "nonlinear function has none SymPy derives, and the compiled objective bounds it")
    if "divergence" in kinds and compiled.players[0].loss is not None and len(compiled.players) > 1:
        return AsWritten(None, compiled, "plug-in critic")
    return AsWritten(None, None, None, "the objective as written has no estimator here (" + ", ".join(sorted(kinds))
                     + "): the compiled objective is a bound or surrogate of it, not its value")


def reports_as_written(typed: ir.Program, compiled: ir.Program) -> dict[str, ir.Node]:
    """Each report's expression to lower, in `compiled`'s terms: as written when tractable, by an
    exact route where one applies (as for the objective), an intractable marginal by its
    importance-weighted estimate (K = 100); anything else refused
    at the report's location (a run must not fail where compile passed)."""
    out = {}
    for r in compiled.reports:
        kinds = {p.kind for p in problems(typed, r.expr)}
        if kinds <= VALUE_KINDS:
            out[r.name] = r.expr
            continue
        program = exact_route(typed, r.expr, compiled, kinds)
        if program is not None:
            out[r.name] = program.players[0].loss
            continue
        if kinds == {"marginal"}:
            try:
                out[r.name] = _iwae_program(typed, r.expr, compiled).players[0].loss
                continue
            except AttractorError as e:
                raise AttractorError(f"report {r.name} cannot be estimated: {e.message}", r.loc) from None
        raise AttractorError(f"report {r.name} is intractable ({', '.join(sorted(kinds))}) and has no estimator: "
                             "report a tractable quantity, or a bound written out", r.loc)
    return out
