"""Multi-head dot-product attention with 2-D projections and an autoregressive KV cache.

Projections are 2-D kernels [embed, joined_kv] / [joined_kv, embed] (the released checkpoint
layout); the math runs in [batch, length, heads, head_dim] views. There is no 1/sqrt(head_dim)
on the logits: the query kernel's initialisation is scaled by it instead (T5 convention).
"""
from __future__ import annotations

from collections.abc import Callable

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

    Decode protocol (`decode=True`). Self-attention: the first call (no cache yet) creates
    `cached_key` [batch, heads, head_dim, length] and `cached_value` [batch, heads, length,
    head_dim] in the `cache` collection; later calls take one token and write it at
    `cache_index`. Cross-attention (`cross_attention=True`): the first call also stores the
    projected encoder keys and values, in the same layouts, in the `encoded_kv` collection
    (when that collection is mutable); a step given it reads them instead of projecting the
    encoder output again. These are the layouts XLA's batched matmuls read: with [batch,
    length, joined_kv] every decoded token re-laid-out each layer's cache and encoder
    keys/values (a transpose and a copy per tensor per token, inside the search's while loop,
    where loop-invariant code motion does not reach layout copies).
    """

    num_heads: int
    head_dim: int
    dropout_rate: float = 0.0
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    float32_logits: bool = True
    cross_attention: bool = False

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

        heads = lambda x: x.reshape(x.shape[:2] + (self.num_heads, self.head_dim))
        q = heads(project("query", inputs_q, query_init))
        kv = lambda: (heads(project("key", inputs_kv)), heads(project("value", inputs_kv)))
        if not decode:
            k, v = kv()
        elif self.cross_attention:
            k, v = self._encoded_kv(kv)
        else:
            k, v = self._cached_kv(*kv(), cache_index)
        if self.float32_logits:
            q, k = q.astype(jnp.float32), k.astype(jnp.float32)
        # decoding: k [b, h, d, k_len], v [b, h, k_len, d] (see the class docstring)
        logits = jnp.einsum("bqhd,bhdk->bhqk" if decode else "bqhd,bkhd->bhqk", q, k)
        v_spec = "bhkd" if decode else "bkhd"
        logits = logits + mask_bias.astype(logits.dtype)
        if position_bias is not None:
            logits = logits + position_bias.astype(logits.dtype)
        weights = jax.nn.softmax(logits).astype(self.dtype)
        weights = nn.Dropout(rate=self.dropout_rate, broadcast_dims=(-2,))(
            weights, deterministic=deterministic)
        out = jnp.einsum(f"bhqk,{v_spec}->bqhd", weights, v.astype(self.dtype))
        out = constrain(out.reshape(out.shape[:2] + (joined,)), ("batch", "length", "joined_kv"))
        return Dense(inputs_q.shape[-1], ("joined_kv", "embed"), self.dtype, self.param_dtype,
                     ATTENTION_INIT, name="out")(out)

    def _cached_kv(self, key: jax.Array, value: jax.Array, cache_index: jax.Array | None
                   ) -> tuple[jax.Array, jax.Array]:
        """Self-attention keys/values [b, l, h, d] -> the cache's [b, h, d, L] / [b, h, L, d],
        with this call's token written at `cache_index` once the cache exists."""
        key, value = key.transpose(0, 2, 3, 1), value.transpose(0, 2, 1, 3)
        initialized = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape,
                                     value.dtype)
        if not initialized:  # the initialising call: outputs are discarded
            return key, value
        if key.shape[-1] != 1 or cache_index is None:
            raise ValueError("MultiHeadAttention decode step: expected one token per call and "
                             f"a cache_index, got length {key.shape[-1]}")
        cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, key,
                                                        (0, 0, 0, cache_index))
        cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, value,
                                                          (0, 0, cache_index, 0))
        return cached_key.value, cached_value.value

    def _encoded_kv(self, project: Callable[[], tuple[jax.Array, jax.Array]]
                    ) -> tuple[jax.Array, jax.Array]:
        """Encoder keys/values in the cache layouts: stored in `encoded_kv` by the first call
        (when that collection is mutable), read back by the steps that are given it."""
        if self.has_variable("encoded_kv", "key"):
            return (self.get_variable("encoded_kv", "key"),
                    self.get_variable("encoded_kv", "value"))
        key, value = project()
        key, value = key.transpose(0, 2, 3, 1), value.transpose(0, 2, 1, 3)
        if self.is_mutable_collection("encoded_kv"):
            self.put_variable("encoded_kv", "key", key)
            self.put_variable("encoded_kv", "value", value)
        return key, value
