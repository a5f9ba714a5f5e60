"""The analysis: primary endpoint, slope recovery, forecast by size name, incomplete cells,
score definitions (the interval machinery itself: test_variance.py; calibration:
test_simulate.py)."""

import json
import math

import numpy as np
import pytest

from study import analysis as an
from study.analysis import Missing
from study.variance import ONE_SEED, Est
from tests.study import synthetic_db

PRIMARY = {"condition": "xitt.inter.multitask", "measure": "overall_gain"}
EXACT = {"small": 300_176_768, "base": 582_401_280, "large": 1_229_581_312,
         "xl": 3_742_619_648, "xxl": 12_921_057_280}


def _truth_with_slope(slope_per_10x, params):
    """Baseline 50%; every intermediate task gains 10 + slope*(log10 p - 6) points."""
    def truth(size, cond, target, lang):
        if cond == "baseline":
            return 0.5
        gain = 10.0 + slope_per_10x * (math.log10(params[size]) - 6.0)
        bonus = 2.0 if (cond == "squad" and target == "xquad") else 0.0
        return 0.5 + (gain + bonus) / 100.0
    return truth


def test_mt5_parameter_counts_are_exact():
    assert an.MT5_PARAMS == EXACT


def test_trend_recovers_a_known_slope_and_answers_for_the_primary_only(tmp_path):
    params = {"tiny1": 10**6, "tiny2": 10**7, "tiny3": 10**8}
    db = synthetic_db.build(tmp_path / "r.sqlite", sizes=params,
                            conditions=("squad", "multitask"), seeds=(0, 1, 2),
                            truth=_truth_with_slope(-3.0, params), n=300)
    result = an.analyse(db, primary=PRIMARY)
    trend = result.trends[("multitask", "overall")]
    assert trend.sizes == ("tiny1", "tiny2", "tiny3")
    lo, hi = trend.slope.ci()
    assert lo < -3.0 < hi and hi < 0
    assert result.primary == ("multitask", "overall")
    assert result.answer.startswith(
        "Across 3 sizes (tiny1, tiny2, tiny3), the overall XTREME-R gain of intermediate task "
        "multitask (the declared primary endpoint) shrinks by")
    assert "the data do support a shrinking gain" in result.answer
    assert "relative error reduction" in result.answer
    assert "squad" not in result.answer and "best" not in result.answer
    # Every other trend is the secondary family, Holm-adjusted; the primary is not in it.
    assert trend.p_adjusted is None and trend.p_value is not None
    secondary = [t for k, t in result.trends.items()
                 if isinstance(t, an.Trend) and k != ("multitask", "overall")]
    assert secondary and all(t.p_adjusted >= t.p_value for t in secondary)
    # X-STILTs best task (exploratory): squad wins on XQuAD by construction, by point.
    assert all(result.best_task[(s, "xquad")] == "squad" for s in params)


def test_no_declared_primary_endpoint_gives_no_answer(tmp_path):
    params = {"tiny1": 10**6, "tiny2": 10**7}
    db = synthetic_db.build(tmp_path / "r.sqlite", sizes=params, conditions=("multitask",),
                            truth=_truth_with_slope(-1.0, params), n=30, seeds=(0, 1),
                            targets=("xnli",))
    result = an.analyse(db)
    assert result.primary is None
    assert result.answer.startswith("No answer: the database records no primary endpoint")
    db.set_meta(an.PRIMARY_META, json.dumps(PRIMARY, sort_keys=True))  # as the runner does
    assert an.analyse(db).primary == ("multitask", "overall")


def test_xxl_forecast_selects_sizes_by_name_with_exact_counts(tmp_path):
    """The real XXL (12,921,057,280 parameters) is never fitted into its own forecast."""
    sizes = {s: EXACT[s] for s in ("base", "large", "xl", "xxl")}
    db = synthetic_db.build(tmp_path / "r.sqlite", sizes=sizes, conditions=("multitask",),
                            truth=_truth_with_slope(-2.0, sizes), n=40, seeds=(0, 1),
                            targets=("xnli", "xquad"))
    result = an.analyse(db, primary=PRIMARY)
    trend = result.trends[("multitask", "xnli")]
    assert trend.sizes == ("base", "large", "xl", "xxl")
    assert trend.forecast_note.startswith("from base, large, xl;")
    g = {s: result.gains[(s, "multitask", "xnli")].point for s in ("base", "large", "xl")}
    x = {s: math.log10(EXACT[s]) for s in g}
    b, a = np.polyfit([x[s] for s in g], [g[s] for s in g], 1)
    assert trend.forecast.point == pytest.approx(a + b * math.log10(EXACT["xxl"]))
    assert trend.forecast.ci() is not None
    assert not result.toy


def test_one_seed_gives_no_interval_not_a_fake_one(tmp_path):
    params = {"tiny1": 10**6, "tiny2": 10**7}
    db = synthetic_db.build(tmp_path / "r.sqlite", sizes=params, conditions=("multitask",),
                            truth=_truth_with_slope(-1.0, params), n=30, seeds=(0,))
    result = an.analyse(db, primary=PRIMARY)
    gain = result.gains[("tiny1", "multitask", "overall")]
    assert isinstance(gain, Est) and gain.ci() is None and gain.why == ONE_SEED
    assert result.trends[("multitask", "overall")].slope.ci() is None
    assert "no interval: one seed, so no conclusion" in result.answer


