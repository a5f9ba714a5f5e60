"""TPU executors for the study: hand each cell to an existing job system, not a scheduler of ours.

    python -m tpu_scripts.executor gin/study/study_xxl.gin --study_dir gs://B/study \
        --project P --backend gcloud|skypilot --workers 16 [--local_dir DIR] [--dry_run]

The study runner (study/runner.py, as `python -m study run` uses it) starts a cell once its
dependencies are done and one of `--workers` executors is free; each executor runs one cell at
a time (attributes `cell_id`, `kind`, `size`, `seed`, `deps`, `command` = `python -m study
run-cell ...`, `model_dir`) and returns once it has ended. Model directories live under the
shared `--study_dir` (gs://). The study's results database stays on this machine
(`--local_dir`): each cell gets its own database next to its model directory, seeded with its
dependencies' records, and imported back when its job ends (`CellDatabases`, study/cell_db.py),
so `python -m study status EXPERIMENT --study_dir LOCAL_DIR` and `python -m study report
--study_dir LOCAL_DIR` work as for a local study, and a rerun skips the cells already done.

- `GcloudExecutor` (no extra dependency): per cell, a TPU VM slice of the size's shipped config
  (gin/tpu), booked through a queued resource (spot when asked), set up idempotently, the
  cell's command started on every host, watched, recreated and restarted after a preemption
  (the cell resumes from its model directory), then deleted.
- `SkyPilotExecutor` (optional: SkyPilot is not a dependency; install it yourself to submit):
  per cell a task YAML and `sky jobs launch`; managed jobs recover preempted TPU slices and
  restart the command, which resumes from its model directory.

`--dry_run` prints the task files and commands the grid would submit, every cell once, in
dependency order, and books, writes and runs nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from study import cell_db
from study.db import ResultsDB
from study.grid import check_order
from tpu_scripts import configs, gcloud, launch, topology


class CellLike(Protocol):
    cell_id: str
    kind: str
    size: str
    seed: int
    deps: tuple[str, ...]
    command: Sequence[str]
    model_dir: str


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Same fields as study.executors.Outcome."""

    ok: bool
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a size's cells run: its gin/tpu config (slice, mesh) and the GCP location."""

    config: Path
    slice: topology.Slice
    project: str
    zone: str
    spot: bool = True

    @classmethod
    def for_config(cls, config: str | Path, project: str, zone: str | None = None,
                   spot: bool = True) -> Placement:
        path = Path(config)
        full = path if path.exists() else configs.REPO_ROOT / path
        slice_name = _slice_macro(full)
        slice_ = topology.Slice.parse(slice_name)
        return cls(path, slice_, project, zone or slice_.chip.default_zone, spot)


def _slice_macro(path: Path) -> str:
    """TPU_SLICE of a gin/tpu file, read as text (no gin, no JAX needed for a dry run)."""
    match = re.search(r"^TPU_SLICE\s*=\s*'([^']+)'", path.read_text(), re.M)
    if not match:
        raise ValueError(f"{path}: no TPU_SLICE = '...' line (is it a gin/tpu config?)")
    return match.group(1)


def node_name(cell_id: str) -> str:
    """A valid, stable TPU name for a cell: lowercase, '-' for anything else, hashed suffix."""
    import hashlib

    digest = hashlib.sha256(cell_id.encode()).hexdigest()[:8]
    base = re.sub(r"[^a-z0-9]+", "-", cell_id.lower()).strip("-")[:40].strip("-")
    return gcloud.check_tpu_name(f"xitt-{base}-{digest}" if base else f"xitt-{digest}")


def remote_argv(command: Sequence[str]) -> list[str]:
    """The cell's argv with `python` as the slice's venv python."""
    argv = list(command)
    if argv and argv[0] in ("python", "python3", sys.executable):
        argv = gcloud.python(*argv[1:])
    return argv


class CellDatabases:
    """The study's results database here, and each cell's own next to its model directory
    (study/cell_db.py): seeded before the cell's job, imported when the job has ended."""

    def __init__(self, db_path: str | Path, study_dir: str) -> None:
        self.db_path, self.study_dir = str(db_path), study_dir

    def path(self, cell: CellLike) -> str:
        return cell_db.path_for(self.study_dir, cell.cell_id)

    def command(self, cell: CellLike) -> list[str]:
        return [*cell.command, "--db", self.path(cell)]

    def seed(self, cell: CellLike) -> None:
        """Mark the cell running here (`python -m study status` shows it in flight) and write
        the database its job starts from."""
        with ResultsDB(self.db_path) as db:  # one connection per call: executors run in threads
            db.mark_running(cell.cell_id)
            cell_db.seed(db, cell.cell_id, cell.deps, self.path(cell))

    def collect(self, cell: CellLike, failure: str | None) -> Outcome:
        """The cell's outcome as its database records it, now in the study's."""
        with ResultsDB(self.db_path) as db:
            rec = cell_db.collect(db, cell.cell_id, self.path(cell))
        if rec is not None and rec.status == "done":
            return Outcome(True)
        if rec is None:
            state = "no cell database"
        elif rec.status == "failed":
            state = rec.error or "failed"
        else:
            state = f"the cell recorded no result (left {rec.status})"
        return Outcome(False, f"{failure}; {state}" if failure else state)


