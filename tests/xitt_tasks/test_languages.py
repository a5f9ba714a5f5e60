"""Per-task language lists match the XTREME-R reference (benchmarks.md)."""
import pytest

from xitt_tasks import languages as L

# Copied from ../shared/reference/benchmarks.md, independent of the module under test.
UNION = ("af ar az bg bn de el en es et eu fa fi fr gu he hi ht hu id it ja jv ka kk ko lt ml "
         "mr ms my nl pa pl pt qu ro ru sw ta te th tl tr uk ur vi wo yo zh").split()
COUNTS = {"xnli": 15, "xcopa": 11, "udpos": 38, "wikiann": 48, "xquad": 12, "mlqa": 7,
          "tydiqa": 9, "mewslix": 11, "lareqa": 11, "tatoeba": 41}


def test_counts_and_no_duplicates():
    assert {t: len(v) for t, v in L.TASK_LANGUAGES.items()} == COUNTS
    for task, langs in L.TASK_LANGUAGES.items():
        assert len(set(langs)) == len(langs), task


def test_union_is_the_50_xtreme_r_languages():
    assert L.XTREME_R_LANGUAGES == tuple(sorted(UNION))
    assert len(L.XTREME_R_LANGUAGES) == 50


def test_reference_order():
    assert L.WIKIANN[:3] == ("ar", "he", "vi") and L.WIKIANN[-3:] == ("pa", "gu", "ro")
    assert L.UDPOS[-5:] == ("lt", "pl", "uk", "wo", "ro")
    assert L.XQUAD[0] == "en" and L.XQUAD[-1] == "ro"


def test_check_language():
    assert L.check_language("xnli", "sw") == "sw"
    with pytest.raises(ValueError, match=r"'ja' is not part of xnli \(15 languages: ar bg de"):
        L.check_language("xnli", "ja")
    with pytest.raises(ValueError, match="unknown XTREME-R task 'paws'"):
        L.check_language("paws", "de")
