"""Text-to-text formats: every task's inputs/targets strings are built here, and only here.

Sources (files or TFDS) yield *canonical raw examples*, one schema per format family
(`SCHEMAS`); a formatter turns one raw example into an `inputs` and a `targets` string and the
raw fields ride along as extra features (answers, tokens, tags, ids) for postprocessing and
metrics. Formatters are plain Python so they are easy to read and test; `format_preprocessor`
runs one inside tf.data through `tf.numpy_function` (this is input-pipeline code, not the JAX
hot path). The README table documents every format.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import seqio
import tensorflow as tf

from xitt_common.columns import SelfRepeatingTask
from xitt_tasks.metrics import classification, qa_spans

NLI_LABELS = ("entailment", "neutral", "contradiction")
QQP_LABELS = ("not_duplicate", "duplicate")
NO_ANSWER = "no answer"
NER_SEPARATOR = " $$ "

_STR = tf.TensorSpec([], tf.string)
_STRS = tf.TensorSpec([None], tf.string)
_INT = tf.TensorSpec([], tf.int64)

# Canonical raw schema of each format family: what every source of that family yields.
SCHEMAS: dict[str, dict[str, tf.TensorSpec]] = {
    "nli": {"premise": _STR, "hypothesis": _STR, "label": _STR},
    "pair": {"question1": _STR, "question2": _STR, "label": _STR},
    "qa": {"id": _STR, "question": _STR, "context": _STR, "answers": _STRS},
    "tags": {"tokens": _STRS, "tags": _STRS},
    "choice": {"id": _STR, "context": _STR, "question": _STR, "choices": _STRS, "label": _INT},
    "retrieval": {"query_id": _STR, "query": _STR, "candidate_id": _STR, "candidate": _STR,
                  "gold_ids": _STRS},
}


# ----------------------------------------------------------------------------- text helpers

def pad_punctuation(text: str) -> str:
    """mT5/T5 QA convention: spaces around punctuation; letters, marks, digits kept intact.

    The rule lives in `metrics.qa_spans`, which also maps padded answers back to raw text."""
    return qa_spans.pad_punctuation(text)


def iob2_spans(tokens: Sequence[str], tags: Sequence[str]) -> list[tuple[str, str]]:
    """(type, surface) entity spans in order of appearance from IOB2 (or IO) tags."""
    if len(tokens) != len(tags):
        raise ValueError(f"tokens/tags length mismatch: {len(tokens)} tokens, {len(tags)} "
                         f"tags in {list(tokens)[:8]}...")
    spans: list[tuple[str, list[str]]] = []
    prev = "O"
    for tok, tag in zip(tokens, tags):
        if tag == "O" or not tag:
            prev = "O"
            continue
        prefix, _, etype = tag.partition("-")
        if prefix not in ("B", "I") or not etype:
            raise ValueError(f"tag {tag!r} is not IOB2 (expected O, B-TYPE or I-TYPE)")
        if prefix == "B" or prev == "O" or prev.partition("-")[2] != etype:
            spans.append((etype, [tok]))
        else:
            spans[-1][1].append(tok)
        prev = tag
    return [(etype, " ".join(words)) for etype, words in spans]


# ----------------------------------------------------------------------------- formatters
# Each takes a canonical raw example (Python str / list[str] / int) and returns (inputs, targets).

def format_nli(ex: Mapping[str, Any]) -> tuple[str, str]:
    return f"xnli: premise: {ex['premise']} hypothesis: {ex['hypothesis']}", ex["label"]


def format_qqp(ex: Mapping[str, Any]) -> tuple[str, str]:
    return f"qqp: question1: {ex['question1']} question2: {ex['question2']}", ex["label"]


def format_qa(ex: Mapping[str, Any]) -> tuple[str, str]:
    answers = ex["answers"]
    target = pad_punctuation(answers[0]) if answers else NO_ANSWER
    question, context = pad_punctuation(ex["question"]), pad_punctuation(ex["context"])
    return f"question: {question} context: {context}", target


def format_ner(ex: Mapping[str, Any]) -> tuple[str, str]:
    spans = iob2_spans(ex["tokens"], ex["tags"])
    return "tag: " + " ".join(ex["tokens"]), NER_SEPARATOR.join(f"{t}: {s}" for t, s in spans)


def _tagging(prefix: str) -> Callable[[Mapping[str, Any]], tuple[str, str]]:
    def fmt(ex: Mapping[str, Any]) -> tuple[str, str]:
        tokens, tags = ex["tokens"], ex["tags"]
        if len(tokens) != len(tags):
            raise ValueError(f"{prefix}: {len(tokens)} tokens but {len(tags)} tags")
        return f"{prefix}: " + " ".join(tokens), " ".join(tags)
    fmt.__name__ = f"format_{prefix}"
    return fmt


format_pos = _tagging("pos")
format_ccg = _tagging("ccg")


def choice_inputs(prefix: str, ex: Mapping[str, Any]) -> str:
    parts = [f"{prefix}:"]
    if ex["context"]:
        parts.append(f"context: {ex['context']}")
    if ex["question"]:
        parts.append(f"question: {ex['question']}")
    parts += [f"choice{i + 1}: {c}" for i, c in enumerate(ex["choices"])]
    return " ".join(parts)


def _choice(prefix: str) -> Callable[[Mapping[str, Any]], tuple[str, str]]:
    def fmt(ex: Mapping[str, Any]) -> tuple[str, str]:
        label, choices = int(ex["label"]), ex["choices"]
        if not 0 <= label < len(choices):
            raise ValueError(f"{prefix}: label {label} outside 0..{len(choices) - 1} "
                             f"for example {ex['id']!r}")
        return choice_inputs(prefix, ex), choices[label]
    fmt.__name__ = f"format_choice_{prefix}"
    return fmt


def format_retrieval(ex: Mapping[str, Any]) -> tuple[str, str]:
    return ex["query"], ex["candidate"]


@dataclasses.dataclass(frozen=True)
class Format:
    """One text-to-text format: its raw schema family and its Python formatter."""
    name: str
    family: str
    fn: Callable[[Mapping[str, Any]], tuple[str, str]]


FORMATS: dict[str, Format] = {
    f.name: f for f in [
        Format("nli", "nli", format_nli),
        Format("qqp", "pair", format_qqp),
        Format("qa", "qa", format_qa),
        Format("ner", "tags", format_ner),
        Format("pos", "tags", format_pos),
        Format("ccg", "tags", format_ccg),
        Format("retrieval", "retrieval", format_retrieval),
        *[Format(f"choice_{p}", "choice", _choice(p))
          for p in ("xcopa", "siqa", "hellaswag", "cosmos_qa", "commonsense_qa")],
    ]
}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; expected one of {sorted(FORMATS)}")
    return FORMATS[name]


# ----------------------------------------------------------------------------- tf.data glue

def _to_py(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [v.decode("utf-8") for v in value.tolist()]
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def format_preprocessor(fmt_name: str) -> Callable[[tf.data.Dataset], tf.data.Dataset]:
    """A seqio preprocessor adding `inputs`/`targets` strings; raw fields are kept."""
    fmt = get_format(fmt_name)
    keys = tuple(SCHEMAS[fmt.family])

    def py_fn(*values: Any) -> tuple[bytes, bytes]:
        inputs, targets = fmt.fn(dict(zip(keys, (_to_py(v) for v in values))))
        return inputs.encode("utf-8"), targets.encode("utf-8")

    def map_fn(ex: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        inputs, targets = tf.numpy_function(py_fn, [ex[k] for k in keys], [tf.string, tf.string],
                                            stateful=False)
        out = dict(ex)
        out["inputs"] = tf.ensure_shape(inputs, [])
        out["targets"] = tf.ensure_shape(targets, [])
        return out

    def preprocess(ds: tf.data.Dataset) -> tf.data.Dataset:
        return ds.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE)

    preprocess.__name__ = f"format_{fmt_name}"
    return preprocess


# ----------------------------------------------------------------------------- rank classification

def rank_classification(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Expand a formatted `choice` example into one example per choice (scored by likelihood).

    Each output keeps the shared `inputs`, takes one choice as `targets`, and carries
    `idx` = [example index, choice index] and `is_correct` for
    `metrics.classification.rank_classification_accuracy`.
    """
    ds = ds.enumerate()

    def expand(index: tf.Tensor, ex: Mapping[str, tf.Tensor]) -> tf.data.Dataset:
        choices = ex["choices"]
        n = tf.shape(choices, out_type=tf.int64)[0]
        return tf.data.Dataset.from_tensor_slices({
            "inputs": tf.fill([n], ex["inputs"]),
            "targets": choices,
            "idx": tf.stack([tf.fill([n], index), tf.range(n)], axis=1),
            "is_correct": tf.equal(tf.range(n), ex["label"]),
        })

    return ds.flat_map(expand)


