"""The study on TPU executors end to end, with `sky` (or `gcloud`) replaced by a stand-in that
runs each job's command on this machine: the study runner keeps several jobs in flight, each
cell runs against its own database (seeded with its dependencies' records, study/cell_db.py),
what the cell recorded reaches the study's database; a worker keeps its gcloud slice or SkyPilot
cluster for cell after cell of its slice type, and a preempted slice is recreated and the cell
it was running restarted on the same database. The slow test runs the real `python -m study
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
from tpu_scripts import executor, launch, skypilot

REPO = Path(__file__).resolve().parents[2]
TINY_TPU = "tests/tpu_scripts/mt5_tiny_v5e_2x2.gin"
OTHER_TPU = "gin/tpu/mt5_xxl_v5e_4x8.gin"  # only its slice (v5e:4x8) is read


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
    pool = [skypilot.SkyPilotExecutor(place, study_dir / "tasks", runner=sky, databases=dbs,
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
    every host, runs through `run_job` unless the node is to be preempted first (the first
    start of a cell in `preempt_once`); worker 0's log tail shows its exit status."""

    def __init__(self, run_job, preempt_once=()):
        super().__init__(dry_run=False, out=io.StringIO())
        self.run_job, self.preempt = run_job, set(preempt_once)
        self.nodes, self.exit, self.starts, self.log = {}, {}, [], []

    def run(self, argv, *, check=True, capture=False):
        if "describe" in argv:
            name = argv[argv.index("describe") + 1]
            if name not in self.nodes:
                raise RuntimeError("NOT_FOUND")
            return self.nodes[name]
        if argv[3:5] == ["queued-resources", "create"]:
            self.log.append(("create", argv[5]))
            self.nodes[argv[5]] = "READY"
        elif argv[3:5] == ["queued-resources", "delete"]:
            self.log.append(("delete", argv[5]))
            self.nodes.pop(argv[5], None)
        elif "ssh" in argv:
            node, command = argv[argv.index("ssh") + 1], argv[-1].removeprefix("--command=")
            if "git clone" in command:
                self.log.append(("setup", node))
            elif command.startswith("pkill "):
                self.log.append(("stop cells", node))
            elif "nohup " in command:  # the cell, started on every host
                job = shlex.split(command.split("(nohup ", 1)[1].split("; echo xitt-exit")[0])
                self.starts.append((node, job))
                self.log.append(("start", node, _arg(job, "--cell")))
                if _arg(job, "--cell") in self.preempt:
                    self.preempt.discard(_arg(job, "--cell"))
                    self.nodes[node] = "PREEMPTED"
                else:
                    self.exit[node] = 0 if self.run_job(job) else 1
            elif "tail -n" in command:
                return f"xitt-exit {self.exit.pop(node)}" if node in self.exit else ""
        else:
            raise AssertionError(f"unexpected command {argv}")
        return ""


def _two_slice_study(tmp_path):
    """Two sizes on two slice types (tiny: v5e:2x2, tiny2: v5e:4x8), 3 cells each."""
    exp = _experiment(
        tmp_path, "experiment.study.sizes = {'tiny': 'gin/models/mt5_tiny.gin', "
        "'tiny2': 'gin/models/mt5_tiny2.gin'}",
        "experiment.study.conditions = ['baseline', 'xitt.inter.qqp']",
        "experiment.study.primary_endpoint = "
        "{'condition': 'xitt.inter.qqp', 'measure': 'overall_gain'}",
        "experiment.study.targets = ['xnli']")
    place = {"tiny": executor.Placement.for_config(TINY_TPU, "proj"),
             "tiny2": executor.Placement.for_config(OTHER_TPU, "proj")}
    return exp, place


def _recording_cell(study_dir, seen):
    def fake_cell(argv):
        cell_id, path = _arg(argv, "--cell"), _arg(argv, "--db")
        with cell_db.opened(path, write_back=True) as db:
            seen[cell_id] = {d: db.get_cell(d).status for d in db.get_cell(cell_id).deps}
            db.record_results(cell_id, [], checkpoint_path=f"{study_dir}/{cell_id}/ck")
        return True
    return fake_cell


def _slice_kind(node):  # xitt-w0-v5e-2x2-<hash> -> v5e:2x2
    return ":".join(node.split("-")[2:4])


