"""`--check`: is a data root complete? Per (task, split): every file present and parsable by the
task's own reader, and as many examples as the official count (counts.py).

Statuses: `complete`; `missing` (files absent, named); `wrong` (a malformed or truncated file
named with its line, misaligned parallel files named, or a count other than the official one,
with its source). Splits with no pinned count are complete when present and parsable, and the
table says `not pinned`.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import seqio

from xitt_common import fs
from xitt_tasks.errors import DataFormatError
from xitt_tasks.prepare import counts
from xitt_tasks.prepare.units import Unit

COMPLETE, MISSING, WRONG = "complete", "missing", "wrong"


@dataclasses.dataclass(frozen=True)
class Result:
    unit: Unit
    status: str
    examples: int | None
    expected: int | None
    detail: str


def check_unit(root: str, unit: Unit) -> Result:
    """Read `unit`'s files under `root` with its task's reader and compare the count."""
    source = seqio.get_mixture_or_task(unit.task).source
    paths = [fs.path(root) / rel for rel in unit.files]
    official = counts.expected(unit.task, unit.split)
    want = official.n if official else None
    absent = sorted({os.fspath(p) for p in paths if not fs.is_file(p)})
    if absent:
        return Result(unit, MISSING, None, want, "not found: " + ", ".join(absent))
    try:
        n = sum(1 for _ in source.read(paths))
    except DataFormatError as e:
        return Result(unit, WRONG, None, want, str(e))
    except (ValueError, KeyError, UnicodeDecodeError) as e:
        return Result(unit, WRONG, None, want, f"{os.fspath(paths[0])}: {e}")
    if official is None:
        return Result(unit, COMPLETE, n, None, "count not pinned (present and parsable)")
    if n != official.n:
        return Result(unit, WRONG, n, want, f"{n} examples in {os.fspath(paths[0])}, expected "
                      f"{official.n} ({official.source})")
    return Result(unit, COMPLETE, n, want, official.source)


def check(root: str, selected: Sequence[Unit]) -> list[Result]:
    return [check_unit(root, u) for u in selected]


def table(results: Sequence[Result]) -> str:
    """One row per (task, split), then a summary line."""
    head = ("status", "task", "split", "examples", "expected", "detail")
    rows = [head] + [(r.status, r.unit.task, r.unit.split,
                      "-" if r.examples is None else str(r.examples),
                      "-" if r.expected is None else str(r.expected), r.detail)
                     for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths)) + "  " + row[5]
             for row in rows]
    tally = {s: sum(r.status == s for r in results) for s in (COMPLETE, MISSING, WRONG)}
    lines.append(f"{len(results)} checked: " + ", ".join(f"{n} {s}" for s, n in tally.items()))
    return "\n".join(lines)


def all_complete(results: Sequence[Result]) -> bool:
    return bool(results) and all(r.status == COMPLETE for r in results)
