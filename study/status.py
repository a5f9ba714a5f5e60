"""What is done, running, failed, blocked and left, with the estimated remaining compute.

The estimate of a cell left to run is the mean measured duration of finished cells of the same
kind and size (from the database's start/end times); cells of a (kind, size) never measured
are counted as unknown rather than guessed.
"""
from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping

from study.grid import Cell


@dataclasses.dataclass(frozen=True)
class Summary:
    total: int
    done: list[str]
    running: list[str]
    failed: dict[str, str]       # cell id -> error
    blocked: list[str]           # a dependency failed
    left: list[str]              # pending, runnable once their deps finish
    remaining_s: float           # estimated compute of running + left cells
    unknown: int                 # left cells with no measured cell of their kind and size


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    try:
        return (datetime.datetime.strptime(end, fmt)
                - datetime.datetime.strptime(start, fmt)).total_seconds()
    except ValueError:
        return None


def durations(records: Iterable) -> dict[tuple[str, str], list[float]]:
    """(kind, size) -> durations (s) of finished cells."""
    out: dict[tuple[str, str], list[float]] = {}
    for r in records:
        if r.status == "done":
            s = _seconds(r.start_time, r.end_time)
            if s is not None:
                out.setdefault((r.kind, r.size), []).append(s)
    return out


def estimate(cell: Cell, measured: Mapping[tuple[str, str], list[float]]) -> float | None:
    d = measured.get((cell.kind, cell.size))
    return sum(d) / len(d) if d else None


def summarize(cells: list[Cell], records: Mapping[str, object]) -> Summary:
    """`records`: cell id -> CellRecord (cells not in the DB count as pending)."""
    measured = durations(records.values())
    status = {c.cell_id: getattr(records.get(c.cell_id), "status", "pending") for c in cells}
    bad: set[str] = set()
    done, running, blocked, left = [], [], [], []
    failed: dict[str, str] = {}
    remaining, unknown = 0.0, 0
    for c in cells:  # dependency order: a dep's state is known before its dependents'
        st = status[c.cell_id]
        if st == "done":
            done.append(c.cell_id)
            continue
        if st == "failed":
            failed[c.cell_id] = getattr(records.get(c.cell_id), "error", None) or "failed"
            bad.add(c.cell_id)
            continue
        if any(d in bad for d in c.deps):
            blocked.append(c.cell_id)
            bad.add(c.cell_id)
            continue
        (running if st == "running" else left).append(c.cell_id)
        est = estimate(c, measured)
        if est is None:
            unknown += 1
        else:
            remaining += est
    return Summary(len(cells), done, running, failed, blocked, left, remaining, unknown)


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


def render(summary: Summary) -> str:
    lines = [f"{len(summary.done)}/{summary.total} done, {len(summary.running)} running, "
             f"{len(summary.failed)} failed, {len(summary.blocked)} blocked, "
             f"{len(summary.left)} left"]
    est = f"estimated remaining compute: {fmt_seconds(summary.remaining_s)}"
    if summary.unknown:
        est += (f" (+ {summary.unknown} cells of a kind and size not measured yet)")
    lines.append(est)
    for cid in summary.running:
        lines.append(f"  running  {cid}")
    for cid, err in summary.failed.items():
        lines.append(f"  failed   {cid}: {err}")
    if summary.blocked:
        lines.append(f"  blocked  {len(summary.blocked)} cells (a dependency failed), e.g. "
                     f"{summary.blocked[0]}")
    return "\n".join(lines)
