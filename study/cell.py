"""`python -m study run-cell EXPERIMENT --cell ID --study_dir DIR`: one cell of the grid.

Train the cell's phase (resuming from its model directory when interrupted), select the
checkpoint by the experiment's protocol, evaluate every language of the target, and record
per-language metrics, per-example scores and provenance in the results database. Runs
in-process: the local executor's worker calls `run_cell` once per cell, so JAX, TF and the
task registry are imported once.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from study import fingerprint, grid
from study.experiment import REPO_ROOT, Experiment, condition_short

DB_FILE = "results.sqlite"
TASK_MODULE = "xitt_tasks"


class CellError(RuntimeError):
    """A cell cannot run (missing dependency, unknown id, missing component): one line."""


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=1)
def code_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=20, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=20
                               ).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def enable_compilation_cache(study_dir: str) -> str:
    """JAX's persistent compilation cache in the study directory: the same shapes are not
    compiled again by a later cell or process."""
    import jax

    path = os.path.join(grid.absolute(study_dir), "jax_cache")  # JAX reads gs:// too
    if not grid.is_remote(path):
        os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def cell_record(exp: Experiment, cell: grid.Cell, **fields: Any):
    from study.db import CellRecord

    # The DB names conditions 'baseline' | '<task>' | 'multitask'; training-only cells (the
    # intermediate phase, XCOPA's SIQA stage) have no target there.
    return CellRecord(cell_id=cell.cell_id, kind=cell.kind, size=cell.size, seed=cell.seed,
                      condition=condition_short(cell.condition),
                      target=None if cell.kind == "stage" else cell.target, recipe=cell.recipe,
                      data_source=exp.data_source, deps=cell.deps,
                      experiment_hash=exp.sha256, **fields)


# ------------------------------------------------------------------------------ training

def _final_checkpoint(model_dir: str) -> tuple[str, int]:
    from train import checkpoints

    step = checkpoints.latest_step(model_dir)
    if step is None:
        raise CellError(f"{model_dir} holds no finished checkpoint")
    return str(checkpoints.checkpoint_path(model_dir, step)), step


def _has_split(name: str, split: str) -> bool:
    import seqio

    return split in seqio.get_mixture_or_task(name).splits


def _microbatches(exp: Experiment, cell: grid.Cell, batch_size: int) -> list[str]:
    """NUM_MICROBATCHES for the cell's batch: the size's files fit BATCH_SIZE sequences of
    1024/512 tokens in NUM_MICROBATCHES on their slice; a phase with more tokens per step
    (XNLI's 2^20) accumulates proportionally more (`scaled_microbatches`). Nothing where the
    files define no such macro."""
    import gin

    from train import gin_utils
    from train.settings import CONFIG_TARGET_LENGTH, scaled_microbatches

    size = exp.size(cell.size)
    gin_utils.parse([size.model_gin, *exp.run_gin_files, *size.gin_files], exp.gin_bindings,
                    search_paths=(str(REPO_ROOT), "."))
    try:
        base_micro = gin.query_parameter("%NUM_MICROBATCHES")
        base_batch = gin.query_parameter("%BATCH_SIZE")
        base_inputs = gin.query_parameter("%TASK_FEATURE_LENGTHS")["inputs"]
    except ValueError:
        return []
    finally:
        gin.clear_config()
    lengths = exp.train_length(grid.phase_key(cell))
    micro = scaled_microbatches(base_micro, base_batch * (base_inputs + CONFIG_TARGET_LENGTH),
                                batch_size, lengths.inputs + lengths.targets)
    return [f"NUM_MICROBATCHES = {micro}"]


def _gin_parse(exp: Experiment, cell: grid.Cell, bindings: list[str]) -> Any:
    """Parse model + run files + bindings; returns the model config (MT5Config)."""
    from train import gin_utils

    size = exp.size(cell.size)
    gin_utils.parse([size.model_gin, *exp.run_gin_files, *size.gin_files],
                    [*exp.gin_bindings, *bindings], search_paths=(str(REPO_ROOT), "."))
    gin_utils.import_modules(gin_utils.task_modules())
    gin_utils.finalize()
    return gin_utils.model_config_from_gin()


@functools.lru_cache(maxsize=16)
def _num_params(config: Any) -> int:
    from train import network

    return int(network.num_params(config))


def _start_checkpoint(exp: Experiment, cell: grid.Cell, cells: Mapping[str, grid.Cell]
                      ) -> str | None:
    if cell.init_from is not None:
        return _final_checkpoint(cells[cell.init_from].model_dir)[0]
    return exp.size(cell.size).initial_checkpoint


def train_cell(exp: Experiment, cell: grid.Cell, cells: Mapping[str, grid.Cell]
               ) -> dict[str, Any]:
    """Train (or resume) the cell's phase; returns provenance of the selected checkpoint."""
    import gin

    from train import checkpoints, gin_utils, settings, trainer

    init = _start_checkpoint(exp, cell, cells)
    opt_state = (exp.optimizer_state_between_phases if cell.init_from is not None
                 else exp.optimizer_state_from_pretrained)
    key = grid.phase_key(cell)
    lengths, batch_size = exp.train_length(key), exp.batch_size(key)
    bindings = [f"MODEL_DIR = {cell.model_dir!r}",
                f"MIXTURE_OR_TASK_NAME = {cell.train_task!r}",
                f"MIXTURE_OR_TASK_MODULE = {TASK_MODULE!r}", f"TRAIN_STEPS = {cell.train_steps}",
                f"TASK_FEATURE_LENGTHS = {lengths.as_dict()!r}",
                f"BATCH_SIZE = {batch_size}", f"INITIAL_CHECKPOINT_PATH = {init!r}",
                f"INIT_OPTIMIZER_STATE = {opt_state!r}", f"SEED = {cell.seed}",
                f"SAVE_EVERY = {exp.save_every}", f"KEEP_CHECKPOINTS = {exp.keep_checkpoints}",
                *_microbatches(exp, cell, batch_size)]
    config = _gin_parse(exp, cell, bindings)
    # Model selection: validation loss on English dev (the training task's validation split),
    # on every language's dev (the target's all_langs mixture), or the last checkpoint.
    selection, eval_kw = "last", {"eval_split": None}  # ValidationSettings fields
    if cell.kind in ("target", "retrieval") and exp.selection != "last":
        if exp.selection == "en_dev" and _has_split(cell.train_task, "validation"):
            selection, eval_kw = "en_dev", {"eval_split": "validation"}
        elif exp.selection == "all_dev" and _has_split(f"xitt.{cell.target}.all_langs",
                                                       "validation"):
            selection, eval_kw = "all_dev", {
                "eval_split": "validation",
                "eval_mixture_or_task_name": f"xitt.{cell.target}.all_langs"}
    model, model_kw = config, {}  # (the run files' MODEL_CONFIG by default)
    data_kw = {} if exp.packed(key) else {"pack": False}  # XTREME-R's example batches
    if cell.kind == "retrieval":  # Mewsli-X, LAReQA: a dual encoder, in-batch negatives
        model, data_kw = dual_encoder_model(exp, config), {"pack": False}
        model_kw = {"model": model}
    # ... and, where the target has a dev set to rank, by the target's own metric (accuracy,
    # F1, (EM + F1) / 2, mAP@20) on that selection set at every validation step.
    best = {"best_metric": "loss", "best_mode": "min"}
    if selection != "last":
        fn = _selection_fn(exp, cell, model)
        if fn is not None:
            best = {"best_metric": "task_score", "best_mode": "max"}
            eval_kw.update(selection_fn=fn, **best)
            selection = f"{selection}:task_metric"
        elif cell.kind == "retrieval":  # LAReQA: in-batch retrieval accuracy on dev pairs
            best = {"best_metric": "accuracy", "best_mode": "max"}
            eval_kw.update(best)
            selection = f"{selection}:in_batch_accuracy"
    modules = [TASK_MODULE]
    # The run files' settings, with the cell's model, packing and selection on top.
    gin.get_configurable(trainer.train)(
        on_start=lambda d: gin_utils.write_config(d, modules), **model_kw,
        data=dataclasses.replace(gin.get_configurable(settings.DataSettings)(), **data_kw),
        validation=dataclasses.replace(gin.get_configurable(settings.ValidationSettings)(),
                                       **eval_kw))
    operative = gin.operative_config_str()
    step = None
    if selection != "last":
        step = checkpoints.Checkpoints(cell.model_dir, **best).best_step()
    if step is None:
        selection = "last" if exp.selection == "last" else f"{exp.selection}->last"
        path, step = _final_checkpoint(cell.model_dir)
    else:
        path = str(checkpoints.checkpoint_path(cell.model_dir, step))
    return {"config": config, "checkpoint_path": path, "checkpoint_step": step,
            "gin_config": operative, "selection_protocol": selection,
            "params_count": _num_params(config)}


def _selection_fn(exp: Experiment, cell: grid.Cell, model: Any) -> Any:
    """`eval.selection`'s selection_fn for the cell's target (None where it has none)."""
    from eval import selection
    from eval import targets as eval_targets

    protocol = exp.selection
    if protocol == "all_dev" and not all(
            _has_split(f"xitt.{cell.target}.{lang}", "validation")
            for lang in eval_targets.target_languages(cell.target)):
        return None  # no dev set in every language (XQuAD, ...): validation loss decides
    settings = _target_settings(exp, cell)
    batch_fn = None
    if cell.target not in eval_targets.RETRIEVAL_TARGETS:
        batch_fn = _decode_fn(exp, cell, model)  # the evaluation's decoder, compiled once
    return selection.make_selection_fn(model, cell.target, protocol, settings,
                                       batch_fn=batch_fn)


def _target_settings(exp: Experiment, cell: grid.Cell) -> Any:
    """How the cell's target is scored (selection and evaluation alike). The experiment's
    retrieval layer applies to Tatoeba's encoder; a dual encoder embeds with its own trained
    projection on the final layer (`DualEncoderModel.embed` refuses any other)."""
    from eval import targets as eval_targets

    return eval_targets.TargetSettings(
        feature_lengths=exp.eval_length(cell.target).as_dict(), batch_size=exp.eval_batch_size,
        max_examples=exp.eval_max_examples,
        retrieval_layer=exp.retrieval_layer_for(cell.size) if cell.kind == "embedding" else None,
        retrieval_pooling=exp.retrieval_pooling)


def _decode_fn(exp: Experiment, cell: grid.Cell, config: Any) -> Any:
    """The greedy decoder of (model config, eval lengths, batch), built once per worker."""
    from eval import predict
    from train import network

    lengths = exp.eval_length(cell.target).as_dict()
    key = (repr(config), tuple(sorted(lengths.items())), exp.eval_batch_size)
    if key not in _BATCH_FNS:
        settings = predict.EvalSettings(feature_lengths=lengths, split="validation",
                                        mode="decode", batch_size=exp.eval_batch_size)
        _BATCH_FNS[key] = predict.make_batch_fn(network.Transformer(config), settings)
    return _BATCH_FNS[key]


def dual_encoder_model(exp: Experiment, config: Any) -> Any:
    from train import dual_encoder

    return dual_encoder.DualEncoderModel(config, pooling=exp.retrieval_pooling)


# ------------------------------------------------------------------------------ evaluation

_BATCH_FNS: dict[tuple, Any] = {}


def _load_params(model: Any, checkpoint: str | None, seed: int) -> Any:
    """The model's params in its in-memory (scanned or not) layout; no checkpoint: a toy
    size's random init, with the trainer's init seed."""
    import jax

    from train import checkpoints

    if checkpoint is None:
        return model.init_params(jax.random.split(jax.random.key(seed))[0])
    scanned = model.config.scan_layers
    abstract = (model.unscanned() if scanned else model).abstract_params()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    params = checkpoints.load_params(checkpoint, abstract, jax.tree.map(lambda _: device,
                                                                         abstract))
    return model.scan(params) if scanned else params


def evaluate(exp: Experiment, cell: grid.Cell, model: Any, checkpoint: str | None
             ) -> tuple[list, list]:
    """Every language of the cell's target through `eval.targets.evaluate_target`, the function
    `python -m eval --target` runs, so a study number is the number `eval` prints for the same
    checkpoint. Predictions and metrics go to `<model_dir>/eval/<task>/`, the XTREME-R
    submission files to `<model_dir>/leaderboard/`; the DB gets every language's metrics and
    the per-example scores behind them."""
    from eval import targets as eval_targets
    from study.db import PerExample, Result

    settings = _target_settings(exp, cell)
    batch_fn = (_decode_fn(exp, cell, model.config)
                if cell.target in eval_targets.DECODE_TARGETS else None)
    result = eval_targets.evaluate_target(
        model, _load_params(model, checkpoint, cell.seed), cell.target, settings,
        split=exp.split_for(cell.target), languages=exp.languages[cell.target],
        batch_fn=batch_fn, output_dir=os.path.join(cell.model_dir, "eval"),
        leaderboard_dir=os.path.join(cell.model_dir, "leaderboard"),
        info={"checkpoint": checkpoint, "cell": cell.cell_id})
    results, per_example = [], []
    for lang, r in result.languages.items():
        for metric, (values, aggregation) in r.example_scores.items():
            results.append(Result(language=lang, metric=metric, value=float(r.metrics[metric]),
                                  num_examples=r.num_examples))
            per_example.append(PerExample(language=lang, metric=metric,
                                          example_ids=r.example_ids, scores=values,
                                          aggregation=aggregation))
    return results, per_example


# ------------------------------------------------------------------------------ the cell

def run_cell(exp: Experiment, cell_id: str, study_dir: str, *, db: Any = None) -> None:
    """Run one cell end to end; a failure is recorded in the DB and re-raised."""
    import jax

    from eval import predict
    from study.db import ResultsDB
    from xitt_tasks.prepare import guard

    # Every cell of a target is scored on the same splits (and selected on the same English
    # dev set): a worker reads each once.
    predict.keep_splits_in_memory()
    ordered = grid.build(exp, study_dir)
    cells = grid.by_id(ordered)
    if cell_id not in cells:
        sample = ", ".join(list(cells)[:5])
        raise CellError(f"{exp.path}: no cell {cell_id!r} in this grid (e.g. {sample})")
    cell = cells[cell_id]
    own_db = db is None
    db = db or ResultsDB(os.path.join(study_dir, DB_FILE))
    try:
        if db.get_cell(cell_id) is None:
            db.upsert_cell(cell_record(exp, cell))
        for dep in cell.deps:
            rec = db.get_cell(dep)
            if rec is None or rec.status != "done":
                raise CellError(f"cell {cell_id}: dependency {dep} is "
                                f"{'missing' if rec is None else rec.status}, not done")
        data = guard.study_data(exp.data_source)  # a full study refuses the sample
        db.mark_running(cell_id, start_time=now(), device_kind=jax.devices()[0].device_kind)
        try:
            provenance = _run(exp, cell, cells, db)
        except BaseException as e:
            db.mark_failed(cell_id, one_line(e), end_time=now())
            raise
        results, per_example, prov = provenance
        db.record_results(cell_id, results, per_example, end_time=now(),
                          experiment_hash=exp.sha256, code_commit=code_commit(),
                          **fingerprint.provenance(exp, ordered, cell_id), **prov, **data)
    finally:
        if own_db:
            db.close()


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:2000]


