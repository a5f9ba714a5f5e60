"""The training state and its t5x checkpoint tree.

On disk a state is t5x's tree, unscanned (the released layout):
`{'target': params, 'state': {'step': step, 'param_states': Adafactor slots}}`.
In memory the params and slots may be layer-scanned (`train.scan`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from train import models, optimizer, partitioning
from train.config import MT5Config

ModelLike = models.BaseModel | MT5Config


@flax.struct.dataclass
class TrainState:
    """`step` is t5x's absolute step (int32 scalar); Adafactor's `count` follows it."""

    step: jax.Array
    params: Any
    opt_state: optimizer.AdafactorState


def unscanned(config: MT5Config) -> MT5Config:
    """The config of the checkpoint layout."""
    return dataclasses.replace(config, scan_layers=False)


def to_checkpoint(state: TrainState, model: ModelLike) -> dict[str, Any]:
    """In-memory state -> t5x tree (unscanned)."""
    model = models.as_model(model)
    params, slots = state.params, state.opt_state.param_states
    params, slots = model.unscan(params), model.unscan(slots)
    return {"target": params, "state": {"step": state.step, "param_states": slots}}


def from_checkpoint(tree: Mapping[str, Any], model: ModelLike) -> TrainState:
    """t5x tree -> in-memory state (scanned when the config is)."""
    model = models.as_model(model)
    params, slots = tree["target"], tree["state"]["param_states"]
    params, slots = model.scan(params), model.scan(slots)
    step = jnp.asarray(tree["state"]["step"], jnp.int32)
    # `count` must be its own buffer: the trainer donates the state, and one buffer donated
    # twice in a call crashes.
    return TrainState(step, params, optimizer.AdafactorState(jnp.array(step, copy=True), slots))


@dataclasses.dataclass(frozen=True)
class StateLayout:
    """Abstract shapes and shardings of the state in memory and of its checkpoint tree."""

    param_axes: dict[str, Any]
    abstract: TrainState
    shardings: TrainState
    checkpoint_abstract: dict[str, Any]
    checkpoint_shardings: dict[str, Any]


def _state_parts(model: models.BaseModel, mesh: Mesh, rules: partitioning.Rules,
                 adafactor: optimizer.AdafactorConfig) -> tuple[Any, ...]:
    axes = model.param_axes()
    shapes = model.abstract_params()
    param_shardings = partitioning.logical_to_sharding(axes, shapes, mesh, rules)
    opt_shapes = optimizer.adafactor_state_shapes(shapes, axes, adafactor)
    opt_shardings = optimizer.optimizer_state_shardings(axes, shapes, mesh, rules, adafactor)
    return axes, shapes, param_shardings, opt_shapes, opt_shardings


def _with_sharding(shapes: Any, shardings: Any) -> Any:
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        shapes, shardings)


def state_layout(model: ModelLike, mesh: Mesh, rules: partitioning.Rules,
                 adafactor: optimizer.AdafactorConfig) -> StateLayout:
    """Everything the trainer needs to initialise, jit, restore and save the state."""
    model = models.as_model(model)
    axes, shapes, p_shard, o_shapes, o_shard = _state_parts(model, mesh, rules, adafactor)
    replicated = partitioning.replicated(mesh)
    step_shape = jax.ShapeDtypeStruct((), jnp.int32)
    abstract = TrainState(step_shape, shapes, o_shapes)
    shardings = TrainState(replicated, p_shard, o_shard)
    _, c_shapes, c_p_shard, c_o_shapes, c_o_shard = _state_parts(
        model.unscanned(), mesh, rules, adafactor)
    checkpoint_abstract = {"target": c_shapes,
                           "state": {"step": step_shape, "param_states": c_o_shapes.param_states}}
    checkpoint_shardings = {"target": c_p_shard,
                            "state": {"step": replicated, "param_states": c_o_shard.param_states}}
    return StateLayout(axes, _with_sharding(abstract, shardings), shardings,
                       _with_sharding(checkpoint_abstract, checkpoint_shardings),
                       checkpoint_shardings)

