"""Special functions closed forms call: the Wright omega function, a norm safe at zero, the
score term x - stop_gradient(x)."""
import jax
import jax.numpy as jnp


@jax.custom_jvp
def wright_omega(z):
    """W(e^z): the root w > 0 of w + log w = z, by Newton steps, which from these starts stay
    below the root and rise to it quadratically; e^z itself below z = -20."""
    zc = jnp.maximum(z, -20.0)
    w = jnp.where(zc > 1.0, zc - jnp.log(jnp.maximum(zc, 1.0)), jnp.log1p(jnp.exp(jnp.minimum(zc, 1.0))))
    for _ in range(6):
        w = w * (1.0 + zc - jnp.log(w)) / (1.0 + w)
    return jnp.where(z < -20.0, jnp.exp(z), w)


@wright_omega.defjvp
def _wright_omega_jvp(primals, tangents):
    """d omega / dz = omega / (1 + omega), from differentiating w + log w = z."""
    w = wright_omega(primals[0])
    return w, tangents[0] * w / (1.0 + w)


@jax.custom_jvp
def gradient_only(x):
    """x - stop_gradient(x): the derivative of x in every direction (the score term of a
    score-function estimator), and in value what x - x is: 0 where x is finite, NaN where x is
    an infinity or NaN (inf - inf = NaN). A non-finite score term thus still makes the loss NaN
    and ends the run (SPEC 9.2) instead of turning into a silent 0; its value reads x only
    through isfinite, no arithmetic of it."""
    return jnp.where(jnp.isfinite(x), jnp.zeros_like(x), jnp.full_like(x, jnp.nan))


@gradient_only.defjvp
def _gradient_only_jvp(primals, tangents):
    return gradient_only(primals[0]), tangents[0]


def safe_norm(x):
    """|x|_2 with gradient 0 (not NaN) at x = 0."""
    sq = jnp.sum(jnp.square(x))
    return jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)
