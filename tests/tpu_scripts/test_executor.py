"""The study's TPU executors on a fake two-size grid: every cell once, in dependency order, as
gcloud commands or SkyPilot task files; dependency failures skip; hostile cell ids stay inert."""
import dataclasses
import io
import json
import shlex

import pytest
import yaml

from tpu_scripts import executor, launch


@dataclasses.dataclass(frozen=True)
class FakeCell:
    cell_id: str
    kind: str
    size: str
    seed: int
    deps: tuple
    command: tuple
    model_dir: str


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
                                  f"gs://b/study/models/{cid}"))
    return cells


def placements():
    return {
        "base": executor.Placement.for_config("gin/tpu/mt5_base_v5e_2x2.gin", "proj"),
        "xxl": executor.Placement.for_config("gin/tpu/mt5_xxl_v5e_4x8.gin", "proj"),
    }


def test_gcloud_dry_run_lists_every_cell_once_in_dependency_order():
    out = io.StringIO()
    runner = launch.Runner(dry_run=True, out=out)
    ex = executor.GcloudExecutor(placements(), "https://github.com/org/xitt.git", "main",
                                 runner=runner)
    cells = two_size_grid()
    outcomes = executor.submit(cells, ex)
    assert all(o.ok for o in outcomes.values()) and list(outcomes) == [c.cell_id for c in cells]
    text = out.getvalue()
    headers = [line for line in text.splitlines() if line.startswith("# cell ")]
    assert [h.split()[2] for h in headers] == [c.cell_id for c in cells]
    assert headers[1] == "# cell base/s0/mnli/xnli (target, base, seed 0) on v5e:2x2; after " \
                         "base/s0/mnli"
    # per cell: create (queued, spot), setup, start the cell on every host, delete
    name = executor.node_name("xxl/s0/mnli/xquad")
    block = text.split("# cell xxl/s0/mnli/xquad")[1].splitlines()[1:]
    assert block[0] == (f"gcloud compute tpus queued-resources create {name} "
                        f"--node-id={name} --project=proj --zone=us-west4-a "
                        "--accelerator-type=v5litepod-32 --runtime-version=v2-alpha-tpuv5-lite "
                        "--spot")
    assert block[1].startswith(f"gcloud compute tpus tpu-vm ssh {name} ")
    assert "git clone" in block[1]
    started = shlex.split(block[2])
    assert started[-2] == "--worker=all"
    assert ("env XITT_DISTRIBUTED=1 ../xitt-venv/bin/python -m study run-cell gin/study/s.gin "
            "--cell xxl/s0/mnli/xquad --study_dir gs://b/study;") in started[-1]
    assert block[3].startswith(f"gcloud compute tpus queued-resources delete {name} ")


def test_skypilot_dry_run_prints_task_files_and_launch_commands(tmp_path):
    out = io.StringIO()
    runner = launch.Runner(dry_run=True, out=out)
    ex = executor.SkyPilotExecutor(placements(), tmp_path / "tasks", runner=runner)
    cells = two_size_grid()
    executor.submit(cells, ex)
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


def test_out_of_order_or_repeated_cells_are_refused():
    cells = two_size_grid()
    with pytest.raises(ValueError, match="comes before its dependencies"):
        executor.check_order([cells[1], cells[0]])
    with pytest.raises(ValueError, match="given twice"):
        executor.check_order([cells[0], cells[0]])


def test_a_failed_dependency_skips_its_dependents():
    class Failing:
        def __init__(self):
            self.ran = []

        def run(self, cell):
            self.ran.append(cell.cell_id)
            return executor.Outcome(not cell.cell_id.startswith("base/s0/mnli") or
                                    cell.kind != "intermediate", "boom")

        def close(self):
            pass

    ex = Failing()
    outcomes = executor.submit(two_size_grid(), ex)
    assert ex.ran == ["base/s0/mnli", "xxl/s0/mnli", "xxl/s0/mnli/xnli", "xxl/s0/mnli/xquad"]
    assert outcomes["base/s0/mnli/xnli"].error == "skipped: dependency base/s0/mnli failed"


def test_hostile_cell_ids_give_valid_names_and_inert_task_files():
    cell_id = "x'; rm -rf ~ $(touch PWNED) `id`\nnext"
    cell = FakeCell(cell_id, "target", "base", 0, (), cmd(cell_id), "gs://b/m")
    name = executor.node_name(cell_id)
    assert name.startswith("xitt-x-rm-rf-touch-pwned-id-next-") and len(name) <= 63
    task = yaml.safe_load(executor.skypilot_task(cell, placements()["base"]))
    assert shlex.split(task["run"])[6] == cell_id
    assert executor.node_name(cell_id) != executor.node_name(cell_id + " ")
    assert json.loads(json.dumps(task))["name"] == name


def test_dry_run_of_some_sizes_of_the_real_study_lists_only_their_cells(capsys):
    assert executor.main(["gin/study/study_mt5.gin", "--study_dir", "gs://b/study",
                          "--project", "p", "--sizes", "xl,xxl", "--dry_run"]) == 0
    cells = [line for line in capsys.readouterr().out.splitlines() if line.startswith("# cell ")]
    sizes = {line.split("(")[1].split(", ")[1] for line in cells}
    assert sizes == {"xl", "xxl"} and len(cells) == 2 * 393  # 1,572 cells over four sizes
