"""Log densities and draws of the distribution families (SPEC section 2).

Log densities are elementwise; the lowering sums them over the event. A draw `family_sample(key,
params..., shape)` has the broadcast shape of `shape` and the parameters. Where the draws of a
batch are independent, the lowering draws the standard noise for the whole batch at once
(`jax.random.normal(key, (B, *shape))`) and maps it per example through `family_from_noise`:
x = loc + scale * eps (Normal, Laplace), exp(loc + scale * eps) (LogNormal), low + (high - low) u
(Uniform), [u < p] (Bernoulli), the same distributions as the keyed draws.
"""
import jax
import jax.numpy as jnp

LOG_2PI = 1.8378770664093453


def normal_logpdf(x, loc, scale):
    """log N(x; loc, scale^2) = -((x - loc) / scale)^2 / 2 - log scale - log(2 pi) / 2."""
    return -0.5 * jnp.square((x - loc) / scale) - jnp.log(scale) - 0.5 * LOG_2PI


def laplace_logpdf(x, loc, scale):
    """log Laplace(x; loc, scale) = -|x - loc| / scale - log(2 scale)."""
    return -jnp.abs(x - loc) / scale - jnp.log(2.0 * scale)


def lognormal_logpdf(x, loc, scale):
    """log LogNormal(x; loc, scale) = log N(log x; loc, scale^2) - log x."""
    return normal_logpdf(jnp.log(x), loc, scale) - jnp.log(x)


def uniform_logpdf(x, low, high):
    """-log(high - low) on [low, high], -inf outside."""
    return jnp.where((x >= low) & (x <= high), -jnp.log(high - low), -jnp.inf)


@jax.custom_jvp
def logistic(x):
    """sigmoid(x) = 1 / (1 + e^-x), as (1 or e) / (1 + e) with e = e^-|x| (no overflow), the same
    e^-|x| as `softplus_of_logits`; derivative sigmoid(x) (1 - sigmoid(x)) at every x."""
    e = jnp.exp(-jnp.abs(x))
    return jnp.where(x >= 0, 1.0, e) / (1.0 + e)


@logistic.defjvp
def _logistic_jvp(primals, tangents):
    s = logistic(primals[0])
    return s, s * (1.0 - s) * tangents[0]


@jax.custom_jvp
def softplus_of_logits(x):
    """softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|), derivative sigmoid(x). jax.nn.softplus
    (logaddexp) takes its derivative as exp(x - softplus(x)), a second exponential per entry;
    here the derivative reuses e^-|x| of the value (a Bernoulli likelihood of a decoder's logits
    is most of a VAE's elementwise work)."""
    return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@softplus_of_logits.defjvp
def _softplus_of_logits_jvp(primals, tangents):
    return softplus_of_logits(primals[0]), logistic(primals[0]) * tangents[0]


def bernoulli_logits_logpmf(x, logits):
    """x l - softplus(l) = x log sigmoid(l) + (1 - x) log sigmoid(-l)."""
    return x * logits - softplus_of_logits(logits)


def bernoulli_probs_logpmf(x, probs):
    """x log p + (1 - x) log(1 - p)."""
    return x * jnp.log(probs) + (1.0 - x) * jnp.log1p(-probs)


def categorical_logpmf(x, logits):
    """log softmax(logits)[x], x an integer-valued float."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, x.astype(jnp.int32)[..., None], axis=-1)[..., 0]


def _shape(shape, *params):
    return jnp.broadcast_shapes(shape, *(jnp.shape(p) for p in params))


def normal_sample(key, loc, scale, shape):
    return loc + scale * jax.random.normal(key, _shape(shape, loc, scale))


def laplace_sample(key, loc, scale, shape):
    return loc + scale * jax.random.laplace(key, _shape(shape, loc, scale))


def lognormal_sample(key, loc, scale, shape):
    return jnp.exp(normal_sample(key, loc, scale, shape))


def uniform_sample(key, low, high, shape):
    return low + (high - low) * jax.random.uniform(key, _shape(shape, low, high))


def bernoulli_logits_sample(key, logits, shape):
    return jax.random.bernoulli(key, jax.nn.sigmoid(logits), _shape(shape, logits)).astype(jnp.float32)


def bernoulli_probs_sample(key, probs, shape):
    return jax.random.bernoulli(key, probs, _shape(shape, probs)).astype(jnp.float32)


def categorical_sample(key, logits, shape):
    return jax.random.categorical(key, logits, shape=_shape(shape, logits[..., 0])).astype(jnp.float32)


def _noise(noise, *params):
    """`noise`, checked (at trace time) to have the draw's whole shape: a parameter of a larger
    shape would reuse one noise value for several coordinates."""
    if _shape(jnp.shape(noise), *params) != jnp.shape(noise):
        raise ValueError(f"noise of shape {jnp.shape(noise)} for parameters of shapes {[jnp.shape(p) for p in params]}")
    return noise


def location_scale_from_noise(eps, loc, scale):
    """loc + scale * eps: Normal(loc, scale) from eps ~ N(0, 1), Laplace from eps ~ Laplace(0, 1)."""
    return loc + scale * _noise(eps, loc, scale)


def lognormal_from_noise(eps, loc, scale):
    """exp(loc + scale * eps), eps ~ N(0, 1)."""
    return jnp.exp(location_scale_from_noise(eps, loc, scale))


def uniform_from_noise(u, low, high):
    """low + (high - low) u, u ~ U(0, 1)."""
    return low + (high - low) * _noise(u, low, high)


def bernoulli_logits_from_noise(u, logits):
    """[u < sigmoid(logits)], u ~ U(0, 1)."""
    return (_noise(u, logits) < jax.nn.sigmoid(logits)).astype(jnp.float32)


def bernoulli_probs_from_noise(u, probs):
    """[u < probs], u ~ U(0, 1)."""
    return (_noise(u, probs) < probs).astype(jnp.float32)
