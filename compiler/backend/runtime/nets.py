"""Networks: multilayer perceptrons, `net f : mlp(w0, w1, ..., act=relu)` (SPEC section 2), and
the author's nets from Python, `net f : python("nets.py:name")` (SPEC section 9.5), whose `apply`
sees one example and is mapped over the rest."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "softplus": jax.nn.softplus,
               "sigmoid": jax.nn.sigmoid, "elu": jax.nn.elu, "swish": jax.nn.swish}


def mlp_init(key, widths):
    """LeCun-normal weights (variance 1 / fan-in), zero biases."""
    layers = []
    for m, n in itertools.pairwise(widths):
        key, k = jax.random.split(key)
        layers.append({"w": jax.random.normal(k, (m, n)) / np.sqrt(m), "b": jnp.zeros((n,))})
    return layers


def mlp(layers, x, act):
    """act(... act(x W1 + b1) ...) WL + bL: no activation after the last layer."""
    f = ACTIVATIONS[act]
    for layer in layers[:-1]:
        x = f(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def apply_python_net(net, params, x, shape_in):
    """`net.apply(params, .)` on every example of `x`, of shape (..., *shape_in): the leading axes
    (the batch, the draws) flattened into one, mapped over with jax.vmap, and restored."""
    lead = x.shape[:x.ndim - len(shape_in)]
    y = jax.vmap(lambda one: net.apply(params, one))(jnp.reshape(x, (-1,) + tuple(shape_in)))
    return jnp.reshape(y, lead + y.shape[1:])
