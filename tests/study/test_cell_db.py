"""A cell's own database (study/cell_db.py): seeded from the study's with the cell and its
dependencies, written back by process 0 only, also when the cell fails, and imported back."""
import pytest

from study import cell_db, grid
from study.db import CellRecord, Result, ResultsDB


def _study(path):
    db = ResultsDB(path)
    db.upsert_cell(CellRecord("s/qqp", "intermediate", "tiny", 0, "qqp"))
    db.record_results("s/qqp", [], checkpoint_path="gs://b/qqp/checkpoint_4")
    db.upsert_cell(CellRecord("s/qqp/xnli", "target", "tiny", 0, "qqp", "xnli",
                              deps=("s/qqp",)))
    db.upsert_cell(CellRecord("s/other", "intermediate", "tiny", 0, "mnli"))
    return db


def test_seed_holds_the_cell_and_its_dependencies_only(tmp_path):
    dest = cell_db.path_for(str(tmp_path / "study"), "s/qqp/xnli")
    assert dest == str(tmp_path / "study" / "cell_dbs" / "s" / "qqp" / "xnli.sqlite")
    with _study(tmp_path / "results.sqlite") as db:
        cell_db.seed(db, "s/qqp/xnli", ("s/qqp",), dest)
    with ResultsDB(dest, create=False) as seeded:
        assert [c.cell_id for c in seeded.cells()] == ["s/qqp", "s/qqp/xnli"]
        assert seeded.get_cell("s/qqp").checkpoint_path == "gs://b/qqp/checkpoint_4"


def test_a_failure_is_written_back_by_process_zero_only(tmp_path):
    with _study(tmp_path / "results.sqlite") as db:
        for name in ("zero", "one"):
            cell_db.seed(db, "s/qqp/xnli", ("s/qqp",), str(tmp_path / f"{name}.sqlite"))
        for name, write_back in (("zero", True), ("one", False)):
            with pytest.raises(RuntimeError, match="boom"):
                with cell_db.opened(str(tmp_path / f"{name}.sqlite"), write_back=write_back) as c:
                    c.mark_running("s/qqp/xnli")
                    c.mark_failed("s/qqp/xnli", "RuntimeError: boom")
                    raise RuntimeError("boom")
        assert cell_db.collect(db, "s/qqp/xnli", str(tmp_path / "one.sqlite")).status == "pending"
        rec = cell_db.collect(db, "s/qqp/xnli", str(tmp_path / "zero.sqlite"))
        assert rec.status == "failed" and db.get_cell("s/qqp/xnli").error == "RuntimeError: boom"
        assert cell_db.collect(db, "s/qqp/xnli", str(tmp_path / "never.sqlite")) is None


def test_a_done_cell_comes_back_with_its_results(tmp_path):
    path = str(tmp_path / "cell.sqlite")
    with _study(tmp_path / "results.sqlite") as db:
        cell_db.seed(db, "s/qqp/xnli", ("s/qqp",), path)
        with cell_db.opened(path, write_back=True) as c:
            c.record_results("s/qqp/xnli", [Result("de", "accuracy", 40.0, 5)])
        cell_db.collect(db, "s/qqp/xnli", path)
        assert db.get_cell("s/qqp/xnli").status == "done"
        assert db.results("s/qqp/xnli") == [("s/qqp/xnli", Result("de", "accuracy", 40.0, 5))]
    with pytest.raises(FileNotFoundError, match="no cell database"):
        with cell_db.opened(str(tmp_path / "missing.sqlite"), write_back=True):
            pass


def test_object_store_paths_are_kept_as_urls():
    assert grid.absolute("gs://b/study") == "gs://b/study"
    assert cell_db.path_for("gs://b/study", "base/s0/mnli") == \
        "gs://b/study/cell_dbs/base/s0/mnli.sqlite"
    assert grid.absolute("rel").startswith("/")
