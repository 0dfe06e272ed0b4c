"""The frozen IR: immutable nodes with structural equality (locations do not count).

Expressions are trees of `Node`s; a `Program` holds the declarations, the objective and,
once the passes have run, the players of the vector field.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Iterator

from compiler.ir.diagnostics import Loc

Shape = tuple[int, ...]


@functools.cache
def _field_names(cls) -> tuple[str, ...]:
    """The fields of a node class that can hold children (all but `loc`)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "loc")


@dataclass(frozen=True)
class Node:
    loc: Loc | None = field(default=None, compare=False, repr=False, kw_only=True)

    def children(self) -> tuple["Node", ...]:
        out: list[Node] = []
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if isinstance(value, Node):
                out.append(value)
            elif isinstance(value, tuple):
                out.extend(v for v in value if isinstance(v, Node))
        return tuple(out)

    def with_children(self, new: tuple["Node", ...]) -> "Node":
        """The same node with its children replaced, in `children()` order."""
        it = iter(new)
        changes = {}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if isinstance(value, Node):
                changes[name] = next(it)
            elif isinstance(value, tuple) and any(isinstance(v, Node) for v in value):
                changes[name] = tuple(next(it) if isinstance(v, Node) else v for v in value)
        return dataclasses.replace(self, **changes) if changes else self

    def walk(self) -> Iterator["Node"]:
        """Every node of the tree, pre-order (iterative: deep trees are fine)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children()))


# ---- expressions --------------------------------------------------------------------

@dataclass(frozen=True)
class Num(Node):
    value: float


@dataclass(frozen=True)
class Ref(Node):
    """A declared or bound name; `kind` is filled in by the checker."""

    name: str
    kind: str = ""


@dataclass(frozen=True)
class DataSet(Node):
    """`data`: the empirical distribution of the program's data."""


@dataclass(frozen=True)
class Call(Node):
    """An unresolved call as parsed; the checker turns it into a typed node."""

    name: str
    args: tuple[Node, ...]
    keys: tuple[str, ...] = ()
    kwargs: tuple[Node, ...] = ()
    bar: str = ""          # "|" or "||" separator, if any
    split: int = -1        # index in args where the part after the bar starts
    shape: Shape | None = None   # a declared type, as in E[e ~ Normal(0, 1) : real[4]]


@dataclass(frozen=True)
class Apply(Node):
    """A builtin function, arithmetic operator or rule-internal function."""

    fn: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Compare(Node):
    """Iverson bracket `[lhs op rhs]`: 1 if true else 0."""

    op: str
    lhs: Node
    rhs: Node


@dataclass(frozen=True)
class Range(Node):
    """`lo:hi` in a subscript `w[lo:hi]` as parsed (either bound may be missing); the checker
    turns it into the static bounds of an `Apply("slice", (w, Num(start), Num(stop)))`."""

    lo: Node | None = None
    hi: Node | None = None


@dataclass(frozen=True)
class NetCall(Node):
    net: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Dist(Node):
    """A distribution family with named parameters and an event shape."""

    family: str
    keys: tuple[str, ...]
    args: tuple[Node, ...]
    shape: Shape = ()

    def param(self, key: str) -> Node:
        return self.args[self.keys.index(key)]


@dataclass(frozen=True)
class Density(Node):
    """`p(vars | given)` of a model, guide or sampler block, at the bound values."""

    model: str
    vars: tuple[str, ...]
    given: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sample(Node):
    """The source `q(z | x)` in `E[z ~ q(z | x)]`: draw vars from a block given values."""

    model: str
    vars: tuple[str, ...]
    given: tuple[str, ...] = ()


@dataclass(frozen=True)
class Expect(Node):
    """`E[binder ~ source] body` (reduce="mean") or `sum[binder ~ source] body` ("sum").

    `estimator` names the gradient estimator once a rule has chosen it.
    `samples` > 1 averages that many independent draws.
    """

    binder: tuple[str, ...]
    source: Node
    body: Node
    reduce: str = "mean"
    estimator: str = ""
    samples: int = 1


@dataclass(frozen=True)
class Divergence(Node):
    kind: str
    p: Node
    q: Node


@dataclass(frozen=True)
class Let(Node):
    """`body[name := value]`."""

    name: str
    value: Node
    body: Node


@dataclass(frozen=True)
class Surrogate(Node):
    """A player's training loss `train` (a `~` rewrite of a term, as a nonsaturating generator
    loss) standing for the bound of that term which player `bound_of` maximises as its loss:
    training differentiates `train`, the reported objective evaluates that player's loss.
    Prints as `train`."""

    train: Node
    bound_of: str


@dataclass(frozen=True)
class Sym(Node):
    """A scalar closed form derived by SymPy, applied elementwise to `args`.

    `expr` is the SymPy expression's `srepr` (stable, printable); `symbols` name its
    free symbols in the order of `args`; `label` is how the printer shows it.
    """

    label: str
    expr: str
    symbols: tuple[str, ...]
    args: tuple[Node, ...]


# ---- declarations and statements ------------------------------------------------------

@dataclass(frozen=True)
class Param(Node):
    name: str
    shape: Shape
    init: Node | None = None
    owner: str = ""          # player that owns an introduced parameter ("" = the model)


