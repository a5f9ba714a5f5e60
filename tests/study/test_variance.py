"""Variance components: linearised micro-F1, translated-item clusters, the crossed estimator."""

import numpy as np
import pytest

from study import variance as va
from study.variance import Est


def test_f1_counts_pseudo_values_average_to_micro_f1():
    counts = np.array([[1, 2, 2], [0, 1, 0], [3, 3, 4], [2, 2, 3]], dtype=float)
    u = va.pseudo_values(counts, "f1_counts")
    assert u.mean() == pytest.approx(200 * 6 / (8 + 9))
    with pytest.raises(ValueError, match="aggregation 'max'"):
        va.pseudo_values(counts, "max")


def test_translated_items_share_a_cluster_across_languages():
    assert va.stratum("xnli", "de") == va.stratum("xnli", "sw") == "xnli"
    assert va.cluster("xnli", "de:7") == va.cluster("xnli", "sw:7") == "7"
    assert va.stratum("udpos", "de") != va.stratum("udpos", "en")
    assert va.cluster("udpos", "de:7") == "de:7"


def test_crossed_estimator_is_unbiased_for_seed_plus_item_plus_interaction():
    """z[r, k] = seed_r + item_k + noise: Var(sum z) = K^2 R s^2 + R^2 K i^2 + R K e^2."""
    rng = np.random.default_rng(0)
    r, k, s, i, e = 3, 60, 0.05, 0.2, 0.3
    truth = k * k * r * s * s + r * r * k * i * i + r * k * e * e
    est, sums = [], []
    for _ in range(3000):
        z = (rng.normal(0, s, (r, 1)) + rng.normal(0, i, (1, k)) + rng.normal(0, e, (r, k)))
        est.append(va.spread({"t": z}).var)
        sums.append(z.sum())
    assert np.var(sums) == pytest.approx(truth, rel=0.08)
    assert np.mean(est) == pytest.approx(truth, rel=0.08)


def test_t_interval_with_two_or_three_seeds_covers_near_nominal():
    """Seed-dominated contributions: the t multiplier (df ~ R - 1) keeps 95% coverage."""
    rng = np.random.default_rng(1)
    for r in (2, 3):
        hits = 0
        for _ in range(2000):
            z = rng.normal(0, 1.0, (r, 1)) + rng.normal(0, 0.05, (r, 30))
            est = Est(float(z.sum()), {"t": z})
            lo, hi = est.ci()
            hits += lo <= 0.0 <= hi
        assert 0.93 <= hits / 2000 <= 0.97, (r, hits / 2000)


def test_combine_refuses_intervals_across_unequal_seed_counts_and_one_seed():
    two, three = Est(1.0, {"t": np.ones((2, 4))}), Est(2.0, {"t": np.ones((3, 4))})
    diff = three - two
    assert diff.point == 1.0 and diff.ci() is None and "2 and 3 seeds" in diff.why
    mixed = va.combine([two, Est(1.0, {"u": np.ones((3, 2))})], [1.0, 1.0])
    assert mixed.why.startswith("no interval: t with 2 seed(s) beside parts with 3")
    one = va.combine([Est(1.0, {"t": np.ones((1, 4))})], [1.0])
    assert one.ci() is None and one.why == va.ONE_SEED
    assert va.mean_of([two, Est(3.0, None, "no interval: no per-example scores")]).why == \
        "no interval: no per-example scores"
