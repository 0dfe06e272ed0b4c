"""Choosing among derivations by measuring them (SPEC 9.4), and the table `explain --rank` prints.

The pass manager knows the alternatives at a node (every rule of the node's problem that takes
it, in each of its variants) and the policy that orders them (`manager.ranked`: exact before
unbiased before bounds before surrogates; within a class by gradient variance x cost). What it
cannot do is measure, which needs lowering: that is done here, one layer up, outside the passes.

The search compiles the program with a chooser that takes, at every node, the fixed choice
where one was made and otherwise the first of the best class; the first node whose best class
holds more than one derivation is measured, each alternative by compiling the program with
that choice (the nodes after it in their default), lowering it and measuring at the initial
parameters of `fit(seed)`:

    grad_variance  tr Cov_k[v(θ₀; ε_k, B)], the trace of the covariance of the vector field v
                   (every player's gradient) over k = 1..32 independent draws ε_k on one
                   minibatch B (ddof = 1): 0 for an exact derivation;
    cost           the floating-point operations (plus transcendentals) XLA counts in the
                   jitted field: deterministic, so the choice is a function of the seed;
    ms_per_step    the median wall time of the jitted field over those calls (printed, not
                   ranked on: a clock is not deterministic).

The measured derivation is fixed and the next such node searched, until none is left. A node
with one derivation, or one in the best class, is never measured. The step's note says why the
derivation was taken and names the runner-up and why it lost: a lower class (with what the
classes mean, `manager.TIER_MEANING`), or more gradient variance x cost.

A non-differentiable node has its relaxations and, on the whole loss that holds it, evolution
strategies (`Alternative.whole`, said in the row's note); a pointwise bound ranks before the
smoothing (`manager.tier`). A node where only one derivation applies because the others stood
aside (evolution strategies where no convex surrogate keeps the bound) is listed too, its row
saying so (`Decision.alone`). The time budget is checked
before each node: a node begun is measured whole, so that its choice does not depend on the
machine's load; when the budget is spent, the nodes left take their class's first derivation in
rule order, and say so.

Rank mode (`explain --rank`) measures every alternative of every node with more than one, to
print them all: the budget and `--no-search` (rule order: the first derivation that applies)
govern only which one is chosen, never which are measured. An alternative that cannot be
measured (it cannot be lowered, or its data come only with --data) says why in the table.
Measurements are cached in-process by (program text, via, the choices before, node, derivation, seed).
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import show
from compiler.rewrite.manager import TIER_MEANING, TIERS, Choice, Decision, ranked

SEARCH_SECONDS = 10.0    # the default time budget of one search
DRAWS = 32               # independent draws of the field per measurement

_measured: dict = {}     # cache key -> Measurement
RULE_ORDER = "rule order (--no-search): the first rule that applies"


@dataclass(frozen=True)
class Measurement:
    """One derivation measured at the initial parameters; `failed` says why it could not be."""

    grad_variance: float | None = None
    cost: float | None = None
    ms_per_step: float | None = None
    failed: str = ""

    @property
    def usable(self) -> bool:
        return not self.failed and self.grad_variance is not None and self.grad_variance == self.grad_variance \
            and self.grad_variance != float("inf")


@dataclass(frozen=True)
class Row:
    """One alternative of a node in the table."""

    derivation: str
    relation: str
    tier: str
    measurement: Measurement | None
    chosen: bool
    note: str = ""          # where the derivation applies, or why it is the only one


@dataclass(frozen=True)
class NodeRanking:
    """A node, its alternatives best first, how the choice was made, and what rule order takes."""

    node: str
    player: str
    rows: tuple[Row, ...]
    how: str
    rule_order: str


@dataclass
class Ranking:
    """The search's result: every node with a decision, in derivation order."""

    nodes: list[NodeRanking] = field(default_factory=list)
    seconds: float = 0.0
    budget_spent: bool = False

    def as_dict(self) -> dict:
        """The JSON of SPEC 9.4. An alternative that could not be measured (or measured a value
        that is not finite, which JSON cannot hold) has null for both numbers and an "error"
        saying why: the only place a null appears. A row with something to say of where the
        derivation applies (on the whole loss) or why it is the only one has a "note"."""
        return {"nodes": [{"node": n.node, "alternatives": [_alternative_json(r) for r in n.rows]} for n in self.nodes]}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, allow_nan=False)

    def text(self) -> str:
        """Aligned columns, one block per node; `*` marks the derivation taken."""
        if not self.nodes:
            return "no node has a choice of derivation: every rewrite was the only one that applies"
        out = []
        for n in self.nodes:
            out.append(f"node: {n.node}   (player {n.player})")
            header = ("", "derivation", "relation", "class", "grad variance", "ms/step", "note")
            table = [header] + [("*" if r.chosen else "", r.derivation, r.relation, r.tier, _number(r.measurement, "grad_variance"),
                                 _number(r.measurement, "ms_per_step"),
                                 "; ".join(filter(None, (r.note, r.measurement.failed if r.measurement else "not measured"))))
                                for r in n.rows]
            widths = [max(len(row[i]) for row in table) for i in range(len(header))]
            for row in table:
                out.append(("  " + "  ".join(c.ljust(w) if i < 4 or i == 6 else c.rjust(w)
                                              for i, (c, w) in enumerate(zip(row, widths)))).rstrip())
            out.append(f"  chosen: {n.how}")
            taken = next(r.derivation for r in n.rows if r.chosen)
            if taken != n.rule_order:
                out.append(f"  rule order (--no-search) takes {n.rule_order}")
            out.append("")
        out.append(f"search: {self.seconds:.1f} s" + ("; its time budget ran out, the nodes left take rule order"
                                                       if self.budget_spent else ""))
        return "\n".join(out)