def test_a_gcloud_worker_keeps_its_slice_for_several_cells_and_recovers_a_preemption(tmp_path):
    exp, place = _two_slice_study(tmp_path)
    study_dir, local_db = tmp_path / "study", tmp_path / "results.sqlite"
    cells = grid.build(exp, str(study_dir))
    inter, target = "tiny/s0/qqp", "tiny/s0/qqp/xnli"
    assert {inter, target} < {c.cell_id for c in cells} and len(cells) == 6
    seen = {}
    gcloud = FakeGcloud(_recording_cell(study_dir, seen), preempt_once={inter})
    dbs = executor.CellDatabases(local_db, str(study_dir))
    ex = executor.GcloudExecutor(place, "https://example/x.git", "main", runner=gcloud,
                                 databases=dbs, label=str(study_dir), poll_s=0.0,
                                 sleep=lambda s: None)
    with ResultsDB(local_db) as db:
        summary = runner.run(exp, str(study_dir), ex, db=db, progress=Quiet(len(cells)))
        assert db.get_cell(target).checkpoint_path == f"{study_dir}/{target}/ck"
    assert set(summary.done) == {c.cell_id for c in cells}
    small = executor.worker_node_name(str(study_dir), 0, place["tiny"])
    big = executor.worker_node_name(str(study_dir), 0, place["tiny2"])
    # one slice per slice type, set up once; its three cells run on it; the preemption of the
    # intermediate cell recreates the slice, sets it up again and restarts that cell
    assert gcloud.log == [
        ("create", small), ("setup", small), ("start", small, inter),
        ("delete", small), ("create", small), ("setup", small), ("start", small, inter),
        ("start", small, "tiny/s0/baseline/xnli"), ("start", small, target),
        ("delete", small),  # no ready cell of its slice type: given back
        ("create", big), ("setup", big), ("start", big, "tiny2/s0/qqp"),
        ("start", big, "tiny2/s0/baseline/xnli"), ("start", big, "tiny2/s0/qqp/xnli"),
        ("delete", big)], gcloud.log
    # restarted on the same cell database, which its dependent then saw done
    dbs_of = [(node, _arg(job, "--cell"), _arg(job, "--db")) for node, job in gcloud.starts]
    assert dbs_of.count((small, inter, cell_db.path_for(str(study_dir), inter))) == 2
    assert seen[inter] == {} and seen[target] == {inter: "done"}
    assert gcloud.nodes == {}  # every slice deleted


def test_the_runner_never_hands_a_worker_a_cell_of_another_slice_type(tmp_path):
    exp, place = _two_slice_study(tmp_path)
    study_dir, local_db = tmp_path / "study", tmp_path / "results.sqlite"
    cells = grid.build(exp, str(study_dir))
    size_of = {c.cell_id: c.size for c in cells}
    kind = {size: p.slice.name for size, p in place.items()}
    gcloud = FakeGcloud(_recording_cell(study_dir, {}))
    dbs = executor.CellDatabases(local_db, str(study_dir))
    handed = []

    class Checked(executor.GcloudExecutor):  # what it holds when the runner hands it a cell
        def run(self, cell):
            handed.append((self.worker, self.holds, self.slice_of(cell)))
            return super().run(cell)

    pool = [Checked(place, "https://example/x.git", "main", runner=gcloud, databases=dbs,
                    worker=i, label=str(study_dir), poll_s=0.0, sleep=lambda s: None)
            for i in range(2)]
    with ResultsDB(local_db) as db:
        summary = runner.run(exp, str(study_dir), pool, db=db, progress=Quiet(len(cells)))
    assert set(summary.done) == set(size_of)
    assert len(handed) == len(cells)
    assert all(held in (None, wanted) for _, held, wanted in handed), handed
    assert any(held is not None for _, held, _ in handed)  # some cells ran on a kept slice
    starts = [(node, _arg(job, "--cell")) for node, job in gcloud.starts]
    assert len(starts) == len(cells)
    assert all(_slice_kind(node) == kind[size_of[cell]] for node, cell in starts), starts
    creates = [e[1] for e in gcloud.log if e[0] == "create"]
    assert len(creates) < len(cells)  # slices are kept from one cell to the next
    assert gcloud.nodes == {}


