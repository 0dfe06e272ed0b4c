"""The JAX backend: a vector-field program → one readable Python module.

Each IR node type is lowered in exactly one registered function (`@lowers(Type)`); rule
families that introduce node types of their own register their lowering here too. Every
expression is lowered for *one example*; expectations over the data `vmap` it over a batch.
Generated code holds no user text but validated identifiers and numbers.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from compiler import ir
from compiler.analysis.constants import const_value
from compiler.analysis.problems import depends_on
from compiler.ir.builtins import DISTRIBUTIONS, OPERATIONS
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import number, show

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")
SITE_MARK = "\x00"   # brackets a random site's placeholder until its scope is complete (Fn.body)


def ident(name: str) -> str:
    """A user name as a Python identifier; rejects anything that is not a plain identifier."""
    if not _IDENT.match(name) or name.startswith("__"):
        raise AttractorError(f"'{name}' cannot be used as a name")
    return name


def key_literal(name: str) -> str:
    """A validated identifier as a string literal (params and data are keyed by name)."""
    return '"' + ident(name) + '"'


def num(v: float) -> str:
    """A float literal that may stand as an operand anywhere: a negative number is parenthesised,
    since Python reads `-2.0 ** 4.0` as -(2.0 ** 4.0) (`**` binds tighter than unary minus)."""
    text = number(float(v))
    if text in ("inf", "-inf", "nan"):
        return {"inf": "jnp.inf", "-inf": "(-jnp.inf)", "nan": "jnp.nan"}[text]
    text = text if ("." in text or "e" in text) else text + ".0"
    return f"({text})" if text.startswith("-") else text


class Fn:
    """A function body under construction: lines, an environment name → Python expression.

    `params` is the Python name of the parameter dictionary the body reads; `known` maps
    expectations already lowered in this scope (`compiler.backend.joint`) to their values. Views of one
    scope (`view`) share its lines and its random sites. Each random site gets its own key:
    `fold_in(key, n)` for the n-th of several, the scope's key itself when it is the only one
    (on the CPU every fold_in under a vmap is a loop of its own); `body()` resolves them once
    the scope is complete.
    """

    def __init__(self, emitter: Emitter, indent: int, env: dict[str, str], key: str | None,
                 params: str = "params", lines: list[str] | None = None, sites: list[int] | None = None,
                 noise: Noise | None = None):
        self.emitter = emitter
        self.indent = indent
        self.env = dict(env)
        self.key = key
        self.params = params
        self.lines: list[str] = [] if lines is None else lines
        self._sites = [0, emitter.scope_id()] if sites is None else sites
        self.known: dict[ir.Node, str] = {}
        self.noise = noise   # where the scope takes its draws' standard noise as arguments instead of a key
        self.capture: dict[str, str] | None = None   # a hoisted body: enclosing value -> its local name
        self.own: set[str] = set()   # a hoisted body: the names it defines itself
        self.bound: dict[tuple, str] = {}   # common subexpressions bound in this scope (Emitter.lower), shared by its views
        self.enclosing: list[dict[tuple, str]] = []   # those of the enclosing scopes, visible from a nested function

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.indent + line)

    def tmp(self, expr: str, hint: str = "t") -> str:
        name = self.emitter.fresh(hint)
        self.own.add(name)
        self.emit(f"{name} = {expr}")
        return name

    def subkey(self) -> str:
        if self.key is None:
            raise AttractorError("internal: randomness requested where no key is available")
        self._sites[0] += 1
        return f"{SITE_MARK}{self._sites[1]}:{self._sites[0]}{SITE_MARK}"

    def body(self) -> list[str]:
        """The lines with this scope's random sites resolved to keys."""
        pattern = re.compile(f"{SITE_MARK}{self._sites[1]}:([0-9]+){SITE_MARK}")
        if self._sites[0] == 1:
            return [pattern.sub(self.key, line) for line in self.lines]
        return [pattern.sub(lambda m: f"jax.random.fold_in({self.key}, {m.group(1)})", line) for line in self.lines]

    def child(self, env: dict[str, str], key: str | None, params: str | None = None, noise: Noise | None = None,
              hoistable: bool = False) -> Fn:
        """A nested function's body: its own lines and random sites, the enclosing names visible.

        Python allows 100 indentation levels: a `hoistable` body (written with `define`) more than
        HOIST_INDENT levels deep becomes a module-level function instead, which receives the
        values of the enclosing names in one tuple, `captured`, unpacked on its first line."""
        if hoistable and noise is None and params is None and self.indent + 1 >= HOIST_INDENT:
            return self._hoisted_child(env, key)
        inner = Fn(self.emitter, self.indent + 1, {**self.env, **env}, key, params or self.params, noise=noise)
        inner.enclosing = [self.bound] + self.enclosing
        return inner

    def _hoisted_child(self, env: dict[str, str], key: str | None) -> Fn:
        inner = Fn(self.emitter, 1, {}, key)
        inner.capture, inner.own = {}, set(env.values())
        inner.env = inner._captured_env({**self.env, **env})
        inner.params = inner._captured(self.params)
        return inner

    def _captured(self, value: str) -> str:
        """In a hoisted body: the local name of an enclosing value (its own names stay)."""
        if value in self.own:
            return value
        if value not in self.capture:
            self.capture[value] = self.emitter.fresh("c")
            self.own.add(self.capture[value])
        return self.capture[value]

    def _captured_env(self, env: dict[str, str]) -> dict[str, str]:
        return {k: v if k.startswith("#") else self._captured(v) for k, v in env.items()}   # '#...': literals

    def view(self, env: dict[str, str] | None = None, params: str | None = None) -> Fn:
        """The same scope (lines, key, random sites, noise) with its own environment and parameters."""
        out = Fn(self.emitter, self.indent, dict(self.env if env is None else env), self.key,
                 params or self.params, self.lines, self._sites, self.noise)
        out.bound, out.enclosing = self.bound, self.enclosing
        if self.capture is not None:   # a view of a hoisted body reads enclosing values through its captures
            out.capture, out.own = self.capture, self.own
            out.env, out.params = out._captured_env(out.env), out._captured(out.params)
        return out