def search_options(args) -> dict:
    """compile_file's search arguments from the command line: every command that compiles
    searches (SPEC 9.4) unless `--no-search` (or ATTRACTOR_NO_SEARCH in the environment: search
    None leaves it to `search_by_default`); `--search-budget S`. The seed is 0 whatever `--seed`
    trains with, so that run, eval and sample of one program take the same derivation."""
    text = getattr(args, "search_budget", None)
    budget = None
    if text is not None:
        try:
            budget = float(text)
        except ValueError:
            raise AttractorError(f"--search-budget must be a number of seconds, got {text!r}", None, "--search-budget") from None
        if not 0 <= budget < float("inf"):
            raise AttractorError(f"--search-budget must be a number of seconds >= 0, got {text}", None, "--search-budget")
    return {"search": False if getattr(args, "no_search", False) else None, "search_budget": budget}


def _alternative_json(row: Row) -> dict:
    m = row.measurement
    out = {"derivation": row.derivation, "relation": row.relation, "grad_variance": None, "ms_per_step": None, "chosen": row.chosen}
    if row.note:
        out["note"] = row.note
    if m is None:
        return {**out, "error": "not measured"}
    if m.failed:
        return {**out, "error": m.failed}
    numbers = {"grad_variance": m.grad_variance, "ms_per_step": m.ms_per_step}
    bad = [f"{name} is {value}" for name, value in numbers.items() if not (value is not None and math.isfinite(value))]
    if bad:
        return {**out, "error": "not finite: " + ", ".join(bad)}
    return {**out, **numbers}


def _number(m: Measurement | None, name: str) -> str:
    value = getattr(m, name) if m is not None else None
    return "-" if value is None else f"{value:.4g}"


class _Chooser:
    """The manager's `choose`: the fixed choice at a node searched already, else the first of
    the best class; the first node that needs measuring is kept in `pending`."""

    def __init__(self, fixed: dict, measure_all: bool, rule_order: bool = False):
        self.fixed = fixed                 # decision key -> (label, {index: Measurement}, why)
        self.measure_all = measure_all
        self.rule_order = rule_order
        self.pending: Decision | None = None
        self.seen: list[Decision] = []

    def __call__(self, decision: Decision) -> Choice:
        self.seen.append(decision)
        labels = [a.label for a in decision.alternatives]
        if decision.key in self.fixed and self.fixed[decision.key][0] in labels:
            label, measured, why = self.fixed[decision.key]
            index = labels.index(label)
            return Choice(index, why, _runners_up(decision, measured, index), self.rule_order)
        if self.pending is None and needs_measuring(decision, self.measure_all):
            self.pending = decision
        if self.rule_order:
            return Choice(0, RULE_ORDER, _runners_up(decision, {}, 0), True)
        index = ranked(decision, {})[0]
        return Choice(index, _static_why(decision, index), _runners_up(decision, {}, index))


def needs_measuring(decision: Decision, measure_all: bool) -> bool:
    """A node is measured to choose when its best class holds several derivations; in rank mode
    (`measure_all`) every listed node is: one with several, or one whose only derivation is
    only because the others stood aside."""
    if len(decision.alternatives) == 1:
        return measure_all and bool(decision.alone)
    return measure_all or len(decision.best) > 1


