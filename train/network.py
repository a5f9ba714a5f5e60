"""mT5 / T5.1.1 encoder-decoder whose parameter tree is the t5x tree verbatim.

Parameters (boxed with logical axes at init): `token_embedder/embedding`,
`{encoder,decoder}/relpos_bias/rel_embedding`, `encoder/layers_{i}/...`,
`decoder/layers_{i}/...`, `encoder/encoder_norm`, `decoder/decoder_norm`,
`decoder/logits_dense`. With `scan_layers=True` the per-layer subtrees are one stacked
`layers` subtree (layer axis first, logical axis 'layers'); `train.scan` converts.

Decode cache (collection 'cache'): per self-attention layer `cached_key` [batch, heads,
head_dim, length] / `cached_value` [batch, heads, length, head_dim] (scanned: the layer axis
second) and one scalar int32 `decoder/cache_index`. Every non-scalar cache leaf has the batch
on axis 0, so beam search can reorder it with `jax.tree.map`, leaving scalar leaves alone. The
initialising decode call can also return the cross-attention keys/values of the encoder
output (collection 'encoded_kv', same layouts); steps given it skip those projections (see
`train.attention`).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from train.attention import MultiHeadAttention, mask_to_bias
from train.config import MT5Config
from train.layers import Dense, Embed, MlpBlock, RMSNorm, constrain
from train.relpos import RelativePositionBias

_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _dtypes(cfg: MT5Config) -> dict[str, Any]:
    return {"dtype": cfg.activation_dtype, "param_dtype": cfg.parameter_dtype}


def _dropout(cfg: MT5Config, x: jax.Array, deterministic: bool) -> jax.Array:
    return nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)


def _attention(cfg: MT5Config, name: str, cross: bool = False) -> MultiHeadAttention:
    return MultiHeadAttention(cfg.num_heads, cfg.head_dim, cfg.dropout_rate,
                              float32_logits=cfg.float32_attention_logits,
                              cross_attention=cross, name=name, **_dtypes(cfg))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + gated-GELU MLP, residuals, dropout after each sublayer."""

    config: MT5Config
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, mask_bias: jax.Array, position_bias: jax.Array):
        cfg, det = self.config, self.deterministic
        y = RMSNorm(name="pre_attention_layer_norm", **_dtypes(cfg))(x)
        y = _attention(cfg, "attention")(y, y, mask_bias, position_bias, deterministic=det)
        x = x + _dropout(cfg, y, det)
        y = RMSNorm(name="pre_mlp_layer_norm", **_dtypes(cfg))(x)
        y = MlpBlock(cfg.mlp_dim, cfg.dropout_rate, name="mlp", **_dtypes(cfg))(y, det)
        x = constrain(x + _dropout(cfg, y, det), ("batch", "length", "embed"))
        return (x, None) if cfg.scan_layers else x


class DecoderLayer(nn.Module):
    """Self-attention (cached when decoding), encoder-decoder attention, MLP; all pre-norm."""

    config: MT5Config
    deterministic: bool = True
    decode: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, encoded: jax.Array, self_mask_bias: jax.Array,
                 position_bias: jax.Array, cross_mask_bias: jax.Array,
                 cache_index: jax.Array | None):
        cfg, det = self.config, self.deterministic
        y = RMSNorm(name="pre_self_attention_layer_norm", **_dtypes(cfg))(x)
        y = _attention(cfg, "self_attention")(y, y, self_mask_bias, position_bias,
                                              deterministic=det, decode=self.decode,
                                              cache_index=cache_index)
        x = x + _dropout(cfg, y, det)
        y = RMSNorm(name="pre_cross_attention_layer_norm", **_dtypes(cfg))(x)
        y = _attention(cfg, "encoder_decoder_attention", cross=True)(
            y, encoded, cross_mask_bias, deterministic=det, decode=self.decode)
        x = x + _dropout(cfg, y, det)
        y = RMSNorm(name="pre_mlp_layer_norm", **_dtypes(cfg))(x)
        y = MlpBlock(cfg.mlp_dim, cfg.dropout_rate, name="mlp", **_dtypes(cfg))(y, det)
        x = constrain(x + _dropout(cfg, y, det), ("batch", "length", "embed"))
        return (x, None) if cfg.scan_layers else x


def _run_layers(cfg: MT5Config, layer_cls: type[nn.Module], num_layers: int,
                x: jax.Array, *args: Any, **layer_kwargs: Any) -> jax.Array:
    """Apply `num_layers` layers as `layers_{i}` children, or as one scanned `layers` child."""
    if cfg.remat_policy != "none":
        layer_cls = nn.remat(layer_cls, policy=_REMAT_POLICIES[cfg.remat_policy],
                             prevent_cse=not cfg.scan_layers)
    if not cfg.scan_layers:
        for i in range(num_layers):
            x = layer_cls(cfg, name=f"layers_{i}", **layer_kwargs)(x, *args)
        return x
    scanned = nn.scan(
        layer_cls,
        variable_axes={"params": 0, "cache": 1, "encoded_kv": 1},  # batch stays on axis 0
        split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast,) * len(args),
        length=num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    x, _ = scanned(cfg, name="layers", **layer_kwargs)(x, *args)
    return x