class Noise:
    """The standard noise a batched scope takes as arguments: (argument, kind, shape) for each
    draw, kind a `jax.random` sampler (normal, laplace, uniform). The caller supplies each with
    a leading axis over the examples or draws it maps over."""

    def __init__(self, emitter: Emitter):
        self.emitter = emitter
        self.args: list[tuple[str, str, tuple[int, ...]]] = []

    def take(self, kind: str, shape: tuple[int, ...]) -> str:
        name = self.emitter.fresh(f"{kind}_noise")
        self.args.append((name, kind, tuple(shape)))
        return name


HOIST_INDENT = 40   # nested functions deeper than this move to the module level (Python's limit: 100)


def define(scope: Fn, inner: Fn, name: str, args: list[str]) -> None:
    """Write `def name(args)` whose body is `inner` (a `child` of `scope`): nested in `scope`, or,
    for a hoisted body, at module level as `name_N(captured, batch, *args)`, `name` bound in
    `scope` to a lambda passing it the enclosing values."""
    if inner.capture is None:
        scope.emit(f"def {name}({', '.join(args)}):")
        scope.lines.extend(inner.body())
        return
    em = scope.emitter
    impl = em.fresh(name + "_")
    outer, local = list(inner.capture), list(inner.capture.values())
    em.hoisted += ["", "", f"def {impl}({', '.join(['captured', 'batch'] + args)}):",
                   "    (" + "".join(v + ", " for v in local) + ") = captured"] + inner.body()
    scope.emit(f"{name} = lambda *args: {impl}((" + "".join(v + ", " for v in outer) + "), batch, *args)")


LOWER: dict[type, Callable] = {}


def lowers(*types):
    def register(fn):
        for t in types:
            LOWER[t] = fn
        return fn
    return register


