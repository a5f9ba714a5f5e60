"""The study's TPU executors on a fake two-size grid (two slice types): the dry run's plan, as
gcloud commands or SkyPilot task files, runs every cell once in dependency order on workers that
keep their slice; the runner's choice never gives a worker a cell of another slice type;
dependency failures skip; hostile cell ids stay inert."""
import dataclasses
import io
import json
import re
import shlex

import pytest
import yaml

from study import executors
from tpu_scripts import executor, launch, plan, skypilot


@dataclasses.dataclass(frozen=True)
class FakeCell:
    cell_id: str
    kind: str
    size: str
    seed: int
    deps: tuple
    command: tuple
    model_dir: str
    target: str | None = None
    steps: int = 10


def cmd(cell_id):
    return ("python", "-m", "study", "run-cell", "gin/study/s.gin", "--cell", cell_id,
            "--study_dir", "gs://b/study")


def two_size_grid():
    cells = []
    for size in ("base", "xxl"):
        inter = f"{size}/s0/mnli"
        cells.append(FakeCell(inter, "intermediate", size, 0, (), cmd(inter),
                              f"gs://b/study/models/{inter}"))
        for target in ("xnli", "xquad"):
            cid = f"{size}/s0/mnli/{target}"
            cells.append(FakeCell(cid, "target", size, 0, (inter,), cmd(cid),
                                  f"gs://b/study/models/{cid}", target))
    return cells


def placements():
    return {
        "base": executor.Placement.for_config("gin/tpu/mt5_base_v5e_2x2.gin", "proj"),
        "xxl": executor.Placement.for_config("gin/tpu/mt5_xxl_v5e_4x8.gin", "proj"),
    }


def _commands(text, verb):
    return [line for line in text.splitlines() if line.startswith(verb)]


def test_gcloud_dry_run_plan_keeps_one_slice_per_slice_type_and_runs_every_cell_once():
    out = io.StringIO()
    runner = launch.Runner(dry_run=True, out=out)
    ex = executor.GcloudExecutor(placements(), "https://github.com/org/xitt.git", "main",
                                 runner=runner, label="gs://b/study")
    cells = two_size_grid()
    the_plan = plan.simulate(cells, [ex])
    text = out.getvalue()
    headers = [line for line in text.splitlines() if line.startswith("# worker 0: cell ")]
    assert [h.split()[4] for h in headers] == [c.cell_id for c in cells]
    assert headers[1] == "# worker 0: cell base/s0/mnli/xnli (target, base, seed 0) on " \
                         "v5e:2x2; after base/s0/mnli"
    # one slice per slice type: created and set up once, three cells on it, then deleted
    base = executor.worker_node_name("gs://b/study", 0, placements()["base"])
    xxl = executor.worker_node_name("gs://b/study", 0, placements()["xxl"])
    assert base.startswith("xitt-w0-v5e-2x2-") and xxl.startswith("xitt-w0-v5e-4x8-")
    creates = _commands(text, "gcloud compute tpus queued-resources create")
    deletes = _commands(text, "gcloud compute tpus queued-resources delete")
    assert [c.split()[5] for c in creates] == [base, xxl]
    assert [d.split()[5] for d in deletes] == [base, xxl]
    assert creates[1] == (f"gcloud compute tpus queued-resources create {xxl} "
                          f"--node-id={xxl} --project=proj --zone=us-west4-a "
                          "--accelerator-type=v5litepod-32 "
                          "--runtime-version=v2-alpha-tpuv5-lite --spot")
    ssh = _commands(text, "gcloud compute tpus tpu-vm ssh")
    assert sum("git clone" in line for line in ssh) == 2
    starts = [shlex.split(line) for line in ssh if "nohup " in line]
    assert [s[5] for s in starts] == [base] * 3 + [xxl] * 3
    assert starts[-1][-2] == "--worker=all"
    assert ("env XITT_DISTRIBUTED=1 ../xitt-venv/bin/python -m study run-cell gin/study/s.gin "
            "--cell xxl/s0/mnli/xquad --study_dir gs://b/study;") in starts[-1][-1]
    # the base slice is given back before the xxl one is booked
    assert text.index(deletes[0]) < text.index(creates[1])
    assert [(u.worker, u.slice.split()[0], len(u.cells)) for u in the_plan.slices] == [
        (0, "v5e:2x2", 3), (0, "v5e:4x8", 3)]
    assert the_plan.summary().startswith("plan: 6 cells on 1 workers create 2 slices (one "
                                         "slice per cell would create 6)")


