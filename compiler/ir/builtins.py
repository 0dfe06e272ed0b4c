"""The language's builtins as data, one table per kind of thing: operations (`OPERATIONS`),
distribution families (`DISTRIBUTIONS`), divergences, activations, optimizers, dynamics.

Adding a builtin function is one row of OPERATIONS: the grammar's prefix spelling, the checker's
arity and shape rule, the printer, SymPy, the JAX lowering and the analyses read it from here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Operation:
    """One operation of `ir.Apply`: everything the compiler knows of it, in one row.

    `kind`: arithmetic (an infix or prefix operator) | elementwise | binary (elementwise, two
    arguments) | reduce (to a scalar) | dot | diff. `jax`: its lowering, a template over the
    lowered arguments `{0}`, `{1}`. `sympy`: `(sympy, *args) -> expression`, None where SymPy
    does not model it. `smooth`: a useful gradient almost everywhere (False: the gradient is zero
    or undefined almost everywhere, a non-differentiable problem). `kinked`: not continuously
    differentiable somewhere (abs, max...). `monotone`: +1 increasing, -1 decreasing, 0 neither
    (bound directions). `linear`: affine in all its arguments together; `multilinear`: affine in
    each argument with the others fixed. `user`: can be written (else only rules produce it);
    a user operation of one argument is also written as a prefix, `log x` (the grammar's
    PREFIX_FN is made from this table). `infix`/`precedence`: how the printer writes an operator.
    """

    kind: str
    jax: str
    sympy: Callable | None = None
    smooth: bool = True
    kinked: bool = False
    monotone: int = 0
    linear: bool = False
    multilinear: bool = False
    user: bool = True
    infix: str = ""
    precedence: int = 0
    static: int = -1
    count: int = 0

    # `count`: the number of arguments where the kind does not say it (construct operations; -1: any).
    # `static` >= 0: the arguments from that position on are integers known at compile time
    # (`ir.Num`), lowered as Python ints (an index, a slice's bounds, a dimension); `{args}` in
    # `jax` stands for all the lowered arguments, comma-separated (variadic operations).

    @property
    def arity(self) -> int:
        if self.count:
            return self.count
        return 2 if self.kind in ("binary", "dot") or self.infix else 1

    def lowered(self, args: list[str]) -> str:
        """The JAX expression over the lowered arguments (static ones already Python ints)."""
        return self.jax.format(*args, args=", ".join(args))

    @property
    def prefix(self) -> bool:
        """Written as a prefix function (`log x`, `norm1 w`) as well as called."""
        return self.user and self.kind in ("elementwise", "reduce", "diff")


def _op(kind: str, jax: str, sympy: Callable | None = None, **traits) -> Operation:
    return Operation(kind, jax, sympy, **traits)


OPERATIONS: dict[str, Operation] = {
    # arithmetic
    "add": _op("arithmetic", "({0} + {1})", lambda sp, a, b: a + b, infix="+", precedence=1, monotone=1,
               linear=True, multilinear=True),
    "sub": _op("arithmetic", "({0} - {1})", lambda sp, a, b: a - b, infix="-", precedence=1, linear=True,
               multilinear=True),
    "mul": _op("arithmetic", "({0} * {1})", lambda sp, a, b: a * b, infix="*", precedence=2, multilinear=True),
    "div": _op("arithmetic", "({0} / {1})", lambda sp, a, b: a / b, infix="/", precedence=2),
    "matmul": _op("arithmetic", "({0} @ {1})", infix="@", precedence=2, multilinear=True),
    "pow": _op("arithmetic", "({0} ** {1})", lambda sp, a, b: a ** b, infix="^", precedence=4),
    "neg": _op("arithmetic", "(-{0})", lambda sp, a: -a, monotone=-1, linear=True, multilinear=True),
    # elementwise
    "log": _op("elementwise", "jnp.log({0})", lambda sp, a: sp.log(a), monotone=1),
    "exp": _op("elementwise", "jnp.exp({0})", lambda sp, a: sp.exp(a), monotone=1),
    "softplus": _op("elementwise", "jax.nn.softplus({0})", lambda sp, a: sp.log(1 + sp.exp(a)), monotone=1),
    "sigmoid": _op("elementwise", "jax.nn.sigmoid({0})", lambda sp, a: 1 / (1 + sp.exp(-a)), monotone=1),
    "tanh": _op("elementwise", "jnp.tanh({0})", lambda sp, a: sp.tanh(a), monotone=1),
    "relu": _op("elementwise", "jax.nn.relu({0})", lambda sp, a: sp.Max(a, 0), monotone=1, kinked=True),
    "abs": _op("elementwise", "jnp.abs({0})", lambda sp, a: sp.Abs(a), kinked=True),
    "sqrt": _op("elementwise", "jnp.sqrt({0})", lambda sp, a: sp.sqrt(a), monotone=1),
    "square": _op("elementwise", "jnp.square({0})", lambda sp, a: a ** 2),
    "step": _op("elementwise", "jnp.where({0} >= 0, 1.0, 0.0)", lambda sp, a: sp.Heaviside(a, 1), smooth=False,
                kinked=True, monotone=1),
    "sign": _op("elementwise", "jnp.sign({0})", lambda sp, a: sp.sign(a), smooth=False, kinked=True, monotone=1),
    "round": _op("elementwise", "jnp.round({0})", smooth=False, kinked=True, monotone=1),
    "floor": _op("elementwise", "jnp.floor({0})", lambda sp, a: sp.floor(a), smooth=False, kinked=True, monotone=1),
    "max": _op("binary", "jnp.maximum({0}, {1})", lambda sp, a, b: sp.Max(a, b), monotone=1, kinked=True),
    "min": _op("binary", "jnp.minimum({0}, {1})", lambda sp, a, b: sp.Min(a, b), monotone=1, kinked=True),
    # reductions
    "sum": _op("reduce", "jnp.sum({0})", monotone=1, linear=True, multilinear=True),
    "mean": _op("reduce", "jnp.mean({0})", monotone=1, linear=True, multilinear=True),
    "logsumexp": _op("reduce", "jax.nn.logsumexp({0})", monotone=1),
    "norm0": _op("reduce", "jnp.sum(jnp.where({0} != 0, 1.0, 0.0))", smooth=False, kinked=True),
    "norm1": _op("reduce", "jnp.sum(jnp.abs({0}))", kinked=True),
    "norm2": _op("reduce", "safe_norm({0})", kinked=True),
    "sumsq": _op("reduce", "jnp.sum(jnp.square({0}))"),
    "dot": _op("dot", 'jnp.einsum("...i,...i->...", {0}, {1})', multilinear=True),   # vmapped: a matrix product
    "diff": _op("diff", "jnp.diff({0})", linear=True, multilinear=True),
    # produced by rules, not written by users
    "stop": _op("elementwise", "jax.lax.stop_gradient({0})", user=False, multilinear=True),
    "log2": _op("elementwise", "jnp.log2({0})", lambda sp, a: sp.log(a, 2), monotone=1, user=False),
    "log_sigmoid": _op("elementwise", "jax.nn.log_sigmoid({0})", monotone=1, user=False),
    "amax": _op("reduce", "jnp.max({0})", monotone=1, user=False, kinked=True),   # max(v): the largest entry
    "amin": _op("reduce", "jnp.min({0})", monotone=1, user=False, kinked=True),   # min(v): the smallest entry
    # arrays (SPEC §9.5): `[a, b]`, `w[i]`, `w[a:b]` are written with brackets, the others as calls
    "array": _op("construct", "jnp.stack([{args}])", user=False, count=-1, linear=True, multilinear=True),
    "index": _op("construct", "{0}[{1}]", lambda sp, a, i: sp.Indexed(sp.IndexedBase(a), i), user=False,
                 linear=True, multilinear=True, static=1, count=2),
    "slice": _op("construct", "{0}[{1}:{2}]", user=False, linear=True, multilinear=True, static=1, count=3),
    # w[c] with c a discrete latent of as many states as w's first axis (a mixture's component)
    "take": _op("construct", "jnp.take({0}, jnp.asarray({1}, jnp.int32), axis=0)", user=False, linear=True, count=2),
    "eye": _op("construct", "jnp.eye({0})", user=False, linear=True, multilinear=True, static=0),
    "zeros": _op("construct", "jnp.zeros(({args},))", user=False, count=-1, linear=True, multilinear=True, static=0),
    "ones": _op("construct", "jnp.ones(({args},))", user=False, count=-1, linear=True, multilinear=True, static=0),
    "concat": _op("construct", "jnp.concatenate([jnp.atleast_1d({0}), jnp.atleast_1d({1})])", user=False, count=2,
                  linear=True, multilinear=True),
}

ARRAY_SYNTAX = ("array", "index", "slice", "take")   # written with brackets: not names a user could call

FUNCTIONS: dict[str, Operation] = {n: op for n, op in OPERATIONS.items() if op.kind != "arithmetic"}
ARITHMETIC = {n for n, op in OPERATIONS.items() if op.kind == "arithmetic"}
INFIX = {n: op.infix for n, op in OPERATIONS.items() if op.infix}
PREFIX_FUNCTIONS = tuple(n for n, op in OPERATIONS.items() if op.prefix)


@dataclass(frozen=True)
class Family:
    """A distribution family: parameter names (alternatives separated by '|'), support,
    whether a pathwise (reparameterised) sample exists, and its base distribution.

    `positive`: parameters that must be > 0. `kinked`: the log density has a kink or a jump in
    its parameters. `noise`: (the `jax.random` sampler of its standard noise, the runtime
    function mapping noise to a draw; `{}` stands for the parameter's name), for families drawn
    from noise taken in a batch. The runtime's `<family>_logpdf` (`_logpmf`) and `_sample`
    (compiler/backend/runtime/distributions.py) give its density and draws.
    """

    params: tuple[str, ...]
    support: str
    reparam: bool
    base: str = ""
    positive: tuple[str, ...] = ()
    kinked: bool = False
    noise: tuple[str, str] | None = None


DISTRIBUTIONS: dict[str, Family] = {
    "Normal": Family(("loc", "scale"), "real", True, "Normal(0, 1)", ("scale",),
                     noise=("normal", "location_scale_from_noise")),
    "Laplace": Family(("loc", "scale"), "real", True, "Laplace(0, 1)", ("scale",), kinked=True,
                      noise=("laplace", "location_scale_from_noise")),
    "LogNormal": Family(("loc", "scale"), "positive", True, "Normal(0, 1)", ("scale",),
                        noise=("normal", "lognormal_from_noise")),
    "Uniform": Family(("low", "high"), "interval", True, "Uniform(0, 1)", kinked=True,
                      noise=("uniform", "uniform_from_noise")),
    "Bernoulli": Family(("logits|probs",), "binary", False, noise=("uniform", "bernoulli_{}_from_noise")),
    "Categorical": Family(("logits",), "categorical", False),
    "Gibbs": Family(("energy",), "real", False),
}

DIVERGENCES = ("KL", "RKL", "JS", "Chi2", "Hellinger2", "TV", "Fisher", "GAN")

NET_ACTIVATIONS = ("relu", "tanh", "softplus", "sigmoid", "elu", "swish")

OPTIMIZERS = {
    "adam": ("lr", "b1", "b2", "eps"),
    "adamw": ("lr", "b1", "b2", "eps", "weight_decay"),
    "sgd": ("lr", "momentum", "nesterov"),
    "rmsprop": ("lr", "decay", "eps", "momentum"),
    "adabelief": ("lr", "b1", "b2"),
}

DYNAMICS = ("simultaneous", "alternating", "extragradient", "sga", "consensus")

TRAIN_OPTIONS = ("steps", "batch", "optimizer", "dynamics", "samples", "schedule")

RESERVED = (set(FUNCTIONS) - set(ARRAY_SYNTAX)) | set(DISTRIBUTIONS) | set(DIVERGENCES) | {"E", "data"}
