"""Generated (punctuation-padded) QA answers mapped back to raw context spans, and raw scoring."""

import pytest

from xitt_tasks import formats
from xitt_tasks.metrics import mlqa_metrics, squad_v1
from xitt_tasks.metrics.qa_spans import (
    answer_span,
    depad,
    pad_punctuation,
    pad_with_offsets,
    padded_tokens,
)


def test_padding_rule_is_formats_rule_and_offsets_point_at_raw_characters():
    for text in ("The U.S. Army (1775)", "state-of-the-art, i.e. «new»", "李明看见大房子在上海。",
                 "กรุงเทพฯ เป็นเมืองหลวง", "می‌خواهم", "  a\n\tb  "):
        padded = pad_with_offsets(text)
        assert padded.padded == pad_punctuation(text) == formats.pad_punctuation(text)
        assert len(padded.raw_index) == len(padded.padded)
        for ch, i in zip(padded.padded, padded.raw_index):
            assert (ch == " ") if i < 0 else (text[i] == ch)
        assert " ".join(t for t, _, _ in padded_tokens(text)) == padded.padded


@pytest.mark.parametrize("context, generated, expected, how", [
    ("The U.S. Army was founded in 1775.", "U . S . Army", "U.S. Army", "exact"),
    ("It is a state-of-the-art system.", "state - of - the - art", "state-of-the-art", "exact"),
    # the model's unpadded output is re-padded first
    ("It is a state-of-the-art system.", "state-of-the-art system", "state-of-the-art system",
     "exact"),
    ("He was born in (roughly) 1990, in Paris.", "( roughly ) 1990", "(roughly) 1990", "exact"),
    # original spacing and line breaks of the context are kept
    ("Born in New\n  York City.", "New York", "New\n  York", "exact"),
    ("Visit the Eiffel Tower today.", "eiffel tower", "Eiffel Tower", "case_insensitive"),
    # Chinese and Thai: no spaces between words, so answers sit inside one padded token
    ("李明看见大房子在上海。王芳在北京。", "上海", "上海", "exact"),
    ("李明看见大房子在上海。王芳在北京。", "北京 。", "北京。", "exact"),
    ("ฉันอาศัยอยู่ที่กรุงเทพฯ มาห้าปี", "กรุงเทพฯ", "กรุงเทพฯ", "exact"),  # ฯ is a letter (Lo)
    ("ราคา 1,500 บาท (ประมาณ)", "1 , 500 บาท", "1,500 บาท", "exact"),
    ("ฉันอาศัยอยู่ที่กรุงเทพฯ มาห้าปี", "ห้าปี", "ห้าปี", "exact"),
])
def test_answer_maps_to_raw_span(context, generated, expected, how):
    span = answer_span(generated, context)
    assert (span.text, span.how) == (expected, how)
    assert context[span.start:span.end] == expected


def test_token_aligned_occurrence_preferred_over_earlier_partial_one():
    context = "Parisians live in Paris."
    span = answer_span("Paris", context)
    assert (span.start, span.end) == (18, 23)
    # but inside-token matches are found when nothing aligns (scripts without spaces)
    assert answer_span("isian", context).start == 3


def test_answer_not_in_context_is_depadded():
    span = answer_span("New York ( city ) , U . S .", "Paris is in France.")
    assert (span.text, span.how, span.start) == ("New York (city), U. S.", "depadded", None)
    # pairs the context holds follow the context's spacing
    span = answer_span("U . S . citizens", "He moved to the U.S. in 1990.")
    assert (span.text, span.how) == ("U.S. citizens", "depadded")
    assert depad("state - of - the - art") == "state-of-the-art"
    assert depad("北京 。") == "北京。"
    assert answer_span("  ", "anything").how == "empty"
    assert answer_span("", "anything").text == ""


def test_squad_scores_raw_strings_and_keeps_padded_as_secondary():
    # raw gold "U.S." normalises to "us"; the padded forms to "u s": raw EM is the official one
    targets = [{"answers": ["U.S."], "answers_padded": ["U . S ."]},
               {"answers": ["state-of-the-art"], "answers_padded": ["state - of - the - art"]}]
    predictions = [{"text": "U . S .", "answer": "U.S."},
                   {"text": "state - of - the - art", "answer": "state of the art"}]
    scores = squad_v1(targets, predictions)
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["exact_match_padded"] == pytest.approx(100.0)
    assert scores["f1_padded"] == pytest.approx(100.0)
    # raw F1 of "state of the art" vs "stateoftheart": no shared token
    assert scores["f1"] == pytest.approx(50.0)
    assert set(squad_v1([["a"]], ["a"])) == {"exact_match", "f1"}
    with pytest.raises(ValueError, match="raw/padded dicts on both sides"):
        squad_v1([targets[0]], ["U.S."])


def test_mlqa_raw_and_padded_chinese():
    targets = [{"answers": ["上海市"], "answers_padded": ["上海市"]}]
    predictions = [{"text": "上海", "answer": "上海"}]
    scores = mlqa_metrics("zh")(targets, predictions)
    assert scores["f1"] == pytest.approx(100 * 0.8)  # 2 of 3 characters: P 1, R 2/3
    assert scores["f1_padded"] == pytest.approx(scores["f1"])


def test_qa_tasks_postprocess_to_raw_and_padded_and_score_both():
    """The registered QA tasks hand the metric raw spans (primary) and padded text."""
    import numpy as np
    import seqio

    task = seqio.get_mixture_or_task("xitt.xquad.en")
    example = {"context": b"The U.S. Army was founded in 1775.",
               "answers": np.array([b"U.S. Army"], dtype=object)}
    target = task.postprocess_fn("U . S . Army", example=example, is_target=True)
    assert target == {"answers": ["U.S. Army"], "answers_padded": ["U . S . Army"]}
    prediction = task.postprocess_fn("U . S . Army", example=example, is_target=False)
    assert prediction == {"text": "U . S . Army", "answer": "U.S. Army"}
    (metric,) = task.predict_metric_fns
    scores = metric([target], [prediction])
    assert scores == {"exact_match": 100.0, "f1": 100.0, "exact_match_padded": 100.0,
                      "f1_padded": 100.0}
