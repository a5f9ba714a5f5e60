"""Token-tagging metrics: WikiANN NER and UD-POS as XTREME scores them (seqeval), CCG accuracy.

XTREME's `evaluate.py` (and `third_party/run_tag.py`) score both `panx` and `udpos` with
`seqeval.metrics.f1_score(labels, predictions)`: default (non-strict) mode, prefix scheme,
micro average over the chunks of all sentences of a language. `get_entities` below re-implements
seqeval 1.2.2's chunking (no runtime dependency on seqeval). Consequence for UD-POS, whose
tags carry no B-/I- prefix: seqeval reads the first letter as the chunk tag and the rest as the
type ('NOUN' -> tag 'N', type 'OUN'), so the "F1" is over maximal runs of equal tags, except
that tags starting with 'S' (SCONJ, SYM) are singletons, CCONJ and SCONJ share the type 'CONJ'
(a CCONJ run followed by SCONJ is lost), and an 'X' run that ends a sentence is dropped ('X'
has type '_', as the 'O' sentence separator does). That is the number the official scorer
prints with seqeval 1.2.2, so it is the number reported here. XTREME does not pin seqeval; the
0.0.x releases took the whole tag as the type of an unprefixed tag (so CCONJ/SCONJ differ and a
final X counts): POS figures can differ slightly across seqeval versions, IOB2 NER figures not.

Generated outputs are turned into one tag per input token first:
- NER (mT5 convention): `TYPE: surface $$ TYPE: surface`, '' when there is no entity. Chunks
  are split on '$$' and each on its first ':'. A chunk is malformed, ignored and counted
  (`num_malformed_chunks`) when it is empty, has no ':', an unknown type, or an empty surface.
  A well-formed chunk's surface is whitespace-split and matched, in order of the chunks,
  against the earliest run of input tokens none of which an earlier chunk took: first
  case-sensitively, then, only if that fails, with `str.casefold`. Its tokens become
  B-TYPE, I-TYPE, ...; a chunk that matches nowhere is ignored and counted
  (`num_unmatched_spans`). Tokens no chunk covers are 'O'.
- UD-POS / CCG: space-separated tags, one per input token. Extra tags are dropped; missing
  ones are filled with `MISSING_TAG`, and predicted tags outside the label set are replaced by
  `INVALID_TAG`: neither is ever a gold tag, so those tokens are always wrong. The counts are
  returned (`num_missing_tags`, `num_extra_tags`, `num_invalid_tags`).
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from xitt_tasks.metrics._text import check_lengths, to_text, to_text_list

NER_TYPES = ("PER", "ORG", "LOC")
UPOS_TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
             "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")
MISSING_TAG = "<missing>"
INVALID_TAG = "<invalid>"
SPAN_SEPARATOR = "$$"

_END_AFTER = frozenset({("B", "B"), ("B", "S"), ("B", "O"), ("I", "B"), ("I", "S"), ("I", "O")})
_START_AT = frozenset({("E", "E"), ("E", "I"), ("S", "E"), ("S", "I"), ("O", "E"), ("O", "I")})


# ---------------------------------------------------------------- seqeval 1.2.2 semantics


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks `(type, first, last)` of one tag sequence, as seqeval 1.2.2 (prefix mode)."""
    chunks = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, label in enumerate([*tags, "O"]):
        if not label:
            raise ValueError(f"get_entities: tag {i} is empty; expected a non-empty string")
        tag, type_ = label[0], label[1:].split("-", 1)[-1] or "_"
        ends = (prev_tag in ("E", "S") or (prev_tag, tag) in _END_AFTER
                or (prev_tag not in ("O", ".") and prev_type != type_))
        if ends:
            chunks.append((prev_type, begin, i - 1))
        starts = (tag in ("B", "S") or (prev_tag, tag) in _START_AT
                  or (tag not in ("O", ".") and prev_type != type_))
        if starts:
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def seqeval_scores(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]
) -> dict[str, float]:
    """Micro precision / recall / F1 (percent) of seqeval's default mode over sentences."""
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"seqeval_scores: sentence {i} has {len(g)} gold tags but "
                             f"{len(p)} predicted tags; expected equal lengths")
    flat_gold = [t for sent in gold for t in (*sent, "O")]
    flat_pred = [t for sent in pred for t in (*sent, "O")]
    true_set, pred_set = set(get_entities(flat_gold)), set(get_entities(flat_pred))
    tp = len(true_set & pred_set)
    precision = tp / len(pred_set) if pred_set else 0.0
    recall = tp / len(true_set) if true_set else 0.0
    denom = precision + recall
    f1 = 2 * precision * recall / denom if denom else 0.0
    return {"f1": f1 * 100, "precision": precision * 100, "recall": recall * 100}


