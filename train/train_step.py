"""A pure train step parameterised by its loss, with microbatch gradient accumulation.

The trainer jits the returned function with explicit shardings and donates the state. Dropout
randomness depends only on (rng, step, microbatch), so a resumed run draws the same masks as an
uninterrupted one.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from train.objectives import LossFn
from train.train_state import TrainState

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]
TrainStep = Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]


def _is_normalised(name: str) -> bool:
    return name == "loss" or name.endswith("_loss")


def split_microbatches(batch: Batch, num_microbatches: int) -> dict[str, jax.Array]:
    """[B, ...] -> [M, B/M, ...], microbatch i = rows i, i+M, ...

    Strided rows keep every microbatch spread evenly over the data-parallel shards (each
    shard's contiguous block of rows holds rows of every microbatch), so no data moves.
    """
    out = {}
    for name, x in batch.items():
        if x.shape[0] % num_microbatches:
            raise ValueError(f"batch feature {name!r} has {x.shape[0]} rows, not divisible by "
                             f"num_microbatches={num_microbatches}")
        out[name] = x.reshape((x.shape[0] // num_microbatches, num_microbatches)
                              + x.shape[1:]).swapaxes(0, 1)
    return out


def accumulate_gradients(loss_fn: LossFn, params: Any, batch: Batch, rng: jax.Array,
                         num_microbatches: int) -> tuple[Any, Metrics]:
    """Gradient and aux of the full batch, computed over `num_microbatches` slices in sequence.

    Combination follows the aux convention of `train.objectives`: with a `loss_normalizer`
    the loss, its gradient and the `*_loss` values are weighted means over microbatches
    (weights = normalisers), otherwise sums; every other aux value is summed.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if num_microbatches == 1:
        (loss, aux), grads = grad_fn(params, batch, rng)
        return grads, {**aux, "loss": loss}

    micro = split_microbatches(batch, num_microbatches)
    first = jax.tree.map(lambda x: x[0], micro)
    (_, aux_shape), _ = jax.eval_shape(grad_fn, params, first, rng)
    weighted = "loss_normalizer" in aux_shape

    def body(carry, inputs):
        grad_sum, aux_sum = carry
        index, mb = inputs
        mb_rng = None if rng is None else jax.random.fold_in(rng, index)
        (loss, aux), grads = grad_fn(params, mb, mb_rng)
        aux = {**aux, "loss": loss}
        w = aux["loss_normalizer"] if weighted else jnp.float32(1.0)
        grad_sum = jax.tree.map(lambda s, g: s + w * g.astype(s.dtype), grad_sum, grads)
        aux_sum = {k: aux_sum[k] + (w * v if _is_normalised(k) else v) for k, v in aux.items()}
        return (grad_sum, aux_sum), None

    zero_grads = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    zero_aux = {k: jnp.zeros(v.shape, v.dtype) for k, v in aux_shape.items()}
    zero_aux["loss"] = jnp.zeros((), jnp.float32)
    (grads, aux), _ = jax.lax.scan(
        body, (zero_grads, zero_aux), (jnp.arange(num_microbatches), micro))
    if weighted:
        total = jnp.maximum(aux["loss_normalizer"], 1e-30)
        grads = jax.tree.map(lambda g: g / total, grads)
        aux = {k: (v / total if _is_normalised(k) else v) for k, v in aux.items()}
    grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
    return grads, aux


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    num_microbatches: int = 1) -> TrainStep:
    """`(state, batch, rng) -> (state, metrics)`; metrics are device scalars, including
    `grad_norm` and `nonfinite` (1.0 when the loss or a gradient is NaN/inf)."""
    if not isinstance(num_microbatches, int) or num_microbatches < 1:
        raise ValueError(f"num_microbatches={num_microbatches!r}: expected a positive int")

    def train_step(state: TrainState, batch: Batch, rng: jax.Array):
        step_rng = jax.random.fold_in(rng, state.step)
        grads, aux = accumulate_gradients(loss_fn, state.params, batch, step_rng,
                                          num_microbatches)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(aux["loss"]) & jnp.isfinite(grad_norm)
        metrics = {**aux, "grad_norm": grad_norm,
                   "nonfinite": (~finite).astype(jnp.float32)}
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return train_step


def make_eval_step(loss_fn: LossFn) -> Callable[[Any, Batch], Metrics]:
    """Loss and aux without dropout, for validation."""

    def eval_step(params: Any, batch: Batch) -> Metrics:
        loss, aux = loss_fn(params, batch, None)
        return {**aux, "loss": loss}

    return eval_step
