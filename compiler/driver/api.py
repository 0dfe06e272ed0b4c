"""The Python API: compile_file / compile_source → CompiledProgram (ir, derivation, field, build)."""
from __future__ import annotations

import dataclasses
import json
import linecache
import os
import sys
import types
from pathlib import Path

from compiler import ir
from compiler.frontend.checker import check
from compiler.frontend.parser import parse
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import program_text, rule_text, show, to_json
from compiler.math.latex import derivation_latex
from compiler.rewrite.manager import run_passes
from compiler.rewrite.rule import Step


def estimators(program: ir.Program, player: ir.Player) -> dict[str, str]:
    """For every expectation in the player's loss, the gradient estimator used."""
    out = dict(player.estimators)
    for n in player.loss.walk():
        if isinstance(n, ir.Expect):
            head = show(ir.Expect(n.binder, n.source, ir.Num(0), n.reduce)).rsplit(" ", 1)[0]
            if n.estimator:
                out[head] = n.estimator
            elif isinstance(n.source, ir.DataSet):
                out.setdefault(head, "exact")
            else:
                out.setdefault(head, "monte_carlo")
    return out


class _Text:
    """A printable view with text/json/latex forms, each made by a function when first asked
    for (a 5000-term objective's LaTeX or JSON costs seconds nobody printing text should pay)."""

    def __init__(self, text, data, latex):
        self._makers = {"text": text, "data": data, "latex": latex}
        self._made: dict[str, object] = {}

    def _part(self, which: str):
        if which not in self._made:
            self._made[which] = self._makers[which]()
        return self._made[which]

    def __str__(self) -> str:
        return self._part("text")

    __repr__ = __str__

    def to_json(self) -> str:
        return json.dumps(self._part("data"), indent=2)

    def to_latex(self) -> str:
        return self._part("latex")

    def _repr_latex_(self) -> str:
        return "$$" + self._part("latex") + "$$"


@dataclasses.dataclass(frozen=True)
class Field:
    """The vector field the rewriting ends in: each player's sense, parameters, loss, gradient
    estimators and proximal steps, the closed-form updates, and the dynamics."""

    program: ir.Program
    dynamics: str

    def __str__(self) -> str:
        out = [f"vector field (dynamics: {self.dynamics}):"]
        for pl in self.program.players:
            params = ", ".join(pl.params) or "nothing (evaluated only)"
            out.append(f"  player {pl.name}: {pl.sense} over {params}")
            out.append(f"    loss: {show(pl.loss)}")
            for head, est in estimators(self.program, pl).items():
                out.append(f"    {head}: {est}")
            for param, kind, weight in pl.prox:
                out.append(f"    proximal step: {param} <- prox[{show(weight)} * {kind}]")
        for param, value in (v for k, v in self.program.auxiliary if k == "update"):
            out.append(f"  after every step, in closed form: {param} <- {show(value)}")
        return "\n".join(out)

    def as_dict(self) -> dict:
        return {"players": [{"name": p.name, "params": list(p.params), "sense": p.sense,
                             "estimators": estimators(self.program, p)} for p in self.program.players],
                "dynamics": self.dynamics}


