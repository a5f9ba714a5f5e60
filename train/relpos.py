"""T5 relative position bias: one [heads, buckets] table per stack, shared by its layers.

Relative positions are key index minus query index within the row. Under packing this is still
right: attention across segments is masked, and inside a segment index differences equal
position differences.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from train.layers import RELPOS_INIT


def relative_position_bucket(relative_position: jax.Array, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> jax.Array:
    """Bucket of each (key - query) offset: exact for small offsets, log-spaced up to max.

    Bidirectional: half the buckets for keys before the query, half (offset by num_buckets/2)
    for keys after. Causal: keys after the query all fall in bucket 0 (masked anyway).
    """
    ret = jnp.zeros_like(relative_position, dtype=jnp.int32)
    n = -jnp.asarray(relative_position, jnp.int32)
    if bidirectional:
        num_buckets //= 2
        ret = ret + (n < 0).astype(jnp.int32) * num_buckets
        n = jnp.abs(n)
    else:
        n = jnp.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    scaled = (jnp.log(n.astype(jnp.float32) / max_exact + np.finfo(np.float32).eps)
              / np.log(max_distance / max_exact) * (num_buckets - max_exact))
    val_if_large = jnp.minimum(max_exact + scaled.astype(jnp.int32), num_buckets - 1)
    return ret + jnp.where(is_small, n, val_if_large)


class RelativePositionBias(nn.Module):
    """Attention bias [1, heads, q_len, k_len] from the `rel_embedding` [heads, buckets] table."""

    num_heads: int
    num_buckets: int = 32
    max_distance: int = 128
    bidirectional: bool = True
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, query_positions: jax.Array, key_positions: jax.Array) -> jax.Array:
        """Bias for 1-D index vectors (may be traced, e.g. the decode cache index)."""
        table = self.param(
            "rel_embedding",
            nn.with_logical_partitioning(RELPOS_INIT, ("heads", "relpos_buckets")),
            (self.num_heads, self.num_buckets), self.param_dtype)
        rel = key_positions[None, :] - query_positions[:, None]
        buckets = relative_position_bucket(rel, self.bidirectional, self.num_buckets,
                                           self.max_distance)
        bias = jnp.take(jnp.asarray(table, self.dtype), buckets, axis=1)  # [h, q, k]
        return bias[None]
