"""`python -m xitt_tasks.prepare --check`: one table of complete / missing / wrong per (task,
split), with the file, the line and what was expected; exit 0 only when all are complete."""
import shutil

import pytest

from xitt_tasks.prepare import __main__ as cli
from xitt_tasks.prepare import check, counts, units
from xitt_tasks.sources import SAMPLE_ROOT


@pytest.fixture()
def root(tmp_path, monkeypatch):
    """A copy of the sample, whose counts become the 'official' ones for the test."""
    shutil.copytree(SAMPLE_ROOT, tmp_path / "root")
    monkeypatch.setattr(counts, "OFFICIAL", {})
    return tmp_path / "root"


def _by_task(results):
    return {(r.unit.task, r.unit.split): r for r in results}


def test_units_follow_the_registry_and_the_selection():
    every = units.units()
    assert {u.group for u in every} == set(units.groups())
    evals = units.units({"xquad", "xcopa"}, eval_only=True)
    assert {u.task for u in evals} == {f"xitt.xquad.{lang}" for lang in
                                       ("en es de el ru tr ar vi th zh hi ro".split())} | {
        f"xitt.xcopa.{lang}" for lang in "et ht id it qu sw ta th tr vi zh".split()}
    assert all(u.evaluation for u in evals)
    assert {u.task for u in units.units({"anli_plus"})} == {
        "xitt.inter.anli_r1", "xitt.inter.anli_r2", "xitt.inter.anli_r3", "xitt.inter.mnli",
        "xitt.inter.snli"}
    with pytest.raises(ValueError, match="unknown task.*xqad; expected a comma-separated"):
        units.parse_only("xquad,xqad")


def test_complete_missing_wrong_with_file_and_line(root, monkeypatch):
    (root / "xquad/xquad.de.json").unlink()
    text = (root / "xquad/xquad.es.json").read_text()
    (root / "xquad/xquad.es.json").write_text(text[: len(text) // 2])  # truncated
    lines = (root / "xcopa/val-et.jsonl").read_text().splitlines(keepends=True)
    (root / "xcopa/val-et.jsonl").write_text("".join(lines[:2]) + '{"premise": "x",\n')
    with open(root / "tatoeba/de-en.en", "a") as f:
        f.write("one more English line\n")  # misaligned with de-en.de
    monkeypatch.setattr(counts, "OFFICIAL", {("xitt.xquad.en", "test"): counts.Count(1190, "X")})
    results = _by_task(check.check(str(root), units.units({"xquad", "xcopa", "tatoeba"},
                                                          eval_only=True)))
    assert results["xitt.xquad.de", "test"].status == check.MISSING
    assert str(root / "xquad/xquad.de.json") in results["xitt.xquad.de", "test"].detail
    es = results["xitt.xquad.es", "test"]
    assert es.status == check.WRONG and f"{root}/xquad/xquad.es.json:" in es.detail
    et = results["xitt.xcopa.et", "validation"]
    assert et.status == check.WRONG and f"{root}/xcopa/val-et.jsonl:3: expected" in et.detail
    de = results["xitt.tatoeba.de", "test"]
    assert de.status == check.WRONG and "de-en.de" in de.detail and "de-en.en" in de.detail
    en = results["xitt.xquad.en", "test"]
    assert en.status == check.WRONG and en.expected == 1190 and "expected 1190 (X)" in en.detail
    assert results["xitt.xquad.ar", "test"].status == check.COMPLETE
    assert results["xitt.xquad.ar", "test"].detail.startswith("count not pinned")
    table = check.table(list(results.values()))
    assert table.splitlines()[0].split()[:5] == ["status", "task", "split", "examples",
                                                 "expected"]
    assert table.endswith("wrong")


def test_cli_exit_status(root, capsys):
    assert cli.main(["--check", "--data_dir", str(root), "--only", "xcopa", "--eval_only"]) == 0
    assert "22 checked: 22 complete, 0 missing, 0 wrong" in capsys.readouterr().out
    (root / "xcopa/test-zh.jsonl").unlink()
    assert cli.main(["--check", "--data_dir", str(root), "--only", "xcopa", "--eval_only"]) == 1
    out = capsys.readouterr().out
    assert "missing   xitt.xcopa.zh" in out and "1 missing" in out
    assert cli.main(["--check", "--data_dir", str(root), "--only", "nope"]) == 2


def test_official_counts_fail_the_sample():
    """The real counts stand: the shipped sample is not a complete data root."""
    results = check.check(str(SAMPLE_ROOT), units.units({"xquad"}, eval_only=True))
    assert {r.status for r in results} == {check.WRONG}
    assert all(r.expected == 1190 and r.examples < 10 for r in results)
