"""Models: one object per kind of model that owns its loss, prediction, scoring and features.

t5x's `BaseModel` / `EncoderDecoderModel` idea, without t5x: the trainer, `python -m eval` and
the study take a model object instead of a network class plus free functions, so a second kind
of model (the dual encoder of `train.dual_encoder`) runs through the same trainer, the same
sharded train step and the same checkpoints.

A model is a small immutable description (`config` plus settings); the flax module it wraps is
built on demand. Parameter trees are plain nested dicts (unboxed); `param_axes` is the parallel
tree of logical axis names that the partitioning rules map to the mesh.
"""
from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import seqio

from train import inference, network, objectives, scan
from train.config import MT5Config

Params = dict[str, Any]


class BaseModel(abc.ABC):
    """What the trainer, evaluation and the study need from a model."""

    kind: ClassVar[str]
    config: MT5Config

    # ---- parameters ---------------------------------------------------------------------
    @abc.abstractmethod
    def module(self) -> nn.Module:
        """The flax module whose `params` collection is this model's parameter tree."""

    @abc.abstractmethod
    def abstract_boxed_params(self) -> Params:
        """ShapeDtypeStructs boxed with their logical axes (no allocation)."""

    @abc.abstractmethod
    def init_params(self, rng: jax.Array) -> Params:
        """Randomly initialised params, unboxed, in the in-memory (maybe scanned) layout."""

    def abstract_params(self) -> Params:
        return _fresh(_abstract_params(self))

    def param_axes(self) -> Params:
        return _fresh(_param_axes(self))

    def num_params(self) -> int:
        return sum(int(x.size) for x in jax.tree.leaves(self.abstract_params()))

    def unscanned(self) -> BaseModel:
        """The same model in the on-disk (released, per-layer) layout."""
        return self.with_config(dataclasses.replace(self.config, scan_layers=False))

    def with_config(self, config: MT5Config) -> BaseModel:
        return dataclasses.replace(self, config=config)

    def scan(self, tree: Mapping[str, Any]) -> Params:
        """On-disk layout -> in-memory layout (any tree mirroring the params)."""
        return scan.scan_params(tree, self.config) if self.config.scan_layers else dict(tree)

    def unscan(self, tree: Mapping[str, Any]) -> Params:
        """In-memory layout -> on-disk layout."""
        return scan.unscan_params(tree, self.config) if self.config.scan_layers else dict(tree)

    # ---- starting from a released checkpoint ----------------------------------------------
    def pretrained_model(self) -> BaseModel:
        """The model whose (unscanned) tree a released mT5 checkpoint holds: the encoder-decoder
        of this config. `from_pretrained` turns that tree into this model's tree."""
        return EncoderDecoderModel(dataclasses.replace(self.config, scan_layers=False))

    def pretrained_abstract(self) -> Params:
        return self.pretrained_model().abstract_params()

    def from_pretrained(self, tree: Mapping[str, Any], rng: jax.Array | None = None,
                        *, slots: bool = False, adafactor: Any = None) -> Params:
        """A released tree (or, with `slots`, its Adafactor slot tree laid out by the
        `adafactor` config) -> this model's unscanned tree. The encoder-decoder is the released
        tree itself."""
        del rng, slots, adafactor
        return dict(tree)

    # ---- data and objectives -------------------------------------------------------------
    @abc.abstractmethod
    def feature_converter(self, pack: bool) -> seqio.FeatureConverter:
        """Turns a task's `inputs`/`targets` into this model's batch features."""

    @abc.abstractmethod
    def loss_fn(self, *, label_smoothing: float = 0.0, z_loss: float = 1e-4,
                loss_normalizing_factor: float | str | None = None) -> objectives.LossFn:
        """The training objective (see `train.objectives` for the aux conventions)."""

    @abc.abstractmethod
    def eval_loss_fn(self) -> objectives.LossFn:
        """The validation objective: no dropout, normalised per real token or example."""

    @abc.abstractmethod
    def embed(self, params: Params, tokens: jax.Array, *, layer: int | None = None,
              pooling: str | None = None) -> jax.Array:
        """Sentence embeddings [batch, dim] float32 of token rows [batch, length]."""


