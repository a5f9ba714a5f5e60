"""TPU executors for the study: workers that keep a slice, booked through an existing job system.

    python -m tpu_scripts.executor gin/study/study_mt5.gin --study_dir gs://B/study \
        --project P --sizes xxl --backend gcloud|skypilot|skypilot-jobs --workers 16 \
        [--local_dir DIR] [--rerun_changed] [--dry_run]

The study runner (study/runner.py, as `python -m study run` uses it) hands each of `--workers`
executors one ready cell at a time (attributes `cell_id`, `kind`, `size`, `seed`, `deps`,
`command` = `python -m study run-cell ...`, `model_dir`). An executor is a worker that keeps its
slice: it books one (the slice type of the cell's size, from its gin/tpu config), sets it up
once (clone, pip install), then runs cell after cell on it; the runner gives it only cells of
the slice type it holds and has it give the slice back when no ready cell fits
(study.executors.assign). Model directories and JAX's compilation cache live under the shared
`--study_dir` (gs://). The study's results database stays on this machine (`--local_dir`): each
cell gets its own database next to its model directory, seeded with its dependencies' records,
and imported back when its job ends (`CellDatabases`, study/cell_db.py), so `python -m study
status/report --study_dir LOCAL_DIR` work as for a local study, and a rerun skips the cells
already done. As each cell ends, that database is copied to `<study_dir>/databases/<sizes>.sqlite`
(study/db_copies.py); a coordinator without its local database starts from that copy.
`--sizes base,large` runs some sizes: coordinators of other sizes may run at once, and
`python -m study merge EXPERIMENT --study_dir gs://B/study --into FILE` joins their copies.

- `GcloudExecutor` (no extra dependency): a TPU VM slice booked through a queued resource (spot
  when asked), set up once, each cell started on every host and watched; a preempted slice is
  recreated and set up again and the cell it was running restarted (it resumes from its model
  directory); deleted when released.
- `skypilot.SkyClusterExecutor` (`--backend skypilot`; SkyPilot is optional, not a dependency):
  the same worker as a SkyPilot cluster, `sky launch` once, `sky exec` per cell, relaunched by
  us after a preemption, `sky down` when released.
- `skypilot.SkyPilotExecutor` (`--backend skypilot-jobs`): a managed job per cell (SkyPilot
  provisions, recovers and tears down a slice for every cell: no slice is kept).

`--dry_run` prints the plan (tpu_scripts/plan.py): the commands every worker would run, cells
in dependency order, and how many slices are created for how many cells; it books, writes and
runs nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from study import db_copies
from study.db import ResultsDB
from tpu_scripts import gcloud, launch
from tpu_scripts.cells import (
    CellDatabases,
    CellLike,
    Outcome,
    Placement,
    SliceHolding,
    node_name,
    remote_argv,
    require_databases,
    worker_node_name,
)

# ------------------------------------------------------------------------------ gcloud

class GcloudExecutor(SliceHolding):
    """A worker holding one TPU slice at a time, booked, set up, watched and deleted with
    gcloud; cell after cell runs on it (study.executors.SliceHolder)."""

    def __init__(self, placements: Mapping[str, Placement], repo: str, ref: str, *,
                 runner: launch.Runner, databases: CellDatabases | None = None, worker: int = 0,
                 label: str = "", poll_s: float = 300.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.placements, self.repo, self.ref = dict(placements), repo, ref
        self.runner, self.poll_s, self.sleep = runner, poll_s, sleep
        self.worker, self.label = worker, label
        self.databases = require_databases(databases, runner)
        self.placement: Placement | None = None
        self.spec: gcloud.SliceSpec | None = None

    def _acquire(self, p: Placement) -> gcloud.SliceSpec:
        spec = gcloud.SliceSpec(worker_node_name(self.label, self.worker, p), p.slice,
                                p.project, p.zone, spot=p.spot, queued=True)
        self._say(f"create and set up slice {spec.name} ({p.slice.name})")
        self.placement, self.spec = p, spec  # before booking: a failure deletes what was made
        left = not self.runner.dry_run and launch.node_state(self.runner, spec) == "READY"
        launch.do_create(self.runner, spec)
        launch.do_setup(self.runner, spec, self.repo, self.ref)
        if left:  # a killed coordinator's: the cell it was running must not hold the TPU
            self._say(f"{spec.name} was left by an earlier run; stopping its cells")
            self.runner.run(gcloud.ssh_all(spec, gcloud.stop_cells()), check=False)
        return spec

    def release(self) -> None:
        spec, self.placement, self.spec = self.spec, None, None
        if spec is not None:
            self._say(f"release slice {spec.name}")
            self.runner.run(gcloud.delete(spec), check=False)

    def run(self, cell: CellLike) -> Outcome:
        p = self.placement_of(cell)
        if self.placement is not None and self.placement.key != p.key:
            self.release()  # the runner never asks this (study.executors.assign); a caller might
        dbs = self.databases
        argv = remote_argv(cell.command if dbs is None else dbs.command(cell))
        log = node_name(cell.cell_id)
        if self.runner.dry_run:
            self._say(f"cell {cell.cell_id} ({cell.kind}, {cell.size}, seed {cell.seed}) on "
                      f"{p.slice.name}" + (f"; after {', '.join(cell.deps)}" if cell.deps
                                           else ""))
        failure = None
        try:
            if dbs is not None and not self.runner.dry_run:
                dbs.seed(cell)
            spec = self.spec or self._acquire(p)
            launch.do_train(self.runner, spec, argv, log)
            status = (0 if self.runner.dry_run else
                      launch.do_watch(self.runner, spec, argv, log, self.repo, self.ref,
                                      self.poll_s, self.sleep))
            if status != 0:
                failure = f"exit status {status}; log ~/xitt-logs/{log}.log on {spec.name}"
        except (RuntimeError, OSError) as err:
            failure = str(err).splitlines()[0]
            self.release()  # the slice's state is unknown: the next cell gets a fresh one
        if dbs is None or self.runner.dry_run:
            return Outcome(failure is None, failure)
        return dbs.collect(cell, failure)

    def close(self) -> None:
        self.release()


# ------------------------------------------------------------------------------ grid

def placements_for(sizes: Iterable[str], size_configs: Mapping[str, str], project: str,
                   zone: str | None, spot: bool) -> dict[str, Placement]:
    return {s: Placement.for_config(size_configs[s], project, zone, spot) for s in sizes}


def _size_configs(exp: Any, path: str) -> dict[str, str]:
    """Each size's gin/tpu file (its slice and mesh), from the experiment's size_gin_files."""
    out = {}
    for size in exp.sizes:
        tpu = [f for f in size.gin_files if f.startswith("gin/tpu/")]
        if not tpu:
            raise ValueError(f"{path}: size {size.name!r} has no gin/tpu/ file in "
                             "size_gin_files; the TPU executor needs one per size")
        out[size.name] = tpu[0]
    return out


def make_pool(args: argparse.Namespace, placements: Mapping[str, Placement],
              dbs: CellDatabases, shell: launch.Runner) -> list[Any]:
    """`--workers` executors of `--backend`; workers are named for the study and their index."""
    from tpu_scripts import skypilot

    def make(i: int) -> Any:
        if args.backend == "gcloud":
            return GcloudExecutor(placements, args.repo, args.ref, runner=shell, databases=dbs,
                                  worker=i, label=args.study_dir)
        if args.backend == "skypilot":
            return skypilot.SkyClusterExecutor(placements, args.task_dir, runner=shell,
                                               databases=dbs, worker=i, label=args.study_dir)
        return skypilot.SkyPilotExecutor(placements, args.task_dir, runner=shell,
                                         databases=dbs)

    return [make(i) for i in range(args.workers)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tpu_scripts.executor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="the study's experiment file (gin/study/*.gin)")
    parser.add_argument("--study_dir", required=True, help="gs:// directory of the study")
    parser.add_argument("--backend", choices=("gcloud", "skypilot", "skypilot-jobs"),
                        default="gcloud", help="gcloud slices or SkyPilot clusters kept by "
                        "each worker, or a SkyPilot managed job per cell")
    parser.add_argument("--project", required=True)
    parser.add_argument("--sizes", help="comma-separated sizes to run (default: all); "
                        "coordinators of other sizes may run at once (python -m study merge)")
    parser.add_argument("--rerun_changed", action="store_true",
                        help="re-run finished cells made under other settings and their "
                             "dependents (default: refuse, listing the differences)")
    parser.add_argument("--zone")
    parser.add_argument("--no_spot", action="store_true")
    parser.add_argument("--repo", default="https://github.com/ORG/xitt.git")
    parser.add_argument("--ref", default="main")
    parser.add_argument("--task_dir", default="sky_tasks", help="SkyPilot task files")
    parser.add_argument("--local_dir",
                        help="the study's results database on this machine (results.sqlite; "
                             "`python -m study status/report --study_dir LOCAL_DIR` read it); "
                             "default study_runs/<experiment name>")
    parser.add_argument("--workers", type=int, default=1,
                        help="cells in flight at once, each worker on its own slice")
    parser.add_argument("--dry_run", action="store_true",
                        help="print the plan (commands, slices created vs cells run)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from eval.quiet import quiet_imports

    quiet_imports(tasks=False)  # TF's start-up lines (the experiment's gin imports seqio)
    try:
        from study import experiment, grid, runner
        from tpu_scripts import plan

        exp = experiment.select_sizes(experiment.load(args.experiment, check_files=False),
                                      args.sizes)
        cells = grid.build(exp, args.study_dir)
        size_configs = _size_configs(exp, args.experiment)
        placements = placements_for(size_configs, size_configs, args.project, args.zone,
                                    not args.no_spot)
        if args.workers < 1:
            raise ValueError(f"--workers {args.workers}: expected at least 1")
        if not grid.is_remote(args.study_dir) and not args.dry_run:
            print(f"warning: --study_dir {args.study_dir} is not on an object store (gs://); "
                  "the slices must share it", file=sys.stderr)
        local = grid.absolute(args.local_dir or f"study_runs/{exp.name}")
        dbs = CellDatabases(f"{local}/results.sqlite", args.study_dir)
        shell = launch.Runner(args.dry_run)
        pool = make_pool(args, placements, dbs, shell)
        if args.dry_run:  # the runner's choices, every cell succeeding
            print(plan.simulate(cells, pool).summary())
            return 0
        os.makedirs(local, exist_ok=True)
        copy = db_copies.copy_path(args.study_dir, db_copies.coordinator_name(
            [s.name for s in exp.sizes] if args.sizes else None))
        if not os.path.exists(dbs.db_path) and db_copies.fetch(copy, dbs.db_path):
            print(f"started from the copy {copy}", file=sys.stderr)
        with ResultsDB(dbs.db_path) as db:  # copied to the study dir as each cell ends
            summary = runner.run(exp, args.study_dir, pool, db=db,
                                 rerun_changed=args.rerun_changed,
                                 on_cell_end=lambda: db_copies.publish(dbs.db_path, copy))
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from study import status

    print(status.render(summary))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    from xitt_common.quiet import entry_point

    entry_point(libraries=False)  # first: no library lines unless --verbose
    sys.exit(main())
