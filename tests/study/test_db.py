"""The results database: round trip, atomic replace, schema refusal, input checks."""

import dataclasses
import sqlite3

import numpy as np
import pytest

from study import db as dbm
from study.db import CellRecord, PerExample, Result, ResultsDB, SchemaVersionError


def _cell(cell_id="tiny1/mnli/xnli/s0", **kw):
    fields = dict(kind="target", size="tiny1", seed=0, condition="mnli", target="xnli")
    fields.update(kw)
    return CellRecord(cell_id, **fields)


def _xnli_results(values):
    results, per_example = [], []
    for lang, scores in values.items():
        scores = np.asarray(scores, dtype=np.float64)
        results.append(Result(lang, "accuracy", float(scores.mean()), len(scores)))
        per_example.append(PerExample(lang, "accuracy", [f"{lang}-{i}" for i in range(len(scores))],
                                      scores))
    return results, per_example


def test_round_trip_cells_results_and_per_example(tmp_path):
    path = tmp_path / "results.sqlite"
    cell = _cell(deps=("tiny1/mnli/s0",), params_count=1234, gin_config="a = 1\n",
                 retrieval_layer=3, retrieval_pooling="mean", data_source="sample")
    with ResultsDB(path) as db:
        db.upsert_cell(cell)
        db.set_meta("experiment_file", "study_cpu.gin")
        db.mark_running(cell.cell_id, start_time="2026-11-27T15:00:00Z", device_kind="cpu")
        results, per_example = _xnli_results({"en": [100, 0, 100], "sw": [0, 0, 100, 100]})
        ner = np.array([[1, 2, 2], [0, 1, 0], [3, 3, 4]], dtype=float)
        results.append(Result("en", "f1", dbm.aggregate(ner, "f1_counts"), 3))
        per_example.append(PerExample("en", "f1", ["a", "b", "c"], ner, "f1_counts"))
        db.record_results(cell.cell_id, results, per_example, checkpoint_path="/ck/5",
                          checkpoint_step=5, code_commit="abc", end_time="2026-11-27T15:01:00Z")
    with ResultsDB(path, create=False) as db:
        got = db.get_cell(cell.cell_id)
        assert got == CellRecord(**{**cell.__dict__, "status": "done", "device_kind": "cpu",
                                    "start_time": "2026-11-27T15:00:00Z",
                                    "end_time": "2026-11-27T15:01:00Z",
                                    "checkpoint_path": "/ck/5", "checkpoint_step": 5,
                                    "code_commit": "abc"})
        key = lambda r: (r.language, r.metric)  # noqa: E731
        assert [r for _, r in db.results(cell.cell_id)] == sorted(results, key=key)
        assert db.per_example(cell.cell_id, "sw", "accuracy") == per_example[1]
        pe = db.per_example(cell.cell_id, "en", "f1")
        assert pe == per_example[2] and pe.scores.shape == (3, 3)
        assert dbm.aggregate(pe.scores, "f1_counts") == pytest.approx(100 * 2 * 4 / (6 + 6))
        assert db.meta()["experiment_file"] == "study_cpu.gin"
        assert db.per_example(cell.cell_id, "de", "accuracy") is None


def test_rerecording_replaces_rows_atomically(tmp_path):
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.upsert_cell(_cell())
        first = _xnli_results({"en": [100, 0], "de": [0, 0], "fr": [100, 100]})
        db.record_results("tiny1/mnli/xnli/s0", *first)
        second = _xnli_results({"en": [100, 100, 100]})
        db.record_results("tiny1/mnli/xnli/s0", *second)
        assert [r for _, r in db.results()] == second[0]
        assert db.per_example_keys() == [("tiny1/mnli/xnli/s0", "en", "accuracy")]
        # A bad re-record (mean of scores disagrees with the value) changes nothing.
        bad_results = [Result("en", "accuracy", 10.0, 1)]
        bad_pe = [PerExample("en", "accuracy", ["x"], [50.0])]
        with pytest.raises(ValueError, match="aggregate .* to 50.0 but the Result says 10.0"):
            db.record_results("tiny1/mnli/xnli/s0", bad_results, bad_pe)
        assert [r for _, r in db.results()] == second[0]
        # A failure inside the transaction (unknown cell in the SQL) rolls back too.
        with pytest.raises(KeyError, match="not in results database"):
            db.record_results("nope", *second)
        assert [c for c, _ in db.results()] == ["tiny1/mnli/xnli/s0"]


def test_upsert_keeps_results_and_status_changes(tmp_path):
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.upsert_cell(_cell())
        db.record_results("tiny1/mnli/xnli/s0", *_xnli_results({"en": [100.0]}))
        db.upsert_cell(_cell(status="done", code_commit="new"))
        assert len(db.results()) == 1
        db.mark_failed("tiny1/mnli/xnli/s0", "RuntimeError: out of memory")
        assert db.get_cell("tiny1/mnli/xnli/s0").error == "RuntimeError: out of memory"
        assert [c.cell_id for c in db.cells(status="failed")] == ["tiny1/mnli/xnli/s0"]
        db.mark_pending("tiny1/mnli/xnli/s0")
        assert db.get_cell("tiny1/mnli/xnli/s0").error is None
        with pytest.raises(KeyError, match="'other' is not in results database"):
            db.mark_running("other")
        db.delete_cell("tiny1/mnli/xnli/s0")
        assert db.results() == [] and db.per_example_keys() == []


