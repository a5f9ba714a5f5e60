"""`python -m study run EXPERIMENT [--study_dir DIR]`: run the grid through an executor.

Cells go in dependency order. A finished cell (status 'done' in the results database) is
skipped; a cell left 'running' by a killed run is set back to pending and rerun, and the
trainer resumes it from its last checkpoint in its model directory; a failed cell is recorded
with its error and its dependents are blocked, while independent cells go on. Failed cells are
retried on the next run.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from study import grid, status
from study.executors import Executor, Outcome
from study.experiment import Experiment


class Progress:
    """One updating terminal line: cells done / total, current cell, ETA."""

    def __init__(self, total: int, stream=None) -> None:
        self.total, self.stream = total, stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def show(self, done: int, current: str, eta_s: float | None, failed: int) -> None:
        width = 24
        fill = int(width * done / max(self.total, 1))
        eta = "?" if eta_s is None else status.fmt_seconds(eta_s)
        text = (f"[{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} cells"
                f"{f', {failed} failed' if failed else ''}  ETA {eta}  {current}")
        if self.tty:
            self.stream.write("\r\x1b[2K" + text[:160])
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def materialize(exp: Experiment, cells: list[grid.Cell], db) -> None:
    """Every cell in the DB (new ones pending); 'running' leftovers of a killed run -> pending."""
    from study import cell as cell_mod

    db.set_meta("experiment_file", exp.path)
    db.set_meta("experiment_name", exp.name)
    db.set_meta("toy", str(exp.toy))
    db.set_meta("data_source", exp.data_source)
    for c in cells:
        rec = db.get_cell(c.cell_id)
        if rec is None:
            db.upsert_cell(cell_mod.cell_record(exp, c))
        elif rec.status == "running":
            db.mark_pending(c.cell_id)


def run(exp: Experiment, study_dir: str, executor: Executor, *, db=None,
        progress: Progress | None = None, clock: Callable[[], float] = time.monotonic
        ) -> status.Summary:
    from study import cell as cell_mod
    from study.db import ResultsDB

    os.makedirs(study_dir, exist_ok=True)
    own = db is None
    db = db or ResultsDB(os.path.join(study_dir, cell_mod.DB_FILE))
    try:
        cells = grid.build(exp, study_dir)
        materialize(exp, cells, db)
        progress = progress or Progress(len(cells))
        failed: set[str] = set()
        for c in cells:
            records = {r.cell_id: r for r in db.cells()}
            rec = records.get(c.cell_id)
            if rec is not None and rec.status == "done":
                continue
            if any(d in failed or getattr(records.get(d), "status", "") != "done"
                   for d in c.deps):
                failed.add(c.cell_id)  # blocked: a dependency failed (pending in the DB)
                continue
            summary = status.summarize(cells, records)
            eta = summary.remaining_s
            if summary.unknown:  # kinds/sizes not measured yet: the mean of every finished cell
                every = [d for ds in status.durations(records.values()).values() for d in ds]
                eta = eta + summary.unknown * sum(every) / len(every) if every else None
            progress.show(len(summary.done), c.cell_id, eta, len(summary.failed))
            outcome: Outcome = executor.run(c)
            if not outcome.ok:
                failed.add(c.cell_id)
                rec = db.get_cell(c.cell_id)
                if rec is None or rec.status != "failed":  # the worker died before recording
                    db.mark_failed(c.cell_id, outcome.error or "failed",
                                   end_time=cell_mod.now())
        records = {r.cell_id: r for r in db.cells()}
        summary = status.summarize(cells, records)
        progress.show(len(summary.done), "finished", 0.0, len(summary.failed))
        progress.end()
        return summary
    finally:
        executor.close()
        if own:
            db.close()
