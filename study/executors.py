"""Executors: where a cell's command runs.

The runner hands an executor one cell at a time, in dependency order (attributes of
`study.grid.Cell`: cell_id, kind, size, seed, deps, command, model_dir); `run(cell)` returns an
`Outcome` once the cell has finished. The TPU executors (scale-out) implement the same two
methods, and hold a machine between cells (`SliceHolder`): the runner then hands each only
cells of the slice type it holds (`assign`) and has it give the slice back when no ready cell
fits it.

`LocalExecutor` (default) keeps one long-lived worker process (`python -m study worker`) that
runs cells one at a time in-process, so a cell costs its compile and steps, not an interpreter
start with JAX/TF imports. If the worker dies, that cell fails and the next cell starts a
fresh worker. `SubprocessExecutor` runs each cell's own command (slower, fully isolated).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Hashable, Sequence
from typing import IO, Any, Protocol

from study import grid
from study.grid import Cell


@dataclasses.dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None


class Executor(Protocol):
    def run(self, cell: Cell) -> Outcome: ...
    def close(self) -> None: ...


class SliceHolder(Executor, Protocol):
    """An executor that keeps its machine (a TPU slice) from one cell to the next, so setup and
    a warm compilation cache are paid once per slice, not once per cell."""

    @property
    def holds(self) -> Hashable | None: ...          # the slice type held now; None: none
    def slice_of(self, cell: Cell) -> Hashable: ...   # the slice type the cell runs on
    def release(self) -> None: ...  # give it back; holds None after, even if that failed


def holds(ex: Any) -> Hashable | None:
    """The slice type `ex` holds (None for executors that hold none, e.g. the local ones)."""
    return getattr(ex, "holds", None)


def assign(free: Sequence[Any], ready: Sequence[Cell], seen: dict[int, set] | None = None,
           ) -> tuple[list[tuple[Any, Cell]], list[Any]]:
    """Which free executor runs which ready cell, and which give their slice back.

    An executor holding a slice takes only a ready cell of that slice type; with none to take
    it releases the slice (an idle slice costs as much as a busy one) and, once released, takes
    any cell. Executors holding nothing take the ready cells left, in dependency order. `seen`
    (executor id -> evaluation targets it has run) prefers a cell whose target the executor
    knows: a worker keeps the evaluation data it has read.
    """
    left, pairs, releases = list(ready), [], []

    def pick(ex: Any, options: list[Cell]) -> Cell:
        known = seen.get(id(ex), set()) if seen is not None else set()
        cell = next((c for c in options if getattr(c, "target", None) in known), options[0])
        left.remove(cell)
        return cell

    for ex in free:
        held = holds(ex)
        if held is None:
            continue
        fits = [c for c in left if ex.slice_of(c) == held]
        if fits:
            pairs.append((ex, pick(ex, fits)))
        else:
            releases.append(ex)
    for ex in free:
        if holds(ex) is None and left:
            pairs.append((ex, pick(ex, left)))
    return pairs, releases


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def _log_file(cell: Cell) -> str:
    os.makedirs(cell.model_dir, exist_ok=True)
    return os.path.join(cell.model_dir, "cell.log")


class SubprocessExecutor:
    """One process per cell: the cell's own command, output to `<model_dir>/cell.log`."""

    def run(self, cell: Cell) -> Outcome:
        cmd = list(cell.command)
        if cmd[0] == "python":
            cmd[0] = sys.executable
        with open(_log_file(cell), "a", encoding="utf-8") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env()).returncode
        return Outcome(True) if rc == 0 else Outcome(False, f"exit status {rc}; see "
                                                            f"{_log_file(cell)}")

    def close(self) -> None:
        pass


class LocalExecutor:
    """One worker process, cells run in it one at a time (JSON lines over a pipe)."""

    def __init__(self, experiment: str, study_dir: str, log_name: str = "worker.log", *,
                 db_path: str | None = None) -> None:
        self.experiment, self.study_dir = experiment, study_dir
        self.log_path = os.path.join(study_dir, log_name)  # an absolute log_name stays
        self.db_path = db_path or os.path.join(study_dir, "results.sqlite")
        self._proc: subprocess.Popen | None = None
        self._replies: IO[str] | None = None

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        log = open(self.log_path, "a", encoding="utf-8")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "study", "worker", self.experiment, "--study_dir",
             self.study_dir, "--reply_fd", str(write_fd), "--db", self.db_path],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, text=True,
            env=_env(), pass_fds=(write_fd,))
        log.close()
        os.close(write_fd)
        self._replies = os.fdopen(read_fd, "r", encoding="utf-8")

    def run(self, cell: Cell) -> Outcome:
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps({"cell": cell.cell_id}) + "\n")
            self._proc.stdin.flush()
            line = self._replies.readline() if self._replies else ""
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            code = self._proc.wait()
            self._proc = None
            return Outcome(False, f"worker process died (exit status {code}) while running "
                                  f"{cell.cell_id}; see {self.log_path}")
        reply = json.loads(line)
        return Outcome(bool(reply["ok"]), reply.get("error"))

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None
        if self._replies is not None:
            self._replies.close()
            self._replies = None


def worker_main(experiment: str, study_dir: str, reply_fd: int, db_path: str) -> None:
    """The worker loop: read `{"cell": id}` lines, run each cell in-process, reply on
    `reply_fd` with `{"cell", "ok", "error"}`; the cell's output goes to its cell.log."""
    from study import cell as cell_mod
    from study import experiment as exp_mod
    from study.db import ResultsDB

    exp = exp_mod.load(experiment)
    cell_mod.enable_compilation_cache(study_dir)
    replies = os.fdopen(reply_fd, "w", encoding="utf-8")
    cells = grid.by_id(grid.build(exp, study_dir))
    db = ResultsDB(db_path)  # the coordinator's
    saved_out, saved_err = os.dup(1), os.dup(2)
    for line in sys.stdin:
        cell_id = json.loads(line)["cell"]
        wall, cpu = time.monotonic(), time.process_time()
        with open(_log_file(cells[cell_id]), "a", encoding="utf-8") as log:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                cell_mod.run_cell(exp, cell_id, study_dir, db=db)
                reply = {"cell": cell_id, "ok": True, "error": None}
            except Exception as e:  # recorded in the DB by run_cell; reported to the runner
                import traceback

                traceback.print_exc()
                reply = {"cell": cell_id, "ok": False, "error": cell_mod.one_line(e)}
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved_out, 1)
                os.dup2(saved_err, 2)
        print(f"{cell_id}: {'ok' if reply['ok'] else 'failed'}, wall "
              f"{time.monotonic() - wall:.1f}s, process cpu {time.process_time() - cpu:.1f}s",
              flush=True)
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    db.close()