class CommonSubtrees:
    """The subtrees that occur more than once in one expression (each root apart), by structure.

    Frozen IR nodes compare by structure, so `log q(z) - stop(log q(z))` holds one subtree
    twice; lowered twice, it is computed twice (XLA does not merge the copies under a
    gradient). Each subtree gets a structural number, bottom-up, in time linear in the size
    of the trees (hashing each subtree whole would be quadratic in their depth). A subtree
    is shared when it occurs twice or more, counting the subtrees of a shared one only once,
    and is pure: no expectation inside (those are merged by `lower_together`), hence no draw.
    Leaves (numbers, names) are not worth a binding. `key` says where the value of a shared
    subtree is the same: the same parameters, the same values of the names it reads and of
    the draws axis it may reduce over, the same mode (value or training)."""

    def __init__(self, roots: tuple[ir.Node, ...]):
        self.roots = roots   # kept alive: the numbers are keyed by the nodes' ids
        self.number: dict[int, int] = {}
        self.pure: dict[int, bool] = {}
        self.shared: set[int] = set()
        self._names: dict[int, tuple[str, ...]] = {}
        self._by_number: dict[int, ir.Node] = {}
        structures: dict[tuple, int] = {}
        for root in roots:
            stack = [(root, False)]
            while stack:
                node, children_done = stack.pop()
                if id(node) in self.number:
                    continue
                if not children_done:
                    stack.append((node, True))
                    stack.extend((c, False) for c in node.children())
                    continue
                n = structures.setdefault(self._structure(node), len(structures))
                self.number[id(node)] = n
                self._by_number.setdefault(n, node)
                self.pure[n] = not isinstance(node, ir.Expect) and all(self.pure[self.number[id(c)]] for c in node.children())
        for root in roots:
            seen: dict[int, int] = {}
            stack = [root]
            while stack:
                node = stack.pop()
                n = self.number[id(node)]
                seen[n] = seen.get(n, 0) + 1
                worth = self.pure[n] and not isinstance(node, (ir.Num, ir.Ref))
                if seen[n] == 2 and worth:
                    self.shared.add(n)
                if score_term(node):   # x - stop(x) lowers x once
                    stack.append(node.args[0])
                elif seen[n] == 1 or not worth:
                    stack.extend(reversed(node.children()))

    def _structure(self, node: ir.Node) -> tuple:
        def field(value):
            if isinstance(value, ir.Node):
                return ("#", self.number[id(value)]) if id(value) in self.number else value
            if isinstance(value, tuple):
                return tuple(field(v) for v in value)
            return value
        return (type(node),) + tuple(field(getattr(node, f.name)) for f in dataclasses.fields(node) if f.compare)

    def key(self, node: ir.Node, fn: Fn, value_mode: bool) -> tuple | None:
        """Where `node` is shared, what its value depends on in `fn`; else None."""
        n = self.number.get(id(node))
        if n is None or n not in self.shared:
            return None
        if n not in self._names:
            self._names[n] = tuple(sorted(ir.free_names(self._by_number[n])))
        return (n, fn.params, value_mode, fn.env.get(DRAWS_AXIS)) + tuple(fn.env.get(v) for v in self._names[n])


MAX_HEIGHT = 24   # operator levels an emitted expression may nest before it is bound to a temporary


class Emitter:
    """Lowers IR to Python expressions.

    Every Python name a lowering introduces comes from `fresh`, one allocator for the whole
    module: a name is never handed out twice, whatever the user's names (a data variable `x_4`
    and a latent `v_x` once both became `v_x_4`). Expressions stay shallow: where an expression
    would nest more than MAX_HEIGHT operator levels (a sum of thousands of terms, calls nested
    hundreds deep), the subexpression is bound to a temporary, so no emitted line meets Python's
    parser limits (200 nested parentheses, the compiler's recursion limit).
    """

    def __init__(self, program: ir.Program):
        self.program = program
        self.common = CommonSubtrees(())
        self.counter = 0
        self.scopes = 0
        self.value_mode = False   # lowering the objective's value: a surrogate lowers to what it stands for
        self.taken: set[str] = set()
        self._heights: list[int] = []
        self.hoisted: list[str] = []   # module-level functions: bodies nested too deep (`define`)

    def fresh(self, hint: str) -> str:
        """A Python name not handed out before: `hint` followed by a counter (after '_' when
        `hint` ends in a digit, so `a1` + 3 cannot meet `a` + 13)."""
        sep = "_" if hint[-1:].isdigit() else ""
        while True:
            self.counter += 1
            name = f"{hint}{sep}{self.counter}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def binder(self, name: str) -> str:
        """The parameter name of a per-example function for data variable `name`: `v_name`
        where no other name took it, otherwise a fresh one."""
        preferred = "v_" + ident(name)
        if preferred in self.taken:
            return self.fresh(preferred + "_")
        self.taken.add(preferred)
        return preferred

    def scope_id(self) -> int:
        self.scopes += 1
        return self.scopes

    def share(self, *roots: ir.Node) -> None:
        """Bind the subtrees that occur more than once in `roots` (one function's expressions)
        once per scope from now on (`CommonSubtrees`)."""
        self.common = CommonSubtrees(roots)

    def lower(self, node: ir.Node, fn: Fn) -> str:
        if fn.known and type(node) is ir.Expect and node in fn.known:
            return fn.known[node]
        shared = self.common.key(node, fn, self.value_mode)
        if shared is not None:
            for bound in [fn.bound] + fn.enclosing:
                if shared in bound:
                    self._note_height(1)
                    return bound[shared]
        handler = LOWER.get(type(node))
        if handler is None:
            raise AttractorError(f"cannot lower {type(node).__name__}: {show(node)} (a rule should have rewritten it)", node.loc)
        self._heights.append(0)
        try:
            text = handler(self, node, fn)
        finally:
            height = self._heights.pop() + 1
        if shared is not None:
            text = fn.bound[shared] = fn.tmp(text, "common")
            height = 1
        elif height >= MAX_HEIGHT:
            text, height = fn.tmp(text), 1
        self._note_height(height)
        return text

    def _note_height(self, height: int) -> None:
        """Record the height of an operand just lowered in the expression being lowered."""
        if self._heights:
            self._heights[-1] = max(self._heights[-1], height)