def test_assign_gives_a_slice_holder_only_cells_of_its_slice_type():
    class Holder:
        def __init__(self, held):
            self.holds = held

        def slice_of(self, cell):
            return cell.size

    cells = two_size_grid()
    base_ready, xxl_ready = [cells[1], cells[2]], [cells[4]]
    on_base, on_xxl, blank = Holder("base"), Holder("xxl"), Holder(None)
    pairs, releases = executors.assign([on_xxl, blank, on_base], base_ready + xxl_ready)
    assert pairs == [(on_xxl, cells[4]), (on_base, cells[1]), (blank, cells[2])]
    assert releases == []
    # no ready cell of its type: the holder gives its slice back; a blank worker takes any cell
    pairs, releases = executors.assign([on_xxl, blank], base_ready)
    assert pairs == [(blank, cells[1])] and releases == [on_xxl]
    # a known evaluation target goes first
    pairs, _ = executors.assign([on_base], base_ready, {id(on_base): {"xquad"}})
    assert pairs == [(on_base, cells[2])]


def test_skypilot_cluster_dry_run_launches_once_per_slice_and_execs_each_cell(tmp_path):
    out = io.StringIO()
    runner = launch.Runner(dry_run=True, out=out)
    ex = skypilot.SkyClusterExecutor(placements(), tmp_path / "tasks", runner=runner,
                                     label="gs://b/study")
    cells = two_size_grid()
    the_plan = plan.simulate(cells, [ex])
    text = out.getvalue()
    launches = _commands(text, "sky launch")
    execs = [shlex.split(line) for line in _commands(text, "sky exec")]
    downs = _commands(text, "sky down")
    base = executor.worker_node_name("gs://b/study", 0, placements()["base"])
    xxl = executor.worker_node_name("gs://b/study", 0, placements()["xxl"])
    assert [shlex.split(line)[3] for line in launches] == [base, xxl]
    assert "--retry-until-up" in launches[0] and "--down" in launches[0]
    assert [e[2] for e in execs] == [base] * 3 + [xxl] * 3
    assert downs == [f"sky down --yes {base}", f"sky down --yes {xxl}"]
    docs = {d.partition("\n")[0]: yaml.safe_load(d.partition("\n")[2].split("\nsky ")[0])
            for d in text.split("# --- ")[1:]}
    cluster = docs[str(tmp_path / "tasks" / f"{xxl}.yaml")]
    assert cluster["resources"]["accelerators"] == "tpu-v5litepod-32"
    assert "pip install" in cluster["setup"] and "run" not in cluster
    cell = docs[str(tmp_path / "tasks" / f"{executor.node_name('xxl/s0/mnli/xquad')}.yaml")]
    assert "setup" not in cell and cell["envs"] == {"XITT_DISTRIBUTED": "1"}
    assert shlex.split(cell["run"]) == ["../xitt-venv/bin/python", *cmd("xxl/s0/mnli/xquad")[1:]]
    assert len(the_plan.slices) == 2
    assert not (tmp_path / "tasks").exists()  # a dry run writes nothing


