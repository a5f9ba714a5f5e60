"""Text-to-text formats: exact strings, and that each format round-trips through its metric."""
import numpy as np
import pytest
import tensorflow as tf

from xitt_tasks import formats
from xitt_tasks.metrics import classification, squad, tagging


def test_nli_format_follows_mt5():
    ex = {"premise": "A man sleeps.", "hypothesis": "Nobody sleeps.", "label": "contradiction"}
    assert formats.format_nli(ex) == (
        "xnli: premise: A man sleeps. hypothesis: Nobody sleeps.", "contradiction")


def test_qa_pads_punctuation_and_keeps_letters_marks_digits():
    assert formats.pad_punctuation("Où est-il? (1999)") == "Où est - il ? ( 1999 )"
    assert formats.pad_punctuation("हिन्दी, ok") == "हिन्दी , ok"  # combining marks kept
    inputs, target = formats.format_qa(
        {"id": "q", "question": "Who?", "context": "Rick, in Paris.", "answers": ["Rick"]})
    assert inputs == "question: Who ? context: Rick , in Paris ."
    assert target == "Rick"


def test_unanswerable_question_gets_fixed_target():
    _, target = formats.format_qa({"id": "q", "question": "Why?", "context": "c", "answers": []})
    assert target == formats.NO_ANSWER == "no answer"


def test_ner_spans_in_order_and_empty_when_none():
    tokens = ["Rick", "Astley", "visits", "Paris", "today"]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "O"]
    assert formats.format_ner({"tokens": tokens, "tags": tags}) == (
        "tag: Rick Astley visits Paris today", "PER: Rick Astley $$ LOC: Paris")
    assert formats.format_ner({"tokens": ["a"], "tags": ["O"]})[1] == ""
    # Adjacent entities of the same type stay separate when the second starts with B-.
    assert formats.iob2_spans(["A", "B"], ["B-ORG", "B-ORG"]) == [("ORG", "A"), ("ORG", "B")]


def test_ner_rejects_non_iob2_tags():
    with pytest.raises(ValueError, match="not IOB2"):
        formats.format_ner({"tokens": ["a"], "tags": ["PER"]})


def test_pos_and_ccg_one_tag_per_token():
    ex = {"tokens": ["I", "run"], "tags": ["PRON", "VERB"]}
    assert formats.format_pos(ex) == ("pos: I run", "PRON VERB")
    ccg = {"tokens": ["I", "run"], "tags": ["NP", r"S[dcl]\NP"]}
    assert formats.format_ccg(ccg) == ("ccg: I run", r"NP S[dcl]\NP")
    with pytest.raises(ValueError, match="2 tokens but 1 tags"):
        formats.format_pos({"tokens": ["I", "run"], "tags": ["PRON"]})


def test_choice_format_targets_answer_text():
    ex = {"id": "7", "context": "The man broke his toe.", "question": "cause",
          "choices": ["He dropped a hammer.", "He sang."], "label": 0}
    inputs, target = formats.get_format("choice_xcopa").fn(ex)
    assert inputs == ("xcopa: context: The man broke his toe. question: cause "
                      "choice1: He dropped a hammer. choice2: He sang.")
    assert target == "He dropped a hammer."
    with pytest.raises(ValueError, match="label 5 outside 0..1"):
        formats.get_format("choice_xcopa").fn({**ex, "label": 5})


def test_unknown_format_lists_valid_ones():
    with pytest.raises(ValueError, match="expected one of .*'nli'"):
        formats.get_format("nope")


def _dataset(family, examples):
    schema = formats.SCHEMAS[family]
    return tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=schema)


def test_format_preprocessor_adds_strings_and_keeps_raw_fields():
    ds = _dataset("tags", [{"tokens": ["Rick", "sings"], "tags": ["B-PER", "O"]}])
    ex = next(formats.format_preprocessor("ner")(ds).as_numpy_iterator())
    assert ex["inputs"] == b"tag: Rick sings"
    assert ex["targets"] == b"PER: Rick"
    assert ex["tokens"].tolist() == [b"Rick", b"sings"]


def test_rank_classification_expands_choices_and_scores_with_metric():
    examples = [{"id": str(i), "context": "c", "question": "q", "choices": ["x", "y", "z"],
                 "label": i} for i in range(2)]
    ds = formats.rank_classification(
        formats.format_preprocessor("choice_siqa")(_dataset("choice", examples)))
    rows = list(ds.as_numpy_iterator())
    assert len(rows) == 6
    assert [r["targets"] for r in rows[:3]] == [b"x", b"y", b"z"]
    assert [r["idx"].tolist() for r in rows[3:]] == [[1, 0], [1, 1], [1, 2]]
    targets = [formats.rank_postprocess(r["targets"].decode(), example=r, is_target=True)
               for r in rows]
    assert targets[0] == (0, True) and targets[4] == (1, True)
    # Scores favouring choice 0 everywhere: example 0 right, example 1 wrong -> 50%.
    scores = [0.0, -1.0, -2.0, 0.0, -1.0, -2.0]
    assert classification.rank_classification_accuracy(targets, scores)["accuracy"] == 50.0


def test_qa_postprocess_keeps_all_answers_for_em_f1():
    example = {"answers": np.array([b"Paris", b"Paris, France"], dtype=object)}
    target = formats.qa_postprocess("Paris", example=example, is_target=True)
    assert target == ["Paris", "Paris , France"]
    assert formats.qa_postprocess("no answer", example={"answers": np.array([], dtype=object)},
                                  is_target=True) == ["no answer"]
    scores = squad.squad_v1([target], ["Paris , France"])
    assert scores["exact_match"] == 100.0


def test_tagging_targets_map_back_through_official_metrics():
    tokens, tags = ["Rick", "Astley", "in", "Paris"], ["B-PER", "I-PER", "O", "B-LOC"]
    example = {"tokens": np.array([t.encode() for t in tokens], dtype=object),
               "tags": np.array([t.encode() for t in tags], dtype=object)}
    _, ner_target = formats.format_ner({"tokens": tokens, "tags": tags})
    target = formats.tagging_postprocess(ner_target, example=example, is_target=True)
    assert target["tokens"] == tokens and target["tags"] == tags
    assert tagging.ner_metrics()([target], [ner_target])["f1"] == 100.0
    half = tagging.ner_metrics()([target], ["PER: Rick Astley"])["f1"]
    assert half == pytest.approx(100 * 2 / 3)

    pos_tags = ["PROPN", "PROPN", "ADP", "PROPN"]
    pos_example = {**example, "tags": np.array([t.encode() for t in pos_tags], dtype=object)}
    _, pos_target = formats.format_pos({"tokens": tokens, "tags": pos_tags})
    gold = formats.tagging_postprocess(pos_target, example=pos_example, is_target=True)
    assert tagging.pos_metrics()([gold], [pos_target])["f1"] == 100.0
