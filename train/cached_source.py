"""A shuffled read of seqio's offline cache: this host's cache files in memory, a full seeded
permutation each epoch, and an iterator state of a few counters.

What seqio does with a cached task (`Task.get_dataset(use_cached=True)`, seqio 0.0.20): with at
least as many cache files as hosts it shards the *files* (`files.shard(num_shards, index)`:
host i reads files i, i+n, ...); with fewer files every host reads every file and keeps every
n-th example. Shuffled, it permutes the file order, interleaves 16 files in blocks of 16 and
then shuffles a window of `shuffle_buffer_size` (1,000) examples, so on an ordered cache
(SQuAD by article, SNLI by caption) a batch holds the few blocks inside the window, and a
tf.data iterator checkpoint carries the whole window.

Here: the same host sharding (the files seqio would give this host, or every file and a
stride of the permutation when there are fewer files than hosts), but the host's cached,
already tokenized examples are loaded into memory as columns and drawn in a full per-epoch
permutation (`xitt_common.columns.permuted_indices`: `index_shuffle` keyed by the seed and an
epoch number, stateless; the copy is a `SelfRepeatingTask`, so the epoch number is a counter in
the saved iterator state). The post-cache preprocessors, validation and trimming are seqio's own:
each task is read through an unregistered copy of it whose source is these columns and whose
pre-cache steps are identities (so seqio hands the post-cache steps the same seeds), and a
mixture through a copy with the original's rates and sampling. Unshuffled cached reads do not
come here (seqio's own path, unchanged).

The permutation and the column helpers are `xitt_common.columns`, the layer below both
the tasks and the runtime.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf
from seqio import dataset_providers

from xitt_common.columns import Column, SelfRepeatingTask, column_dataset

# Examples parsed per tf.data batch while loading a host's cache files into columns.
_LOAD_BATCH = 4096


def host_cache_files(task: seqio.Task, split: str, shard_info: seqio.ShardInfo | None
                     ) -> tuple[list[str], bool]:
    """(the cache files of `split` this host reads, whether it then keeps a stride of the
    examples): seqio's rule, files i, i+n, ... with at least n files, else every file."""
    files = list(_cached_source(task, split).list_shards(split))
    if not files:
        raise ValueError(f"{task.name!r}: the seqio cache in {task.cache_dir} has no files for "
                         f"split {split!r}")
    if shard_info is None or shard_info.num_shards <= 1:
        return files, False
    if len(files) >= shard_info.num_shards:
        return files[shard_info.index::shard_info.num_shards], False
    return files, True


def host_columns(task: seqio.Task, split: str, shard_info: seqio.ShardInfo | None
                 ) -> tuple[dict[str, Column], seqio.ShardInfo | None]:
    """This host's cached examples as columns, and the stride still to take over them (None
    when the files were sharded). Read once per process while the files are unchanged."""
    files, stride = host_cache_files(task, split, shard_info)
    stats = []
    for path in files:
        st = tf.io.gfile.stat(path)
        stats.append((path, int(st.length), int(st.mtime_nsec)))
    read_shard = shard_info if (shard_info is not None and shard_info.num_shards > 1
                                and not stride) else None
    columns = _load_columns(task.cache_dir, split,
                            (read_shard.index, read_shard.num_shards) if read_shard else None,
                            tuple(stats))
    return columns, (shard_info if stride else None)


def _cached_source(task: seqio.Task, split: str) -> seqio.DataSource:
    task.assert_cached()
    return dataset_providers._CachedDataSource(task.cache_dir, split)  # seqio's cache reader