def rank_postprocess(output: Any, example: Mapping[str, Any] | None = None,
                     is_target: bool = False) -> Any:
    """Targets become (example index, is_correct) so scores can be grouped per example."""
    if is_target and example is not None:
        idx = np.asarray(example["idx"]).tolist()
        return int(idx[0]), bool(example["is_correct"])
    return output


# ----------------------------------------------------------------------------- postprocessing

def strings(value: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in list(value)]


def qa_postprocess(output: Any, example: Mapping[str, Any] | None = None,
                   is_target: bool = False) -> Any:
    """Targets keep every gold answer (punctuation-padded like the target) for EM/F1."""
    if is_target and example is not None:
        answers = [pad_punctuation(a) for a in strings(example["answers"])]
        return answers or [NO_ANSWER]
    return output


def tagging_postprocess(output: Any, example: Mapping[str, Any] | None = None,
                        is_target: bool = False) -> dict[str, Any]:
    """Both sides carry the input tokens and gold tags so metrics can map output onto tokens.

    Returns {"text": decoded string, "tokens": [...], "tags": [...]}; for targets `text` is the
    target string.
    """
    if example is None:
        return {"text": output, "tokens": [], "tags": []}
    return {"text": output, "tokens": strings(example["tokens"]),
            "tags": strings(example["tags"])}


