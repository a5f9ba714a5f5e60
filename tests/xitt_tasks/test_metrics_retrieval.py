"""Retrieval metrics: LAReQA mAP@k, Mewsli-X MRR@20 ("MAP@20"), Tatoeba accuracy."""

import numpy as np
import pytest

from xitt_tasks.metrics import lareqa_map_at_20, map_at_k, mewslix_map_at_20, tatoeba_accuracy
from xitt_tasks.metrics.retrieval import average_precision_at_k


def test_ap_with_fewer_golds_than_k_divides_by_number_of_golds():
    # hits at ranks 1 and 3: (1/1 + 2/3) / min(2, 20)
    assert average_precision_at_k(["a", "b"], ["a", "x", "b"]) == pytest.approx(5 / 6)


def test_ap_gold_outside_top_k_earns_nothing_but_still_divides():
    ranking = ["g1"] + [f"n{i}" for i in range(23)] + ["g2"]  # g2 at rank 25, g3 absent
    assert average_precision_at_k(["g1", "g2", "g3"], ranking) == pytest.approx(1 / 3)
    assert average_precision_at_k(["g1", "g2", "g3"], ranking, k=30) == pytest.approx(
        (1 + 2 / 25) / 3)


def test_ap_with_more_golds_than_k_divides_by_k():
    golds = [f"g{i}" for i in range(25)]
    assert average_precision_at_k(golds, golds[::-1]) == 1.0
    # only the first 10 of the top 20 are gold: sum of 1 over ten hits / 20
    ranking = golds[:10] + [f"n{i}" for i in range(10)] + golds[10:]
    assert average_precision_at_k(golds, ranking) == pytest.approx(10 / 20)


def test_ap_counts_a_repeated_id_once():
    assert average_precision_at_k(["a"], ["x", "a", "a"]) == pytest.approx(1 / 2)
    assert average_precision_at_k(["a", "b"], ["a", "a"]) == pytest.approx(1 / 2)


def test_ap_rejects_no_gold():
    with pytest.raises(ValueError, match="no gold"):
        average_precision_at_k([], ["a"])


def test_lareqa_map_is_mean_over_queries_in_percent():
    targets = [["a", "b"], np.array([b"c"]), [7]]
    predictions = [["a", "x", "b"], ["x", "c"], np.array([1, 7])]
    expected = (5 / 6 + 1 / 2 + 1 / 2) / 3 * 100
    assert lareqa_map_at_20(targets, predictions)["map@20"] == pytest.approx(expected)


def test_map_at_k_uses_its_k():
    fn = map_at_k(2)
    assert fn([["a", "b"]], [["x", "a", "b"]]) == {"map@2": pytest.approx(50 / 2)}
    with pytest.raises(ValueError, match="k=0"):
        map_at_k(0)


def test_mewslix_scores_first_gold_by_reciprocal_rank_within_20():
    targets = [["Q1"], ["Q2 ", "Q9"], ["Q3"]]
    predictions = [["Q5", "Q1"], ["Q9", "Q8", "Q2"], ["Q0"] * 20 + ["Q3"]]
    # 1/2; 1/3 (Q9 is not the gold: only the first label counts); 0 (rank 21)
    assert mewslix_map_at_20(targets, predictions)["map@20"] == pytest.approx(
        (1 / 2 + 1 / 3) / 3 * 100)


def test_tatoeba_accuracy_compares_indices():
    targets = [0, 1, 2, "3"]
    predictions = ["0", 1, np.int64(5), b"3\n"]
    assert tatoeba_accuracy(targets, predictions) == {"accuracy": 75.0}
    with pytest.raises(ValueError, match="not an integer"):
        tatoeba_accuracy([0], ["zero"])
    with pytest.raises(ValueError, match="2 targets but 1"):
        tatoeba_accuracy([0, 1], [0])
