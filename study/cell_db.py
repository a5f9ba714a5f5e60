"""A cell's own results database, for a cell that runs on another machine (a TPU slice).

The study's database is one SQLite file on the machine that runs the grid; a job on a slice
cannot open it, and SQLite cannot live on an object store. So the TPU executors give each cell
a database of its own on storage both sides reach (`gs://...`, or any shared path): seeded with
the cell's record and its dependencies' (what `run-cell` checks and reads: their status and
selected checkpoints), worked on by `python -m study run-cell ... --db PATH` as a local copy
that process 0 writes back when the cell ends (done or failed), and imported into the study's
database once the job has finished. A local destination is replaced atomically; a `gs://`
object is written in one upload, so a reader sees the old file or the new one.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence

from etils import epath

from study.db import CellRecord, ResultsDB
from study.grid import absolute, is_remote

DIR = "cell_dbs"


def path_for(study_dir: str, cell_id: str) -> str:
    """Where a cell's own database lives: `<study_dir>/cell_dbs/<cell id>.sqlite`."""
    return os.path.join(absolute(study_dir), DIR, *f"{cell_id}.sqlite".split("/"))


def _put(local: str, dest: str) -> None:
    target = epath.Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(dest):
        target.write_bytes(epath.Path(local).read_bytes())
        return
    tmp = f"{dest}.tmp-{os.getpid()}"
    shutil.copyfile(local, tmp)
    os.replace(tmp, dest)


def _get(src: str, local: str) -> None:
    path = epath.Path(src)
    if not path.exists():
        raise FileNotFoundError(f"{src}: no cell database (the executor seeds it before the "
                                "job starts)")
    with open(local, "wb") as f:
        f.write(path.read_bytes())


def seed(db: ResultsDB, cell_id: str, deps: Sequence[str], dest: str) -> None:
    """Write the database a cell starts from: its record and its dependencies' (with their
    results), copied from the study's `db`."""
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "cell.sqlite")
        with ResultsDB(local) as out:
            for cid in (*deps, cell_id):
                if db.get_cell(cid) is not None:
                    out.import_cell(db, cid)
        _put(local, dest)


@contextlib.contextmanager
def opened(path: str, *, write_back: bool) -> Iterator[ResultsDB]:
    """The cell database at `path` as a local working copy, written back on exit (after a
    failure too, which the cell records) when `write_back` (process 0 of a multi-host job)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "cell.sqlite")
        _get(path, local)
        db = ResultsDB(local, create=False)
        try:
            yield db
        finally:
            db.close()
            if write_back:
                _put(local, path)


def collect(db: ResultsDB, cell_id: str, src: str) -> CellRecord | None:
    """Import the cell from its database at `src` into the study's `db`; None where there is
    no such database (the job never started)."""
    if not epath.Path(src).exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "cell.sqlite")
        _get(src, local)
        with ResultsDB(local, create=False) as cell_db:
            if cell_db.get_cell(cell_id) is None:
                return None
            return db.import_cell(cell_db, cell_id)
