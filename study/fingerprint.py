"""What decides a cell's result, as one fingerprint, and what changed when it differs.

A cell's settings are what its run reads: the resolved gin bindings of its size's model file,
the run files, the size's overlays, the experiment's bindings and the cell's own (TRAIN_STEPS,
lengths, batch, seed, optimizer state, init checkpoint, ...), exactly in the order the cell
parses them (later wins, as in gin); its evaluation settings (lengths, batch, split, languages,
example cap, retrieval layer and pooling where used); the data root, vocabulary and source
($XITT_DATA_DIR, $XITT_VOCAB, $XITT_SOURCE as this process sees them) and the fingerprints of
its dependencies. The fingerprint is a hash of those settings. Gin files are read as bindings
(gin's own parser, nothing imported), so a comment, a reordering or a new size, seed,
condition or target in the experiment leaves a finished cell's fingerprint alone, and so does
where the cell ran (PLACEMENT: slice, mesh, partitioning, microbatches, remat, scan, inference
batch; the same math laid out otherwise). The experiment's name, its primary endpoint (fixed
separately, study/runner.py) and the cell's model directory do not count either.

Code: the commit is recorded with every cell (provenance) but not keyed on. Keying on a hash
of the sources would orphan months of chip-hours at every refactor or typo fix; keying on
nothing would hide a change that alters results. So a change that alters what a cell computes
(training math, metrics, preprocessing) bumps CODE_VERSION in the same commit: every finished
cell then differs in `code_version` and is refused or re-run like any other recipe change.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from study import grid
from study.experiment import REPO_ROOT, Experiment

CODE_VERSION = 2  # 2: shuffled reads key epoch e by (seed, e) (a saved counter)
# The environment a cell's data comes from, with what an unset variable means.
ENV_SETTINGS = {"XITT_DATA_DIR": "(the shipped sample)", "XITT_VOCAB": "cpu",
                "XITT_SOURCE": "files"}
# Where and how a cell is laid out on chips, not what it computes (the same math on another
# mesh, with remat or gradient accumulation): a size may move to another slice mid-study
# without invalidating its finished cells. Keys of the resolved gin settings.
PLACEMENT = frozenset({
    "TPU_SLICE", "TPU_PHASES", "NUM_PARTITIONS", "MODEL_PARALLEL_SUBMESH",
    "PARAMETER_PARTITIONING", "ACTIVATION_PARTITIONING_DIMS", "NUM_MICROBATCHES",
    "INFER_NUM_PARTITIONS", "INFER_BATCH_SIZE", "EMBED_BATCH_SIZE", "SCAN_LAYERS",
    "REMAT_POLICY", "MODEL_DIR"})
DEPENDENCY = "dependency "  # settings key prefix of a dependency's fingerprint
NOT_RECORDED = "(not recorded: made before cells were fingerprinted)"


class RecipeChanged(ValueError):
    """Finished cells were made under other settings than the experiment's now: one line."""


# ------------------------------------------------------------------------------ gin

class _Delegate:
    """gin's parser delegate: references and macros stay names, nothing is imported."""

    def configurable_reference(self, name: str, evaluate: bool) -> str:
        return f"@{name}{'()' if evaluate else ''}"

    def macro(self, name: str) -> str:
        return f"%{name}"


