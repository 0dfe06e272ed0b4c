"""Convolutional encoder and decoder for 8x8 digit images, in plain JAX, for examples/conv_vae.att.

A net from Python is any object with `init(key, x) -> params` and `apply(params, x) -> y`, where
`x` is one example (attractor maps `apply` over the batch and the draws); a Flax linen module
has both, these are written with `jax.lax.conv_general_dilated` so that nothing beyond JAX is
needed.

    encoder: x (64 pixels) -> 8x8x1 -> conv 3x3, 8 channels -> relu -> conv 3x3 stride 2, 16
             channels -> relu -> 4x4x16 -> dense -> (mu, s) of the latent (2 * latent numbers)
    decoder: z (latent) -> dense -> 4x4x16 -> relu -> upsample x2 -> conv 3x3, 8 channels -> relu
             -> conv 3x3, 1 channel -> 64 logits
"""
import jax
import jax.numpy as jnp
import numpy as np

LATENT = 8
DIMENSIONS = ("NHWC", "HWIO", "NHWC")   # images: batch, height, width, channels; kernels: h, w, in, out


def conv(params, x, stride=1):
    """A 3x3 convolution of one image `x` (height, width, channels), 'SAME' padding, plus a bias."""
    y = jax.lax.conv_general_dilated(x[None], params["w"], (stride, stride), "SAME", dimension_numbers=DIMENSIONS)
    return y[0] + params["b"]


def conv_init(key, channels_in, channels_out):
    """He-normal kernel (variance 2 / fan-in), zero bias."""
    w = jax.random.normal(key, (3, 3, channels_in, channels_out)) * np.sqrt(2.0 / (9 * channels_in))
    return {"w": w, "b": jnp.zeros((channels_out,))}


def dense_init(key, n_in, n_out):
    """LeCun-normal weights (variance 1 / fan-in), zero bias."""
    return {"w": jax.random.normal(key, (n_in, n_out)) / np.sqrt(n_in), "b": jnp.zeros((n_out,))}


class Encoder:
    """q's parameters from an image: 2 * LATENT numbers, the means then the (pre-softplus) scales."""

    def init(self, key, x):
        k1, k2, k3 = jax.random.split(key, 3)
        return {"conv1": conv_init(k1, 1, 8), "conv2": conv_init(k2, 8, 16), "out": dense_init(k3, 4 * 4 * 16, 2 * LATENT)}

    def apply(self, params, x):
        h = jax.nn.relu(conv(params["conv1"], jnp.reshape(x, (8, 8, 1))))
        h = jax.nn.relu(conv(params["conv2"], h, stride=2))          # 4 x 4 x 16
        return jnp.reshape(h, (-1,)) @ params["out"]["w"] + params["out"]["b"]


class Decoder:
    """The 64 Bernoulli logits of an image from a latent z."""

    def init(self, key, z):
        k1, k2, k3 = jax.random.split(key, 3)
        return {"in": dense_init(k1, z.shape[-1], 4 * 4 * 16), "conv1": conv_init(k2, 16, 8), "conv2": conv_init(k3, 8, 1)}

    def apply(self, params, z):
        h = jax.nn.relu(jnp.reshape(z @ params["in"]["w"] + params["in"]["b"], (4, 4, 16)))
        h = jnp.repeat(jnp.repeat(h, 2, axis=0), 2, axis=1)           # 8 x 8 x 16, nearest-neighbour upsampling
        h = jax.nn.relu(conv(params["conv1"], h))
        return jnp.reshape(conv(params["conv2"], h), (64,))


encoder = Encoder()
decoder = Decoder()
