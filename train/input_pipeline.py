"""From a registered seqio task or mixture to global, data-sharded `jax.Array` batches.

Each process reads only its own shard of the examples (`seqio.ShardInfo`), batches
`global_batch_size // process_count` of them, and the host batches are assembled into global
arrays sharded over the mesh's `data` axis.

Resume: the training stream is deterministic for a given seed (seqio's seeded shuffle and
preprocessing), so starting at step k skips the first k host batches of that same stream
(`tf.data.Dataset.skip`). Skipping still runs the preprocessing of the skipped examples, which
is cheap next to a training step for the fine-tuning tasks of this project.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import jax
import numpy as np
import seqio
import tensorflow as tf
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Batch = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """What to read: a task or mixture, its feature lengths and how to batch it."""

    mixture_or_task_name: str
    task_feature_lengths: Mapping[str, int]
    split: str
    global_batch_size: int
    shuffle: bool = True
    seed: int | None = 0
    pack: bool = True
    use_cached: bool = False


def host_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """Examples each process reads per step; the global batch must split evenly."""
    num_processes = jax.process_count()
    data_ways = mesh.shape["data"]
    if global_batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {global_batch_size}")
    if global_batch_size % num_processes:
        raise ValueError(
            f"batch_size {global_batch_size} is not divisible by the number of processes "
            f"{num_processes}")
    if global_batch_size % data_ways:
        raise ValueError(
            f"batch_size {global_batch_size} is not divisible by the mesh's 'data' axis "
            f"({data_ways} ways, mesh {dict(mesh.shape)})")
    return global_batch_size // num_processes


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batch dimension over 'data', everything else replicated."""
    return NamedSharding(mesh, PartitionSpec("data"))


def check_split(mixture_or_task_name: str, split: str) -> None:
    """Fail before training when a task or mixture has no such split."""
    try:
        provider = seqio.get_mixture_or_task(mixture_or_task_name)
    except ValueError:
        raise ValueError(
            f"mixture_or_task_name {mixture_or_task_name!r} is not registered with seqio; "
            "is the module that registers it imported (MIXTURE_OR_TASK_MODULE)?") from None
    if split not in provider.splits:
        raise ValueError(f"split {split!r} is not a split of {mixture_or_task_name!r} "
                         f"(splits: {sorted(provider.splits)})")


def host_dataset(cfg: DatasetConfig, mesh: Mesh, *, repeat: bool,
                 drop_remainder: bool = True) -> tf.data.Dataset:
    """This process's shard, converted by `EncDecFeatureConverter` and batched per host."""
    check_split(cfg.mixture_or_task_name, cfg.split)
    per_host = host_batch_size(cfg.global_batch_size, mesh)
    ds = seqio.get_dataset(
        cfg.mixture_or_task_name,
        task_feature_lengths=dict(cfg.task_feature_lengths),
        feature_converter=seqio.EncDecFeatureConverter(pack=cfg.pack),
        dataset_split=cfg.split,
        use_cached=cfg.use_cached,
        shuffle=cfg.shuffle,
        num_epochs=None if repeat else 1,
        shard_info=seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count()),
        seed=cfg.seed,
        verbose=False,
    )
    return ds.batch(per_host, drop_remainder=drop_remainder)


def to_global(host_batch: Mapping[str, np.ndarray], mesh: Mesh) -> Batch:
    """Assemble every process's host batch into one global array per feature."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in host_batch.items()}


def train_iterator(cfg: DatasetConfig, mesh: Mesh, start_step: int = 0) -> Iterator[Batch]:
    """Endless global batches; the one yielded first is the batch of step `start_step`."""
    ds = host_dataset(cfg, mesh, repeat=True)
    if start_step:
        ds = ds.skip(start_step)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    for host_batch in ds.as_numpy_iterator():
        yield to_global(host_batch, mesh)


def _pad_rows(host_batch: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Zero rows: token 0 is padding and its loss weight is 0, so they count for nothing."""
    out = {}
    for k, v in host_batch.items():
        pad = np.zeros((rows - v.shape[0],) + v.shape[1:], v.dtype)
        out[k] = np.concatenate([v, pad])
    return out


def eval_iterator(cfg: DatasetConfig, mesh: Mesh,
                  num_batches: int | None = None) -> Iterator[Batch]:
    """One pass over a split, the last batch padded with zero (weightless) rows.

    With several processes the shards may differ in length, so `num_batches` must be given:
    every process then yields exactly that many batches (zero batches after its shard ends),
    which keeps the collective steps in lockstep.
    """
    if num_batches is None and jax.process_count() > 1:
        raise ValueError("eval_steps must be set when training with several processes")
    per_host = host_batch_size(cfg.global_batch_size, mesh)
    ds = host_dataset(cfg, mesh, repeat=False, drop_remainder=False)
    it = ds.as_numpy_iterator()
    template = None
    produced = 0
    while num_batches is None or produced < num_batches:
        host_batch = next(it, None)
        if host_batch is None:
            if num_batches is None or template is None:
                if template is None and produced == 0:
                    raise ValueError(
                        f"split {cfg.split!r} of {cfg.mixture_or_task_name!r} gave no examples")
                return
            host_batch = {k: v[:0] for k, v in template.items()}
        template = host_batch
        yield to_global(_pad_rows(host_batch, per_host), mesh)
        produced += 1
