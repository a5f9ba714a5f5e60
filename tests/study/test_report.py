"""The report from a synthetic database: tables, valid PNGs, marks, banner, numbers = DB rows."""

import json
import math
import re
import struct
import zlib

import numpy as np
import pytest

from study import analysis as an
from study import report
from study.db import ResultsDB
from tests.study import synthetic_db

PARAMS = {"tiny1": 1_500_000, "tiny2": 6_000_000}


def _truth(size, cond, target, lang):
    if cond == "baseline":
        return 0.5
    return 0.5 + (6.0 - 2.0 * (math.log10(PARAMS[size]) - 6.0)) / 100.0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    db = synthetic_db.build(root / "results.sqlite", sizes=PARAMS,
                            conditions=("mnli", "squad", "multitask"), seeds=(0, 1),
                            truth=_truth, n=60, targets=("xnli", "xquad"),
                            incomplete=("tiny2", "squad", "xquad"))
    db.set_meta(an.PRIMARY_META, json.dumps({"condition": "xitt.inter.multitask",
                                             "measure": "overall_gain"}, sort_keys=True))
    db.close()
    path = report.write_report(root / "results.sqlite", root / "report")
    return root, path, path.read_text()


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _png_ok(path):
    """A complete, valid PNG: signature, IHDR of a positive size, every chunk's CRC, IEND."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, (path, kind)
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert width > 100 and height > 100
    return width, height


def test_report_has_every_section_and_valid_plots(built):
    root, path, text = built
    for heading in ("## Answer", "## Completeness", "## Gain over the baseline", "### tiny1",
                    "## Task scores", "## Trend with model size", "## Per category",
                    "## Per language", "## Cells"):
        assert heading in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {"gain_vs_size.png", "category_summary.png", "language_heatmap_tiny1.png",
            "language_heatmap_tiny2.png", "gain_vs_share_tiny2.png"} <= set(images)
    for name in images:
        _png_ok(path.parent / name)
    assert (path.parent / "rows.tsv").read_text().count("\n") == 1 + len(
        ResultsDB(root / "results.sqlite").results())


def test_banner_says_toy_models_and_sample_data(built):
    _, _, text = built
    assert "**These results come from toy model sizes (tiny1, tiny2;" in text
    assert "tiny1: 1,500,000 parameters" in text and "the shipped sample data" in text


def test_incomplete_cell_is_marked_not_averaged(built):
    _, _, text = built
    assert "| tiny2 | squad | xquad | incomplete: tiny2/squad/xquad/s0 failed " \
           "(RuntimeError: synthetic failure); tiny2/squad/xquad/s1 failed (RuntimeError: " \
           "synthetic failure) |" in text
    tiny2 = text.split("### tiny2")[1].split("###")[0]
    squad_row = next(line for line in tiny2.splitlines() if line.startswith("| squad |"))
    assert _cells(squad_row)[2] == "**incomplete**"  # the xquad column
    best_row = next(line for line in tiny2.splitlines() if line.startswith("| **best task"))
    assert _cells(best_row)[2] == "**incomplete**"
    assert "tiny2/squad/xquad/s0 | target | tiny2 | squad | xquad | 0 | official | failed: " \
           "RuntimeError: synthetic failure" in text
    # Categories need all their targets: only two of ten targets are in this study.
    assert "n/a" in text.split("### tiny1")[1]


def test_numbers_match_database_rows(built):
    root, _, text = built
    with ResultsDB(root / "results.sqlite") as db:
        rows = {(c, r.language, r.metric): r.value for c, r in db.results()}
    for size in PARAMS:
        for cond in ("baseline", "mnli"):
            xnli = np.mean([rows[(f"{size}/{cond}/xnli/s{s}", lang, "accuracy")]
                            for lang in synthetic_db.LANGS["xnli"] for s in (0, 1)])
            xquad = np.mean([(rows[(f"{size}/{cond}/xquad/s{s}", lang, "f1")]
                              + rows[(f"{size}/{cond}/xquad/s{s}", lang, "exact_match")]) / 2
                             for lang in synthetic_db.LANGS["xquad"] for s in (0, 1)])
            assert f"| {size} | {cond} | {xnli:.2f} | {xquad:.2f} |" in text
        base = np.mean([rows[(f"{size}/baseline/xnli/s{s}", lang, "accuracy")]
                        for lang in synthetic_db.LANGS["xnli"] for s in (0, 1)])
        mnli = np.mean([rows[(f"{size}/mnli/xnli/s{s}", lang, "accuracy")]
                        for lang in synthetic_db.LANGS["xnli"] for s in (0, 1)])
        section = text.split(f"### {size}")[1]
        mnli_row = next(line for line in section.splitlines() if line.startswith("| mnli |"))
        assert _cells(mnli_row)[1].startswith(f"{mnli - base:+.2f} [")


def test_answer_is_the_primary_endpoint_and_the_rest_is_exploratory(built):
    _, _, text = built
    answer = text.split("## Answer")[1].split("### Secondary")[0]
    assert "intermediate task multitask (the declared primary endpoint)" in answer
    assert "mnli" not in answer and "best" not in answer
    secondary = text.split("### Secondary series (exploratory)")[1].split("## Completeness")[0]
    assert "Holm-adjusted" in secondary and "- mnli, overall:" in secondary
    trend = text.split("## Trend with model size")[1].split("## Per category")[0]
    assert "| multitask | overall | **primary** | - | n/a: needs two complete sizes" in trend
    assert "| mnli | classification | exploratory |" in trend
    assert "Relative error reduction, %" in text
    assert "t intervals from the variance components of training seeds and test items" in text


def test_one_seed_report_says_no_interval(tmp_path):
    db = synthetic_db.build(tmp_path / "results.sqlite", sizes=PARAMS, conditions=("multitask",),
                            truth=_truth, n=20, targets=("xnli",))
    db.close()
    text = report.write_report(tmp_path / "results.sqlite", tmp_path / "report",
                               primary={"condition": "xitt.inter.multitask",
                                        "measure": "overall_gain"}).read_text()
    assert "One seed per arm: no interval anywhere" in text
    row = next(line for line in text.split("### tiny1")[1].splitlines()
               if line.startswith("| multitask |"))
    assert "[" not in row


def test_rerun_gives_identical_files(built, tmp_path):
    root, path, text = built
    again = report.write_report(root / "results.sqlite", tmp_path)
    assert again.read_text() == text
    for name in ("gain_vs_size.png", "language_heatmap_tiny1.png", "rows.tsv"):
        assert (tmp_path / name).read_bytes() == (path.parent / name).read_bytes()


def test_targets_under_both_recipes_get_a_raw_section(tmp_path):
    db_path = tmp_path / "results.sqlite"
    synthetic_db.build(db_path, sizes=PARAMS, conditions=("mnli",), truth=_truth, n=20,
                       targets=("xnli", "xcopa")).close()
    synthetic_db.build(db_path, sizes=PARAMS, conditions=("mnli",), n=20, targets=("xcopa",),
                       truth=lambda *k: 0.3 if k[1] == "baseline" else 0.6, recipe="raw",
                       seed=3).close()
    with ResultsDB(db_path) as db:
        official = an.analyse(db)
        raw = an.analyse(db, prefer="raw")
        assert official.recipes == {"xnli": "official", "xcopa": "official"}
        assert raw.recipes == {"xnli": "official", "xcopa": "raw"}
        assert raw.both_recipes == ["xcopa"]
        rows = {(c, r.language): r.value for c, r in db.results()}
    langs = synthetic_db.LANGS["xcopa"]
    expected = np.mean([rows[("tiny1/mnli/xcopa/s0/raw", lg)] - rows[("tiny1/baseline/xcopa/s0/raw",
                                                                      lg)] for lg in langs])
    assert raw.gains[("tiny1", "mnli", "xcopa")].point == pytest.approx(expected)
    text = report.write_report(db_path, tmp_path / "report").read_text()
    assert "Recipes: xnli official, xcopa official" in text
    section = text.split("## Raw recipe variants")[1].split("## Cells")[0]
    row = next(line for line in section.splitlines() if line.startswith("| tiny1 | mnli |"))
    assert _cells(row)[2] == report.fmt(raw.gains[("tiny1", "mnli", "xcopa")], 0.95)


def test_the_design_line_names_conditions_run_on_part_of_the_grid():
    from study.db import CellRecord

    def cell(cond, seed, target):
        return CellRecord(f"tiny/s{seed}/{cond}/{target}", "target", "tiny", seed, cond, target)

    full = [cell(c, s, t) for c in ("baseline", "multitask") for s in (0, 1)
            for t in ("xnli", "xquad")]
    assert report._design(full)[0].startswith("Design: every condition on every target (2)")
    partial = full + [cell("mnli_mlm", 0, "xnli")]
    text = "\n".join(report._design(partial))
    assert "| mnli_mlm | 0 | xnli |" in text and "| multitask | 1 | all |" in text
