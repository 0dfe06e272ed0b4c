"""`attractor explain`: for each intractable node, the rules that match and the one taken;
`explain --rank`: every derivation of each node measured, and the one chosen (SPEC 9.4)."""
from __future__ import annotations

from compiler import ir
from compiler.analysis.problems import program_problems
from compiler.driver.api import compile_file
from compiler.frontend.checker import check
from compiler.frontend.parser import parse
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import constraint_text, show
from compiler.rewrite.manager import check_direction
from compiler.rewrite.rule import Context, Refusal
from compiler.rewrite.strategies import ancestors, positions


def _matches(program: ir.Program, node: ir.Node, rules) -> list[tuple[str, str]]:
    """(rule, relation) for every rule that rewrites `node`, or a term containing it, in some
    player's loss; a rewrite the pass manager would refuse (a bound in the wrong direction)
    is shown refused, with its reason."""
    out: dict[str, str] = {}
    if isinstance(node, ir.Constraint):   # not in any loss: the rules are tried on the constraint itself
        for rule in rules:
            try:
                rw = rule(node, Context(program, program.players[0], 1, {}, False, None))
            except AttractorError as e:
                out[rule.name] = f"refused: {e.message}"
                continue
            if rw is not None and not isinstance(rw, Refusal):
                out[rule.name] = rw.relation
        return list(out.items())
    for player in program.players:
        sense = 1 if player.sense == "min" else -1
        at = {id(n): (n, pol, path) for n, pol, path in positions(player.loss, program, sense)}
        if id(node) not in at:
            continue
        chain = [node] + [parent for parent, _ in ancestors(at[id(node)][2])]
        for n in chain:
            _, pol, path = at[id(n)]
            for rule in rules:
                if rule.name in out:
                    continue
                try:
                    rw = rule(n, Context(program, player, pol, {}, False, path))
                    rw = None if isinstance(rw, Refusal) else rw    # of the rule's kind, but not for it
                    if rw is not None:
                        check_direction(rule, rw, n, pol, program)
                except AttractorError as e:
                    out[rule.name] = f"refused: {e.message}"
                    continue
                if rw is not None:
                    out[rule.name] = rw.relation
    return list(out.items())


def explain_rank(path: str, json: bool = False, search: bool | None = None, search_budget: float | None = None) -> str:
    """The table of SPEC 9.4: for each node with a choice of derivation, every derivation with its
    relation, gradient variance and ms per step at the initial parameters, the chosen one marked
    (text: aligned columns; `json`: the normative JSON). Every alternative listed is measured:
    with `search` False rule order's choice is marked, and once `search_budget` is spent the nodes
    left take their class's first derivation; neither changes what is measured."""
    prog = compile_file(path, search=search, search_budget=search_budget, rank=True)
    return prog.ranking.to_json() if json else prog.ranking.text()


def explain(path: str, search: bool | None = None, search_budget: float | None = None) -> str:
    from passes import PIPELINE
    text = open(path).read()
    try:
        typed = check(parse(text))
    except AttractorError as e:
        raise e.located(path, text) from None
    rules = [r for p in PIPELINE for r in getattr(p, "rules", ())]
    problems = program_problems(typed)
    lines = []
    if not problems:
        lines.append("every term is tractable as written: no rule is needed")
    try:
        prog = compile_file(path, search=search, search_budget=search_budget)
        taken = prog.derivation.steps
        chosen_error = None
    except AttractorError as e:
        taken, chosen_error = (), e
    for pr in problems:
        where = f"{pr.node.loc}: " if pr.node.loc else ""
        what = constraint_text(pr.node) if isinstance(pr.node, ir.Constraint) else show(pr.node)
        lines.append(f"{where}{what}")
        lines.append(f"  intractable: {pr.reason}")
        candidates = [r for r in rules if r.problem == pr.kind]
        matches = _matches(typed, pr.node, candidates)
        if not candidates:
            lines.append("  rules for this: none exist yet")
        for name, rel in matches:
            lines.append(f"  matches: {name} ({rel})")
        for r in candidates:
            if r.name not in {m for m, _ in matches}:
                lines.append(f"  does not match here: {r.name}")
        step = next((s for s in taken if any(n == pr.node for n in s.matched.walk())), None)
        if step is not None:
            lines.append(f"  taken: {step.rule} ({step.relation})" + (f" — {step.note}" if step.note else ""))
            for name, relation, measured in step.fact("runners_up", ()):
                lines.append(f"  runner-up: {name} ({relation}): {measured}")
    if typed.objective.via:
        lines.append(f"forced by 'via': {typed.objective.via.name}")
    if chosen_error is not None:
        lines.append("compiling fails:")
        lines.append(str(chosen_error))
    else:
        lines.append("derivation taken:")
        for s in prog.derivation.steps:
            lines.append(f"  {s.rule} ({s.relation}): {s.before}  ->  {s.after}")
    return "\n".join(lines)
