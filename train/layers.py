"""Building blocks of T5.1.1: dense kernels with logical axes, RMS norm, gated-GELU MLP, embed.

Kernels are declared with explicit 2-D shapes (`self.param` + `nn.with_logical_partitioning`)
rather than `nn.DenseGeneral` with tuple features, which fails inside a mesh. Activation
constraints use the plain logical names 'batch', 'length', 'embed', 'mlp', 'joined_kv' (t5x
spells some of them 'activation_*'; the partitioning rules map both).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]

# t5x defaults: fan-in scaled kernels, N(0, 1) embedding, ones for norm scales.
DENSE_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
ATTENTION_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
EMBED_INIT = nn.initializers.normal(stddev=1.0)
RELPOS_INIT = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def constrain(x: jax.Array, axes: Sequence[str]) -> jax.Array:
    """Logical sharding constraint on an activation (a no-op outside a mesh with rules)."""
    return nn.with_logical_constraint(x, tuple(axes))


class Dense(nn.Module):
    """x @ kernel with a 2-D kernel [in, out] named by logical axes; no bias."""

    features: int
    kernel_axes: tuple[str, str]
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    kernel_init: Initializer = DENSE_INIT

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel", nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
            (x.shape[-1], self.features), self.param_dtype)
        x = jnp.asarray(x, self.dtype)
        # One 2-D [tokens, in] x [in, out] matmul, so the weight gradient x^T dy is a plain
        # 2-D matmul too. With [batch, length, in] XLA:CPU first copies dy into a transposed
        # [out, batch, length] layout: a full extra pass over the logits gradient.
        y = jnp.dot(x.reshape(-1, x.shape[-1]), jnp.asarray(kernel, self.dtype))
        return y.reshape(x.shape[:-1] + (self.features,))


class RMSNorm(nn.Module):
    """T5 layer norm: scale only, no mean subtraction, statistics in float32."""

    epsilon: float = 1e-6
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                           (x.shape[-1],), self.param_dtype)
        x = jnp.asarray(x, jnp.float32)
        mean2 = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
        y = jnp.asarray(x * jax.lax.rsqrt(mean2 + self.epsilon), self.dtype)
        return y * jnp.asarray(scale, self.dtype)


class Embed(nn.Module):
    """Token embedding table [vocab, embed]; lookup returns activations in `dtype`."""

    num_embeddings: int
    features: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.embedding = self.param(
            "embedding", nn.with_logical_partitioning(EMBED_INIT, ("vocab", "embed")),
            (self.num_embeddings, self.features), self.param_dtype)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        if not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"Embed: token ids must be integers, got dtype {tokens.dtype}")
        # Gather first, then cast the [batch, length, embed] rows: casting the whole
        # [vocab, embed] table every step (and its gradient back) is a memory-bound pass.
        rows = jnp.take(self.embedding, tokens, axis=0).astype(self.dtype)
        return constrain(rows, ("batch", "length", "embed"))


class MlpBlock(nn.Module):
    """Gated-GELU feed-forward: wo(gelu(x wi_0) * (x wi_1)), dropout on the hidden units."""

    mlp_dim: int
    dropout_rate: float = 0.0
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        dense = lambda n, feats, axes: Dense(feats, axes, self.dtype, self.param_dtype, name=n)
        gate = nn.gelu(dense("wi_0", self.mlp_dim, ("embed", "mlp"))(x), approximate=True)
        h = gate * dense("wi_1", self.mlp_dim, ("embed", "mlp"))(x)
        h = nn.Dropout(rate=self.dropout_rate, broadcast_dims=(-2,))(
            h, deterministic=deterministic)
        h = constrain(h, ("batch", "length", "mlp"))
        return dense("wo", x.shape[-1], ("mlp", "embed"))(h)
