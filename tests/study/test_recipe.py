"""A changed recipe never silently reuses finished cells: each cell's fingerprint covers what
decides its result; a run refuses, naming the settings that differ, or re-runs exactly the
affected cells and their dependents; a comment or a new seed, size, condition or target changes
nothing finished; the primary endpoint is fixed once a cell has finished; a report never mixes
recipes. Fake executors (tests/study/test_runner.py): no training."""
import os
import sqlite3
from pathlib import Path

import pytest

from study import __main__ as cli
from study import cell as cell_mod
from study import experiment, fingerprint, grid, runner
from study.db import ResultsDB
from tests.study.test_runner import CPU, ONE_SEED, FakeExecutor, Quiet

# A copy of the toy experiment file, on a small grid (11 cells).
SMALL = [Path(CPU).read_text(), ONE_SEED,
         "experiment.study.sizes = {'tiny': 'gin/models/mt5_tiny.gin'}",
         "experiment.study.conditions = ['baseline', 'xitt.inter.qqp']",
         "experiment.study.condition_targets = {}",
         "experiment.study.primary_endpoint = "
         "{'condition': 'xitt.inter.qqp', 'measure': 'overall_gain'}",
         "experiment.study.targets = ['xnli', 'xcopa', 'xquad', 'tatoeba']",
         "experiment.study.tatoeba_encoders = ['xtreme_r']"]


def _exp_file(tmp_path, name, *extra):
    path = tmp_path / f"{name}.gin"
    path.write_text("\n".join([*SMALL, *extra]) + "\n")
    return str(path)


def _run(exp_path, study_dir, **kw):
    exp = experiment.load(exp_path)
    with ResultsDB(f"{study_dir}/{cell_mod.DB_FILE}") as db:
        ex = FakeExecutor(db, exp, study_dir)
        summary = runner.run(exp, str(study_dir), ex, db=db,
                             progress=Quiet(len(grid.build(exp, str(study_dir)))), **kw)
    return ex.ran, summary


@pytest.fixture()
def finished(tmp_path):
    """A study directory whose cells all finished under the small experiment (LR 0.01)."""
    exp_path = _exp_file(tmp_path, "study")
    study_dir = tmp_path / "study"
    ran, summary = _run(exp_path, study_dir)
    assert len(summary.done) == len(ran) == 11
    return exp_path, study_dir


def test_changed_learning_rate_refuses_the_run_naming_it(finished, tmp_path, capsys):
    """The issue's scenario: LEARNING_RATE 0.01 -> 0.02 in a copy of the experiment file."""
    exp_path, study_dir = finished
    text = Path(exp_path).read_text()
    assert text.count("gin_bindings = ['LEARNING_RATE = 0.01']") == 1
    changed = tmp_path / "changed.gin"
    changed.write_text(text.replace("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.02"))
    code = cli.main(["run", str(changed), "--study_dir", str(study_dir)])
    header, err = capsys.readouterr().err.strip().split("\n")  # 'study cpu_toy: sizes ...'
    assert code == 1 and header.startswith("study cpu_toy") and err.startswith("error: ")
    assert "11 finished cell(s)" in err and "LEARNING_RATE: 0.01 -> 0.02 (11 cells)" in err
    assert "--rerun_changed" in err
    with ResultsDB(f"{study_dir}/{cell_mod.DB_FILE}") as db:
        assert len(db.cells(status="done")) == 11  # nothing reset, nothing run
        assert db.meta()["experiment_file"] == os.path.abspath(exp_path)  # nor recorded


def test_a_comment_a_seed_a_condition_and_a_target_invalidate_nothing(finished, tmp_path):
    exp_path, study_dir = finished
    grown = _exp_file(tmp_path, "grown", "# a comment",
                      "experiment.study.seeds = [0, 1]",
                      "experiment.study.conditions = ['baseline', 'xitt.inter.qqp', "
                      "'xitt.inter.mnli']",
                      "experiment.study.targets = ['xnli', 'xcopa', 'xquad', 'tatoeba', "
                      "'udpos']")
    ran, summary = _run(grown, study_dir)
    old = {c.cell_id for c in grid.build(experiment.load(exp_path), str(study_dir))}
    assert ran and not set(ran) & old  # only the new cells ran
    assert len(summary.done) == len(old) + len(ran)


