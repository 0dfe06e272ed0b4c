"""The JAX backend: a vector-field program → one readable Python module.

Each IR node type is lowered in exactly one registered function (`@lowers(Type)`); rule
families that introduce node types of their own register their lowering here too. Every
expression is lowered for *one example*; expectations over the data `vmap` it over a batch.
Generated code holds no user text but validated identifiers and numbers.
"""
from __future__ import annotations

import dataclasses
import keyword
import re
from typing import Callable

from compiler import ir
from compiler.analysis.problems import depends_on
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import number, show
from compiler.analysis.constants import const_value

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
    text = number(float(v))
    if text in ("inf", "-inf", "nan"):
        return {"inf": "jnp.inf", "-inf": "-jnp.inf", "nan": "jnp.nan"}[text]
    return text if ("." in text or "e" in text) else text + ".0"


class Fn:
    """A function body under construction: lines, an environment name → Python expression.

    `params` is the Python name of the parameter dictionary the body reads; `known` maps
    expectations already lowered in this scope (`compiler.backend.joint`) to their values. Views of one
    scope (`view`) share its lines and its random sites. Each random site gets its own key:
    `fold_in(key, n)` for the n-th of several, the scope's key itself when it is the only one
    (on the CPU every fold_in under a vmap is a loop of its own); `body()` resolves them once
    the scope is complete.
    """

    def __init__(self, emitter: "Emitter", indent: int, env: dict[str, str], key: str | None,
                 params: str = "params", lines: list[str] | None = None, sites: list[int] | None = None):
        self.emitter = emitter
        self.indent = indent
        self.env = dict(env)
        self.key = key
        self.params = params
        self.lines: list[str] = [] if lines is None else lines
        self._sites = [0, emitter.scope_id()] if sites is None else sites
        self.known: dict[ir.Node, str] = {}

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.indent + line)

    def tmp(self, expr: str, hint: str = "t") -> str:
        name = self.emitter.fresh(hint)
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

    def child(self, env: dict[str, str], key: str | None, params: str | None = None) -> "Fn":
        """A nested function's body: its own lines and random sites, the enclosing names visible."""
        return Fn(self.emitter, self.indent + 1, {**self.env, **env}, key, params or self.params)

    def view(self, env: dict[str, str] | None = None, params: str | None = None) -> "Fn":
        """The same scope (lines, key, random sites) with its own environment and parameters."""
        return Fn(self.emitter, self.indent, dict(self.env if env is None else env), self.key,
                  params or self.params, self.lines, self._sites)


LOWER: dict[type, Callable] = {}
RUNTIME_PARTS: dict[str, str] = {}   # name -> source of runtime helpers a family's lowering calls


def lowers(*types):
    def register(fn):
        for t in types:
            LOWER[t] = fn
        return fn
    return register


class Emitter:
    def __init__(self, program: ir.Program):
        self.program = program
        self.counter = 0
        self.scopes = 0
        self.value_mode = False   # lowering the objective's value: a surrogate lowers to what it stands for

    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}{self.counter}"

    def scope_id(self) -> int:
        self.scopes += 1
        return self.scopes

    def lower(self, node: ir.Node, fn: Fn) -> str:
        if fn.known and type(node) is ir.Expect and node in fn.known:
            return fn.known[node]
        handler = LOWER.get(type(node))
        if handler is None:
            raise AttractorError(f"cannot lower {type(node).__name__}: {show(node)} (a rule should have rewritten it)", node.loc)
        return handler(self, node, fn)


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


_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**", "matmul": "@"}
_FUNCS = {
    "log": "jnp.log({0})", "exp": "jnp.exp({0})", "softplus": "jax.nn.softplus({0})",
    "sigmoid": "jax.nn.sigmoid({0})", "tanh": "jnp.tanh({0})", "relu": "jax.nn.relu({0})",
    "abs": "jnp.abs({0})", "sqrt": "jnp.sqrt({0})", "square": "jnp.square({0})",
    "step": "jnp.where({0} >= 0, 1.0, 0.0)", "sign": "jnp.sign({0})", "round": "jnp.round({0})",
    "floor": "jnp.floor({0})", "max": "jnp.maximum({0}, {1})", "min": "jnp.minimum({0}, {1})",
    "sum": "jnp.sum({0})", "mean": "jnp.mean({0})", "logsumexp": "jax.nn.logsumexp({0})",
    "norm0": "jnp.sum(jnp.where({0} != 0, 1.0, 0.0))", "norm1": "jnp.sum(jnp.abs({0}))",
    "norm2": "safe_norm({0})", "sumsq": "jnp.sum(jnp.square({0}))",
    "dot": "jnp.einsum(\"...i,...i->...\", {0}, {1})", "diff": "jnp.diff({0})",   # vmapped: a matrix product
    "stop": "jax.lax.stop_gradient({0})", "log2": "jnp.log2({0})",
    "log_sigmoid": "jax.nn.log_sigmoid({0})", "amax": "jnp.max({0})",
}


@lowers(ir.Apply)
def _apply(em: Emitter, node: ir.Apply, fn: Fn) -> str:
    if node.fn == "log" and isinstance(node.args[0], ir.Density):
        return log_density(em, node.args[0], fn)
    args = [em.lower(a, fn) for a in node.args]
    if node.fn in _BINARY:
        if node.fn == "pow" and isinstance(node.args[1], ir.Num) and node.args[1].value == 2:
            return f"jnp.square({args[0]})"
        return f"({args[0]} {_BINARY[node.fn]} {args[1]})"
    if node.fn == "neg":
        return f"(-{args[0]})"
    if node.fn not in _FUNCS:
        raise AttractorError(f"cannot lower function {node.fn}", node.loc)
    return _FUNCS[node.fn].format(*args)


