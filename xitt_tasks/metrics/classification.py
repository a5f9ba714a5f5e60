"""Accuracy for the classification tasks (XNLI, XCOPA, MNLI, QQP, multiple choice).

The number equals `accuracy` of the XTREME repository's `evaluate.py`: labels compared as
whitespace-stripped strings, `correct / n * 100`.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from xitt_tasks.metrics._text import check_lengths, to_text


def _label(value: Any, what: str) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    return to_text(value, what).strip()


def accuracy(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
    """Percent of predictions equal to their label (stripped strings; integers as digits)."""
    check_lengths(targets, predictions, "accuracy")
    correct = 0
    for i, (t, p) in enumerate(zip(targets, predictions)):
        gold = _label(t, f"accuracy: targets[{i}]")
        pred = _label(p, f"accuracy: predictions[{i}]")
        correct += int(gold == pred)
    return {"accuracy": float(correct) / len(targets) * 100}


def rank_classification_accuracy(
    targets: Sequence[Any], scores: Sequence[float]
) -> dict[str, float]:
    """Accuracy when each choice of an example is scored separately (a seqio score metric).

    `targets[i]` is `(example_id, is_correct)` for scored row `i` (one row per choice, as the
    rank-classification convention of t5 produces) and `scores[i]` its log-likelihood. An
    example counts as correct when its highest-scoring choice is a correct one; ties go to the
    earliest row, so a constant scorer never gets credit by luck of the tie-break alone.
    """
    check_lengths(targets, scores, "rank_classification_accuracy")
    best: dict[Any, tuple[float, bool]] = {}
    for i, (target, score) in enumerate(zip(targets, scores)):
        try:
            example_id, is_correct = target
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"rank_classification_accuracy: targets[{i}]={target!r:.80} is not an "
                "(example_id, is_correct) pair") from e
        if isinstance(example_id, np.ndarray):
            example_id = tuple(example_id.tolist())
        score = float(score)
        if np.isnan(score):
            raise ValueError(f"rank_classification_accuracy: scores[{i}] is NaN")
        if example_id not in best or score > best[example_id][0]:
            best[example_id] = (score, bool(is_correct))
    correct = sum(int(ok) for _, ok in best.values())
    return {"accuracy": float(correct) / len(best) * 100}
