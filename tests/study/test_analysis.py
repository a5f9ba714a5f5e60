"""The analysis: bootstrap coverage, slope recovery, incomplete cells, score definitions."""

import math

import numpy as np
import pytest

from study import analysis as an
from study import bootstrap as bs
from study.analysis import Missing
from study.bootstrap import Est
from tests.study import synthetic_db


def test_paired_bootstrap_covers_a_known_difference_near_nominal():
    """200 independent experiments: the 95% interval should contain the truth ~95% of times."""
    rng = np.random.default_rng(7)
    p_a, p_b, n = 0.62, 0.55, 300
    true_diff = 100 * (p_a - p_b)
    hits = 0
    for draw in range(200):
        # Paired arms: correlated per-example outcomes (shared difficulty), as two models
        # scored on the same examples are.
        u = rng.random(n)
        a = 100.0 * (u < p_a)
        b = 100.0 * (u < p_b) * (rng.random(n) < 0.9) + 100.0 * (u >= p_b) * (rng.random(n)
                                                                            < (p_b * 0.1 / 0.45))
        # b's expected accuracy: 0.55 * 0.9 + 0.45 * (0.055 / 0.45) = 0.55
        diff, (lo, hi) = bs.paired_difference(a, b, n_boot=400, seed=draw)
        assert lo <= diff <= hi
        hits += lo <= true_diff <= hi
    coverage = hits / 200
    assert 0.90 <= coverage <= 0.99, coverage


def test_aggregate_of_independently_resampled_languages_covers_near_nominal():
    """Task level: two languages resampled independently, their gains averaged per resample."""
    rng = np.random.default_rng(11)
    spec = {"sw": (150, 0.40, 0.50), "de": (400, 0.70, 0.72)}  # n, p_baseline, p_arm
    truth = np.mean([100 * (p1 - p0) for _, p0, p1 in spec.values()])
    hits = 0
    for draw in range(200):
        gains = []
        for lang, (n, p0, p1) in spec.items():
            u = rng.random(n)
            base, arm = 100.0 * (u < p0), 100.0 * (u < p1)
            w = bs.resample_weights(n, 300, draw, "xnli", lang)
            gains.append(bs.estimate(arm, "mean", w) - bs.estimate(base, "mean", w))
        lo, hi = bs.mean_of(gains).ci()
        hits += lo <= truth <= hi
    assert 0.90 <= hits / 200 <= 0.99, hits / 200


def test_same_resamples_for_both_arms():
    """Pairing: identical arms give a zero-width interval; shifted arms a constant shift."""
    a = np.random.default_rng(0).random(50) * 100
    diff, ci = bs.paired_difference(a, a, n_boot=100)
    assert diff == 0 and ci == (0.0, 0.0)
    diff, (lo, hi) = bs.paired_difference(a + 3.0, a, n_boot=100)
    assert diff == pytest.approx(3.0) and lo == pytest.approx(3.0) and hi == pytest.approx(3.0)


def test_resample_weights_count_draws_with_replacement():
    w = bs.resample_weights(7, 50, 3, "xnli", "sw")
    assert w.shape == (50, 7) and np.all(w.sum(axis=1) == 7) and np.all(w >= 0)
    assert np.array_equal(w, bs.resample_weights(7, 50, 3, "xnli", "sw"))
    assert not np.array_equal(w, bs.resample_weights(7, 50, 3, "xnli", "en"))


def test_f1_counts_replicates_are_micro_f1():
    counts = np.array([[1, 2, 2], [0, 1, 0], [3, 3, 4]], dtype=float)
    weights = np.array([[1, 1, 1], [0, 0, 3], [0, 3, 0]], dtype=float)  # rows: resamples
    reps = bs.replicate(counts, "f1_counts", weights)
    assert reps == pytest.approx([100 * 8 / 12, 100 * 18 / 21, 0.0])


def test_fit_trend_recovers_an_exact_slope_and_forecasts_on_the_line():
    x = np.array([8.0, 8.5, 9.0, 9.5])
    truth = 4.0 - 1.5 * (x - 8)
    noise = np.random.default_rng(0).normal(0, 0.2, size=(4, 500))
    ests = [Est(float(t), t + noise[i]) for i, t in enumerate(truth)]
    slope, intercept, forecast, interval, _ = an.fit_trend(x, ests, x_new=10.1)
    assert slope.point == pytest.approx(-1.5)
    lo, hi = slope.ci()
    assert lo < -1.5 < hi and hi - lo < 1.0
    assert forecast.point == pytest.approx(4.0 - 1.5 * 2.1)
    assert interval[0] < forecast.point < interval[1]


