"""The plan of a TPU study: which worker holds which slice, and which cells run on each.

Replays the study runner's choice (study.executors.assign: a worker keeps its slice for ready
cells of its slice type and gives it back when none is ready) over the grid, every cell
succeeding and taking time in proportion to its training steps + 1 (evaluation-only cells
take 1), with no preemption. The executors are the real ones (a `--dry_run` runner prints
their commands in the order the plan runs them) or `PlanWorker`s that only count
(tpu_scripts.cost). Real cell times differ, so a real run may create a few more or fewer
slices; the count is what the policy gives, not a promise.
"""
from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from study.executors import assign, holds
from study.grid import check_order


@dataclasses.dataclass
class SliceUse:
    """One slice a worker creates, and the cells it runs before giving it back."""

    worker: int
    slice: str          # the slice type (Placement.key); a worker holding none: the cell's
    cells: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Plan:
    workers: int
    cells: int
    slices: list[SliceUse]
    not_run: int = 0    # cells whose dependency failed

    def summary(self) -> str:
        lines = [f"plan: {self.cells} cells on {self.workers} workers create "
                 f"{len(self.slices)} slices (one slice per cell would create {self.cells})"
                 + (f"; {self.not_run} not run: a dependency failed" if self.not_run else "")]
        for use in self.slices:
            lines.append(f"  worker {use.worker}: {use.slice}: {len(use.cells)} cells "
                         f"({use.cells[0]} .. {use.cells[-1]})")
        lines.append("  (assumed: every cell succeeds, takes time in proportion to its "
                     "training steps + 1, no preemption; each preemption adds a slice)")
        return "\n".join(lines)


class PlanWorker:
    """A slice holder that runs nothing: what the plan needs to count slices."""

    def __init__(self, slice_types: Mapping[str, str]) -> None:
        self.slice_types, self.held = dict(slice_types), None

    @property
    def holds(self) -> str | None:
        return self.held

    def slice_of(self, cell: Any) -> str:
        return self.slice_types[cell.size]

    def run(self, cell: Any) -> Any:
        self.held = self.slice_of(cell)

        class Ok:
            ok = True
        return Ok()

    def release(self) -> None:
        self.held = None

    def close(self) -> None:
        self.release()


def simulate(cells: Sequence[Any], pool: Sequence[Any],
             duration: Callable[[Any], float] = lambda c: c.steps + 1) -> Plan:
    """Run `cells` through `pool` as the study runner would (see the module docstring)."""
    check_order(cells)
    todo, free, done, failed = list(cells), list(pool), set(), set()
    seen: dict[int, set] = {id(ex): set() for ex in pool}
    index = {id(ex): i for i, ex in enumerate(pool)}
    current: dict[int, SliceUse] = {}
    slices: list[SliceUse] = []
    events: list[tuple[float, int, Any, Any]] = []
    now, order = 0.0, 0
    while True:
        for c in list(todo):
            if any(d in failed for d in c.deps):
                failed.add(c.cell_id)
                todo.remove(c)
        ready = [c for c in todo if all(d in done for d in c.deps)]
        while True:  # releases are instant here: a released worker may take a cell at once
            pairs, releases = assign(free, ready, seen if len(pool) > 1 else None)
            for ex in releases:
                ex.release()
                current.pop(id(ex), None)
            if not releases:
                break
        for ex, c in pairs:
            free.remove(ex)
            todo.remove(c)
            seen[id(ex)].add(getattr(c, "target", None))
            kind = ex.slice_of(c) if hasattr(ex, "slice_of") else c.size
            if holds(ex) is None or id(ex) not in current:
                current[id(ex)] = SliceUse(index[id(ex)], kind)
                slices.append(current[id(ex)])
            current[id(ex)].cells.append(c.cell_id)
            ok = ex.run(c).ok
            if holds(ex) is None:  # holds no slice (a managed job per cell)
                current.pop(id(ex))
            order += 1
            heapq.heappush(events, (now + duration(c), order, ex, (c, ok)))
        if not events:
            break
        now, _, ex, (c, ok) = heapq.heappop(events)
        (done if ok else failed).add(c.cell_id)
        free.append(ex)
    for ex in pool:
        ex.close()
    ran = sum(len(use.cells) for use in slices)
    return Plan(len(pool), len(cells), slices, len(cells) - ran)