# ---- leaves and arithmetic ---------------------------------------------------------------

@lowers(ir.Num)
def _num(em: Emitter, node: ir.Num, fn: Fn) -> str:
    return num(node.value)


@lowers(ir.Ref)
def _ref(em: Emitter, node: ir.Ref, fn: Fn) -> str:
    if node.name in fn.env:
        return fn.env[node.name]
    d = em.program.decl(node.name)
    if isinstance(d, ir.Param):
        return f"{fn.params}[{key_literal(node.name)}]"
    if isinstance(d, ir.Const):
        v = const_value(d.value, em.program)
        return num(v) if v is not None else f"({em.lower(d.value, fn)})"
    raise AttractorError(f"'{node.name}' is not bound here", node.loc)


def score_term(node: ir.Node) -> bool:
    """Is `node` x - stop(x)? Its value is 0 and its gradient that of x: it lowers to the
    runtime's `gradient_only(x)`, whose value is 0 (NaN where x is not finite)."""
    return (isinstance(node, ir.Apply) and node.fn == "sub"
            and isinstance(node.args[1], ir.Apply) and node.args[1].fn == "stop" and node.args[1].args == (node.args[0],))


@lowers(ir.Apply)
def _apply(em: Emitter, node: ir.Apply, fn: Fn) -> str:
    if node.fn == "log" and isinstance(node.args[0], ir.Density):
        return log_density(em, node.args[0], fn)
    if node.fn not in OPERATIONS:
        raise AttractorError(f"cannot lower function {node.fn}", node.loc)
    if score_term(node):
        return f"gradient_only({em.lower(node.args[0], fn)})"
    op = OPERATIONS[node.fn]
    args = [str(int(a.value)) if 0 <= op.static <= i else em.lower(a, fn) for i, a in enumerate(node.args)]
    if node.fn == "pow" and isinstance(node.args[1], ir.Num) and node.args[1].value == 2:
        return f"jnp.square({args[0]})"
    return op.lowered(args)


@lowers(ir.Compare)
def _compare(em: Emitter, node: ir.Compare, fn: Fn) -> str:
    a, b = em.lower(node.lhs, fn), em.lower(node.rhs, fn)
    return f"jnp.where({a} {node.op} {b}, 1.0, 0.0)"


@lowers(ir.NetCall)
def _netcall(em: Emitter, node: ir.NetCall, fn: Fn) -> str:
    net = em.program.decl(node.net)
    args = [em.lower(a, fn) for a in node.args]
    x = args[0] if len(args) == 1 else "jnp.concatenate([" + ", ".join(f"jnp.atleast_1d({a})" for a in args) + "], axis=-1)"
    if net.python:   # the author's net (`user_net_NAME`, emit.py), mapped over the examples and draws
        return f"apply_python_net(user_net_{ident(net.name)}(), {fn.params}[{key_literal(net.name)}], {x}, {tuple(net.shape_in)!r})"
    if len(args) == 1 and net.widths[0] == 1:
        x = f"jnp.atleast_1d({x})"
    out = f'mlp({fn.params}[{key_literal(node.net)}], {x}, "{net.act}")'
    return f"{out}[..., 0]" if net.widths[-1] == 1 else out


@lowers(ir.Surrogate)
def _surrogate(em: Emitter, node: ir.Surrogate, fn: Fn) -> str:
    if not em.value_mode:
        return em.lower(node.train, fn)
    bound = next(pl.loss for pl in em.program.players if pl.name == node.bound_of)
    return em.lower(bound, fn)


