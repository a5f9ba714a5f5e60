"""From a registered seqio task or mixture to global, data-sharded `jax.Array` batches.

Each process reads only its own shard of the examples (`seqio.ShardInfo`), batches
`global_batch_size // process_count` of them, and the host batches are assembled into global
arrays sharded over the mesh's `data` axis.

Shuffling is the source's job: a source that reads into memory (the project's file sources)
permutes the whole split with the seed each epoch and gives each host every
`process_count`-th example of that permutation; seqio's window shuffle still runs on top.

Resume: the training stream is deterministic for a given seed (seeded permutation, seqio's
seeded shuffle and preprocessing), so starting at step k skips the first k host batches of that
same stream (`tf.data.Dataset.skip`). This replays the preprocessing (and packing) of the
skipped examples; it is kept because packed batches take a data-dependent number of examples
and because mixtures sample their tasks statefully, so no example offset can be computed from
the step alone. Skipping is exact, not approximate.

`train_iterator` returns a `TrainIterator`: close it (or use it in a `with`) so the tf.data
iterator and its threads are released before the process exits, including after an error.
`use_cached=None` reads seqio's offline cache (`seqio.scripts.cache_tasks_main`) when every
task of the mixture has one in seqio's cache directories, and preprocesses on the fly otherwise.
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
    use_cached: bool | None = False  # None: the cache if every task has one
    # The model's converter (`train.models.BaseModel.feature_converter`); None: seqio's
    # EncDecFeatureConverter(pack=pack).
    feature_converter: seqio.FeatureConverter | None = None


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


def get_provider(mixture_or_task_name: str) -> seqio.Task | seqio.Mixture:
    """The registered task or mixture, or an error that says how it gets registered."""
    try:
        return seqio.get_mixture_or_task(mixture_or_task_name)
    except ValueError:
        raise ValueError(
            f"mixture_or_task_name {mixture_or_task_name!r} is not registered with seqio; "
            "is the module that registers it imported (MIXTURE_OR_TASK_MODULE)?") from None


def check_split(mixture_or_task_name: str, split: str) -> None:
    """Fail before training when a task or mixture has no such split."""
    provider = get_provider(mixture_or_task_name)
    if split not in provider.splits:
        raise ValueError(f"split {split!r} is not a split of {mixture_or_task_name!r} "
                         f"(splits: {sorted(provider.splits)})")


def _tasks(mixture_or_task_name: str) -> list[seqio.Task]:
    provider = seqio.get_mixture_or_task(mixture_or_task_name)
    return list(provider.tasks) if isinstance(provider, seqio.Mixture) else [provider]


def resolve_use_cached(mixture_or_task_name: str, use_cached: bool | None) -> bool:
    """True/False as given (True fails naming the uncached tasks); None: cached if all are."""
    tasks = _tasks(mixture_or_task_name)
    uncached = [t.name for t in tasks if not (t.supports_caching and t.cache_dir)]
    if use_cached is None:
        return not uncached
    if use_cached and uncached:
        dirs = seqio.utils.get_global_cache_dirs()
        raise ValueError(
            f"use_cached=True but {', '.join(uncached)} of {mixture_or_task_name!r} has no "
            f"completed seqio cache in {dirs or 'any cache directory'} (build it with "
            "seqio.scripts.cache_tasks_main; a task needs a seqio.CacheDatasetPlaceholder "
            "among its preprocessors to be cacheable)")
    return bool(use_cached)


def host_dataset(cfg: DatasetConfig, mesh: Mesh, *, repeat: bool,
                 drop_remainder: bool = True) -> tf.data.Dataset:
    """This process's shard, converted by `EncDecFeatureConverter` and batched per host."""
    check_split(cfg.mixture_or_task_name, cfg.split)
    per_host = host_batch_size(cfg.global_batch_size, mesh)
    ds = seqio.get_dataset(
        cfg.mixture_or_task_name,
        task_feature_lengths=dict(cfg.task_feature_lengths),
        feature_converter=cfg.feature_converter or seqio.EncDecFeatureConverter(pack=cfg.pack),
        dataset_split=cfg.split,
        use_cached=resolve_use_cached(cfg.mixture_or_task_name, cfg.use_cached),
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


class TrainIterator(Iterator[Batch]):
    """Endless global batches; close() releases the tf.data iterator (idempotent).

    The dataset is built on the first `next()`, so a data error (a malformed record, a missing
    file) surfaces there, in the caller's thread.
    """

    def __init__(self, cfg: DatasetConfig, mesh: Mesh, start_step: int = 0):
        self._cfg, self._mesh, self._start_step = cfg, mesh, start_step
        self._it: Iterator[Mapping[str, np.ndarray]] | None = None
        self._closed = False

    def __next__(self) -> Batch:
        if self._closed:
            raise StopIteration
        if self._it is None:
            ds = host_dataset(self._cfg, self._mesh, repeat=True)
            if self._start_step:
                ds = ds.skip(self._start_step)
            self._it = iter(ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator())
        return to_global(next(self._it), self._mesh)

    def close(self) -> None:
        """Drop the tf.data iterator now, not at interpreter teardown."""
        self._closed = True
        it, self._it = self._it, None
        del it

    def __enter__(self) -> TrainIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def train_iterator(cfg: DatasetConfig, mesh: Mesh, start_step: int = 0) -> TrainIterator:
    """Endless global batches; the one yielded first is the batch of step `start_step`."""
    return TrainIterator(cfg, mesh, start_step)


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
    for host_batch in eval_host_batches(cfg, mesh, num_batches):
        yield to_global(host_batch, mesh)


def eval_host_batches(cfg: DatasetConfig, mesh: Mesh,
                      num_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """`eval_iterator`'s batches as this host's numpy rows (keep them to evaluate again
    without rebuilding the input pipeline)."""
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
        yield _pad_rows(host_batch, per_host)
        produced += 1
