"""The study's SkyPilot executors (SkyPilot is optional: install it yourself to submit).

- `SkyClusterExecutor` (`--backend skypilot`): a worker keeps a long-lived cluster (one TPU
  slice): `sky launch -c` once (provisioning, with `--retry-until-up` as the queue, and setup),
  `sky exec` per cell (no setup; the workdir is synced again), `sky down` when the runner has no
  ready cell of its slice type. An unmanaged spot cluster is not recovered by SkyPilot, so we
  do it: while a cell runs, a cluster that is not UP (`sky status --refresh`) is taken down,
  launched again and the cell executed again (it resumes from its model directory). Clusters
  stop and go down by themselves after `IDLE_MINUTES` idle, should this coordinator die.
- `SkyPilotExecutor` (`--backend skypilot-jobs`): a managed job per cell (`sky jobs launch`):
  SkyPilot provisions, recovers after a preemption and tears down a slice for every cell.

Both write task files (YAML), never shell strings run here; written against SkyPilot's
documented CLI and task format, not run against a real installation here.
"""
from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tpu_scripts import launch
from tpu_scripts.cells import (
    CellDatabases,
    CellLike,
    Outcome,
    Placed,
    Placement,
    SliceHolding,
    node_name,
    remote_argv,
    require_databases,
    worker_node_name,
)

IDLE_MINUTES = 30
SETUP = ("(test -x ~/xitt-venv/bin/python || python3 -m venv ~/xitt-venv) && "
         "~/xitt-venv/bin/pip install -q -c constraints.txt -e '.[tpu]'")


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def task_yaml(name: str, comment: str, placement: Placement, *, setup: str | None,
              run: Sequence[str] | None) -> str:
    """A SkyPilot task on a TPU VM slice: `setup` once per cluster, `run` (an argv) in the
    synced workdir (~/sky_workdir) on every host of the slice."""
    s = placement.slice
    envs = ([f"envs:\n  {launch.DISTRIBUTED_ENV}: \"1\"  # one process per host: "
             "jax.distributed.initialize()"] if s.num_hosts > 1 and run is not None else [])
    return "\n".join([
        f"name: {_q(name)}",
        f"# {comment}",
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
        *([f"setup: {_q(setup)}"] if setup is not None else []),
        *([f"run: {_q(shlex.join(remote_argv(run)))}"] if run is not None else []),
        "",
    ])


def _about(cell: CellLike) -> str:
    return (f"cell {json.dumps(cell.cell_id)} ({cell.kind}, {cell.size}, seed {cell.seed}); "
            f"deps: {json.dumps(list(cell.deps))}")


def skypilot_task(cell: CellLike, placement: Placement,
                  command: Sequence[str] | None = None) -> str:
    """The managed-job task of one cell (setup and run); `command` defaults to the cell's."""
    return task_yaml(node_name(cell.cell_id), _about(cell), placement, setup=SETUP,
                     run=cell.command if command is None else command)


def job_status(queue: str, name: str) -> str:
    """The status column of job `name` in `sky queue` / `sky jobs queue` output ('' if
    absent): the first all-capitals word of its row (SUCCEEDED, RUNNING, FAILED_SETUP, ...)."""
    for line in queue.splitlines():
        fields = line.split()
        if name in fields:
            return next((f for f in fields if f.replace("_", "").isalpha() and f.isupper()),
                        "")
    return ""


def _failed(status: str) -> bool:
    return status.startswith("FAILED") or status == "CANCELLED"


class _Sky(Placed):
    """What both executors share: placements, task files written atomically, the runner."""

    def __init__(self, placements: Mapping[str, Placement], task_dir: str | Path, *,
                 runner: launch.Runner, databases: CellDatabases | None, poll_s: float,
                 sleep: Callable[[float], None]) -> None:
        self.placements, self.task_dir = dict(placements), Path(task_dir)
        self.runner, self.poll_s, self.sleep = runner, poll_s, sleep
        self.databases = require_databases(databases, runner)

    def command(self, cell: CellLike) -> Sequence[str]:
        return cell.command if self.databases is None else self.databases.command(cell)

    def write(self, name: str, text: str) -> Path:
        path = self.task_dir / f"{name}.yaml"
        if self.runner.dry_run:
            print(f"# --- {path}", file=self.runner.out)
            print(text, end="", file=self.runner.out)
            return path
        self.task_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return path

    def finish(self, cell: CellLike, outcome: Outcome) -> Outcome:
        if self.databases is None or self.runner.dry_run:
            return outcome
        return self.databases.collect(cell, outcome.error)


