"""Data sources: benchmark files under a data root, or pinned TFDS builders.

Every source yields *canonical raw examples* of one format family (`formats.SCHEMAS`), so a
task's preprocessors do not depend on where the data came from.

Settings, read when a dataset is created (not at import), so one process can switch:
  XITT_DATA_DIR  root of the files, laid out like the XTREME `download/` tree plus the original
                 intermediate-task releases, local or gs:// (read through `xitt_common.fs`,
                 the same layer as checkpoints); default: the sample shipped in
                 xitt_tasks/data/sample. `python -m xitt_tasks.prepare` writes and checks one.
  XITT_SOURCE    `files` (default) or `tfds`: where a task that has a pinned TFDS builder reads
                 from. Tasks with no builder always read files. TFDS sources are read-only: they
                 never download or build (run `tfds build` yourself; TFDS_DATA_DIR locates it).

Files are parsed once per process into memory (columns of tensors; ANLI+ is ~1.1M examples)
when a dataset is created, so a malformed record fails there, in the caller's thread, with its
file and line. A shuffled read is a full (pseudo-random) permutation of the split, drawn anew each
epoch from the seed (not seqio's 1,000-example window: SQuAD is ordered by article and SNLI by
caption); a sharded read (`ShardInfo`) takes every `num_shards`-th example of that permutation,
so the hosts of one run (same seed) cover each example exactly once per epoch. The permutation
is stateless (`index_shuffle`, not a `shuffle(num)` buffer), so checkpointing the training
iterator saves a few counters, not the split's indices.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import seqio
import tensorflow as tf
from etils import epath

from xitt_common import fs
from xitt_common.columns import Column, column_dataset, num_rows
from xitt_common.data_env import DATA_DIR_ENV
from xitt_tasks import formats

SOURCE_ENV = "XITT_SOURCE"
SOURCE_KINDS = ("files", "tfds")
SAMPLE_ROOT = Path(__file__).resolve().parent / "data" / "sample"

# read(paths) -> iterator of canonical raw examples (plain Python values).
Reader = Callable[[Sequence[epath.Path]], Iterator[dict[str, Any]]]
# adapt(tfds example) -> canonical raw example (tf tensors).
Adapter = Callable[[Mapping[str, Any]], dict[str, tf.Tensor]]


def data_root() -> epath.Path:
    """The root of the data files: $XITT_DATA_DIR (local or gs://), else the shipped sample."""
    return fs.path(os.environ.get(DATA_DIR_ENV) or SAMPLE_ROOT)


def source_kind() -> str:
    kind = os.environ.get(SOURCE_ENV) or "files"
    if kind not in SOURCE_KINDS:
        raise ValueError(f"{SOURCE_ENV}={kind!r}; expected one of {SOURCE_KINDS}")
    return kind


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
    """A pinned TFDS builder (`name/config:version`) and how its examples map to the schema."""
    name: str
    splits: Mapping[str, str]
    adapt: Adapter
    keep: Callable[[Mapping[str, tf.Tensor]], tf.Tensor] | None = None
    # split -> another builder it is read from (XNLI's English dev as MNLI's selection set)
    per_split: Mapping[str, TfdsSpec] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if ":" not in self.name:
            raise ValueError(f"TFDS builder {self.name!r} must pin a version (name:X.Y.Z)")


class XittSource(seqio.DataSource):
    """Files under the data root (default) or a pinned TFDS builder, chosen at dataset creation.

    `files` maps each split to the relative path(s) its reader needs. `kind` forces `files` or
    `tfds` for this source; None follows $XITT_SOURCE.
    """

    def __init__(self, family: str, files: Mapping[str, str | Sequence[str]], read: Reader,
                 tfds: TfdsSpec | None = None, kind: str | None = None):
        if family not in formats.SCHEMAS:
            raise ValueError(
                f"unknown format family {family!r}; expected {sorted(formats.SCHEMAS)}")
        if tfds is not None and set(tfds.splits) != set(files):
            raise ValueError(f"TFDS splits {sorted(tfds.splits)} != file splits {sorted(files)}")
        if kind is not None and kind not in SOURCE_KINDS:
            raise ValueError(f"kind={kind!r}; expected one of {SOURCE_KINDS} or None")
        self.family = family
        self.files = {s: (p,) if isinstance(p, str) else tuple(p) for s, p in files.items()}
        self.read = read
        self.tfds = tfds
        self.kind = kind
        super().__init__(splits=tuple(files), caching_permitted=True)

    @property
    def supports_arbitrary_sharding(self) -> bool:
        return False

    @property
    def repeats_shuffled_epochs(self) -> bool:
        """Files are read by `column_dataset`, which repeats a shuffled read itself under
        `SelfRepeatingTask`; TFDS reads are repeated by seqio."""
        return self.resolved_kind() == "files"

    def list_shards(self, split: str) -> Sequence[str]:
        return [split]

    def resolved_kind(self) -> str:
        kind = self.kind or source_kind()
        return "tfds" if kind == "tfds" and self.tfds is not None else "files"

    def paths(self, split: str) -> list[epath.Path]:
        """The files of `split` under the current data root; FileNotFoundError if one is missing."""
        if split not in self.files:
            raise ValueError(f"unknown split {split!r}; this source has {list(self.files)}")
        root = data_root()
        paths = [root / rel for rel in self.files[split]]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(
                    2, f"expected data file not found: {path} (data root {root}, set by "
                    f"${DATA_DIR_ENV}; layout in xitt_tasks/data/README.md)", str(path))
        return paths

    def required_files(self, split: str) -> list[str]:
        """The files a `files` read of `split` needs (none for TFDS): for preflight checks."""
        if self.resolved_kind() == "tfds":
            return []
        if split not in self.files:
            raise ValueError(f"unknown split {split!r}; this source has {list(self.files)}")
        root = data_root()
        return [str(root / rel) for rel in self.files[split]]

    def examples(self, split: str) -> dict[str, Column]:
        """Every raw example of `split` as columns (one tensor per schema field), read once
        per process and reused while the files are unchanged."""
        paths = self.paths(split)
        key = tuple((os.fspath(p), *fs.signature(p)) for p in paths)
        return _read_columns(self.read, self.family, key)

    def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                    shard_info: seqio.ShardInfo | None = None, *, sequence_length=None,
                    use_cached: bool = False, num_epochs: int | None = 1) -> tf.data.Dataset:
        del sequence_length, use_cached, num_epochs
        sharded = shard_info is not None and shard_info.num_shards > 1
        if self.resolved_kind() == "tfds":
            ds = self._tfds_dataset(split, shuffle, seed)
            return ds.shard(shard_info.num_shards, shard_info.index) if sharded else ds
        return column_dataset(self.examples(split), shuffle, seed,
                              shard_info if sharded else None)

    def _tfds_dataset(self, split: str, shuffle: bool, seed: int | None) -> tf.data.Dataset:
        assert self.tfds is not None
        if split not in self.tfds.splits:
            raise ValueError(f"unknown split {split!r}; this source has {list(self.tfds.splits)}")
        spec = self.tfds.per_split.get(split, self.tfds)
        source = seqio.TfdsDataSource(spec.name, splits={split: spec.splits[split]},
                                      read_only=True)
        ds = source.get_dataset(split, shuffle=shuffle, seed=seed)
        if spec.keep is not None:
            ds = ds.filter(spec.keep)
        schema = formats.SCHEMAS[self.family]

        def adapt(ex: Mapping[str, Any]) -> dict[str, tf.Tensor]:
            out = spec.adapt(ex)
            return {k: tf.ensure_shape(tf.cast(out[k], spec.dtype), spec.shape)
                    for k, spec in schema.items()}

        return ds.map(adapt, num_parallel_calls=tf.data.AUTOTUNE)

    def count(self, split: str) -> int:
        """Number of raw examples in `split` (reads the data)."""
        if self.resolved_kind() == "files":
            return num_rows(self.examples(split))
        return int(self.get_dataset(split, shuffle=False).reduce(0, lambda n, _: n + 1))

    def __repr__(self) -> str:
        tfds_name = self.tfds.name if self.tfds else None
        return f"XittSource(family={self.family}, files={self.files}, tfds={tfds_name})"