def test_relative_error_reduction_near_the_ceiling(tmp_path):
    db = synthetic_db.build(tmp_path / "r.sqlite", sizes={"tiny1": 1000},
                            conditions=("multitask",), seeds=(0, 1),
                            truth=lambda s, c, t, lg: 0.95 if c == "multitask" else 0.90,
                            n=400, targets=("xnli",))
    result = an.analyse(db, primary=PRIMARY)
    score = result.scores[("tiny1", "multitask", "xnli")].point
    base = result.scores[("tiny1", "baseline", "xnli")].point
    rer = result.rer[("tiny1", "multitask", "xnli")]
    assert rer.point == pytest.approx(100 * (score - base) / (100 - base))
    lo, hi = rer.ci()
    assert lo < 50.0 < hi  # the truth: half of the baseline's 10% error removed


def test_holm_adjustment_is_step_down():
    trends = {(c, "overall"): an.Trend(Est(0.0), 0.0, ("a", "b"), (), None, "", p)
              for c, p in (("p", 0.001), ("a", 0.01), ("b", 0.04), ("c", 0.03))}
    an.holm_adjust(trends, exclude=("p", "overall"))
    assert trends[("p", "overall")].p_adjusted is None
    assert trends[("a", "overall")].p_adjusted == pytest.approx(0.03)
    assert trends[("c", "overall")].p_adjusted == pytest.approx(0.06)
    assert trends[("b", "overall")].p_adjusted == pytest.approx(0.06)


def test_scores_follow_xtreme_r_definitions(tmp_path):
    params = {"tiny1": 1000, "tiny2": 2000}
    db = synthetic_db.build(tmp_path / "r.sqlite", sizes=params, conditions=("mnli",),
                            truth=lambda *k: 0.6, n=40, seeds=(0, 1))
    result = an.analyse(db)
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
    db = synthetic_db.build(tmp_path / "r.sqlite", sizes=params,
                            conditions=("multitask", "squad"),
                            truth=_truth_with_slope(-1.0, params), n=50, seeds=(0, 1),
                            incomplete=("tiny2", "multitask", "xquad"))
    result = an.analyse(db, primary=PRIMARY)
    missing = result.gains[("tiny2", "multitask", "xquad")]
    assert isinstance(missing, Missing)
    assert "tiny2/multitask/xquad/s0 failed (RuntimeError: synthetic failure)" in missing.reason
    for level in ("qa", "overall"):
        assert isinstance(result.gains[("tiny2", "multitask", level)], Missing)
        assert isinstance(result.rer[("tiny2", "multitask", level)], Missing)
    assert isinstance(result.scores[("tiny2", "multitask", "xquad")], Missing)
    # Unaffected numbers stay: the other size, the other condition, the other categories.
    assert isinstance(result.gains[("tiny1", "multitask", "xquad")], Est)
    assert isinstance(result.gains[("tiny2", "multitask", "classification")], Est)
    assert isinstance(result.gains[("tiny2", "squad", "overall")], Est)
    trend = result.trends[("multitask", "overall")]
    assert isinstance(trend, Missing) and "excluded: tiny2" in trend.reason
    assert result.answer.startswith("Not answerable yet for the overall XTREME-R gain of "
                                    "intermediate task multitask")


def test_missing_language_makes_a_cell_incomplete(tmp_path):
    params = {"tiny1": 10**6}
    db = synthetic_db.build(tmp_path / "r.sqlite", sizes=params, conditions=("mnli",),
                            truth=lambda *k: 0.5, n=20, targets=("xnli",))
    rows = [r for _, r in db.results("tiny1/mnli/xnli/s0") if r.language == "en"]
    db.record_results("tiny1/mnli/xnli/s0", rows)  # 'sw' lost
    result = an.analyse(db)
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
    result = an.analyse(db)
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
                            truth=truth, n=200, incomplete=("tiny1", "mnli", "tatoeba"))
    result = an.analyse(db)
    view = result.language_view("tiny1", "mnli")
    # Tatoeba (de, sw) failed: those languages are flagged, not averaged over other targets.
    assert isinstance(view["de"], Missing) and "tatoeba" in view["de"].reason
    assert isinstance(view["sw"], Missing) and isinstance(view["en"], Est)
    fit = an.gain_vs_share(view, mc4)
    assert fit.languages == ("en", "th")
    assert [e.split(" ")[0] for e in fit.excluded] == ["de", "sw"]
    db2 = synthetic_db.build(tmp_path / "r2.sqlite", sizes={"tiny1": 1000},
                             conditions=("mnli",), truth=truth, n=1500, seed=1, seeds=(0, 1))
    full = an.analyse(db2).language_view("tiny1", "mnli")
    fit = an.gain_vs_share(full, mc4)
    assert fit.slope.point == pytest.approx(-4.0, abs=2.0)  # ~3 sd of the estimate
    lo, hi = fit.slope.ci()
    assert lo < -4.0 < hi
