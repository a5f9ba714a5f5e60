"""Multi-head dot-product attention with 2-D projections and an autoregressive KV cache.

Projections are 2-D kernels [embed, joined_kv] / [joined_kv, embed] (the released checkpoint
layout); the math runs in [batch, length, heads, head_dim] views. There is no 1/sqrt(head_dim)
on the logits: the query kernel's initialisation is scaled by it instead (T5 convention).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from train.layers import ATTENTION_INIT, Dense, constrain

NEG_INF = -1e10


def mask_to_bias(mask: jax.Array) -> jax.Array:
    """Boolean/0-1 attention mask [..., q, k] -> additive float32 bias (0 or -1e10)."""
    return jnp.where(mask > 0, 0.0, NEG_INF).astype(jnp.float32)


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with additive biases on the logits.

    `mask_bias` [b|1, 1, q, k] (from `mask_to_bias`) and the optional `position_bias`
    [1, h, q, k] are kept apart so that a stack holds b*l*l + h*l*l floats, not b*h*l*l.

    Decode protocol (self-attention only): with `decode=True` the first call (no cache yet)
    creates `cached_key` / `cached_value` [batch, length, joined_kv] in the `cache` collection
    from the full-length input; later calls take one token and write it at `cache_index`.
    """

    num_heads: int
    head_dim: int
    dropout_rate: float = 0.0
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    float32_logits: bool = True

    @nn.compact
    def __call__(self, inputs_q: jax.Array, inputs_kv: jax.Array, mask_bias: jax.Array,
                 position_bias: jax.Array | None = None, *,
                 deterministic: bool, decode: bool = False,
                 cache_index: jax.Array | None = None) -> jax.Array:
        joined = self.num_heads * self.head_dim
        scale = float(self.head_dim) ** -0.5

        def query_init(key, shape, dtype=jnp.float32):
            return ATTENTION_INIT(key, shape, dtype) * jnp.asarray(scale, dtype)

        def project(name: str, x: jax.Array, init=ATTENTION_INIT) -> jax.Array:
            y = Dense(joined, ("embed", "joined_kv"), self.dtype, self.param_dtype, init,
                      name=name)(x)
            return constrain(y, ("batch", "length", "joined_kv"))

        query = project("query", inputs_q, query_init)
        key = project("key", inputs_kv)
        value = project("value", inputs_kv)

        if decode:
            initialized = self.has_variable("cache", "cached_key")
            cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
            cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape,
                                         value.dtype)
            if initialized:
                if query.shape[1] != 1 or cache_index is None:
                    raise ValueError("MultiHeadAttention decode step: expected one token per "
                                     f"call and a cache_index, got length {query.shape[1]}")
                start = (0, cache_index, 0)
                cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, key, start)
                cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, value,
                                                                  start)
                key, value = cached_key.value, cached_value.value

        heads = lambda x: x.reshape(x.shape[:2] + (self.num_heads, self.head_dim))
        q, k, v = heads(query), heads(key), heads(value)
        if self.float32_logits:
            q, k = q.astype(jnp.float32), k.astype(jnp.float32)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
        logits = logits + mask_bias.astype(logits.dtype)
        if position_bias is not None:
            logits = logits + position_bias.astype(logits.dtype)
        weights = jax.nn.softmax(logits).astype(self.dtype)
        weights = nn.Dropout(rate=self.dropout_rate, broadcast_dims=(-2,))(
            weights, deterministic=deterministic)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v.astype(self.dtype))
        out = constrain(out.reshape(out.shape[:2] + (joined,)), ("batch", "length", "joined_kv"))
        return Dense(inputs_q.shape[-1], ("joined_kv", "embed"), self.dtype, self.param_dtype,
                     ATTENTION_INIT, name="out")(out)
