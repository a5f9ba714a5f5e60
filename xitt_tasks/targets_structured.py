"""UD-POS and WikiANN (PAN-X) NER: English training set, one evaluation task per language."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf
import tensorflow_datasets as tfds

from xitt_tasks import formats, languages, readers
from xitt_tasks.formats import add_task, register_target_mixtures
from xitt_tasks.metrics import tagging
from xitt_tasks.sources import TfdsSpec, XittSource

# TFDS has xtreme_pos configs for these languages only; the rest read files.
TFDS_POS_LANGUAGES = frozenset(languages.UDPOS) - {"lt", "pl", "uk", "wo", "ro"}


def tagged_reader(lang: str) -> Any:
    """XTREME `udpos`/`panx` TSV sentences; a leading `{lang}:` on tokens (panx) is removed."""
    prefix = f"{lang}:"

    def read(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
        for r in readers.read_conll(paths[0]):
            if r["tags"] is None:
                raise ValueError(f"{paths[0]}: sentence {' '.join(r['tokens'][:8])!r} has no "
                                 "tags (XTREME strips test labels); expected 'token<TAB>tag'")
            tokens = [t[len(prefix):] if t.startswith(prefix) else t for t in r["tokens"]]
            yield {"tokens": tokens, "tags": r["tags"]}
    return read


def _tags_tfds(builder: str, tag_key: str) -> Any:
    """Maps a TFDS tagging example to tokens/tags; ClassLabel ids become their names."""
    def adapt(ex: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        names = tfds.builder(builder).info.features[tag_key].feature.names
        tags = tf.gather(tf.constant(names), ex[tag_key])
        # Real TFDS data has one tag per token; mock data may not, so align defensively.
        n = tf.minimum(tf.shape(ex["tokens"])[0], tf.shape(tags)[0])
        return {"tokens": ex["tokens"][:n], "tags": tags[:n]}
    return adapt


def _splits(kind: str, lang: str, with_train: bool) -> dict[str, str]:
    # test: labelled test sets (XTREME's download strips the tags: data/README.md)
    files = {"validation": f"{kind}/dev-{lang}.tsv", "test": f"{kind}/test-{lang}.tsv"}
    return {"train": f"{kind}/train-{lang}.tsv", **files} if with_train else files


def _pos_source(lang: str, with_train: bool) -> XittSource:
    tfds_spec = None
    if lang in TFDS_POS_LANGUAGES:
        name = f"xtreme_pos/xtreme_pos_{lang}"
        split_map = {"train": "train", "validation": "dev", "test": "test"}
        if not with_train:
            split_map.pop("train")
        tfds_spec = TfdsSpec(f"{name}:1.0.0", split_map, _tags_tfds(name, "upos"))
    return XittSource("tags", _splits("udpos", lang, with_train), tagged_reader(lang), tfds_spec)


def _ner_source(lang: str, with_train: bool) -> XittSource:
    name = f"wikiann/{lang}"
    split_map = {"train": "train", "validation": "validation", "test": "test"}
    if not with_train:
        split_map.pop("train")
    return XittSource("tags", _splits("panx", lang, with_train), tagged_reader(lang),
                      TfdsSpec(f"{name}:1.0.0", split_map, _tags_tfds(name, "tags")))


def register() -> None:
    post = formats.tagging_postprocess
    for target, fmt, source, langs, metric in (
            ("udpos", "pos", _pos_source, languages.UDPOS, tagging.pos_metrics()),
            ("wikiann", "ner", _ner_source, languages.WIKIANN, tagging.ner_metrics())):
        add_task(f"xitt.{target}.train.en", source("en", True), fmt, postprocess_fn=post,
                 metric_fns=[metric])
        for lang in langs:
            add_task(f"xitt.{target}.{lang}", source(lang, False), fmt, postprocess_fn=post,
                     metric_fns=[metric])
        register_target_mixtures(target, [f"xitt.{target}.train.en"])
