"""mT5 / T5.1.1 model configuration (t5x field names; sizes live in gin/models/*.gin)."""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

REMAT_POLICIES = ("none", "full", "minimal")
_DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class MT5Config:
    """Hyper-parameters of the encoder-decoder; validated on construction.

    `dtype` is the activation (compute) dtype, `param_dtype` the storage dtype of parameters.
    `remat_policy`: 'none' keeps every activation, 'full' saves nothing (recompute the layer in
    the backward pass), 'minimal' saves only matmul outputs without batch dimensions.
    """

    vocab_size: int = 250112
    emb_dim: int = 512
    num_heads: int = 6
    head_dim: int = 64
    mlp_dim: int = 1024
    num_encoder_layers: int = 8
    num_decoder_layers: int = 8
    dropout_rate: float = 0.0
    dtype: str = "bfloat16"
    param_dtype: str = "float32"
    relpos_buckets: int = 32
    relpos_max_distance: int = 128
    scan_layers: bool = False
    remat_policy: str = "none"
    float32_attention_logits: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "emb_dim", "num_heads", "head_dim", "mlp_dim",
                     "num_encoder_layers", "num_decoder_layers", "relpos_buckets",
                     "relpos_max_distance"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MT5Config.{name}={value!r}: expected a positive int")
        if not 0.0 <= float(self.dropout_rate) < 1.0:
            raise ValueError(f"MT5Config.dropout_rate={self.dropout_rate!r}: expected [0, 1)")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in _DTYPES:
                raise ValueError(
                    f"MT5Config.{name}={getattr(self, name)!r}: expected one of {_DTYPES}")
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(f"MT5Config.remat_policy={self.remat_policy!r}: "
                             f"expected one of {REMAT_POLICIES}")
        if self.relpos_buckets % 2:
            raise ValueError(f"MT5Config.relpos_buckets={self.relpos_buckets}: expected even "
                             "(half the buckets per direction in the encoder)")

    @property
    def joined_kv(self) -> int:
        """Width of the 2-D q/k/v projections: heads * head_dim."""
        return self.num_heads * self.head_dim

    @property
    def activation_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @property
    def parameter_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.param_dtype)
