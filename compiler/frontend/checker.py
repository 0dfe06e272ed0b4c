"""Untyped statements → a typed `Program`: names resolved, calls classified, shapes inferred.

Every error is an `AttractorError` at the location of the offending text.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from compiler import ir
from compiler.data.python_nets import PythonNetError, python_net, python_net_shapes, split_reference
from compiler.frontend.arrays import ArrayChecks
from compiler.frontend.players import check_players, objective_of
from compiler.ir.builtins import (
    ARITHMETIC,
    DISTRIBUTIONS,
    DIVERGENCES,
    DYNAMICS,
    FUNCTIONS,
    OPTIMIZERS,
    RESERVED,
    TRAIN_OPTIONS,
)
from compiler.ir.diagnostics import AttractorError, Loc

Shape = tuple[int, ...]

FLOAT32_MAX = 3.4028234663852886e38
MAX_COUNT = 2**31 - 1   # steps, batch and samples are int32 on the device

# optimizer option -> (test, the range it states); lr is checked for every optimizer
OPTIMIZER_RANGES = {
    "lr": (lambda v: 0 < v <= FLOAT32_MAX, "a positive finite number"),
    "b1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "b2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "decay": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "eps": (lambda v: 0 < v <= FLOAT32_MAX, "a positive number"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "weight_decay": (lambda v: 0 <= v <= FLOAT32_MAX, "a finite number >= 0"),
    "nesterov": (lambda v: v in (0, 1), "0 or 1"),
}


def fold(fn: str, args: list[float], loc: Loc | None) -> float:
    """The value of arithmetic (or a scalar function) on constants, in double precision; an
    operation without a real, finite, float32-representable value is an error at `loc`
    (`(-8)^(1/3)`, `1 / 0`, `10^39`, `log(0)`): run in float32 it would be NaN or infinite."""
    try:
        if fn == "add":
            value = args[0] + args[1]
        elif fn == "sub":
            value = args[0] - args[1]
        elif fn == "mul":
            value = args[0] * args[1]
        elif fn == "neg":
            value = -args[0]
        elif fn == "div":
            if args[1] == 0:
                raise AttractorError("division by zero in a constant expression", loc)
            value = args[0] / args[1]
        elif fn == "pow":
            base, power = args
            if base < 0 and not float(power).is_integer():
                raise AttractorError(f"({base:g})^{power:g} has no real value: a negative number to a "
                                     f"non-integer power", loc)
            if base == 0 and power < 0:
                raise AttractorError(f"0^{power:g} divides by zero", loc)
            value = math.pow(base, power)
        elif fn in ("log", "sqrt"):
            if args[0] < 0 or (fn == "log" and args[0] == 0):
                raise AttractorError(f"{fn}({args[0]:g}) has no real, finite value", loc)
            value = math.log(args[0]) if fn == "log" else math.sqrt(args[0])
        elif fn == "exp":
            value = math.exp(args[0])
        else:
            raise ValueError(fn)
    except OverflowError:
        value = math.inf
    if not abs(value) <= FLOAT32_MAX:
        raise AttractorError("this constant expression overflows: its value is beyond float32's range (3.4e38)", loc)
    return value


def broadcast(a: Shape, b: Shape, loc: Loc | None, what: str = "operands") -> Shape:
    """NumPy broadcasting of two shapes, or an error naming both."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):
            raise AttractorError(f"shape mismatch: {what} of shapes {show_shape(a)} and {show_shape(b)} do not "
                                 "broadcast", loc)
        out.append(max(x, y) if 1 in (x, y) else x)
    return tuple(reversed(out))


def show_shape(s: Shape) -> str:
    return "real" if not s else "real[" + ", ".join(map(str, s)) + "]"


@dataclass
class Scope:
    """Names bound by expectations, blocks or a divergence generator: name → (kind, shape)."""

    names: dict[str, tuple[str, Shape]] = field(default_factory=dict)

    def bind(self, **items: tuple[str, Shape]) -> Scope:
        return Scope({**self.names, **items})


