"""What every checkpoint reader returns, the optimizer-state choice it records, and how a
reader turns one stored array into a (possibly sharded) array.

Fine-tuning from a pretrained checkpoint either keeps its Adafactor statistics ('restore')
or starts them afresh with the decay schedule offset by the pretraining step ('reset', t5x's
`step_offset`). Users ask which was used, so the choice travels with the loaded state.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import jax
import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy)
import numpy as np

OptimizerStateChoice = Literal["restore", "reset"]
CHOICES = ("restore", "reset")
Index = tuple[slice, ...]


@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
    """Parameters (t5x tree, plain nested dicts) plus what the trainer needs to resume.

    param_states: Adafactor slots mirroring params with leaves {'v_row', 'v_col', 'v'} when
      optimizer_state == 'restore'; None when 'reset' (the trainer initialises them).
    step: the checkpoint's absolute step (t5x steps are absolute); 0 when unknown.
    decay_step_offset: the Adafactor decay step offset to use: 0 on restore, `step` on reset.
    """

    params: dict[str, Any]
    step: int
    param_states: dict[str, Any] | None
    optimizer_state: OptimizerStateChoice
    decay_step_offset: int
    path: str
    format: str


def check_choice(optimizer_state: str) -> None:
    if optimizer_state not in CHOICES:
        raise ValueError(
            f"optimizer_state={optimizer_state!r}: expected one of {CHOICES} ('restore' imports "
            "the checkpoint's Adafactor statistics, 'reset' starts them afresh)."
        )


def make_result(
    params: dict[str, Any],
    step: int,
    param_states: dict[str, Any] | None,
    optimizer_state: str,
    path: str,
    fmt: str,
) -> LoadedCheckpoint:
    check_choice(optimizer_state)
    restore = optimizer_state == "restore"
    return LoadedCheckpoint(
        params=params,
        step=int(step),
        param_states=param_states if restore else None,
        optimizer_state="restore" if restore else "reset",
        decay_step_offset=0 if restore else int(step),
        path=path,
        format=fmt,
    )


def index_key(index: Index) -> tuple[tuple[int | None, int | None, int | None], ...]:
    """Hashable form of a tuple of slices (slices are unhashable before Python 3.12)."""
    return tuple((s.start, s.stop, s.step) for s in index)


def local_indices(shape: tuple[int, ...], sharding: jax.sharding.Sharding | None) -> list[Index]:
    """The distinct regions this host must read: one per addressable shard, or the whole."""
    if sharding is None:
        return [tuple(slice(None) for _ in shape)]
    unique = {}
    for index in sharding.addressable_devices_indices_map(shape).values():
        unique.setdefault(index_key(index), index)
    return list(unique.values())


def build_array(
    shape: tuple[int, ...],
    dtype: np.dtype,
    sharding: jax.sharding.Sharding | None,
    read: Callable[[Index], np.ndarray],
) -> Any:
    """A numpy array (no sharding) or a global jax.Array whose host reads only its shards."""

    def region(index: Index) -> np.ndarray:
        return np.asarray(read(index)).astype(dtype, copy=False)

    if sharding is None:
        return region(tuple(slice(None) for _ in shape))
    return jax.make_array_from_callback(shape, sharding, region)


def target_leaf(leaf: Any) -> tuple[tuple[int, ...], np.dtype, jax.sharding.Sharding | None]:
    """(shape, dtype, sharding) of a target leaf: a ShapeDtypeStruct, or an array."""
    sharding = getattr(leaf, "sharding", None)
    if not isinstance(sharding, jax.sharding.Sharding):
        sharding = None
    return tuple(leaf.shape), np.dtype(leaf.dtype), sharding
