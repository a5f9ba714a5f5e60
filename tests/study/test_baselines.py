"""Published mT5 baselines: the data file against the reference, its errors, the table."""

import pathlib
import re
import types

import pytest

from study import baselines as bl
from study.db import ResultsDB
from tests.study import synthetic_db
from xitt_tasks import languages as xlang

REFERENCE = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "mt5.md"

# Copied from ../shared/reference/mt5.md ("Published zero-shot results per size"),
# independent of the module and the data file under test.
MT5_TABLE = """\
| mT5-Small | 67.5 | 82.4 | 50.5 | 58.1 | 54.6 | 36.4 |
| mT5-Base | 75.4 | 86.4 | 55.7 | 67.0 | 64.6 | 59.1 |
| mT5-Large | 81.1 | 88.9 | 58.5 | 77.8 | 71.2 | 68.4 |
| mT5-XL | 82.9 | 89.6 | 65.5 | 79.5 | 73.5 | 77.8 |
| mT5-XXL | 85.0 | 90.0 | 69.2 | 82.5 | 76.0 | 82.0 |"""
MT5_COLUMNS = (("xnli", "accuracy"), ("pawsx", "accuracy"), ("wikiann", "f1"), ("xquad", "f1"),
               ("mlqa", "f1"), ("tydiqa", "f1"))
EARLIER_TYDIQA = "an earlier table had 35.2 / 57.2 / 69.9 / 75.9 / 80.8."


def _reference_values():
    out = {}
    for line in MT5_TABLE.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        size = cells[0].removeprefix("mT5-").lower()
        for (target, metric), text in zip(MT5_COLUMNS, cells[1:]):
            out[(size, target, metric)] = float(text)
    return out


def _by_key(rows, source):
    return {(r.size, r.target, r.metric): r for r in rows if r.source == source}


def test_data_file_holds_the_reference_numbers():
    rows = bl.load_published()
    paper = _by_key(rows, "mt5_paper")
    expected = _reference_values()
    assert len(expected) == 30
    for key, value in expected.items():
        assert paper[key].value == value, key
        assert paper[key].language_set == "xtreme" and paper[key].selection == "target_dev"
    numbers = {k for k, r in paper.items() if r.value is not None}
    assert numbers == set(expected)  # no number in the file that the reference does not hold
    earlier = _by_key(rows, "mt5_paper_earlier")
    values = [float(v) for v in re.findall(r"\d+\.\d", EARLIER_TYDIQA)]
    assert {k: r.value for k, r in earlier.items()} == {
        (s, "tydiqa", "f1"): v for s, v in zip(bl.SIZES, values)}


@pytest.mark.skipif(not REFERENCE.is_file(), reason="../shared/reference/mt5.md not here")
def test_transcription_is_the_reference_documents():
    text = REFERENCE.read_text(encoding="utf-8")
    for line in MT5_TABLE.splitlines():
        assert line in text
    assert EARLIER_TYDIQA in text


def test_every_target_of_the_study_is_published_or_marked_missing():
    rows = bl.load_published()
    for target in xlang.TASK_LANGUAGES:
        for size in bl.SIZES:
            hits = [r for r in rows if r.source == "mt5_paper" and r.target == target
                    and r.metric == bl.HEADLINE_METRIC[target] and r.size in (size, "all")]
            assert len(hits) == 1, (target, size)
    missing = {r.target for r in rows
               if r.value is None and r.metric == bl.HEADLINE_METRIC[r.target]}
    assert missing == {"udpos", "xcopa", "mewslix", "lareqa", "tatoeba"}


def test_xtreme_language_sets_are_xtreme_r_minus_its_additions():
    added = {"wikiann": {"qu", "pl", "uk", "az", "lt", "pa", "gu", "ro"}, "xquad": {"ro"}}
    for target, langs in bl.XTREME_LANGUAGES.items():
        if target == "pawsx":
            continue
        assert len(set(langs)) == len(langs)
        assert set(xlang.TASK_LANGUAGES[target]) - set(langs) == added.get(target, set())
        assert set(langs) <= set(xlang.TASK_LANGUAGES[target])
    assert len(bl.XTREME_LANGUAGES["wikiann"]) == 40 and len(bl.XTREME_LANGUAGES["xquad"]) == 11


