"""mC4 span corruption (`xitt.mc4`) and the intermediate tasks mixed with it (`*_mlm`).

X-STILTs' first alternative to English intermediate training continues multilingual masked
language modelling during the intermediate phase. For mT5 the pre-training objective is span
corruption on mC4, so `xitt.inter.<task>_mlm` mixes `xitt.inter.<task>` with `xitt.mc4` at
MLM_SHARE of the examples (the rate and why: docs/protocol.md and xitt_tasks/README.md).

`xitt.mc4` is one task whose source samples every mC4 language as mT5 did: language l with
probability proportional to n_l ** 0.3, n_l its number of documents in the split (mT5's
`rate_num_examples` with temperature 1 / 0.3 over the `c4/multilingual` splits). Sources:
  tfds   `c4/multilingual:3.1.0`, every language of `tfds.text.c4.MC4_LANGUAGES`, sizes from
         the prepared builder's split info (read-only: nothing is downloaded or built).
  files  the mC4 release layout under the data root (`mc4/multilingual/c4-<l>.tfrecord-*.json`
         or `.json.gz`, JSON lines with `text`; validation `c4-<l>-validation.tfrecord-*`):
         every language found there. The shipped sample has a small synthetic corpus; a real
         corpus is far too large for this in-memory reader, so real runs use TFDS.
"""
from __future__ import annotations

import functools
import gzip
import json
import os
import re
from pathlib import Path

import seqio
import tensorflow as tf

from xitt_common.columns import FOREVER, SelfRepeatingTask, column_dataset
from xitt_tasks import formats, intermediate, sources, span_corruption

TASK = "xitt.mc4"
TFDS_NAME = "c4/multilingual:3.1.0"
FILE_DIR = "mc4/multilingual"
SAMPLING_EXPONENT = 0.3  # mT5: DEFAULT_TEMPERATURE = 1 / 0.3
MLM_SHARE = 0.5  # of the examples of every `*_mlm` intermediate mixture
MAX_FILES_BYTES = 256 * 2**20
_SHARD = re.compile(r"^c4-(?P<lang>[A-Za-z_-]+?)(?P<val>-validation)?\.tfrecord-\d+-of-\d+"
                    r"\.json(\.gz)?$")


def language_weights(sizes: dict[str, int], exponent: float = SAMPLING_EXPONENT
                     ) -> dict[str, float]:
    """Sampling probability of each language: n ** exponent, normalised (mT5: 0.3)."""
    if not sizes or any(n <= 0 for n in sizes.values()):
        raise ValueError(f"every mC4 language needs documents; got sizes {sizes}")
    raw = {lang: float(n) ** exponent for lang, n in sizes.items()}
    total = sum(raw.values())
    return {lang: r / total for lang, r in raw.items()}


def _tfds_languages() -> tuple[str, ...]:
    import tensorflow_datasets as tfds

    return tuple(tfds.text.c4.MC4_LANGUAGES)


def _tfds_split(lang: str, split: str) -> str:
    return lang if split == "train" else f"{lang}-validation"


