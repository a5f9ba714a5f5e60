"""SQuAD v1.1 and v2.0 exact match and F1, as the official scripts print them.

v1.1 (`evaluate-v1.1.py`, also XTREME's `third_party/evaluate_squad.py`, used for SQuAD, XQuAD
and TyDiQA-GoldP): normalise = lowercase, drop `string.punctuation`, replace the words
a/an/the by a space, collapse whitespace; F1 is 0 when no token is shared (so two empty
answers get EM 1 but F1 0); each prediction takes its best score over the gold answers;
score = 100 * sum / count.

v2.0 (`evaluate-v2.0.py`): same normalisation, but gold answers that normalise to nothing are
dropped and an example left with none is a no-answer example whose only gold is ''; F1 is 1
when both token lists are empty and 0 when only one is. It also prints the HasAns / NoAns
breakdowns, returned here as `has_ans_*` / `no_ans_*`.

Raw and padded text (v1.1 rules, also MLQA): the QA target tasks train on punctuation-padded
text (`qa_spans.pad_punctuation`) but the official scorers compare raw strings. Their
postprocessor (`targets_qa.qa_postprocess`) hands over dicts: targets
`{'answers': [raw golds], 'answers_padded': [padded golds]}`, predictions
`{'text': generated padded text, 'answer': raw span of the context}` (`qa_spans.answer_span`).
Then `exact_match`/`f1` are the raw-string numbers (the official ones) and
`exact_match_padded`/`f1_padded` the padded-text ones. Plain strings and lists score as given
(no `*_padded` keys).
"""