class Encoder(nn.Module):
    config: MT5Config
    shared_embedding: nn.Module

    @nn.compact
    def __call__(self, tokens: jax.Array, mask: jax.Array, *, deterministic: bool,
                 final_norm: bool = True) -> jax.Array:
        """`final_norm=False` returns the last layer's residual stream, before `encoder_norm`
        (sentence embeddings from an inner layer: `train.embedding`)."""
        cfg = self.config
        x = _dropout(cfg, self.shared_embedding(tokens.astype(jnp.int32)), deterministic)
        x = x.astype(cfg.activation_dtype)
        pos = jnp.arange(tokens.shape[1])
        position_bias = RelativePositionBias(
            cfg.num_heads, cfg.relpos_buckets, cfg.relpos_max_distance, bidirectional=True,
            param_dtype=cfg.parameter_dtype, name="relpos_bias")(pos, pos)
        x = _run_layers(cfg, EncoderLayer, cfg.num_encoder_layers, x, mask_to_bias(mask),
                        position_bias, deterministic=deterministic)
        if not final_norm:
            return x
        x = RMSNorm(name="encoder_norm", **_dtypes(cfg))(x)
        return _dropout(cfg, x, deterministic)


class Decoder(nn.Module):
    config: MT5Config
    shared_embedding: nn.Module

    def _cache_length(self) -> int:
        """Length of the KV cache made by the initialising decode call."""
        leaves = jax.tree_util.tree_leaves_with_path(self.variables.get("cache", {}))
        for path, leaf in leaves:
            if getattr(path[-1], "key", None) == "cached_key":
                return leaf.shape[-1]
        raise ValueError("Decoder: decode step called without an initialised cache")

    @nn.compact
    def __call__(self, encoded: jax.Array, tokens: jax.Array, self_mask: jax.Array | None,
                 cross_mask: jax.Array, *, deterministic: bool, decode: bool,
                 max_decode_length: int | None) -> jax.Array:
        cfg = self.config
        x = _dropout(cfg, self.shared_embedding(tokens.astype(jnp.int32)), deterministic)
        x = x.astype(cfg.activation_dtype)
        relpos = RelativePositionBias(
            cfg.num_heads, cfg.relpos_buckets, cfg.relpos_max_distance, bidirectional=False,
            param_dtype=cfg.parameter_dtype, name="relpos_bias")
        cache_index = None
        if decode and self.has_variable("cache", "cache_index"):
            # One step: the query is the token at cache_index; keys are the whole cache.
            length = self._cache_length()
            if max_decode_length is not None and max_decode_length != length:
                raise ValueError(f"Decoder: max_decode_length={max_decode_length} but the "
                                 f"cache was initialised with length {length}")
            index_var = self.variable("cache", "cache_index", jnp.zeros, (), jnp.int32)
            cache_index = index_var.value
            keys = jnp.arange(length)
            position_bias = relpos(cache_index[None], keys)
            self_mask_bias = mask_to_bias(keys <= cache_index)[None, None, None, :]
            index_var.value = cache_index + 1
        else:
            if decode:  # initialising call: create the index; the outputs are discarded
                self.variable("cache", "cache_index", jnp.zeros, (), jnp.int32)
                self_mask = nn.make_causal_mask(tokens)
            pos = jnp.arange(tokens.shape[1])
            position_bias = relpos(pos, pos)
            self_mask_bias = mask_to_bias(self_mask)
        x = _run_layers(cfg, DecoderLayer, cfg.num_decoder_layers, x, encoded, self_mask_bias,
                        position_bias, mask_to_bias(cross_mask), cache_index,
                        deterministic=deterministic, decode=decode)
        x = RMSNorm(name="decoder_norm", **_dtypes(cfg))(x)
        x = _dropout(cfg, x, deterministic)
        logits = Dense(cfg.vocab_size, ("embed", "vocab"), jnp.float32, cfg.parameter_dtype,
                       name="logits_dense")(x)
        return constrain(logits, ("batch", "length", "vocab"))


def _segment_mask(query_segments: jax.Array, key_segments: jax.Array) -> jax.Array:
    return nn.make_attention_mask(query_segments, key_segments, jnp.equal)