# Shapes and axes come from tracing the module's init (`jax.eval_shape`), which costs about a
# second at any size; the trainer, its checkpoint reader and evaluation each ask for them, and a
# study worker asks again for every cell. Models are frozen dataclasses, so one trace per model.
@functools.lru_cache(maxsize=32)
def _abstract_params(model: BaseModel) -> Params:
    return nn.meta.unbox(model.abstract_boxed_params())


@functools.lru_cache(maxsize=32)
def _param_axes(model: BaseModel) -> Params:
    return jax.tree.map(lambda p: tuple(p.names), model.abstract_boxed_params(),
                        is_leaf=lambda x: isinstance(x, nn.Partitioned))


def _fresh(tree: Params) -> Params:
    """New containers over the same (immutable) leaves: callers may edit what they get."""
    return jax.tree.map(lambda x: x, tree, is_leaf=lambda x: isinstance(x, tuple))


@dataclasses.dataclass(frozen=True)
class EncoderDecoderModel(BaseModel):
    """mT5 (`train.network.Transformer`): cross-entropy training, decoding, target scoring."""

    config: MT5Config
    kind: ClassVar[str] = "encoder_decoder"

    def module(self) -> network.Transformer:
        return network.Transformer(self.config)

    def abstract_boxed_params(self) -> Params:
        return network.abstract_boxed_params(self.config)

    def init_params(self, rng: jax.Array) -> Params:
        return network.init_params(self.config, rng, 2, 2)

    def feature_converter(self, pack: bool) -> seqio.FeatureConverter:
        # The task already trims every feature to its length (seqio's default) and padding or
        # packing makes exactly those lengths, so seqio's per-example length assertions would
        # only add traced functions to every pipeline built (a tenth of a study cell's time).
        return seqio.EncDecFeatureConverter(pack=pack, apply_length_check=False)

    def loss_fn(self, *, label_smoothing: float = 0.0, z_loss: float = 1e-4,
                loss_normalizing_factor: float | str | None = None) -> objectives.LossFn:
        return objectives.seq2seq_loss_fn(self.module(), label_smoothing=label_smoothing,
                                          z_loss=z_loss,
                                          loss_normalizing_factor=loss_normalizing_factor)

    def eval_loss_fn(self) -> objectives.LossFn:
        return objectives.seq2seq_loss_fn(
            self.module(), z_loss=0.0, loss_normalizing_factor=objectives.NUM_REAL_TARGET_TOKENS)

    def predict_batch(self, params: Params, batch: Mapping[str, jax.Array], *,
                      max_decode_len: int, beam_size: int = 1, alpha: float = 0.6,
                      return_scores: bool = False):
        """Decoded tokens [b, max_decode_len] (and scores [b] with `return_scores`)."""
        return inference.predict_batch(self.module(), params, batch,
                                       max_decode_len=max_decode_len, beam_size=beam_size,
                                       alpha=alpha, return_scores=return_scores)

    def score_batch(self, params: Params, batch: Mapping[str, jax.Array]) -> jax.Array:
        """Teacher-forced log-likelihood of each row's target [b]."""
        return inference.score_batch(self.module(), params, batch)

    def embed(self, params: Params, tokens: jax.Array, *, layer: int | None = None,
              pooling: str | None = None) -> jax.Array:
        """Pooled encoder states after `layer` (default: the final, normed output)."""
        from train import embedding  # the retrieval side; imported late to keep this light

        return embedding.encoder_embeddings(self.config, params, tokens, layer=layer,
                                            pooling=pooling or "mean")


def as_model(model_or_config: BaseModel | MT5Config) -> BaseModel:
    """Accept a bare `MT5Config` (the encoder-decoder) wherever a model is expected."""
    if isinstance(model_or_config, BaseModel):
        return model_or_config
    if isinstance(model_or_config, MT5Config):
        return EncoderDecoderModel(model_or_config)
    raise TypeError(f"expected a train.models model or an MT5Config, got "
                    f"{type(model_or_config).__name__}")
