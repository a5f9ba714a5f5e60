"""XNLI (trained on MNLI) and XCOPA (trained on SIQA, then English COPA: the official recipe)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf

from xitt_tasks import formats, languages, readers
from xitt_tasks.formats import add_choice_tasks, add_task, register_target_mixtures
from xitt_tasks.metrics import classification
from xitt_tasks.sources import TfdsSpec, XittSource


def read_xnli(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    """XTREME `xnli/*.tsv`: premise, hypothesis, label (no header, csv quoting)."""
    for r in readers.read_tsv(paths[0], ("premise", "hypothesis", "label"), quoting=True):
        if r["label"] not in formats.NLI_LABELS:
            raise ValueError(f"{paths[0]}: label {r['label']!r}; expected {formats.NLI_LABELS}")
        yield r


def read_copa(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    """XCOPA/COPA JSONL: premise, choice1, choice2, question (cause|effect), label, idx."""
    for r in readers.read_jsonl(paths[0]):
        yield {"id": str(r.get("idx", "")), "context": r["premise"], "question": r["question"],
               "choices": [r["choice1"], r["choice2"]], "label": int(r.get("label", -1))}


def read_siqa(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    labels = paths[1] if len(paths) > 1 else None
    for i, r in enumerate(readers.read_siqa(paths[0], labels)):
        yield {"id": str(i), "context": r["context"], "question": r["question"],
               "choices": [r["answerA"], r["answerB"], r["answerC"]],
               "label": -1 if r["label"] is None else int(r["label"])}


def _xnli_tfds(lang: str) -> Any:
    def adapt(ex: Mapping[str, Any]) -> dict[str, tf.Tensor]:
        hyp = ex["hypothesis"]
        match = tf.boolean_mask(hyp["translation"], tf.equal(hyp["language"], lang))
        return {"premise": ex["premise"][lang],
                "hypothesis": tf.strings.reduce_join(match[:1]),
                "label": tf.gather(tf.constant(formats.NLI_LABELS), ex["label"])}
    return adapt


def _copa_tfds(ex: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {"id": tf.strings.as_string(ex["idx"]), "context": ex["premise"],
            "question": ex["question"], "choices": tf.stack([ex["choice1"], ex["choice2"]]),
            "label": ex["label"]}


def register() -> None:
    # XNLI: English training data is MNLI (XTREME's xnli/train-en.tsv); checkpoints are
    # selected on XNLI's English dev set from either source (protocol.md section 4).
    xnli_dev_en = TfdsSpec("xnli:1.1.0", {"validation": "validation"}, _xnli_tfds("en"))
    mnli = XittSource("nli", {"train": "xnli/train-en.tsv", "validation": "xnli/dev-en.tsv"},
                      read_xnli,
                      TfdsSpec("multi_nli:1.1.0", {"train": "train", "validation": "validation"},
                               _xnli_mnli_tfds, per_split={"validation": xnli_dev_en}))
    add_task("xitt.xnli.train.en", mnli, "nli", metric_fns=[classification.accuracy])
    for lang in languages.XNLI:
        # test: XNLI 1.0's labelled test set (XTREME's download strips the labels; prepare
        # writes them), what XTREME-R reports
        src = XittSource("nli", {"validation": f"xnli/dev-{lang}.tsv",
                                 "test": f"xnli/test-{lang}.tsv"}, read_xnli,
                         TfdsSpec("xnli:1.1.0", {"validation": "validation", "test": "test"},
                                  _xnli_tfds(lang)))
        add_task(f"xitt.xnli.{lang}", src, "nli", metric_fns=[classification.accuracy])
    register_target_mixtures("xnli", ["xitt.xnli.train.en"])

    # XCOPA: SIQA first, then English COPA; evaluation per language (and `.rank` variants).
    siqa = XittSource("choice", {"train": ("siqa/train.jsonl", "siqa/train-labels.lst"),
                                 "validation": ("siqa/dev.jsonl", "siqa/dev-labels.lst")},
                      read_siqa)
    add_choice_tasks("xitt.xcopa.train.siqa", siqa, "choice_siqa")
    copa = XittSource("choice", {"train": "xcopa/train-en.jsonl",
                                 "validation": "xcopa/val-en.jsonl"}, read_copa,
                      TfdsSpec("super_glue/copa:1.0.2",
                               {"train": "train", "validation": "validation"}, _copa_tfds))
    add_choice_tasks("xitt.xcopa.train.copa", copa, "choice_xcopa")
    for lang in languages.XCOPA:
        src = XittSource("choice", {"validation": f"xcopa/val-{lang}.jsonl",
                                    "test": f"xcopa/test-{lang}.jsonl"}, read_copa)
        add_choice_tasks(f"xitt.xcopa.{lang}", src, "choice_xcopa")
    register_target_mixtures("xcopa", ["xitt.xcopa.train.copa"])


def _xnli_mnli_tfds(ex: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {"premise": ex["premise"], "hypothesis": ex["hypothesis"],
            "label": tf.gather(tf.constant(formats.NLI_LABELS), ex["label"])}
