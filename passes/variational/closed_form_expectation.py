"""closed_form_expectation: a nonlinear function of an expectation computed exactly, where SymPy
integrates the expectation.

At a node phi(... E[z ~ D(theta)] f(z) ...) where a one-draw plug-in would be biased (the
"plugin" problem: phi nonlinear in the expectation), the expectation is replaced by its value

    E[z ~ D(theta)] f(z) = F(theta) = integral over supp D of f(x) p_D(x; theta) dx
                                      (sum over the states for a discrete D)

derived by SymPy, so phi(E[...]) = phi(F(theta)) exactly: relation `=`. For a continuous D the
integral is taken after the change of variables x = T_theta(eps) of D's reparameterisation
(`compiler.math.distributions.reparameterization`: Normal, Laplace, LogNormal over a standard
Normal or Laplace, Uniform over Uniform(0, 1)), which leaves the expectation unchanged,

    F(theta) = integral f(T_theta(eps)) p_base(eps) d eps,

split where an |.| of the integrand changes sign (the Laplace density's kink at 0, a |.| of f);
where the kinks' order depends on the parameters, SymPy integrates |.| as a Piecewise, and the
max/min of its answer are written (a + b +- |a - b|)/2. A case split of the answer by
inequalities of the parameters (m > 0 or not, each piece finite on its open region) is kept
and lowered to jnp.where. Bernoulli is the sum over {0, 1} of p(x) f(x); Categorical with K static logits the sum over
its K states of softmax(logits)_k f(k). The family's parameters are symbols with their
constraints (a scale > 0, a probability in (0, 1)) during the derivation and are replaced by
the law's arguments afterwards; other names of f (parameters, constants, bound values) stay
symbols, and parts of f or of the law that SymPy does not model but that do not read the draw
(a network of the parameters) are opaque arguments of the closed form.

Refused (the node is left to jensen_convex or to the error naming it), with the reason: f reads
the draw through something SymPy does not model (a network, a reduction, an index), the law is
not a builtin family or draws an array, SymPy leaves an integral, answers a Piecewise whose
condition it cannot decide to be true and that is not an inequality case split (a convergence
condition such as |a| scale < 1 for E exp(a z) under Laplace, written with arg(a); a removable
case such as a != 0 for E exp(a u) under Uniform, whose general piece is 0/0 at a = 0), an
infinite or undefined value, or does not finish within the time limit (option seconds=S, default CLOSED_FORM_SECONDS).

Forcing a bound keeps it: `via jensen_convex` disables this rule (same problem), and
`via jensen(...)` leaves log E[...] to jensen's K-draw bound.

Both shapes of the expectation are taken: as written, E[z ~ Normal(m, s)] f(z), and pushed
forward by reparameterisation, E[eps ~ Normal(0, 1)] (f(z) with z = m + s eps).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import sympy as sp

from compiler import ir
from compiler.analysis.problems import node_problem, plugin_expectation
from compiler.ir.budget import OutOfTime, time_budget
from compiler.ir.builtins import DISTRIBUTIONS, OPERATIONS
from compiler.ir.printer import show
from compiler.math.distributions import log_density, reparameterization, support, to_jax_source
from compiler.rewrite.rule import Context, Option, Refusal, Rewrite, Rule
from passes.variational.sampling import fresh_name

CLOSED_FORM_SECONDS = 4.0    # SymPy's time for one expectation when closed_form_expectation(seconds=S) does not say
CATEGORICAL_STATES = 64      # the most states of a Categorical summed out
CONTINUOUS = ("Normal", "Laplace", "LogNormal", "Uniform")


class NoClosedForm(ValueError):
    """Why an expectation has no closed form here."""


@dataclass(frozen=True)
class ClosedExpectation:
    """phi(E[z ~ D] f(z)) at `node`: the expectation, its closed form as an `ir.Sym`, the
    SymPy expression of f (in the draw `z`), the family and how the value was derived."""

    node: ir.Node
    expect: ir.Expect
    form: ir.Sym
    family: str
    f: sp.Expr
    z: sp.Symbol
    law: tuple          # ((parameter name, SymPy expression of the law's argument), ...)
    value: sp.Expr
    how: str


class _ToSympy:
    """IR -> SymPy for f and the law's arguments: builtin functions become SymPy's, numbers and
    constants their values, names real symbols (a name bound by `with` its value), the draw the
    symbol `z`. A part SymPy does not model that does not read the draw becomes an opaque real
    symbol standing for that IR node (an argument of the closed form); one that reads it is
    NoClosedForm."""

    def __init__(self, program: ir.Program, draw: str, z: sp.Symbol, taken: set[str]):
        self.program, self.draw, self.z, self.taken = program, draw, z, taken
        self.names: dict[str, sp.Symbol] = {}       # user names -> symbols
        self.opaque: dict[sp.Symbol, ir.Node] = {}  # opaque symbols -> the node each stands for

    def __call__(self, n: ir.Node, bound: dict | None = None) -> sp.Expr:
        bound = bound or {}
        if isinstance(n, ir.Num):
            v = n.value
            return sp.Integer(int(v)) if float(v).is_integer() else sp.Float(v)
        if isinstance(n, ir.Ref):
            if n.name in bound:
                return bound[n.name]
            if n.name == self.draw:
                return self.z
            if n.kind == "const":
                return self(self.program.decl(n.name).value)
            if n.name not in self.names:
                self.names[n.name] = sp.Symbol(n.name, real=True)
            return self.names[n.name]
        if isinstance(n, ir.Let):
            return self(n.body, {**bound, n.name: self(n.value, bound)})
        if isinstance(n, ir.Apply) and n.fn in OPERATIONS and OPERATIONS[n.fn].sympy is not None and n.fn != "index":
            return OPERATIONS[n.fn].sympy(sp, *(self(a, bound) for a in n.args))
        reads = ir.free_names(n) & ({self.draw} | set(bound))
        if reads:
            raise NoClosedForm(f"f reads the draw through {show(n)}, which SymPy does not model")
        for s, node in self.opaque.items():
            if node == n:
                return s
        s = sp.Symbol(fresh_name("a", self.taken), real=True)
        self.opaque[s] = n
        return s


def _law_symbols(family: str, keys: tuple[str, ...]) -> dict[str, sp.Symbol]:
    """The family's parameters as symbols with their constraints: a positive parameter > 0,
    a probability in (0, 1) (positive here; 1 - p > 0 is not needed by the sums), others real."""
    positive = set(DISTRIBUTIONS[family].positive) | {"probs"}
    return {k: sp.Dummy(k, positive=True) if k in positive else sp.Dummy(k, real=True) for k in keys}


def _decided(expr: sp.Expr) -> sp.Expr:
    """`expr` with each Piecewise resolved where SymPy decides which piece holds; a Piecewise
    split by inequalities of the parameters (m > 0 or not) and free of integrals is kept (a case
    split, lowered to jnp.where: each piece is finite on its open region). NoClosedForm for a
    condition it cannot decide that is a convergence condition (arg(a), an integral left in
    another piece) or a removable case (a != 0: the general piece is 0/0 there)."""
    for pw in sorted(expr.atoms(sp.Piecewise), key=sp.count_ops):
        conds = [sp.simplify(piece.cond) for piece in pw.args]
        first = next((i for i, c in enumerate(conds) if c is not sp.false), None)
        if first is not None and conds[first] is sp.true:
            expr = expr.xreplace({pw: pw.args[first].expr})
            continue
        undecided = next(c for c in conds if c not in (sp.true, sp.false))
        if not (all(_inequalities(c) for c in conds) and not any(p.expr.has(sp.Integral) for p in pw.args)):
            raise NoClosedForm(f"SymPy's answer holds only where {sp.sstr(undecided)}, which it cannot decide")
    return expr


def _inequalities(cond) -> bool:
    """Is `cond` built of strict or non-strict inequalities of real expressions (no equality, no arg)?"""
    if cond in (sp.true, sp.false):
        return True
    if isinstance(cond, (sp.And, sp.Or, sp.Not)):
        return all(_inequalities(c) for c in cond.args)
    return isinstance(cond, (sp.StrictLessThan, sp.LessThan, sp.StrictGreaterThan, sp.GreaterThan)) \
        and not cond.has(sp.arg, sp.I)


def _integrate_base(base: str, base_params: dict, g: sp.Expr, eps: sp.Symbol) -> sp.Expr:
    """The integral of g(eps) p_base(eps) over the base support, split where an |.| changes sign."""
    kind = support(base, base_params)
    lo, hi = (-sp.oo, sp.oo) if kind[0] == "real" else (sp.sympify(kind[1]), sp.sympify(kind[2]))
    integrand = g * sp.exp(log_density(base, base_params, eps))

    def whole():
        return sp.integrate(integrand.rewrite(sp.Piecewise), (eps, lo, hi))

    kinks = set()
    for a in integrand.atoms(sp.Abs):
        roots = sp.solve(a.args[0], eps) if a.args[0].has(eps) else []
        if a.args[0].has(eps) and len(roots) != 1:
            return whole()          # |.| vanishing at several points: SymPy splits it as a Piecewise
        kinks.update(roots)
    try:
        cuts = sorted({lo, hi} | {k for k in kinks if bool(lo < k) and bool(k < hi)},
                      key=functools.cmp_to_key(lambda a, b: -1 if bool(a < b) else 1))
    except TypeError:       # kinks in an order that depends on the parameters
        return whole()
    total = sp.S.Zero
    for a, b in zip(cuts, cuts[1:]):
        inside = (a + b) / 2 if a.is_finite and b.is_finite else (b - 1 if a == -sp.oo else a + 1)
        signs = {f: sp.sign(sp.expand(f.args[0].subs(eps, inside))) for f in integrand.atoms(sp.Abs) if f.args[0].has(eps)}
        if any(s not in (1, -1) for s in signs.values()):
            return whole()
        total += sp.integrate(integrand.xreplace({f: s * f.args[0] for f, s in signs.items()}), (eps, a, b))
    return total


@functools.lru_cache(maxsize=512)
def derive(family: str, keys: tuple[str, ...], f: sp.Expr, z: sp.Symbol, states: int, seconds: float
           ) -> tuple[sp.Expr, tuple, str] | str:
    """E[z ~ family(keys)] f(z) in the family's parameter symbols: (value, the symbols in the
    order of `keys` (for Categorical, its logits), how), or why not (a string)."""
    try:
        with time_budget(seconds, "SymPy ran out of time"):
            return _derive(family, keys, f, z, states)
    except NoClosedForm as e:
        return str(e)
    except OutOfTime:
        return f"SymPy did not find it within {seconds:g} s (closed_form_expectation(seconds=S) gives it longer)"
    except (NotImplementedError, RecursionError, ArithmeticError, TypeError, ValueError, AttributeError) as e:
        return f"SymPy failed on it ({type(e).__name__})"


def _derive(family, keys, f, z, states):
    if family == "Categorical":
        logits = tuple(sp.Dummy(f"logits{k}", real=True) for k in range(states))
        how = f"the sum over the {states} states k of softmax(logits)_k f(k)"
        value = sum(sp.exp(log_density(family, {"logits": logits}, k)) * f.subs(z, k) for k in range(states))
        return _finished(value, logits, how)
    params = _law_symbols(family, keys)
    symbols = tuple(params[k] for k in keys)
    if family == "Bernoulli":
        value = sum(sp.exp(log_density(family, params, k)) * f.subs(z, k) for k in (0, 1))
        # not simplified: p(1) = e^l/(1 + e^l) and p(0) = 1/(1 + e^l) stay the sigmoids the printer writes stably
        return _finished(value, symbols, "the sum over x in {0, 1} of p(x) f(x)", simplify=False)
    named = {k: params[k] for k in keys}
    base, base_params, x = reparameterization(family, named, eps := sp.Dummy("eps", real=True))
    total = _integrate_base(base, base_params, f.subs(z, x), eps)
    law = f"{base}({', '.join(map(str, base_params.values()))})"
    return _finished(total, symbols, f"the integral of f(x) p(x) dx with x = {sp.sstr(x).replace('_', '')}, "
                                     f"eps ~ {law} (SymPy)")


def _finished(value: sp.Expr, symbols: tuple, how: str, simplify: bool = True) -> tuple[sp.Expr, tuple, str]:
    value = _decided(sp.piecewise_fold(value))
    value = sp.simplify(value.rewrite(sp.erf)) if simplify else value
    if value.has(sp.Integral, sp.Sum):
        raise NoClosedForm("SymPy leaves an integral")
    if value.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
        raise NoClosedForm(f"the expectation is not finite ({sp.sstr(value)})")
    return _without_max(value), symbols, how


def _without_max(value: sp.Expr) -> sp.Expr:
    """Max and Min written with |.| (max(a, b) = (a + b + |a - b|)/2, min with -), which the JAX printer prints."""
    def pair(e):
        first, *rest = e.args
        out = first
        for b in rest:
            out = (out + b + (1 if isinstance(e, sp.Max) else -1) * sp.Abs(out - b)) / 2
        return out
    return value.replace(lambda e: isinstance(e, (sp.Max, sp.Min)), pair)


def _states(logits: ir.Node, program: ir.Program) -> int | None:
    """The number of states of a Categorical whose logits are an array literal or a declared vector."""
    if isinstance(logits, ir.Apply) and logits.fn == "array":
        return len(logits.args)
    if isinstance(logits, ir.Ref):
        decl = program.decl(logits.name)
        shape = getattr(decl, "shape", None)
        if shape and len(shape) == 1 and isinstance(shape[0], int):
            return shape[0]
    return None


def match_closed(node: ir.Node, ctx: Context) -> ClosedExpectation | Refusal | None:
    """A node of the plugin problem whose expectation is over a builtin law and has a closed form."""
    program = ctx.program
    found = node_problem(program, node)
    if found is None or found.kind != "plugin":
        return None
    via = program.objective.via
    if via is not None and via.name == "jensen" and isinstance(node, ir.Apply) and node.fn == "log":
        return None       # the K-draw bound of log E asked for by name (jensen answers the marginal problem, not this one)
    expect = plugin_expectation(program, node)
    return closed_expectation(node, expect, program, ctx.option("seconds", CLOSED_FORM_SECONDS))


def closed_expectation(node: ir.Node, expect: ir.Expect, program: ir.Program, seconds: float
                       ) -> ClosedExpectation | Refusal:
    """E[z ~ D] f(z) (the expectation `expect`, inside `node`) in closed form, or why not."""
    here = node.loc or program.objective.loc
    if not isinstance(expect.source, ir.Dist):
        what = "a minibatch mean" if isinstance(expect.source, ir.DataSet) else f"over {show(expect.source)}"
        return Refusal(f"{show(expect)} is {what}, not an expectation under a builtin distribution", here)
    dist = expect.source
    if dist.family not in CONTINUOUS + ("Bernoulli", "Categorical"):
        return Refusal(f"no closed form is derived under {dist.family}", here)
    if expect.samples != 1 or expect.reduce != "mean" or len(expect.binder) != 1:
        return Refusal(f"{show(expect)} already averages several draws, is a sum, or binds several names", here)
    if dist.shape:
        return Refusal(f"the draw of {show(expect)} is an array; the closed form is derived for a scalar draw", here)
    states = 0
    if dist.family == "Categorical":
        states = _states(dist.param("logits"), program) or 0
        if not 1 <= states <= CATEGORICAL_STATES:
            return Refusal(f"the number of states of {show(dist)} is not known statically, or is above "
                           f"{CATEGORICAL_STATES}", here)
    taken = ir.free_names(node) | {getattr(d, "name", "") for d in program.decls}
    draw = expect.binder[0]
    z = sp.Symbol(fresh_name(draw, set(taken)), real=True)
    convert = _ToSympy(program, draw, z, taken)
    try:
        f = convert(expect.body)
        law = [convert(a) for a in dist.args] if dist.family != "Categorical" else []
        if dist.family == "Categorical":
            logits = dist.param("logits")
            law = [convert(logits.args[k] if isinstance(logits, ir.Apply) and logits.fn == "array"
                           else ir.Apply("index", (logits, ir.Num(k)))) for k in range(states)]
    except NoClosedForm as e:
        return Refusal(f"no closed form for {show(expect)}: {e}", here)
    if f.has(sp.Indexed) or any(a.has(sp.Indexed) for a in law):
        return Refusal(f"no closed form for {show(expect)}: f indexes an array", here)
    out = derive(dist.family, tuple(dist.keys), f, z, states, seconds)
    if isinstance(out, str):
        return Refusal(f"no closed form for {show(expect)}: {out}", here)
    generic, symbols, how = out
    value = generic.xreplace(dict(zip(symbols, law)))
    free = sorted(value.free_symbols, key=str)
    by_symbol = {s: ir.Ref(str(s), _kind(node, str(s), program)) for s in convert.names.values()}
    by_symbol.update(convert.opaque)
    try:
        to_jax_source(value, {s: f"a{i}" for i, s in enumerate(free)})
    except (ValueError, TypeError, KeyError) as e:
        return Refusal(f"no closed form for {show(expect)}: its value {sp.sstr(value)} has no JAX form ({e})", here)
    body = show(expect.body)
    label = f"E_{dist.family}[{body}]" if len(body) <= 40 else f"E_{dist.family}"
    form = ir.Sym(label, sp.srepr(value), tuple(str(s) for s in free),
                  tuple(by_symbol[s] for s in free), loc=expect.loc)
    law_pairs = tuple((k, a) for k, a in zip(dist.keys, law)) if dist.family != "Categorical" else \
        tuple((f"logits[{k}]", a) for k, a in enumerate(law))
    return ClosedExpectation(node, expect, form, dist.family, f, z, law_pairs, value, how)


def _kind(node: ir.Node, name: str, program: ir.Program) -> str:
    """The checker's kind of the reference `name` as it stands in `node`."""
    return next((n.kind for n in node.walk() if isinstance(n, ir.Ref) and n.name == name), "")


