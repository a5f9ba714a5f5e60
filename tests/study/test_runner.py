"""The runner's graph and skip logic with a fake executor (no training): finished cells are
skipped on re-run, a failed cell blocks only its dependents, a cell left 'running' by a killed
run is rerun, a dead worker's cell is recorded as failed; status estimates what is left."""
import pytest

from study import cell as cell_mod
from study import experiment, fingerprint, grid, runner, status
from study.db import ResultsDB
from study.executors import Outcome

CPU = "gin/study/study_cpu.gin"
# Derived test grids keep one seed (the toy's second seed replicates the multitask condition,
# which they drop).
ONE_SEED = "experiment.study.seeds = [0]\nexperiment.study.replicate_only = None\n"


def record(db, exp, study_dir, cell_id):
    """What run-cell records of a finished cell (no metrics): its end and its fingerprint."""
    db.record_results(cell_id, [], end_time="2026-01-01T00:00:10Z", **fingerprint.provenance(
        exp, grid.build(exp, str(study_dir)), cell_id))


class FakeExecutor:
    """Does what run-cell does to the DB, without training."""

    def __init__(self, db, exp, study_dir, fail=(), die=()):
        self.db, self.fail, self.die, self.ran, self.closed = db, set(fail), set(die), [], 0
        self.exp, self.study_dir = exp, study_dir

    def run(self, cell):
        self.ran.append(cell.cell_id)
        if cell.cell_id in self.die:  # the worker process died: nothing recorded
            return Outcome(False, "worker process died")
        self.db.mark_running(cell.cell_id, start_time="2026-01-01T00:00:00Z")
        if cell.cell_id in self.fail:
            self.db.mark_failed(cell.cell_id, "ValueError: boom")
            return Outcome(False, "ValueError: boom")
        record(self.db, self.exp, self.study_dir, cell.cell_id)
        return Outcome(True)

    def close(self):
        self.closed += 1


class Quiet(runner.Progress):
    def __init__(self, total):
        super().__init__(total, stream=open("/dev/null", "w"))


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    path = tmp_path_factory.mktemp("exp") / "small.gin"
    path.write_text(f"include '{CPU}'\n{ONE_SEED}"
                    "experiment.study.sizes = {'tiny': 'gin/models/mt5_tiny.gin'}\n"
                    "experiment.study.conditions = ['baseline', 'xitt.inter.qqp']\n"
                    "experiment.study.primary_endpoint = "
                    "{'condition': 'xitt.inter.qqp', 'measure': 'overall_gain'}\n"
                    "experiment.study.targets = ['xnli', 'xcopa', 'xquad', 'tatoeba']\n")
    return experiment.load(str(path))


def _run(exp, study_dir, rerun_changed=False, **kw):
    with ResultsDB(f"{study_dir}/{cell_mod.DB_FILE}") as db:
        ex = FakeExecutor(db, exp, study_dir, **kw)
        summary = runner.run(exp, str(study_dir), ex, db=db, rerun_changed=rerun_changed,
                             progress=Quiet(len(grid.build(exp, str(study_dir)))))
        return ex, summary


def test_runs_every_cell_once_in_order_then_skips_all(exp, tmp_path):
    cells = grid.build(exp, str(tmp_path))
    ex, summary = _run(exp, tmp_path)
    assert ex.ran == [c.cell_id for c in cells] and ex.closed == 1
    assert len(summary.done) == len(cells) and not summary.failed and not summary.left
    ex2, summary2 = _run(exp, tmp_path)
    assert ex2.ran == [] and len(summary2.done) == len(cells)


def test_failure_blocks_only_dependents_and_is_retried(exp, tmp_path):
    cells = grid.build(exp, str(tmp_path))
    ex, summary = _run(exp, tmp_path, fail={"tiny/s0/qqp"})
    down = grid.dependents(cells, "tiny/s0/qqp")
    assert not down & set(ex.ran)
    assert summary.failed == {"tiny/s0/qqp": "ValueError: boom"}
    assert set(summary.blocked) == down
    baseline = [c.cell_id for c in cells if c.condition == "baseline"]
    assert set(baseline) <= set(summary.done)
    with ResultsDB(f"{tmp_path}/{cell_mod.DB_FILE}") as db:
        assert db.get_cell("tiny/s0/qqp").error == "ValueError: boom"
    ex2, summary2 = _run(exp, tmp_path)  # the next run retries the failed cell and the rest
    assert ex2.ran == ["tiny/s0/qqp", *[c.cell_id for c in cells if c.cell_id in down]]
    assert len(summary2.done) == len(cells)


