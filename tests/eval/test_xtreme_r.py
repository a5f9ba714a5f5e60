"""The XTREME-R score: task table, per-task means, categories, overall, nothing partial."""

import pytest

from eval import xtreme_r
from xitt_tasks import TARGETS, languages

# Published XTREME-R test numbers (shared/reference/benchmarks.md); QA as (F1, EM).
MBERT = {"xnli": 66.5, "xcopa": 56.1, "udpos": 70.9, "wikiann": 62.7, "xquad": (65.1, 50.4),
         "mlqa": (61.3, 44.1), "tydiqa": (58.4, 43.7), "mewslix": 38.6, "lareqa": 21.6,
         "tatoeba": 43.3}
XLMR_LARGE = {"xnli": 79.2, "xcopa": 69.2, "udpos": 75.0, "wikiann": 64.4, "xquad": (77.2, 61.6),
              "mlqa": (72.7, 54.2), "tydiqa": (64.3, 45.8), "mewslix": 45.7, "lareqa": 40.7,
              "tatoeba": 77.3}


@pytest.mark.parametrize("numbers, published", [(MBERT, 54.1), (XLMR_LARGE, 65.3)])
def test_published_averages_are_reproduced(numbers, published):
    summary = xtreme_r.score_from_task_numbers(numbers)
    assert round(summary.overall, 1) == pytest.approx(published)
    assert summary.missing_tasks == [] and summary.reasons == []


def test_mbert_category_means_by_hand():
    summary = xtreme_r.score_from_task_numbers(MBERT)
    assert summary.categories["classification"] == pytest.approx((66.5 + 56.1) / 2)
    assert summary.categories["qa"] == pytest.approx(
        ((65.1 + 50.4) / 2 + (61.3 + 44.1) / 2 + (58.4 + 43.7) / 2) / 3)
    assert summary.categories["retrieval"] == pytest.approx((38.6 + 21.6 + 43.3) / 3)


def test_table_covers_the_ten_targets_with_their_languages():
    assert [t.name for t in xtreme_r.TASKS] == list(TARGETS)
    assert {t.folder for t in xtreme_r.TASKS} == {
        "xnli", "xcopa", "udpos", "panx", "xquad", "mlqa", "tydiqa", "mewslix", "lareqa",
        "tatoeba"}
    assert xtreme_r.get_task("panx") is xtreme_r.get_task("wikiann")
    assert xtreme_r.get_task("xquad").languages == languages.XQUAD
    with pytest.raises(ValueError, match="unknown XTREME-R task 'pawsx'"):
        xtreme_r.get_task("pawsx")


def test_task_score_means_over_languages_and_qa_combines_f1_em():
    per_lang = {lang: {"accuracy": float(i)} for i, lang in enumerate(languages.XNLI)}
    result = xtreme_r.task_score("xnli", per_lang)
    assert result.score == pytest.approx(sum(range(15)) / 15)
    per_lang = {lang: {"f1": 80.0, "exact_match": 60.0 + i}
                for i, lang in enumerate(languages.MLQA)}
    result = xtreme_r.task_score("mlqa", per_lang)
    assert result.metric_means["exact_match"] == pytest.approx(63.0)
    assert result.score == pytest.approx((80.0 + 63.0) / 2)


def test_nothing_is_averaged_over_a_partial_set():
    per_lang = {lang: {"accuracy": 50.0} for lang in languages.XNLI[:-1]}
    result = xtreme_r.task_score("xnli", per_lang)
    assert result.score is None and result.missing_languages == ["zh"]
    with pytest.raises(ValueError, match="not part of the task"):
        xtreme_r.task_score("xnli", {"xx": {"accuracy": 1.0}})

    numbers = {k: v for k, v in MBERT.items() if k != "lareqa"}
    summary = xtreme_r.score_from_task_numbers(numbers)
    assert summary.overall is None
    assert summary.categories["retrieval"] is None
    assert summary.categories["qa"] is not None
    assert summary.missing_tasks == ["lareqa"]
    assert any("retrieval" in r and "lareqa" in r for r in summary.reasons)
    assert any(r.startswith("overall: not computed") for r in summary.reasons)


def test_bad_task_numbers_are_named():
    with pytest.raises(ValueError, match="xquad: QA task needs F1 and EM"):
        xtreme_r.score_from_task_numbers({"xquad": 70.0})
    with pytest.raises(ValueError, match="xnli: expected one number"):
        xtreme_r.score_from_task_numbers({"xnli": "high"})
