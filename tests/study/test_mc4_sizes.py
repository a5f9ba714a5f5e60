"""The shipped mC4 table: every checked row equals the mT5 paper's table (as copied in the
bigscience-workshop/xmtf repository, plotstables/language_plot.py, commit 0085c4db9a93); a bad
file is refused naming the line."""

import pytest

from study import analysis as an

# language: (tokens B, pages M, mT5 %) from that copy of the paper's table; mC4's 'iw' and
# 'fil' are XTREME-R's 'he' and 'tl'.
PAPER = {
    "en": (2733, 3067, 5.67), "ru": (713, 756, 3.71), "es": (433, 416, 3.09),
    "de": (347, 397, 3.05), "fr": (318, 333, 2.89), "it": (162, 186, 2.43),
    "pt": (146, 169, 2.36), "pl": (130, 126, 2.15), "nl": (73, 96, 1.98),
    "tr": (71, 88, 1.93), "ja": (164, 87, 1.92), "vi": (116, 79, 1.87),
    "id": (69, 70, 1.80), "zh": (39, 55, 1.67), "fa": (52, 54, 1.67), "ar": (57, 53, 1.66),
    "ro": (52, 46, 1.58), "el": (43, 42, 1.54), "uk": (41, 39, 1.51), "hu": (39, 37, 1.48),
    "fi": (25, 27, 1.35), "bg": (22, 23, 1.29), "hi": (24, 19, 1.21), "ko": (26, 16, 1.14),
    "th": (11, 15, 1.14), "ms": (13, 13, 1.09), "he": (17, 12, 1.06), "lt": (11, 11, 1.04),
    "mr": (14, 7.8, 0.93), "bn": (7.3, 7.4, 0.91), "et": (6.9, 6.9, 0.89),
    "az": (4.4, 5.3, 0.82), "ta": (3.4, 3.5, 0.73), "kk": (3.1, 2.4, 0.65),
    "ka": (2.5, 2.3, 0.64), "af": (1.7, 2.2, 0.63), "ml": (1.8, 2.1, 0.62),
    "ur": (2.4, 1.9, 0.61), "eu": (1.4, 1.6, 0.57), "te": (1.3, 1.2, 0.52),
    "sw": (1.0, 1.0, 0.50), "my": (0.9, 0.8, 0.47), "gu": (0.8, 0.6, 0.43),
    "jv": (0.3, 0.6, 0.42), "pa": (0.6, 0.4, 0.37), "ht": (0.2, 0.3, 0.33),
    "yo": (0.05, 0.05, 0.20), "tl": (2.1, 2.1, 0.62),
}


def test_checked_rows_equal_the_papers_table():
    mc4 = an.load_mc4_sizes()
    checked = {lg: r for lg, r in mc4.items() if r.confidence == "checked"}
    assert sorted(checked) == sorted(PAPER)
    for lang, r in checked.items():
        assert (r.tokens_billions, r.pages_millions, r.mt5_percent) == PAPER[lang], lang
    # The four rows this file once had wrong.
    assert (mc4["ht"].tokens_billions, mc4["ht"].mt5_percent) == (0.2, 0.33)
    assert (mc4["jv"].pages_millions, mc4["jv"].mt5_percent) == (0.6, 0.42)
    assert (mc4["pa"].tokens_billions, mc4["pa"].pages_millions) == (0.6, 0.4)
    assert mc4["yo"].mt5_percent == 0.20


def test_every_xtreme_r_language_is_listed_and_two_are_absent():
    mc4 = an.load_mc4_sizes()
    from_benchmarks = ("af ar az bg bn de el en es et eu fa fi fr gu he hi ht hu id it ja jv ka "
                       "kk ko lt ml mr ms my nl pa pl pt qu ro ru sw ta te th tl tr uk ur vi wo "
                       "yo zh").split()
    assert sorted(mc4) == from_benchmarks
    assert {lg for lg, r in mc4.items() if r.confidence == "absent"} == {"qu", "wo"}


def test_bad_mc4_file_is_refused_naming_the_line(tmp_path):
    bad = tmp_path / "mc4.tsv"
    bad.write_text("# c\nlanguage\ttokens_billions\tpages_millions\tmt5_percent\tconfidence\n"
                   "en\t1\tmany\t5.67\tchecked\n")
    with pytest.raises(ValueError, match=r"mc4.tsv:3: pages_millions 'many'; expected a number"):
        an.load_mc4_sizes(bad)
    bad.write_text("language\ttokens_billions\tpages_millions\tmt5_percent\tconfidence\n"
                   "en\t1\t2\t5.67\tguessed\n")
    with pytest.raises(ValueError, match=r"mc4.tsv:2: confidence 'guessed'; expected one of"):
        an.load_mc4_sizes(bad)
