"""XQuAD and MLQA (trained on SQuAD v1.1) and TyDiQA-GoldP (trained on its English train)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf

from xitt_tasks import formats, languages, readers
from xitt_tasks.formats import add_task, register_target_mixtures
from xitt_tasks.intermediate import squad_tfds
from xitt_tasks.metrics import mlqa, qa_spans, squad
from xitt_tasks.sources import TfdsSpec, XittSource

TYDIQA_NAMES = {"en": "english", "ar": "arabic", "bn": "bengali", "fi": "finnish",
                "id": "indonesian", "ko": "korean", "ru": "russian", "sw": "swahili",
                "te": "telugu"}
TYDIQA_TRAIN = "tydiqa/tydiqa-goldp-v1.1-train/tydiqa.goldp.en.train.json"
SQUAD_V11 = {"train": "squad/train-v1.1.json", "validation": "squad/dev-v1.1.json"}


def read_qa(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for r in readers.read_squad_json(paths[0]):
        yield {"id": r["id"], "question": r["question"], "context": r["context"],
               "answers": list(r["answers"])}


def _tydiqa_keep(lang: str) -> Any:
    """TFDS tydi_qa/goldp mixes languages; ids start with the language's English name."""
    def keep(ex: Mapping[str, tf.Tensor]) -> tf.Tensor:
        return tf.strings.regex_full_match(ex["id"], f"{TYDIQA_NAMES[lang]}-.*")
    return keep


def _squad_v11_source() -> XittSource:
    return XittSource("qa", SQUAD_V11, read_qa,
                      TfdsSpec("squad/v1.1:3.0.0", {"train": "train", "validation": "validation"},
                               squad_tfds))


def qa_postprocess(output: Any, example: Mapping[str, Any] | None = None,
                   is_target: bool = False) -> Any:
    """Raw and padded answers side by side, so the metric scores raw strings (official).

    Targets: `{'answers': [raw golds], 'answers_padded': [padded golds]}`; predictions:
    `{'text': the generated padded answer, 'answer': its raw span of the example's context}`
    (`qa_spans.answer_span`). `metrics.squad` reports the raw numbers as `exact_match`/`f1`
    and the padded ones as `exact_match_padded`/`f1_padded`. Without an example (no context)
    the output is returned unchanged.
    """
    if example is None:
        return output
    if is_target:
        raw = formats.strings(example["answers"])
        return {"answers": raw, "answers_padded": formats.qa_postprocess(
            output, example=example, is_target=True)}
    text = output.decode("utf-8") if isinstance(output, bytes) else str(output)
    context = formats.strings([example["context"]])[0]
    return {"text": text, "answer": qa_spans.answer_span(text, context).text}


def _qa_task(name: str, src: XittSource, metric: Any) -> None:
    add_task(name, src, "qa", postprocess_fn=qa_postprocess, metric_fns=[metric])


def register() -> None:
    # XQuAD: one set per language (XTREME's test set; no dev), so the split is `test`.
    _qa_task("xitt.xquad.train.en", _squad_v11_source(), squad.squad_v1)
    for lang in languages.XQUAD:
        tfds_spec = None if lang == "ro" else TfdsSpec(
            f"xquad/{lang}:3.0.0", {"test": "test"}, squad_tfds)
        src = XittSource("qa", {"test": f"xquad/xquad.{lang}.json"}, read_qa, tfds_spec)
        _qa_task(f"xitt.xquad.{lang}", src, squad.squad_v1)
    register_target_mixtures("xquad", ["xitt.xquad.train.en"])

    # MLQA: same-language question/context pairs, MLQA's per-language answer normalisation.
    _qa_task("xitt.mlqa.train.en", _squad_v11_source(), squad.squad_v1)
    for lang in languages.MLQA:
        files = {s: f"mlqa/MLQA_V1/{d}/{d}-context-{lang}-question-{lang}.json"
                 for s, d in (("validation", "dev"), ("test", "test"))}
        src = XittSource("qa", files, read_qa, TfdsSpec(
            f"mlqa/{lang}:1.0.0", {"validation": "validation", "test": "test"}, squad_tfds))
        _qa_task(f"xitt.mlqa.{lang}", src, mlqa.mlqa_metrics(lang))
    register_target_mixtures("mlqa", ["xitt.mlqa.train.en"])

    # TyDiQA-GoldP: English train; the dev sets are the evaluation sets (`validation`).
    train = XittSource("qa", {"train": TYDIQA_TRAIN}, read_qa, TfdsSpec(
        "tydi_qa/goldp:3.0.0", {"train": "train"}, squad_tfds, keep=_tydiqa_keep("en")))
    _qa_task("xitt.tydiqa.train.en", train, squad.squad_v1)
    for lang in languages.TYDIQA:
        files = {"validation": f"tydiqa/tydiqa-goldp-v1.1-dev/tydiqa.goldp.{lang}.dev.json"}
        src = XittSource("qa", files, read_qa, TfdsSpec(
            "tydi_qa/goldp:3.0.0", {"validation": "validation"}, squad_tfds,
            keep=_tydiqa_keep(lang)))
        _qa_task(f"xitt.tydiqa.{lang}", src, squad.squad_v1)
    register_target_mixtures("tydiqa", ["xitt.tydiqa.train.en"])