def test_cell_left_running_by_a_kill_is_rerun(exp, tmp_path):
    _run(exp, tmp_path)
    with ResultsDB(f"{tmp_path}/{cell_mod.DB_FILE}") as db:
        db.mark_running("tiny/s0/baseline/xquad")
    ex, summary = _run(exp, tmp_path)
    assert ex.ran == ["tiny/s0/baseline/xquad"]
    assert not summary.left and not summary.failed


def test_dead_worker_is_recorded_as_failed(exp, tmp_path):
    ex, summary = _run(exp, tmp_path, die={"tiny/s0/baseline/xnli"})
    assert summary.failed == {"tiny/s0/baseline/xnli": "worker process died"}
    assert "tiny/s0/baseline/xcopa" in summary.done  # independent cells went on


def test_status_estimates_from_the_same_kind_and_size(exp, tmp_path):
    _run(exp, tmp_path, fail={"tiny/s0/baseline/xquad"})
    cells = grid.build(exp, str(tmp_path))
    with ResultsDB(f"{tmp_path}/{cell_mod.DB_FILE}") as db:
        db.mark_pending("tiny/s0/baseline/xquad")
        records = {r.cell_id: r for r in db.cells()}
    s = status.summarize(cells, records)
    # xquad (a 'target' cell, measured 10 s each) and the baseline tatoeba cell ('embedding',
    # its only cell of that kind and size in the grid done is the qqp one: 10 s)
    assert s.left == ["tiny/s0/baseline/xquad", "tiny/s0/baseline/tatoeba"]
    assert s.remaining_s == pytest.approx(20.0) and s.unknown == 0
    text = status.render(s)
    assert "estimated remaining compute: 0m20s" in text and "2 left" in text


class SlowFake:
    """A worker in its own thread: its own DB connection (as a worker process has), 0.3 s per
    cell; records how many cells run at once and what was done when each started."""

    def __init__(self, db_path, log, exp, study_dir):
        self.db_path, self.log, self.exp, self.study_dir = db_path, log, exp, study_dir

    def run(self, cell):
        import threading
        import time

        with ResultsDB(self.db_path) as db:
            done = {r.cell_id for r in db.cells() if r.status == "done"}
            with self.log["lock"]:
                self.log["now"] += 1
                self.log["peak"] = max(self.log["peak"], self.log["now"])
                self.log["started"].append((cell.cell_id, done, threading.get_ident()))
            db.mark_running(cell.cell_id, start_time="2026-01-01T00:00:00Z")
            time.sleep(0.3)
            with self.log["lock"]:
                self.log["now"] -= 1
            record(db, self.exp, self.study_dir, cell.cell_id)
        return Outcome(True)

    def close(self):
        pass


def test_two_workers_run_cells_side_by_side_after_their_dependencies(exp, tmp_path):
    import threading

    cells = grid.build(exp, str(tmp_path))
    log = {"lock": threading.Lock(), "now": 0, "peak": 0, "started": []}
    db_path = f"{tmp_path}/{cell_mod.DB_FILE}"
    with ResultsDB(db_path) as db:
        pool = [SlowFake(db_path, log, exp, tmp_path), SlowFake(db_path, log, exp, tmp_path)]
        summary = runner.run(exp, str(tmp_path), pool, db=db, progress=Quiet(len(cells)))
    started = [cid for cid, _, _ in log["started"]]
    assert sorted(started) == sorted(c.cell_id for c in cells)  # each cell once
    assert len(summary.done) == len(cells) and not summary.failed
    assert log["peak"] == 2  # two cells did run at the same time
    deps = {c.cell_id: c.deps for c in cells}
    for cid, done_then, _ in log["started"]:  # no cell started before its dependencies ended
        assert set(deps[cid]) <= done_then, cid


def test_retrieval_layer_applies_to_tatoeba_not_to_dual_encoders(tmp_path):
    """A dual encoder embeds with its trained projection on the final layer; the experiment's
    retrieval layer is for Tatoeba's encoder only (a dual encoder refuses another layer)."""
    path = tmp_path / "layer.gin"
    path.write_text(f"include '{CPU}'\n{ONE_SEED}"
                    "experiment.study.sizes = {'tiny': 'gin/models/mt5_tiny.gin'}\n"
                    "experiment.study.conditions = ['baseline']\n"
                    "experiment.study.targets = ['mewslix', 'tatoeba']\n"
                    "experiment.study.tatoeba_encoders = ['x_stilts']\n"
                    "experiment.study.retrieval_layer = 1\n")
    exp_ = experiment.load(str(path))
    cells = {c.kind: c for c in grid.build(exp_, str(tmp_path))}
    assert cell_mod._target_settings(exp_, cells["embedding"]).retrieval_layer == 1
    assert cell_mod._target_settings(exp_, cells["retrieval"]).retrieval_layer is None