def test_skypilot_jobs_dry_run_prints_task_files_and_launch_commands(tmp_path):
    out = io.StringIO()
    runner = launch.Runner(dry_run=True, out=out)
    ex = skypilot.SkyPilotExecutor(placements(), tmp_path / "tasks", runner=runner)
    cells = two_size_grid()
    the_plan = plan.simulate(cells, [ex])
    assert len(the_plan.slices) == len(cells)  # a managed job provisions a slice per cell
    text = out.getvalue()
    docs = text.split("# --- ")[1:]
    assert len(docs) == len(cells)
    for cell, doc in zip(cells, docs):
        path, _, rest = doc.partition("\n")
        task_yaml, _, launch_line = rest.rpartition("sky jobs launch")
        task = yaml.safe_load(task_yaml)
        name = executor.node_name(cell.cell_id)
        assert path == str(tmp_path / "tasks" / f"{name}.yaml")
        assert task["name"] == name
        accel = "tpu-v5litepod-4" if cell.size == "base" else "tpu-v5litepod-32"
        assert task["resources"]["accelerators"] == accel
        assert task["resources"]["use_spot"] is True
        assert shlex.split(task["run"]) == ["../xitt-venv/bin/python", *cell.command[1:]]
        assert launch_line.strip() == f"--name {name} --yes --detach-run {path}"
    assert not (tmp_path / "tasks").exists()  # a dry run writes nothing


def test_the_plan_refuses_cells_out_of_order_or_repeated():
    cells = two_size_grid()
    runner = launch.Runner(dry_run=True, out=io.StringIO())
    ex = executor.GcloudExecutor(placements(), "r", "main", runner=runner)
    with pytest.raises(ValueError, match="comes before its dependencies"):
        plan.simulate([cells[1], cells[0]], [ex])
    with pytest.raises(ValueError, match="given twice"):
        plan.simulate([cells[0], cells[0]], [ex])


def test_in_the_plan_a_failed_dependency_skips_its_dependents():
    class Failing:
        def __init__(self):
            self.ran = []

        def run(self, cell):
            self.ran.append(cell.cell_id)
            return executor.Outcome(cell.cell_id != "base/s0/mnli", "boom")

        def close(self):
            pass

    ex = Failing()
    the_plan = plan.simulate(two_size_grid(), [ex])
    assert ex.ran == ["base/s0/mnli", "xxl/s0/mnli", "xxl/s0/mnli/xnli", "xxl/s0/mnli/xquad"]
    assert (the_plan.cells, the_plan.not_run, len(the_plan.slices)) == (6, 2, 4)
    assert the_plan.summary().startswith("plan: 6 cells on 1 workers create 4 slices (one "
                                         "slice per cell would create 6); 2 not run")


def test_hostile_cell_ids_give_valid_names_and_inert_task_files():
    cell_id = "x'; rm -rf ~ $(touch PWNED) `id`\nnext"
    cell = FakeCell(cell_id, "target", "base", 0, (), cmd(cell_id), "gs://b/m")
    name = executor.node_name(cell_id)
    assert name.startswith("xitt-x-rm-rf-touch-pwned-id-next-") and len(name) <= 63
    task = yaml.safe_load(skypilot.skypilot_task(cell, placements()["base"]))
    assert shlex.split(task["run"])[6] == cell_id
    assert executor.node_name(cell_id) != executor.node_name(cell_id + " ")
    assert json.loads(json.dumps(task))["name"] == name


def test_dry_run_of_some_sizes_of_the_real_study_lists_only_their_cells(capsys):
    assert executor.main(["gin/study/study_mt5.gin", "--study_dir", "gs://b/study",
                          "--project", "p", "--sizes", "xl,xxl", "--dry_run"]) == 0
    out = capsys.readouterr().out.splitlines()
    cells = [re.search(r"--cell (\S+)", line).group(1) for line in out if "nohup " in line]
    sizes = {cell.split("/")[0] for cell in cells}
    # per size and seed: 15 intermediate cells + 16 conditions x (9 targets, the SIQA stage,
    # Tatoeba twice) = 207; x 3 seeds = 621 per size, of 2,484
    assert sizes == {"xl", "xxl"} and len(cells) == len(set(cells)) == 2 * 621