class Checker(ArrayChecks):
    def __init__(self, stmts: list[ir.Node], folder: str | Path | None = None):
        self.stmts = stmts
        self.folder = Path(folder) if folder is not None else Path.cwd()   # where python("nets.py:f") starts
        self.python_nets: dict[str, ir.Net] = {}   # a Python net, with its shapes found at its first call
        self.decls: dict[str, ir.Node] = {}
        self.data_shapes: dict[str, Shape] = {}
        self.const_shapes: dict[str, Shape] = {}
        self.blocks: dict[str, ir.Block] = {}
        self.var_shapes: dict[tuple[str, str], Shape] = {}   # (block, var) -> shape
        self.discrete_states: dict[str, int] = {}   # scalar discrete draws of the block being checked (w[c])
        self.folded: dict[int, tuple[ir.Node, float]] = {}   # id(checked scalar node) -> (node, its constant value)
        self.const_values: dict[str, float] = {}

    # ---- entry point -------------------------------------------------------------
    def check(self) -> ir.Program:
        objectives = [s for s in self.stmts if isinstance(s, ir.Objective)]
        declared = [s for s in self.stmts if isinstance(s, ir.Player)]
        if not objectives and declared:
            objectives = [objective_of(declared)]
        if not objectives:
            raise AttractorError("the program has no objective: write minimize, maximize or estimate", Loc(1, 1))
        if len(objectives) > 1:
            raise AttractorError("a program has exactly one objective (minimize, maximize or "
                                 "estimate)", objectives[1].loc)
        trains = [s for s in self.stmts if isinstance(s, ir.Train)]
        if len(trains) > 1:
            raise AttractorError("only one train line is allowed", trains[1].loc)
        self._collect()
        decls = []
        for s in self.stmts:
            if isinstance(s, ir.Const):
                value, shape = self.expr(s.value, Scope())
                self._no_params(value, s.value.loc, "a constant")
                self.const_shapes[s.name] = shape
                if id(value) in self.folded:
                    self.const_values[s.name] = self.folded[id(value)][1]
                decls.append(ir.Const(s.name, value, loc=s.loc))
            elif isinstance(s, ir.Param):
                init = None
                if isinstance(s.init, ir.Tilde):   # a random initial value: param W : real[3] ~ Normal(0, 1)
                    init, shape = self.distribution(s.init.dist, Scope(), s.shape, s.init.loc)
                    self._no_params(init, s.init.loc, "a random initial value")
                    if init.family not in ("Normal", "Laplace", "Uniform", "LogNormal"):
                        raise AttractorError(f"a random initial value is drawn from Normal, Laplace, Uniform or "
                                             f"LogNormal, not {init.family}", s.init.loc)
                elif s.init is not None:
                    init, shape = self.expr(s.init, Scope())
                    self._no_params(init, s.init.loc, "an initial value")
                    if broadcast(shape, s.shape, s.init.loc, "initial value and parameter") != s.shape:
                        raise AttractorError(f"the initial value has shape {show_shape(shape)}, larger than the "
                                             f"parameter's {show_shape(s.shape)}", s.init.loc)
                decls.append(ir.Param(s.name, s.shape, init, loc=s.loc))
            elif isinstance(s, (ir.Net, ir.DataDecl)):
                decls.append(s)
        for s in self.stmts:
            if isinstance(s, ir.Block):
                decls.append(self.block(s))
            elif isinstance(s, ir.DivergenceDef):
                body, shape = self.expr(s.body, Scope({s.var: ("local", ())}))
                if shape:
                    raise AttractorError("a divergence generator f(u) must be a scalar expression", s.body.loc)
                decls.append(ir.DivergenceDef(s.name, s.var, body, loc=s.loc))
        self.program_decls = tuple(decls)
        obj = objectives[0]
        expr, shape = self.expr(obj.expr, Scope())
        if shape:
            raise AttractorError(f"the objective must be a scalar, but it has shape {show_shape(shape)}; reduce it "
                                 "with sum(...) or mean(...)", obj.expr.loc)
        objective = ir.Objective(obj.sense, expr, obj.via, loc=obj.loc)
        constraints = tuple(self.constraint(c) for c in self.stmts if isinstance(c, ir.Constraint))
        reports = []
        for r in (s for s in self.stmts if isinstance(s, ir.Report)):
            value, shape = self.expr(r.expr, Scope())
            if shape:
                raise AttractorError(f"a report must be a scalar, but '{r.name}' has shape "
                                     f"{show_shape(shape)}", r.expr.loc)
            reports.append(ir.Report(r.name, value, loc=r.loc))
        names = [r.name for r in reports]
        dup = next((r for i, r in enumerate(reports) if r.name in names[:i]), None)
        if dup:
            raise AttractorError(f"report '{dup.name}' is defined twice", dup.loc)
        train = self.train(trains[0]) if trains else ir.Train()
        program = ir.Program(self.program_decls, objective, constraints, tuple(reports), train)
        learnable = program.learnable()
        sense = {"minimize": "min", "maximize": "max", "estimate": "min"}[obj.sense]
        if declared:
            players = check_players(declared, learnable, lambda e: self.expr(e, Scope()))
            return ir.Program(self.with_python_nets(program.decls), objective, constraints, tuple(reports), train,
                              players, (("declared_game", True),))
        player = ir.Player("theta", learnable if obj.sense != "estimate" else (), sense, expr)
        return ir.Program(self.with_python_nets(program.decls), objective, constraints, tuple(reports), train, (player,))

    def with_python_nets(self, decls: tuple[ir.Node, ...]) -> tuple[ir.Node, ...]:
        """The declarations with each Python net's shapes, found at its calls; a Python net never
        called has no input shape, so its parameters could not be made."""
        for d in decls:
            if isinstance(d, ir.Net) and d.python and d.name not in self.python_nets:
                raise AttractorError(f"net {d.name} is never called, so the shape of its input (and of its "
                                     "parameters) is unknown", d.loc)
        return tuple(self.python_nets.get(d.name, d) if isinstance(d, ir.Net) else d for d in decls)

    # ---- declarations ------------------------------------------------------------------
    def _declare(self, name: str, node: ir.Node, loc: Loc | None) -> None:
        if name in RESERVED:
            raise AttractorError(f"'{name}' is a builtin name and cannot name a declaration", loc)
        if name.startswith("__"):
            raise AttractorError(f"'{name}': names starting with '__' are reserved", loc)
        if name in self.decls:
            raise AttractorError(f"'{name}' is already declared", loc)
        self.decls[name] = node

    def _collect(self) -> None:
        for s in self.stmts:
            if isinstance(s, ir.DataDecl):
                if s.source is not None:
                    self._check_source(s.source)
                for n, shape in zip(s.names, s.shapes):
                    self._declare(n, s, s.loc)
                    self.data_shapes[n] = shape
            elif isinstance(s, (ir.Param, ir.Net, ir.Const, ir.Block, ir.DivergenceDef)):
                self._declare(s.name, s, s.loc)
                if isinstance(s, ir.Block):
                    self.blocks[s.name] = s
        for s in self.stmts:
            if isinstance(s, (ir.Param, ir.DataDecl)):
                for shape in (s.shapes if isinstance(s, ir.DataDecl) else (s.shape,)):
                    if any(d <= 0 for d in shape):
                        raise AttractorError("dimensions must be positive", s.loc)

    def _check_source(self, src: ir.Source) -> None:
        from compiler.data.datasets import SOURCES
        if src.name not in SOURCES:
            known = ", ".join(sorted(SOURCES))
            raise AttractorError(f"unknown data set '{src.name}'; known data sets: {known}", src.loc)

    def _no_params(self, node: ir.Node, loc: Loc | None, what: str) -> None:
        for n in node.walk():
            if isinstance(n, ir.Ref) and n.kind not in ("const",) or isinstance(n, (ir.NetCall, ir.Expect)):
                raise AttractorError(f"{what} may only use numbers and constants", n.loc or loc)

    # ---- blocks -----------------------------------------------------------------------
    def block(self, b: ir.Block) -> ir.Block:
        scope = Scope()
        if b.kind == "guide":
            for n in b.given:
                shape = self._variable_shape(n)
                if shape is None:
                    raise AttractorError(f"guide {b.name} is given '{n}', which is neither a data variable nor a "
                                         "model variable", b.loc)
                scope = scope.bind(**{n: ("given", shape)})
            defined = {l.name for l in b.lines}
            for z in b.latents:
                if z not in defined:
                    raise AttractorError(f"guide {b.name} names latent '{z}' but has no line '{z} ~ ...'", b.loc)
        lines = []
        seen: set[str] = set()
        self.discrete_states = {}      # this block's scalar discrete draws: name -> number of states
        for line in b.lines:
            if line.name in seen:
                raise AttractorError(f"'{line.name}' is defined twice in {b.kind} {b.name}", line.loc)
            if line.name in self.decls and not isinstance(self.decls[line.name], ir.DataDecl):
                raise AttractorError(f"'{line.name}' is already declared outside {b.kind} {b.name}", line.loc)
            if line.name in RESERVED:
                raise AttractorError(f"'{line.name}' is a builtin name", line.loc)
            seen.add(line.name)
            if isinstance(line, ir.Tilde):
                dist, shape = self.distribution(line.dist, scope, line.shape, line.loc)
                lines.append(ir.Tilde(line.name, dist, shape, loc=line.loc))
                if not shape and dist.family in ("Bernoulli", "Categorical"):   # a scalar discrete draw can index
                    self.discrete_states[line.name] = 2 if dist.family == "Bernoulli" else \
                        self.expr(dist.args[0], scope)[1][-1]
            else:
                value, shape = self.expr(line.value, scope)
                lines.append(ir.Assign(line.name, value, loc=line.loc))
            if line.name in self.data_shapes and self.data_shapes[line.name] != shape:
                raise AttractorError(
                    f"'{line.name}' has shape {show_shape(shape)} in {b.kind} {b.name}, but the data declare it "
                    f"{show_shape(self.data_shapes[line.name])}",
                    line.loc)
            self.var_shapes[(b.name, line.name)] = shape
            scope = scope.bind(**{line.name: ("latent" if line.name not in self.data_shapes else "data", shape)})
        if b.kind == "guide":
            for line in lines:
                if isinstance(line, ir.Tilde) and line.name not in b.latents:
                    raise AttractorError(f"guide {b.name} draws '{line.name}', which is not among its latents "
                                         f"({', '.join(b.latents)}): list it in the header, {b.name}("
                                         f"{', '.join(b.latents + (line.name,))} | ...), or remove the line", line.loc)
            for z in b.latents:
                model_shape = next((s for (blk, v), s in self.var_shapes.items()
                                    if v == z and self.blocks[blk].kind == "model"), None)
                models = [m for m in self.blocks.values() if m.kind == "model"]
                if model_shape is None and not any(z in m.random_vars() for m in models):
                    raise AttractorError(f"guide {b.name} has latent '{z}', but no model has a latent '{z}'", b.loc)
                if model_shape is not None and model_shape != self.var_shapes[(b.name, z)]:
                    raise AttractorError(
                        f"guide {b.name} gives '{z}' shape {show_shape(self.var_shapes[(b.name, z)])}, but the "
                        f"model's '{z}' has shape {show_shape(model_shape)}",
                        b.line(z).loc)
        if b.kind == "sampler" and not any(isinstance(l, ir.Tilde) for l in lines):
            raise AttractorError(f"sampler {b.name} draws nothing: it needs a line 'v ~ Distribution(...)'", b.loc)
        return ir.Block(b.kind, b.name, tuple(lines), b.latents, b.given, loc=b.loc)

    def _variable_shape(self, name: str) -> Shape | None:
        if name in self.data_shapes:
            return self.data_shapes[name]
        return next((s for (_, v), s in self.var_shapes.items() if v == name), None)

    def distribution(self, node: ir.Node, scope: Scope, annotated: Shape | None, loc) -> tuple[ir.Dist, Shape]:
        if not isinstance(node, ir.Call) or node.name not in DISTRIBUTIONS:
            raise AttractorError("expected a distribution such as Normal(loc, scale) after '~'", node.loc or loc)
        return self._dist(node, scope, annotated)

    def _dist(self, call: ir.Call, scope: Scope, annotated: Shape | None) -> tuple[ir.Dist, Shape]:
        fam = DISTRIBUTIONS[call.name]
        if call.bar:
            raise AttractorError(f"{call.name}(...) takes parameters, not '{call.bar}'", call.loc)
        slots = [p.split("|") for p in fam.params]
        if len(call.args) > len(slots):
            raise AttractorError(f"{call.name} takes {len(slots)} parameter(s): {', '.join(fam.params)}", call.loc)
        keys, values = [], []
        for i, a in enumerate(call.args):
            keys.append(slots[i][0])
            values.append(a)
        for k, v in zip(call.keys, call.kwargs):
            slot = next((s for s in slots if k in s), None)
            if slot is None:
                raise AttractorError(f"{call.name} has no parameter '{k}'; its parameters are "
                                     f"{', '.join(fam.params)}", v.loc or call.loc)
            if any(x in keys for x in slot):
                raise AttractorError(f"{call.name} is given '{k}' twice", v.loc or call.loc)
            keys.append(k)
            values.append(v)
        missing = [s for s in slots if not any(x in keys for x in s)]
        if missing:
            raise AttractorError(f"{call.name} needs its parameter '{'|'.join(missing[0])}'", call.loc)
        args, shape = [], ()
        for k, v in zip(keys, values):
            if call.name == "Gibbs":
                if not (isinstance(v, ir.Ref) and isinstance(self.decls.get(v.name), ir.Net)):
                    raise AttractorError("Gibbs(energy) takes the name of a net: the energy "
                                         "function", v.loc or call.loc)
                net = self.decls[v.name]
                if net.python:
                    raise AttractorError(f"Gibbs(energy) takes an mlp; '{net.name}' is a net from Python", v.loc)
                if net.widths[-1] != 1:
                    raise AttractorError(f"the energy net '{net.name}' must output one number (last width 1)", v.loc)
                args.append(ir.Ref(v.name, "net", loc=v.loc))
                shape = (net.widths[0],) if net.widths[0] > 1 else ()
                continue
            value, s = self.expr(v, scope)
            known = self.constant(value)
            if k in fam.positive and known is not None and known <= 0:
                raise AttractorError(f"{call.name}'s {k} must be positive, got {known:g}", v.loc or call.loc)
            args.append(value)
            if call.name == "Categorical":
                s = s[:-1]
            shape = broadcast(shape, s, v.loc or call.loc, f"parameters of {call.name}")
        if call.name == "Uniform":
            low, high = (self.constant(a) for a in args)
            if low is not None and high is not None and not low < high:
                raise AttractorError(f"Uniform(low, high) needs low < high, got {low:g} and {high:g}", call.loc)
        if annotated is not None:
            broadcast(shape, annotated, call.loc, f"parameters of {call.name} and the declared type")
            if len(shape) > len(annotated) or any(a != 1 and a != b for a, b in zip(shape[::-1], annotated[::-1])):
                raise AttractorError(f"{call.name}'s parameters have shape {show_shape(shape)}, larger than the "
                                     f"declared {show_shape(annotated)}", call.loc)
            shape = annotated
        return ir.Dist(call.name, tuple(keys), tuple(args), shape, loc=call.loc), shape

    def constant(self, node: ir.Node) -> float | None:
        """The value of an expression of numbers and consts, or None."""
        from types import SimpleNamespace

        from compiler.analysis.constants import const_value
        return const_value(node, SimpleNamespace(decl=self.decls.get))

    # ---- statements --------------------------------------------------------------------
    def constraint(self, c: ir.Constraint) -> ir.Constraint:
        lhs, a = self.expr(c.lhs, Scope())
        rhs, b = self.expr(c.rhs, Scope())
        shape = broadcast(a, b, c.loc, "the two sides of the constraint")
        learn = {d.name for d in self.program_decls if isinstance(d, (ir.Param, ir.Net))}
        if not any(isinstance(n, (ir.Ref, ir.NetCall)) and getattr(n, "name", getattr(n, "net", None)) in learn
                   for n in list(lhs.walk()) + list(rhs.walk())):
            raise AttractorError("this constraint has no parameter in it: it constrains nothing that can move", c.loc)
        if lhs == rhs:
            holds = c.op in ("==", "<=", ">=")
            verdict = "holds for every value: it constrains nothing" if holds else "can never hold"
            raise AttractorError(f"both sides of this constraint are the same expression, so it {verdict}", c.loc)
        return ir.Constraint(c.op, lhs, rhs, shape, loc=c.loc)

    def train(self, t: ir.Train) -> ir.Train:
        out = []
        for key, value, loc in t.options:
            if key not in TRAIN_OPTIONS:
                raise AttractorError(f"unknown train option '{key}'; options are {', '.join(TRAIN_OPTIONS)}", loc)
            if key in ("steps", "batch", "samples"):
                if not isinstance(value, float) or value != int(value) or value < 1:
                    raise AttractorError(f"train option {key} must be a positive integer", loc)
                if value > MAX_COUNT:
                    raise AttractorError(f"train option {key} must be at most {MAX_COUNT} (2^31 - 1), got "
                                         f"{value:g}", loc)
                value = int(value)
            elif key == "optimizer":
                name, kwargs = (value, ()) if isinstance(value, str) else value
                if name not in OPTIMIZERS:
                    raise AttractorError(f"unknown optimizer '{name}'; known: {', '.join(OPTIMIZERS)}", loc)
                for k, v in kwargs:
                    if k not in OPTIMIZERS[name]:
                        raise AttractorError(f"{name} has no option '{k}'; its options are "
                                             f"{', '.join(OPTIMIZERS[name])}", loc)
                    if not isinstance(v, float):
                        raise AttractorError(f"{name} option {k} must be a number", loc)
                    test, stated = OPTIMIZER_RANGES[k]
                    if not test(v):
                        if k == "lr":
                            raise AttractorError(f"the learning rate must be positive and finite, got {v:g}", loc)
                        raise AttractorError(f"{name} option {k} must be {stated}, got {v:g}", loc)
                value = (name, tuple(kwargs))
            elif key == "dynamics":
                if value not in DYNAMICS:
                    raise AttractorError(f"unknown dynamics '{value}'; known: {', '.join(DYNAMICS)}", loc)
            elif key == "schedule":
                if value not in ("constant", "cosine"):
                    raise AttractorError("schedule must be constant or cosine", loc)
            if key in dict(out):
                raise AttractorError(f"train option {key} is given twice", loc)
            out.append((key, value))
        return ir.Train(tuple(out), loc=t.loc)

    # ---- expressions -------------------------------------------------------------------
    def expr(self, node: ir.Node, scope: Scope) -> tuple[ir.Node, Shape]:
        loc = node.loc
        if isinstance(node, ir.Num):
            self.folded[id(node)] = (node, node.value)
            return node, ()
        if isinstance(node, ir.Ref):
            out = self.ref(node, scope)
            if out[0].kind == "const" and node.name in self.const_values:
                self.folded[id(out[0])] = (out[0], self.const_values[node.name])
            return out
        if isinstance(node, ir.DataSet):
            raise AttractorError("'data' is a distribution, not a value: use it as E[x ~ data] ...", loc)
        if isinstance(node, ir.Apply) and node.fn == "array":
            return self.array_literal(node, scope)
        if isinstance(node, ir.Apply) and node.fn == "index":
            return self.subscript(node, scope)
        if isinstance(node, ir.Apply) and node.fn in ARITHMETIC:
            args = [self.expr(a, scope) for a in node.args]
            if node.fn == "neg":
                return self._folded(ir.Apply("neg", (args[0][0],), loc=loc)), args[0][1]
            (a, sa), (b, sb) = args
            if node.fn == "matmul":
                shape = self._matmul(sa, sb, loc)
            else:
                shape = broadcast(sa, sb, loc)
            return self._folded(ir.Apply(node.fn, (a, b), loc=loc)), shape
        if isinstance(node, ir.Compare):
            (a, sa), (b, sb) = self.expr(node.lhs, scope), self.expr(node.rhs, scope)
            return ir.Compare(node.op, a, b, loc=loc), broadcast(sa, sb, loc, "the two sides of the comparison")
        if isinstance(node, ir.Expect):
            return self.expectation(node, scope)
        if isinstance(node, ir.Call):
            return self.call(node, scope)
        raise AttractorError("unsupported expression", loc)

    def _folded(self, node: ir.Apply) -> ir.Apply:
        """Record the value of arithmetic on constants (checking it is real and finite: `fold`)."""
        values = [self.folded.get(id(a)) for a in node.args]
        if node.fn != "matmul" and all(v is not None for v in values):
            self.folded[id(node)] = (node, fold(node.fn, [v for _, v in values], node.loc))
        return node

    def ref(self, node: ir.Ref, scope: Scope) -> tuple[ir.Node, Shape]:
        name, loc = node.name, node.loc
        if name in scope.names:
            kind, shape = scope.names[name]
            return ir.Ref(name, kind, loc=loc), shape
        d = self.decls.get(name)
        if isinstance(d, ir.Param):
            return ir.Ref(name, "param", loc=loc), d.shape
        if isinstance(d, ir.Const):
            if name not in self.const_shapes:
                raise AttractorError(f"constant '{name}' is used before it is defined", loc)
            return ir.Ref(name, "const", loc=loc), self.const_shapes[name]
        if isinstance(d, ir.DataDecl):
            raise AttractorError(f"data variable '{name}' is used outside an expectation over the data; write "
                                 f"E[{name} ~ data] ...", loc)
        if isinstance(d, ir.Net):
            raise AttractorError(f"net '{name}' is a function: call it, as {name}(...)", loc)
        if isinstance(d, ir.Block):
            raise AttractorError(f"{d.kind} '{name}' is a distribution, not a value: use {name}(...) for its density "
                                 f"or E[v ~ {name}]", loc)
        if name in FUNCTIONS or name in DISTRIBUTIONS or name in DIVERGENCES:
            raise AttractorError(f"'{name}' is a builtin and needs arguments: {name}(...)", loc)
        if any(name in b.random_vars() or b.line(name) for b in self.blocks.values()):
            raise AttractorError(f"'{name}' is a variable of a model; it must be bound, e.g. by E[{name} ~ ...]", loc)
        raise AttractorError(f"unknown name '{name}'", loc)

    def _matmul(self, a: Shape, b: Shape, loc) -> Shape:
        if not a or not b:
            raise AttractorError("@ needs vectors or matrices, not scalars", loc)
        if a[-1] != (b[0] if len(b) == 1 else b[-2]):
            raise AttractorError(f"shape mismatch: {show_shape(a)} @ {show_shape(b)}", loc)
        return a[:-1] + (b[:-1] if len(b) == 1 else b[:-2] + b[-1:])

    def expectation(self, node: ir.Expect, scope: Scope) -> tuple[ir.Node, Shape]:
        src, loc = node.source, node.loc
        if isinstance(src, ir.DataSet):
            for v in node.binder:
                if v not in self.data_shapes:
                    raise AttractorError(f"'{v}' is not a data variable; the data declare "
                                         f"{', '.join(self.data_shapes) or 'nothing'}", loc)
            inner = scope.bind(**{v: ("data", self.data_shapes[v]) for v in node.binder})
            source: ir.Node = ir.DataSet(loc=src.loc)
        else:
            if node.reduce == "sum":
                raise AttractorError("sum[v ~ D] sums over the data set: D must be 'data'", loc)
            source, shapes = self._sample_source(src, node.binder, scope)
            inner = scope.bind(**{v: ("latent", s) for v, s in zip(node.binder, shapes)})
        body, shape = self.expr(node.body, inner)
        return ir.Expect(node.binder, source, body, node.reduce, loc=loc), shape

    def _sample_source(self, src: ir.Node, binder, scope: Scope):
        if isinstance(src, ir.Ref) and src.name in self.blocks:
            b = self.blocks[src.name]
            return self._block_sample(b, binder, (), src.loc, scope)
        if isinstance(src, ir.Call) and src.shape is not None and src.name not in DISTRIBUTIONS:
            raise AttractorError("a type in E[v ~ D : type] may follow only a distribution", src.loc)
        if isinstance(src, ir.Call) and src.name in self.blocks:
            b = self.blocks[src.name]
            vars_, given = self._density_args(src, b)
            if tuple(vars_) != tuple(binder):
                raise AttractorError(f"E[{', '.join(binder)} ~ {src.name}(...)] must draw the variables it "
                                     "binds", src.loc)
            return self._block_sample(b, binder, given, src.loc, scope)
        if isinstance(src, ir.Call) and src.name in DISTRIBUTIONS:
            if len(binder) != 1:
                raise AttractorError("a distribution draws one variable", src.loc)
            dist, shape = self._dist(src, scope, src.shape)
            if src.name == "Gibbs":
                raise AttractorError("Gibbs(energy) is unnormalised: it has no sampler", src.loc)
            return dist, (shape,)
        raise AttractorError("E[v ~ D]: D must be data, a model, guide or sampler, or a distribution", src.loc)

    def _block_sample(self, b: ir.Block, binder, given, loc, scope: Scope):
        for v in binder:
            if not b.line(v):
                raise AttractorError(f"{b.kind} {b.name} has no variable '{v}'", loc)
        needed = b.given if b.kind == "guide" else ()
        for g in needed:
            if g not in scope.names:
                raise AttractorError(f"guide {b.name} is given '{g}', which is not bound here", loc)
        for line in b.lines:
            dist = getattr(line, "dist", None)    # a Tilde line's: untyped (Call) or typed (Dist)
            if isinstance(line, ir.Tilde) and getattr(dist, "name", getattr(dist, "family", "")) == "Gibbs":
                raise AttractorError(f"{b.kind} {b.name} is a Gibbs (unnormalised) model: it cannot be sampled", loc)
        given = tuple(given) or tuple(needed)
        return ir.Sample(b.name, tuple(binder), given, loc=loc), tuple(self.var_shapes[(b.name, v)] for v in binder)

    def _density_args(self, call: ir.Call, b: ir.Block) -> tuple[list[str], list[str]]:
        if call.bar == "||":
            raise AttractorError(f"'||' separates the two sides of a divergence; a density is written {b.name}(x | "
                                 "z)", call.loc)
        if call.keys:
            raise AttractorError("a density takes variables, not keyword arguments", call.loc)
        names = []
        for a in call.args:
            if not isinstance(a, ir.Ref):
                raise AttractorError(f"the density {b.name}(...) takes the names of its variables", a.loc or call.loc)
            names.append(a.name)
        split = call.split if call.bar == "|" else len(names)
        vars_, given = names[:split], names[split:]
        if not vars_:
            raise AttractorError(f"the density {b.name}(...) needs at least one variable", call.loc)
        allowed = set(b.random_vars()) | {l.name for l in b.lines} | set(b.given)
        for n, a in zip(names, call.args):
            if n not in allowed:
                raise AttractorError(f"{b.kind} {b.name} has no variable '{n}'", a.loc)
        if b.kind == "guide" and set(given) - set(b.given):
            raise AttractorError(f"guide {b.name} is conditioned on {', '.join(b.given)}", call.loc)
        return vars_, given

    def call(self, node: ir.Call, scope: Scope) -> tuple[ir.Node, Shape]:
        name, loc = node.name, node.loc
        if name in ("eye", "zeros", "ones", "concat") or (name in ("max", "min") and len(node.args) == 1):
            return self.construct(node, scope)
        if name in FUNCTIONS and FUNCTIONS[name].user:
            return self.function(node, scope)
        if name in DISTRIBUTIONS:
            raise AttractorError(f"{name}(...) is a distribution, not a value: use it after '~' or in E[v ~ "
                                 f"{name}(...)]", loc)
        if name in DIVERGENCES or isinstance(self.decls.get(name), ir.DivergenceDef):
            return self.divergence(node, scope)
        d = self.decls.get(name)
        if isinstance(d, ir.Net):
            return self.net_call(node, d, scope)
        if isinstance(d, ir.Block):
            return self.density(node, d, scope)
        if name == "E" or name == "sum":
            raise AttractorError(f"write {name}[v ~ D] with square brackets", loc)
        if d is not None:
            raise AttractorError(f"'{name}' is not a function", loc)
        raise AttractorError(f"unknown function or model '{name}'", loc)

    def function(self, node: ir.Call, scope: Scope) -> tuple[ir.Node, Shape]:
        name, loc = node.name, node.loc
        fn = FUNCTIONS[name]
        if node.keys or node.bar:
            raise AttractorError(f"{name} takes plain arguments", loc)
        arity = fn.arity
        if len(node.args) != arity:
            raise AttractorError(f"{name} takes {arity} argument{'s' if arity > 1 else ''}, got {len(node.args)}", loc)
        args = [self.expr(a, scope) for a in node.args]
        shapes = [s for _, s in args]
        if fn.kind == "elementwise":
            shape = shapes[0]
        elif fn.kind == "binary":
            shape = broadcast(shapes[0], shapes[1], loc, f"arguments of {name}")
        elif fn.kind == "reduce":
            shape = ()
        elif fn.kind == "dot":
            a, b = shapes
            if not a or not b or a[-1] != b[-1]:
                raise AttractorError(f"shape mismatch: dot of {show_shape(a)} and {show_shape(b)}", loc)
            shape = broadcast(a[:-1], b[:-1], loc, "arguments of dot")
        else:  # diff
            if len(shapes[0]) != 1 or shapes[0][0] < 2:
                raise AttractorError(f"diff takes a vector of length at least 2, got {show_shape(shapes[0])}", loc)
            shape = (shapes[0][0] - 1,)
        out = ir.Apply(name, tuple(a for a, _ in args), loc=loc)
        return (self._folded(out) if name in ("log", "sqrt", "exp") else out), shape

    def net_call(self, node: ir.Call, net: ir.Net, scope: Scope) -> tuple[ir.Node, Shape]:
        if node.keys or node.bar:
            raise AttractorError(f"net {net.name} takes plain arguments", node.loc)
        if not node.args:
            raise AttractorError(f"net {net.name} needs an input", node.loc)
        args = [self.expr(a, scope) for a in node.args]
        if net.python:
            return self.python_net_call(node, net, args)
        width = 0
        for (_, s), a in zip(args, node.args):
            if len(s) > 1:
                raise AttractorError(f"net {net.name} takes vectors, got {show_shape(s)}", a.loc)
            width += s[0] if s else 1
        if width != net.widths[0]:
            raise AttractorError(f"net {net.name} takes an input of width {net.widths[0]}, got width {width}", node.loc)
        out = net.widths[-1]
        return ir.NetCall(net.name, tuple(a for a, _ in args), loc=node.loc), (() if out == 1 else (out,))

    def python_net_call(self, node: ir.Call, net: ir.Net, args: list[tuple[ir.Node, Shape]]) -> tuple[ir.Node, Shape]:
        """A call of the author's net: its input is the one argument as it is, or several scalars and
        vectors joined into one vector. The first call loads the file and finds the output shape with
        `jax.eval_shape` on that input; every later call must give an input of the same shape."""
        if len(args) == 1:
            shape_in = args[0][1]
        else:
            for (_, s), a in zip(args, node.args):
                if len(s) > 1:
                    raise AttractorError(f"net {net.name} joins several arguments into one vector: each must be a "
                                         f"scalar or a vector, got {show_shape(s)}", a.loc)
            shape_in = (sum(s[0] if s else 1 for _, s in args),)
        found = self.python_nets.get(net.name)
        if found is None:
            path, attr = split_reference(net.python)
            try:
                shape_out, size = python_net_shapes(python_net(path, attr, self.folder), shape_in)
            except PythonNetError as e:
                raise AttractorError(f"net {net.name}: {e}", net.loc) from None
            found = self.python_nets[net.name] = dataclasses.replace(net, shape_in=shape_in, shape_out=shape_out,
                                                                     size=size)
        elif found.shape_in != shape_in:
            raise AttractorError(f"net {net.name} takes an input of shape {show_shape(found.shape_in)} (as at its "
                                 f"first call), got {show_shape(shape_in)}", node.loc)
        return ir.NetCall(net.name, tuple(a for a, _ in args), loc=node.loc), found.shape_out

    def density(self, node: ir.Call, b: ir.Block, scope: Scope) -> tuple[ir.Node, Shape]:
        if b.kind == "sampler":
            raise AttractorError(f"sampler {b.name} has no density: it only draws samples (use E[v ~ {b.name}] or a "
                                 "divergence)", node.loc)
        vars_, given = self._density_args(node, b)
        for i, (n, a) in enumerate(zip(vars_ + given, node.args)):
            if n in (vars_ + given)[:i]:
                raise AttractorError(f"'{n}' appears twice in {b.name}(...): each variable is named once", a.loc)
            if n not in scope.names:
                raise AttractorError(f"'{n}' is not bound here: bind it with E[{n} ~ ...]", a.loc)
        return ir.Density(b.name, tuple(vars_), tuple(given), loc=node.loc), ()

    def divergence(self, node: ir.Call, scope: Scope) -> tuple[ir.Node, Shape]:
        name, loc = node.name, node.loc
        if node.keys:
            raise AttractorError(f"{name} takes two distributions", loc)
        if len(node.args) != 2 or (node.bar and node.split != 1):
            raise AttractorError(f"{name} takes two distributions: {name}(P || Q)", loc)
        if node.bar == "|":
            raise AttractorError(f"write {name}(P || Q) with a double bar", loc)
        if not node.bar and name != "JS":
            raise AttractorError(f"write {name}(P || Q): only JS(P, Q) may use a comma", loc)
        sides = []
        for a in node.args:
            if isinstance(a, ir.DataSet):
                sides.append((ir.DataSet(loc=a.loc), dict(self.data_shapes)))
            elif isinstance(a, ir.Ref) and a.name in self.blocks:
                b = self.blocks[a.name]
                shapes = {v: self.var_shapes[(b.name, v)] for v in self.data_shapes if (b.name, v) in self.var_shapes}
                if not self.data_shapes:      # no data declared: the block's own variables (KL(sampler || density))
                    shapes = {v: s for (block, v), s in self.var_shapes.items() if block == b.name}
                if not shapes:
                    raise AttractorError(f"{b.kind} {b.name} does not produce the data's variables "
                                         f"({', '.join(self.data_shapes)})", a.loc)
                sides.append((ir.Ref(a.name, b.kind, loc=a.loc), shapes))
            else:
                raise AttractorError(f"{name}(P || Q) compares distributions: each side must be data, a model or a "
                                     "sampler", a.loc or loc)
        (p, sp), (q, sq) = sides
        common = set(sp) & set(sq)
        if not common:
            raise AttractorError(f"the two sides of {name} share no variable", loc)
        for v in common:
            if sp[v] != sq[v]:
                raise AttractorError(f"the two sides of {name} disagree on the shape of '{v}': {show_shape(sp[v])} "
                                     f"and {show_shape(sq[v])}", loc)
        if isinstance(p, ir.DataSet) and isinstance(q, ir.DataSet):
            raise AttractorError(f"{name}(data || data) compares the data with itself", loc)
        return ir.Divergence(name, p, q, loc=loc), ()


def check(stmts: list[ir.Node], folder: str | Path | None = None) -> ir.Program:
    """The typed program; `folder` (default: the working directory) is where the paths of nets
    from Python start: the program file's folder."""
    return Checker(stmts, folder).check()