@lowers(ir.Let)
def _let(em: Emitter, node: ir.Let, fn: Fn) -> str:
    value = em.lower(node.value, fn)
    fn.env[node.name] = fn.tmp(value, ident(node.name) + "_")
    return em.lower(node.body, fn)


@lowers(ir.Sym)
def _sym(em: Emitter, node: ir.Sym, fn: Fn) -> str:
    import sympy

    from compiler.math.distributions import RUNTIME_FUNCTIONS, to_jax_source
    expr = sympy.sympify(node.expr, locals=RUNTIME_FUNCTIONS)
    by_name = {str(s): s for s in expr.free_symbols}
    names = {}
    for sym_name, arg in zip(node.symbols, node.args):
        value = fn.tmp(em.lower(arg, fn), "a")
        if sym_name in by_name:
            names[by_name[sym_name]] = value
    return f"({to_jax_source(expr, names)})"


# ---- distributions: log densities and samples ----------------------------------------------

def _dist_args(em: Emitter, dist: ir.Dist, fn: Fn) -> dict[str, str]:
    return {k: em.lower(a, fn) for k, a in zip(dist.keys, dist.args) if dist.family != "Gibbs"}


def dist_logprob(em: Emitter, dist: ir.Dist, value: str, fn: Fn, summed: bool = True) -> str:
    """Log density of `value` under `dist`, summed over the event (elementwise: `summed=False`)."""
    total = "jnp.sum" if summed else ""
    if dist.family == "Gibbs":
        net = dist.args[0].name
        return f"(-{_netcall(em, ir.NetCall(net, (ir.Ref('__value__'),)), fn.child({'__value__': value}, None))})"
    a = _dist_args(em, dist, fn)
    fam = dist.family
    if fam == "Bernoulli":
        key = "logits" if "logits" in a else "probs"
        return f"{total}(bernoulli_{key}_logpmf({value}, {a[key]}))"
    if fam == "Categorical":
        return f"{total}(categorical_logpmf({value}, {a['logits']}))"
    p1, p2 = (a["loc"], a["scale"]) if "loc" in a else (a["low"], a["high"])
    return f"{total}({fam.lower()}_logpdf({value}, {p1}, {p2}))"


def dist_sample(em: Emitter, dist: ir.Dist, key: str, fn: Fn) -> str:
    a = _dist_args(em, dist, fn)
    shape = "(" + "".join(f"{d}, " for d in dist.shape) + ")"
    fam = dist.family
    if fam == "Bernoulli":
        k = "logits" if "logits" in a else "probs"
        return f"bernoulli_{k}_sample({key}, {a[k]}, {shape})"
    if fam == "Categorical":
        return f"categorical_sample({key}, {a['logits']}, {shape})"
    if fam == "Gibbs":
        raise AttractorError("a Gibbs model cannot be sampled", dist.loc)
    p1, p2 = (a["loc"], a["scale"]) if "loc" in a else (a["low"], a["high"])
    return f"{fam.lower()}_sample({key}, {p1}, {p2}, {shape})"


# family -> (jax.random sampler of its standard noise, the runtime function mapping noise to a draw)
NOISE_DRAWS = {name: family.noise for name, family in DISTRIBUTIONS.items() if family.noise}


def dist_draw(em: Emitter, dist: ir.Dist, scope: Fn, fn: Fn) -> str:
    """A draw of `dist` (parameters lowered in `fn`, a view of `scope`): from the scope's noise
    where it is batched, else keyed by a fresh random site of the scope."""
    if scope.noise is None:
        return dist_sample(em, dist, scope.subkey(), fn)
    kind, _ = NOISE_DRAWS[dist.family]
    return from_noise(em, dist, scope.noise.take(kind, dist.shape), fn)


def from_noise(em: Emitter, dist: ir.Dist, noise: str, fn: Fn) -> str:
    """A draw of `dist` from its standard noise, the Python name `noise` (NOISE_DRAWS)."""
    _, transform = NOISE_DRAWS[dist.family]
    a = _dist_args(em, dist, fn)
    if dist.family == "Bernoulli":
        which = "logits" if "logits" in a else "probs"
        return f"{transform.format(which)}({noise}, {a[which]})"
    p1, p2 = (a["loc"], a["scale"]) if "loc" in a else (a["low"], a["high"])
    return f"{transform}({noise}, {p1}, {p2})"


