"""Per-example scores behind each reported number, for the study's intervals (item-level
variance, translated items grouped).

A metric whose corpus value is the mean of a per-example value (accuracy, SQuAD/MLQA F1 and
EM, mAP@20, Tatoeba accuracy) is scored by applying the task's own metric function to each
example alone, so the mean equals the official number by construction (and is checked).
seqeval F1 (UD-POS, WikiANN) is a micro F1: per sentence we keep (correct, predicted, gold)
chunk counts, and 100 * 2 * sum(correct) / (sum(predicted) + sum(gold)) is the official number.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# target -> the metrics reported (names as the task's metric functions return them)
MAIN_METRICS: dict[str, tuple[str, ...]] = {
    "xnli": ("accuracy",), "xcopa": ("accuracy",), "udpos": ("f1",), "wikiann": ("f1",),
    "xquad": ("f1", "exact_match"), "mlqa": ("f1", "exact_match"),
    "tydiqa": ("f1", "exact_match"), "mewslix": ("map@20",), "lareqa": ("map@20",),
    "tatoeba": ("accuracy",),
}
F1_COUNT_TARGETS = ("udpos", "wikiann")
AGGREGATIONS = ("mean", "f1_counts")


def mean_scores(metric_fn: Callable[[Sequence[Any], Sequence[Any]], dict[str, float]],
                targets: Sequence[Any], outputs: Sequence[Any], metric: str) -> np.ndarray:
    """[n] per-example values of a mean-aggregated metric."""
    return np.asarray([float(metric_fn([t], [o])[metric]) for t, o in zip(targets, outputs)],
                      np.float64)


def _chunks(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    from xitt_tasks.metrics import tagging

    return set(tagging.get_entities([*tags, "O"]))


def f1_counts(target: str, targets: Sequence[Any], outputs: Sequence[Any]) -> np.ndarray:
    """[n, 3] (correct, predicted, gold) chunks per sentence, as xitt_tasks' seqeval F1."""
    from xitt_tasks.metrics import tagging

    rows = []
    for i, (t, o) in enumerate(zip(targets, outputs)):
        tokens, gold = tagging.gold_tokens_and_tags(t, f"{target}[{i}]")
        text = tagging.output_text(o, f"{target}[{i}]")
        if target == "wikiann":
            spans, _ = tagging.parse_spans(text, tagging.NER_TYPES)
            pred, _ = tagging.spans_to_tags(tokens, spans)
        else:
            pred, _ = tagging.align_tags(text, len(gold), tagging.UPOS_TAGS)
        g, p = _chunks(gold), _chunks(pred)
        rows.append((len(g & p), len(p), len(g)))
    return np.asarray(rows, np.float64).reshape(-1, 3)


def f1_from_counts(counts: np.ndarray) -> float:
    c, p, g = counts.sum(axis=0)
    return 100.0 * 2 * c / (p + g) if p + g else 0.0


def aggregate(scores: np.ndarray, aggregation: str) -> float:
    """The corpus number the per-example scores stand for."""
    if aggregation == "f1_counts":
        return f1_from_counts(scores)
    if aggregation == "mean":
        return float(np.mean(scores)) if len(scores) else 0.0
    raise ValueError(f"aggregation {aggregation!r}: expected one of {AGGREGATIONS}")


def per_example(target: str, metric: str, metric_fn: Callable[..., dict[str, float]],
                targets: Sequence[Any], outputs: Sequence[Any]) -> tuple[np.ndarray, str]:
    """(scores, aggregation) of one metric of one language."""
    if target in F1_COUNT_TARGETS:
        return f1_counts(target, targets, outputs), "f1_counts"
    return mean_scores(metric_fn, targets, outputs, metric), "mean"