# ---------------------------------------------------------------- inputs


def gold_tokens_and_tags(target: Any, what: str) -> tuple[list[str], list[str]]:
    """(tokens, tags) of a `{'tokens': [...], 'tags': [...]}` target."""
    if not isinstance(target, dict) or "tokens" not in target or "tags" not in target:
        raise ValueError(f"{what}: expected a dict with 'tokens' and 'tags', got "
                         f"{type(target).__name__} ({target!r:.80})")
    tokens = to_text_list(target["tokens"], f"{what}['tokens']")
    tags = to_text_list(target["tags"], f"{what}['tags']")
    if len(tokens) != len(tags):
        raise ValueError(f"{what}: {len(tokens)} tokens but {len(tags)} tags; expected one "
                         "tag per token")
    return tokens, tags


def output_text(prediction: Any, what: str) -> str:
    """The generated string: a str/bytes, or the `text` of a postprocessed dict."""
    if isinstance(prediction, dict):
        if "text" not in prediction:
            raise ValueError(f"{what}: dict prediction has no 'text' field "
                             f"(keys {sorted(prediction)})")
        prediction = prediction["text"]
    return to_text(prediction, what)


def _gold_tags(target: Any, what: str) -> list[str]:
    if isinstance(target, dict):
        return gold_tokens_and_tags(target, what)[1]
    return to_text_list(target, what)


# ---------------------------------------------------------------- NER spans -> tags


def parse_spans(
    prediction: str, types: Iterable[str] = NER_TYPES
) -> tuple[list[tuple[str, list[str]]], int]:
    """Well-formed `(type, surface words)` chunks of a generated string; malformed count."""
    allowed = set(types)
    spans: list[tuple[str, list[str]]] = []
    malformed = 0
    if not prediction.strip():
        return spans, malformed
    for chunk in prediction.split(SPAN_SEPARATOR):
        type_, sep, surface = chunk.strip().partition(":")
        words = surface.split()
        if not sep or type_.strip() not in allowed or not words:
            malformed += 1
            continue
        spans.append((type_.strip(), words))
    return spans, malformed


def _find(tokens: list[str], used: list[bool], words: list[str], fold: bool) -> int:
    n = len(words)
    if fold:
        tokens, words = [t.casefold() for t in tokens], [w.casefold() for w in words]
    for start in range(len(tokens) - n + 1):
        if tokens[start:start + n] == words and not any(used[start:start + n]):
            return start
    return -1


def spans_to_tags(tokens: Sequence[str], spans: Sequence[tuple[str, list[str]]]) -> tuple[
        list[str], int]:
    """IOB2 tags for `tokens` from matched spans, and the number of spans matched nowhere."""
    tokens = list(tokens)
    tags = ["O"] * len(tokens)
    used = [False] * len(tokens)
    unmatched = 0
    for type_, words in spans:
        start = _find(tokens, used, words, fold=False)
        if start < 0:
            start = _find(tokens, used, words, fold=True)
        if start < 0:
            unmatched += 1
            continue
        for k in range(len(words)):
            tags[start + k] = ("B-" if k == 0 else "I-") + type_
            used[start + k] = True
    return tags, unmatched