@dataclass(frozen=True)
class Net(Node):
    """`net f : mlp(w0, ..., wL; act=A)`, or `net f : python("file.py:name")` (SPEC §9.5): the
    author's object with `init(key, x)` and `apply(params, x)`, which sees one example; its input
    and output shapes and number of parameters are found by the checker (`jax.eval_shape`), its
    widths are empty."""

    name: str
    widths: tuple[int, ...]
    act: str = "relu"
    owner: str = ""
    python: str = ""                 # "file.py:name" as written ("" for an mlp)
    shape_in: Shape = ()
    shape_out: Shape = ()
    size: int = 0                    # a Python net's number of parameters


@dataclass(frozen=True)
class Const(Node):
    name: str
    value: Node


@dataclass(frozen=True)
class Source(Node):
    """A data source `name(args, key=value)`; values are Python numbers or strings."""

    name: str
    args: tuple = ()
    kwargs: tuple = ()


@dataclass(frozen=True)
class DataDecl(Node):
    names: tuple[str, ...]
    shapes: tuple[Shape, ...]
    source: Source | None = None


@dataclass(frozen=True)
class Tilde(Node):
    name: str
    dist: Node
    shape: Shape | None = None


@dataclass(frozen=True)
class Assign(Node):
    name: str
    value: Node


@dataclass(frozen=True)
class Block(Node):
    """A `model`, `guide` or `sampler` block; a guide lists its latents and what it is given."""

    kind: str
    name: str
    lines: tuple[Node, ...]
    latents: tuple[str, ...] = ()
    given: tuple[str, ...] = ()

    def random_vars(self) -> tuple[str, ...]:
        return tuple(l.name for l in self.lines if isinstance(l, Tilde))

    def line(self, name: str) -> Node | None:
        return next((l for l in self.lines if l.name == name), None)


@dataclass(frozen=True)
class DivergenceDef(Node):
    name: str
    var: str
    body: Node


@dataclass(frozen=True)
class RuleRef(Node):
    name: str
    options: tuple = ()       # ((key, value), ...); a flag has value True

    def option(self, key: str, default=None):
        return dict(self.options).get(key, default)


@dataclass(frozen=True)
class Objective(Node):
    sense: str               # minimize | maximize | estimate
    expr: Node
    via: RuleRef | None = None


@dataclass(frozen=True)
class Constraint(Node):
    op: str                  # <=, >=, <, >, ==
    lhs: Node
    rhs: Node
    shape: Shape = ()        # the broadcast shape of its sides: it holds elementwise


@dataclass(frozen=True)
class Report(Node):
    name: str
    expr: Node


@dataclass(frozen=True)
class Train(Node):
    options: tuple = ()      # ((key, value), ...); optimizer value is (name, ((k, v), ...))

    def option(self, key: str, default=None):
        return dict(self.options).get(key, default)


@dataclass(frozen=True)
class Player(Node):
    """One player of the vector field: it moves `params` to `sense` its `loss`."""

    name: str
    params: tuple[str, ...]
    sense: str
    loss: Node
    estimators: tuple = ()   # ((expectation, estimator), ...)
    prox: tuple = ()         # ((param, prox-kind, weight node), ...) applied as proximal steps


@dataclass(frozen=True)
class Program(Node):
    decls: tuple[Node, ...]
    objective: Objective
    constraints: tuple[Constraint, ...] = ()
    reports: tuple[Report, ...] = ()
    train: Train = Train()
    players: tuple[Player, ...] = ()
    auxiliary: tuple = ()     # ((name, value), ...): settings rules hand to the backend

    def decl(self, name: str) -> Node | None:
        for d in self.decls:
            if isinstance(d, DataDecl):
                if name in d.names:
                    return d
            elif getattr(d, "name", None) == name:
                return d
        return None

    def of_type(self, cls) -> tuple:
        return tuple(d for d in self.decls if isinstance(d, cls))

    @property
    def data_vars(self) -> tuple[tuple[str, Shape], ...]:
        return tuple((n, s) for d in self.of_type(DataDecl) for n, s in zip(d.names, d.shapes))

    @property
    def data_source(self) -> Source | None:
        return next((d.source for d in self.of_type(DataDecl) if d.source), None)

    def learnable(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.decls if isinstance(d, (Param, Net)))

    def aux(self, key: str, default=None):
        return dict(self.auxiliary).get(key, default)


def substitute(node: Node, name: str, value: Node) -> Node:
    """Replace free occurrences of the bound name `name` by `value`."""
    if isinstance(node, Ref) and node.name == name:
        return value
    if isinstance(node, Expect) and name in node.binder:
        return node.with_children((substitute(node.source, name, value), node.body))
    if isinstance(node, Let) and node.name == name:
        return Let(node.name, substitute(node.value, name, value), node.body, loc=node.loc)
    kids = node.children()
    if not kids:
        return node
    return node.with_children(tuple(substitute(c, name, value) for c in kids))


def free_names(node: Node) -> set[str]:
    """Names referred to by `node` and not bound inside it."""
    if isinstance(node, Ref):
        return {node.name}
    if isinstance(node, Expect):
        return free_names(node.source) | (free_names(node.body) - set(node.binder))
    if isinstance(node, Let):
        return free_names(node.value) | (free_names(node.body) - {node.name})
    if isinstance(node, (Density, Sample)):
        return set(node.vars) | set(node.given)
    out: set[str] = set()
    for c in node.children():
        out |= free_names(c)
    return out
