"""Writes the emitted module: the program's part (losses, field, reports, training
constants, the dynamics' step, its data), then the runtime it needs, copied from
`compiler.backend.runtime` by `compiler.backend.inline`, then the command line's entry point.

The module imports jax, optax and numpy only (scikit-learn where the program names one of its
built-in data sets): it runs where attractor is not installed.
"""
from __future__ import annotations

import inspect
import numbers

from compiler import ir
from compiler.analysis.constants import const_value
from compiler.backend import runtime
from compiler.backend.defaults import deterministic_full_batch, exact_field, training
from compiler.backend.inline import Library
from compiler.backend.joint import joint_function
from compiler.backend.lower import (
    SITE_MARK,
    Emitter,
    Fn,
    block_sample,
    dist_sample,
    ident,
    key_literal,
    needs_key,
    num,
)
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import show

# what every emitted module defines besides its program part (SPEC section 7)
ENTRIES = ("init", "losses", "field", "step", "fit", "objective", "reports", "summary", "init_state", "minibatch",
           "full_batch", "as_data", "train_steps", "player_field", "field_and_losses", "main")
STEP_FUNCTIONS = {"simultaneous": "simultaneous_step", "extragradient": "extragradient_step", "sga": "sga_step",
                  "consensus": "consensus_step", "alternating": "alternating_step"}


def _docstring_text(text: str) -> str:
    """Derivation text made safe inside a triple-quoted docstring."""
    return text.replace("\\", "/").replace('"', "'")


def _tuple(items) -> str:
    items = list(items)
    return "(" + "".join(f"{i}, " for i in items) + ")" if items else "()"


def _text_literal(text: str) -> str:
    """A user string (a file path) as code points: no user text reaches the source."""
    return f"text_of({_tuple(str(ord(c)) for c in text)})"


