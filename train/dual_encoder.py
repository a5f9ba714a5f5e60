"""A dual encoder on the mT5 encoder (Mewsli-X, LAReQA), in the manner of t5x_retrieval.

Both sides share one `token_embedder` + `encoder`, named as in `train.network.Transformer` so a
released mT5 encoder loads unchanged; the encoder output (after `encoder_norm`) is pooled
(mean over non-padding tokens by default, or the first token), projected by
`projection/kernel` [embed, projection_dim] and L2-normalised.

The projection's logical axes are ('embed', 'mlp'): the existing rules then shard its columns
over `model` like an MLP input kernel and Adafactor factors it (rows embed, columns mlp), so no
new logical axis or rule is needed. `projection_dim` must divide by the model-axis size.

Loss: in-batch-negative softmax. Each left embedding's logits are `logit_scale` (1/temperature;
default 100, i.e. temperature 0.01 as in GTR / Sentence-T5) times its cosine with every right
embedding of the (micro)batch; the positive is the right side of the same row. Bidirectional
(default) averages the left->right and right->left cross-entropies. Rows whose left or right
tokens are all padding are neither queries nor negatives. Negatives are the rows of the same
microbatch (`make_train_step(num_microbatches=M)` shrinks the negative set M-fold). A duplicate
positive elsewhere in the batch counts as a negative (no id-based masking).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import seqio
import tensorflow as tf

from train import embedding, models, optimizer, scan
from train.config import MT5Config
from train.layers import DENSE_INIT, Dense
from train.objectives import LossFn

PROJECTION_AXES = ("embed", "mlp")
LEFT, RIGHT = "left_encoder_input_tokens", "right_encoder_input_tokens"


# ----------------------------------------------------------------------------- network

class DualEncoder(embedding.EncoderStack):
    """Shared mT5 encoder -> pool -> projection -> L2 normalise, for both sides."""

    projection_dim: int = 0
    pooling: str = "mean"

    def setup(self) -> None:
        super().setup()
        self.projection = Dense(self.projection_dim, PROJECTION_AXES, jnp.float32,
                                self.config.parameter_dtype)

    def encode(self, tokens: jax.Array, *, enable_dropout: bool = False,
               pooling: str | None = None) -> jax.Array:
        """float32 [b, projection_dim], unit L2 norm (all-padding rows: zeros)."""
        hidden = self.hidden_states(tokens, enable_dropout=enable_dropout)
        pooled = embedding.pool(hidden, tokens, pooling or self.pooling)
        return l2_normalize(self.projection(pooled))

    def __call__(self, left: jax.Array, right: jax.Array, *, enable_dropout: bool = False
                 ) -> tuple[jax.Array, jax.Array]:
        return (self.encode(left, enable_dropout=enable_dropout),
                self.encode(right, enable_dropout=enable_dropout))


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


# ----------------------------------------------------------------------------- loss

def in_batch_softmax_loss(left: jax.Array, right: jax.Array, valid: jax.Array, *,
                          logit_scale: float, bidirectional: bool = True,
                          label_smoothing: float = 0.0) -> dict[str, jax.Array]:
    """Sum of per-row losses, correct top-1 count and valid-row count (module docstring)."""
    logits = logit_scale * jnp.dot(left, right.T, precision=jax.lax.Precision.HIGHEST)
    b = logits.shape[0]
    eye = jnp.eye(b, dtype=bool)
    col_ok = valid[None, :]
    n_valid = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)

    def direction(lg):
        lg = jnp.where(col_ok, lg, -1e9)
        logp = jax.nn.log_softmax(lg, axis=-1)
        nll = -jnp.sum(jnp.where(eye, logp, 0.0), axis=-1)
        if label_smoothing:
            smooth = -jnp.sum(jnp.where(col_ok, logp, 0.0), axis=-1) / n_valid
            nll = (1.0 - label_smoothing) * nll + label_smoothing * smooth
        return nll, jnp.argmax(lg, axis=-1) == jnp.arange(b)

    nll, correct = direction(logits)
    if bidirectional:
        nll_t, _ = direction(logits.T)
        nll = 0.5 * (nll + nll_t)
    return {"loss_sum": jnp.sum(jnp.where(valid, nll, 0.0)),
            "correct": jnp.sum(valid & correct).astype(jnp.float32),
            "count": jnp.sum(valid).astype(jnp.float32)}


def contrastive_loss_fn(module: DualEncoder, *, logit_scale: float = 100.0,
                        bidirectional: bool = True, label_smoothing: float = 0.0) -> LossFn:
    """LossFn on a `DualEncoderFeatureConverter` batch; dropout iff a `dropout_rng` is given.

    Aux (train.objectives conventions): `loss` = mean over valid rows, `loss_normalizer` = the
    valid-row count (microbatches combine as a weighted mean), `accuracy_*` = in-batch top-1
    retrieval (left -> right), `num_examples`, `num_input_tokens` (left), `num_target_tokens`
    (right).
    """
    if not logit_scale > 0:
        raise ValueError(f"logit_scale={logit_scale!r}: expected > 0")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing!r}: expected [0, 1)")

    def loss_fn(params, batch, dropout_rng):
        for name in (LEFT, RIGHT):
            if name not in batch:
                raise ValueError(f"dual-encoder batch has no {name!r} (features: "
                                 f"{sorted(batch)}); use DualEncoderFeatureConverter")
        left_tokens, right_tokens = batch[LEFT], batch[RIGHT]
        left, right = module.apply(
            {"params": params}, left_tokens, right_tokens,
            enable_dropout=dropout_rng is not None,
            rngs=None if dropout_rng is None else {"dropout": dropout_rng})
        valid = jnp.any(left_tokens > 0, axis=1) & jnp.any(right_tokens > 0, axis=1)
        out = in_batch_softmax_loss(left, right, valid, logit_scale=logit_scale,
                                    bidirectional=bidirectional,
                                    label_smoothing=label_smoothing)
        loss = out["loss_sum"] / jnp.maximum(out["count"], 1.0)
        aux = {"loss": loss, "loss_normalizer": out["count"],
               "accuracy_numerator": out["correct"], "accuracy_denominator": out["count"],
               "num_examples": out["count"],
               "num_input_tokens": jnp.sum(left_tokens > 0).astype(jnp.float32),
               "num_target_tokens": jnp.sum(right_tokens > 0).astype(jnp.float32)}
        return loss, aux

    return loss_fn


# ----------------------------------------------------------------------------- features

class DualEncoderFeatureConverter(seqio.FeatureConverter):
    """Task `inputs` (query) -> `left_encoder_input_tokens`, task `targets` (positive) ->
    `right_encoder_input_tokens`, each trimmed/padded to its length; never packed (in-batch
    negatives need one pair per row)."""

    TASK_FEATURES = {
        "inputs": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32),
        "targets": seqio.FeatureConverter.FeatureSpec(dtype=tf.int32),
    }
    MODEL_FEATURES = {
        LEFT: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32),
        RIGHT: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32),
    }
    PACKING_FEATURE_DTYPES = {}

    def __init__(self, pack: bool = False, **kwargs: Any):
        if pack:
            raise ValueError("DualEncoderFeatureConverter: pack=True is not supported (each "
                             "row must hold one query-positive pair for in-batch negatives)")
        super().__init__(pack=False, **kwargs)

    def _convert_features(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]
                          ) -> tf.data.Dataset:
        ds = seqio.utils.trim_and_pad_dataset(
            ds.map(lambda ex: {"inputs": ex["inputs"], "targets": ex["targets"]}),
            dict(task_feature_lengths))
        return ds.map(lambda ex: {LEFT: ex["inputs"], RIGHT: ex["targets"]},
                      num_parallel_calls=tf.data.AUTOTUNE)

    def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]
                                  ) -> dict[str, int]:
        return {LEFT: task_feature_lengths["inputs"], RIGHT: task_feature_lengths["targets"]}


# ----------------------------------------------------------------------------- model

@dataclasses.dataclass(frozen=True)
class DualEncoderModel(models.BaseModel):
    """The `dual_encoder` kind of `train.models`: contrastive training and embedding.

    `projection_dim` None = emb_dim. `pooling`, `logit_scale`, `bidirectional`: see the module
    docstring. Param trees are unboxed nested dicts, scanned iff `config.scan_layers`; the tree
    is `token_embedder`, `encoder` (no decoder) and `projection/kernel`.
    """

    config: MT5Config
    projection_dim: int | None = None
    pooling: str = "mean"
    logit_scale: float = 100.0
    bidirectional: bool = True
    kind: ClassVar[str] = "dual_encoder"

    def __post_init__(self) -> None:
        embedding.check_pooling(self.pooling)
        if self.projection_dim is not None and (
                isinstance(self.projection_dim, bool) or not isinstance(self.projection_dim, int)
                or self.projection_dim < 1):
            raise ValueError(f"projection_dim={self.projection_dim!r}: expected a positive "
                             "int or None (= emb_dim)")
        if not self.logit_scale > 0:
            raise ValueError(f"logit_scale={self.logit_scale!r}: expected > 0")

    @property
    def output_dim(self) -> int:
        return self.projection_dim or self.config.emb_dim

    def module(self) -> DualEncoder:
        return DualEncoder(self.config, projection_dim=self.output_dim, pooling=self.pooling)

    def _init_boxed(self, rng: jax.Array) -> dict:
        tokens = jnp.ones((1, 2), jnp.int32)
        return self.module().init({"params": rng}, tokens, tokens)["params"]

    def abstract_boxed_params(self) -> dict:
        return jax.eval_shape(self._init_boxed, jax.random.key(0))

    def init_params(self, rng: jax.Array) -> dict:
        return nn.meta.unbox(jax.jit(self._init_boxed)(rng))

    def feature_converter(self, pack: bool = False) -> DualEncoderFeatureConverter:
        return DualEncoderFeatureConverter(pack=pack, apply_length_check=False)  # as models

    def loss_fn(self, *, label_smoothing: float = 0.0, z_loss: float = 1e-4,
                loss_normalizing_factor: float | str | None = None) -> LossFn:
        """z_loss and loss_normalizing_factor belong to token losses and are ignored here
        (the contrastive loss is a mean over valid rows, weighted across microbatches)."""
        del z_loss, loss_normalizing_factor
        return contrastive_loss_fn(self.module(), logit_scale=self.logit_scale,
                                   bidirectional=self.bidirectional,
                                   label_smoothing=label_smoothing)

    def eval_loss_fn(self) -> LossFn:
        fn = self.loss_fn()
        return lambda params, batch, dropout_rng=None: fn(params, batch, None)

    # ---- layouts and the pretrained start

    def from_pretrained(self, tree: Mapping[str, Any], rng: jax.Array | None = None, *,
                        slots: bool = False,
                        adafactor: optimizer.AdafactorConfig | None = None) -> dict:
        """Released encoder-decoder tree -> this model's tree, unscanned (`scan` after).

        Keeps `token_embedder` and `encoder`, drops `decoder`, adds `projection/kernel`:
        freshly initialised from `rng` for params; with `slots` (an Adafactor slot tree, leaves
        `{v_row, v_col, v}`) the projection gets zero statistics laid out by `adafactor`
        (default AdafactorConfig(), the trainer's default).
        """
        for key in ("token_embedder", "encoder"):
            if key not in tree:
                raise ValueError(f"from_pretrained: the tree has no {key!r} (keys "
                                 f"{sorted(tree)}); expected an mT5 encoder-decoder tree")
        is_slots = isinstance(tree["token_embedder"].get("embedding"), Mapping)
        if is_slots != slots:
            raise ValueError(f"from_pretrained(slots={slots}): token_embedder/embedding is "
                             f"{'a slot dict' if is_slots else 'an array'}")
        out = {"token_embedder": tree["token_embedder"], "encoder": tree["encoder"]}
        shape = (self.config.emb_dim, self.output_dim)
        if slots:
            config = adafactor or optimizer.AdafactorConfig()
            shapes = optimizer.adafactor_state_shapes(
                {"projection": {"kernel": jax.ShapeDtypeStruct(shape, jnp.float32)}},
                {"projection": {"kernel": PROJECTION_AXES}}, config).param_states
            out["projection"] = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                                             shapes["projection"])
        else:
            if rng is None:
                raise ValueError("from_pretrained: an rng is needed to initialise "
                                 "projection/kernel")
            out["projection"] = {"kernel": DENSE_INIT(rng, shape, self.config.parameter_dtype)}
        return out

    def scan(self, tree: Mapping[str, Any]) -> dict:
        """On-disk (unscanned) layout -> in-memory layout (scanned iff config.scan_layers)."""
        if not self.config.scan_layers:
            return dict(tree)
        return scan.scan_params(tree, self.config, stacks=scan.ENCODER_ONLY)

    def unscan(self, tree: Mapping[str, Any]) -> dict:
        if not self.config.scan_layers:
            return dict(tree)
        return scan.unscan_params(tree, self.config, stacks=scan.ENCODER_ONLY)

    # ---- inference

    def embed(self, params: Any, tokens: jax.Array, *, layer: int | None = None,
              pooling: str | None = None) -> jax.Array:
        """float32 [b, output_dim], L2-normalised. The projection was trained on the final
        encoder output, so `layer` must be None or num_encoder_layers; `pooling` None = the
        model's."""
        if embedding.check_layer(self.config, layer) != self.config.num_encoder_layers:
            raise ValueError(f"DualEncoderModel.embed: layer={layer}: a dual encoder embeds "
                             "from its final layer only (its projection was trained there)")
        if pooling is not None:
            embedding.check_pooling(pooling)
        return self.module().apply({"params": params}, tokens, pooling=pooling,
                                   method="encode")
