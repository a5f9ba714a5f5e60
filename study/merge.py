"""`python -m study merge EXPERIMENT --study_dir DIR [SRC.sqlite ...] [--into FILE]`: the
results of several coordinators (each ran some sizes into its own database) in one database.

Every finished cell of every source must have been made under the experiment's current
recipe (its fingerprint, study/fingerprint.py) and every source must have declared the same
primary endpoint; otherwise nothing is written and the error lists, per source, the settings
that differ. A cell finished in several sources carries the same fingerprint in each, so which
copy is kept does not matter (the first); a finished cell wins over a failed or pending one.
Sources default to the coordinators' copies in `<study_dir>/databases/` (study/db_copies.py).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence

from study import db_copies, fingerprint, grid, runner
from study.db import ResultsDB
from study.experiment import Experiment

_RANK = {"done": 3, "failed": 2, "running": 1, "pending": 0}


def problems(exp: Experiment, name: str, db: ResultsDB, current) -> list[str]:
    """What keeps a database's finished cells from this experiment's results (empty: nothing):
    another primary endpoint, cells outside its grid, cells made under other settings."""
    found = []
    declared = json.dumps(exp.primary_endpoint.as_dict(), sort_keys=True)
    stored = db.meta().get(runner.PRIMARY_ENDPOINT_META)
    if stored is not None and stored != declared and db.cells(status="done"):
        found.append(f"{name}: primary_endpoint {stored}, the experiment declares {declared}")
    done = db.cells(status="done")
    foreign = [r.cell_id for r in done if r.cell_id not in current]
    if foreign:
        found.append(f"{name}: {len(foreign)} finished cell(s) not in this experiment's grid "
                        f"(e.g. {foreign[0]})")
    diffs = fingerprint.changed(done, current)
    if diffs:
        found.append(f"{name}: {len(diffs)} finished cell(s) made under other settings: "
                        f"{fingerprint.summary(diffs)}")
    return found


def merge(exp: Experiment, study_dir: str, sources: Sequence[str], into: str) -> dict[str, int]:
    """Merge `sources` (local or gs:// database files) into the database `into`; returns
    {'done': cells finished in the result, 'imported': cells taken from the sources}."""
    if not sources:
        raise FileNotFoundError(f"no databases to merge (none given, none in "
                                f"{db_copies.copy_path(study_dir, '*')})")
    cells = grid.build(exp, study_dir)
    current = fingerprint.compute(exp, cells)
    with tempfile.TemporaryDirectory() as tmp:
        opened = []
        try:
            for src in sources:
                if os.path.abspath(src) == os.path.abspath(into):
                    continue  # the destination takes part below
                opened.append((src, ResultsDB(db_copies.local_copy(src, tmp), create=False)))
            existed = os.path.exists(into)
            dest = ResultsDB(into)
            try:
                wrong = [p for name, db in [*opened, (into, dest)]
                         for p in problems(exp, name, db, current)]
                if wrong:
                    if not existed:  # refused: leave no empty database behind
                        dest.close()
                        os.remove(into)
                    raise fingerprint.RecipeChanged(
                        f"{exp.path}: not merged, the databases disagree with the experiment: "
                        + "; ".join(wrong))
                imported = _import(dest, [db for _, db in opened])
                runner.materialize(exp, cells, dest)
                return {"done": len(dest.cells(status="done")), "imported": imported}
            finally:
                dest.close()
        finally:
            for _, db in opened:
                db.close()


def _import(dest: ResultsDB, sources: Sequence[ResultsDB]) -> int:
    imported = 0
    with dest.batch():
        for src in sources:
            for rec in src.cells():
                mine = dest.get_cell(rec.cell_id)
                if mine is None or _RANK[rec.status] > _RANK[mine.status]:
                    dest.import_cell(src, rec.cell_id)
                    imported += 1
    return imported
