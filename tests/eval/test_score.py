"""`python -m eval.score`: official metrics per language, missing things stated, bad input as one
line naming the file (exit 2), and the published averages from per-task numbers."""

import json
import re

import pytest

from eval import score, xtreme_r
from xitt_tasks import languages

from .test_xtreme_r import MBERT, XLMR_LARGE


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def xnli_folders(root, n=4, wrong=0):
    """Gold and prediction folders for XNLI only: `n` labels per language, `wrong` of them
    mispredicted in every language."""
    labels = ["entailment", "neutral", "contradiction", "neutral"][:n]
    for lang in languages.XNLI:
        write(root / "labels" / "xnli" / f"test-{lang}.tsv", "".join(f"{x}\n" for x in labels))
        pred = ["contradiction"] * wrong + labels[wrong:]
        write(root / "predictions" / "xnli" / f"test-{lang}.tsv", "".join(f"{x}\n" for x in pred))
    return root / "predictions", root / "labels"


def run(capsys, *argv):
    code = score.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("numbers, published", [(MBERT, 54.1), (XLMR_LARGE, 65.3)])
def test_cli_reproduces_published_averages_from_task_numbers(tmp_path, capsys, numbers,
                                                             published):
    path = tmp_path / "numbers.json"
    path.write_text(json.dumps(numbers))
    code, out, _ = run(capsys, "--task_scores", str(path), "--json")
    assert code == 0
    assert round(json.loads(out)["overall"], 1) == pytest.approx(published)
    code, out, _ = run(capsys, "--task_scores", str(path))
    assert f"{xtreme_r.score_from_task_numbers(numbers).overall:.2f}" in out


def test_present_task_scored_and_missing_tasks_stated_not_averaged(tmp_path, capsys):
    preds, labels = xnli_folders(tmp_path, wrong=1)
    report = score.score_folder(preds, labels)
    assert report["tasks"]["xnli"]["score"] == pytest.approx(75.0)
    assert report["tasks"]["xnli"]["languages"]["de"]["accuracy"] == pytest.approx(75.0)
    assert report["categories"]["classification"] is None  # XCOPA missing
    assert report["overall"] is None
    assert len(report["missing_tasks"]) == 9
    assert "xcopa: no xcopa/ folder in" in " ".join(report["reasons"])
    code, out, _ = run(capsys, "--predictions", str(preds), "--labels", str(labels))
    assert code == 0
    assert "Missing (not averaged over):" in out and "overall: not computed" in out
    assert "  xnli     classification              15/15    75.00  accuracy 75.00" in out


def test_missing_language_file_is_an_error_or_reported_on_request(tmp_path, capsys):
    preds, labels = xnli_folders(tmp_path)
    (preds / "xnli" / "test-sw.tsv").unlink()
    code, out, err = run(capsys, "--predictions", str(preds), "--labels", str(labels))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "xnli/test-sw.tsv: missing language file" in err
    report = score.score_folder(preds, labels, allow_missing_languages=True)
    assert report["tasks"]["xnli"]["score"] is None
    assert report["tasks"]["xnli"]["missing_languages"] == ["sw"]
    assert "xnli: missing languages sw (14/15 present)" in report["reasons"]


