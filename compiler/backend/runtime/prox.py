"""Proximal maps prox_{t g}(x) = argmin_u g(u) + |u - x|^2 / (2t), applied after a step, and the
terms g they apply, as values."""
import jax.numpy as jnp


def soft_threshold(x, t):
    """prox of t |x|_1: sign(x) max(|x| - t, 0)."""
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - t, 0.0)


def shrink(x, t):
    """prox of t |x|^2: x / (1 + 2t)."""
    return x / (1.0 + 2.0 * t)


def clip_negative(x, t):
    """prox of the indicator of x >= 0: the projection max(x, 0)."""
    return jnp.maximum(x, 0.0)


def l1_norm(x):
    return jnp.sum(jnp.abs(x))


def squared_norm(x):
    return jnp.sum(jnp.square(x))


def zero(x):
    """An indicator's value where its map keeps x."""
    return 0.0


PROX_MAPS = {"norm1": soft_threshold, "sumsq": shrink, "nonneg": clip_negative}
PROX_TERMS = {"norm1": l1_norm, "sumsq": squared_norm, "nonneg": zero}