class FakeSkyClusters(launch.Runner):
    """SkyPilot clusters as dicts: `sky launch` makes one UP; `sky exec` runs the task's command
    (through `run_job`) unless the cell is to be preempted first, which stops the cluster;
    `sky queue` lists the cluster's jobs with how they ended; `sky down` removes it."""

    def __init__(self, run_job, preempt_once=()):
        super().__init__(dry_run=False, out=io.StringIO())
        self.run_job, self.preempt = run_job, set(preempt_once)
        self.clusters, self.log = {}, []

    def run(self, argv, *, check=True, capture=False):
        if argv[:2] == ["sky", "launch"]:
            name = _arg(argv, "--cluster")
            assert "setup" in yaml.safe_load(Path(argv[-1]).read_text())
            self.log.append(("launch", name))
            self.clusters[name] = ("UP", {})
        elif argv[:2] == ["sky", "exec"]:
            name, job = argv[2], _arg(argv, "--name")
            run = shlex.split(yaml.safe_load(Path(argv[-1]).read_text())["run"])
            self.log.append(("exec", name, _arg(run, "--cell")))
            if _arg(run, "--cell") in self.preempt:
                self.preempt.discard(_arg(run, "--cell"))
                self.clusters[name] = ("STOPPED", self.clusters[name][1])
            else:
                self.clusters[name][1][job] = "SUCCEEDED" if self.run_job(run) else "FAILED"
        elif argv[:2] == ["sky", "status"]:
            name = argv[-1]
            if name not in self.clusters:
                return "No existing clusters."
            return (f"NAME  LAUNCHED  RESOURCES  STATUS  AUTOSTOP  COMMAND\n"
                    f"{name}  1 min ago  1x GCP(tpu-v5litepod-4)  {self.clusters[name][0]}  "
                    "30m (down)  sky launch ...")
        elif argv[:2] == ["sky", "queue"]:
            jobs = self.clusters[argv[2]][1]
            return "ID  NAME  SUBMITTED  STARTED  DURATION  RESOURCES  STATUS  LOG\n" + "\n".join(
                f"{i}  {j}  1 min ago  1 min ago  1m  1x[tpu-v5litepod-4]  {s}  ~/sky_logs/x"
                for i, (j, s) in enumerate(jobs.items(), 1))
        elif argv[:2] == ["sky", "cancel"]:
            self.log.append(("cancel", argv[-1]))
        elif argv[:2] == ["sky", "down"]:
            self.log.append(("down", argv[-1]))
            self.clusters.pop(argv[-1], None)
        else:
            raise AssertionError(f"unexpected command {argv}")
        return ""


