"""From a registered seqio task or mixture to global, data-sharded `jax.Array` batches.

Each process reads only its own shard of the examples (`seqio.ShardInfo`), batches
`global_batch_size // process_count` of them, and the host batches are assembled into global
arrays sharded over the mesh's `data` axis.

Shuffling is the source's job: a source that reads into memory (the project's file sources)
permutes the whole split with the seed each epoch and gives each host every
`process_count`-th example of that permutation; seqio's window shuffle still runs on top.

Resume: the training stream is deterministic for a given seed (seeded permutation, seqio's
seeded shuffle and preprocessing). As in t5x, every checkpoint holds each process's tf.data
iterator state (`checkpoint_<step>/train_ds-<process:03>-of-<count:03>.{index,data-*}`, written
by `TrainIterator.save` into Orbax's temporary directory before the step is committed), and a
resume restores it: no example is read again. A step without that state (written before input
states were saved) is resumed by replay, said in one WARNING line: the first k host batches of
the same stream are drawn and dropped, which re-runs their preprocessing and packing (packed
batches take a data-dependent number of examples and mixtures sample their tasks statefully,
so no example offset can be computed from the step alone). Both are exact. The state holds the
positions and the buffers in flight: seqio's shuffle window per task, packing and prefetch
(`python scripts/input_state_size.py` measures it); the file sources' full permutation is
stateless, so no buffer of the split's indices is saved.

`train_iterator` returns a `TrainIterator`: close it (or use it in a `with`) so the tf.data
iterator and its threads are released before the process exits, including after an error.
`use_cached=None` reads seqio's offline cache (`seqio.scripts.cache_tasks_main`) when every
task of the mixture has one in seqio's cache directories, and preprocesses on the fly otherwise.
A shuffled cached read goes through `train/cached_source.py`: each host reads only its cache
files (seqio's file sharding), holds their examples in memory and draws a full seeded
permutation per epoch, like the file sources (no window, and a state of a few counters); an
unshuffled cached read is seqio's own.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator, Mapping

import jax
import numpy as np
import seqio
import tensorflow as tf
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from train import cached_source

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
    use_cached = resolve_use_cached(cfg.mixture_or_task_name, cfg.use_cached)
    provider: str | seqio.Task | seqio.Mixture = cfg.mixture_or_task_name
    if use_cached and cfg.shuffle:
        provider = cached_source.shuffled_cached_provider(get_provider(provider))
        use_cached = False  # the copies read the cache themselves
    ds = seqio.get_dataset(
        provider,
        task_feature_lengths=dict(cfg.task_feature_lengths),
        feature_converter=cfg.feature_converter or seqio.EncDecFeatureConverter(pack=cfg.pack),
        dataset_split=cfg.split,
        use_cached=use_cached,
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


STATE_PREFIX = "train_ds"


def iterator_state_prefix(step_dir: str | os.PathLike) -> str:
    """This process's input-state prefix in a checkpoint directory (t5x's name)."""
    name = f"{STATE_PREFIX}-{jax.process_index():03}-of-{jax.process_count():03}"
    return os.path.join(os.fspath(step_dir), name)


def _warn(line: str) -> None:
    where = f"process {jax.process_index()}: " if jax.process_count() > 1 else ""
    print(f"WARNING: {where}{line}", file=sys.stderr, flush=True)


class TrainIterator(Iterator[Batch]):
    """Endless global batches; close() releases the tf.data iterator (idempotent).

    The dataset is built on the first `next()` (or `save`), so a data error (a malformed
    record, a missing file) surfaces there, in the caller's thread. With `restore_dir` (the
    checkpoint being resumed) the iterator continues from the state saved there; without one,
    or when that state is missing or does not fit this pipeline, it replays `start_step`
    batches (one WARNING line). `replayed_batches` says how many were replayed.
    """

    def __init__(self, cfg: DatasetConfig, mesh: Mesh, start_step: int = 0,
                 restore_dir: str | os.PathLike | None = None):
        self._cfg, self._mesh, self._start_step = cfg, mesh, start_step
        self._restore_dir = restore_dir
        self._it: Iterator[Mapping[str, tf.Tensor]] | None = None
        self._closed = False
        self.replayed_batches = 0
        self.restored_from: str | None = None

    def _dataset(self) -> tf.data.Dataset:
        ds = host_dataset(self._cfg, self._mesh, repeat=True).prefetch(tf.data.AUTOTUNE)
        options = tf.data.Options()
        # A stateful op (a random op, a stateful py_function) would make a saved state replay
        # differently; refuse to save one rather than resume inexactly (see `save`).
        options.experimental_external_state_policy = (
            tf.data.experimental.ExternalStatePolicy.FAIL)
        return ds.with_options(options)

    def _start(self) -> None:
        self._it = iter(self._dataset())
        if self._restore_dir is not None:
            prefix = iterator_state_prefix(self._restore_dir)
            if not tf.io.gfile.exists(prefix + ".index"):
                reason = ("no saved input state (a checkpoint written before input states "
                          "were saved?)")
            else:
                try:
                    tf.train.Checkpoint(ds=self._it).read(prefix).assert_consumed()
                    self.restored_from = prefix
                    return
                except (tf.errors.OpError, AssertionError, ValueError) as e:
                    reason = (f"its input state does not restore ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:200]})")
                    self._it = iter(self._dataset())  # a failed restore may leave it midway
            _warn(f"{self._restore_dir}: {reason}; resuming by replaying "
                  f"{self._start_step} batches of the input stream")
        for _ in range(self._start_step):
            next(self._it)
        self.replayed_batches = self._start_step

    def __next__(self) -> Batch:
        if self._closed:
            raise StopIteration
        if self._it is None:
            self._start()
        host = {k: v.numpy() for k, v in next(self._it).items()}
        return to_global(host, self._mesh)

    def save(self, step_dir: str | os.PathLike) -> str | None:
        """Write this process's iterator state (the position after the batches drawn so far)
        into `step_dir`; its prefix, or None (one WARNING line) for a pipeline whose state
        cannot be saved exactly, which a resume then replays."""
        if self._closed:
            raise ValueError("save() on a closed TrainIterator")
        if self._it is None:
            self._start()
        prefix = iterator_state_prefix(step_dir)
        try:
            tf.train.Checkpoint(ds=self._it).write(prefix)
        except tf.errors.FailedPreconditionError as e:
            _warn(f"input state not saved in {step_dir}: the pipeline of "
                  f"{self._cfg.mixture_or_task_name!r} holds external state "
                  f"({' '.join(str(e).split())[:200]}); a resume from it will replay")
            return None
        return prefix

    def close(self) -> None:
        """Drop the tf.data iterator now, not at interpreter teardown."""
        self._closed = True
        it, self._it = self._it, None
        del it

    def __enter__(self) -> TrainIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def train_iterator(cfg: DatasetConfig, mesh: Mesh, start_step: int = 0,
                   restore_dir: str | os.PathLike | None = None) -> TrainIterator:
    """Endless global batches; the one yielded first is the batch of step `start_step`
    (restored from `restore_dir`'s input state when it has one, replayed otherwise)."""
    return TrainIterator(cfg, mesh, start_step, restore_dir)


def _pad_rows(host_batch: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Zero rows: token 0 is padding and its loss weight is 0, so they count for nothing."""
    out = {}
    for k, v in host_batch.items():
        pad = np.zeros((rows - v.shape[0],) + v.shape[1:], v.dtype)
        out[k] = np.concatenate([v, pad])
    return out


def eval_host_batches(cfg: DatasetConfig, mesh: Mesh,
                      num_batches: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """One pass over a split as this host's numpy rows, the last batch padded with zero
    (weightless) rows; the trainer keeps them and evaluates again without rebuilding the input
    pipeline (`to_global` makes each a global batch).

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
        yield _pad_rows(host_batch, per_host)
        produced += 1
