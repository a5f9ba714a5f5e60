"""What every TPU executor shares (tpu_scripts.executor's gcloud slices, tpu_scripts.skypilot's
clusters and managed jobs): where a size's cells run, stable slice names, the command a slice runs,
and each cell's own results database."""
from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from study import cell_db
from study.db import ResultsDB
from tpu_scripts import configs, gcloud, launch, topology
from xitt_common.data_env import with_data_env


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

    @property
    def key(self) -> str:
        """The slice type a worker holds: cells of equal keys run on one slice, whatever their
        size (the slice is set up for the repository, not for a model)."""
        return f"{self.slice.name} {self.project}/{self.zone}{' spot' if self.spot else ''}"


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


def worker_node_name(label: str, worker: int, placement: Placement) -> str:
    """A worker's slice name: stable for (study, worker, slice type), so a rerun takes over a
    slice a killed coordinator left (create is idempotent) instead of leaking it."""
    import hashlib

    digest = hashlib.sha256(f"{label}|{worker}|{placement.key}".encode()).hexdigest()[:8]
    kind = re.sub(r"[^a-z0-9]+", "-", placement.slice.name.lower()).strip("-")
    return gcloud.check_tpu_name(f"xitt-w{int(worker)}-{kind}-{digest}")


def remote_argv(command: Sequence[str]) -> list[str]:
    """The cell's argv with `python` as the slice's venv python, under this machine's
    $XITT_DATA_DIR and $XITT_VOCAB (xitt_common.data_env)."""
    argv = list(command)
    if argv and argv[0] in ("python", "python3", sys.executable):
        argv = gcloud.python(*argv[1:])
    return with_data_env(argv)


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


def require_databases(dbs: CellDatabases | None, runner: launch.Runner) -> CellDatabases | None:
    if dbs is None and not runner.dry_run:
        raise ValueError("a TPU executor that runs cells needs CellDatabases (the study's "
                         "database and where each cell's own lives)")
    return dbs


class Placed:
    """An executor that places each cell by its size (gcloud slices, SkyPilot clusters and
    managed jobs alike)."""

    placements: Mapping[str, Placement]

    def placement_of(self, cell: CellLike) -> Placement:
        if cell.size not in self.placements:
            raise ValueError(f"cell {cell.cell_id}: no TPU placement for size {cell.size!r} "
                             f"(have {sorted(self.placements)})")
        return self.placements[cell.size]


class SliceHolding(Placed):
    """A worker that keeps one slice at a time (study.executors.SliceHolder): the slice type it
    holds, each cell's, and its progress lines."""

    placement: Placement | None
    worker: int
    runner: launch.Runner

    @property
    def holds(self) -> str | None:
        return None if self.placement is None else self.placement.key

    def slice_of(self, cell: CellLike) -> str:
        return self.placement_of(cell).key

    def _say(self, text: str) -> None:
        print(f"# worker {self.worker}: {text}",
              file=self.runner.out if self.runner.dry_run else sys.stderr, flush=True)
