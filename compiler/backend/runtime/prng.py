"""jax's default random numbers (Threefry-2x32, partitionable), computed with the hash's 20
rounds written out instead of in a loop.

On a CPU jax lowers each Threefry hash to a `while` loop of 5 iterations (to compile faster),
and a training step makes several (the key of step t, its split, the minibatch's indices, the
noise): measured in vae.att's loop, about a tenth of a step is spent running those small loops.
`THREEFRY` is the same generator as a jax PRNG implementation whose hash is straight-line code,
which XLA fuses into the kernel that uses the bits: keys wrapped with it (`unrolled_key`) give,
through every `jax.random` function, bit for bit the numbers that the raw key gives (tested), so
a run computes what it computed before, faster.

Threefry-2x32 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011), as jax
computes it: key (k0, k1), k2 = k0 ^ k1 ^ 0x1BD11BDA; x += (k0, k1); then 5 groups of 4 rounds
(x0 += x1; x1 = rotl(x1, r) ^ x0; rotations 13 15 26 6 and 17 29 16 24 alternately), after group
i (from 0) x0 += k[(i + 1) % 3], x1 += k[(i + 2) % 3] + i + 1. The bits of an array of shape S
hash the 64-bit counters 0 .. |S| - 1 (high and low words) and are the xor of the two output
words; a split into S keys hashes the same counters and keeps both words; fold_in(key, d)
hashes the single counter (0, d).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import define_prng_impl

THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry2x32(k0, k1, x0, x1):
    """The Threefry-2x32 hash of the counters (x0, x1) under the key (k0, k1), 20 rounds."""
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in THREEFRY_ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _counters(shape):
    """The 64-bit counters 0 .. prod(shape) - 1 in the shape, as (high words, low words)."""
    size = math.prod(shape)
    if size >= 2**32:
        raise NotImplementedError("random bits of 2^32 or more entries")
    low = jax.lax.iota(np.uint32, size).reshape(shape) if shape else jnp.zeros((), np.uint32)
    return jnp.zeros(shape, np.uint32), low


def _hash(key, shape):
    high, low = _counters(tuple(shape))
    return threefry2x32(key[0], key[1], high, low)


def _random_bits(key, bit_width, shape):
    """Uniform random bits of `bit_width` (8, 16, 32 or 64) in `shape`."""
    b0, b1 = _hash(key, shape)
    if bit_width == 64:
        return (b0.astype(np.uint64) << np.uint64(32)) | b1.astype(np.uint64)
    bits = b0 ^ b1
    return bits if bit_width == 32 else bits.astype({8: np.uint8, 16: np.uint16}[bit_width])


def _split(key, shape):
    b0, b1 = _hash(key, shape)
    return jnp.stack([b0, b1], axis=b0.ndim)


def _fold_in(key, data):
    b0, b1 = threefry2x32(key[0], key[1], np.uint32(0), jnp.asarray(data).astype(np.uint32))
    return jnp.stack([b0, b1])


def _seed(seed):
    """The key of an integer seed, as jax.random.PRNGKey makes it: (high word, low word)."""
    return jax.random.key_data(jax.random.PRNGKey(seed))


THREEFRY = define_prng_impl(key_shape=(2,), seed=_seed, split=_split, random_bits=_random_bits,
                            fold_in=_fold_in, name="threefry2x32 (rounds written out)", tag="tfu")


def unrolled_key(key):
    """A raw key (uint32[2], jax.random.PRNGKey) as a key of THREEFRY: the same numbers from every
    jax.random function, the hash computed without a loop."""
    return jax.random.wrap_key_data(key, impl=THREEFRY)
