"""Copies of a coordinator's results database in the study directory, so none lives only on
the machine that runs the grid.

A coordinator (`python -m study run ... --local_dir DIR`, `python -m tpu_scripts.executor`)
works on a local SQLite file (SQLite cannot live on an object store) and, as each cell ends,
copies it to `<study_dir>/databases/<coordinator>.sqlite` (local or gs://, through the
checkpoint readers' filesystem layer, xitt_common/fs.py): a consistent snapshot (SQLite's
backup API, so a write in flight is never half-copied), written atomically (a local file by
rename, an object in one upload). `<coordinator>` names the sizes it runs ("base+large",
"all"), so coordinators running other sizes at once never overwrite each other's copy. A
coordinator that starts without its local database begins from its copy: a lost machine loses
nothing. `python -m study merge` puts the copies together into one database.
"""
from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Sequence

from xitt_common import fs

DIR = "databases"


def coordinator_name(sizes: Sequence[str] | None) -> str:
    """'base+large' for a coordinator of those sizes, 'all' for the whole grid."""
    return "+".join(sizes) if sizes else "all"


def copy_path(study_dir: str, name: str) -> str:
    return fs.join(study_dir, DIR, f"{name}.sqlite")


def list_copies(study_dir: str) -> list[str]:
    """Every coordinator's copy in the study directory."""
    folder = fs.join(study_dir, DIR)
    return [fs.join(folder, n) for n in fs.listdir(folder) if n.endswith(".sqlite")]


def _snapshot(db_path: str, out: str) -> None:
    src = sqlite3.connect(db_path, timeout=60.0)
    dst = sqlite3.connect(out)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def publish(db_path: str, dest: str) -> None:
    """A consistent snapshot of the SQLite file at `db_path`, written to `dest` atomically."""
    target = fs.path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    if fs.is_local(dest):
        tmp = f"{dest}.tmp-{os.getpid()}"
        _snapshot(db_path, tmp)
        os.replace(tmp, dest)
        return
    with tempfile.TemporaryDirectory() as tmp_dir:
        local = os.path.join(tmp_dir, "snapshot.sqlite")
        _snapshot(db_path, local)
        target.write_bytes(fs.path(local).read_bytes())  # one upload: old object or new


def fetch(src: str, db_path: str) -> bool:
    """Start `db_path` (which must not exist) from the copy at `src`; False when there is none."""
    if os.path.exists(db_path):
        raise FileExistsError(f"{db_path} exists; a coordinator starts from its copy only "
                              "when it has no database of its own")
    source = fs.path(src)
    if not source.exists():
        return False
    os.makedirs(os.path.dirname(os.path.abspath(db_path)), exist_ok=True)
    tmp = f"{db_path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(source.read_bytes())
    os.replace(tmp, db_path)
    return True


def local_copy(src: str, tmp_dir: str) -> str:
    """A readable local file of a database that may be on gs://."""
    if fs.is_local(src):
        return src
    out = os.path.join(tmp_dir, f"{len(os.listdir(tmp_dir))}.sqlite")
    with open(out, "wb") as f:
        f.write(fs.path(src).read_bytes())
    return out
