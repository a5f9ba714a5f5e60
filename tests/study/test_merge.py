"""One study across sizes run by several coordinators: each runs some sizes into its own
database, copied to the study directory as cells end; a lost coordinator restarts from its
copy; `merge` puts the copies into one database, and refuses (writing nothing) a source made
under another recipe or primary endpoint, listing the differences. Fake executors: no training."""
import os
from pathlib import Path

import pytest

from study import __main__ as cli
from study import cell as cell_mod
from study import db_copies, experiment, fingerprint, grid, merge, runner
from study.db import ResultsDB
from tests.study.test_runner import CPU, ONE_SEED, FakeExecutor, Quiet

TWO_SIZES = [Path(CPU).read_text(), ONE_SEED,
             "experiment.study.conditions = ['baseline', 'xitt.inter.qqp']",
             "experiment.study.primary_endpoint = "
             "{'condition': 'xitt.inter.qqp', 'measure': 'overall_gain'}",
             "experiment.study.targets = ['xnli']"]


def _exp_file(tmp_path, name="study", *extra):
    path = tmp_path / f"{name}.gin"
    path.write_text("\n".join([*TWO_SIZES, *extra]) + "\n")
    return str(path)


def _coordinator(exp_path, study_dir, local_dir, sizes, fail=()):
    """What `python -m study run EXP --sizes S --local_dir L` does, with a fake executor."""
    exp = experiment.select_sizes(experiment.load(exp_path), sizes)
    db_path = os.path.join(local_dir, cell_mod.DB_FILE)
    copy = db_copies.copy_path(str(study_dir), db_copies.coordinator_name(sizes.split(",")))
    started_from_copy = not os.path.exists(db_path) and db_copies.fetch(copy, db_path)
    with ResultsDB(db_path) as db:
        ex = FakeExecutor(db, exp, study_dir, fail=fail)
        summary = runner.run(exp, str(study_dir), ex, db=db,
                             progress=Quiet(len(grid.build(exp, str(study_dir)))),
                             on_cell_end=lambda: db_copies.publish(db_path, copy))
    return ex.ran, summary, started_from_copy


def test_two_coordinators_of_different_sizes_merge_into_one_database(tmp_path, capsys):
    exp_path, study_dir = _exp_file(tmp_path), tmp_path / "study"
    ran_a, _, _ = _coordinator(exp_path, study_dir, tmp_path / "a", "tiny")
    ran_b, _, _ = _coordinator(exp_path, study_dir, tmp_path / "b", "tiny2",
                               fail={"tiny2/s0/baseline/xnli"})
    assert {c.split("/")[0] for c in ran_a} == {"tiny"} and len(ran_a) == 3
    assert {c.split("/")[0] for c in ran_b} == {"tiny2"}
    copies = db_copies.list_copies(str(study_dir))
    assert [Path(c).name for c in copies] == ["tiny.sqlite", "tiny2.sqlite"]
    assert cli.main(["merge", exp_path, "--study_dir", str(study_dir), *copies]) == 0
    assert "merged 2 database(s)" in capsys.readouterr().out
    assert cli.main(["merge", exp_path, "--study_dir", str(study_dir)]) == 0  # default: copies
    assert "merged 2 database(s)" in capsys.readouterr().out
    with ResultsDB(study_dir / cell_mod.DB_FILE, create=False) as db:
        done = {r.cell_id for r in db.cells(status="done")}
        assert done == set(ran_a) | set(ran_b) - {"tiny2/s0/baseline/xnli"}
        assert db.get_cell("tiny2/s0/baseline/xnli").status == "failed"
        assert runner.PRIMARY_ENDPOINT_META in db.meta()
    # the failed cell re-run by its coordinator: a second merge takes the finished one
    ran_b2, _, _ = _coordinator(exp_path, study_dir, tmp_path / "b", "tiny2")
    assert ran_b2 == ["tiny2/s0/baseline/xnli"]
    counts = merge.merge(experiment.load(exp_path), str(study_dir), copies,
                         str(study_dir / cell_mod.DB_FILE))
    assert counts["done"] == 6


def test_merge_refuses_a_source_made_under_another_recipe_and_writes_nothing(tmp_path):
    study_dir = tmp_path / "study"
    _coordinator(_exp_file(tmp_path), study_dir, tmp_path / "a", "tiny")
    other = _exp_file(tmp_path, "lr", "experiment.study.gin_bindings = ['LEARNING_RATE = 0.02']")
    _coordinator(other, study_dir, tmp_path / "b", "tiny2")
    into = tmp_path / "merged.sqlite"
    with pytest.raises(fingerprint.RecipeChanged) as refused:
        merge.merge(experiment.load(_exp_file(tmp_path)), str(study_dir),
                    db_copies.list_copies(str(study_dir)), str(into))
    text = str(refused.value)
    assert "tiny2.sqlite: 3 finished cell(s) made under other settings" in text
    assert "LEARNING_RATE: 0.02 -> 0.01 (3 cells)" in text and "tiny.sqlite:" not in text
    assert not into.exists()  # nothing written


def test_a_lost_coordinator_restarts_from_its_copy_and_loses_nothing(tmp_path):
    exp_path, study_dir = _exp_file(tmp_path), tmp_path / "study"
    ran, _, from_copy = _coordinator(exp_path, study_dir, tmp_path / "a", "tiny,tiny2",
                                     fail={"tiny2/s0/qqp"})
    assert len(ran) == 5 and not from_copy  # tiny2/s0/qqp/xnli blocked
    os.remove(tmp_path / "a" / cell_mod.DB_FILE)  # the machine is gone
    ran2, summary, from_copy = _coordinator(exp_path, study_dir, tmp_path / "new", "tiny,tiny2")
    assert from_copy and ran2 == ["tiny2/s0/qqp", "tiny2/s0/qqp/xnli"]
    assert len(summary.done) == 6


def test_publish_writes_a_consistent_copy_atomically(tmp_path):
    src = tmp_path / "db.sqlite"
    with ResultsDB(src) as db:
        db.set_meta("k", "v")
    dest = tmp_path / "copies" / "x.sqlite"
    db_copies.publish(str(src), str(dest))
    assert sorted(os.listdir(dest.parent)) == ["x.sqlite"]  # no temporary left behind
    with ResultsDB(dest, create=False) as copy:
        assert copy.meta()["k"] == "v"
    with pytest.raises(FileExistsError):
        db_copies.fetch(str(dest), str(src))
