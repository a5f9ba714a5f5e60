"""The study on TPU executors end to end, with `sky` (or `gcloud`) replaced by a stand-in that
runs each job's command on this machine: the study runner keeps several jobs in flight, each
cell runs against its own database (seeded with its dependencies' records, study/cell_db.py),
what the cell recorded reaches the study's database, and a preempted gcloud slice is recreated
and the cell restarted on the same database. The slow test runs the real `python -m study
run-cell` commands of a reduced grid this way and gets the numbers of a local run."""
import io
import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from study import cell_db, experiment, fingerprint, grid, runner
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
                               "experiment.study.seeds = [0]",  # the toy's second seed: off
                               "experiment.study.replicate_only = None",
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
             "experiment.study.primary_endpoint = "
             "{'condition': 'xitt.inter.qqp', 'measure': 'overall_gain'}",
                      "experiment.study.targets = ['xnli', 'xquad', 'tatoeba']")
    study_dir, local_db = tmp_path / "bucket" / "study", tmp_path / "here" / "results.sqlite"
    seen, fail = {}, {"tiny/s0/baseline/xquad"}
    both = threading.Barrier(2, timeout=30)  # the first two jobs wait until both are running
    calls = []

    def fake_cell(argv):  # what run-cell does to its database, without training
        cell_id, path = _arg(argv, "--cell"), _arg(argv, "--db")
        calls.append(cell_id)
        if len(calls) <= 2:
            both.wait()
        assert _arg(argv, "--study_dir") == str(study_dir)
        with cell_db.opened(path, write_back=True) as db:
            seen[cell_id] = {d: db.get_cell(d) for d in db.get_cell(cell_id).deps}
            db.mark_running(cell_id)
            if cell_id in fail:
                db.mark_failed(cell_id, "RuntimeError: out of HBM")
                return False
            db.record_results(cell_id, [Result("en", "accuracy", 50.0, 2)],
                              [PerExample("en", "accuracy", ["a", "b"], [0.0, 100.0])],
                              checkpoint_path=f"gs://b/{cell_id}/checkpoint_4",
                              **fingerprint.provenance(exp, grid.build(exp, str(study_dir)),
                                                       cell_id))
        return True

    sky, summary = _run_study(exp, study_dir, local_db, fake_cell)
    cells = grid.build(exp, str(study_dir))
    assert sky.most_in_flight == 2 and not both.broken  # two jobs side by side
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
    rerun, fail, calls[:] = [], set(), ["x", "y"]  # no more waiting
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
                                            f"{name}); the cell recorded no result (left "
                                            "running)"}


def test_run_cell_with_model_dirs_on_an_object_store_needs_its_own_database(tmp_path, capsys):
    from study import __main__ as cli

    exp = tmp_path / "exp.gin"
    exp.write_text("include 'gin/study/study_cpu.gin'\n")
    assert cli.main(["run-cell", str(exp), "--cell", "tiny/s0/baseline/xnli",
                     "--study_dir", "gs://b/study"]) == 1
    err = capsys.readouterr().err
    assert "--study_dir gs://b/study" in err and "run-cell --db" in err
    assert cli.main(["run", str(exp), "--study_dir", "gs://b/study"]) == 1
    assert "python -m tpu_scripts.executor" in capsys.readouterr().err
    assert not (REPO / "gs:").exists()