@pytest.mark.parametrize("damage, message", [
    (lambda p: write(p / "xnli" / "test-de.tsv", "neutral\n"),
     r"predictions/xnli/test-de.tsv: 1 lines but the gold labels .*labels/xnli/test-de.tsv "
     r"have 4"),
    (lambda p: write(p / "pawsx" / "test-de.tsv", "1\n"),
     r"predictions/pawsx: unknown task folder; expected folders among xnli, xcopa"),
    (lambda p: write(p / "wikiann" / "test-de.tsv", "O\n"),
     r"predictions/wikiann: unknown task folder \(WikiANN's folder is 'panx'\)"),
    (lambda p: write(p / "xnli" / "test-xx.tsv", "neutral\n"),
     r"predictions/xnli/test-xx.tsv: unexpected file"),
    (lambda p: write(p / "mewslix" / "test-de.json", '{"a": ["Q1"],}'),
     r"predictions/mewslix/test-de.json:1:\d+: malformed JSON"),
])
def test_bad_input_is_one_line_naming_the_file(tmp_path, capsys, damage, message):
    preds, labels = xnli_folders(tmp_path)
    for lang in languages.MEWSLIX:
        write(labels / "mewslix" / f"test-{lang}.json", '{"a": ["Q1"]}')
        write(preds / "mewslix" / f"test-{lang}.json", '{"a": ["Q1"]}')
    damage(preds)
    code, out, err = run(capsys, "--predictions", str(preds), "--labels", str(labels))
    assert code == 2 and out == ""
    assert err.startswith("eval.score: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    with pytest.raises(ValueError):  # --verbose: the exception itself
        score.main(["--predictions", str(preds), "--labels", str(labels), "--verbose"])


def test_tag_sentences_must_align_with_gold(tmp_path):
    for lang in languages.UDPOS:
        write(tmp_path / "labels" / "udpos" / f"test-{lang}.tsv", "NOUN\nVERB\n\nPUNCT\n")
        write(tmp_path / "predictions" / "udpos" / f"test-{lang}.tsv", "NOUN\nVERB\n\nPUNCT\n")
    write(tmp_path / "predictions" / "udpos" / "test-de.tsv", "NOUN\n\nPUNCT\nX\n")
    with pytest.raises(score.LeaderboardError,
                       match=r"udpos/test-de.tsv:1: sentence 1 has 1 tags but the gold sentence "
                             r"\(.*udpos/test-de.tsv:1\) has 2"):
        score.score_folder(tmp_path / "predictions", tmp_path / "labels")


def test_qa_unanswered_ids_count_zero_and_extra_ids_are_ignored(tmp_path):
    for lang in languages.TYDIQA:
        write(tmp_path / "labels" / "tydiqa" / f"test-{lang}.json",
              json.dumps({"q1": ["U.S."], "q2": ["Paris", "the city of Paris"], "q3": ["x y"],
                          "q4": ["z"]}))
        write(tmp_path / "predictions" / "tydiqa" / f"test-{lang}.json",
              json.dumps({"q1": "U.S.", "q2": "city of Paris", "q3": "x", "extra": "z"}))
    report = score.score_folder(tmp_path / "predictions", tmp_path / "labels")
    en = report["tasks"]["tydiqa"]["languages"]["en"]
    # q1 EM; q2 EM against the second gold (article dropped); q3 F1 2/3; q4 unanswered: 0
    assert en["exact_match"] == pytest.approx(100 * 2 / 4)
    assert en["f1"] == pytest.approx(100 * (1 + 1 + 2 / 3) / 4)
    assert (en["num_unanswered"], en["num_extra"]) == (1, 1)
    assert report["tasks"]["tydiqa"]["score"] == pytest.approx((en["f1"] + en["exact_match"]) / 2)


def test_missing_gold_file_and_missing_gold_folder_are_named(tmp_path, capsys):
    preds, labels = xnli_folders(tmp_path)
    (labels / "xnli" / "test-ar.tsv").unlink()
    code, _, err = run(capsys, "--predictions", str(preds), "--labels", str(labels))
    assert code == 2 and "labels/xnli/test-ar.tsv: file not found" in err
    write(preds / "tatoeba" / "test-de.tsv", "0\n")
    code, _, err = run(capsys, "--predictions", str(preds), "--labels", str(labels))
    assert code == 2 and "labels/tatoeba: gold label folder not found" in err


@pytest.mark.slow
def test_command_line_error_is_exactly_one_line_on_stderr(tmp_path):
    """The real `python -m eval.score` process: no library start-up noise, one line, exit 2."""
    import os
    import subprocess
    import sys

    preds, labels = xnli_folders(tmp_path)
    write(preds / "xnli" / "test-de.tsv", "neutral\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-m", "eval.score", "--predictions", str(preds),
                           "--labels", str(labels)], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                          timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "predictions/xnli/test-de.tsv: 1 lines but the gold labels" in proc.stderr
