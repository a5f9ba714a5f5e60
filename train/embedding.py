"""Sentence embeddings from any layer of the mT5 encoder (t5x tree, scanned or not).

Layer convention (Hugging Face's `output_hidden_states`): for `layer` L in 1..N-1 the hidden
state is the residual stream after encoder layer L, with no norm applied; L = N (the default,
`layer=None`) is the encoder's output after `encoder/encoder_norm`, what the decoder attends to.
Only the first L layers run (the layer parameters are sliced), so layer L costs L/N of the
encoder. Dropout is always off.

Pooling: 'mean' averages over non-padding tokens (id 0 is padding; an all-padding row pools to
zeros), 'first' takes the first token. The result is float32 [batch, emb], not normalised:
cosine callers normalise (`eval.retrieval` does).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from train.config import MT5Config
from train.layers import Embed
from train.network import Encoder

POOLINGS = ("mean", "first")


class EncoderStack(nn.Module):
    """`token_embedder` + `encoder` under the names of `train.network.Transformer`, so the
    encoder half of an encoder-decoder tree (or a released checkpoint) applies as is."""

    config: MT5Config

    def setup(self) -> None:
        cfg = self.config
        self.token_embedder = Embed(cfg.vocab_size, cfg.emb_dim, dtype=cfg.activation_dtype,
                                    param_dtype=cfg.parameter_dtype)
        self.encoder = Encoder(cfg, self.token_embedder)

    def hidden_states(self, tokens: jax.Array, *, enable_dropout: bool = False,
                      final_norm: bool = True) -> jax.Array:
        """[b, l, emb] in the activation dtype; padding (id 0) is masked out of attention."""
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"encoder tokens must be integer [batch, length], got shape "
                             f"{tokens.shape} dtype {tokens.dtype}")
        valid = tokens > 0
        mask = nn.make_attention_mask(valid, valid)
        return self.encoder(tokens, mask, deterministic=not enable_dropout,
                            final_norm=final_norm)

    def __call__(self, tokens: jax.Array, *, enable_dropout: bool = False,
                 final_norm: bool = True) -> jax.Array:
        return self.hidden_states(tokens, enable_dropout=enable_dropout, final_norm=final_norm)


def check_layer(config: MT5Config, layer: int | None) -> int:
    """`layer` (None = last) as an int in 1..num_encoder_layers; a clear error otherwise."""
    n = config.num_encoder_layers
    if layer is None:
        return n
    if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= n:
        raise ValueError(f"embedding layer={layer!r}: expected an int in 1..{n} "
                         f"(num_encoder_layers; {n} = encoder output after encoder_norm)")
    return layer


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r}: expected one of {POOLINGS}")
    return pooling


def pool(hidden: jax.Array, tokens: jax.Array, pooling: str) -> jax.Array:
    """[b, l, emb] -> float32 [b, emb] by `pooling` over the non-padding tokens."""
    hidden = hidden.astype(jnp.float32)
    if check_pooling(pooling) == "first":
        return hidden[:, 0]
    weights = (tokens > 0).astype(jnp.float32)[..., None]
    total = jnp.sum(hidden * weights, axis=1)
    return total / jnp.maximum(jnp.sum(weights, axis=1), 1.0)


def truncate_encoder(config: MT5Config, params: Mapping[str, Any], layer: int
                     ) -> tuple[MT5Config, dict[str, Any]]:
    """The config and `{token_embedder, encoder}` params of the first `layer` encoder layers.

    Works on the unscanned (`layers_{i}`) and scanned (stacked `layers`) layouts; any other
    top-level entries (decoder, projection) are dropped.
    """
    for key in ("token_embedder", "encoder"):
        if key not in params:
            raise ValueError(f"encoder embeddings: params have no {key!r} subtree "
                             f"(top-level keys {sorted(params)})")
    encoder = dict(params["encoder"])
    n = config.num_encoder_layers
    if layer < n:
        if config.scan_layers:
            if "layers" not in encoder:
                raise ValueError("encoder embeddings: config.scan_layers=True but the params "
                                 f"have no encoder/layers (keys {sorted(encoder)})")
            encoder["layers"] = jax.tree.map(lambda x: x[:layer], encoder["layers"])
        else:
            for i in range(layer, n):
                encoder.pop(f"layers_{i}", None)
    cut = dataclasses.replace(config, num_encoder_layers=layer, dropout_rate=0.0)
    return cut, {"token_embedder": params["token_embedder"], "encoder": encoder}


def encoder_hidden_states(config: MT5Config, params: Mapping[str, Any], tokens: jax.Array,
                          *, layer: int | None = None) -> jax.Array:
    """[b, l, emb] hidden states after `layer` (module docstring); jit-able."""
    layer = check_layer(config, layer)
    cut, sub = truncate_encoder(config, params, layer)
    return EncoderStack(cut).apply({"params": sub}, tokens,
                                   final_norm=layer == config.num_encoder_layers)


def encoder_embeddings(config: MT5Config, params: Mapping[str, Any], tokens: jax.Array, *,
                       layer: int | None = None, pooling: str = "mean") -> jax.Array:
    """float32 [b, emb] sentence embeddings: `layer`'s hidden states pooled by `pooling`."""
    check_pooling(pooling)
    hidden = encoder_hidden_states(config, params, tokens, layer=layer)
    return pool(hidden, tokens, pooling)