import collections
import re
import string
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from xitt_tasks.metrics._text import check_lengths, to_text, to_text_list

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """The SQuAD normalisation (identical in v1.1 and v2.0)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    """Bag-of-tokens F1 in [0, 1]; 0 when nothing is shared (v1.1 / MLQA convention)."""
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def gold_answers(target: Any, what: str) -> list[str]:
    """Gold answers of one example from the shapes TASKS may hand over.

    Accepted: a string (one answer); a list of strings; a dict with `answers` holding a list of
    strings, a list of `{'text': ...}` dicts, or a TFDS-style `{'text': [...]}` dict.
    """
    if isinstance(target, dict):
        if "answers" not in target:
            raise ValueError(f"{what}: dict target has no 'answers' field (keys {sorted(target)})")
        answers = target["answers"]
        if isinstance(answers, dict):
            if "text" not in answers:
                raise ValueError(f"{what}['answers']: dict has no 'text' field")
            return to_text_list(answers["text"], f"{what}['answers']['text']")
        if isinstance(answers, (list, tuple)) and answers and isinstance(answers[0], dict):
            return [to_text(a["text"], f"{what}['answers'][{i}]['text']")
                    for i, a in enumerate(answers)]
        return to_text_list(answers, f"{what}['answers']")
    if isinstance(target, (str, bytes, np.bytes_)):
        return [to_text(target, what)]
    return to_text_list(target, what)


def _best(score: Callable[[str, str], float], pred: str, golds: list[str]) -> float:
    return max(score(pred, gold) for gold in golds)


def squad_v1_em_f1(
    targets: Sequence[Any],
    predictions: Sequence[Any],
    normalize: Callable[[str], str] = normalize_answer,
    metric: str = "squad_v1",
) -> dict[str, float]:
    """EM and F1 (percent) with the SQuAD v1.1 rules and a given normalisation."""
    check_lengths(targets, predictions, metric)

    def em(pred: str, gold: str) -> float:
        return float(normalize(pred) == normalize(gold))

    def f1(pred: str, gold: str) -> float:
        return token_f1(normalize(pred).split(), normalize(gold).split())

    sums = collections.Counter()
    padded = [_is_padded_pair(t, p, f"{metric}: [{i}]")
              for i, (t, p) in enumerate(zip(targets, predictions))]
    if any(padded) and not all(padded):
        raise ValueError(f"{metric}: example {padded.index(not padded[0])} mixes raw/padded "
                         "dicts with plain answers; expected one shape for all examples")
    for i, (target, prediction) in enumerate(zip(targets, predictions)):
        golds = gold_answers(target, f"{metric}: targets[{i}]")
        if not golds:
            raise ValueError(f"{metric}: targets[{i}] has no gold answer; v1.1 needs one")
        pred = prediction_text(prediction, "answer", f"{metric}: predictions[{i}]")
        sums["exact_match"] += _best(em, pred, golds)
        sums["f1"] += _best(f1, pred, golds)
        if padded[0]:
            golds = to_text_list(target["answers_padded"], f"{metric}: targets[{i}]")
            pred = prediction_text(prediction, "text", f"{metric}: predictions[{i}]")
            sums["exact_match_padded"] += _best(em, pred, golds)
            sums["f1_padded"] += _best(f1, pred, golds)
    keys = ["exact_match", "f1"] + (["exact_match_padded", "f1_padded"] if padded[0] else [])
    return {k: 100.0 * sums[k] / len(targets) for k in keys}


def _is_padded_pair(target: Any, prediction: Any, what: str) -> bool:
    """True for the raw/padded dict shapes of the module docstring (both sides or neither)."""
    t = isinstance(target, dict) and "answers_padded" in target
    p = isinstance(prediction, dict)
    if t != p:
        raise ValueError(f"{what}: target is {type(target).__name__} with keys "
                         f"{sorted(target) if isinstance(target, dict) else '-'} but prediction "
                         f"is {type(prediction).__name__}; expected raw/padded dicts on both "
                         "sides or plain answers on both")
    return t


def prediction_text(prediction: Any, key: str, what: str) -> str:
    """A plain prediction string, or field `key` ('answer' raw, 'text' padded) of a dict."""
    if isinstance(prediction, dict):
        if key not in prediction:
            raise ValueError(f"{what}: prediction dict has no {key!r} field "
                             f"(keys {sorted(prediction)})")
        prediction = prediction[key]
    return to_text(prediction, what)


def squad_v1(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
    """seqio metric: SQuAD v1.1 (also XQuAD and TyDiQA-GoldP, as XTREME scores them)."""
    return squad_v1_em_f1(targets, predictions)


def _v2_f1(pred: str, gold: str) -> float:
    gold_toks = normalize_answer(gold).split() if gold else []
    pred_toks = normalize_answer(pred).split() if pred else []
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    return token_f1(pred_toks, gold_toks)


def _v2_em(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def squad_v2_metrics(no_answer: str | None = None) -> Callable[..., dict[str, float]]:
    """seqio metric for SQuAD v2.0.

    `no_answer` is the string the task trains the model to emit for an unanswerable question
    (for example 'no answer'): a prediction or gold equal to it (after stripping) means ''.
    Targets of unanswerable examples may be an empty list, [''] or [no_answer].
    """

    def squad_v2(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
        check_lengths(targets, predictions, "squad_v2")
        exact: list[float] = []
        f1: list[float] = []
        has_ans: list[bool] = []
        for i, (target, prediction) in enumerate(zip(targets, predictions)):
            raw = gold_answers(target, f"squad_v2: targets[{i}]")
            golds = [g for g in raw if (no_answer is None or g.strip() != no_answer)
                     and normalize_answer(g)]
            has_ans.append(bool(golds))
            golds = golds or [""]
            pred = to_text(prediction, f"squad_v2: predictions[{i}]")
            if no_answer is not None and pred.strip() == no_answer:
                pred = ""
            exact.append(_best(_v2_em, pred, golds))
            f1.append(_best(_v2_f1, pred, golds))
        out = {"exact_match": 100.0 * sum(exact) / len(exact), "f1": 100.0 * sum(f1) / len(f1)}
        for name, keep in (("has_ans", True), ("no_ans", False)):
            idx = [j for j, h in enumerate(has_ans) if h == keep]
            if idx:
                out[f"{name}_exact_match"] = 100.0 * sum(exact[j] for j in idx) / len(idx)
                out[f"{name}_f1"] = 100.0 * sum(f1[j] for j in idx) / len(idx)
        return out

    return squad_v2