def _replace(node: ir.Node, old: ir.Node, new: ir.Node) -> ir.Node:
    """`node` with the subtree `old` (by identity) replaced by `new`."""
    if node is old:
        return new
    kids = node.children()
    return node.with_children(tuple(_replace(c, old, new) for c in kids)) if kids else node


def build_closed(found: ClosedExpectation, ctx: Context) -> Rewrite:
    """phi(E[z ~ D] f(z)) = phi(F): the expectation replaced by its closed form."""
    new = _replace(found.node, found.expect, found.form)
    law = ", ".join(f"{k} = {sp.sstr(v)}" for k, v in found.law)
    return Rewrite(new, "=",
                   (f"E[{found.z} ~ {found.family}({law})] {sp.sstr(found.f)} = {sp.sstr(found.value)}: {found.how}",
                    "the expectation is computed exactly, so the function of it is exact: no draw, no bound"),
                   note=f"a closed-form expectation under {found.family} in place of a Monte Carlo average inside a "
                        "nonlinear function",
                   facts=(("family", found.family), ("f", sp.srepr(found.f)), ("draw", sp.srepr(found.z)),
                          ("law", tuple((k, sp.srepr(v)) for k, v in found.law)),
                          ("value", sp.srepr(found.value)), ("form", found.form.label)))


SECONDS = Option("seconds", float, low=0.0, low_open=True, wording="seconds=S needs a number S > 0, got {value}",
                 doc=f"SymPy's time limit for one expectation (default {CLOSED_FORM_SECONDS:g} s)")

RULE = Rule(
    "closed_form_expectation", problem="plugin", matches=(ir.Node,), relation="=",
    identity="phi(E[z ~ D(theta)] f(z)) = phi(F(theta)),  F(theta) = integral of f(x) p_D(x; theta) dx (or the sum), by SymPy",
    match=match_closed, build=build_closed,
    unmatched="the objective has no nonlinear function of an expectation estimated from draws",
    options=(SECONDS,))