def output_features(vocabulary: seqio.Vocabulary | None = None) -> dict[str, seqio.Feature]:
    """`inputs`/`targets` with EOS, in the project vocabulary (xitt_tasks.vocab, $XITT_VOCAB)."""
    if vocabulary is None:
        from xitt_tasks.vocab import get_vocabulary
        vocabulary = get_vocabulary()
    return {
        "inputs": seqio.Feature(vocabulary, add_eos=True),
        "targets": seqio.Feature(vocabulary, add_eos=True),
    }


# ----------------------------------------------------------------------------- task assembly

def task_preprocessors(fmt_name: str, rank: bool = False) -> list[Callable[..., Any]]:
    """format -> (rank expansion) -> tokenize -> [cache] -> append EOS (trimming to the feature
    length). Everything before the placeholder is what `seqio.scripts.cache_tasks_main` caches
    offline (Apache Beam); EOS and trimming depend on the run's lengths and stay online."""
    steps: list[Callable[..., Any]] = [format_preprocessor(fmt_name)]
    if rank:
        steps.append(rank_classification)
    return steps + [seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                    seqio.preprocessors.append_eos_after_trim]


def add_task(name: str, source: seqio.DataSource, fmt_name: str, *,
             postprocess_fn: Callable[..., Any] | None = None,
             metric_fns: Sequence[Callable[..., Any]] = (), rank: bool = False) -> seqio.Task:
    """Register `name` the usual seqio way with this project's preprocessors and features.

    Re-registering a name replaces it, so reloading a task module is harmless.
    """
    seqio.TaskRegistry.remove(name)
    return seqio.TaskRegistry.add(
        name, source=source, output_features=output_features(),
        preprocessors=task_preprocessors(fmt_name, rank=rank),
        postprocess_fn=postprocess_fn, metric_fns=list(metric_fns),
        task_cls=SelfRepeatingTask)


def add_choice_tasks(name: str, source: seqio.DataSource, fmt_name: str) -> None:
    """A multiple-choice task twice: `name` generates the answer text (accuracy on strings);
    `name.rank` scores every choice by likelihood (evaluation only; a seqio score metric)."""
    add_task(name, source, fmt_name, metric_fns=[classification.accuracy])
    add_task(name + ".rank", source, fmt_name, rank=True, postprocess_fn=rank_postprocess,
             metric_fns=[classification.rank_classification_accuracy])


def register_target_mixtures(target: str, train_tasks: Sequence[str]) -> None:
    """`xitt.<target>.all_langs` (every evaluation language, equal rates) and, when the target
    has English training tasks, `xitt.<target>.zeroshot` (those plus all languages)."""
    from xitt_tasks.languages import languages
    evals = [f"xitt.{target}.{lang}" for lang in languages(target)]
    for name, members in ((f"xitt.{target}.all_langs", evals),
                          (f"xitt.{target}.zeroshot", [*train_tasks, *evals])):
        if name.endswith("zeroshot") and not train_tasks:
            continue
        seqio.MixtureRegistry.remove(name)
        seqio.MixtureRegistry.add(name, members, default_rate=1.0)
