"""Training objectives as `loss_fn(params, batch, dropout_rng) -> (loss, aux)`.

The train step knows nothing about models; it only calls a loss function. Aux convention
(what `train.train_step` relies on when it accumulates microbatches):

- values named `loss` or `*_loss` are normalised like the loss;
- `loss_normalizer`, when present, is the batch-dependent count the loss was divided by
  (a token count), so microbatch losses are combined as a weighted mean; when absent the
  normaliser is fixed (a constant or none) and microbatch losses are summed;
- every other value is a sum or a count over the batch (additive across microbatches).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from train import losses

LossFn = Callable[[Any, Mapping[str, jax.Array], jax.Array | None],
                  tuple[jax.Array, dict[str, jax.Array]]]
NUM_REAL_TARGET_TOKENS = losses.NUM_REAL_TARGET_TOKENS


def check_loss_normalizing_factor(value: float | str | None) -> float | str | None:
    """None (sum), a positive number (fixed divisor, e.g. 234496) or 'NUM_REAL_TARGET_TOKENS'."""
    if value is None or value == NUM_REAL_TARGET_TOKENS:
        return value
    if isinstance(value, str) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"loss_normalizing_factor={value!r}: expected None, a positive number "
                         f"or {NUM_REAL_TARGET_TOKENS!r}")
    return float(value)


def count_examples(batch: Mapping[str, jax.Array]) -> jax.Array:
    """Examples in a (possibly packed) batch: packed rows hold segments 1..k."""
    weights = batch["decoder_loss_weights"]
    if "decoder_segment_ids" in batch:
        return jnp.sum(jnp.max(batch["decoder_segment_ids"], axis=1)).astype(jnp.float32)
    return jnp.sum(jnp.any(weights > 0, axis=1)).astype(jnp.float32)


def token_counts(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Non-padding input and target tokens, for throughput."""
    return {
        "num_input_tokens": jnp.sum(batch["encoder_input_tokens"] != 0).astype(jnp.float32),
        "num_target_tokens": jnp.sum(batch["decoder_loss_weights"] > 0).astype(jnp.float32),
        "num_examples": count_examples(batch),
    }


def seq2seq_loss_fn(model: nn.Module, *, label_smoothing: float = 0.0, z_loss: float = 1e-4,
                    loss_normalizing_factor: float | str | None = None) -> LossFn:
    """Token cross-entropy of an encoder-decoder (`train.network.Transformer`) on a
    `seqio.EncDecFeatureConverter` batch; dropout is on iff a `dropout_rng` is given."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing!r}: expected [0, 1)")
    if z_loss < 0:
        raise ValueError(f"z_loss={z_loss!r}: expected >= 0")
    factor = check_loss_normalizing_factor(loss_normalizing_factor)

    def loss_fn(params, batch, dropout_rng):
        logits = model.apply(
            {"params": params},
            batch["encoder_input_tokens"], batch["decoder_input_tokens"],
            batch["decoder_target_tokens"],
            encoder_segment_ids=batch.get("encoder_segment_ids"),
            decoder_segment_ids=batch.get("decoder_segment_ids"),
            encoder_positions=batch.get("encoder_positions"),
            decoder_positions=batch.get("decoder_positions"),
            enable_dropout=dropout_rng is not None,
            rngs=None if dropout_rng is None else {"dropout": dropout_rng})
        targets = batch["decoder_target_tokens"]
        weights = batch["decoder_loss_weights"]
        loss, total_z_loss, weight_sum = losses.compute_weighted_cross_entropy(
            logits, targets, weights, label_smoothing=label_smoothing, z_loss=z_loss,
            loss_normalizing_factor=factor)
        accuracy = losses.compute_metrics(logits, targets, weights)
        aux = token_counts(batch)
        if factor == NUM_REAL_TARGET_TOKENS:
            aux["loss_normalizer"] = weight_sum
        aux.update(loss=loss, z_loss=total_z_loss,
                   accuracy_numerator=accuracy["accuracy_correct"],
                   accuracy_denominator=accuracy["weight_sum"])
        return loss, aux

    return loss_fn