def _truth_with_slope(slope_per_10x, params):
    """Baseline 50%; every intermediate task gains 10 - slope*(log10 p - 6) points."""
    def truth(size, cond, target, lang):
        if cond == "baseline":
            return 0.5
        gain = 10.0 + slope_per_10x * (math.log10(params[size]) - 6.0)
        bonus = 2.0 if (cond == "squad" and target == "xquad") else 0.0
        return 0.5 + (gain + bonus) / 100.0
    return truth


def test_trend_recovers_a_known_slope_through_the_whole_pipeline(tmp_path):
    params = {"tiny1": 10**6, "tiny2": 10**7, "tiny3": 10**8}
    db = synthetic_db.build(tmp_path / "r.sqlite", sizes=params, conditions=("mnli", "squad"),
                            truth=_truth_with_slope(-3.0, params), n=600)
    result = an.analyse(db, n_boot=300)
    trend = result.trends[("mnli", "overall")]
    assert trend.sizes == ("tiny1", "tiny2", "tiny3")
    assert trend.slope.point == pytest.approx(-3.0, abs=1.0)
    lo, hi = trend.slope.ci()
    assert lo < -3.0 < hi and hi < 0
    assert "the data do support a shrinking gain" in result.answer
    assert result.answer.startswith("Across 3 sizes (tiny1, tiny2, tiny3), the overall gain of "
                                    "the best intermediate task per target shrinks by")
    # The forecast of the XXL gain extrapolates the same line (log10 12.9e9 = 10.11).
    forecast = result.trends[("mnli", "overall")].forecast
    assert forecast.point == pytest.approx(10 - 3.0 * (math.log10(12921.1e6) - 6), abs=5.0)
    assert result.toy and result.sample_data
    # X-STILTs best task: squad wins on XQuAD by construction.
    assert all(result.best_task[(s, "xquad")] == "squad" for s in params)


def test_scores_follow_xtreme_r_definitions(tmp_path):
    params = {"tiny1": 1000, "tiny2": 2000}
    db = synthetic_db.build(tmp_path / "r.sqlite", sizes=params, conditions=("mnli",),
                            truth=lambda *k: 0.6, n=40, seeds=(0, 1))
    result = an.analyse(db, n_boot=50)
    rows = {(c, r.language, r.metric): r.value for c, r in db.results()}
    # QA task score = (mean F1 + mean EM) / 2 over languages, averaged over the two seeds.
    per_seed = [np.mean([(rows[(f"tiny1/mnli/xquad/s{s}", lang, "f1")]
                          + rows[(f"tiny1/mnli/xquad/s{s}", lang, "exact_match")]) / 2
                         for lang in ("en", "de")]) for s in (0, 1)]
    assert result.scores[("tiny1", "mnli", "xquad")].point == pytest.approx(np.mean(per_seed))
    # Overall gain = mean over the four categories of the mean of their target gains.
    g = {t: result.gains[("tiny2", "mnli", t)].point for t in result.targets}
    cats = [np.mean([g[t] for t in members]) for members in an.CATEGORIES.values()]
    assert result.gains[("tiny2", "mnli", "overall")].point == pytest.approx(np.mean(cats))
    assert result.gains[("tiny2", "best", "overall")].point == pytest.approx(np.mean(cats))


def test_incomplete_cells_are_flagged_never_averaged(tmp_path):
    params = {"tiny1": 10**6, "tiny2": 10**7}
    db = synthetic_db.build(tmp_path / "r.sqlite", sizes=params, conditions=("mnli", "squad"),
                            truth=_truth_with_slope(-1.0, params), n=50,
                            incomplete=("tiny2", "mnli", "xquad"))
    result = an.analyse(db, n_boot=50)
    missing = result.gains[("tiny2", "mnli", "xquad")]
    assert isinstance(missing, Missing)
    assert "tiny2/mnli/xquad/s0 failed (RuntimeError: synthetic failure)" in missing.reason
    for level in ("qa", "overall"):
        assert isinstance(result.gains[("tiny2", "mnli", level)], Missing)
        assert isinstance(result.gains[("tiny2", "best", level)], Missing)
    assert isinstance(result.gains[("tiny2", "best", "xquad")], Missing)
    assert isinstance(result.scores[("tiny2", "mnli", "xquad")], Missing)
    # Unaffected numbers stay: the other size, the other condition, the other categories.
    assert isinstance(result.gains[("tiny1", "mnli", "xquad")], Est)
    assert isinstance(result.gains[("tiny2", "mnli", "classification")], Est)
    assert isinstance(result.gains[("tiny2", "squad", "overall")], Est)
    trend = result.trends[("mnli", "overall")]
    assert isinstance(trend, Missing) and "excluded: tiny2" in trend.reason
    assert isinstance(result.trends[("squad", "overall")], an.Trend)
    assert result.answer.startswith("Not answerable yet for the overall gain of the best")
    assert not any(k[:2] == ("tiny2", "mnli") and k[2] == "xquad" for k in result.lang_gains)