def test_other_schema_version_is_refused_naming_file_and_versions(tmp_path):
    path = tmp_path / "old.sqlite"
    ResultsDB(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema SET version = 0")
    with pytest.raises(SchemaVersionError, match=rf"{path} has schema version 0; this code reads "
                                                 rf"version {dbm.SCHEMA_VERSION}"):
        ResultsDB(path)


def test_foreign_sqlite_and_non_sqlite_files_are_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(SchemaVersionError, match="no 'schema' table"):
        ResultsDB(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_text("this is not a database, just some text that is long enough" * 20)
    with pytest.raises(SchemaVersionError, match="not an SQLite file"):
        ResultsDB(junk)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ResultsDB(tmp_path / "missing.sqlite", create=False)


@pytest.mark.parametrize("pe, message", [
    (PerExample("en", "accuracy", ["a", "a"], [100.0, 100.0]), "duplicate example ids"),
    (PerExample("en", "accuracy", ["a"], [100.0, 100.0]), "1 example ids for 2 scores"),
    (PerExample("de", "accuracy", ["a"], [100.0]), "without a Result"),
    (PerExample("en", "accuracy", ["a", "b"], [100.0, 100.0], "median"), "aggregation 'median'"),
    (PerExample("en", "accuracy", ["a", "b"], [[1, 1, 1], [1, 1, 1]], "mean"), r"shape \(2, 3\)"),
])
def test_bad_per_example_is_refused_before_writing(tmp_path, pe, message):
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.upsert_cell(_cell())
        with pytest.raises(ValueError, match=message):
            db.record_results("tiny1/mnli/xnli/s0", [Result("en", "accuracy", 100.0, 2)], [pe])
        assert db.results() == [] and db.get_cell("tiny1/mnli/xnli/s0").status == "pending"


def test_bad_results_and_cells_are_refused(tmp_path):
    with ResultsDB(tmp_path / "r.sqlite") as db:
        db.upsert_cell(_cell())
        with pytest.raises(ValueError, match="recorded twice"):
            db.record_results("tiny1/mnli/xnli/s0", [Result("en", "f1", 1.0, 1)] * 2)
        with pytest.raises(ValueError, match="expected a finite number"):
            db.record_results("tiny1/mnli/xnli/s0", [Result("en", "f1", float("nan"), 1)])
        with pytest.raises(ValueError, match="unknown provenance field"):
            db.record_results("tiny1/mnli/xnli/s0", [], colour="red")
    with pytest.raises(ValueError, match="status 'finished'"):
        _cell(status="finished")


def test_batch_is_one_transaction_and_rolls_back_whole(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultsDB(path) as db:
        with pytest.raises(RuntimeError, match="midway"):
            with db.batch():
                db.upsert_cell(_cell("a"))
                db.upsert_cell(_cell("b"))
                raise RuntimeError("midway")
        assert db.cells() == []
        with db.batch():
            db.upsert_cell(_cell("a"))
            db.record_results("a", *_xnli_results({"en": [100.0, 0.0]}))
        # A second connection (another run-cell process) sees the committed batch.
        with ResultsDB(path) as other:
            assert [c.cell_id for c in other.cells(status="done")] == ["a"]
            other.mark_failed("a", "boom")
        assert db.get_cell("a").status == "failed"


def test_import_cell_copies_a_cell_run_elsewhere_exactly(tmp_path):
    done, failed = _cell(params_count=7, deps=("tiny1/mnli/s0",)), _cell("tiny1/mnli/s0",
                                                                       kind="intermediate")
    with ResultsDB(tmp_path / "cell.sqlite") as remote, ResultsDB(tmp_path / "main.sqlite") as db:
        remote.upsert_cell(done)
        remote.mark_running(done.cell_id, start_time="2026-12-02T01:00:00Z", device_kind="TPU v5")
        results, per_example = _xnli_results({"en": [100, 0, 100], "sw": [0, 100]})
        remote.record_results(done.cell_id, results, per_example, checkpoint_path="gs://b/ck",
                              checkpoint_step=9, end_time="2026-12-02T02:00:00Z")
        remote.upsert_cell(failed)
        remote.mark_failed(failed.cell_id, "RuntimeError: preempted twice")
        db.upsert_cell(dataclasses.replace(done, status="running"))  # what the runner holds

        assert db.import_cell(remote, done.cell_id) == remote.get_cell(done.cell_id)
        assert db.get_cell(done.cell_id) == remote.get_cell(done.cell_id)
        assert db.get_cell(done.cell_id).status == "done"
        assert db.results(done.cell_id) == remote.results(done.cell_id)
        for lang in ("en", "sw"):
            assert db.per_example(done.cell_id, lang, "accuracy") == \
                remote.per_example(done.cell_id, lang, "accuracy")
        assert db.import_cell(remote, failed.cell_id).status == "failed"
        assert db.get_cell(failed.cell_id).error == "RuntimeError: preempted twice"
        with pytest.raises(KeyError, match="tiny1/none"):
            db.import_cell(remote, "tiny1/none")