class Transformer(nn.Module):
    """mT5 encoder-decoder; token 0 is padding and the decoder start id."""

    config: MT5Config

    def setup(self) -> None:
        cfg = self.config
        self.token_embedder = Embed(cfg.vocab_size, cfg.emb_dim, **_dtypes(cfg))
        self.encoder = Encoder(cfg, self.token_embedder)
        self.decoder = Decoder(cfg, self.token_embedder)

    def encode(self, encoder_input_tokens: jax.Array, encoder_segment_ids: jax.Array | None = None,
               encoder_positions: jax.Array | None = None, *,
               enable_dropout: bool = True) -> jax.Array:
        """Encoder outputs [b, l_in, emb] in cfg.dtype. Positions are accepted but unused."""
        del encoder_positions  # relpos uses indices within the row (see train.relpos)
        _check_tokens("encoder_input_tokens", encoder_input_tokens)
        valid = encoder_input_tokens > 0
        mask = nn.make_attention_mask(valid, valid)
        if encoder_segment_ids is not None:
            mask = nn.combine_masks(mask, _segment_mask(encoder_segment_ids, encoder_segment_ids))
        return self.encoder(encoder_input_tokens, mask, deterministic=not enable_dropout)

    def decode(self, encoded: jax.Array, encoder_input_tokens: jax.Array,
               decoder_input_tokens: jax.Array, decoder_target_tokens: jax.Array,
               encoder_segment_ids: jax.Array | None = None,
               decoder_segment_ids: jax.Array | None = None,
               decoder_positions: jax.Array | None = None, *, enable_dropout: bool = True,
               decode: bool = False, max_decode_length: int | None = None) -> jax.Array:
        """float32 logits [b, l_out, vocab]; with decode=True see the module docstring."""
        del decoder_positions
        _check_tokens("decoder_input_tokens", decoder_input_tokens)
        if decode:
            self_mask = None  # the decoder builds the causal / cache-index mask itself
            cross_mask = nn.make_attention_mask(jnp.ones_like(decoder_input_tokens, bool),
                                                encoder_input_tokens > 0)
        else:
            valid = decoder_target_tokens > 0
            self_mask = nn.combine_masks(nn.make_causal_mask(decoder_target_tokens),
                                         nn.make_attention_mask(valid, valid))
            cross_mask = nn.make_attention_mask(valid, encoder_input_tokens > 0)
            if decoder_segment_ids is not None:
                self_mask = nn.combine_masks(
                    self_mask, _segment_mask(decoder_segment_ids, decoder_segment_ids))
            if (decoder_segment_ids is None) != (encoder_segment_ids is None):
                raise ValueError("Transformer.decode: encoder_segment_ids and "
                                 "decoder_segment_ids must be given together (packed inputs)")
            if decoder_segment_ids is not None:
                cross_mask = nn.combine_masks(
                    cross_mask, _segment_mask(decoder_segment_ids, encoder_segment_ids))
        return self.decoder(encoded, decoder_input_tokens, self_mask, cross_mask,
                            deterministic=not enable_dropout, decode=decode,
                            max_decode_length=max_decode_length)

    def __call__(self, encoder_input_tokens: jax.Array, decoder_input_tokens: jax.Array,
                 decoder_target_tokens: jax.Array, encoder_segment_ids: jax.Array | None = None,
                 decoder_segment_ids: jax.Array | None = None,
                 encoder_positions: jax.Array | None = None,
                 decoder_positions: jax.Array | None = None, *, enable_dropout: bool = True,
                 decode: bool = False) -> jax.Array:
        """Teacher-forced float32 logits [b, l_out, vocab]."""
        encoded = self.encode(encoder_input_tokens, encoder_segment_ids, encoder_positions,
                              enable_dropout=enable_dropout)
        return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                           decoder_target_tokens, encoder_segment_ids, decoder_segment_ids,
                           decoder_positions, enable_dropout=enable_dropout, decode=decode)


def _check_tokens(name: str, tokens: jax.Array) -> None:
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"Transformer: {name} must be integer [batch, length], got "
                         f"shape {tokens.shape} dtype {tokens.dtype}")


# ----------------------------------------------------------------------------- param helpers


def _init_boxed(config: MT5Config, rng: jax.Array, input_len: int, target_len: int):
    enc = jnp.ones((1, input_len), jnp.int32)
    dec = jnp.ones((1, target_len), jnp.int32)
    return Transformer(config).init({"params": rng}, enc, dec, dec, enable_dropout=False)[
        "params"]


def abstract_boxed_params(config: MT5Config) -> dict:
    """ShapeDtypeStructs still boxed in nn.LogicallyPartitioned (no allocation)."""
    return jax.eval_shape(lambda rng: _init_boxed(config, rng, 2, 2), jax.random.key(0))


def abstract_params(config: MT5Config) -> dict:
    """Unboxed nested dict of jax.ShapeDtypeStruct (no allocation); axes: `param_axes`."""
    return nn.meta.unbox(abstract_boxed_params(config))


def param_axes(config: MT5Config) -> dict:
    """Nested dict mirroring the params; leaves are logical axis names, e.g. ('embed', 'mlp')."""
    return jax.tree.map(lambda p: tuple(p.names), abstract_boxed_params(config),
                        is_leaf=lambda x: isinstance(x, nn.Partitioned))


def num_params(config: MT5Config) -> int:
    """Exact parameter count, from shapes only."""
    return sum(int(x.size) for x in jax.tree.leaves(abstract_params(config)))


def init_params(config: MT5Config, rng: jax.Array, input_len: int = 8,
                target_len: int = 8) -> dict:
    """Randomly initialised params (t5x initialisers), unboxed plain nested dict of arrays."""
    init = jax.jit(_init_boxed, static_argnums=(0, 2, 3))
    return nn.meta.unbox(init(config, rng, input_len, target_len))
