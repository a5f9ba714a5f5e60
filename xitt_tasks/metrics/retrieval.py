"""Retrieval metrics of XTREME-R: mAP@20 (LAReQA, Mewsli-X) and Tatoeba accuracy.

LAReQA (XTREME `third_party/utils_lareqa.py`, `average_precision_at_k`): over the top k of the
ranking, each gold id at rank r (1-based, first occurrence only) adds hits_so_far / r; the sum
is divided by min(number of golds, k), so golds that cannot fit in the top k do not count
against the query; mAP is the mean over queries.

Mewsli-X (XTREME `third_party/utils_mewslix.py`, `evaluate`, printed as "MRR/MAP@20"): each
mention has ONE gold entity, the first of its label list (stripped); the score is the
reciprocal rank of that entity within the top 20, 0 when absent; mean over mentions. With
one gold this equals AP@20 above.

Tatoeba (XTREME `evaluate.py`, `accuracy`): percent of source sentences whose predicted
index (of the English line) equals the gold index.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from xitt_tasks.metrics._text import check_lengths, to_text

TOP_K = 20


def _ids(value: Any, what: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{what}: expected a list of ids, got {type(value).__name__} "
                        f"({value!r:.80})")
    return [to_text(v, what) if isinstance(v, (bytes, np.bytes_)) else
            v.item() if isinstance(v, np.generic) else v for v in value]


def average_precision_at_k(golds: Sequence[Any], ranking: Sequence[Any], k: int = TOP_K) -> float:
    """AP@k in [0, 1] of one ranked id list (LAReQA definition)."""
    if not golds:
        raise ValueError("average_precision_at_k: no gold ids; AP is undefined")
    gold_set = set(golds)
    seen: set[Any] = set()
    hits, score = 0, 0.0
    for rank, item in enumerate(ranking[:k], start=1):
        if item in gold_set and item not in seen:
            hits += 1
            score += hits / rank
        seen.add(item)
    return score / min(len(gold_set), k)


def map_at_k(k: int = TOP_K):
    """seqio metric factory: mean AP@k (percent); targets gold id lists, predictions rankings."""
    if k < 1:
        raise ValueError(f"map_at_k: k={k}; expected k >= 1")

    def mean_average_precision(targets: Sequence[Any], predictions: Sequence[Any]
                               ) -> dict[str, float]:
        check_lengths(targets, predictions, f"map@{k}")
        scores = [average_precision_at_k(_ids(t, f"map@{k}: targets[{i}]"),
                                          _ids(p, f"map@{k}: predictions[{i}]"), k)
                  for i, (t, p) in enumerate(zip(targets, predictions))]
        return {f"map@{k}": float(np.mean(scores)) * 100}

    mean_average_precision.__name__ = f"map_at_{k}"
    return mean_average_precision


lareqa_map_at_20 = map_at_k(TOP_K)


def mewslix_map_at_20(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
    """seqio metric: Mewsli-X MRR@20 over the first gold id (the official "MAP@20")."""
    check_lengths(targets, predictions, "mewslix_map@20")
    total = 0.0
    for i, (target, prediction) in enumerate(zip(targets, predictions)):
        golds = _ids(target, f"mewslix_map@20: targets[{i}]")
        if not golds:
            raise ValueError(f"mewslix_map@20: targets[{i}] has no gold entity id")
        gold = golds[0].strip() if isinstance(golds[0], str) else golds[0]
        ranking = _ids(prediction, f"mewslix_map@20: predictions[{i}]")[:TOP_K]
        total += next((1.0 / r for r, p in enumerate(ranking, start=1) if p == gold), 0.0)
    return {"map@20": total / len(targets) * 100}


def _index(value: Any, what: str) -> int:
    if isinstance(value, (str, bytes, np.bytes_)):
        text = to_text(value, what).strip()
        try:
            return int(text)
        except ValueError as e:
            raise ValueError(f"{what}: {text!r} is not an integer line index") from e
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise TypeError(f"{what}: expected an integer index, got {type(value).__name__}")


def tatoeba_accuracy(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
    """seqio metric: percent of predicted English-line indices equal to the gold index."""
    check_lengths(targets, predictions, "tatoeba_accuracy")
    correct = sum(int(_index(t, f"tatoeba_accuracy: targets[{i}]")
                      == _index(p, f"tatoeba_accuracy: predictions[{i}]"))
                  for i, (t, p) in enumerate(zip(targets, predictions)))
    return {"accuracy": float(correct) / len(targets) * 100}
