"""The language's builtin functions and distribution families, as data."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Function:
    """`kind`: elementwise | binary (elementwise, two args) | reduce (to a scalar) | dot | diff.

    `smooth`: has a useful gradient almost everywhere. `monotone`: +1 increasing,
    -1 decreasing, 0 neither (used to track bound directions). `user`: can be written.
    """

    kind: str
    smooth: bool = True
    monotone: int = 0
    user: bool = True


FUNCTIONS: dict[str, Function] = {
    "log": Function("elementwise", monotone=1),
    "exp": Function("elementwise", monotone=1),
    "softplus": Function("elementwise", monotone=1),
    "sigmoid": Function("elementwise", monotone=1),
    "tanh": Function("elementwise", monotone=1),
    "relu": Function("elementwise", monotone=1),
    "abs": Function("elementwise"),
    "sqrt": Function("elementwise", monotone=1),
    "square": Function("elementwise"),
    "step": Function("elementwise", smooth=False, monotone=1),
    "sign": Function("elementwise", smooth=False, monotone=1),
    "round": Function("elementwise", smooth=False, monotone=1),
    "floor": Function("elementwise", smooth=False, monotone=1),
    "max": Function("binary", monotone=1),
    "min": Function("binary", monotone=1),
    "sum": Function("reduce", monotone=1),
    "mean": Function("reduce", monotone=1),
    "logsumexp": Function("reduce", monotone=1),
    "norm0": Function("reduce", smooth=False),
    "norm1": Function("reduce"),
    "norm2": Function("reduce"),
    "sumsq": Function("reduce"),
    "dot": Function("dot"),
    "diff": Function("diff"),
    # produced by rules, not written by users
    "stop": Function("elementwise", user=False),
    "log2": Function("elementwise", monotone=1, user=False),
    "log_sigmoid": Function("elementwise", monotone=1, user=False),
    "amax": Function("reduce", monotone=1, user=False),    # the largest entry (reports)
}

ARITHMETIC = {"add", "sub", "mul", "div", "pow", "neg", "matmul"}
INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "^", "matmul": "@"}


@dataclass(frozen=True)
class Family:
    """A distribution family: parameter names (alternatives separated by '|'), support,
    whether a pathwise (reparameterised) sample exists, and its base distribution."""

    params: tuple[str, ...]
    support: str
    reparam: bool
    base: str = ""
    positive: tuple[str, ...] = ()   # parameters that must be > 0


DISTRIBUTIONS: dict[str, Family] = {
    "Normal": Family(("loc", "scale"), "real", True, "Normal(0, 1)", ("scale",)),
    "Laplace": Family(("loc", "scale"), "real", True, "Laplace(0, 1)", ("scale",)),
    "LogNormal": Family(("loc", "scale"), "positive", True, "Normal(0, 1)", ("scale",)),
    "Uniform": Family(("low", "high"), "interval", True, "Uniform(0, 1)"),
    "Bernoulli": Family(("logits|probs",), "binary", False),
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

RESERVED = set(FUNCTIONS) | set(DISTRIBUTIONS) | set(DIVERGENCES) | {"E", "data"}