def _static_why(decision: Decision, index: int) -> str:
    taken = decision.alternatives[index]
    if len(decision.alternatives) == 1:
        return "the only derivation: the other rules of its problem stood aside (the row says why)" if decision.alone \
            else "the only derivation"
    if len(decision.best) == 1:
        why = f"chosen without measuring: the only {TIERS[taken.tier]} derivation of {len(decision.alternatives)}"
    else:
        why = f"chosen in rule order: the first {TIERS[taken.tier]} derivation (not measured)"
    return why + _runner_up_why(decision, index, {})


def _runner_up_why(decision: Decision, index: int, usable: dict) -> str:
    """'; runner-up D (relation): why it lost' for the best alternative not taken: a lower class
    (what each class means), or more gradient variance x cost as measured, or later in rule order."""
    rest = [i for i in ranked(decision, usable) if i != index]
    if not rest:
        return ""
    taken, other = decision.alternatives[index], decision.alternatives[rest[0]]
    where = ", on the whole loss" if other.whole else ""
    head = f"; runner-up {other.label} ({other.rewrite.relation}{where})"
    if other.tier != taken.tier:
        return (f"{head} is a {TIERS[other.tier]} derivation: {TIER_MEANING[other.tier]}; it ranks after a "
                f"{TIERS[taken.tier]} one: {TIER_MEANING[taken.tier]}")
    if index in usable and rest[0] in usable:
        (v0, c0), (v1, c1) = usable[index], usable[rest[0]]
        return (f"{head}: gradient variance x cost {v1:.4g} x {c1:.4g} = {v1 * c1:.4g} against "
                f"{v0:.4g} x {c0:.4g} = {v0 * c0:.4g}")
    return f"{head}: not measured, and later in rule order"


def _runners_up(decision: Decision, measured: dict, index: int) -> tuple:
    """((derivation, relation, what was measured), ...) of the alternatives not taken, best first."""
    out = []
    for i in ranked(decision, {k: (m.grad_variance, m.cost) for k, m in measured.items() if m.usable}):
        if i == index:
            continue
        a, m = decision.alternatives[i], measured.get(i)
        out.append((a.label, a.rewrite.relation, _measured_text(m) if m is not None else f"{TIERS[a.tier]}, not measured"))
    return tuple(out)


def _measured_text(m: Measurement) -> str:
    if m.failed:
        return f"not measured: {m.failed}"
    return f"grad variance {m.grad_variance:.4g}, {m.ms_per_step:.3g} ms/step, {m.cost:.4g} flops/step"


class Search:
    """The search among derivations of one program. `compile_with(choose)` compiles the program
    with a chooser and returns the CompiledProgram (build(), load_data()); `key` names the
    program (its text and via) for the cache."""

    def __init__(self, compile_with: Callable, key: tuple, seed: int = 0, budget: float = SEARCH_SECONDS,
                 measure_all: bool = False, rule_order: bool = False):
        self.compile_with = compile_with
        self.rule_order = rule_order
        self.key = key
        self.seed = seed
        self.budget = budget
        self.measure_all = measure_all

    def run(self):
        """The program compiled with the choices measured, and its Ranking (`.ranking`)."""
        started = time.perf_counter()
        fixed: dict = {}
        spent = False
        while True:
            chooser = _Chooser(fixed, self.measure_all, self.rule_order)
            prog = self.compile_with(chooser)
            decision = chooser.pending
            if decision is None:
                break
            measured = {}
            order = ranked(decision, {})
            best = set(decision.best)
            if not self.rule_order and time.perf_counter() - started >= self.budget:
                spent = True
            choosing = not (spent or self.rule_order)
            if choosing or self.measure_all:   # a node begun is measured whole: its choice does not depend on the load
                for i in sorted(range(len(order)), key=lambda i: (i not in best, order.index(i))):
                    if self.measure_all or i in best:
                        measured[i] = self.measure(fixed, decision, i)
            usable = {i: (m.grad_variance, m.cost) for i, m in measured.items() if m.usable} if choosing else {}
            if self.rule_order:
                index, why = 0, RULE_ORDER
            else:
                index = ranked(decision, usable)[0]
                why = _measured_why(decision, index, usable, spent)
            fixed[decision.key] = (decision.alternatives[index].label, measured, why)
        ranking = Ranking(_table(chooser.seen, fixed, self.rule_order), time.perf_counter() - started, spent)
        return replace(prog, ranking=ranking)

    def measure(self, fixed: dict, decision: Decision, index: int) -> Measurement:
        label = decision.alternatives[index].label
        key = (self.key, tuple(sorted((k, v[0]) for k, v in fixed.items())), decision.key, label, self.seed)
        if key not in _measured:
            forced = {**fixed, decision.key: (label, {}, "")}
            try:
                prog = self.compile_with(_Chooser(forced, False))
                _measured[key] = gradient_statistics(prog, self.seed)
            except Exception as e:     # a derivation that cannot be lowered or run is no candidate
                reason = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
                _measured[key] = Measurement(failed=str(reason).splitlines()[0][:120])
        return _measured[key]


