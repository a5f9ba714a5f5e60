"""The bottom layer: stateless, seeded shuffling of in-memory example columns for tf.data.

Both the tasks (`xitt_tasks.sources`, files parsed into columns) and the runtime
(`train.cached_source`, a seqio cache read into columns) shuffle this way, so the code lives
below both and imports neither.
"""
from __future__ import annotations

import contextvars
import functools
from collections.abc import Mapping

import seqio
import tensorflow as tf

# A column: a tensor with one row per example, or (flat values, row splits) for list fields.
Column = tf.Tensor | tuple[tf.Tensor, tf.Tensor]


def column_dataset(columns: Mapping[str, Column], shuffle: bool, seed: int | None,
                   shard_info: seqio.ShardInfo | None = None,
                   num_epochs: int | str | None = None) -> tf.data.Dataset:
    """The rows of `columns` as a dataset: in a full seeded permutation per epoch when
    `shuffle` (`permuted_indices`), else in order; with `shard_info`, every `num_shards`-th
    of them from `index`. A shuffled read repeats itself `num_epochs` times (a count or
    FOREVER); left out, the number comes from `SelfRepeatingTask` (`source_epochs`)."""
    num = num_rows(columns)
    epochs = (source_epochs() if num_epochs is None else num_epochs) if shuffle else None
    if shuffle and num > 1:
        index = permuted_indices(num, seed, shard_info, epochs)
    else:
        index = (tf.data.Dataset.range(shard_info.index, num, shard_info.num_shards)
                 if shard_info is not None else tf.data.Dataset.range(num))
        if epochs is not None:  # a single row: nothing to permute, still repeated here
            index = index.repeat(None if epochs == FOREVER else epochs)
    return index.map(functools.partial(row, columns),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


FOREVER = "forever"
# Set only while `SelfRepeatingTask.get_dataset` builds its source's dataset.
_SOURCE_EPOCHS: contextvars.ContextVar[int | str | None] = contextvars.ContextVar(
    "xitt_source_epochs", default=None)


def source_epochs() -> int | str | None:
    """The epochs a shuffled source read must repeat itself: a count or FOREVER while
    `SelfRepeatingTask` builds it; None under a plain seqio.Task (seqio repeats above)."""
    return _SOURCE_EPOCHS.get()


def permuted_indices(num: int, seed: int | None, shard_info: seqio.ShardInfo | None,
                     num_epochs: int | str | None = None) -> tf.data.Dataset:
    """0..num-1 in a full permutation per epoch; with `shard_info`, every `num_shards`-th
    position of it from `index` (then a seed is required: every host must draw the same
    permutation). Stateless, so that a tf.data iterator checkpoint of the training stream stays
    small: `shuffle(num)` would save its whole buffer (about 220 bytes per example in a tf.data
    checkpoint: ~240 MB per host for ANLI+'s 1.1M).

    With `num_epochs` (a count or FOREVER) the read repeats itself and epoch e is keyed by
    (seed, e): the epoch number is a plain counter in the iterator's saved state, so a resumed
    stream is exactly the uninterrupted one. With None, one epoch per iteration, keyed by
    `Dataset.random(rerandomize_each_iteration=True)` so that seqio's `repeat` above still draws
    a new permutation each epoch; that seed generator's state is lost when an iterator is saved
    after the source has finished an epoch but before the consumer has (prefetch ahead; the
    `take(1)` holding it has let go), so such a resume draws another next permutation. Every
    task this project registers is a `SelfRepeatingTask`, which never takes that path.
    """
    if seed is None and shard_info is not None and shard_info.num_shards > 1:
        raise ValueError("a shuffled, sharded read needs a seed shared by every host "
                         "(seed=None would give each host its own permutation)")
    start, step = (shard_info.index, shard_info.num_shards) if shard_info else (0, 1)

    def epoch(key: tf.Tensor) -> tf.data.Dataset:
        seeds = tf.stack([tf.constant(seed or 0, tf.int64), key])
        return tf.data.Dataset.range(start, num, step).map(
            lambda i: tf.random.experimental.index_shuffle(i, seeds, num - 1))

    if num_epochs is None:
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    elif num_epochs == FOREVER:
        keys = tf.data.Dataset.counter()
    elif isinstance(num_epochs, int) and num_epochs >= 1:
        keys = tf.data.Dataset.range(num_epochs)
    else:
        raise ValueError(f"num_epochs={num_epochs!r}; expected a count >= 1, FOREVER or None")
    return keys.flat_map(epoch)


class SelfRepeatingTask(seqio.Task):
    """A seqio.Task whose shuffled source repeats its own epochs (`repeats_shuffled_epochs`).

    seqio repeats a task's stream above its source, so a source can only tell one epoch from
    the next by state that tf.data saves unreliably (`permuted_indices`). This task asks the
    source for all `num_epochs` at once and lets seqio repeat nothing; everything after the
    source (its preprocessors, their seeds, packing) sees the same stream as before.
    """

    def get_dataset(self, *args, shuffle: bool = True, num_epochs: int | None = 1,
                    use_cached: bool = False, **kwargs) -> tf.data.Dataset:
        if not shuffle or use_cached or not getattr(self.source, "repeats_shuffled_epochs",
                                                    False):
            return super().get_dataset(*args, shuffle=shuffle, num_epochs=num_epochs,
                                       use_cached=use_cached, **kwargs)
        token = _SOURCE_EPOCHS.set(FOREVER if num_epochs is None else num_epochs)
        try:
            return super().get_dataset(*args, shuffle=shuffle, num_epochs=1,
                                       use_cached=use_cached, **kwargs)
        finally:
            _SOURCE_EPOCHS.reset(token)


def num_rows(columns: Mapping[str, Column]) -> int:
    first = next(iter(columns.values()))
    return int(first[1].shape[0] - 1 if isinstance(first, tuple) else first.shape[0])


def row(columns: Mapping[str, Column], i: tf.Tensor) -> dict[str, tf.Tensor]:
    out = {}
    for name, column in columns.items():
        if isinstance(column, tuple):
            flat, splits = column
            out[name] = flat[splits[i]:splits[i + 1]]
        else:
            out[name] = column[i]
    return out
