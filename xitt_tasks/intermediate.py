"""The nine English intermediate tasks (`xitt.inter.*`) and their multi-task mixture.

Each task has `train` and `validation` splits read from the original releases under the data
root (see xitt_tasks/data/README.md) or, where a builder exists, from pinned TFDS.
Multiple-choice tasks also get a `.rank` variant (validation only) scored by likelihood.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import seqio
import tensorflow as tf

from xitt_tasks import formats, readers
from xitt_tasks.formats import add_choice_tasks, add_task
from xitt_tasks.metrics import classification, squad, tagging
from xitt_tasks.sources import TfdsSpec, XittSource

PREFIX = "xitt.inter."

# Known English training-set sizes (benchmarks.md), so mixing rates need no cached statistics.
TRAIN_SIZES: dict[str, int] = {
    "anli_r1": 16_946, "anli_r2": 45_460, "anli_r3": 100_459,
    "mnli": 392_702, "snli": 550_152, "qqp": 363_846,
    "squad_v2": 130_319, "squad_v1": 87_599, "hellaswag": 39_905,
    "ccg": 39_604, "cosmos_qa": 25_262, "commonsense_qa": 9_741,
}
ANLI_PLUS_PARTS = ("anli_r1", "anli_r2", "anli_r3", "mnli", "snli")
TRAIN_SIZES["anli_plus"] = sum(TRAIN_SIZES[p] for p in ANLI_PLUS_PARTS)
INTERMEDIATE_TASKS = ("anli_plus", "mnli", "qqp", "squad_v2", "squad_v1", "hellaswag", "ccg",
                      "cosmos_qa", "commonsense_qa")
DEFAULT_CAP = 2**17  # examples-proportional mixing, each task's rate capped at 131,072


# ----------------------------------------------------------------------------- file readers
# Each turns one release's records into the canonical raw schema of its format family.

_ANLI_LABELS = {"e": "entailment", "n": "neutral", "c": "contradiction"}


def _nli_label(label: str, path: Path) -> str:
    label = _ANLI_LABELS.get(label, label)
    if label not in formats.NLI_LABELS:
        raise ValueError(f"{path}: NLI label {label!r}; expected one of {formats.NLI_LABELS}")
    return label


def read_anli(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for r in readers.read_jsonl(paths[0]):
        # ANLI v1.0 names the premise `context`; some re-releases call it `premise`.
        premise = r["context"] if "context" in r else r.get("premise")
        if premise is None:
            raise ValueError(f"{paths[0]}: ANLI record {r.get('uid')!r} has no context/premise")
        yield {"premise": premise, "hypothesis": r["hypothesis"],
               "label": _nli_label(r["label"], paths[0])}


def read_snli(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for r in readers.read_jsonl(paths[0]):
        if r["gold_label"] == "-":  # no annotator majority: unlabeled by the release
            continue
        yield {"premise": r["sentence1"], "hypothesis": r["sentence2"],
               "label": _nli_label(r["gold_label"], paths[0])}


def read_glue_mnli(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for r in readers.read_tsv(paths[0], ("sentence1", "sentence2", "gold_label"), header=True):
        yield {"premise": r["sentence1"], "hypothesis": r["sentence2"],
               "label": _nli_label(r["gold_label"], paths[0])}


def read_qqp(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for r in readers.read_tsv(paths[0], ("question1", "question2", "is_duplicate"),
                              header=True):
        if r["is_duplicate"] not in ("0", "1"):
            raise ValueError(f"{paths[0]}: is_duplicate {r['is_duplicate']!r}; expected 0 or 1")
        yield {"question1": r["question1"], "question2": r["question2"],
               "label": formats.QQP_LABELS[int(r["is_duplicate"])]}


def read_squad(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for r in readers.read_squad_json(paths[0]):
        yield {"id": r["id"], "question": r["question"], "context": r["context"],
               "answers": list(r["answers"])}


def read_tags(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for r in readers.read_conll(paths[0]):
        if r["tags"] is None:
            raise ValueError(f"{paths[0]}: sentence {' '.join(r['tokens'][:8])!r} has no tags; "
                             "expected 'token<TAB>tag' lines")
        yield {"tokens": r["tokens"], "tags": r["tags"]}


def read_hellaswag(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for i, r in enumerate(readers.read_jsonl(paths[0])):
        yield {"id": str(r.get("ind", i)), "context": r["ctx"], "question": "",
               "choices": list(r["endings"]), "label": int(r.get("label", -1))}


def read_cosmos_qa(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    columns = ("id", "context", "question", "answer0", "answer1", "answer2", "answer3", "label")
    for r in readers.read_csv(paths[0], columns):
        yield {"id": r["id"], "context": r["context"], "question": r["question"],
               "choices": [r[f"answer{i}"] for i in range(4)], "label": int(r["label"] or -1)}


def read_commonsense_qa(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for r in readers.read_jsonl(paths[0]):
        choices = sorted(r["question"]["choices"], key=lambda c: c["label"])
        labels = [c["label"] for c in choices]
        key = r.get("answerKey")
        yield {"id": r["id"], "context": "", "question": r["question"]["stem"],
               "choices": [c["text"] for c in choices],
               "label": labels.index(key) if key in labels else -1}


# ----------------------------------------------------------------------------- TFDS adapters

def _nli_tfds(premise: str) -> Any:
    def adapt(ex: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"premise": ex[premise], "hypothesis": ex["hypothesis"],
                "label": tf.gather(tf.constant(formats.NLI_LABELS), ex["label"])}
    return adapt


def _has_label(ex: Mapping[str, tf.Tensor]) -> tf.Tensor:
    return ex["label"] >= 0


def _qqp_tfds(ex: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {"question1": ex["question1"], "question2": ex["question2"],
            "label": tf.gather(tf.constant(formats.QQP_LABELS), ex["label"])}


def squad_tfds(ex: Mapping[str, Any]) -> dict[str, tf.Tensor]:
    return {"id": ex["id"], "question": ex["question"], "context": ex["context"],
            "answers": ex["answers"]["text"]}


def _hellaswag_tfds(ex: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {"id": ex["source_id"], "context": ex["context"], "question": "",
            "choices": ex["endings"], "label": ex["label"]}


def _cosmos_tfds(ex: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {"id": ex["id"], "context": ex["context"], "question": ex["question"],
            "choices": tf.stack([ex[f"answer{i}"] for i in range(4)]), "label": ex["label"]}


# ----------------------------------------------------------------------------- registration

def _src(family: str, train: str, validation: str, read: Any,
         tfds: TfdsSpec | None = None) -> XittSource:
    return XittSource(family, {"train": train, "validation": validation}, read, tfds)


def sources() -> dict[str, XittSource]:
    """One source per intermediate task (ANLI+ is a mixture of five of them)."""
    src: dict[str, XittSource] = {}
    for r in (1, 2, 3):
        src[f"anli_r{r}"] = _src(
            "nli", f"anli/R{r}/train.jsonl", f"anli/R{r}/dev.jsonl", read_anli,
            TfdsSpec(f"anli/r{r}:0.1.0", {"train": "train", "validation": "validation"},
                     _nli_tfds("context")))
    src["mnli"] = _src(
        "nli", "glue/MNLI/train.tsv", "glue/MNLI/dev_matched.tsv", read_glue_mnli,
        TfdsSpec("multi_nli:1.1.0", {"train": "train", "validation": "validation_matched"},
                 _nli_tfds("premise")))
    src["snli"] = _src(
        "nli", "snli/snli_1.0_train.jsonl", "snli/snli_1.0_dev.jsonl", read_snli,
        TfdsSpec("snli:1.1.0", {"train": "train", "validation": "validation"},
                 _nli_tfds("premise"), keep=_has_label))
    src["qqp"] = _src(
        "pair", "glue/QQP/train.tsv", "glue/QQP/dev.tsv", read_qqp,
        TfdsSpec("glue/qqp:2.0.0", {"train": "train", "validation": "validation"}, _qqp_tfds))
    for v, tfds_v in (("v2", "v2.0"), ("v1", "v1.1")):
        src[f"squad_{v}"] = _src(
            "qa", f"squad/train-{tfds_v}.json", f"squad/dev-{tfds_v}.json", read_squad,
            TfdsSpec(f"squad/{tfds_v}:3.0.0", {"train": "train", "validation": "validation"},
                     squad_tfds))
    src["hellaswag"] = _src(
        "choice", "hellaswag/hellaswag_train.jsonl", "hellaswag/hellaswag_val.jsonl",
        read_hellaswag,
        TfdsSpec("hellaswag:1.1.0", {"train": "train", "validation": "validation"},
                 _hellaswag_tfds))
    src["ccg"] = _src("tags", "ccg/train.tsv", "ccg/dev.tsv", read_tags)
    src["cosmos_qa"] = _src(
        "choice", "cosmosqa/train.csv", "cosmosqa/valid.csv", read_cosmos_qa,
        TfdsSpec("cosmos_qa:1.0.0", {"train": "train", "validation": "validation"},
                 _cosmos_tfds))
    src["commonsense_qa"] = _src(
        "choice", "commonsenseqa/train_rand_split.jsonl", "commonsenseqa/dev_rand_split.jsonl",
        read_commonsense_qa)
    return src


def multitask_rates(cap: int = DEFAULT_CAP, temperature: float = 1.0) -> dict[str, float]:
    """Examples-proportional rates min(size, cap) ** (1 / temperature) over the nine tasks."""
    if cap <= 0 or temperature <= 0:
        raise ValueError(f"cap={cap} and temperature={temperature} must both be positive")
    return {t: float(min(TRAIN_SIZES[t], cap)) ** (1.0 / temperature)
            for t in INTERMEDIATE_TASKS}


def register_multitask(name: str = PREFIX + "multitask", cap: int = DEFAULT_CAP,
                       temperature: float = 1.0) -> seqio.Mixture:
    """(Re)register a nine-task mixture; call with other settings for other mixtures."""
    seqio.MixtureRegistry.remove(name)
    return seqio.MixtureRegistry.add(
        name, [(PREFIX + t, r) for t, r in multitask_rates(cap, temperature).items()])


def register() -> None:
    src = sources()
    for name in ("anli_r1", "anli_r2", "anli_r3", "mnli", "snli"):
        add_task(PREFIX + name, src[name], "nli", metric_fns=[classification.accuracy])
    seqio.MixtureRegistry.remove(PREFIX + "anli_plus")
    seqio.MixtureRegistry.add(PREFIX + "anli_plus",
                              [(PREFIX + p, float(TRAIN_SIZES[p])) for p in ANLI_PLUS_PARTS])
    add_task(PREFIX + "qqp", src["qqp"], "qqp", metric_fns=[classification.accuracy])
    add_task(PREFIX + "squad_v2", src["squad_v2"], "qa",
             postprocess_fn=formats.qa_postprocess,
             metric_fns=[squad.squad_v2_metrics(formats.NO_ANSWER)])
    add_task(PREFIX + "squad_v1", src["squad_v1"], "qa",
             postprocess_fn=formats.qa_postprocess, metric_fns=[squad.squad_v1])
    add_task(PREFIX + "ccg", src["ccg"], "ccg", postprocess_fn=formats.tagging_postprocess,
             metric_fns=[tagging.token_accuracy])
    for name in ("hellaswag", "cosmos_qa", "commonsense_qa"):
        add_choice_tasks(PREFIX + name, src[name], f"choice_{name}")
    register_multitask()