class SkyPilotExecutor(_Sky):
    """Each cell as a SkyPilot managed job, waited for until it ends; holds no slice."""

    def __init__(self, placements: Mapping[str, Placement], task_dir: str | Path, *,
                 runner: launch.Runner, databases: CellDatabases | None = None,
                 poll_s: float = 120.0, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(placements, task_dir, runner=runner, databases=databases,
                         poll_s=poll_s, sleep=sleep)

    def task_file(self, cell: CellLike) -> Path:
        return self.task_dir / f"{node_name(cell.cell_id)}.yaml"

    def run(self, cell: CellLike) -> Outcome:
        if cell.size not in self.placements:
            return Outcome(False, f"no TPU placement for size {cell.size!r}")
        name = node_name(cell.cell_id)
        try:
            if self.databases is not None and not self.runner.dry_run:
                self.databases.seed(cell)
            path = self.write(name, skypilot_task(cell, self.placements[cell.size],
                                                  self.command(cell)))
            self.runner.run(["sky", "jobs", "launch", "--name", name, "--yes", "--detach-run",
                             str(path)])
            outcome = Outcome(True) if self.runner.dry_run else self._wait(name)
        except (RuntimeError, OSError) as err:
            outcome = Outcome(False, str(err).splitlines()[0])
        return self.finish(cell, outcome)

    def _wait(self, name: str) -> Outcome:
        while True:
            status = job_status(self.runner.run(["sky", "jobs", "queue"], capture=True), name)
            if status == "SUCCEEDED":
                return Outcome(True)
            if _failed(status):
                return Outcome(False, f"managed job {name}: {status} "
                                      f"(sky jobs logs --name {name})")
            self.sleep(self.poll_s)

    def close(self) -> None:
        pass


class SkyClusterExecutor(SliceHolding, _Sky):
    """A worker holding one SkyPilot cluster (a TPU slice) at a time; cell after cell runs on
    it with `sky exec` (study.executors.SliceHolder)."""

    def __init__(self, placements: Mapping[str, Placement], task_dir: str | Path, *,
                 runner: launch.Runner, databases: CellDatabases | None = None, worker: int = 0,
                 label: str = "", poll_s: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(placements, task_dir, runner=runner, databases=databases,
                         poll_s=poll_s, sleep=sleep)
        self.worker, self.label = worker, label
        self.placement: Placement | None = None
        self.cluster: str | None = None

    def _launch(self, p: Placement, cluster: str) -> None:
        """Provision (waiting for capacity) and set up; reuses the cluster when it is UP."""
        path = self.write(cluster, task_yaml(cluster, f"worker {self.worker}'s cluster", p,
                                             setup=SETUP, run=None))
        self.runner.run(["sky", "launch", "--cluster", cluster, "--yes", "--retry-until-up",
                         "--idle-minutes-to-autostop", str(IDLE_MINUTES), "--down", str(path)])

    def _acquire(self, p: Placement) -> str:
        cluster = worker_node_name(self.label, self.worker, p)
        self._say(f"launch and set up cluster {cluster} ({p.slice.name})")
        self.placement, self.cluster = p, cluster  # before launching: a failure takes it down
        left = not self.runner.dry_run and self._state(cluster) == "UP"
        self._launch(p, cluster)
        if left:  # a killed coordinator's: its jobs would hold the TPU ahead of ours
            self._say(f"{cluster} was left by an earlier run; cancelling its jobs")
            self.runner.run(["sky", "cancel", "--yes", "--all", cluster], check=False)
        return cluster

    def release(self) -> None:
        cluster, self.placement, self.cluster = self.cluster, None, None
        if cluster is not None:
            self._say(f"release cluster {cluster}")
            self.runner.run(["sky", "down", "--yes", cluster], check=False)

    def _exec(self, cluster: str, cell: CellLike) -> None:
        name = node_name(cell.cell_id)
        path = self.write(name, task_yaml(name, _about(cell), self.placement_of(cell),
                                          setup=None, run=self.command(cell)))
        self.runner.run(["sky", "exec", cluster, "--name", name, "--detach-run", str(path)])

    def run(self, cell: CellLike) -> Outcome:
        p = self.placement_of(cell)
        if self.placement is not None and self.placement.key != p.key:
            self.release()  # the runner never asks this (study.executors.assign); a caller might
        if self.runner.dry_run:
            self._say(f"cell {cell.cell_id} ({cell.kind}, {cell.size}, seed {cell.seed}) on "
                      f"{p.slice.name}")
        try:
            if self.databases is not None and not self.runner.dry_run:
                self.databases.seed(cell)
            cluster = self.cluster or self._acquire(p)
            self._exec(cluster, cell)
            outcome = Outcome(True) if self.runner.dry_run else self._wait(cluster, cell)
        except (RuntimeError, OSError) as err:
            outcome = Outcome(False, str(err).splitlines()[0])
            self.release()  # the cluster's state is unknown: the next cell gets a fresh one
        return self.finish(cell, outcome)

    def _state(self, cluster: str) -> str:
        out = self.runner.run(["sky", "status", "--refresh", cluster], capture=True,
                              check=False)
        for line in out.splitlines():
            fields = line.split()
            if fields and fields[0] == cluster:
                return next((f for f in fields if f in ("UP", "INIT", "STOPPED")), "")
        return ""

    def _wait(self, cluster: str, cell: CellLike) -> Outcome:
        name = node_name(cell.cell_id)
        while True:
            state = self._state(cluster)
            if state != "UP":  # preempted (or gone): relaunch, set up, run the cell again
                self._say(f"cluster {cluster} {state or 'gone'}; relaunching, resuming "
                          f"{cell.cell_id}")
                self.runner.run(["sky", "down", "--yes", cluster], check=False)
                assert self.placement is not None
                self._launch(self.placement, cluster)
                self._exec(cluster, cell)
            else:
                queue = self.runner.run(["sky", "queue", cluster], capture=True, check=False)
                status = job_status(queue, name)
                if status == "SUCCEEDED":
                    return Outcome(True)
                if _failed(status):
                    return Outcome(False, f"job {name} on {cluster}: {status} "
                                          f"(sky logs {cluster})")
            self.sleep(self.poll_s)

    def close(self) -> None:
        self.release()