@dataclasses.dataclass(frozen=True)
class Derivation:
    """How the objective became the field: the objective as written (with its `via`), the
    steps (rule, relation, player, matched node, replacement, options, facts: `Step`) and the
    field they end in. Prints as the derivation text (`attractor compile --show derivation`);
    `.to_json()` and `.to_latex()` are read from the steps' fields, never from printed text."""

    objective: ir.Objective
    steps: tuple[Step, ...]
    field: Field

    def __str__(self) -> str:
        o = self.objective
        out = [f"objective: {o.sense} {show(o.expr)}" + (f" via {rule_text(o.via)}" if o.via else "")]
        if not self.steps:
            out.append("\nno rewrite needed: every term is tractable as written")
        for i, s in enumerate(self.steps, 1):
            out.append(f"\nstep {i}: {s.rule}   relation: original {s.relation} rewritten   (player {s.player})")
            out.append(f"  match:   {s.before}")
            out.append(f"  becomes: {s.after}")
            out.extend(f"  checked: {c}" for c in s.conditions)
            out.extend(f"  introduces: {d}" for d in s.introduces)
            if s.note:
                out.append(f"  note: {s.note}")
            out.append(f"  result:  {s.result}")
        out.append("")
        out.append(str(self.field))
        return "\n".join(out)

    __repr__ = __str__

    def as_dict(self) -> dict:
        return {
            "objective": f"{self.objective.sense} {show(self.objective.expr)}",
            "steps": [{"rule": s.rule, "relation": s.relation, "introduces": list(s.introduces),
                       "conditions": list(s.conditions), "result": s.result, **choice_of(s)} for s in self.steps],
            "field": self.field.as_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def to_latex(self) -> str:
        return derivation_latex(self.objective, self.steps)

    def _repr_latex_(self) -> str:
        return "$$" + self.to_latex() + "$$"


def choice_of(step: Step) -> dict:
    """The search's choice at a step, for the JSON derivation: the derivation taken and the
    runners-up with what was measured of them (empty where nothing was chosen among several)."""
    if step.fact("chosen") is None:
        return {}
    return {"chosen": step.fact("chosen"),
            "runners_up": [{"derivation": d, "relation": r, "measured": m} for d, r, m in step.fact("runners_up", ())]}


@dataclasses.dataclass
class CompiledProgram:
    """A compiled program: the typed program as written, the program the passes made, the
    steps they recorded and the dynamics of its field."""

    source: str
    filename: str
    typed: ir.Program
    program: ir.Program
    recorded: tuple[Step, ...]
    dynamics: str
    ranking: object = None     # the search among derivations (compiler.driver.rank.Ranking), when one ran

    # ---- printable views ------------------------------------------------------------------
    @property
    def ir(self) -> _Text:
        return _Text(lambda: program_text(self.program), lambda: to_json(self.program),
                     lambda: derivation_latex(self.program.objective, ()))

    @property
    def derivation(self) -> Derivation:
        return Derivation(self.typed.objective, self.recorded, self.field_view())

    def field_view(self) -> Field:
        return Field(self.program, self.dynamics)

    @property
    def field(self) -> _Text:
        view = self.field_view()
        return _Text(lambda: str(view), view.as_dict, self.to_latex)

    def derivation_text(self) -> str:
        return str(self.derivation)

    def spec_json(self) -> dict:
        return self.derivation.as_dict()

    def to_json(self) -> str:
        return self.derivation.to_json()

    def to_latex(self) -> str:
        return self.derivation.to_latex()

    def _repr_latex_(self) -> str:
        return "$$" + self.to_latex() + "$$"

    # ---- code ---------------------------------------------------------------------------------
    @property
    def title(self) -> str:
        stem = Path(self.filename).stem
        return stem if stem.isidentifier() and not stem.startswith("__") else "program"

    def emit(self, dynamics: str | None = None, draws_of: str | None = None) -> str:
        from compiler.backend.emit import emit_module
        from compiler.driver.as_written import as_written, reports_as_written
        where = Path(self.filename)
        try:
            found = as_written(self.typed, self.program)
            written = (found.expr, found.program, found.estimator, found.reason)
            reports = reports_as_written(self.typed, self.program)
        except AttractorError as e:
            raise e.located(self.filename, self.source) from None
        return emit_module(self.program, self.title, dynamics or self.dynamics,
                           str(where.resolve().parent) if where.exists() else None, self.recorded, written, reports,
                           draws_of)

    def build(self, dynamics: str | None = None, draws_of: str | None = None) -> types.ModuleType:
        """Import the emitted module (the very source `--emit jax` writes; with `draws_of`, a block
        it draws from with `draw(params, key, n, given)`, as `attractor sample --of` uses it)."""
        source = self.emit(dynamics, draws_of)
        name = f"attractor_emitted_{self.title}"
        filename = f"<attractor:{self.title}>"
        module = types.ModuleType(name)
        module.__file__ = str(Path(self.filename).resolve()) if Path(self.filename).exists() else filename
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), module.__dict__)
        module.SOURCE_TEXT = source
        return module

    def load_data(self, override: str | None = None) -> dict:
        """The program's data (or `override`, a source such as `npz("file.npz")`), checked to lie
        in the support of every model that observes them (`check_support`)."""
        from compiler.data.datasets import DatasetError, load
        from compiler.driver.data_support import check_support
        base = Path(self.filename).resolve().parent if Path(self.filename).exists() else Path.cwd()
        if override is not None:
            src = parse_source(override)
            base = Path.cwd()
        else:
            src = self.program.data_source
        variables = list(self.program.data_vars)
        if not variables:
            return {}
        if src is None:
            raise AttractorError("the program's data have no source: bind them with --data SOURCE",
                                 self.program.of_type(ir.DataDecl)[0].loc, self.filename, self.source)
        try:
            data = load(src.name, src.args, dict(src.kwargs), variables, base)
        except DatasetError as e:
            loc = src.loc if override is None else None
            raise AttractorError(str(e), loc, self.filename if override is None else "--data",
                                 self.source if override is None else override) from None
        check_support(self.typed, data, self.filename, self.source)
        return data


