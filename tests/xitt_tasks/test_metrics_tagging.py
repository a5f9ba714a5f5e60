"""Tagging metrics: seqeval 1.2.2 chunking, NER span mapping, UD-POS "F1", CCG accuracy."""

import random

import pytest

from xitt_tasks.metrics import ner_metrics, pos_metrics, token_accuracy
from xitt_tasks.metrics.tagging import (
    UPOS_TAGS,
    get_entities,
    parse_spans,
    seqeval_scores,
    spans_to_tags,
)


def test_get_entities_iob2():
    assert get_entities(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    assert get_entities(["I-ORG", "I-ORG", "O"]) == [("ORG", 0, 1)]  # I- may open a chunk
    assert get_entities(["B-PER", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 1)]
    assert get_entities(["B-PER", "B-PER"]) == [("PER", 0, 0), ("PER", 1, 1)]


def test_get_entities_on_raw_upos_tags():
    tags = ["PROPN", "PROPN", "NOUN", "SCONJ", "SCONJ", "X"]
    # runs of equal tags; 'S...' tags are singletons; a sentence-final X run is dropped
    assert get_entities(tags) == [("ROPN", 0, 1), ("OUN", 2, 2), ("CONJ", 3, 3), ("CONJ", 4, 4)]
    assert get_entities(["X", "NOUN"]) == [("_", 0, 0), ("OUN", 1, 1)]
    # CCONJ and SCONJ share the type 'CONJ': a CCONJ before SCONJ is swallowed, and SCONJ
    # before CCONJ yields a second chunk that overlaps the first
    assert get_entities(["CCONJ", "SCONJ", "NOUN"]) == [("CONJ", 1, 1), ("OUN", 2, 2)]
    assert get_entities(["SCONJ", "CCONJ", "NOUN"]) == [
        ("CONJ", 0, 0), ("CONJ", 0, 1), ("OUN", 2, 2)]


def test_seqeval_scores_micro_over_sentences_with_zero_division():
    gold = [["B-PER", "O"], ["B-LOC", "I-LOC"]]
    pred = [["B-PER", "O"], ["B-LOC", "O"]]
    assert seqeval_scores(gold, pred) == {
        "f1": pytest.approx(50.0), "precision": pytest.approx(50.0), "recall": 50.0}
    assert seqeval_scores([["O"]], [["O"]]) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    with pytest.raises(ValueError, match="sentence 0 has 1 gold tags but 2"):
        seqeval_scores([["O"]], [["O", "O"]])


@pytest.mark.filterwarnings("ignore")  # seqeval warns on tags without B-/I- prefixes
def test_seqeval_scores_match_seqeval_1_2_2():
    seqeval_metrics = pytest.importorskip("seqeval.metrics")
    rng = random.Random(0)
    vocab_sets = [["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"], list(UPOS_TAGS)]
    for trial in range(100):
        vocab = vocab_sets[trial % 2]
        lengths = [rng.randint(1, 8) for _ in range(rng.randint(1, 6))]
        gold = [[rng.choice(vocab) for _ in range(n)] for n in lengths]
        pred = [[rng.choice(vocab) for _ in range(n)] for n in lengths]
        ours = seqeval_scores(gold, pred)
        assert ours["f1"] == seqeval_metrics.f1_score(gold, pred) * 100
        assert ours["precision"] == seqeval_metrics.precision_score(gold, pred) * 100
        assert ours["recall"] == seqeval_metrics.recall_score(gold, pred) * 100


TOKENS = ["Rick", "lives", "in", "Paris", "and", "Rick", "Astley", "visits", "new", "york"]
GOLD = ["B-PER", "O", "O", "B-LOC", "O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC"]


def test_parse_spans_counts_malformed_chunks():
    spans, malformed = parse_spans(
        "PER: Rick $$ garbage $$ MISC: x $$ ORG:   $$ LOC: Star: Wars $$ ")
    assert spans == [("PER", ["Rick"]), ("LOC", ["Star:", "Wars"])]
    assert malformed == 4  # no ':', unknown type, empty surface, empty trailing chunk
    assert parse_spans("") == ([], 0)
    assert parse_spans("  ") == ([], 0)


def test_spans_to_tags_earliest_unused_exact_then_casefold():
    spans = [("PER", ["Rick"]), ("LOC", ["Paris"]), ("PER", ["Rick", "Astley"]),
             ("LOC", ["New", "York"]), ("PER", ["Rick"])]
    tags, unmatched = spans_to_tags(TOKENS, spans)
    assert tags == GOLD
    assert unmatched == 1  # the third "Rick": both occurrences already taken
    # order of the chunks decides: "Rick Astley" first leaves the first "Rick" free
    tags, unmatched = spans_to_tags(TOKENS, [("PER", ["Rick", "Astley"]), ("PER", ["Rick"])])
    assert tags[:7] == ["B-PER", "O", "O", "O", "O", "B-PER", "I-PER"] and unmatched == 0
    # an exact match later in the sentence wins over an earlier case-insensitive one
    tags, _ = spans_to_tags(["paris", "Paris"], [("LOC", ["Paris"])])
    assert tags == ["O", "B-LOC"]


def test_ner_metric_end_to_end():
    fn = ner_metrics()
    targets = [
        {"tokens": TOKENS, "tags": GOLD},
        {"tokens": ["John", "met", "Mary"], "tags": ["B-PER", "O", "B-PER"]},
        {"tokens": [b"Ann"], "tags": [b"B-PER"]},
    ]
    predictions = [
        "PER: Rick $$ LOC: Paris $$ PER: Rick Astley $$ LOC: New York $$ garbage $$ PER: Rick",
        b"PER: John $$ LOC: Mary",
        {"text": "", "tokens": ["Ann"], "tags": ["B-PER"]},  # as tagging_postprocess gives
    ]
    scores = fn(targets, predictions)
    # gold chunks 4 + 2 + 1 = 7, predicted 4 + 2 + 0 = 6, correct 4 + 1 = 5
    assert scores["precision"] == pytest.approx(100 * 5 / 6)
    assert scores["recall"] == pytest.approx(100 * 5 / 7)
    assert scores["f1"] == pytest.approx(100 * 10 / 13)
    assert scores["num_malformed_chunks"] == 1.0
    assert scores["num_unmatched_spans"] == 1.0


def test_ner_adjacent_same_type_spans_stay_separate():
    scores = ner_metrics()([{"tokens": ["John", "Paul"], "tags": ["B-PER", "I-PER"]}],
                           ["PER: John $$ PER: Paul"])
    assert scores["f1"] == 0.0 and scores["precision"] == 0.0


def test_ner_rejects_bad_targets():
    with pytest.raises(ValueError, match=r"targets\[0\]: 2 tokens but 1 tags"):
        ner_metrics()([{"tokens": ["a", "b"], "tags": ["O"]}], [""])
    with pytest.raises(ValueError, match="expected a dict with 'tokens' and 'tags'"):
        ner_metrics()([["O"]], [""])
    with pytest.raises(ValueError, match=r"predictions\[0\]: dict prediction has no 'text'"):
        ner_metrics()([{"tokens": ["a"], "tags": ["O"]}], [{"tokens": ["a"]}])


def test_pos_missing_tags_are_always_wrong():
    targets = [{"tokens": ["Ann", "Lee", "runs", "x"], "tags": ["PROPN", "PROPN", "VERB", "X"]}]
    scores = pos_metrics()(targets, ["PROPN NOUN VERB"])
    # gold chunks {PROPN 0-1, VERB 2} (final X dropped); predicted {PROPN 0, NOUN 1, VERB 2,
    # <missing> 3}: one correct
    assert scores["precision"] == pytest.approx(25.0)
    assert scores["recall"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(100 / 3)
    assert scores["num_missing_tags"] == 1.0 and scores["num_extra_tags"] == 0.0


def test_pos_extra_tags_are_dropped_and_unknown_tags_replaced():
    targets = [["PROPN", "PROPN", "VERB", "X"]]
    scores = pos_metrics()(targets, ["PROPN PROPN VERB X NOUN NOUN"])
    assert scores["f1"] == 100.0 and scores["num_extra_tags"] == 2.0
    scores = pos_metrics()(targets, ["PROPN PROPN B-ERB X"])
    # 'B-ERB' would chunk like VERB (type 'ERB'); outside UPOS it becomes <invalid>
    assert scores["f1"] == pytest.approx(50.0) and scores["num_invalid_tags"] == 1.0
    assert pos_metrics(labels=None)(targets, ["PROPN PROPN B-ERB X"])["f1"] == 100.0


def test_ccg_token_accuracy_pads_missing_tags():
    targets = [{"tokens": ["I", "saw", "it"], "tags": ["NP", r"(S[dcl]\NP)/NP", "NP"]},
               ["N", "."]]
    predictions = [r"NP (S[dcl]\NP)/NP N", {"text": "N", "tokens": ["N", "."]}]
    scores = token_accuracy(targets, predictions)
    assert scores["accuracy"] == pytest.approx(60.0)
    assert scores["num_missing_tags"] == 1.0