@functools.lru_cache(maxsize=8)
def _read_columns(read: Reader, family: str, key: tuple[tuple[str, int, int], ...]
                  ) -> dict[str, Column]:
    """Run `read` over the files of `key` and stack its examples into one tensor per field.

    Cached on (reader, files with size and mtime): validation every few hundred steps and each
    epoch reuse the parse.
    """
    schema = formats.SCHEMAS[family]
    values: dict[str, list[Any]] = {name: [] for name in schema}
    paths = [fs.path(p) for p, _, _ in key]
    for n, example in enumerate(read(paths)):
        for name, spec in schema.items():
            if name not in example:
                raise ValueError(f"{paths[0]}: reader {getattr(read, '__name__', read)!r} gave "
                                 f"example {n} without the field {name!r} of the {family!r} "
                                 f"schema")
            value = example[name]
            if value is None and spec.shape.rank == 1:
                value = []
            elif value is None:
                raise ValueError(f"{paths[0]}: example {n} has no value for {name!r} "
                                 f"(expected {spec.dtype.name})")
            values[name].append(value)
    columns: dict[str, Column] = {}
    for name, spec in schema.items():
        column = values[name]
        if spec.shape.rank == 0:
            columns[name] = tf.constant(column, dtype=spec.dtype, shape=[len(column)])
        else:
            flat = [v for row in column for v in row]
            splits = np.cumsum([0] + [len(row) for row in column], dtype=np.int64)
            columns[name] = (tf.constant(flat, dtype=spec.dtype, shape=[len(flat)]),
                             tf.constant(splits))
    return columns
