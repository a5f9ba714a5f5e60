"""The compiled, sharded steps the trainer and evaluation run, public so that benchmarks and
the TPU fit check compile exactly what runs.

Every step is a `MeshFn`: a `jax.jit` with explicit in/out shardings, called (or lowered)
inside the mesh and the logical axis rules, since the network constrains its activations by
logical names.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from train import models, optimizer, partitioning, train_state, train_step


def rules_for(parameter_partitioning: str = "1d",
              activation_partitioning_dims: int = 1) -> partitioning.Rules:
    return partitioning.standard_logical_axis_rules(parameter_partitioning,
                                                    activation_partitioning_dims)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batch dimension over 'data', everything else replicated."""
    return partitioning.data_sharding(mesh)


class MeshFn:
    """A jitted function that always runs inside its mesh and axis rules."""

    def __init__(self, fn: Callable[..., Any], mesh: Mesh, rules: partitioning.Rules,
                 **jit_kwargs: Any) -> None:
        self.jitted = jax.jit(fn, **jit_kwargs)
        self.mesh, self.rules = mesh, rules

    def context(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(jax.set_mesh(self.mesh))
        stack.enter_context(nn.logical_axis_rules(self.rules))
        return stack

    def __call__(self, *args: Any) -> Any:
        with self.context():
            return self.jitted(*args)

    def lower(self, *args: Any) -> Any:
        with self.context():
            return self.jitted.lower(*args)


def state_layout(model: models.BaseModel | Any, mesh: Mesh, rules: partitioning.Rules,
                 adafactor: optimizer.AdafactorConfig) -> train_state.StateLayout:
    return train_state.state_layout(model, mesh, rules, adafactor)


def jit_train_step(model: models.BaseModel, tx: optax.GradientTransformation,
                   layout: train_state.StateLayout, mesh: Mesh, rules: partitioning.Rules, *,
                   num_microbatches: int = 1, track_nonfinite: bool = False,
                   **loss_kwargs: Any) -> MeshFn:
    """The donated, sharded train step: `(state, batch, rng) -> (state, metrics)`.

    With `track_nonfinite` it is `(state, batch, rng, first_bad) -> (state, metrics,
    first_bad)`: `first_bad` (int32, -1 while all is well) keeps the first step whose loss or
    gradient was not finite, so the host reads one scalar only when it logs or saves.
    """
    step_fn = train_step.make_train_step(model.loss_fn(**loss_kwargs), tx, num_microbatches)
    replicated = partitioning.replicated(mesh)
    batch = batch_sharding(mesh)
    if not track_nonfinite:
        return MeshFn(step_fn, mesh, rules, in_shardings=(layout.shardings, batch, replicated),
                      out_shardings=(layout.shardings, replicated), donate_argnums=(0,))

    def step_and_flag(state, batch, rng, first_bad):
        step = state.step
        state, metrics = step_fn(state, batch, rng)
        first_bad = jnp.where((first_bad < 0) & (metrics["nonfinite"] > 0), step, first_bad)
        return state, metrics, first_bad

    return MeshFn(step_and_flag, mesh, rules,
                  in_shardings=(layout.shardings, batch, replicated, replicated),
                  out_shardings=(layout.shardings, replicated, replicated), donate_argnums=(0,))


@dataclasses.dataclass(frozen=True)
class TrainerSteps:
    """Everything `train.trainer.train` compiles, built together so that a process training
    the same model again (a study worker, tests) traces each step once."""

    tx: optax.GradientTransformation
    init: MeshFn                 # rng -> TrainState
    run_step: MeshFn             # jit_train_step(track_nonfinite=True)
    run_eval: MeshFn             # jit_eval_sums
    to_state: Callable[..., Any]  # checkpoint tree -> TrainState (scanned layout in memory)
    to_tree: Callable[..., Any]   # TrainState -> checkpoint tree


def trainer_steps(model: models.BaseModel, layout: train_state.StateLayout, mesh: Mesh,
                  rules: partitioning.Rules, learning_rate: float | Callable[[Any], Any],
                  adafactor: optimizer.AdafactorConfig, *, num_microbatches: int = 1,
                  **loss_kwargs: Any) -> TrainerSteps:
    """The trainer's steps; reused when everything they depend on is the same and hashable (a
    schedule built anew per call is not, and gets new steps: correct, only traced again).
    `layout` follows from (model, mesh, rules), so it is not part of the key."""
    key = (model, mesh, rules, learning_rate, adafactor, num_microbatches,
           tuple(sorted(loss_kwargs.items())))
    try:
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _TRAINER_STEPS:
        return _TRAINER_STEPS[key]
    tx = optimizer.adafactor(learning_rate, layout.param_axes, adafactor)

    def init(rng):
        params = model.init_params(rng)
        return train_state.TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))

    def to_state(tree):
        return train_state.from_checkpoint(tree, model)

    def to_tree(state):
        return train_state.to_checkpoint(state, model)

    if model.config.scan_layers:  # the layout change runs sharded on the devices
        to_state = MeshFn(to_state, mesh, rules, out_shardings=layout.shardings)
        to_tree = MeshFn(to_tree, mesh, rules, out_shardings=layout.checkpoint_shardings)
    steps = TrainerSteps(
        tx=tx, init=MeshFn(init, mesh, rules, out_shardings=layout.shardings),
        run_step=jit_train_step(model, tx, layout, mesh, rules,
                                num_microbatches=num_microbatches, track_nonfinite=True,
                                **loss_kwargs),
        run_eval=jit_eval_sums(model, layout, mesh, rules), to_state=to_state, to_tree=to_tree)
    if key is not None:
        if len(_TRAINER_STEPS) >= 8:
            _TRAINER_STEPS.pop(next(iter(_TRAINER_STEPS)))
        _TRAINER_STEPS[key] = steps
    return steps