class ModuleWriter:
    """The emitted module of one program: `source()`."""

    def __init__(self, program: ir.Program, title: str, dynamics: str | None, program_dir: str | None = None,
                 derivation: tuple = (), as_written=None, reports: dict | None = None, draws_of: str | None = None):
        self.program = program
        self.draws_of = draws_of            # the block `draw` samples (attractor sample --of), or None
        self.as_written_spec = as_written   # (expr or None, program it is lowered in, estimator, reason) or None
        self.report_exprs = reports or {}   # report name -> the expression to lower (an estimate where intractable)
        self.program_dir = program_dir
        self.title = ident(title)
        self.dynamics = dynamics or program.train.option("dynamics", "simultaneous")
        if self.dynamics not in STEP_FUNCTIONS:
            raise AttractorError(f"unknown dynamics '{self.dynamics}' (known: {', '.join(STEP_FUNCTIONS)})")
        self.derivation = derivation
        self.em = Emitter(program)

    # ---- the program's part ----------------------------------------------------------------
    def docstring(self) -> list[str]:
        """The title, the derivation step by step (one line each) and the players."""
        p = self.program
        out = [f'"""Emitted by attractor from {self.title}.att: the vector field and its training loop.', "",
               f"objective: {p.objective.sense} {show(p.objective.expr)}"]
        for i, s in enumerate(self.derivation, 1):
            out.append(f"  step {i}: {s.rule} (original {s.relation} rewritten): {s.before}  ->  {s.after}")
        out += ["", f"players ({self.dynamics} dynamics):"]
        out += [f"  {pl.name} ({pl.sense} over {', '.join(pl.params) or 'nothing'}): {show(pl.loss)}" for pl in p.players]
        out += ["", (f"The program's part comes first, then the runtime it uses; run it with `python {self.title}.py "
                     "[--steps N] [--seed S] [--json]`."), '"""']
        return [_docstring_text(line) if 0 < i < len(out) - 1 else line for i, line in enumerate(out)]

    def constants(self) -> list[str]:
        p, t = self.program, self.program.train
        data = p.data_vars
        tr = training(p)
        name, kwargs = tr.optimizer
        kwargs = dict(kwargs)
        lr = kwargs.pop("lr", 1e-3)
        opt_args = ", ".join(["learning_rate=LR"] + [f"{ident(k)}={num(v) if k != 'nesterov' else bool(v)}" for k, v in kwargs.items()])
        moving = [pl.name for pl in p.players if pl.params]
        cosine = tr.schedule == "cosine"
        optimizer = f"optax.{ident(name)}"
        lines = [
            "# ---- training: what the train line asks for, or the defaults the problem's shape chose",
            f"DATA_VARS = {_tuple(key_literal(n) for n, _ in data)}",
            "DATA_SHAPES = {" + ", ".join(f"{key_literal(n)}: {_tuple(map(str, s))}" for n, s in data) + "}",
            "PLAYERS = {" + ", ".join(f"{key_literal(pl.name)}: {_tuple(key_literal(x) for x in pl.params)}" for pl in p.players) + "}",
            "SENSES = {" + ", ".join(f'{key_literal(pl.name)}: "{pl.sense}"' for pl in p.players) + "}",
            f"MOVING = {_tuple(key_literal(m) for m in moving)}",
            f"MAIN_PLAYER = {key_literal(p.players[0].name)}",
            "PROX = {" + ", ".join(f"{key_literal(param)}: (\"{kind}\", {num(const_value(w, p))})"
                                    for pl in p.players for param, kind, w in pl.prox) + "}",
            f"STEPS = {int(tr.steps)}",
            f"BATCH = {int(t.option('batch')) if t.option('batch') else None}",
            f"LR = {num(lr)}",
            f"SGA_LAMBDA = {num(p.aux('sga_lambda', 1.0))}",
            f"CONSENSUS_GAMMA = {num(p.aux('consensus_gamma', 0.1))}",
            f"LIPSCHITZ_STEP = {bool(tr.lipschitz)}   # {tr.reason}",
            f"BACKTRACK = {bool(tr.backtrack)}",
            f"DETERMINISTIC = {deterministic_full_batch(p)}   # one player, no draws, no minibatches",
            f"EXACT_FIELD = {exact_field(p)}   # no draws, no minibatches in any player's loss",
            f"TOLERANCE = {num(tr.tolerance) if tr.tolerance else None}   # a run with no steps stops at this relative change",
            f"COSINE = {cosine}   # the step decays from LR to 0 over the steps run (cosine)",
            (f"TAIL_AVERAGE = {len(moving) > 1 or p.objective.sense == 'estimate'}"
             "   # a game or an estimate: fit returns the mean iterate of the last tenth of the run"),
            f"IS_ESTIMATE = {p.objective.sense == 'estimate'}",
            f"OPTIMIZER = {f'optax.inject_hyperparams({optimizer})' if tr.lipschitz or cosine else optimizer}({opt_args})",
        ]
        return lines

    def init(self) -> list[str]:
        out = ["def init(key):", '    """Initial parameters: zeros (or the declared value) and LeCun-normal nets."""', "    params = {}"]
        for i, d in enumerate(self.program.decls):
            if isinstance(d, ir.Param):
                out.append(f"    params[{key_literal(d.name)}] = {self.initial_value(d, i)}")
            elif isinstance(d, ir.Net) and d.python:
                example = f"jnp.zeros({_tuple(map(str, d.shape_in))}, jnp.float32)"
                out.append(f"    params[{key_literal(d.name)}] = user_net_{ident(d.name)}().init(jax.random.fold_in(key, {i}), {example})")
            elif isinstance(d, ir.Net):
                out.append(f"    params[{key_literal(d.name)}] = mlp_init(jax.random.fold_in(key, {i}), {_tuple(map(str, d.widths))})")
        out.append("    return params")
        return out

    def initial_value(self, d: ir.Param, i: int) -> str:
        """A parameter's initial value: zeros, a constant (`= 0.5`, `= eye(2)`, `= [1, 2]`, broadcast to its
        shape), or a draw (`~ Normal(0, 0.1)`, keyed by the declaration's position)."""
        shape = _tuple(map(str, d.shape))
        if isinstance(d.init, ir.Dist):
            draw = ir.Dist(d.init.family, d.init.keys, d.init.args, d.shape)
            return f"{dist_sample(self.em, draw, f'jax.random.fold_in(key, {i})', Fn(self.em, 1, {}, None))}"
        value = const_value(d.init, self.program) if d.init is not None else 0.0
        if value is not None:
            return f"jnp.full({shape}, {num(value)}, jnp.float32)"
        constant = self.em.lower(d.init, Fn(self.em, 1, {}, None))
        return f"jnp.broadcast_to(jnp.asarray({constant}, jnp.float32), {shape})"

    def python_nets(self) -> list[str]:
        """`user_net_NAME()`: the author's object for each `net NAME : python("FILE.py:ATTR")`, imported
        from FILE at run time (compiler.data.python_nets). The path is written as code points and ATTR
        is a checked identifier: no text of the program reaches the source. A relative path starts at
        the program's folder where it exists, else at this module's folder."""
        out: list[str] = []
        folder = _text_literal(self.program_dir) if self.program_dir else "None"
        for d in self.program.of_type(ir.Net):
            if d.python:
                path, _, attr = d.python.rpartition(":")
                out += [f"def user_net_{ident(d.name)}():",
                        f'    """The net {ident(d.name)}: {ident(attr)} of a Python file, with init(key, x) and apply(params, x)."""',
                        f"    return python_net({_text_literal(path)}, {key_literal(attr)}, data_folder({folder}))", "", ""]
        return out

    def function(self, name: str, node: ir.Node, doc: str) -> list[str]:
        fn = Fn(self.em, 1, {}, "key")
        self.em.share(node)
        fn.emit(f"return {self.em.lower(node, fn)}")
        return [f"def {name}(params, key, batch):", f'    """{_docstring_text(doc)}"""'] + fn.body()

    def losses(self) -> list[str]:
        out: list[str] = []
        for pl in self.program.players:
            out += self.function(f"loss_{ident(pl.name)}", pl.loss, f"{pl.sense}: {show(pl.loss)}") + ["", ""]
        out.append("LOSSES = {" + ", ".join(f"{key_literal(pl.name)}: loss_{ident(pl.name)}" for pl in self.program.players) + "}")
        return out

    def objective(self) -> list[str]:
        """`OBJECTIVE`: the main player's loss, or where it trains on a surrogate (a
        nonsaturating generator loss), the same loss with the bound its opponent keeps."""
        main = self.program.players[0]
        if not any(isinstance(n, ir.Surrogate) for n in main.loss.walk()):
            return [f"OBJECTIVE = loss_{ident(main.name)}"]
        self.em.value_mode = True
        try:
            out = self.function("objective_value", main.loss, "The objective's value: each surrogate loss replaced by the bound its opponent keeps.")
        finally:
            self.em.value_mode = False
        return out + ["", "", "OBJECTIVE = objective_value"]

    def joint(self) -> list[str]:
        """With several moving players, `joint_losses` (compiler.backend.joint): the field in one pass."""
        players = self.program.players
        if sum(1 for pl in players if pl.params) < 2:
            return ["JOINT = None   # one moving player: the field is the gradient of its loss"]
        return joint_function(self.em, players) + ["", "", "JOINT = joint_losses"]

    def as_written(self) -> list[str]:
        """`AS_WRITTEN(params, key, batch)`: the objective as the user wrote it (SPEC section 9.2),
        exact where tractable, else the estimator `AS_WRITTEN_ESTIMATOR` names (None with
        `AS_WRITTEN_REASON` where there is none); `*_DRAWS`: whether a value depends on the key,
        so that the summary averages it over several keys with its standard error."""
        expr, program, estimator, reason = self.as_written_spec or (None, None, None, "not computed")
        main = self.program.players[0].loss
        out: list[str] = []
        if expr is not None:
            lowering, self.em.program, self.em.value_mode = self.em.program, program, True
            try:
                out = self.function("as_written", expr, f"as written: {show(expr)}") + ["", ""]
                function = "as_written"
            except AttractorError as e:
                out, function, estimator, reason = [], "None", None, f"cannot be evaluated: {e.message}"
            finally:
                self.em.program, self.em.value_mode = lowering, False
        else:
            function = "OBJECTIVE" if estimator else "None"
        draws = needs_key(expr if expr is not None else main)
        return out + [f"AS_WRITTEN = {function}",
                      f"AS_WRITTEN_ESTIMATOR = {estimator!r}",
                      f"AS_WRITTEN_REASON = {reason if function == 'None' else None!r}",
                      f"AS_WRITTEN_DRAWS = {draws}",
                      f"OBJECTIVE_DRAWS = {needs_key(main)}"]

    def reports(self) -> list[str]:
        out: list[str] = []
        for r in self.program.reports:
            expr = self.report_exprs.get(r.name, r.expr)
            out += self.function(f"report_{ident(r.name)}", expr, show(r.expr)) + ["", ""]
        out.append("REPORTS = {" + ", ".join(f"{key_literal(r.name)}: report_{ident(r.name)}" for r in self.program.reports) + "}")
        draws = {r.name: needs_key(self.report_exprs.get(r.name, r.expr)) for r in self.program.reports}
        out.append("REPORT_DRAWS = {" + ", ".join(f"{key_literal(k)}: {v}" for k, v in draws.items()) + "}")
        return out

    def updates(self) -> list[str]:
        """Parameters rules set in closed form (auxiliary ("update", (param, value))): exact
        minimisers of a player's loss, schedules; applied in order after every step."""
        out: list[str] = []
        updates = [v for k, v in self.program.auxiliary if k == "update"]
        for param, value in updates:
            out += self.function(f"update_{ident(param)}", value, f"{param} <- {show(value)}") + ["", ""]
        out.append("UPDATES = " + _tuple(f"({key_literal(param)}, update_{ident(param)})" for param, _ in updates))
        return out

    def sampler(self) -> list[str]:
        samplers = [b for b in self.program.of_type(ir.Block) if b.kind == "sampler"]
        if not samplers:
            return []
        b = samplers[0]
        data = [n for n, _ in self.program.data_vars if b.line(n)] or [b.lines[-1].name]
        fn = Fn(self.em, 2, {}, "key")
        drawn = block_sample(self.em, ir.Sample(b.name, tuple(data)), fn)
        fn.emit("return " + ", ".join(drawn[n] for n in data))
        return (["def sample(params, key, n):", f'    """n draws of sampler {ident(b.name)}."""', "    def one(key):"]
                + fn.body() + ["    return jax.vmap(one)(jax.random.split(key, n))", "", ""])

    def draws(self) -> list[str]:
        """`draw(params, key, n, given)` for the block `draws_of` (`attractor sample --of NAME`), by
        ancestral sampling: a guide's latents, given its conditioning variables (`given`, arrays of n
        examples: one draw per example); a model's or a sampler's data variables (its last variable
        where it draws none), given the data variables it reads but does not draw. Returns a tuple
        of arrays, each of shape (n, *shape of the variable)."""
        if self.draws_of is None:
            return []
        b = self.program.decl(self.draws_of)
        data = [n for n, _ in self.program.data_vars]
        drawn_here = {line.name for line in b.lines}
        if b.kind == "guide":
            given, wanted = b.given, b.latents
        else:
            read = {r.name for line in b.lines for r in line.walk() if isinstance(r, ir.Ref)}
            given = tuple(n for n in data if n in read and n not in drawn_here)
            wanted = tuple(n for n in data if n in drawn_here) or (b.lines[-1].name,)
        inputs = [f"given_{ident(g)}" for g in given]
        fn = Fn(self.em, 2, dict(zip(given, inputs)), "key")
        drawn = block_sample(self.em, ir.Sample(b.name, wanted, given), fn)
        fn.emit("return (" + "".join(f"{drawn[n]}, " for n in wanted) + ")")
        mapped = ", ".join(["jax.random.split(key, n)"] + [f"given[{key_literal(g)}]" for g in given])
        condition = ", ".join(map(ident, given)) or "nothing"
        return (["def draw(params, key, n, given):",
                 f'    """n draws of {b.kind} {ident(b.name)}: {", ".join(map(ident, wanted))}, given {condition}."""',
                 f"    def one({', '.join(['key'] + inputs)}):"]
                + fn.body() + [f"    return jax.vmap(one)({mapped})", "", "",
                               f"DRAW_GIVEN = {_tuple(key_literal(g) for g in given)}   # the data variables draw is given",
                               f"DRAWN = {_tuple(key_literal(w) for w in wanted)}   # the variables it returns", "", ""])

    def step(self) -> list[str]:
        """`step`: one step of the program's dynamics, a runtime step function."""
        return ["@jax.jit",
                "def step(state, key, batch):",
                f'    """One step of the {self.dynamics} dynamics: (state, key, batch) -> (state, losses)."""',
                f"    return {STEP_FUNCTIONS[self.dynamics]}(state, key, batch)"]

    def load_data(self) -> list[str]:
        """`load_data()`: the program's data source called with its arguments, bound here to the
        loader's parameters (the data-set loaders of compiler.data.datasets, copied with the runtime)."""
        from compiler.data.datasets import SOURCES
        src = self.program.data_source
        head = ["def load_data():", '    """The program\'s data; relative paths start at the program\'s folder."""']
        if src is None:
            return head + ["    return {}"]
        loader = SOURCES[src.name]
        params = [q for q in inspect.signature(loader).parameters.values() if q.kind is not q.POSITIONAL_ONLY]
        try:
            bound = inspect.signature(loader).bind(None, None, *src.args, **dict(src.kwargs)).arguments
        except TypeError as e:
            usage = ", ".join(q.name for q in params)
            raise AttractorError(f"data source {src.name}({usage}): {e}", src.loc) from None
        args = []
        for q in params:
            if q.name in bound:
                value = bound[q.name]
                if isinstance(value, str):
                    args.append(f"{ident(q.name)}={_text_literal(value)}")
                elif isinstance(value, numbers.Real) and not isinstance(value, bool):
                    whole = q.annotation is int and float(value).is_integer()
                    args.append(f"{ident(q.name)}={int(value) if whole else num(value)}")
                else:
                    raise AttractorError(f"data source {src.name}: argument '{q.name}' must be a number or a string", src.loc)
        variables = "[" + ", ".join(f"({key_literal(n)}, {_tuple(map(str, s))})" for n, s in self.program.data_vars) + "]"
        where = _text_literal(self.program_dir) if self.program_dir else "None"
        return head + [f"    return {ident(loader.__name__)}({variables}, data_folder({where}){''.join(', ' + a for a in args)})"]

    def program_part(self) -> list[str]:
        pieces = [self.python_nets(), self.losses(), self.joint(), self.objective(), self.as_written(), self.updates(), self.reports(),
                  self.sampler(), self.draws(),
                  self.init(), self.constants(), self.step(), self.load_data()]
        out: list[str] = []
        for piece in pieces:
            if piece:
                out += piece + ["", ""]
        return out + self.em.hoisted

    def source(self) -> str:
        program = "\n".join(self.program_part())
        if SITE_MARK in program:
            raise AttractorError("internal: a random site was left unresolved in the emitted module")
        library = Library(runtime.MODULES, runtime.PROGRAM)
        entries = ENTRIES + (("sample",) if "def sample(" in program else ()) + (("draw",) if self.draws_of else ())
        imports, definitions = library.closure(program, entries)
        rule = "# " + "-" * 98
        banner = [rule, "# The runtime: helpers copied from compiler/backend/runtime, only those this program uses.", rule]
        return "\n".join(self.docstring() + imports + ["", "", program.rstrip(), "", ""] + banner
                         + ["\n\n" + d.rstrip() for d in definitions]
                         + ["", "", 'if __name__ == "__main__":', "    main()", ""])


def emit_module(program: ir.Program, title: str = "program", dynamics: str | None = None,
                program_dir: str | None = None, derivation: tuple = (), as_written=None,
                reports: dict | None = None, draws_of: str | None = None) -> str:
    """The emitted module; `program_dir` (the program file's folder) anchors relative data
    paths; `derivation` (the steps that rewrote the program) goes into its docstring;
    `as_written` (expr, program, estimator, reason) is the objective as the user wrote it and
    `reports` the expressions that evaluate the reports (compiler.driver.as_written); `draws_of`
    names a block the module draws from with `draw` (`attractor sample --of`)."""
    return ModuleWriter(program, title, dynamics, program_dir, derivation, as_written, reports, draws_of).source()