def _block(em: Emitter, name: str) -> ir.Block:
    return em.program.decl(name)


def log_density(em: Emitter, density: ir.Density, fn: Fn) -> str:
    """log p(vars | given): the sum of the block's factors for `vars`, at bound values."""
    block = _block(em, density.model)
    local = fn.view()
    known = set(density.vars) | set(density.given) | set(block.given)
    for v in known:
        if v not in fn.env:
            raise AttractorError(f"'{v}' is not bound here", density.loc)
    terms = []
    for line in block.lines:
        if isinstance(line, ir.Assign) and line.name not in known:
            from compiler.ir import free_names
            if free_names(line.value) <= set(local.env) | set(em.program.learnable()) | _consts(em):
                local.env[line.name] = local.tmp(em.lower(line.value, local), ident(line.name) + "_")
        elif isinstance(line, ir.Tilde) and line.name in density.vars:
            terms.append(dist_logprob(em, line.dist, local.env[line.name], local))
    return "(" + " + ".join(terms) + ")" if terms else "0.0"


def _consts(em: Emitter) -> set[str]:
    return {d.name for d in em.program.of_type(ir.Const)}


@lowers(ir.Density)
def _density(em: Emitter, node: ir.Density, fn: Fn) -> str:
    return f"jnp.exp({log_density(em, node, fn)})"


def block_sample(em: Emitter, sample: ir.Sample, fn: Fn) -> dict[str, str]:
    """Ancestral sampling of a block in `fn`: the Python names of every variable drawn."""
    drawn = _draw_block(em, sample, fn, [fn])
    return {name: fn.env[name] for name in drawn}


# ---- expectations ------------------------------------------------------------------------------

def needs_key(node: ir.Node) -> bool:
    """Does lowering `node` draw: an expectation over anything but the data (a family's own
    random node is an `ir.Expect` subclass, so it counts)?"""
    return any(isinstance(n, ir.Expect) and not isinstance(n.source, ir.DataSet) for n in node.walk())


DRAWS_AXIS = "#draws"   # env key: the vmap axis of the innermost expectation with samples > 1


@lowers(ir.Expect)
def _expect(em: Emitter, node: ir.Expect, fn: Fn) -> str:
    """An expectation on its own: a group of one (`lower_together`)."""
    if not _mergeable(node):
        raise AttractorError(f"cannot draw from {show(node.source)}", node.loc)
    lower_group = _data_group if isinstance(node.source, ir.DataSet) else _sample_group
    return lower_group(em, [(fn, node)], fn)[0]


_THROUGH = (ir.Apply, ir.Compare, ir.NetCall, ir.Sym, ir.Surrogate)   # lowered in the caller's scope, binding nothing


def outer_expectations(node: ir.Node) -> list[ir.Expect]:
    """The expectations of `node` reached through `_THROUGH` nodes only, left to right."""
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ir.Expect):
            out.append(n)
        elif isinstance(n, _THROUGH):
            stack.extend(reversed(n.children()))
    return out


def _header(e: ir.Expect) -> tuple:
    return (e.source, e.binder, e.estimator, e.samples)


def _mergeable(e: ir.Expect) -> bool:
    return type(e) is ir.Expect and isinstance(e.source, (ir.DataSet, ir.Dist, ir.Sample))


def lower_together(em: Emitter, members: list[tuple[Fn, ir.Node]]) -> list[str]:
    """Python expressions for each (view, node), the views being views of one scope: the
    expectations the nodes share (same source, binder, estimator and number of draws) are
    lowered once, in order of first appearance, as one function returning every member's body.

    The members that take no such expectation (the data terms of a divergence's bound beside its
    draws) are computed first, bound to names before the shared expectations: the same
    operations, in an order that XLA's CPU schedule runs faster (hellinger_fit.att's loop 1.09x
    -> 1.00x the hand-written one, bench/RESULTS.md, "Training loops")."""
    groups: dict[tuple, list[tuple[Fn, ir.Expect]]] = {}
    for fn, node in members:
        for e in outer_expectations(node):
            if _mergeable(e) and e not in fn.known:
                group = groups.setdefault(_header(e), [])
                if not any(f is fn and x == e for f, x in group):
                    group.append((fn, e))
    scope = members[0][0]
    out: dict[int, str] = {}
    for i, (fn, node) in enumerate(members):
        if groups and not any(_mergeable(e) and e not in fn.known for e in outer_expectations(node)):
            value = em.lower(node, fn)
            out[i] = value if value.isidentifier() else fn.tmp(value, "v")
    for header, group in groups.items():
        lower_group = _data_group if isinstance(header[0], ir.DataSet) else _sample_group
        for (fn, e), value in zip(group, lower_group(em, group, scope)):
            fn.known[e] = value
    return [out[i] if i in out else em.lower(node, fn) for i, (fn, node) in enumerate(members)]