def test_a_skypilot_worker_keeps_its_cluster_and_relaunches_it_after_a_preemption(tmp_path):
    exp, place = _two_slice_study(tmp_path)
    study_dir, local_db = tmp_path / "study", tmp_path / "results.sqlite"
    cells = grid.build(exp, str(study_dir))
    seen = {}
    sky = FakeSkyClusters(_recording_cell(study_dir, seen), preempt_once={"tiny/s0/qqp/xnli"})
    dbs = executor.CellDatabases(local_db, str(study_dir))
    ex = skypilot.SkyClusterExecutor(place, tmp_path / "tasks", runner=sky, databases=dbs,
                                     label=str(study_dir), poll_s=0.0, sleep=lambda s: None)
    with ResultsDB(local_db) as db:
        summary = runner.run(exp, str(study_dir), ex, db=db, progress=Quiet(len(cells)))
    assert set(summary.done) == {c.cell_id for c in cells}
    small = executor.worker_node_name(str(study_dir), 0, place["tiny"])
    big = executor.worker_node_name(str(study_dir), 0, place["tiny2"])
    assert sky.log == [
        ("launch", small), ("exec", small, "tiny/s0/qqp"),
        ("exec", small, "tiny/s0/baseline/xnli"), ("exec", small, "tiny/s0/qqp/xnli"),
        ("down", small), ("launch", small), ("exec", small, "tiny/s0/qqp/xnli"),  # preempted
        ("down", small),
        ("launch", big), ("exec", big, "tiny2/s0/qqp"), ("exec", big, "tiny2/s0/baseline/xnli"),
        ("exec", big, "tiny2/s0/qqp/xnli"), ("down", big)], sky.log
    assert seen["tiny/s0/qqp/xnli"] == {"tiny/s0/qqp": "done"}
    assert sky.clusters == {}
    # a cluster left UP by a killed coordinator: taken over, its jobs cancelled first
    sky.clusters[small], sky.log[:] = ("UP", {}), []
    ex2 = skypilot.SkyClusterExecutor(place, tmp_path / "tasks", runner=sky, databases=dbs,
                                      label=str(study_dir), poll_s=0.0, sleep=lambda s: None)
    cell = next(c for c in cells if c.cell_id == "tiny/s0/baseline/xnli")
    assert ex2.run(cell).ok
    ex2.close()
    assert sky.log == [("launch", small), ("cancel", small), ("exec", small, cell.cell_id),
                       ("down", small)]


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
                          "--backend", "skypilot-jobs", "--workers", "2", "--local_dir", str(local),
                          "--task_dir", str(tmp_path / "tasks")]) == 0
    capsys.readouterr()
    assert study_cli.main(["status", str(path), "--study_dir", str(local)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3/3 done, 0 running, 0 failed"), out
    # the coordinator's database, copied to the study directory as cells ended
    with ResultsDB(tmp_path / "bucket" / "databases" / "all.sqlite", create=False) as copy:
        assert len(copy.cells(status="done")) == 3


def test_the_dry_run_prints_the_plan_slices_created_against_cells_run(tmp_path, capsys):
    path = tmp_path / "exp.gin"
    path.write_text("\n".join([
        "include 'gin/study/study_cpu.gin'",
        "experiment.study.seeds = [0]",
        "experiment.study.replicate_only = None",
        "experiment.study.size_gin_files = {'tiny': ['gin/tpu/mt5_base_v5e_2x2.gin'], "
        "'tiny2': ['gin/tpu/mt5_xxl_v5e_4x8.gin']}",
        "experiment.study.conditions = ['baseline', 'xitt.inter.qqp']",
        "experiment.study.primary_endpoint = "
        "{'condition': 'xitt.inter.qqp', 'measure': 'overall_gain'}",
        "experiment.study.targets = ['xnli', 'xquad']"]) + "\n")
    cells = grid.build(experiment.load(str(path)), "gs://b/s")
    assert executor.main([str(path), "--study_dir", "gs://b/s", "--project", "p",
                          "--workers", "2", "--dry_run"]) == 0
    out = capsys.readouterr().out.splitlines()
    creates = [line for line in out if " queued-resources create " in line]
    starts = [shlex.split(line) for line in out if "nohup " in line]
    assert sorted(_arg(s[-1].split("(nohup ")[1].split(), "--cell") for s in starts) == \
        sorted(c.cell_id for c in cells)
    assert len(creates) < len(cells) == 10
    summary = out[out.index(next(line for line in out if line.startswith("plan: "))):]
    assert summary[0] == (f"plan: {len(cells)} cells on 2 workers create {len(creates)} slices "
                          f"(one slice per cell would create {len(cells)})")
    rows = summary[1:-1]
    assert len(rows) == len(creates)
    assert sum(int(r.split(": ")[2].split()[0]) for r in rows) == len(cells)
    assert not (REPO / "gs:").exists()  # a dry run writes nothing


def test_a_slice_left_by_a_killed_coordinator_is_taken_over_with_its_cells_stopped(tmp_path):
    _, place = _two_slice_study(tmp_path)
    study_dir, local_db = tmp_path / "study", tmp_path / "results.sqlite"
    exp = _experiment(tmp_path, "experiment.study.conditions = ['baseline']",
                      "experiment.study.targets = ['xnli']")
    gcloud = FakeGcloud(_recording_cell(study_dir, {}))
    node = executor.worker_node_name(str(study_dir), 0, place["tiny"])
    gcloud.nodes[node] = "READY"  # still up from the earlier run
    ex = executor.GcloudExecutor(place, "https://example/x.git", "main", runner=gcloud,
                                 databases=executor.CellDatabases(local_db, str(study_dir)),
                                 label=str(study_dir), poll_s=0.0, sleep=lambda s: None)
    with ResultsDB(local_db) as db:
        summary = runner.run(exp, str(study_dir), ex, db=db, progress=Quiet(1))
    assert list(summary.done) == ["tiny/s0/baseline/xnli"]
    assert gcloud.log == [("setup", node), ("stop cells", node),
                          ("start", node, "tiny/s0/baseline/xnli"), ("delete", node)]