def _plain(value: Any) -> Any:
    """A JSON value that compares as gin would (tuples as lists, dict keys as strings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _find(name: str) -> Path:
    for root in (REPO_ROOT, Path.cwd()):
        if (root / name).is_file():
            return root / name
    if Path(name).is_file():
        return Path(name)
    raise FileNotFoundError(f"gin file {name} not found (relative to {REPO_ROOT} or the working "
                            "directory)")


def _key(statement: Any) -> str:
    selector = statement.selector + (f".{statement.arg_name}" if statement.arg_name else "")
    return f"{statement.scope}/{selector}" if statement.scope else selector


def _parse_into(out: dict[str, Any], text: str, source: str, seen: tuple[str, ...]) -> None:
    from gin import config_parser

    parser = config_parser.ConfigParser(text, _Delegate())
    for st in parser:
        if isinstance(st, config_parser.IncludeStatement):
            path = _find(st.filename)
            if str(path) in seen:
                raise ValueError(f"{source}: include cycle through {st.filename}")
            _parse_into(out, path.read_text(), str(path), (*seen, str(path)))
        elif isinstance(st, config_parser.BindingStatement):
            key = _key(st)
            out.pop(key, None)  # a re-binding moves to the end: the order gin applies them
            out[key] = _plain(st.value)


@functools.lru_cache(maxsize=64)
def _gin_files(files: tuple[str, ...], bindings: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in files:
        path = _find(name)
        _parse_into(out, path.read_text(), str(path), (str(path),))
    for binding in bindings:
        _parse_into(out, binding, "binding", ())
    return {k: v for k, v in out.items() if k not in PLACEMENT}


def gin_settings(files: Sequence[str], bindings: Sequence[str] = ()) -> dict[str, Any]:
    """`selector.param` (or `MACRO`) -> value of gin files then bindings, later winning, less
    PLACEMENT."""
    return dict(_gin_files(tuple(files), tuple(bindings)))


# ------------------------------------------------------------------------------ cells

def environment() -> dict[str, str]:
    return {name: os.environ.get(name) or unset for name, unset in ENV_SETTINGS.items()}


def _train_bindings(exp: Experiment, cell: Any) -> dict[str, Any]:
    """The macros study.cell.train_cell binds for this cell, less its model directory (where a
    cell lives does not change what it computes)."""
    key = grid.phase_key(cell)
    lengths = exp.train_length(key)
    start = (f"checkpoint of cell {cell.init_from}" if cell.init_from is not None
             else exp.size(cell.size).initial_checkpoint)
    opt_state = (exp.optimizer_state_between_phases if cell.init_from is not None
                 else exp.optimizer_state_from_pretrained)
    return {"MIXTURE_OR_TASK_NAME": cell.train_task, "TRAIN_STEPS": cell.train_steps,
            "cell.unpacked": not exp.packed(key),  # forced over the run files' packing
            "TASK_FEATURE_LENGTHS": lengths.as_dict(), "BATCH_SIZE": exp.batch_size(key),
            "INITIAL_CHECKPOINT_PATH": start, "INIT_OPTIMIZER_STATE": opt_state,
            "SEED": cell.seed, "SAVE_EVERY": exp.save_every,
            "KEEP_CHECKPOINTS": exp.keep_checkpoints}


def cell_settings(exp: Experiment, cell: Any) -> dict[str, Any]:
    """Every setting that decides the cell's result except its dependencies' fingerprints."""
    size = exp.size(cell.size)
    out: dict[str, Any] = {"cell.kind": cell.kind, "cell.recipe": cell.recipe,
                           "code_version": CODE_VERSION, "data_source": exp.data_source}
    out.update(environment())
    out.update(_gin_files((size.model_gin, *exp.run_gin_files, *size.gin_files),
                          exp.gin_bindings))
    if cell.kind != "embedding":
        for name, value in _train_bindings(exp, cell).items():
            out.pop(name, None)  # bound last, as the cell binds it
            out[name] = value
    else:
        out["start checkpoint"] = (f"checkpoint of cell {cell.init_from}" if cell.init_from
                                   else size.initial_checkpoint)
        out["SEED"] = cell.seed  # a toy size's random init
    if cell.kind in ("target", "retrieval"):
        out["selection"] = exp.selection
    if cell.kind in ("target", "retrieval", "embedding"):
        out.update({"eval.lengths": exp.eval_length(cell.target).as_dict(),
                    "eval.batch_size": exp.eval_batch_size,
                    "eval.split": exp.split_for(cell.target),
                    "eval.max_examples": exp.eval_max_examples,
                    "eval.languages": list(exp.languages[cell.target])})
    if cell.kind in ("retrieval", "embedding"):
        out["retrieval_pooling"] = exp.retrieval_pooling
    if cell.kind == "embedding":
        out["retrieval_layer"] = exp.retrieval_layer_for(cell.size)
    return {k: _plain(v) for k, v in out.items()}


def digest(settings: Mapping[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def compute(exp: Experiment, cells: Iterable[Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """cell id -> (fingerprint, settings) for cells in dependency order (a cell's settings hold
    its dependencies' fingerprints, so a changed phase changes everything trained from it)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for cell in cells:
        settings = cell_settings(exp, cell)
        for dep in cell.deps:
            settings[DEPENDENCY + dep] = out[dep][0]
        out[cell.cell_id] = (digest(settings), settings)
    return out


def provenance(exp: Experiment, cells: Sequence[Any], cell_id: str) -> dict[str, str]:
    """The `fingerprint` and `settings` (JSON) a finished cell records (`cells`: the grid in
    dependency order; only the cell and what it depends on are computed)."""
    need = {cell_id}
    for c in reversed(cells):
        if c.cell_id in need:
            need.update(c.deps)
    fp, settings = compute(exp, [c for c in cells if c.cell_id in need])[cell_id]
    return {"fingerprint": fp, "settings": json.dumps(settings, sort_keys=True)}


# ------------------------------------------------------------------------------ comparing

def differences(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """'KEY: old -> new' for each differing setting (dependencies last, by name only)."""
    if old is None:
        return [NOT_RECORDED]
    keys = sorted(set(old) | set(new), key=lambda k: (k.startswith(DEPENDENCY), k))
    missing = "(unset)"
    return [f"{k}: {_show(old.get(k, missing))} -> {_show(new.get(k, missing))}"
            if not k.startswith(DEPENDENCY) else f"{k} changed"
            for k in keys if old.get(k, missing) != new.get(k, missing)]


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def changed(records: Iterable[Any], current: Mapping[str, tuple[str, dict[str, Any]]]
            ) -> dict[str, list[str]]:
    """Finished cells (CellRecords) of `current` whose fingerprint differs -> differences."""
    out = {}
    for rec in records:
        if rec.status != "done" or rec.cell_id not in current:
            continue
        fp, settings = current[rec.cell_id]
        if rec.fingerprint != fp:
            old = json.loads(rec.settings) if rec.settings else None
            out[rec.cell_id] = differences(old, settings) or ["fingerprint differs"]
    return out


def summary(diffs: Mapping[str, list[str]], limit: int = 6) -> str:
    """One line: each differing setting with how many cells it concerns."""
    counts: dict[str, int] = {}
    through_deps = 0
    for lines in diffs.values():
        own = [d for d in lines if not d.startswith(DEPENDENCY)]
        through_deps += not own
        for d in own:
            counts[d] = counts.get(d, 0) + 1
    parts = [f"{d} ({n} cell{'s' if n != 1 else ''})"
             for d, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    text = "; ".join(parts[:limit]) + (f"; and {len(parts) - limit} more" if len(parts) > limit
                                       else "")
    if through_deps:
        text += f"{'; ' if text else ''}{through_deps} more only through a changed dependency"
    return text
