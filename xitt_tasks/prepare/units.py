"""What a data root must hold: one unit per (registered task, split) read from files.

Units come from the task registry itself (each `XittSource`'s split -> files), so the check
and the preparation follow the tasks and never a second list of paths. `--only` names targets
(`xquad`, `xcopa`, ...) and intermediate tasks (`mnli`, `anli_plus`, ...).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import seqio

import xitt_tasks
from xitt_tasks import intermediate
from xitt_tasks.sources import XittSource


@dataclasses.dataclass(frozen=True)
class Unit:
    """The files of one split of one task; `evaluation`: a target's language (or pool) task."""
    task: str
    split: str
    files: tuple[str, ...]
    evaluation: bool

    @property
    def group(self) -> str:
        return group_of(self.task)


def group_of(task: str) -> str:
    """`xitt.inter.mnli` -> `mnli`, `xitt.inter.snli` -> `anli_plus` (only there),
    `xitt.xquad.de` -> `xquad`."""
    parts = task.split(".")
    if parts[1] != "inter":
        return parts[1]
    return "anli_plus" if parts[2] in intermediate.ANLI_PLUS_PARTS and parts[2] != "mnli" \
        else parts[2]


def groups() -> tuple[str, ...]:
    from xitt_tasks import translate_train

    return (*xitt_tasks.TARGETS, *intermediate.INTERMEDIATE_TASKS,
            *(translate_train.task_name(t)[len(intermediate.PREFIX):]
              for t in translate_train.TRANSLATED))


def _selected(group: str, only: set[str] | None) -> bool:
    if only is None:
        return True
    return group in only or ("anli_plus" in only and group == "mnli")  # MNLI is in ANLI+


def parse_only(text: str | None) -> set[str] | None:
    """`xquad,xcopa` -> {'xquad', 'xcopa'}; an unknown name is an error listing the valid ones."""
    if not text:
        return None
    names = {t.strip() for t in text.split(",") if t.strip()}
    unknown = sorted(names - set(groups()))
    if unknown:
        raise ValueError(f"--only: unknown task(s) {', '.join(unknown)}; expected a comma-"
                         f"separated subset of {', '.join(groups())}")
    return names


def units(only: set[str] | None = None, eval_only: bool = False) -> list[Unit]:
    """Every file-backed (task, split), `.rank` twins left out (they read the same files)."""
    out = []
    for name in sorted(seqio.TaskRegistry.names()):
        if not name.startswith("xitt.") or name.endswith(".rank"):
            continue
        source = seqio.get_mixture_or_task(name).source
        if not isinstance(source, XittSource):
            continue
        group = group_of(name)
        evaluation = not name.startswith("xitt.inter.") and ".train." not in name
        if not _selected(group, only) or (eval_only and not evaluation):
            continue
        for split, files in source.files.items():
            out.append(Unit(name, split, tuple(files), evaluation))
    return out


def files_of(selected: Sequence[Unit]) -> list[str]:
    """The distinct data-root files the units read, sorted."""
    return sorted({f for u in selected for f in u.files})