def _measured_why(decision: Decision, index: int, usable: dict, spent: bool) -> str:
    taken = decision.alternatives[index]
    if len(decision.alternatives) == 1:
        return _static_why(decision, index)
    if index not in usable:
        return (f"chosen in rule order: the first {TIERS[taken.tier]} derivation"
                + (" (the search's time budget ran out)" if spent else " (no alternative could be measured)")
                + _runner_up_why(decision, index, {}))
    rivals = sum(a.tier == taken.tier for a in decision.alternatives)
    if rivals == 1:
        return (f"chosen without measuring: the only {TIERS[taken.tier]} derivation of {len(decision.alternatives)}"
                + _runner_up_why(decision, index, usable))
    return (f"chosen by measuring at the initial parameters: the least gradient variance x cost of {rivals} "
            f"{TIERS[taken.tier]} derivations" + _runner_up_why(decision, index, usable))


def _table(seen: list[Decision], fixed: dict, rule_order: bool = False) -> list[NodeRanking]:
    nodes = []
    for decision in seen:
        if len(decision.alternatives) < 2 and not decision.alone:
            continue
        label, measured, why = fixed.get(decision.key, (None, {}, ""))
        usable = {i: (m.grad_variance, m.cost) for i, m in measured.items() if m.usable}
        order = ranked(decision, usable)
        if rule_order:
            order, chosen, why = list(range(len(decision.alternatives))), 0, RULE_ORDER
        else:
            chosen = order[0] if label is None else [a.label for a in decision.alternatives].index(label)
        rows = tuple(Row(decision.alternatives[i].label, decision.alternatives[i].rewrite.relation,
                         TIERS[decision.alternatives[i].tier], measured.get(i), i == chosen, _row_note(decision, i))
                     for i in order)
        nodes.append(NodeRanking(show(decision.node), decision.player, rows, why or _static_why(decision, chosen),
                                 decision.alternatives[0].label))
    return nodes


def _row_note(decision: Decision, index: int) -> str:
    """Where the derivation applies, when not at the node itself, and why it is the only one."""
    a = decision.alternatives[index]
    parts = []
    if a.whole:
        parts.append(f"applied to player {decision.player}'s whole loss, which holds the node")
    if len(decision.alternatives) == 1 and decision.alone:
        parts.append(f"the only alternative: {decision.alone}")
    return "; ".join(parts)


def gradient_statistics(prog, seed: int = 0, draws: int = DRAWS) -> Measurement:
    """The field of the lowered program at the initial parameters of `fit(seed)`: the trace of
    its covariance over `draws` independent keys on one minibatch, XLA's operation count of the
    jitted field, and its median milliseconds per call (the first call, which compiles, excluded)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    mod = prog.build()
    data = mod.as_data(prog.load_data()) if mod.DATA_VARS else {}
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)         # as fit() does
    params = mod.init(k_init)
    k_batch, k_draws = jax.random.split(key)
    batch = mod.minibatch(data, k_batch, mod.BATCH)
    batch = {**batch, "#step": jnp.asarray(0, jnp.int32), "#total": jnp.asarray(mod.STEPS or 1, jnp.int32)}
    compiled = jax.jit(mod.field).lower(params, k_draws, batch).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else (analysis or {})
    cost = float(analysis.get("flops", 0.0)) + float(analysis.get("transcendentals", 0.0))
    values, times = [], []
    for i in range(draws):
        t = time.perf_counter()
        v = jax.block_until_ready(compiled(params, jax.random.fold_in(k_draws, i), batch))
        times.append(time.perf_counter() - t)
        leaves = jax.tree.leaves(v)
        values.append(np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in leaves]) if leaves else np.zeros(0))
    stacked = np.stack(values)
    variance = float(stacked.var(axis=0, ddof=1).sum()) if stacked.size else 0.0
    return Measurement(variance, max(cost, 1.0), 1e3 * statistics.median(times[1:] or times))
