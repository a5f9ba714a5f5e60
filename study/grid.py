"""The study grid as a dependency graph of cells.

Per size and seed: one intermediate cell per intermediate condition (trained once, fanned out
to every target); per condition and target: the target's training phase(s) and its zero-shot
evaluation. XCOPA's official recipe adds a SIQA stage before COPA; Tatoeba has no training and
embeds with the XQuAD cell's (SQuAD v1.1-trained) encoder (XTREME-R's variant) and/or the
condition's own encoder (X-STILTs' variant; recipe 'raw', cell `.../tatoeba_x_stilts` when both
run); Mewsli-X and LAReQA train dual encoders.

Every cell runs as `python -m study run-cell EXPERIMENT --cell ID --study_dir DIR` and owns
`model_dir` = `<study_dir>/models/<cell id>`. Executors (local processes here, gcloud or
SkyPilot in `tpu_scripts.executor`) receive cells in dependency order and see only `cell_id`,
`kind`, `size`, `seed`, `deps`, `command` and `model_dir`: they decide where the command runs.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any

from study.experiment import BASELINE, DUAL_ENCODER_TARGETS, Experiment, condition_short

KINDS = ("intermediate", "stage", "target", "retrieval", "embedding")


@dataclasses.dataclass(frozen=True)
class Cell:
    cell_id: str
    kind: str                    # one of KINDS
    size: str
    seed: int
    condition: str               # 'baseline' | 'xitt.inter.<task>'
    target: str | None           # None for intermediate cells
    deps: tuple[str, ...]
    command: tuple[str, ...]
    model_dir: str
    train_task: str | None       # seqio task/mixture trained in this cell (None: eval only)
    init_from: str | None        # cell whose final checkpoint starts this one (None: the
                                 # size's initial checkpoint)
    steps: int                   # steps of this cell's phase (0: no training)
    start_step: int              # absolute step it starts from
    recipe: str = "official"     # 'official' | 'raw' (XCOPA without SIQA, Tatoeba X-STILTs)

    @property
    def train_steps(self) -> int:
        """Absolute TRAIN_STEPS, t5x style."""
        return self.start_step + self.steps


def phase_key(cell: Cell) -> str:
    """The `train_lengths` / `batch_tokens` / `epochs` key of a training cell's phase."""
    if cell.kind == "stage":
        return "xcopa_siqa"
    return condition_short(cell.condition) if cell.kind == "intermediate" else str(cell.target)


def train_task_name(target: str) -> str:
    return f"xitt.{target}.train.en"


def is_remote(path: str) -> bool:
    """A URL (`gs://bucket/...`): model directories on an object store, for TPU slices."""
    return "://" in str(path)


def absolute(path: str) -> str:
    """An absolute local path; a URL unchanged (os.path.abspath would mangle `gs://`)."""
    return str(path) if is_remote(path) else os.path.abspath(path)


def build(exp: Experiment, study_dir: str) -> list[Cell]:
    """All cells in a dependency order (every cell after its deps)."""
    study_dir = absolute(study_dir)
    cells: list[Cell] = []

    def add(cell_id: str, kind: str, size: str, seed: int, condition: str, target: str | None,
            deps: Iterable[str], train_task: str | None, init_from: str | None, steps: int,
            start_step: int, recipe: str = "official") -> Cell:
        cell = Cell(cell_id, kind, size, seed, condition, target, tuple(deps),
                    ("python", "-m", "study", "run-cell", exp.path, "--cell", cell_id,
                     "--study_dir", study_dir),
                    os.path.join(study_dir, "models", *cell_id.split("/")),
                    train_task, init_from, steps, start_step, recipe)
        cells.append(cell)
        return cell

    for size in exp.sizes:
        for seed in exp.seeds:
            prefix = f"{size.name}/s{seed}"
            starts: dict[str, tuple[str | None, int]] = {}
            conditions, targets = exp.conditions_for(seed), exp.targets_for(seed)
            for cond in conditions:
                short = condition_short(cond)
                if cond == BASELINE:
                    starts[cond] = (None, exp.pretrained_step)
                    continue
                inter = add(f"{prefix}/{short}", "intermediate", size.name, seed, cond, None,
                            (), cond, None, exp.intermediate_steps_for(cond),
                            exp.pretrained_step)
                starts[cond] = (inter.cell_id, inter.train_steps)
            for cond in conditions:
                short = condition_short(cond)
                base_id, base_step = starts[cond]
                base_deps = () if base_id is None else (base_id,)
                trained: dict[str, Cell] = {}
                cond_targets = exp.targets_of(cond, targets)
                for target in cond_targets:
                    cid = f"{prefix}/{short}/{target}"
                    if target == "tatoeba":
                        continue  # after the others: it may embed with the XQuAD cell
                    if target == "xcopa" and exp.xcopa_recipe == "siqa_copa":
                        siqa = add(f"{cid}_siqa", "stage", size.name, seed, cond, target,
                                   base_deps, "xitt.xcopa.train.siqa", base_id,
                                   exp.xcopa_siqa_steps, base_step)
                        trained[target] = add(cid, "target", size.name, seed, cond, target,
                                              (siqa.cell_id,), "xitt.xcopa.train.copa",
                                              siqa.cell_id, exp.target_steps[target],
                                              siqa.train_steps)
                    elif target == "xcopa":
                        trained[target] = add(cid, "target", size.name, seed, cond, target,
                                              base_deps, "xitt.xcopa.train.copa", base_id,
                                              exp.target_steps[target], base_step, "raw")
                    else:
                        kind = "retrieval" if target in DUAL_ENCODER_TARGETS else "target"
                        trained[target] = add(cid, kind, size.name, seed, cond, target,
                                              base_deps, train_task_name(target), base_id,
                                              exp.target_steps[target], base_step)
                if "tatoeba" in cond_targets:
                    cid = f"{prefix}/{short}/tatoeba"
                    if "xtreme_r" in exp.tatoeba_encoders:
                        enc = trained["xquad"]
                        add(cid, "embedding", size.name, seed, cond, "tatoeba",
                            (enc.cell_id,), None, enc.cell_id, 0, enc.train_steps)
                        cid += "_x_stilts"
                    if "x_stilts" in exp.tatoeba_encoders:
                        add(cid, "embedding", size.name, seed, cond, "tatoeba", base_deps,
                            None, base_id, 0, base_step, "raw")
    check_order(cells)
    return cells


def check_order(cells: Sequence[Any]) -> None:
    """Every cell once, after its deps (what the runner and every executor rely on)."""
    seen: set[str] = set()
    for cell in cells:
        if cell.cell_id in seen:
            raise ValueError(f"cell {cell.cell_id!r} is given twice")
        missing = [d for d in cell.deps if d not in seen]
        if missing:
            raise ValueError(f"cell {cell.cell_id!r} comes before its dependencies {missing}")
        seen.add(cell.cell_id)


def by_id(cells: Iterable[Cell]) -> dict[str, Cell]:
    return {c.cell_id: c for c in cells}


def dependents(cells: Iterable[Cell], cell_id: str) -> set[str]:
    """Every cell that depends on `cell_id`, directly or not."""
    cells = list(cells)
    out: set[str] = set()
    frontier = {cell_id}
    while frontier:
        nxt = {c.cell_id for c in cells if set(c.deps) & frontier} - out
        out |= nxt
        frontier = nxt
    return out