@pytest.mark.slow
def test_real_cells_through_the_executor_give_the_numbers_of_a_local_run(tmp_path):
    lines = ("experiment.study.name = 'tpu_path'",
             "experiment.study.conditions = ['baseline', 'xitt.inter.qqp']",
             "experiment.study.primary_endpoint = "
             "{'condition': 'xitt.inter.qqp', 'measure': 'overall_gain'}",
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


class FakeGcloud(launch.Runner):
    """TPU VMs as dicts: `create` makes a READY node; the cell's command, started over ssh on
    every host, runs through `run_job` unless the node is to be preempted first; worker 0's
    log tail shows its exit status."""

    def __init__(self, run_job, preempt_once=()):
        super().__init__(dry_run=False, out=io.StringIO())
        self.run_job, self.preempt = run_job, set(preempt_once)
        self.nodes, self.exit, self.starts = {}, {}, []

    def run(self, argv, *, check=True, capture=False):
        if "describe" in argv:
            name = argv[argv.index("describe") + 1]
            if name not in self.nodes:
                raise RuntimeError("NOT_FOUND")
            return self.nodes[name]
        if argv[3:5] == ["queued-resources", "create"]:
            self.nodes[argv[5]] = "READY"
        elif argv[3:5] == ["queued-resources", "delete"]:
            self.nodes.pop(argv[5], None)
        elif "ssh" in argv:
            node, command = argv[argv.index("ssh") + 1], argv[-1].removeprefix("--command=")
            if "nohup " in command:  # the cell, started on every host
                job = shlex.split(command.split("(nohup ", 1)[1].split("; echo xitt-exit")[0])
                self.starts.append((node, job))
                if node in self.preempt:
                    self.preempt.discard(node)
                    self.nodes[node] = "PREEMPTED"
                else:
                    self.exit[node] = 0 if self.run_job(job) else 1
            elif "tail -n" in command:
                return f"xitt-exit {self.exit[node]}" if node in self.exit else ""
        else:
            raise AssertionError(f"unexpected command {argv}")
        return ""


def test_gcloud_cells_survive_a_preemption_and_record_once(tmp_path):
    exp = _experiment(tmp_path, "experiment.study.conditions = ['baseline', 'xitt.inter.qqp']",
             "experiment.study.primary_endpoint = "
             "{'condition': 'xitt.inter.qqp', 'measure': 'overall_gain'}",
                      "experiment.study.targets = ['xnli']")
    study_dir, local_db = tmp_path / "study", tmp_path / "results.sqlite"
    cells = grid.build(exp, str(study_dir))
    inter, target = "tiny/s0/qqp", "tiny/s0/qqp/xnli"
    assert {inter, target} < {c.cell_id for c in cells}
    seen = {}

    def fake_cell(argv):
        cell_id, path = _arg(argv, "--cell"), _arg(argv, "--db")
        with cell_db.opened(path, write_back=True) as db:
            seen[cell_id] = {d: db.get_cell(d).status for d in db.get_cell(cell_id).deps}
            db.record_results(cell_id, [], checkpoint_path=f"{study_dir}/{cell_id}/ck")
        return True

    gcloud = FakeGcloud(fake_cell, preempt_once={executor.node_name(inter)})
    dbs = executor.CellDatabases(local_db, str(study_dir))
    place = {"tiny": executor.Placement.for_config(TINY_TPU, "proj")}
    ex = executor.GcloudExecutor(place, "https://example/x.git", "main", runner=gcloud,
                                 databases=dbs, poll_s=0.0, sleep=lambda s: None)
    with ResultsDB(local_db) as db:
        summary = runner.run(exp, str(study_dir), ex, db=db, progress=Quiet(len(cells)))
        assert db.get_cell(target).checkpoint_path == f"{study_dir}/{target}/ck"
    assert set(summary.done) == {c.cell_id for c in cells}
    started = [(node, _arg(job, "--cell"), _arg(job, "--db")) for node, job in gcloud.starts]
    # preempted on the first start, recreated and restarted on the same cell database
    again = (executor.node_name(inter), inter, cell_db.path_for(str(study_dir), inter))
    assert started.count(again) == 2 and len(started) == len(cells) + 1
    assert seen[inter] == {} and seen[target] == {inter: "done"}
    assert gcloud.nodes == {}  # every slice deleted


def test_the_command_runs_the_grid_and_study_status_reads_the_local_database(
        tmp_path, monkeypatch, capsys):
    from study import __main__ as study_cli

    path = tmp_path / "exp.gin"
    path.write_text("\n".join([
        "include 'gin/study/study_cpu.gin'",
        "experiment.study.seeds = [0]", "experiment.study.replicate_only = None",
        "experiment.study.sizes = {'tiny': 'gin/models/mt5_tiny.gin'}",
        "experiment.study.size_gin_files = {'tiny': ['gin/tpu/mt5_base_v5e_2x2.gin']}",
        "experiment.study.conditions = ['baseline', 'xitt.inter.qqp']",
             "experiment.study.primary_endpoint = "
             "{'condition': 'xitt.inter.qqp', 'measure': 'overall_gain'}",
        "experiment.study.targets = ['xnli']"]) + "\n")

    def fake_cell(argv):
        cell_id = _arg(argv, "--cell")
        with cell_db.opened(_arg(argv, "--db"), write_back=True) as db:
            db.record_results(cell_id, [])
        return True

    monkeypatch.setattr(executor.launch, "Runner", lambda dry_run: FakeSky(fake_cell))
    local = tmp_path / "here"
    assert executor.main([str(path), "--study_dir", str(tmp_path / "bucket"), "--project", "p",
                          "--backend", "skypilot", "--workers", "2", "--local_dir", str(local),
                          "--task_dir", str(tmp_path / "tasks")]) == 0
    capsys.readouterr()
    assert study_cli.main(["status", str(path), "--study_dir", str(local)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3/3 done, 0 running, 0 failed"), out
    # the coordinator's database, copied to the study directory as cells ended
    with ResultsDB(tmp_path / "bucket" / "databases" / "all.sqlite", create=False) as copy:
        assert len(copy.cells(status="done")) == 3
