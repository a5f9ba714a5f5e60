"""Accuracy metrics: the figure XTREME's evaluate.py prints (correct / n * 100)."""

import numpy as np
import pytest

from xitt_tasks.metrics import accuracy, rank_classification_accuracy


def test_accuracy_compares_stripped_labels_and_decodes_bytes():
    targets = ["entailment", b"neutral", "contradiction", "neutral"]
    predictions = ["entailment", " neutral\n", "neutral", "Neutral"]
    assert accuracy(targets, predictions) == {"accuracy": 50.0}


def test_accuracy_fraction_is_percent():
    assert accuracy(["a", "b", "c"], ["a", "x", "y"])["accuracy"] == pytest.approx(100 / 3)


def test_accuracy_rejects_length_mismatch_and_empty_input():
    with pytest.raises(ValueError, match="2 targets but 1 predictions"):
        accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no examples"):
        accuracy([], [])
    with pytest.raises(TypeError, match=r"targets\[0\]"):
        accuracy([None], ["3"])


def test_accuracy_reads_integer_labels_as_digits():
    assert accuracy([1, np.int64(0)], ["1", " 1"]) == {"accuracy": 50.0}


def test_rank_classification_picks_best_scored_choice_ties_to_first_row():
    targets = [(0, False), (0, True), (1, True), (1, False), (2, False), (2, True)]
    scores = [-1.0, -0.5, -2.0, -1.0, -3.0, -3.0]
    # ex 0: correct choice scores highest; ex 1: wrong one does; ex 2: tie -> first row (wrong)
    assert rank_classification_accuracy(targets, scores)["accuracy"] == pytest.approx(100 / 3)


def test_rank_classification_accepts_array_ids_and_rejects_bad_rows():
    targets = [(np.array([0, 0]), 0), (np.array([0, 0]), 1)]
    assert rank_classification_accuracy(targets, [0.1, 0.2]) == {"accuracy": 100.0}
    with pytest.raises(ValueError, match=r"targets\[0\]"):
        rank_classification_accuracy([5], [0.0])
    with pytest.raises(ValueError, match="NaN"):
        rank_classification_accuracy([(0, 1)], [float("nan")])


def test_seqio_files_every_metric_under_the_intended_kind():
    import seqio

    from xitt_tasks import metrics

    predict = [metrics.accuracy, metrics.squad_v1, metrics.squad_v2_metrics("no answer"),
               metrics.mlqa_metrics("zh"), metrics.ner_metrics(), metrics.pos_metrics(),
               metrics.token_accuracy, metrics.lareqa_map_at_20, metrics.map_at_k(5),
               metrics.mewslix_map_at_20, metrics.tatoeba_accuracy]
    score = [metrics.rank_classification_accuracy]
    vocab = seqio.PassThroughVocabulary(size=0)
    task = seqio.Task(
        "xitt_test_metric_kinds",
        source=seqio.FunctionDataSource(lambda split, shuffle_files: None, splits=["x"]),
        output_features={"targets": seqio.Feature(vocab)},
        metric_fns=predict + score)
    assert list(task.predict_metric_fns) == predict
    assert list(task.score_metric_fns) == score
