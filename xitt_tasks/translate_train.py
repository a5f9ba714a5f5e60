"""Machine-translated intermediate-task data (X-STILTs' second alternative): translate-train.

XTREME's translations (Hu et al. 2020, the `xtreme_translations` bucket) of MNLI into the XNLI
languages and of SQuAD v1.1 into the XQuAD languages, laid out under the data root as in the
bucket:
  xtreme_translations/XNLI/translate-train/en-<l>-translated.tsv
      tab-separated, no header, no quoting: English premise, English hypothesis, translated
      premise, translated hypothesis, label (`contradictory` = contradiction)
  xtreme_translations/SQuAD/translate-train/squad.translate.train.en-<l>.json   SQuAD JSON
or from the TFDS builders that carry the same files: `xtreme_xnli:1.1.0` (train, one example per
English pair with every translation) and `xquad/<l>:3.0.0` (split `translate-train`).

Tasks `xitt.inter.mnli_translate_train.<l>` and `xitt.inter.squad_v1_translate_train.<l>`
(train only); the conditions are the mixtures `xitt.inter.mnli_translate_train` and
`xitt.inter.squad_v1_translate_train`: the English task plus every translation, equal rates
(the sets are translations of the same examples, so equal sizes: XTREME's translate-train-all).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import seqio

from xitt_tasks import formats, intermediate, languages, readers
from xitt_tasks.formats import add_task
from xitt_tasks.metrics import classification, squad
from xitt_tasks.sources import TfdsSpec, XittSource
from xitt_tasks.targets_classification import _xnli_tfds

XNLI_DIR = "xtreme_translations/XNLI/translate-train"
SQUAD_DIR = "xtreme_translations/SQuAD/translate-train"
MNLI_LANGUAGES = tuple(lang for lang in languages.XNLI if lang != "en")
# XTREME translated SQuAD into XQuAD's original ten languages (not ro, added to XQuAD later).
SQUAD_LANGUAGES = tuple(lang for lang in languages.XQUAD if lang not in ("en", "ro"))
TRANSLATED = {"mnli": MNLI_LANGUAGES, "squad_v1": SQUAD_LANGUAGES}
_COLUMNS = ("premise_en", "hypothesis_en", "premise", "hypothesis", "label")


def xnli_path(lang: str) -> str:
    return f"{XNLI_DIR}/en-{lang}-translated.tsv"


def squad_path(lang: str) -> str:
    return f"{SQUAD_DIR}/squad.translate.train.en-{lang}.json"


def read_mnli_translated(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    """Canonical `nli` examples of one XTREME MNLI translation (the translated side)."""
    for number, r in enumerate(readers.read_tsv(paths[0], _COLUMNS), 1):
        label = "contradiction" if r["label"] == "contradictory" else r["label"]
        if label not in formats.NLI_LABELS:
            raise ValueError(f"{paths[0]}: row {number}: label {r['label']!r}; expected one of "
                             f"{formats.NLI_LABELS} or 'contradictory'")
        yield {"premise": r["premise"], "hypothesis": r["hypothesis"], "label": label}


def task_name(task: str, lang: str | None = None) -> str:
    base = f"{intermediate.PREFIX}{task}_translate_train"
    return base if lang is None else f"{base}.{lang}"


def register() -> None:
    for lang in MNLI_LANGUAGES:
        src = XittSource("nli", {"train": xnli_path(lang)}, read_mnli_translated,
                         TfdsSpec("xtreme_xnli:1.1.0", {"train": "train"}, _xnli_tfds(lang)))
        add_task(task_name("mnli", lang), src, "nli", metric_fns=[classification.accuracy])
    for lang in SQUAD_LANGUAGES:
        src = XittSource("qa", {"train": squad_path(lang)}, intermediate.read_squad,
                         TfdsSpec(f"xquad/{lang}:3.0.0", {"train": "translate-train"},
                                  intermediate.squad_tfds))
        add_task(task_name("squad_v1", lang), src, "qa", postprocess_fn=formats.qa_postprocess,
                 metric_fns=[squad.squad_v1])
    for task, langs in TRANSLATED.items():
        name = task_name(task)
        seqio.MixtureRegistry.remove(name)
        seqio.MixtureRegistry.add(name, [intermediate.PREFIX + task,
                                         *(task_name(task, lang) for lang in langs)],
                                  default_rate=1.0)