@functools.lru_cache(maxsize=16)
def _load_columns(cache_dir: str, split: str, shard: tuple[int, int] | None,
                  files: tuple[tuple[str, int, int], ...]) -> dict[str, Column]:
    """Parse the cache files (seqio's reader, in seqio's file order and interleave) into one
    tensor per feature: scalars stacked, variable-length features as (flat, row splits)."""
    source = dataset_providers._CachedDataSource(cache_dir, split)
    ds = source.get_dataset(split, shuffle=False,
                            shard_info=seqio.ShardInfo(*shard) if shard else None)
    read = [f for f, _, _ in files]
    spec = ds.element_spec
    for name, s in spec.items():
        shape = s.shape
        if not (shape.is_fully_defined() or (shape.rank and shape[1:].is_fully_defined())):
            raise ValueError(f"{cache_dir}: cached feature {name!r} has shape {shape}; a "
                             "shuffled cached read holds fixed-shape features or ones of "
                             "variable length in the first dimension only")
    dense: dict[str, list[np.ndarray]] = {n: [] for n in spec if spec[n].shape.is_fully_defined()}
    flat: dict[str, list[np.ndarray]] = {n: [] for n in spec if n not in dense}
    lengths: dict[str, list[np.ndarray]] = {n: [] for n in flat}
    for batch in ds.ragged_batch(_LOAD_BATCH):
        for name in dense:
            dense[name].append(batch[name].numpy())
        for name in flat:
            value = batch[name]
            if isinstance(value, tf.RaggedTensor):
                flat[name].append(value.values.numpy())
                lengths[name].append(value.row_lengths().numpy())
            else:  # every row of this batch happened to have one length
                v = value.numpy()
                flat[name].append(v.reshape((-1,) + v.shape[2:]))
                lengths[name].append(np.full(v.shape[0], v.shape[1], np.int64))
    if not any(dense.values()) and not any(flat.values()):
        raise ValueError(f"{cache_dir}: the cache files of split {split!r} read by this host "
                         f"hold no examples ({read})")
    columns: dict[str, Column] = {}
    for name, parts in dense.items():
        columns[name] = tf.constant(np.concatenate(parts), dtype=spec[name].dtype)
    for name, parts in flat.items():
        splits = np.concatenate([[0], np.cumsum(np.concatenate(lengths[name]))]).astype(np.int64)
        columns[name] = (tf.constant(np.concatenate(parts), dtype=spec[name].dtype),
                         tf.constant(splits))
    return columns


class CachedColumnsSource(seqio.DataSource):
    """A cached task's examples of this host, from memory, in a full permutation per epoch."""

    def __init__(self, task: seqio.Task):
        self._task = task
        super().__init__(splits=task.splits, num_input_examples=None,
                         performs_internal_shuffling=True)

    @property
    def supports_arbitrary_sharding(self) -> bool:
        return True  # every ShardInfo comes here: host_columns applies seqio's file rule

    @property
    def repeats_shuffled_epochs(self) -> bool:
        return True  # column_dataset, under SelfRepeatingTask

    def list_shards(self, split: str) -> Sequence[str]:
        return host_cache_files(self._task, split, None)[0]

    def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                    shard_info: seqio.ShardInfo | None = None, *, sequence_length=None,
                    use_cached: bool = False, num_epochs: int | None = 1) -> tf.data.Dataset:
        del sequence_length, use_cached, num_epochs
        columns, stride = host_columns(self._task, split, shard_info)
        return column_dataset(columns, shuffle, seed, stride)


def _already_cached(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Stands in for a pre-cache step: the cache holds its output."""
    return dataset


def _shuffled_task(task: seqio.Task) -> seqio.Task:
    """An unregistered copy of `task` that reads its cache through `CachedColumnsSource`;
    seqio runs its post-cache steps with the seeds the original would get."""
    steps = list(task.preprocessors)
    cut = next(i for i, p in enumerate(steps) if isinstance(p, seqio.CacheDatasetPlaceholder))
    steps = [_already_cached] * cut + [seqio.CacheDatasetPlaceholder()] + steps[cut + 1:]
    return SelfRepeatingTask(task.name, source=CachedColumnsSource(task),
                      output_features=task.output_features, preprocessors=steps,
                      postprocess_fn=task.postprocessor, shuffle_buffer_size=None)


def shuffled_cached_provider(provider: seqio.Task | seqio.Mixture) -> seqio.Task | seqio.Mixture:
    """`provider` (every task cached) as a shuffled cached read: the tasks' copies above, and
    for a mixture a flat copy with each task's rate from the original (`Mixture.get_rate`,
    sub-mixtures included) and the original's sampling function. Read it with
    `use_cached=False` (the copies read the cache themselves)."""
    if isinstance(provider, seqio.Task):
        return _shuffled_task(provider)
    rates: Mapping[str, float] = {t.name: provider.get_rate(t) for t in provider.tasks}
    kwargs = {}
    if getattr(provider, "_sample_fn", None) is not None:
        kwargs["sample_fn"] = provider._sample_fn
    return seqio.Mixture(provider.name,
                         [(_shuffled_task(t), rates[t.name]) for t in provider.tasks], **kwargs)