_GOOD = "mt5_paper\tbase\txnli\taccuracy\t75.4\txtreme\ttest\ttarget_dev\t-"


@pytest.mark.parametrize("line, match", [
    ("mt5_paper\tbase\txnli\taccuracy\tabc\txtreme\ttest\ttarget_dev\t-",
     r":3: field value = 'abc': expected a number"),
    ("mt5_paper\tbase\txnli\taccuracy\t101\txtreme\ttest\ttarget_dev\t-",
     r":3: field value = '101': expected points in \[0, 100\]"),
    ("mt5_paper\thuge\txnli\taccuracy\t75.4\txtreme\ttest\ttarget_dev\t-",
     r":3: field size = 'huge': expected one of small"),
    ("mt5_paper\tall\txnli\taccuracy\t75.4\txtreme\ttest\ttarget_dev\t-",
     r":3: field size = 'all'"),
    ("mt5_paper\tbase\txnli\tf1\t75.4\txtreme\ttest\ttarget_dev\t-",
     r":3: field metric = 'f1': expected one of accuracy for xnli"),
    ("mt5_paper\tbase\tmewslix\tmap@20\t40\txtreme\ttest\ttarget_dev\t-",
     r":3: field language_set = 'xtreme'"),
    ("blog\tbase\txnli\taccuracy\t75.4\txtreme\ttest\ttarget_dev\t-",
     r":3: field source = 'blog'"),
    ("mt5_paper\tbase\txnli\taccuracy\t75.4\txtreme\ttest", r":3: 7 tab-separated fields"),
    (_GOOD, r":3: \('mt5_paper', 'base', 'xnli', 'accuracy'\) is listed twice \(first on "
     r"line 2\)"),
])
def test_a_bad_row_names_file_line_field_and_value(tmp_path, line, match):
    path = tmp_path / "published.tsv"
    path.write_text("\t".join(bl.COLUMNS) + "\n" + _GOOD + "\n" + line + "\n")
    with pytest.raises(bl.BaselinesError, match=re.escape(str(path)) + match):
        bl.load_published(path)


def test_a_bad_header_is_refused(tmp_path):
    path = tmp_path / "published.tsv"
    path.write_text("# comment\nsource\tsize\n" + _GOOD + "\n")
    with pytest.raises(bl.BaselinesError, match=re.escape(f"{path}:2: header")):
        bl.load_published(path)


# ------------------------------------------------------------------ the table

SIZES = {"base": 582_400_000, "large": 1_229_600_000}
LANGS = {"xnli": xlang.TASK_LANGUAGES["xnli"], "wikiann": xlang.TASK_LANGUAGES["wikiann"],
         "xquad": ("en", "de", "ro"), "udpos": ("en", "de")}


def _truth(size, cond, target, lang):
    return 0.4 + 0.01 * (len(lang) + ord(lang[0]) % 7) + (0.1 if size == "large" else 0.0)


def _build(path, **kw):
    args = dict(sizes=SIZES, conditions=(), truth=_truth, n=20, seeds=(0, 1),
                targets=tuple(LANGS), data_source="full", langs=LANGS)
    args.update(kw)
    return synthetic_db.build(path, **args)


def _rows(text):
    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
            for line in table[1:]]


def _expected(db, size, target, metric, langs):
    """Independently: mean over seeds of the mean over `langs` of the DB's baseline rows."""
    per_seed = []
    for cell in db.cells():
        if cell.size == size and cell.target == target and cell.condition == "baseline":
            vals = {r.language: r.value for _, r in db.results(cell.cell_id)
                    if r.metric == metric}
            per_seed.append(sum(vals[lg] for lg in langs) / len(langs))
    return sum(per_seed) / len(per_seed)