def parse_source(text: str) -> ir.Source:
    """A data source as written after `from` (used by `--data`)."""
    try:
        stmts = parse(f"data __source__ : real from {text}\n")
    except AttractorError as e:
        raise AttractorError(f"cannot read data source: {e.message}", None, "--data") from None
    return stmts[0].source


NO_SEARCH_VARIABLE = "ATTRACTOR_NO_SEARCH"


def search_by_default() -> bool:
    """SPEC 9.4: without `via` the compiler chooses among derivations by measuring them. A
    non-empty ATTRACTOR_NO_SEARCH in the environment keeps rule order wherever `search` is not
    given (what `--no-search` does for one command): for a session that compiles many programs
    and wants neither the measuring time nor its choices, such as a test suite."""
    return not os.environ.get(NO_SEARCH_VARIABLE)


def compile_source(text: str, via: str | None = None, filename: str = "<input>",
                   dynamics: str | None = None, search: bool | None = None, seed: int = 0,
                   search_budget: float | None = None, rank: bool = False) -> CompiledProgram:
    """Parse, check and rewrite a program; errors raise AttractorError with the diagnostic.

    `search`: choose among the derivations of each node by measuring them at the initial
    parameters of `fit(seed)` within `search_budget` seconds (compiler.driver.rank); False: rule
    order; None: `search_by_default()`. `rank` fills `.ranking` (every alternative of each node,
    measured whether or not searching)."""
    from passes import PIPELINE
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))   # objectives with thousands of terms

    def compiled(choose=None) -> CompiledProgram:
        program, rewriting = run_passes(typed, PIPELINE, typed.objective.via, choose)
        dyn = dynamics or program.train.option("dynamics") or "simultaneous"
        return CompiledProgram(text, filename, typed, program, declared_game(typed) + rewriting.steps, dyn)

    try:
        where = Path(filename)
        typed = check(parse(text), where.resolve().parent if where.is_file() else None)   # nets' paths start there
        if via is not None:
            rule = parse(f"minimize 0 via {via}\n")[0].via
            typed = dataclasses.replace(typed, objective=dataclasses.replace(typed.objective, via=rule))
        if search is None:
            search = search_by_default()
        if not (search or rank):
            return compiled()
        from compiler.driver.rank import SEARCH_SECONDS, Search
        budget = SEARCH_SECONDS if search_budget is None else search_budget
        return Search(compiled, (text, via, filename, dynamics), seed, budget, measure_all=rank, rule_order=not search).run()
    except AttractorError as e:
        raise e.located(filename, text) from None


def declared_game(typed: ir.Program) -> tuple[Step, ...]:
    """A game the user declared (`player NAME over P: minimize|maximize EXPR`) replaces the objective
    by its players' losses: one step each, relation `~` (the players' dynamics optimise no single
    objective; each moves its own parameters, the others' entering its loss as constants)."""
    if not typed.aux("declared_game"):
        return ()
    return tuple(Step("declared_game", "~", pl.name, typed.objective.expr, pl.loss, pl.loss,
                      note=f"a game the user declared: player {pl.name} {pl.sense}imizes over {', '.join(pl.params)}")
                 for pl in typed.players)


def compile_file(path: str | Path, via: str | None = None, dynamics: str | None = None, search: bool | None = None,
                 seed: int = 0, search_budget: float | None = None, rank: bool = False) -> CompiledProgram:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise AttractorError(f"cannot read file {Path(path).resolve()}: {e.strerror}", None, str(path)) from None
    except UnicodeDecodeError:
        raise AttractorError("the file is not UTF-8 text", None, str(path)) from None
    return compile_source(text, via=via, filename=str(path), dynamics=dynamics, search=search, seed=seed,
                          search_budget=search_budget, rank=rank)