class Mc4Source(seqio.DataSource):
    """Documents (`text`) of every mC4 language, sampled with exponent 0.3 (module doc)."""

    def __init__(self, kind: str | None = None):
        self.kind = kind
        super().__init__(splits=("train", "validation"), caching_permitted=True)

    @property
    def supports_arbitrary_sharding(self) -> bool:
        return False

    def list_shards(self, split: str) -> list[str]:
        return [split]

    @property
    def repeats_shuffled_epochs(self) -> bool:
        return self.resolved_kind() != "tfds"

    def resolved_kind(self) -> str:
        return self.kind or sources.source_kind()

    def _files(self) -> dict[tuple[str, str], list[Path]]:
        root = sources.data_root() / FILE_DIR
        found: dict[tuple[str, str], list[Path]] = {}
        for path in sorted(root.glob("c4-*")) if root.is_dir() else []:
            m = _SHARD.match(path.name)
            if m:
                split = "validation" if m["val"] else "train"
                found.setdefault((m["lang"], split), []).append(path)
        if not found:
            raise FileNotFoundError(
                2, f"no mC4 files under {root} (expected c4-<lang>.tfrecord-NNNNN-of-NNNNN.json"
                "[.gz]; set XITT_SOURCE=tfds to read c4/multilingual from TFDS)", str(root))
        return found

    def required_files(self, split: str) -> list[str]:
        """The shards a `files` read needs (none for TFDS), for train.preflight; with no shard
        at all, the directory they belong in (reported missing)."""
        if self.resolved_kind() == "tfds":
            return []
        try:
            files = self._files()
        except FileNotFoundError:
            return [str(sources.data_root() / FILE_DIR)]
        found = [str(p) for (_, s), paths in sorted(files.items()) if s == split for p in paths]
        return found or [str(sources.data_root() / FILE_DIR / f"c4-*-{split}")]

    def languages(self, split: str = "train") -> tuple[str, ...]:
        if self.resolved_kind() == "tfds":
            return _tfds_languages()
        return tuple(sorted(lang for lang, s in self._files() if s == split))

    def sizes(self, split: str) -> dict[str, int]:
        """Documents per language in `split` (TFDS: the prepared builder's split info)."""
        if self.resolved_kind() == "tfds":
            return {lang: _tfds_source(lang).num_input_examples(split)
                    for lang in self.languages(split)}
        files = self._files()
        return {lang: int(tf.size(_read_texts(_key(files[(lang, split)]))))
                for lang in self.languages(split)}

    def count(self, split: str) -> int:
        """Documents in `split`. (Not `num_input_examples`: seqio would then cache this small
        source in memory after the endless training stream, which never ends.)"""
        return sum(self.sizes(split).values())

    def _language(self, lang: str, split: str, shuffle: bool, seed: int | None,
                  shard_info: seqio.ShardInfo | None) -> tf.data.Dataset:
        if self.resolved_kind() == "tfds":
            ds = _tfds_source(lang).get_dataset(split, shuffle=shuffle, seed=seed,
                                                shard_info=shard_info)
            ds = ds.map(lambda ex: {"text": ex["text"]})
            return ds.repeat() if split == "train" else ds
        texts = {"text": _read_texts(_key(self._files()[(lang, split)]))}
        if split == "train" and shuffle:  # repeats itself, epochs keyed by a saved counter
            return column_dataset(texts, shuffle, seed, shard_info, FOREVER)
        ds = column_dataset(texts, shuffle, seed, shard_info)
        return ds.repeat() if split == "train" else ds

    def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                    shard_info: seqio.ShardInfo | None = None, *, sequence_length=None,
                    use_cached: bool = False, num_epochs: int | None = 1) -> tf.data.Dataset:
        """Training: every language repeated, then sampled by weight (an endless stream, as a
        seqio mixture of per-language tasks would be); other splits: each language once."""
        del sequence_length, use_cached, num_epochs
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; {TASK} has {list(self.splits)}")
        shard = shard_info if shard_info is not None and shard_info.num_shards > 1 else None
        weights = language_weights(self.sizes(split))
        datasets = []
        for i, lang in enumerate(weights):
            ds = self._language(lang, split, shuffle, None if seed is None else seed + i, shard)
            datasets.append(ds)
        sample_seed = seed if seed is not None else (None if shuffle else 42)
        return tf.data.Dataset.sample_from_datasets(
            datasets, list(weights.values()), seed=sample_seed, stop_on_empty_dataset=False)


@functools.cache
def _tfds_source(lang: str) -> seqio.TfdsDataSource:
    return seqio.TfdsDataSource(TFDS_NAME, splits={s: _tfds_split(lang, s)
                                                   for s in ("train", "validation")},
                                read_only=True)


def _key(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    # tf.io.gfile: the same for a local or a gs:// data root (pathlib or epath paths).
    stats = [(os.fspath(p), tf.io.gfile.stat(os.fspath(p))) for p in paths]
    total = sum(st.length for _, st in stats)
    if total > MAX_FILES_BYTES:
        raise ValueError(f"{stats[0][0]}: {total / 2**20:.0f} MiB of mC4 files for one "
                         f"language is too much to read into memory; set XITT_SOURCE=tfds")
    return tuple((path, st.length, st.mtime_nsec) for path, st in stats)


@functools.lru_cache(maxsize=256)
def _read_texts(key: tuple[tuple[str, int, int], ...]) -> tf.Tensor:
    """The `text` of every JSON line of the files in `key` (gzip when named .gz)."""
    texts = []
    for path, _, _ in key:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
        if path.endswith(".gz"):
            data = gzip.decompress(data)
        for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                texts.append(json.loads(line)["text"])
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{number}: expected a JSON object with a string "
                                 f"'text' (mC4 layout), got {line[:60]!r}") from e
    return tf.constant(texts, dtype=tf.string, shape=[len(texts)])


def mlm_mixture_name(intermediate_name: str) -> str:
    return f"{intermediate.PREFIX}{intermediate_name}_mlm"


def register(share: float = MLM_SHARE) -> None:
    """`xitt.mc4` and `xitt.inter.<task>_mlm` for every intermediate task and the multitask
    mixture: (task, 1 - share), (mc4, share)."""
    if not 0 < share < 1:
        raise ValueError(f"MLM share {share}; expected a fraction strictly between 0 and 1")
    seqio.TaskRegistry.remove(TASK)
    seqio.TaskRegistry.add(
        TASK, source=Mc4Source(), output_features=formats.output_features(),
        preprocessors=[functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
                       seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                       span_corruption.span_corruption,
                       seqio.preprocessors.append_eos_after_trim],
        metric_fns=[], task_cls=SelfRepeatingTask)
    for name in (*intermediate.INTERMEDIATE_TASKS, "multitask"):
        mixture = mlm_mixture_name(name)
        seqio.MixtureRegistry.remove(mixture)
        seqio.MixtureRegistry.add(mixture, [(intermediate.PREFIX + name, 1.0 - share),
                                            (TASK, share)])