def _run(exp: Experiment, cell: grid.Cell, cells: Mapping[str, grid.Cell], db: Any = None
         ) -> tuple[list, list, dict[str, Any]]:
    if cell.kind == "embedding":  # Tatoeba: no training, the encoder of another cell
        bindings = [f"MODEL_DIR = {cell.model_dir!r}", "MIXTURE_OR_TASK_NAME = 'none'",
                    "TRAIN_STEPS = 1"]
        config = _gin_parse(exp, cell, bindings)
        import gin

        operative = gin.config_str()
        checkpoint = _start_checkpoint(exp, cell, cells)
        if cell.init_from is not None and db is not None:  # the dep's selected checkpoint
            rec = db.get_cell(cell.init_from)
            checkpoint = (rec.checkpoint_path if rec is not None and rec.checkpoint_path
                          else checkpoint)
        from train import models

        results, per_example = evaluate(exp, cell, models.EncoderDecoderModel(config),
                                        checkpoint)
        step = (int(checkpoint.rstrip("/").rsplit("_", 1)[-1])
                if checkpoint and checkpoint.rstrip("/").rsplit("_", 1)[-1].isdigit() else None)
        return results, per_example, {
            "checkpoint_path": checkpoint, "checkpoint_step": step, "gin_config": operative,
            "selection_protocol": "encoder of " + (cell.init_from or "the initial checkpoint"),
            "retrieval_layer": exp.retrieval_layer_for(cell.size),
            "retrieval_pooling": exp.retrieval_pooling,
            "params_count": _num_params(config)}
    t0 = time.monotonic()
    trained = train_cell(exp, cell, cells)
    config = trained.pop("config")
    if cell.kind == "retrieval":
        trained.update(retrieval_layer=None, retrieval_pooling=exp.retrieval_pooling)
    _log(f"{cell.cell_id}: trained in {time.monotonic() - t0:.1f}s "
         f"(selected {trained['checkpoint_path']})")
    if cell.kind in ("intermediate", "stage"):
        return [], [], trained
    t0 = time.monotonic()
    from train import models

    model = (dual_encoder_model(exp, config) if cell.kind == "retrieval"
             else models.EncoderDecoderModel(config))
    results, per_example = evaluate(exp, cell, model, trained["checkpoint_path"])
    _log(f"{cell.cell_id}: evaluated {len(exp.languages[cell.target])} languages in "
         f"{time.monotonic() - t0:.1f}s")
    return results, per_example, trained


def _log(message: str) -> None:
    print(message, flush=True)