def _databases(dbs: CellDatabases | None, runner: launch.Runner) -> CellDatabases | None:
    if dbs is None and not runner.dry_run:
        raise ValueError("a TPU executor that runs cells needs CellDatabases (the study's "
                         "database and where each cell's own lives)")
    return dbs


# ------------------------------------------------------------------------------ gcloud

class GcloudExecutor:
    """One slice per cell, booked, set up, run, watched and deleted with gcloud."""

    def __init__(self, placements: Mapping[str, Placement], repo: str, ref: str, *,
                 runner: launch.Runner, databases: CellDatabases | None = None,
                 poll_s: float = 300.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.placements, self.repo, self.ref = dict(placements), repo, ref
        self.runner, self.poll_s, self.sleep = runner, poll_s, sleep
        self.databases = _databases(databases, runner)

    def spec(self, cell: CellLike) -> gcloud.SliceSpec:
        if cell.size not in self.placements:
            raise ValueError(f"cell {cell.cell_id}: no TPU placement for size {cell.size!r} "
                             f"(have {sorted(self.placements)})")
        p = self.placements[cell.size]
        return gcloud.SliceSpec(node_name(cell.cell_id), p.slice, p.project, p.zone,
                                spot=p.spot, queued=True)

    def run(self, cell: CellLike) -> Outcome:
        spec = self.spec(cell)
        dbs = self.databases
        argv = remote_argv(cell.command if dbs is None else dbs.command(cell))
        log = node_name(cell.cell_id)
        if self.runner.dry_run:
            print(f"# cell {cell.cell_id} ({cell.kind}, {cell.size}, seed {cell.seed}) on "
                  f"{spec.slice.name}" + (f"; after {', '.join(cell.deps)}" if cell.deps
                                          else ""), file=self.runner.out)
        failure = None
        try:
            if dbs is not None and not self.runner.dry_run:
                dbs.seed(cell)
            launch.do_create(self.runner, spec)
            launch.do_setup(self.runner, spec, self.repo, self.ref)
            launch.do_train(self.runner, spec, argv, log)
            status = (0 if self.runner.dry_run else
                      launch.do_watch(self.runner, spec, argv, log, self.repo, self.ref,
                                      self.poll_s, self.sleep))
            if status != 0:
                failure = f"exit status {status}; log ~/xitt-logs/{log}.log"
        except (RuntimeError, OSError) as err:
            failure = str(err).splitlines()[0]
        finally:
            self.runner.run(gcloud.delete(spec), check=False)
        if dbs is None or self.runner.dry_run:
            return Outcome(failure is None, failure)
        return dbs.collect(cell, failure)

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------ SkyPilot

def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def skypilot_task(cell: CellLike, placement: Placement,
                  command: Sequence[str] | None = None) -> str:
    """The SkyPilot task YAML of one cell (a managed job on a TPU VM slice); `command`
    defaults to the cell's own."""
    s = placement.slice
    setup = ("(test -x ~/xitt-venv/bin/python || python3 -m venv ~/xitt-venv) && "
             "~/xitt-venv/bin/pip install -q -c constraints.txt -e '.[tpu]'")
    # SkyPilot runs `run` in the synced workdir (~/sky_workdir) on every host of the slice.
    run = shlex.join(remote_argv(cell.command if command is None else command))
    envs = ([f"envs:\n  {launch.DISTRIBUTED_ENV}: \"1\"  # one process per host: "
             "jax.distributed.initialize()"] if s.num_hosts > 1 else [])
    return "\n".join([
        f"name: {_q(node_name(cell.cell_id))}",
        f"# cell {json.dumps(cell.cell_id)} ({cell.kind}, {cell.size}, seed {cell.seed}); "
        f"deps: {json.dumps(list(cell.deps))}",
        "resources:",
        f"  accelerators: {_q('tpu-' + s.accelerator_type)}",
        "  accelerator_args:",
        f"    runtime_version: {_q(s.chip.runtime_version)}",
        f"  use_spot: {'true' if placement.spot else 'false'}",
        "  cloud: gcp",
        f"  zone: {_q(placement.zone)}",
        "num_nodes: 1  # a TPU pod slice is one node; run executes on every host",
        "workdir: .",
        *envs,
        f"setup: {_q(setup)}",
        f"run: {_q(run)}",
        "",
    ])


class SkyPilotExecutor:
    """Each cell as a SkyPilot managed job (`sky jobs launch`), waited for until it ends; run
    several (the study runner's workers) for jobs side by side."""

    def __init__(self, placements: Mapping[str, Placement], task_dir: str | Path, *,
                 runner: launch.Runner, databases: CellDatabases | None = None,
                 poll_s: float = 120.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.placements, self.task_dir = dict(placements), Path(task_dir)
        self.runner, self.poll_s, self.sleep = runner, poll_s, sleep
        self.databases = _databases(databases, runner)

    def task_file(self, cell: CellLike) -> Path:
        return self.task_dir / f"{node_name(cell.cell_id)}.yaml"

    def run(self, cell: CellLike) -> Outcome:
        if cell.size not in self.placements:
            return Outcome(False, f"no TPU placement for size {cell.size!r}")
        dbs = self.databases
        text = skypilot_task(cell, self.placements[cell.size],
                             None if dbs is None else dbs.command(cell))
        path = self.task_file(cell)
        name = node_name(cell.cell_id)
        argv = ["sky", "jobs", "launch", "--name", name, "--yes", "--detach-run", str(path)]
        if self.runner.dry_run:
            print(f"# --- {path}", file=self.runner.out)
            print(text, end="", file=self.runner.out)
            self.runner.run(argv)
            return Outcome(True)
        try:
            if dbs is not None:
                dbs.seed(cell)
            self.task_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".yaml.tmp")
            tmp.write_text(text)
            tmp.replace(path)
            self.runner.run(argv)
            outcome = self._wait(name)
        except (RuntimeError, OSError) as err:
            outcome = Outcome(False, str(err).splitlines()[0])
        return outcome if dbs is None else dbs.collect(cell, outcome.error)

    def _wait(self, name: str) -> Outcome:
        while True:
            out = self.runner.run(["sky", "jobs", "queue"], capture=True)
            for line in out.splitlines():
                fields = line.split()
                if name in fields:
                    status = next((f for f in fields if f.isupper() and f.isalpha()
                                   or f.startswith("FAILED")), "")
                    if status == "SUCCEEDED":
                        return Outcome(True)
                    if status.startswith("FAILED") or status == "CANCELLED":
                        return Outcome(False, f"managed job {name}: {status} "
                                              f"(sky jobs logs --name {name})")
            self.sleep(self.poll_s)

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------ grid

def submit(cells: Sequence[CellLike], executor: Any) -> dict[str, Outcome]:
    """Run every cell in order; a cell whose dependency failed is skipped, not run."""
    check_order(cells)
    outcomes: dict[str, Outcome] = {}
    for cell in cells:
        failed = [d for d in cell.deps if not outcomes[d].ok]
        if failed:
            outcomes[cell.cell_id] = Outcome(False, f"skipped: dependency {failed[0]} failed")
            continue
        outcomes[cell.cell_id] = executor.run(cell)
    executor.close()
    return outcomes


def placements_for(sizes: Iterable[str], size_configs: Mapping[str, str], project: str,
                   zone: str | None, spot: bool) -> dict[str, Placement]:
    return {s: Placement.for_config(size_configs[s], project, zone, spot) for s in sizes}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tpu_scripts.executor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="the study's experiment file (gin/study/*.gin)")
    parser.add_argument("--study_dir", required=True, help="gs:// directory of the study")
    parser.add_argument("--backend", choices=("gcloud", "skypilot"), default="gcloud")
    parser.add_argument("--project", required=True)
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
                        help="cells in flight at once, each on its own slice or managed job")
    parser.add_argument("--dry_run", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from eval.quiet import quiet_imports

    quiet_imports(tasks=False)  # TF's start-up lines (the experiment's gin imports seqio)
    try:
        from study import experiment, grid, runner

        exp = experiment.load(args.experiment, check_files=False)
        cells = grid.build(exp, args.study_dir)
        size_configs = {}
        for size in exp.sizes:
            tpu = [f for f in size.gin_files if f.startswith("gin/tpu/")]
            if not tpu:
                raise ValueError(f"{args.experiment}: size {size.name!r} has no gin/tpu/ file "
                                 "in size_gin_files; the TPU executor needs one per size")
            size_configs[size.name] = tpu[0]
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

        def make() -> Any:
            if args.backend == "gcloud":
                return GcloudExecutor(placements, args.repo, args.ref, runner=shell,
                                      databases=dbs)
            return SkyPilotExecutor(placements, args.task_dir, runner=shell, databases=dbs)

        if args.dry_run:  # every cell once, in dependency order, as if each succeeded
            outcomes = submit(cells, make())
            bad = [c for c, o in outcomes.items() if not o.ok]
            print(f"{len(outcomes)} cells listed", file=sys.stderr)
            return 1 if bad else 0
        os.makedirs(local, exist_ok=True)
        with ResultsDB(dbs.db_path) as db:
            summary = runner.run(exp, args.study_dir, [make() for _ in range(args.workers)],
                                 db=db)
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