def test_table_beside_our_baseline_on_the_published_languages(tmp_path):
    db = _build(tmp_path / "r.sqlite")
    text = bl.published_table(db)
    assert "selected each checkpoint on validation data that included target-language" in text
    rows = {(r["size"], r["target"]): r for r in _rows(text)}
    assert set(rows) == {(s, t) for s in SIZES for t in ("xnli", "wikiann", "xquad")}
    paper = {"base": {"xnli": 75.4, "wikiann": 55.7, "xquad": 67.0},
             "large": {"xnli": 81.1, "wikiann": 58.5, "xquad": 77.8}}
    for (size, target), row in rows.items():
        metric = "accuracy" if target == "xnli" else "f1"
        langs = [lg for lg in bl.XTREME_LANGUAGES[target] if lg in LANGS[target]]
        ours = _expected(db, size, target, metric, langs)
        assert row["metric"] == metric
        assert float(row["mT5 paper"]) == paper[size][target]
        assert row["ours (baseline)"] == f"{ours:.2f}"
        assert row["ours - paper"] == f"{ours - paper[size][target]:+.2f}"
        assert row["seeds"] == "2" and row["our split"] == "not recorded"
    assert rows[("base", "xnli")]["languages"] == "15 of 15"
    assert rows[("base", "wikiann")]["languages"] == "40 of 40; left out: az gu lt pa pl qu ro uk"
    assert rows[("large", "xquad")]["languages"] == (
        "2 of 11; not evaluated: ar el es hi ru th tr vi zh; left out: ro")
    assert "No published mT5 number for: udpos." in text
    db.close()


def test_incomplete_baseline_is_marked_never_averaged(tmp_path):
    db = _build(tmp_path / "r.sqlite", targets=("xnli",), incomplete=("base", "baseline", "xnli"))
    rows = {(r["size"], r["target"]): r for r in _rows(bl.published_table(db))}
    assert rows[("base", "xnli")]["ours (baseline)"] == "**incomplete**"
    assert rows[("base", "xnli")]["ours - paper"] == "-"
    assert rows[("large", "xnli")]["ours (baseline)"] not in ("**incomplete**", "-")
    db.close()


def test_experiment_names_the_split_and_flags_dev(tmp_path):
    db = _build(tmp_path / "r.sqlite", targets=("xnli", "xquad"))
    exp = types.SimpleNamespace(toy=False, data_source="full",
                                split_for=lambda t: "test" if t == "xquad" else "validation")
    rows = {(r["size"], r["target"]): r for r in _rows(bl.published_table(db, exp))}
    assert rows[("base", "xnli")]["our split"] == "validation (paper: test)"
    assert rows[("base", "xquad")]["our split"] == "test"
    db.close()


@pytest.mark.parametrize("kw", [dict(sizes={"tiny1": 1_500_000}),
                                dict(data_source="sample")])
def test_no_table_for_toy_studies(tmp_path, kw):
    db = _build(tmp_path / "r.sqlite", targets=("xnli",), **kw)
    assert bl.published_table(db) is None
    db.close()


def test_no_table_when_the_database_says_toy(tmp_path):
    db = _build(tmp_path / "r.sqlite", targets=("xnli",))
    db.set_meta("toy", "True")
    assert bl.published_table(db) is None
    exp = types.SimpleNamespace(toy=True, data_source="full", split_for=lambda t: "test")
    db.set_meta("toy", "False")
    assert bl.published_table(db, exp) is None
    with ResultsDB(tmp_path / "r.sqlite", create=False) as again:
        assert bl.published_table(again) is not None
    db.close()


def test_the_report_prints_the_published_table_for_a_real_scale_study(tmp_path):
    from study import report

    _build(tmp_path / "r.sqlite").close()
    text = report.write_report(tmp_path / "r.sqlite", tmp_path / "out").read_text()
    section = text[text.index("## Published mT5 baselines beside ours"):]
    assert {(r["size"], r["target"]) for r in _rows(section)} == {
        (s, t) for s in SIZES for t in ("xnli", "wikiann", "xquad")}