_TRAINER_STEPS: dict[tuple, TrainerSteps] = {}


def jit_eval_sums(model: models.BaseModel, layout: train_state.StateLayout, mesh: Mesh,
                  rules: partitioning.Rules) -> MeshFn:
    """Validation: `(params, batch) -> {loss_sum, tokens, accuracy_numerator, ...}` sums."""
    eval_fn = train_step.make_eval_step(model.eval_loss_fn())

    def eval_sums(params, batch):
        m = eval_fn(params, batch)
        normalizer = m.get("loss_normalizer", jnp.asarray(1.0, jnp.float32))
        return {"loss_sum": m["loss"] * normalizer, "tokens": normalizer,
                "accuracy_numerator": m["accuracy_numerator"],
                "accuracy_denominator": m["accuracy_denominator"]}

    return MeshFn(eval_sums, mesh, rules,
                  in_shardings=(layout.shardings.params, batch_sharding(mesh)),
                  out_shardings=partitioning.replicated(mesh))


def param_shardings(model: models.BaseModel, mesh: Mesh, rules: partitioning.Rules) -> Any:
    return partitioning.logical_to_sharding(model.param_axes(), model.abstract_params(), mesh,
                                            rules)


def jit_predict_step(model: models.EncoderDecoderModel, mesh: Mesh, rules: partitioning.Rules,
                     params_sharding: Any, *, max_decode_len: int, beam_size: int = 1,
                     alpha: float = 0.6) -> MeshFn:
    """Decoding: `(params, batch) -> {'tokens' [b, L], 'score' [b]}`; the batch is split over
    'data', the (small) outputs come back replicated, so every process holds every row."""
    def decode(params, batch: Mapping[str, jax.Array]):
        tokens, scores = model.predict_batch(params, batch, max_decode_len=max_decode_len,
                                             beam_size=beam_size, alpha=alpha,
                                             return_scores=True)
        return {"tokens": tokens, "score": scores}

    return MeshFn(decode, mesh, rules, in_shardings=(params_sharding, batch_sharding(mesh)),
                  out_shardings=partitioning.replicated(mesh))


def jit_score_step(model: models.EncoderDecoderModel, mesh: Mesh, rules: partitioning.Rules,
                   params_sharding: Any) -> MeshFn:
    """Rank classification: `(params, batch) -> {'score' [b]}` target log-likelihoods."""
    return MeshFn(lambda params, batch: {"score": model.score_batch(params, batch)}, mesh, rules,
                  in_shardings=(params_sharding, batch_sharding(mesh)),
                  out_shardings=partitioning.replicated(mesh))


def jit_embed_step(model: models.BaseModel, mesh: Mesh, rules: partitioning.Rules,
                   params_sharding: Any, *, layer: int | None = None,
                   pooling: str | None = None) -> MeshFn:
    """Sentence embeddings: `(params, tokens [b, l]) -> [b, d]` float32; rows over 'data' in
    and out (a million-candidate pool stays sharded for `train.retrieval_search`)."""
    return MeshFn(lambda params, tokens: model.embed(params, tokens, layer=layer,
                                                     pooling=pooling),
                  mesh, rules, in_shardings=(params_sharding, batch_sharding(mesh)),
                  out_shardings=batch_sharding(mesh))
