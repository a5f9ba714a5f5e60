"""TPU executors for the study: hand each cell to an existing job system, not a scheduler of ours.

The study runner gives an executor cells in dependency order (attributes `cell_id`, `kind`,
`size`, `seed`, `deps`, `command` = `python -m study run-cell ...`, `model_dir`) and calls
`run(cell)`, which returns once the cell has finished (`ok`, `error`), then `close()`.

- `GcloudExecutor` (no extra dependency): per cell, a TPU VM slice of the size's shipped config
  (gin/tpu), booked through a queued resource (spot when asked), set up idempotently, the
  cell's command started on every host, watched, recreated and restarted after a preemption
  (the cell resumes from its model directory), then deleted.
- `SkyPilotExecutor` (optional: SkyPilot is not a dependency; install it yourself to submit):
  per cell a task YAML and `sky jobs launch`; managed jobs recover preempted TPU slices and
  restart the command, which resumes from its model directory.

`--dry_run` prints the task files and commands the grid would submit, every cell once, in the
order given:

    python -m tpu_scripts.executor gin/study/study_xxl.gin --study_dir gs://B/study \
        --backend skypilot --project P --dry_run
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

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


# ------------------------------------------------------------------------------ gcloud

class GcloudExecutor:
    """One slice per cell, booked, set up, run, watched and deleted with gcloud."""

    def __init__(self, placements: Mapping[str, Placement], repo: str, ref: str, *,
                 runner: launch.Runner, poll_s: float = 300.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.placements, self.repo, self.ref = dict(placements), repo, ref
        self.runner, self.poll_s, self.sleep = runner, poll_s, sleep

    def spec(self, cell: CellLike) -> gcloud.SliceSpec:
        if cell.size not in self.placements:
            raise ValueError(f"cell {cell.cell_id}: no TPU placement for size {cell.size!r} "
                             f"(have {sorted(self.placements)})")
        p = self.placements[cell.size]
        return gcloud.SliceSpec(node_name(cell.cell_id), p.slice, p.project, p.zone,
                                spot=p.spot, queued=True)

    def run(self, cell: CellLike) -> Outcome:
        spec = self.spec(cell)
        argv = remote_argv(cell.command)
        log = node_name(cell.cell_id)
        if self.runner.dry_run:
            print(f"# cell {cell.cell_id} ({cell.kind}, {cell.size}, seed {cell.seed}) on "
                  f"{spec.slice.name}" + (f"; after {', '.join(cell.deps)}" if cell.deps
                                          else ""), file=self.runner.out)
        try:
            launch.do_create(self.runner, spec)
            launch.do_setup(self.runner, spec, self.repo, self.ref)
            launch.do_train(self.runner, spec, argv, log)
            status = (0 if self.runner.dry_run else
                      launch.do_watch(self.runner, spec, argv, log, self.repo, self.ref,
                                      self.poll_s, self.sleep))
        except RuntimeError as err:
            return Outcome(False, str(err))
        finally:
            self.runner.run(gcloud.delete(spec), check=False)
        return Outcome(True) if status == 0 else Outcome(False, f"exit status {status}; log "
                                                                 f"~/xitt-logs/{log}.log")

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------ SkyPilot

def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def skypilot_task(cell: CellLike, placement: Placement) -> str:
    """The SkyPilot task YAML of one cell (a managed job on a TPU VM slice)."""
    s = placement.slice
    setup = ("(test -x ~/xitt-venv/bin/python || python3 -m venv ~/xitt-venv) && "
             "~/xitt-venv/bin/pip install -q -c constraints.txt -e '.[tpu]'")
    # SkyPilot runs `run` in the synced workdir (~/sky_workdir) on every host of the slice.
    run = shlex.join(remote_argv(cell.command))
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
        f"setup: {_q(setup)}",
        f"run: {_q(run)}",
        "",
    ])


class SkyPilotExecutor:
    """Each cell as a SkyPilot managed job (`sky jobs launch`), waited for before the next."""

    def __init__(self, placements: Mapping[str, Placement], task_dir: str | Path, *,
                 runner: launch.Runner, poll_s: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.placements, self.task_dir = dict(placements), Path(task_dir)
        self.runner, self.poll_s, self.sleep = runner, poll_s, sleep

    def task_file(self, cell: CellLike) -> Path:
        return self.task_dir / f"{node_name(cell.cell_id)}.yaml"

    def run(self, cell: CellLike) -> Outcome:
        if cell.size not in self.placements:
            return Outcome(False, f"no TPU placement for size {cell.size!r}")
        text = skypilot_task(cell, self.placements[cell.size])
        path = self.task_file(cell)
        name = node_name(cell.cell_id)
        argv = ["sky", "jobs", "launch", "--name", name, "--yes", "--detach-run", str(path)]
        if self.runner.dry_run:
            print(f"# --- {path}", file=self.runner.out)
            print(text, end="", file=self.runner.out)
            self.runner.run(argv)
            return Outcome(True)
        self.task_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        try:
            self.runner.run(argv)
            return self._wait(name)
        except (RuntimeError, FileNotFoundError) as err:
            return Outcome(False, str(err).splitlines()[0])

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
    parser.add_argument("--dry_run", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        from study import experiment, grid

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
        runner = launch.Runner(args.dry_run)
        executor = (GcloudExecutor(placements, args.repo, args.ref, runner=runner)
                    if args.backend == "gcloud" else
                    SkyPilotExecutor(placements, args.task_dir, runner=runner))
        outcomes = submit(cells, executor)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    bad = [c for c, o in outcomes.items() if not o.ok]
    print(f"{len(outcomes) - len(bad)} cells done, {len(bad)} failed", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