def ner_metrics(types: Sequence[str] = NER_TYPES) -> Callable[..., dict[str, float]]:
    """seqio metric: seqeval F1 of generated `TYPE: surface $$ ...` against gold IOB2 tags.

    Targets: `{'tokens': [...], 'tags': [...]}` per example (other keys ignored); predictions:
    generated strings, or dicts whose `text` is one (what `formats.tagging_postprocess` gives).
    """
    types = tuple(types)

    def ner_f1(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
        check_lengths(targets, predictions, "ner_f1")
        gold, pred = [], []
        malformed = unmatched = 0
        for i, (target, prediction) in enumerate(zip(targets, predictions)):
            tokens, tags = gold_tokens_and_tags(target, f"ner_f1: targets[{i}]")
            spans, bad = parse_spans(output_text(prediction, f"ner_f1: predictions[{i}]"), types)
            pred_tags, missed = spans_to_tags(tokens, spans)
            gold.append(tags)
            pred.append(pred_tags)
            malformed += bad
            unmatched += missed
        out = seqeval_scores(gold, pred)
        out["num_malformed_chunks"] = float(malformed)
        out["num_unmatched_spans"] = float(unmatched)
        return out

    return ner_f1


# ---------------------------------------------------------------- one tag per token


def align_tags(
    prediction: str, length: int, labels: Iterable[str] | None = None
) -> tuple[list[str], dict[str, int]]:
    """`length` tags from a space-separated prediction: truncate, pad, replace unknown tags."""
    tags = prediction.split()
    counts = {"missing": max(0, length - len(tags)), "extra": max(0, len(tags) - length),
              "invalid": 0}
    tags = tags[:length] + [MISSING_TAG] * counts["missing"]
    if labels is not None:
        allowed = set(labels)
        for k, tag in enumerate(tags):
            if tag != MISSING_TAG and tag not in allowed:
                tags[k] = INVALID_TAG
                counts["invalid"] += 1
    return tags, counts


def _aligned(targets: Sequence[Any], predictions: Sequence[Any], labels: Iterable[str] | None,
             metric: str) -> tuple[list[list[str]], list[list[str]], dict[str, float]]:
    check_lengths(targets, predictions, metric)
    gold, pred = [], []
    totals = {"missing": 0, "extra": 0, "invalid": 0}
    for i, (target, prediction) in enumerate(zip(targets, predictions)):
        tags = _gold_tags(target, f"{metric}: targets[{i}]")
        text = output_text(prediction, f"{metric}: predictions[{i}]")
        pred_tags, counts = align_tags(text, len(tags), labels)
        gold.append(tags)
        pred.append(pred_tags)
        for key in totals:
            totals[key] += counts[key]
    return gold, pred, {f"num_{k}_tags": float(v) for k, v in totals.items()}


def pos_metrics(labels: Sequence[str] | None = UPOS_TAGS) -> Callable[..., dict[str, float]]:
    """seqio metric: UD-POS "F1" exactly as XTREME's seqeval scorer prints it.

    Targets: `{'tokens', 'tags'}` dicts or tag lists; predictions: space-separated tags (str,
    or a dict whose `text` is one).
    `labels=None` keeps unknown predicted tags as they are.
    """
    labels = None if labels is None else tuple(labels)

    def pos_f1(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
        gold, pred, counts = _aligned(targets, predictions, labels, "pos_f1")
        return {**seqeval_scores(gold, pred), **counts}

    return pos_f1


def token_accuracy(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
    """seqio metric for CCG supertagging: percent of tokens whose predicted tag is the gold."""
    gold, pred, counts = _aligned(targets, predictions, None, "token_accuracy")
    total = sum(len(g) for g in gold)
    if total == 0:
        raise ValueError("token_accuracy: the targets hold no tokens")
    correct = sum(int(g == p) for gs, ps in zip(gold, pred) for g, p in zip(gs, ps))
    return {"accuracy": float(correct) / total * 100, **counts}