@lowers(ir.Compare)
def _compare(em: Emitter, node: ir.Compare, fn: Fn) -> str:
    a, b = em.lower(node.lhs, fn), em.lower(node.rhs, fn)
    return f"jnp.where({a} {node.op} {b}, 1.0, 0.0)"


@lowers(ir.NetCall)
def _netcall(em: Emitter, node: ir.NetCall, fn: Fn) -> str:
    net = em.program.decl(node.net)
    args = [em.lower(a, fn) for a in node.args]
    x = args[0] if len(args) == 1 else "jnp.concatenate([" + ", ".join(f"jnp.atleast_1d({a})" for a in args) + "], axis=-1)"
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


def dist_logprob(em: Emitter, dist: ir.Dist, value: str, fn: Fn) -> str:
    """Log density of `value` under `dist`, summed over the event."""
    if dist.family == "Gibbs":
        net = dist.args[0].name
        return f"(-{_netcall(em, ir.NetCall(net, (ir.Ref('__value__'),)), fn.child({'__value__': value}, None))})"
    a = _dist_args(em, dist, fn)
    fam = dist.family
    if fam == "Bernoulli":
        key = "logits" if "logits" in a else "probs"
        return f"jnp.sum(bernoulli_{key}_logpmf({value}, {a[key]}))"
    if fam == "Categorical":
        return f"jnp.sum(categorical_logpmf({value}, {a['logits']}))"
    p1, p2 = (a["loc"], a["scale"]) if "loc" in a else (a["low"], a["high"])
    return f"jnp.sum({fam.lower()}_logpdf({value}, {p1}, {p2}))"


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
    """Ancestral sampling of a block: returns Python names of every variable drawn."""
    block = _block(em, sample.model)
    out = {}
    for line in block.lines:
        if line.name in fn.env and line.name in sample.given:
            continue
        if isinstance(line, ir.Tilde):
            value = dist_sample(em, line.dist, fn.subkey(), fn)
        else:
            value = em.lower(line.value, fn)
        name = fn.tmp(value, ident(line.name) + "_")
        fn.env[line.name] = name
        out[line.name] = name
    return out


# ---- expectations ------------------------------------------------------------------------------

def needs_key(node: ir.Node) -> bool:
    return any(isinstance(n, ir.Expect) and not isinstance(n.source, ir.DataSet) for n in node.walk()) \
        or any(type(n) in RANDOM_NODES for n in node.walk())


RANDOM_NODES: set[type] = set()
DRAWS_AXIS = "#draws"   # env key: the vmap axis of the innermost expectation with samples > 1


@lowers(ir.Expect)
def _expect(em: Emitter, node: ir.Expect, fn: Fn) -> str:
    if isinstance(node.source, ir.DataSet):
        return _data_expect(em, node, fn)
    return _sample_expect(em, node, fn)


def _data_expect(em: Emitter, node: ir.Expect, fn: Fn) -> str:
    keyed = needs_key(node.body)
    name = em.fresh("per_example")
    inner = fn.child({v: f"v_{ident(v)}" for v in node.binder}, "key" if keyed else None)
    inner.emit(f"return {em.lower(node.body, inner)}")
    args = (["key"] if keyed else []) + [f"v_{ident(v)}" for v in node.binder]
    fn.emit(f"def {name}({', '.join(args)}):")
    fn.lines.extend(inner.body())
    mapped = [f"batch[{key_literal(v)}]" for v in node.binder]
    if keyed:
        mapped.insert(0, f"jax.random.split({fn.subkey()}, batch[{key_literal(node.binder[0])}].shape[0])")
    values = f"jax.vmap({name})({', '.join(mapped)})"
    if node.reduce == "sum":
        return f'(batch["#n"] * jnp.mean({values}, axis=0))'
    return f"jnp.mean({values}, axis=0)"


def _sample_expect(em: Emitter, node: ir.Expect, fn: Fn) -> str:
    """One draw (or `samples` draws, averaged); a score-function draw carries no gradient."""
    name = em.fresh("draw")
    inner = fn.child({}, "key")
    if node.samples > 1:   # collectives over the draws (jax.lax.all_gather) name this vmap axis
        inner.env[DRAWS_AXIS] = f'"{name}"'
    src = node.source
    if isinstance(src, ir.Dist):
        drawn = {node.binder[0]: inner.tmp(dist_sample(em, src, inner.subkey(), inner), ident(node.binder[0]) + "_")}
    elif isinstance(src, ir.Sample):
        drawn = block_sample(em, src, inner)
    else:
        raise AttractorError(f"cannot draw from {show(src)}", node.loc)
    for v in node.binder:
        value = drawn[v]
        if node.estimator == "score_function":
            value = inner.tmp(f"jax.lax.stop_gradient({value})", ident(v) + "_")
        inner.env[v] = value
    inner.emit(f"return {em.lower(node.body, inner)}")
    fn.emit(f"def {name}(key):")
    fn.lines.extend(inner.body())
    if node.samples > 1:
        return f"jnp.mean(jax.vmap({name}, axis_name={inner.env[DRAWS_AXIS]})(jax.random.split({fn.subkey()}, {node.samples})), axis=0)"
    return f"{name}({fn.subkey()})"
