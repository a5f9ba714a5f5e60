"""The study on TPU executors end to end, with `sky` replaced by a stand-in that runs each
task's `run` command on this machine: the study runner keeps several jobs in flight, each cell
runs against its own database (seeded with its dependencies' records, study/cell_db.py), and
what the cell recorded reaches the study's database. The slow test runs the real `python -m
study run-cell` commands of a reduced grid this way and gets the numbers of a local run."""
import io
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from study import cell_db, experiment, grid, runner
from study.db import PerExample, Result, ResultsDB
from tpu_scripts import executor, launch

REPO = Path(__file__).resolve().parents[2]
TINY_TPU = "tests/tpu_scripts/mt5_tiny_v5e_2x2.gin"


class FakeSky(launch.Runner):
    """`sky jobs launch TASK` runs the task's command (through `run_job`) before returning;
    `sky jobs queue` lists every launched job with how it ended."""

    def __init__(self, run_job):
        super().__init__(dry_run=False, out=io.StringIO())
        self.run_job, self.ended, self.lock = run_job, {}, threading.Lock()
        self.in_flight = self.most_in_flight = 0

    def run(self, argv, *, check=True, capture=False):
        if argv[:3] == ["sky", "jobs", "launch"]:
            name = argv[argv.index("--name") + 1]
            task = yaml.safe_load(Path(argv[-1]).read_text())
            with self.lock:
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
            ok = self.run_job(shlex.split(task["run"]))
            with self.lock:
                self.in_flight -= 1
                self.ended[name] = "SUCCEEDED" if ok else "FAILED"
            return ""
        if argv[:3] == ["sky", "jobs", "queue"]:
            with self.lock:
                return "\n".join(f"7 {n} 1m {s}" for n, s in self.ended.items())
        raise AssertionError(f"unexpected command {argv}")


class Quiet(runner.Progress):
    def __init__(self, total):
        super().__init__(total, stream=open(os.devnull, "w"))


def _experiment(tmp_path, *lines):
    path = tmp_path / "exp.gin"
    path.write_text("\n".join(["include 'gin/study/study_cpu.gin'",
                               "experiment.study.sizes = {'tiny': 'gin/models/mt5_tiny.gin'}",
                               *lines]) + "\n")
    return experiment.load(str(path))


def _run_study(exp, study_dir, local_db, run_job, workers=2):
    sky = FakeSky(run_job)
    dbs = executor.CellDatabases(local_db, str(study_dir))
    place = {"tiny": executor.Placement.for_config(TINY_TPU, "proj")}
    pool = [executor.SkyPilotExecutor(place, study_dir / "tasks", runner=sky, databases=dbs,
                                      poll_s=0.0, sleep=lambda s: None)
            for _ in range(workers)]
    with ResultsDB(local_db) as db:
        summary = runner.run(exp, str(study_dir), pool, db=db,
                             progress=Quiet(len(grid.build(exp, str(study_dir)))))
    return sky, summary


def _arg(argv, flag):
    return argv[argv.index(flag) + 1]


def test_cells_run_against_their_own_databases_and_land_in_the_studys(tmp_path):
    exp = _experiment(tmp_path, "experiment.study.conditions = ['baseline', 'xitt.inter.qqp']",
                      "experiment.study.targets = ['xnli', 'xquad', 'tatoeba']")
    study_dir, local_db = tmp_path / "bucket" / "study", tmp_path / "here" / "results.sqlite"
    seen, fail = {}, {"tiny/s0/baseline/xquad"}

    def fake_cell(argv):  # what run-cell does to its database, without training
        cell_id, path = _arg(argv, "--cell"), _arg(argv, "--db")
        assert _arg(argv, "--study_dir") == str(study_dir)
        with cell_db.opened(path, write_back=True) as db:
            seen[cell_id] = {d: db.get_cell(d) for d in db.get_cell(cell_id).deps}
            db.mark_running(cell_id)
            if cell_id in fail:
                db.mark_failed(cell_id, "RuntimeError: out of HBM")
                return False
            db.record_results(cell_id, [Result("en", "accuracy", 50.0, 2)],
                              [PerExample("en", "accuracy", ["a", "b"], [0.0, 100.0])],
                              checkpoint_path=f"gs://b/{cell_id}/checkpoint_4")
        return True

    sky, summary = _run_study(exp, study_dir, local_db, fake_cell)
    cells = grid.build(exp, str(study_dir))
    assert sky.most_in_flight == 2  # two jobs side by side
    blocked = grid.dependents(cells, "tiny/s0/baseline/xquad")
    assert summary.failed == {"tiny/s0/baseline/xquad": "RuntimeError: out of HBM"}
    assert set(summary.blocked) == blocked
    assert set(summary.done) == {c.cell_id for c in cells} - blocked - set(fail)
    assert len(summary.done) > 4
    with ResultsDB(local_db) as db:
        for cell in cells:
            if cell.cell_id not in summary.done:
                continue
            # each ran after its dependencies, seeing them done with their checkpoints
            assert set(seen[cell.cell_id]) == set(cell.deps)
            for dep, rec in seen[cell.cell_id].items():
                assert rec.status == "done" and rec.checkpoint_path == f"gs://b/{dep}/checkpoint_4"
            assert db.results(cell.cell_id) == [(cell.cell_id, Result("en", "accuracy", 50.0, 2))]
            assert list(db.per_example(cell.cell_id, "en", "accuracy").scores) == [0.0, 100.0]
    # a rerun launches only what is not done: the failed cell and what it blocked
    rerun, fail = [], set()
    sky2, summary2 = _run_study(exp, study_dir, local_db,
                                lambda argv: rerun.append(_arg(argv, "--cell")) or
                                fake_cell(argv))
    assert set(rerun) == {"tiny/s0/baseline/xquad"} | blocked
    assert len(summary2.done) == len(cells)