def test_rerun_changed_reruns_exactly_the_affected_cells_and_their_dependents(finished,
                                                                             tmp_path):
    _, study_dir = finished
    exp = experiment.load(_exp_file(tmp_path, "x"))
    cells = grid.build(exp, str(study_dir))
    marker = grid.by_id(cells)["tiny/s0/qqp/xquad"].model_dir
    os.makedirs(marker, exist_ok=True)
    # a target's steps: that target's cells only
    xnli_9 = ("experiment.study.target_steps = {'xnli': 9, 'xcopa': 6, 'udpos': 8, "
              "'wikiann': 8, 'xquad': 8, 'mlqa': 8, 'tydiqa': 8, 'mewslix': 6, 'lareqa': 6}")
    steps = _exp_file(tmp_path, "steps", xnli_9)
    ran, summary = _run(steps, study_dir, rerun_changed=True)
    assert ran == ["tiny/s0/baseline/xnli", "tiny/s0/qqp/xnli"] and len(summary.done) == 11
    assert os.path.isdir(marker)  # untouched cells keep their model directories
    # the intermediate phase's steps: the qqp model and everything trained from it
    steps = exp.intermediate_steps_for("xitt.inter.qqp")
    before = exp.pretrained_step + steps  # absolute, as the fingerprint records it
    inter = _exp_file(tmp_path, "inter", xnli_9,
                      f"experiment.study.intermediate_steps = {steps + 1}")
    with pytest.raises(fingerprint.RecipeChanged) as refused:
        _run(inter, study_dir)
    assert f"TRAIN_STEPS: {before} -> {before + 1} (1 cell)" in str(refused.value)
    assert "6 finished cell(s)" in str(refused.value)
    assert "1 more only through a changed dependency" in str(refused.value)  # Tatoeba
    ran, _ = _run(inter, study_dir, rerun_changed=True)
    assert ran == ["tiny/s0/qqp", *sorted(grid.dependents(cells, "tiny/s0/qqp"),
                                          key=[c.cell_id for c in cells].index)]
    assert not os.path.exists(marker)  # a re-run cell starts from an empty model dir


def test_primary_endpoint_cannot_change_once_a_cell_has_finished(finished, tmp_path):
    _, study_dir = finished
    other = _exp_file(tmp_path, "other",
                      "experiment.study.conditions = ['baseline', 'xitt.inter.qqp', "
                      "'xitt.inter.mnli']",
                      "experiment.study.primary_endpoint = "
                      "{'condition': 'xitt.inter.mnli', 'measure': 'overall_gain'}")
    with pytest.raises(ValueError, match=r"primary_endpoint = .*xitt.inter.mnli.* but this "
                                         r"study's finished cells were run under "
                                         r"primary_endpoint = .*xitt.inter.qqp.*cannot change"):
        _run(other, study_dir)
    fresh = tmp_path / "fresh"  # before any cell has finished it may still be chosen
    with ResultsDB(f"{fresh}/{cell_mod.DB_FILE}") as db:
        runner.materialize(experiment.load(_exp_file(tmp_path, "a")), [], db)
        runner.materialize(experiment.load(other), [], db)
        assert "xitt.inter.mnli" in db.meta()[runner.PRIMARY_ENDPOINT_META]


def test_report_refuses_a_database_made_under_another_recipe(finished, tmp_path, capsys):
    _, study_dir = finished
    changed = _exp_file(tmp_path, "lr", "experiment.study.gin_bindings = "
                                        "['LEARNING_RATE = 0.02']")
    code = cli.main(["report", "--study_dir", str(study_dir), "--experiment", changed])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "not reported (a report never mixes recipes)" in err
    assert "LEARNING_RATE: 0.01 -> 0.02" in err and not (study_dir / "report").exists()


def test_placement_is_not_part_of_the_recipe():
    """Moving a size to another slice (mesh, microbatches, decode batch) keeps its cells;
    changing what the model computes does not."""
    exp = experiment.load("gin/study/study_mt5.gin")
    cells = [c for c in grid.build(exp, "/s") if c.size == "xxl" and c.seed == 0]
    before = fingerprint.compute(exp, cells)
    moved = experiment.dataclasses.replace(exp, sizes=tuple(
        experiment.dataclasses.replace(s, gin_files=("gin/tpu/mt5_xxl_v5e_4x8.gin",))
        if s.name == "xxl" else s for s in exp.sizes))
    assert fingerprint.compute(moved, cells) == before
    dropout = experiment.dataclasses.replace(exp, gin_bindings=("DROPOUT_RATE = 0.0",))
    diffs = fingerprint.differences(before[cells[0].cell_id][1],
                                    fingerprint.compute(dropout, cells)[cells[0].cell_id][1])
    assert diffs == ["DROPOUT_RATE: 0.1 -> 0.0"]


def test_a_version_1_database_is_upgraded_and_its_cells_count_as_unfingerprinted(finished,
                                                                                tmp_path):
    exp_path, study_dir = finished
    path = f"{study_dir}/{cell_mod.DB_FILE}"
    conn = sqlite3.connect(path)
    conn.executescript("ALTER TABLE cells DROP COLUMN fingerprint; "
                       "ALTER TABLE cells DROP COLUMN settings; "
                       "ALTER TABLE cells DROP COLUMN data_root; "
                       "ALTER TABLE cells DROP COLUMN data_lock; UPDATE schema SET version = 1;")
    conn.close()
    with ResultsDB(path) as db:
        assert db.schema_version == 2 and db.get_cell("tiny/s0/qqp").fingerprint is None
    with pytest.raises(fingerprint.RecipeChanged, match="made before cells were fingerprinted"):
        _run(exp_path, study_dir)
