"""The network meets the search: batched decoding and teacher-forced scoring.

Both entry points are pure functions of (params, batch) once `model` and the static keyword
arguments are fixed, so the caller jits them once:

    predict = jax.jit(functools.partial(predict_batch, model, max_decode_len=L, beam_size=k))

Shapes are fixed by the batch's [batch, input_length] and by `max_decode_len` (the cache is
always that long and decoding stops early inside one `while_loop`), so one compilation serves
every task and language evaluated with the same batch size and feature lengths. Callers pad the
last batch to the full batch size with zero rows (see `eval.predict`) instead of recompiling.

`batch` is the dict of `seqio.EncDecFeatureConverter(pack=False)`: `encoder_input_tokens`
(decoding) plus `decoder_input_tokens`, `decoder_target_tokens` and optionally
`decoder_loss_weights` (scoring).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from train import decoding

Batch = Mapping[str, jax.Array]


def _require(batch: Batch, *names: str) -> None:
    for name in names:
        if name not in batch:
            raise ValueError(f"batch has no feature {name!r} (features: {sorted(batch)}); "
                             "expected the output of seqio.EncDecFeatureConverter(pack=False)")
    if "decoder_segment_ids" in batch or "encoder_segment_ids" in batch:
        raise ValueError("batch is packed (has *_segment_ids); decoding and scoring work per "
                         "example: use EncDecFeatureConverter(pack=False)")


def encode(model: nn.Module, params: Any, encoder_input_tokens: jax.Array) -> jax.Array:
    return model.apply({"params": params}, encoder_input_tokens, enable_dropout=False,
                       method="encode")


def init_decode_state(model: nn.Module, params: Any, encoded: jax.Array,
                      encoder_input_tokens: jax.Array, max_decode_len: int) -> tuple[Any, Any]:
    """(cache, encoded_kv) the t5x way: a decode=True call on a full-length zero target.

    `cache` (the self-attention KV cache and its index) is the search's loop state;
    `encoded_kv` (every layer's cross-attention keys/values of the encoder output) is
    loop-invariant and handed to the steps. Under jit the discarded logits of this call are
    dead code and cost nothing.
    """
    zeros = jnp.zeros((encoder_input_tokens.shape[0], max_decode_len), jnp.int32)
    _, variables = model.apply(
        {"params": params}, encoded, encoder_input_tokens, zeros, zeros,
        enable_dropout=False, decode=True, max_decode_length=max_decode_len,
        mutable=["cache", "encoded_kv"], method="decode")
    return variables["cache"], variables["encoded_kv"]


def init_cache(model: nn.Module, params: Any, encoded: jax.Array,
               encoder_input_tokens: jax.Array, max_decode_len: int) -> Any:
    """The self-attention cache alone (steps then project the encoder output themselves)."""
    return init_decode_state(model, params, encoded, encoder_input_tokens, max_decode_len)[0]


def make_tokens_to_logits(model: nn.Module, params: Any, encoded: jax.Array,
                          encoder_input_tokens: jax.Array, max_decode_len: int,
                          beam_size: int = 1, encoded_kv: Any = None
                          ) -> decoding.TokensToLogits:
    """One cached decoder step as the search's callback; rows are batch-major over beams.

    With `encoded_kv` (from `init_decode_state`) the steps read the encoder's cross-attention
    keys/values instead of projecting `encoded` at every token.
    """
    repeat = lambda x: jnp.repeat(x, beam_size, axis=0)
    if beam_size > 1:
        encoded, encoder_input_tokens = repeat(encoded), repeat(encoder_input_tokens)
        encoded_kv = None if encoded_kv is None else jax.tree.map(repeat, encoded_kv)
    variables = {"params": params} if encoded_kv is None else {"params": params,
                                                               "encoded_kv": encoded_kv}

    def tokens_to_logits(token_ids: jax.Array, cache: Any, step: jax.Array):
        del step  # the network keeps its own cache_index
        logits, new = model.apply(
            {**variables, "cache": cache}, encoded, encoder_input_tokens, token_ids,
            token_ids, enable_dropout=False, decode=True, max_decode_length=max_decode_len,
            mutable=["cache"], method="decode")
        return logits[:, 0, :], new["cache"]

    return tokens_to_logits


def predict_batch(model: nn.Module, params: Any, batch: Batch, *, max_decode_len: int,
                  beam_size: int = 1, alpha: float = 0.6, eos_id: int = 1,
                  return_scores: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Decoded tokens [b, max_decode_len] (best beam; 0 after EOS).

    beam_size 1 is greedy search (scores: summed log-probs); more beams run beam search with
    the brevity penalty `alpha` (scores: log-prob / ((5 + len) / 6) ** alpha).
    With `return_scores` returns (tokens, scores [b]).
    """
    _require(batch, "encoder_input_tokens")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    inputs = batch["encoder_input_tokens"]
    b = inputs.shape[0]
    encoded = encode(model, params, inputs)
    cache, encoded_kv = init_decode_state(model, params, encoded, inputs, max_decode_len)
    step_fn = make_tokens_to_logits(model, params, encoded, inputs, max_decode_len, beam_size,
                                    encoded_kv=encoded_kv)
    if beam_size == 1:
        tokens, scores = decoding.greedy_decode(step_fn, cache, b, max_decode_len, eos_id=eos_id)
    else:
        tokens, scores = decoding.beam_search(step_fn, cache, b, beam_size, max_decode_len,
                                              alpha=alpha, eos_id=eos_id)
        tokens, scores = tokens[:, 0], scores[:, 0]
    return (tokens, scores) if return_scores else tokens


def score_batch(model: nn.Module, params: Any, batch: Batch) -> jax.Array:
    """Teacher-forced log-likelihood per example [b] (float32): sum of weighted token log-probs.

    Used for rank classification: score every candidate target, pick the highest. Weights are
    `decoder_loss_weights` when present, else target != 0.
    """
    _require(batch, "encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")
    targets = batch["decoder_target_tokens"]
    logits = model.apply({"params": params}, batch["encoder_input_tokens"],
                         batch["decoder_input_tokens"], targets, enable_dropout=False)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    token_logp = jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    weights = batch.get("decoder_loss_weights")
    weights = (targets > 0) if weights is None else weights
    return jnp.sum(token_logp * weights.astype(jnp.float32), axis=-1)
