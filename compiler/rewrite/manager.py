"""The pass manager: it owns every cross-rule policy and the one path by which a rewrite is
committed to the program and recorded as a derivation step.

Policy, all here and nowhere in a rule:
- `via RULE(opts)` forces a rule: its options are read against the rule's typed options, and
  every other rule answering the same problem, in any pass, is disabled (`Plan`).
- A pass marked `covers_all` (relaxation) runs only when its rules can take every node of
  their problem in the bound's direction; otherwise it stands aside and a later pass for the
  same problem (evolution strategies) takes the nodes, with the reason recorded (`Plan.passed_over`).
- A forced rule may claim constraints (`Rule.claims`) that the Lagrangian then leaves alone.
- A bound is never substituted in the direction that would break it (`check_direction`).
- A forced rule's refusal at a node of its problem is the one diagnostic, at that node.
- Passes run to a fixed point: a pass stops when no rule applies anywhere, not after a count.
- Choosing among derivations (SPEC 9.4): with a `choose` callback, every rule of any pass that can
  take a node of its problem (as written, or as `via` would force it), in each of its variants,
  is an alternative; so is a rule that rewrites the whole loss holding the node and says it
  answers the node (evolution strategies at an Iverson bracket: `Alternative.whole`). They are
  ordered exact, unbiased, bounds, surrogates (`tier`), and within a class by what the callback
  measured (`ranked`); the callback (the driver, which can lower and measure) returns the
  choice, recorded on the step with the runners-up. A node with one derivation because the
  others stood aside is still shown to the callback, with the reason (`Decision.alone`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from compiler import ir
from compiler.analysis.problems import node_problem, program_problems
from compiler.ir.budget import Overrun, time_budget
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import decl_summary, show
from compiler.rewrite.building import fill_training, training_text
from compiler.rewrite.rule import Context, Refusal, Rewrite, Rule, Step
from compiler.rewrite.strategies import child_indices, positions, positions_from, replace_at

STAGES = {"lagrangian": 10, "exact": 15, "jensen": 20, "adversarial": 30, "analytic_kl": 40, "relaxation": 50,
          "evolution": 55, "splitting": 60, "proximal": 70, "estimators": 80}


# ---- policy --------------------------------------------------------------------------------------

@dataclass
class Plan:
    """What the manager decided for one compilation: the forced rule and its typed options,
    the rules it disables, and the passes that stood aside (with the nodes they could not take)."""

    via: ir.RuleRef | None
    forced: Rule | None
    options: dict
    disabled: frozenset[str]
    passed_over: dict = field(default_factory=dict)     # problem -> (pass name, [nodes])
    refusals: list = field(default_factory=list)        # (node, Refusal) of the forced rule
    declined: list = field(default_factory=list)        # (rule name, node, Refusal) of rules not forced
    unkept: list = field(default_factory=list)          # (rule name, node, why) of a covering rule that failed at the node
    resume: tuple | None = None     # (player, child indices): where the last rewrite in that loss stood
    choose: Callable | None = None  # Decision -> Choice: the search among derivations (None: rule order)
    answering: dict = field(default_factory=dict)   # problem -> the enabled rules of every pass answering it

    def enabled(self, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        return tuple(r for r in rules if r.name not in self.disabled)

    def is_forced(self, rule: Rule) -> bool:
        return self.forced is not None and self.forced.name == rule.name

    def forces_any(self, rules) -> bool:
        return self.forced is not None and any(r.name == self.forced.name for r in rules)

    def context(self, program: ir.Program, player: ir.Player, rule: Rule, polarity: int = 1,
                path=None) -> Context:
        forced = self.is_forced(rule)
        return Context(program, player, polarity, dict(self.options) if forced else {}, forced, path)

    def claimed(self, constraint: ir.Constraint, program: ir.Program) -> bool:
        """Is the constraint taken by the forced rule instead of the Lagrangian?"""
        claims = getattr(self.forced, "claims", None) if self.forced is not None else None
        return claims is not None and claims(constraint, program)


def make_plan(passes, via: ir.RuleRef | None) -> Plan:
    """Read `via`: the rule must exist, its options be its own, given once, of the right type."""
    known = {r.name: r for p in passes for r in p.rules}
    if via is None:
        return Plan(None, None, {}, frozenset())
    rule = known.get(via.name)
    if rule is None:
        raise AttractorError(f"unknown rule '{via.name}'; rules are {', '.join(sorted(known))}", via.loc)
    options = {}
    for key, value in via.options:
        if key in options:
            raise AttractorError(f"rule {via.name}: option '{key}' is given twice", via.loc)
        option = rule.option(key)
        if option is None:
            accepted = ", ".join(o.name for o in rule.options) or "none"
            raise AttractorError(f"rule {via.name} has no option '{key}' (options: {accepted})", via.loc)
        options[key] = option.read(rule.name, value, via.loc)
    disabled = frozenset(r.name for r in known.values()
                         if rule.problem and r.problem == rule.problem and r.name != rule.name)
    return Plan(via, rule, options, disabled)


def check_direction(rule: Rule, rw: Rewrite, node: ir.Node, polarity: int, program: ir.Program) -> None:
    """A bound may only replace a term in the direction that keeps it a bound."""
    if rw.relation in ("=", "=+c") or rw.game or program.objective.sense == "estimate":
        return
    needs = {"<=": 1, "~": 1, "min<=": 1, ">=": -1}[rw.relation]
    if polarity == needs:
        return
    what = {"<=": "an upper bound", "~": "a relaxation", "min<=": "a smoothing", ">=": "a lower bound"}[rw.relation]
    if polarity == 0:
        why = "the objective is not monotone in this term, so the bound says nothing about it"
    elif rw.relation == ">=":
        why = "the term is minimised, and minimising a lower bound drives it to -infinity, not to the optimum"
    elif program.objective.sense == "maximize":
        why = ("the objective is maximised, and the surrogate can grow where the term does not, "
               "so maximising the surrogate would not maximise the objective")
    elif polarity == -1:
        why = ("the term enters with a negative weight, so minimising the objective pushes the term up, and the "
               "surrogate can grow where the term does not")
    else:
        why = "the bound points the wrong way"
    raise AttractorError(f"rule {rule.name} refused: it would substitute {what} ({rw.relation}) for {show(node)}, "
                         f"but {why}", node.loc or program.objective.loc)


def try_rule(rule: Rule, node: ir.Node, ctx: Context, plan: Plan) -> Rewrite | None:
    """The rule's rewrite of `node`, direction-checked; a refusal of the forced rule at a node
    of its problem is the diagnostic, any other refusal means 'not here'."""
    out = _run_rule(rule, node, ctx)
    if isinstance(out, Refusal):
        if ctx.forced:
            found = node_problem(ctx.program, node)
            if found is not None and found.kind == rule.problem:
                raise AttractorError(f"rule {rule.name} does not apply to {show(node)}: {out.reason}",
                                     out.loc or node.loc or ctx.program.objective.loc)
            plan.refusals.append((node, out))
        else:
            plan.declined.append((rule.name, node, out))
        return None
    if out is not None:
        check_direction(rule, out, node, ctx.polarity, ctx.program)
    return out


PASS_SECONDS = 30.0   # the time budget of one pass (SymPy can run for minutes on a user's expression)


def _run_rule(rule: Rule, node: ir.Node, ctx: Context):
    """`rule(node, ctx)`; the pass's budget running out in it, or the rule's mathematics failing
    on the node (SymPy recursing without end on floor(u), a complex value where a real one is
    needed), is a diagnostic naming the rule and the node, at the user's divergence definition
    where the node is one."""
    try:
        return rule(node, ctx)
    except Overrun:
        why = f"did not finish within {PASS_SECONDS:g} s; simplify the expression or force another rule with 'via'"
    except (RecursionError, ArithmeticError, TypeError, ValueError) as e:
        why = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no message'}"
    text = show(node)
    text = text if len(text) <= 80 else text[:77] + "..."
    loc = node.loc or ctx.program.objective.loc
    if isinstance(node, ir.Divergence) and isinstance(ctx.program.decl(node.kind), ir.DivergenceDef):
        loc = ctx.program.decl(node.kind).body.loc or loc
    raise AttractorError(f"rule {rule.name} on {text} {why}", loc) from None


def uncovered(rules: tuple[Rule, ...], program: ir.Program, plan: Plan) -> list[ir.Node]:
    """The nodes of the rules' problems that none of them can take in the bound's direction."""
    problems_here = {r.problem for r in rules if r.problem}
    left = []
    for player in program.players:
        sense = 1 if player.sense == "min" else -1
        for node, pol, path in positions(player.loss, program, sense):
            found = node_problem(program, node)
            if found is None or found.kind not in problems_here:
                continue
            if not any(_keeps_direction(rule, node, plan.context(program, player, rule, pol, path), plan)
                       for rule in rules):
                left.append(node)
    return left


def _keeps_direction(rule: Rule, node: ir.Node, ctx: Context, plan: Plan) -> bool:
    """Does the rule take the node in the bound's direction? Where its rewrite would break the
    bound (or the rule fails on the node), the diagnostic is kept in `plan.unkept`."""
    try:
        return try_rule(rule, node, dataclasses.replace(ctx, forced=False), plan) is not None
    except AttractorError as e:
        plan.unkept.append((rule.name, node, e.message))
        return False


# ---- the one commit path -------------------------------------------------------------------------

def commit(program: ir.Program, index: int, rule: Rule, node: ir.Node, path, rw: Rewrite,
           plan: Plan) -> tuple[ir.Program, Step]:
    """Put the rewrite into the program and record the step.

    A node of a loss is replaced where it stands (`path`); a constraint (not in any loss) is
    removed from the program and its replacement added to player `index`'s loss, with the
    sign of that player's sense. The rewrite's reports are appended, and its training
    defaults fill the `train` options the program leaves unset (the note names them).
    """
    player = program.players[index]
    constraints = program.constraints
    if isinstance(node, ir.Constraint):
        new_loss = ir.Apply("add" if player.sense == "min" else "sub", (player.loss, rw.node))
        constraints = tuple(c for c in constraints if c is not node)
    elif rw.loss is not None:
        new_loss = rw.loss
    else:
        new_loss = replace_at(path, rw.node)
    players = list(program.players)
    players[index] = dataclasses.replace(player, loss=new_loss, prox=player.prox + rw.prox)
    players.extend(rw.players)
    for i, p in enumerate(players):   # new learnables owned by an existing player join its parameters
        owned = tuple(d.name for d in rw.decls if isinstance(d, (ir.Param, ir.Net)) and d.owner == p.name
                      and d.name not in p.params)
        if owned:
            players[i] = dataclasses.replace(p, params=p.params + owned)
    note = rw.note + training_text(program.train, rw.training)
    program = dataclasses.replace(program, players=tuple(players), decls=program.decls + rw.decls,
                                  constraints=constraints, auxiliary=program.auxiliary + rw.auxiliary,
                                  reports=program.reports + rw.reports, train=fill_training(program.train, rw.training))
    roles = dict(rw.roles)
    introduces = tuple(decl_summary(d) + (f"    # {roles[d.name]}" if d.name in roles else "") for d in rw.decls)
    introduces += tuple(f"player {p.name} ({p.sense} over {', '.join(p.params)}): {show(p.loss)}" for p in rw.players)
    options = tuple(sorted(plan.options.items())) if plan.is_forced(rule) else rw.options
    step = Step(rule.name, rw.relation, player.name, node, rw.node, new_loss,
                introduces, rw.conditions, note, options, rw.facts)
    return program, step


# ---- passes ----------------------------------------------------------------------------------------

class RulePass:
    """Apply a table of rules to every player's loss, outermost position first, until none
    applies (a fixed point). `stage` (a key of STAGES) places the pass in the pipeline;
    `covers_all` makes it stand aside unless it can take every node of its problem."""

    covers_all = False

    def __init__(self, name: str, rules: tuple[Rule, ...], stage: str):
        self.name = name
        self.rules = rules
        self.stage = STAGES[stage]

    def accepts(self, program: ir.Program, plan: Plan) -> bool:
        if not self.covers_all or plan.forces_any(self.rules):
            return True
        rules = plan.enabled(self.rules)
        if not rules:
            return False
        left = uncovered(rules, program, plan)
        if left:
            for problem in {r.problem for r in rules if r.problem}:
                plan.passed_over[problem] = (self.name, left)
        return not left

    def apply(self, program: ir.Program, plan: Plan) -> tuple[ir.Program, list[Step]]:
        """Commit the first rewrite of the first player's loss (outermost position, then the
        rules in order) until there is none.

        After a rewrite the next scan resumes where it stood: the players before its player,
        and the positions of its loss before it other than its ancestors, were tried and took
        nothing (`Plan.resume`). The steps come in the order of scanning from the root every
        time, without re-trying every earlier position after each rewrite (a sum of n terms:
        n rescans of its ancestors, not n rescans of the whole loss); when a resumed scan finds
        nothing, one scan from the root confirms the fixed point.
        """
        steps: list[Step] = []
        rules = plan.enabled(self.rules)
        after = 0                      # the first player the next scan tries
        plan.resume = None
        while True:
            resumed = after > 0 or plan.resume is not None
            hit = None
            for index in range(after, len(program.players)):
                hit = self.first(program, program.players[index], rules, plan)
                if hit is not None:
                    break
            plan.resume = None
            if hit is None:
                if not resumed:
                    return program, steps
                after = 0
                continue
            rule, node, path, rw = hit
            program, step = commit(program, index, rule, node, path, rw, plan)
            steps.append(step)
            after = index
            if rw.loss is None and not isinstance(node, ir.Constraint):
                plan.resume = (program.players[index].name, child_indices(path))

    def first(self, program, player, rules, plan: Plan):
        """The first (rule, node, path, rewrite) in the player's loss, outermost first (from
        `plan.resume` on, when it names this player)."""
        sense = 1 if player.sense == "min" else -1
        if plan.resume is not None and plan.resume[0] == player.name:
            where = positions_from(player.loss, plan.resume[1], program, sense)
        else:
            where = positions(player.loss, program, sense)
        for node, pol, path in where:
            for rule in rules:
                if not isinstance(node, rule.matches):
                    continue
                rw = try_rule(rule, node, plan.context(program, player, rule, pol, path), plan)
                if rw is not None:
                    return self.chosen(program, player, rules, rule, node, pol, path, rw, plan)
        return None

    def chosen(self, program, player, rules, rule, node, pol, path, rw, plan: Plan):
        """The hit (rule, node, path, rewrite) the search takes at `node`: rule order's `rule`
        without a search, when `via` forced the node's problem, or for a rule that answers no problem.
        An alternative on the whole loss (`Alternative.whole`) is the hit (rule, loss, None, rewrite)."""
        if plan.choose is None or not rule.problem or (plan.forced is not None and plan.forced.problem == rule.problem):
            return rule, node, path, rw
        found = alternatives(program, player, plan.answering.get(rule.problem, rules), rule, node, pol, path, rw)
        decision = Decision(f"{player.name}: {show(node)}", player.name, node, found,
                            self.alone(program, rule, plan) if len(found) == 1 else "")
        choice = plan.choose(decision)
        taken = decision.alternatives[choice.index]
        if len(decision.alternatives) == 1:
            return rule, node, path, rw
        facts = (("chosen", taken.label), ("runners_up", choice.runners_up)) + ((("rule_order", True),) if choice.rule_order else ())
        note = f"{taken.rewrite.note}; {choice.why}" if taken.rewrite.note else choice.why
        taken_rw = dataclasses.replace(taken.rewrite, facts=taken.rewrite.facts + facts, note=note, options=taken.options)
        if taken.whole:
            return taken.rule, player.loss, None, taken_rw
        return taken.rule, node, path, taken_rw

    def alone(self, program, rule, plan: Plan) -> str:
        """Why `rule` is the only derivation at a node, where another pass for its problem stood
        aside (the relaxations, when some node had no convex surrogate); "" when it simply is."""
        return ""


# ---- choosing among derivations ---------------------------------------------------------------------

TIERS = ("exact", "unbiased", "bound", "surrogate")
TIER_MEANING = (
    "the objective itself, with no draw left",
    "the objective itself, estimated from draws (its expected gradient is the gradient)",
    "the objective is at most the rewritten one at every parameter (<=; or >= closed by a game)",
    "no order between the objective and the rewritten one at the parameters trained "
    "(~: none at all; min<=: only their minima are ordered)",
)


def tier(rw: Rewrite) -> int:
    """The class of a derivation, best first, by what its relation says of the objective at the
    parameters training returns:

    0 exact       `=`, `=+c` with no draw left (a closed form, an enumeration, maximum likelihood
                  over the data): the objective itself.
    1 unbiased    `=`, `=+c` estimated from draws: the objective in expectation.
    2 bound       `<=` (f(θ) <= g(θ) for every θ, so f(θ̂) <= g(θ̂) at the trained θ̂: the value
                  reached certifies the objective there), or `>=` closed by a game.
    3 surrogate   `~` (no order) and `min<=` (min f <= min g, not pointwise). An evolution
                  strategy's g(θ) = E f(θ + σε) is at least min f (an average is never below the
                  minimum: some point near θ̂ does as well as g(θ̂)), but f(θ̂) at the centre
                  training returns may exceed g(θ̂): a smoothing certifies nothing at the trained
                  parameters, so it ranks after every pointwise bound, in one class with the
                  surrogates, within which the search orders by measuring (variance x cost).
                  A smoothing of a maximised loss records `>=` (E f <= max f) for the direction
                  check; its rewrite says it is not pointwise (fact `pointwise` False), and it is
                  a surrogate as well."""
    if rw.relation in ("=", "=+c"):
        drawn = any(isinstance(n, ir.Expect) and not isinstance(n.source, ir.DataSet) for n in rw.node.walk())
        return 1 if drawn or rw.players else 0
    pointwise = dict(rw.facts).get("pointwise", True)
    return 2 if rw.relation in ("<=", ">=") and pointwise else 3


@dataclass(frozen=True)
class Alternative:
    """One way to take a node: a rule, the options it was given (a variant) and its rewrite;
    `whole`: the rewrite replaces the whole loss of the player that holds the node (a rule that
    matches only a whole loss and answers every node of its problem in it)."""

    rule: Rule
    options: tuple          # ((key, value), ...)
    rewrite: Rewrite
    tier: int
    whole: bool = False

    @property
    def label(self) -> str:
        """The derivation as `via` would name it: `jensen(iwae=5, dreg)`."""
        given = ", ".join(k if v is True else f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.options)
        return f"{self.rule.name}({given})" if given else self.rule.name


@dataclass(frozen=True)
class Decision:
    """A node with its alternatives, in rule order (the first is what rule order takes). `key`
    names the node the same way in every compilation of the program that reaches it."""

    key: str
    player: str
    node: ir.Node
    alternatives: tuple[Alternative, ...]
    alone: str = ""         # why the one alternative is the only one, where other rules stood aside

    @property
    def best(self) -> tuple[int, ...]:
        """The alternatives of the best class."""
        top = min(a.tier for a in self.alternatives)
        return tuple(i for i, a in enumerate(self.alternatives) if a.tier == top)


@dataclass(frozen=True)
class Choice:
    """What the search took (an index into the decision's alternatives), why, and the runners-up
    ((derivation, relation, what was measured), ...), recorded as facts of the step."""

    index: int
    why: str = ""
    runners_up: tuple = ()
    rule_order: bool = False    # taken in rule order (--no-search), not by the search


def ranked(decision: Decision, measured: dict) -> list[int]:
    """The alternatives best first: by class (exact, unbiased, bound, surrogate); within a class
    the measured ones by gradient variance x cost per step (an exact route has variance 0, so the
    cheapest exact one leads), then cost; unmeasured ones (or those that failed to measure) after
    them, in rule order. `measured`: index -> (variance, cost), both finite."""
    def key(i):
        found = measured.get(i)
        return (decision.alternatives[i].tier, found is None,
                (found[0] * found[1], found[1]) if found is not None else (0.0, 0.0), i)
    return sorted(range(len(decision.alternatives)), key=key)


def alternatives(program, player, rules, rule, node, pol, path, rw) -> tuple[Alternative, ...]:
    """Every rule for the same problem, of this pass or a later one (an exact route's node is also
    a game's: maximum likelihood and a critic for KL(data || q)), that takes `node` as written or
    as `via` would force it, in each of its variants (rule order, variants in the rule's order); a
    variant that refuses, fails or would break a bound's direction is no alternative, nor one
    whose rewrite is that of an earlier alternative (a Rao-Blackwellisation with one latent).

    A rule that does not take `node` where it stands but takes the player's whole loss, with the
    player's sense as polarity, is an alternative on the whole loss (`whole`) when its rewrite
    says it answers `node` (fact `answers`: the nodes of its problem it takes, by identity):
    evolution strategies smooth the whole loss over the parameters of every such node in it."""
    found = [Alternative(rule, (), rw, tier(rw))]
    for other in rules:
        if other.problem != rule.problem:
            continue
        for variant in other.variants:
            options = tuple(sorted(variant.items()))
            if other is rule and not options:
                continue
            out, whole = None, False
            if isinstance(node, other.matches):
                out = _forced_or_not(other, node, program, player, pol, dict(variant), path)
            if out is None and path is not None and isinstance(player.loss, other.matches):
                sense = 1 if player.sense == "min" else -1
                out = _forced_or_not(other, player.loss, program, player, sense, dict(variant), None)
                whole = out is not None and _answers(out, node) is True
                out = out if whole else None
            if out is not None and not any(out.node == a.rewrite.node and out.players == a.rewrite.players for a in found):
                found.append(Alternative(other, options, out, tier(out), whole))   # a variant that changes nothing is none
    return tuple(found)


def _forced_or_not(rule: Rule, node: ir.Node, program, player, pol: int, variant: dict, path) -> Rewrite | None:
    out = _variant(rule, node, Context(program, player, pol, dict(variant), False, path), program)
    if out is None:
        out = _variant(rule, node, Context(program, player, pol, dict(variant), True, path), program)
    return out


def _answers(rw: Rewrite, node: ir.Node) -> bool | None:
    """Does the rewrite say it takes `node` (fact `answers`, by identity)? None: it says nothing."""
    answers = dict(rw.facts).get("answers")
    return None if answers is None else any(n is node for n in answers)


def _variant(rule: Rule, node: ir.Node, ctx: Context, program: ir.Program) -> Rewrite | None:
    try:
        out = _run_rule(rule, node, ctx)
        if out is None or isinstance(out, Refusal):
            return None
        check_direction(rule, out, node, ctx.polarity, program)
        return out
    except AttractorError:
        return None


# ---- the manager -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Derivation:
    objective: str
    steps: tuple[Step, ...]


def run_passes(program: ir.Program, passes, via: ir.RuleRef | None,
               choose: Callable | None = None) -> tuple[ir.Program, Derivation]:
    """Run the passes in order under one plan; refuse what is left intractable. `choose`
    (Decision -> Choice) chooses among the derivations of each node; None keeps rule order."""
    plan = make_plan(passes, via)
    plan.choose = choose
    for p in passes:
        for r in plan.enabled(p.rules):
            if r.problem:
                plan.answering.setdefault(r.problem, []).append(r)
    objective = show(program.objective.expr)
    steps: list[Step] = []
    for p in passes:
        if p.accepts(program, plan):
            with time_budget(PASS_SECONDS, f"pass {p.name} did not finish within {PASS_SECONDS:g} s",
                             program.objective.loc):
                program, done = p.apply(program, plan)
            steps.extend(done)
    if via is not None and not any(s.rule == via.name for s in steps):
        reason = plan.refusals[0][1].reason if plan.refusals else plan.forced.unmatched
        raise AttractorError(f"rule {via.name} does not apply" + (f": {reason}" if reason else " to this objective"),
                             (plan.refusals[0][1].loc if plan.refusals else None) or via.loc)
    left = program_problems(program)
    if left:
        problem = left[0]
        known = [r for p in passes for r in p.rules]
        tried = sorted(r.name for r in known if r.problem == problem.kind)
        tried_text = ", ".join(tried) if tried else "none exists yet"
        why = dict.fromkeys(f"{name}: {r.reason}" for name, n, r in plan.declined
                            if n == problem.node and name in tried)     # why each rule tried declined the node
        tried_text += f" ({'; '.join(why)})" if why else ""
        what = show(problem.node) if not isinstance(problem.node, ir.Constraint) else "subject to ..."
        raise AttractorError(f"intractable: {what}: {problem.reason}; rules tried: {tried_text}",
                             problem.node.loc or program.objective.loc)
    return program, Derivation(objective, tuple(steps))