def batchable(node: ir.Node, em: Emitter) -> bool:
    """Can the draws in `node` take their standard noise as arguments: every random source an
    expectation over a distribution or a block whose families map noise to draws (NOISE_DRAWS),
    no nested expectation over the data, no family's own random node?"""
    for n in node.walk():
        if isinstance(n, ir.Expect):
            if not _mergeable(n) or isinstance(n.source, ir.DataSet):
                return False
            if isinstance(n.source, ir.Dist):
                dists = [n.source]
            else:
                dists = [line.dist for line in _block(em, n.source.model).lines if isinstance(line, ir.Tilde)]
            if not all(d.family in NOISE_DRAWS for d in dists):
                return False
    return True


def _mapped_scope(em: Emitter, body_nodes: list[ir.Node], scope: Fn, env: dict[str, str]) -> tuple[Fn, str | None]:
    """The scope of a function mapped over examples or draws, `body_nodes` what it computes: it
    takes the standard noise of its draws as arguments where they allow it (`batchable`) and the
    caller can supply them, else a key (None: it draws nothing)."""
    if not any(needs_key(b) for b in body_nodes):
        return scope.child(env, None, hoistable=True), None
    if (scope.key is not None or scope.noise is not None) and all(batchable(b, em) for b in body_nodes):
        return scope.child(env, None, noise=Noise(em)), None
    return scope.child(env, "key", hoistable=True), "key"


def _mapped_noise(inner: Fn, scope: Fn, size: str) -> list[str]:
    """The arguments the caller passes for a mapped function's noise: `size` draws of each,
    taken from the caller's own noise or drawn at once from one of its keys."""
    out = []
    for _, kind, shape in inner.noise.args:
        if scope.noise is not None:
            out.append(scope.noise.take(kind, (int(size),) + shape))
        else:
            out.append(f"jax.random.{kind}({scope.subkey()}, ({size}, {''.join(f'{d}, ' for d in shape)}))")
    return out


def _data_group(em: Emitter, group: list[tuple[Fn, ir.Expect]], scope: Fn) -> list[str]:
    """E[x ~ data] of every member: one vmap over the batch returning each member's body. The
    draws inside, independent across examples, take noise drawn for the whole batch at once
    (one `normal(key, (B, d))`) where they can, else one key per example."""
    binder = group[0][1].binder
    bound = {v: em.binder(v) for v in binder}
    inner, key = _mapped_scope(em, [e.body for _, e in group], scope, bound)
    views = [inner.view(env={**fn.env, **bound}, params=fn.params) for fn, _ in group]
    bodies = lower_together(em, [(view, e.body) for view, (_, e) in zip(views, group)])
    inner.emit("return " + _tuple_of(bodies))
    name = em.fresh("per_example")
    noise = [arg for arg, _, _ in inner.noise.args] if inner.noise else []
    define(scope, inner, name, ([key] if key else []) + noise + list(bound.values()))
    size = f"batch[{key_literal(binder[0])}].shape[0]"
    mapped = [f"batch[{key_literal(v)}]" for v in binder]
    if key:
        mapped.insert(0, f"jax.random.split({scope.subkey()}, {size})")
    elif inner.noise and inner.noise.args:
        if scope.noise is not None:
            raise AttractorError("internal: an expectation over the data inside a batched scope", group[0][1].loc)
        mapped = _mapped_noise(inner, scope, size) + mapped
    values = f"jax.vmap({name})({', '.join(mapped)})"
    if len(group) == 1:
        outs = [values]
    else:
        out = scope.tmp(values, "per_examples")
        outs = [f"{out}[{i}]" for i in range(len(group))]
    return [f'(batch["#n"] * jnp.mean({out}, axis=0))' if e.reduce == "sum" else f"jnp.mean({out}, axis=0)"
            for out, (_, e) in zip(outs, group)]


def _tuple_of(values: list[str]) -> str:
    """One value as itself, several as a tuple."""
    return values[0] if len(values) == 1 else "(" + "".join(f"{v}, " for v in values) + ")"


