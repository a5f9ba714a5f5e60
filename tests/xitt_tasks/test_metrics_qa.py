"""SQuAD v1.1 / v2.0 and MLQA exact match and F1, hand-computed against the official rules."""

import pytest

from xitt_tasks.metrics import mlqa_metrics, squad_v1, squad_v2_metrics
from xitt_tasks.metrics.mlqa import mixed_segmentation
from xitt_tasks.metrics.mlqa import normalize_answer as mlqa_normalize
from xitt_tasks.metrics.squad import gold_answers, normalize_answer


def test_squad_normalisation():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("Theater") == "theater"
    assert normalize_answer("¿«Prado»?") == "¿«prado»"  # only ASCII punctuation goes


def test_squad_v1_max_over_golds_empty_prediction_and_empty_normalisation():
    targets = [
        ["Broncos", "Denver Broncos."],
        ["a red fox jumped", "fox"],  # F1 2/3 against the first, 1/2 against the second
        ["x"],
        ["a"],  # normalises to '': EM 1 but F1 0 under v1.1
    ]
    predictions = ["Denver Broncos", "the big red fox", "", "The"]
    scores = squad_v1(targets, predictions)
    assert scores["exact_match"] == pytest.approx(100 * 2 / 4)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 4)


def test_gold_answer_shapes():
    assert gold_answers({"answers": ["a", b"b"]}, "t") == ["a", "b"]
    assert gold_answers({"answers": {"text": [b"a"], "answer_start": [0]}}, "t") == ["a"]
    assert gold_answers({"answers": [{"text": "a", "answer_start": 3}]}, "t") == ["a"]
    assert gold_answers(b"only", "t") == ["only"]
    with pytest.raises(ValueError, match="no 'answers'"):
        gold_answers({"text": "a"}, "t")


def test_squad_v1_rejects_example_without_gold():
    with pytest.raises(ValueError, match=r"targets\[0\] has no gold answer"):
        squad_v1([[]], ["x"])


def test_squad_v2_no_answer_handling_and_breakdown():
    fn = squad_v2_metrics(no_answer="no answer")
    targets = [
        [],  # unanswerable, model says so: 1 / 1
        ["no answer"],  # unanswerable written with the task's string: 1 / 1
        [],  # unanswerable, model answers: 0 / 0
        ["Paris"],  # answerable, model abstains: 0 / 0
        ["the Paris", "Paris city"],  # answerable, EM via article removal: 1 / 1
        ["."],  # normalises to nothing -> unanswerable; empty prediction: 1 / 1
        ["a"],  # unanswerable; "The" normalises to '': v2 gives F1 1 where v1.1 gives 0
    ]
    predictions = ["no answer", "", "Paris", "no answer", "Paris", "", "The"]
    scores = fn(targets, predictions)
    assert scores["exact_match"] == pytest.approx(100 * 5 / 7)
    assert scores["f1"] == pytest.approx(100 * 5 / 7)
    assert scores["has_ans_exact_match"] == pytest.approx(50.0)
    assert scores["has_ans_f1"] == pytest.approx(50.0)
    assert scores["no_ans_exact_match"] == pytest.approx(100 * 4 / 5)
    assert scores["no_ans_f1"] == pytest.approx(100 * 4 / 5)


def test_squad_v2_partial_f1_and_missing_breakdown():
    scores = squad_v2_metrics()([["red fox"]], ["fox"])
    assert scores["f1"] == pytest.approx(100 * 2 / 3)
    assert "no_ans_f1" not in scores


def test_mlqa_removes_unicode_punctuation_but_not_symbols():
    assert mlqa_normalize("¿El «Prado»?", "es") == "prado"
    assert mlqa_normalize("5 €, $5", "en") == "5 € 5"
    gold, pred = [["Prado"]], ["¿El «Prado»?"]
    assert mlqa_metrics("es")(gold, pred)["exact_match"] == 100.0
    assert squad_v1(gold, pred)["exact_match"] == 0.0


@pytest.mark.parametrize("lang, text, expected", [
    ("en", "The cat and a dog", "cat and dog"),
    ("es", "Los gatos y las casas, el perro", "gatos y casas perro"),
    ("de", "Der Hund und eine Katze, dieser Mann", "hund und katze dieser mann"),
    ("vi", "những con mèo của tôi", "con mèo tôi"),
    ("ar", "الكتاب", "كتاب"),
    ("ar", "والد", "و د"),  # the script removes 'ال' inside words too
    ("hi", "the book", "the book"),  # no articles for Hindi
    ("zh", "The 北京大学，2008年", "the 北 京 大 学 2008 年"),
])
def test_mlqa_per_language_normalisation(lang, text, expected):
    assert mlqa_normalize(text, lang) == expected


def test_mlqa_mixed_segmentation_range_is_the_scripts():
    # U+3007 (〇) lies outside U+4E00..U+9FA5, so it stays inside the non-CJK run
    assert mixed_segmentation("a〇〇b中!x y") == ["a〇〇b", "中", "!", "x", "y"]


def test_mlqa_chinese_f1_counts_characters():
    scores = mlqa_metrics("zh")([["北京"]], ["北京大学"])
    assert scores == {"exact_match": 0.0, "f1": pytest.approx(100 * 2 / 3)}
    assert squad_v1([["北京"]], ["北京大学"])["f1"] == 0.0


def test_mlqa_max_over_golds_and_unknown_language():
    scores = mlqa_metrics("en")([["the cat", "a dog"], ["big house"]], ["Cat!", "house"])
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="'fr' unknown"):
        mlqa_metrics("fr")