def test_a_job_that_dies_before_recording_fails_its_cell_with_the_reason(tmp_path):
    exp = _experiment(tmp_path, "experiment.study.conditions = ['baseline']",
                      "experiment.study.targets = ['xnli']")
    study_dir, local_db = tmp_path / "study", tmp_path / "results.sqlite"
    sky, summary = _run_study(exp, study_dir, local_db, lambda argv: False, workers=1)
    (cell,) = grid.build(exp, str(study_dir))
    name = executor.node_name(cell.cell_id)
    assert summary.failed == {cell.cell_id: f"managed job {name}: FAILED (sky jobs logs --name "
                                            f"{name}); cell pending: no error text"}


def test_run_cell_with_model_dirs_on_an_object_store_needs_its_own_database(tmp_path, capsys):
    from study import __main__ as cli

    exp = tmp_path / "exp.gin"
    exp.write_text("include 'gin/study/study_cpu.gin'\n")
    assert cli.main(["run-cell", str(exp), "--cell", "tiny/s0/baseline/xnli",
                     "--study_dir", "gs://b/study"]) == 1
    err = capsys.readouterr().err
    assert "--study_dir gs://b/study" in err and "run-cell --db" in err
    assert not (REPO / "gs:").exists()


@pytest.mark.slow
def test_real_cells_through_the_executor_give_the_numbers_of_a_local_run(tmp_path):
    lines = ("experiment.study.name = 'tpu_path'",
             "experiment.study.conditions = ['baseline', 'xitt.inter.qqp']",
             "experiment.study.targets = ['xnli']",
             "experiment.study.languages = {'xnli': ['de', 'sw']}",
             "experiment.study.intermediate_steps = 4",
             "experiment.study.target_steps = {'xnli': 4}")
    exp = _experiment(tmp_path, *lines)
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("XLA_FLAGS", None)
    ref = tmp_path / "ref"
    subprocess.run([sys.executable, "-m", "study", "run", exp.path, "--study_dir", str(ref)],
                   cwd=REPO, env=env, check=True, capture_output=True)

    def real_cell(argv):  # the task's command, with this machine's python for the slice's
        assert argv[0] == "../xitt-venv/bin/python"
        proc = subprocess.run([sys.executable, *argv[1:]], cwd=REPO, env=env,
                              capture_output=True, text=True)
        return proc.returncode == 0

    study_dir, local_db = tmp_path / "bucket", tmp_path / "here" / "results.sqlite"
    _, summary = _run_study(exp, study_dir, local_db, real_cell)
    cells = grid.build(exp, str(study_dir))
    assert len(summary.done) == len(cells) == 3, summary.failed
    with ResultsDB(ref / "results.sqlite") as a, ResultsDB(local_db) as b:
        assert b.results() == a.results() and len(a.results()) > 0
        assert b.per_example_keys() == a.per_example_keys()
        for key in a.per_example_keys():
            assert b.per_example(*key) == a.per_example(*key)
        for cell in cells:
            got = b.get_cell(cell.cell_id)
            assert got.status == "done"
            assert got.checkpoint_path.startswith(str(study_dir / "models"))
            assert got.checkpoint_step == a.get_cell(cell.cell_id).checkpoint_step