def _sample_group(em: Emitter, group: list[tuple[Fn, ir.Expect]], scope: Fn) -> list[str]:
    """E[z ~ source] of every member: one draw function returning each member's body; with
    several draws, mapped over independent noise (or keys), averaged; a score-function draw
    carries no gradient."""
    first = group[0][1]
    name = em.fresh("draw")
    if first.samples > 1:
        inner, key = _mapped_scope(em, [e for _, e in group], scope, {})
    elif scope.noise is not None:
        inner, key = scope.child({}, None, noise=scope.noise), None   # its noise: the enclosing function's arguments
    else:
        inner, key = scope.child({}, "key", hoistable=True), "key"
    extra = {DRAWS_AXIS: f'"{name}"'} if first.samples > 1 else {}
    views = [inner.view(env={**fn.env, **extra}, params=fn.params) for fn, _ in group]
    src = first.source
    if isinstance(src, ir.Dist):
        _draw(em, first.binder[0], src, inner, views)
    else:
        _draw_block(em, src, inner, views)
    for view in views:
        for v in first.binder:
            if v not in view.env:
                raise AttractorError(f"{show(src)} does not draw '{v}'", first.loc)
            if first.estimator == "score_function":
                view.env[v] = view.tmp(f"jax.lax.stop_gradient({view.env[v]})", ident(v) + "_")
    bodies = lower_together(em, [(view, e.body) for view, (_, e) in zip(views, group)])
    inner.emit("return " + _tuple_of(bodies))
    own_noise = inner.noise is not None and inner.noise is not scope.noise
    args = [key] if key else ([a for a, _, _ in inner.noise.args] if own_noise else [])
    define(scope, inner, name, args)
    if first.samples > 1:
        mapped = [f"jax.random.split({scope.subkey()}, {first.samples})"] if key else _mapped_noise(inner, scope, str(first.samples))
        call = f"jax.vmap({name}, axis_name=\"{name}\")({', '.join(mapped)})"
        value = f"jax.tree.map(lambda a: jnp.mean(a, axis=0), {call})" if len(group) > 1 else f"jnp.mean({call}, axis=0)"
    else:
        value = f"{name}({scope.subkey() if key else ''})"
    if len(group) == 1:
        return [value]
    out = scope.tmp(value, "draws" if first.samples > 1 else "drawn")
    return [f"{out}[{i}]" for i in range(len(group))]


def _same_everywhere(em: Emitter, node: ir.Node, views: list[Fn]) -> bool:
    """Does `node` have one value in every view: no parameters, no randomness, the names it
    reads bound to the same values?"""
    if depends_on(node, em.program) or needs_key(node):
        return False
    return all(len({view.env.get(n) for view in views}) == 1 for n in ir.free_names(node))


def _draw(em: Emitter, name: str, dist: ir.Dist, scope: Fn, views: list[Fn]) -> None:
    """Bind `name` ~ dist in every view: one draw when the distribution is the same in all,
    else one per view from the same key or noise (common random numbers)."""
    hint = ident(name) + "_"
    if _same_everywhere(em, dist, views):
        value = scope.tmp(dist_draw(em, dist, scope, views[0]), hint)
        for view in views:
            view.env[name] = value
        return
    if scope.noise is None:
        key = scope.tmp(scope.subkey(), "k")
        for view in views:
            view.env[name] = view.tmp(dist_sample(em, dist, key, view), hint)
        return
    kind, _ = NOISE_DRAWS[dist.family]
    noise = scope.noise.take(kind, dist.shape)
    for view in views:
        view.env[name] = view.tmp(from_noise(em, dist, noise, view), hint)


def _draw_block(em: Emitter, sample: ir.Sample, scope: Fn, views: list[Fn]) -> list[str]:
    """Ancestral sampling of a block in every view, lines that are the same everywhere once;
    returns the names of the variables drawn."""
    block = em.program.decl(sample.model)
    drawn = []
    for line in block.lines:
        if line.name in sample.given and all(line.name in view.env for view in views):
            continue
        drawn.append(line.name)
        if isinstance(line, ir.Tilde):
            _draw(em, line.name, line.dist, scope, views)
        elif _same_everywhere(em, line.value, views):
            value = scope.tmp(em.lower(line.value, views[0]), ident(line.name) + "_")
            for view in views:
                view.env[line.name] = value
        else:
            for view in views:
                view.env[line.name] = view.tmp(em.lower(line.value, view), ident(line.name) + "_")
    return drawn