def test_missing_language_makes_a_cell_incomplete(tmp_path):
    params = {"tiny1": 10**6}
    db = synthetic_db.build(tmp_path / "r.sqlite", sizes=params, conditions=("mnli",),
                            truth=lambda *k: 0.5, n=20, targets=("xnli",))
    rows = [r for _, r in db.results("tiny1/mnli/xnli/s0") if r.language == "en"]
    db.record_results("tiny1/mnli/xnli/s0", rows)  # 'sw' lost
    result = an.analyse(db, n_boot=20)
    assert "tiny1/mnli/xnli/s0 lacks sw/accuracy" in result.gains[("tiny1", "mnli", "xnli")].reason
    assert "targets xcopa not in the study" in result.gains[("tiny1", "mnli", "classification")
                                                            ].reason


def test_score_definitions_are_eval_xtreme_rs(tmp_path):
    """Same tables as eval/xtreme_r.py, and the same numbers on a full-language study."""
    from eval import xtreme_r
    from xitt_tasks import languages

    assert an.TARGET_METRICS == {t.name: t.metric_keys for t in xtreme_r.TASKS}
    assert an.CATEGORIES == {c: tuple(t.name for t in xtreme_r.tasks_in(c))
                             for c in xtreme_r.CATEGORIES}
    db = synthetic_db.build(tmp_path / "r.sqlite", sizes={"tiny1": 1000}, conditions=("mnli",),
                            truth=lambda *k: 0.4, n=8, langs=languages.TASK_LANGUAGES)
    result = an.analyse(db, n_boot=5)
    per_cell = {}
    for cell_id, r in db.results():
        per_cell.setdefault(cell_id, {}).setdefault(r.language, {})[r.metric] = r.value
    for cond in ("baseline", "mnli"):
        official = {t: xtreme_r.task_score(t, per_cell[f"tiny1/{cond}/{t}/s0"]).score
                    for t in an.TARGET_METRICS}
        for t, score in official.items():
            assert result.scores[("tiny1", cond, t)].point == pytest.approx(score)
    summary = {c: xtreme_r.summarize({t: xtreme_r.task_score(t, per_cell[f"tiny1/{c}/{t}/s0"])
                                      .score for t in an.TARGET_METRICS})
               for c in ("baseline", "mnli")}
    assert result.gains[("tiny1", "mnli", "overall")].point == pytest.approx(
        summary["mnli"].overall - summary["baseline"].overall)


def test_gain_vs_share_recovers_a_known_slope_and_flags_incomplete_languages(tmp_path):
    mc4 = an.load_mc4_sizes()

    def truth(size, cond, target, lang):
        gain = 0.0 if cond == "baseline" else 8.0 - 4.0 * math.log10(mc4[lang].mt5_percent)
        return 0.5 + gain / 100.0

    db = synthetic_db.build(tmp_path / "r.sqlite", sizes={"tiny1": 1000}, conditions=("mnli",),
                            truth=truth, n=800, incomplete=("tiny1", "mnli", "tatoeba"))
    result = an.analyse(db, n_boot=200)
    view = result.language_view("tiny1", "mnli")
    # Tatoeba (de, sw) failed: those languages are flagged, not averaged over other targets.
    assert isinstance(view["de"], Missing) and "tatoeba" in view["de"].reason
    assert isinstance(view["sw"], Missing) and isinstance(view["en"], Est)
    fit = an.gain_vs_share({**view, "th": view["th"]}, mc4)
    assert fit.languages == ("en", "th")
    assert [e.split(" ")[0] for e in fit.excluded] == ["de", "sw"]
    db2 = synthetic_db.build(tmp_path / "r2.sqlite", sizes={"tiny1": 1000},
                             conditions=("mnli",), truth=truth, n=4000, seed=1)
    full = an.analyse(db2, n_boot=200).language_view("tiny1", "mnli")
    fit = an.gain_vs_share(full, mc4)
    assert fit.slope.point == pytest.approx(-4.0, abs=2.0)  # ~3 sd of the estimate
    lo, hi = fit.slope.ci()
    assert lo < -4.0 < hi
