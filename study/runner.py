"""`python -m study run EXPERIMENT [--study_dir DIR]`: run the grid through an executor.

Cells go in dependency order. A finished cell (status 'done' in the results database) is
skipped; a cell left 'running' by a killed run is set back to pending and rerun, and the
trainer resumes it from its last checkpoint in its model directory; a failed cell is recorded
with its error and its dependents are blocked, while independent cells go on. Failed cells are
retried on the next run. `--workers N` runs up to N ready cells side by side (one local worker
process each); the toy study on 2 cores runs two. An executor that keeps a TPU slice between
cells gets only cells of that slice type and gives it back when none is ready
(`study.executors.assign`).

Before anything runs, every finished cell's fingerprint (study/fingerprint.py) is compared with
what the experiment gives it now: a difference refuses the run, listing the settings that
differ, unless `rerun_changed`, which re-runs exactly those cells and their dependents (their
model directories are deleted: they hold checkpoints of the old recipe). The primary endpoint
is stored in the database at the first run and cannot change once a cell has finished.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from study import budget, executors, fingerprint, grid, status
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

    _keep_primary_endpoint(exp, db)
    db.set_meta("experiment_file", os.path.abspath(exp.path))  # what report checks against
    db.set_meta("experiment_name", exp.name)
    db.set_meta("toy", str(exp.toy))
    db.set_meta("data_source", exp.data_source)
    for c in cells:
        rec = db.get_cell(c.cell_id)
        if rec is None:
            db.upsert_cell(cell_mod.cell_record(exp, c))
        elif rec.status == "running":
            db.mark_pending(c.cell_id)


PRIMARY_ENDPOINT_META = "primary_endpoint"


def check_primary_endpoint(exp: Experiment, db) -> str:
    """The declared primary endpoint (JSON); refuse a different one than the database's once a
    cell has finished (choosing the endpoint after seeing results is what declaring it up
    front prevents)."""
    declared = json.dumps(exp.primary_endpoint.as_dict(), sort_keys=True)
    stored = db.meta().get(PRIMARY_ENDPOINT_META)
    if stored is not None and stored != declared and db.cells(status="done"):
        raise ValueError(f"{exp.path}: primary_endpoint = {declared} but this study's finished "
                         f"cells were run under primary_endpoint = {stored} (results database "
                         f"{db.path}); it cannot change once a cell has finished")
    return declared


def _keep_primary_endpoint(exp: Experiment, db) -> None:
    db.set_meta(PRIMARY_ENDPOINT_META, check_primary_endpoint(exp, db))


def check_recipe(exp: Experiment, cells: Sequence[grid.Cell], db, *,
                 rerun_changed: bool = False) -> list[str]:
    """Refuse when a finished cell of `cells` was made under other settings (one line listing
    them), or with `rerun_changed` set those cells and their dependents back to pending,
    delete their model directories and return their ids (dependency order)."""
    diffs = fingerprint.changed(db.cells(status="done"), fingerprint.compute(exp, cells))
    if not diffs:
        return []
    affected = set(diffs)
    for cid in diffs:
        affected |= grid.dependents(cells, cid)
    if not rerun_changed:
        raise fingerprint.RecipeChanged(
            f"{exp.path}: {len(diffs)} finished cell(s) in {db.path} were made under other "
            f"settings: {fingerprint.summary(diffs)}. Restore the settings, use a new "
            f"--study_dir, or give --rerun_changed to re-run them and their dependents "
            f"({len(affected)} cells)")
    from xitt_common import fs

    ordered = [c for c in cells if c.cell_id in affected]
    for c in ordered:
        if db.get_cell(c.cell_id) is not None:
            db.mark_pending(c.cell_id)
        model_dir = fs.path(c.model_dir)
        if model_dir.exists():
            model_dir.rmtree()
    return [c.cell_id for c in ordered]


def _call(executor: Executor, cell: grid.Cell | None) -> Future:
    """Run a cell (None: release the executor's slice) in the calling thread (one executor:
    no threads, as a plain loop would)."""
    future: Future = Future()
    try:
        future.set_result(executor.run(cell) if cell is not None
                          else executor.release())  # type: ignore[attr-defined]
    except Exception as e:  # noqa: BLE001 - recorded as the cell's failure
        future.set_exception(e)
    return future


def run(exp: Experiment, study_dir: str, executor: Executor | Sequence[Executor], *, db=None,
        progress: Progress | None = None, rerun_changed: bool = False,
        on_cell_end: Callable[[], None] | None = None) -> status.Summary:
    """Run every cell not done yet. With several executors (`--workers N`), each runs one cell
    at a time and a cell starts as soon as its dependencies are done and an executor is free;
    the first ready cell in dependency order goes first. `on_cell_end` is called after each
    cell has ended (the copy of the database in the study directory)."""
    from study import cell as cell_mod
    from study.db import ResultsDB

    pool = list(executor) if isinstance(executor, (list, tuple)) else [executor]
    if not grid.is_remote(study_dir):  # gs://: the TPU executors' model directories
        os.makedirs(study_dir, exist_ok=True)
    own = db is None
    db = db or ResultsDB(os.path.join(study_dir, cell_mod.DB_FILE))
    threads = ThreadPoolExecutor(len(pool)) if len(pool) > 1 else None
    try:
        cells = grid.build(exp, study_dir)
        check_primary_endpoint(exp, db)  # the checks before anything is written or deleted
        budget.check(exp, study_dir, progress=lambda line: print(f"budget {line}",
                                                                  file=sys.stderr))
        check_recipe(exp, cells, db, rerun_changed=rerun_changed)
        materialize(exp, cells, db)
        progress = progress or Progress(len(cells))
        done = {r.cell_id for r in db.cells() if r.status == "done"}
        todo = [c for c in cells if c.cell_id not in done]
        failed: set[str] = set()
        free = list(pool)
        running: dict[Future, tuple[grid.Cell | None, Executor]] = {}
        seen: dict[int, set[str]] = {id(ex): set() for ex in pool}  # targets each has run
        while True:
            records = {r.cell_id: r for r in db.cells()}
            ready = []
            for c in list(todo):
                if any(d in failed for d in c.deps):
                    failed.add(c.cell_id)  # blocked: a dependency failed (pending in the DB)
                    todo.remove(c)
                elif all(getattr(records.get(d), "status", "") == "done" for d in c.deps):
                    ready.append(c)
            # Slice holders get cells of their slice type or give the slice back; with several
            # executors each prefers a target it knows (one runs in dependency order).
            pairs, releases = executors.assign(free, ready, seen if len(pool) > 1 else None)
            for ex in releases:
                free.remove(ex)
                running[threads.submit(ex.release) if threads is not None
                        else _call(ex, None)] = (None, ex)
            for ex, c in pairs:
                free.remove(ex)
                todo.remove(c)
                seen[id(ex)].add(c.target)
                current = [r.cell_id for r, _ in running.values() if r] + [c.cell_id]
                _show(progress, cells, db, current, len(pool))
                future = (threads.submit(ex.run, c) if threads is not None else _call(ex, c))
                running[future] = (c, ex)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                c, ex = running.pop(future)
                free.append(ex)
                if c is None:  # a slice given back
                    if future.exception() is not None:
                        print(f"warning: giving a slice back failed: "
                              f"{cell_mod.one_line(future.exception())}", file=sys.stderr)
                    continue
                try:
                    outcome: Outcome = future.result()
                except Exception as e:  # noqa: BLE001 - the executor itself failed
                    outcome = Outcome(False, cell_mod.one_line(e))
                if not outcome.ok:
                    failed.add(c.cell_id)
                    rec = db.get_cell(c.cell_id)
                    if rec is None or rec.status != "failed":  # the worker died first
                        db.mark_failed(c.cell_id, outcome.error or "failed",
                                       end_time=cell_mod.now())
                if on_cell_end is not None:
                    on_cell_end()
        records = {r.cell_id: r for r in db.cells()}
        summary = status.summarize(cells, records)
        progress.show(len(summary.done), "finished", 0.0, len(summary.failed))
        progress.end()
        return summary
    finally:
        for ex in pool:
            ex.close()
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)
        if own:
            db.close()


def _show(progress: Progress, cells: list[grid.Cell], db, current: list[str],
          workers: int) -> None:
    records = {r.cell_id: r for r in db.cells()}
    summary = status.summarize(cells, records)
    eta = summary.remaining_s
    if summary.unknown:  # kinds/sizes not measured yet: the mean of every finished cell
        every = [d for ds in status.durations(records.values()).values() for d in ds]
        eta = eta + summary.unknown * sum(every) / len(every) if every else None
    if eta is not None:
        eta /= workers  # measured durations are wall times of cells run side by side
    progress.show(len(summary.done), " + ".join(current), eta, len(summary.failed))
