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
import json
import os
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from eval import example_scores as scores
from study import grid
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

    path = os.path.join(os.path.abspath(study_dir), "jax_cache")
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

    from train import checkpoints, gin_utils, trainer

    init = _start_checkpoint(exp, cell, cells)
    opt_state = (exp.optimizer_state_between_phases if cell.init_from is not None
                 else exp.optimizer_state_from_pretrained)
    lengths = exp.train_length(
        cell.target if cell.kind != "intermediate" else cell.condition.split(".")[-1])
    if cell.kind == "stage":
        lengths = exp.train_length("xcopa_siqa")
    bindings = [f"MODEL_DIR = {cell.model_dir!r}",
                f"MIXTURE_OR_TASK_NAME = {cell.train_task!r}",
                f"MIXTURE_OR_TASK_MODULE = {TASK_MODULE!r}", f"TRAIN_STEPS = {cell.train_steps}",
                f"TASK_FEATURE_LENGTHS = {lengths.as_dict()!r}",
                f"BATCH_SIZE = {exp.batch_size}", f"INITIAL_CHECKPOINT_PATH = {init!r}",
                f"INIT_OPTIMIZER_STATE = {opt_state!r}", f"SEED = {cell.seed}",
                f"SAVE_EVERY = {exp.save_every}", f"KEEP_CHECKPOINTS = {exp.keep_checkpoints}"]
    config = _gin_parse(exp, cell, bindings)
    # Model selection: validation loss on English dev (the training task's validation split),
    # on every language's dev (the target's all_langs mixture), or the last checkpoint.
    selection, eval_kw = "last", {"eval_split": None}
    if cell.kind in ("target", "retrieval") and exp.selection != "last":
        if exp.selection == "en_dev" and _has_split(cell.train_task, "validation"):
            selection, eval_kw = "en_dev", {"eval_split": "validation"}
        elif exp.selection == "all_dev" and _has_split(f"xitt.{cell.target}.all_langs",
                                                       "validation"):
            selection, eval_kw = "all_dev", {
                "eval_split": "validation",
                "eval_mixture_or_task_name": f"xitt.{cell.target}.all_langs"}
    model_kw: dict[str, Any] = {}
    if cell.kind == "retrieval":  # Mewsli-X, LAReQA: a dual encoder, in-batch negatives
        model_kw = {"model": dual_encoder_model(exp, config), "model_config": None,
                    "pack": False}
    # ... and, where the target has a dev set to rank, by the target's own metric (accuracy,
    # F1, (EM + F1) / 2, mAP@20) on that selection set at every validation step.
    best = {"best_metric": "loss", "best_mode": "min"}
    if selection != "last":
        fn = _selection_fn(exp, cell, model_kw.get("model") or config)
        if fn is not None:
            best = {"best_metric": "task_score", "best_mode": "max"}
            model_kw.update(selection_fn=fn, **best)
            selection = f"{selection}:task_metric"
        elif cell.kind == "retrieval":  # LAReQA: in-batch retrieval accuracy on dev pairs
            best = {"best_metric": "accuracy", "best_mode": "max"}
            model_kw.update(best)
            selection = f"{selection}:in_batch_accuracy"
    modules = [TASK_MODULE]
    gin.get_configurable(trainer.train)(
        on_start=lambda d: gin_utils.write_config(d, modules), **eval_kw, **model_kw)
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
    settings = eval_targets.TargetSettings(
        feature_lengths=exp.eval_length(cell.target).as_dict(), batch_size=exp.eval_batch_size,
        max_examples=exp.eval_max_examples, retrieval_pooling=exp.retrieval_pooling)
    batch_fn = None
    if cell.target not in eval_targets.RETRIEVAL_TARGETS:
        batch_fn = _decode_fn(exp, cell, model)  # the evaluation's decoder, compiled once
    return selection.make_selection_fn(model, cell.target, protocol, settings,
                                       batch_fn=batch_fn)


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

def _load_params(config: Any, checkpoint: str | None, seed: int) -> Any:
    import jax

    from train import checkpoints, network, scan

    disk = dataclasses.replace(config, scan_layers=False)
    if checkpoint is None:  # a toy size's random init (same seed as the trainer's init)
        return network.init_params(config, jax.random.split(jax.random.key(seed))[0], 2, 2)
    abstract = network.abstract_params(disk)
    shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]),
                             abstract)
    params = checkpoints.load_params(checkpoint, abstract, shardings)
    return scan.scan_params(params, config) if config.scan_layers else params


_EXAMPLES: dict[tuple, list[dict[str, Any]]] = {}
_BATCH_FNS: dict[tuple, Any] = {}


def eval_examples(name: str, split: str, lengths: Mapping[str, int],
                  max_examples: int | None) -> list[dict[str, Any]]:
    """The split's preprocessed examples in split order, cached for the process: every cell of
    a target reads the same data, so a worker builds each language's input pipeline once."""
    import seqio

    key = (name, split, tuple(sorted(lengths.items())), max_examples)
    if key not in _EXAMPLES:
        task = seqio.get_mixture_or_task(name)
        if split not in task.splits:
            raise CellError(f"task {name!r} has no split {split!r} (splits: {list(task.splits)})")
        ds = task.get_dataset(sequence_length=dict(lengths), split=split, shuffle=False,
                              num_epochs=1, seed=None)
        if max_examples is not None:
            ds = ds.take(max_examples)
        _EXAMPLES[key] = list(ds.as_numpy_iterator())
        if not _EXAMPLES[key]:
            raise CellError(f"split {split!r} of task {name!r} has no examples")
    return _EXAMPLES[key]


def _padded(rows: list[Any], length: int, batch_size: int):
    """Token rows -> [n_batches * batch_size, length] int32 (zero rows pad the last batch)."""
    import numpy as np

    n = -(-len(rows) // batch_size) * batch_size
    out = np.zeros((n, length), np.int32)
    for i, row in enumerate(rows):
        row = np.asarray(row)[:length]
        out[i, :len(row)] = row
    return out


def _target_text(task: Any, ex: Mapping[str, Any]) -> Any:
    """The postprocessed target, as eval.predict.compute_metrics (seqio's Evaluator) makes it."""
    target = ex.get("targets_pretokenized")
    if target is None:
        target = task.output_features["targets"].vocabulary.decode([int(t) for t in ex["targets"]])
    if isinstance(target, bytes):
        target = target.decode("utf-8")
    return task.postprocess_fn(target, example=ex, is_target=True)


def score_language(target: str, lang: str, task: Any, examples: list[dict[str, Any]],
                   outputs: list[Any], metrics: Mapping[str, float]):
    """(Results, PerExamples) of one language; `outputs` postprocessed. The per-example scores
    are checked to reproduce the task's corpus metric."""
    from study.db import PerExample, Result

    targets = [_target_text(task, ex) for ex in examples]
    ids = tuple(f"{lang}:{i}" for i in range(len(examples)))
    results, per_example = [], []
    for metric in scores.MAIN_METRICS[target]:
        if metric not in metrics:
            raise CellError(f"xitt.{target}.{lang}: metric {metric!r} missing from "
                            f"{sorted(metrics)}")
        value = float(metrics[metric])
        if target in scores.F1_COUNT_TARGETS:
            s = scores.f1_counts(target, targets, outputs)
            mine, agg = scores.f1_from_counts(s), "f1_counts"
        else:
            (fn,) = task.predict_metric_fns
            s = scores.mean_scores(fn, targets, outputs, metric)
            mine, agg = float(s.mean()), "mean"
        if abs(mine - value) > 1e-6 * max(1.0, abs(value)):
            raise CellError(f"xitt.{target}.{lang} {metric}: per-example scores give {mine}, "
                            f"the task's metric {value}")
        results.append(Result(language=lang, metric=metric, value=value,
                              num_examples=len(examples)))
        per_example.append(PerExample(language=lang, metric=metric, example_ids=ids, scores=s,
                                      aggregation=agg))
    return results, per_example


def _write_predictions(cell: grid.Cell, lang: str, split: str, examples: list[dict[str, Any]],
                       scores_: Any, predictions: list[Any], metrics: Mapping[str, Any],
                       info: Mapping[str, Any]) -> None:
    """`<model_dir>/eval/<lang>/{predictions.jsonl,metrics.json}` (eval.predict's format) and
    the XTREME-R submission file `<model_dir>/leaderboard/<task>/<split>-<lang>.<ext>`."""
    from etils import epath

    from eval import leaderboard, predict

    out = epath.Path(cell.model_dir, "eval", lang)
    out.mkdir(parents=True, exist_ok=True)
    records = predict.example_records(examples, {"score": scores_}, predictions)
    predict.atomic_write_text(out / predict.PREDICTIONS_FILE,
                              "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    predict.atomic_write_text(out / predict.METRICS_FILE, json.dumps(
        {**info, "num_examples": len(examples), "metrics": dict(metrics)}, indent=1) + "\n")
    leaderboard.write_predictions(os.path.join(cell.model_dir, "leaderboard"),
                                  f"xitt.{cell.target}.{lang}", records, split)


def evaluate_decode(exp: Experiment, cell: grid.Cell, config: Any, checkpoint: str
                    ) -> tuple[list, list]:
    """Greedy decoding of every language of the target, all languages batched together through
    one compiled function; metrics by the tasks' own metric functions (eval.predict)."""
    import numpy as np
    import seqio

    from eval import predict

    lengths = exp.eval_length(cell.target).as_dict()
    split = exp.split_for(cell.target)
    batch_fn = _decode_fn(exp, cell, config)
    params = _load_params(config, checkpoint, cell.seed)
    langs = exp.languages[cell.target]
    per_lang = [eval_examples(f"xitt.{cell.target}.{lang}", split, lengths,
                              exp.eval_max_examples) for lang in langs]
    flat = [ex for exs in per_lang for ex in exs]
    tokens = _padded([ex["inputs"] for ex in flat], lengths["inputs"], exp.eval_batch_size)
    outs: dict[str, list] = {"tokens": [], "score": []}
    bs = exp.eval_batch_size
    for i in range(0, len(tokens), bs):
        o = batch_fn(params, {"encoder_input_tokens": tokens[i:i + bs]})
        for k in outs:
            outs[k].append(np.asarray(o[k]))
    out_tokens = np.concatenate(outs["tokens"])[:len(flat)]
    out_scores = np.concatenate(outs["score"])[:len(flat)]
    results, per_example, start = [], [], 0
    for lang, examples in zip(langs, per_lang):
        name = f"xitt.{cell.target}.{lang}"
        task = seqio.get_mixture_or_task(name)
        vocab = task.output_features["targets"].vocabulary
        rows = slice(start, start + len(examples))
        start += len(examples)
        predictions = [vocab.decode(r.tolist()) for r in out_tokens[rows]]
        metrics = predict.compute_metrics(task, examples, "decode", predictions,
                                          out_scores[rows])
        _write_predictions(cell, lang, split, examples, out_scores[rows], predictions, metrics,
                           {"task": name, "split": split, "checkpoint": checkpoint,
                            "cell": cell.cell_id})
        outputs = [task.postprocess_fn(p, example=ex, is_target=False)
                   for ex, p in zip(examples, predictions)]
        r, p = score_language(cell.target, lang, task, examples, outputs, metrics)
        results += r
        per_example += p
    return results, per_example


def evaluate_tatoeba(exp: Experiment, cell: grid.Cell, config: Any, checkpoint: str | None
                     ) -> tuple[list, list]:
    """x -> en nearest neighbour by cosine over pooled encoder states
    (`train.models.EncoderDecoderModel.embed`, layer and pooling from the experiment)."""
    import jax
    import numpy as np
    import seqio

    from train import models

    lengths = exp.eval_length("tatoeba").as_dict()
    params = _load_params(config, checkpoint, cell.seed)
    model = models.EncoderDecoderModel(config)
    embed = jax.jit(functools.partial(model.embed, layer=exp.retrieval_layer,
                                      pooling=exp.retrieval_pooling))
    bs = exp.eval_batch_size

    def embed_all(rows: list[Any], length: int) -> np.ndarray:
        tokens = _padded(rows, length, bs)
        e = np.concatenate([np.asarray(embed(params, tokens[i:i + bs]))
                            for i in range(0, len(tokens), bs)])[:len(rows)]
        return e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)

    results, per_example = [], []
    for lang in exp.languages["tatoeba"]:
        name = f"xitt.tatoeba.{lang}"
        task = seqio.get_mixture_or_task(name)
        examples = eval_examples(name, "test", lengths, exp.eval_max_examples)
        queries = embed_all([e["inputs"] for e in examples], lengths["inputs"])
        english = embed_all([e["targets"] for e in examples], lengths["inputs"])
        nearest = [int(i) for i in (queries @ english.T).argmax(axis=-1)]
        targets = [_target_text(task, ex) for ex in examples]
        (fn,) = task.predict_metric_fns
        metrics = fn(targets, nearest)
        _write_predictions(cell, lang, "test", examples, np.zeros(len(examples)), nearest,
                           metrics,
                           {"task": name, "split": "test", "checkpoint": checkpoint,
                            "cell": cell.cell_id, "retrieval_layer": exp.retrieval_layer,
                            "retrieval_pooling": exp.retrieval_pooling})
        r, p = score_language("tatoeba", lang, task, examples, nearest, metrics)
        results += r
        per_example += p
    return results, per_example


CANDIDATE_SPLITS = {"mewslix": "validation", "lareqa": "test"}  # pool of the evaluated split
TOP_K = 20


def evaluate_dual_encoder(exp: Experiment, cell: grid.Cell, config: Any, checkpoint: str
                          ) -> tuple[list, list]:
    """Mewsli-X / LAReQA: embed every query and the candidate pool with the trained dual
    encoder, rank the pool by cosine (exact top-20), score with the task's mAP@20."""
    import jax
    import numpy as np
    import seqio

    from train import checkpoints

    model = dual_encoder_model(exp, config)
    disk = model.unscanned() if config.scan_layers else model
    abstract = disk.abstract_params()
    shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]),
                             abstract)
    params = checkpoints.load_params(checkpoint, abstract, shardings)
    if config.scan_layers:
        params = model.scan(params)
    embed = jax.jit(model.embed)
    lengths = exp.eval_length(cell.target).as_dict()
    bs = exp.eval_batch_size
    split = exp.split_for(cell.target)

    def embed_all(rows: list[Any]) -> np.ndarray:
        tokens = _padded(rows, lengths["inputs"], bs)
        return np.concatenate([np.asarray(embed(params, tokens[i:i + bs]))
                               for i in range(0, len(tokens), bs)])[:len(rows)]

    pool = eval_examples(f"xitt.{cell.target}.candidates",
                         CANDIDATE_SPLITS[cell.target] if split == "validation" else "test",
                         lengths, None)
    pool_ids = [p["candidate_id"].decode() if isinstance(p["candidate_id"], bytes)
                else str(p["candidate_id"]) for p in pool]
    pool_emb = embed_all([p["inputs"] for p in pool])
    results, per_example = [], []
    for lang in exp.languages[cell.target]:
        name = f"xitt.{cell.target}.{lang}"
        task = seqio.get_mixture_or_task(name)
        examples = eval_examples(name, split, lengths, exp.eval_max_examples)
        sims = embed_all([e["inputs"] for e in examples]) @ pool_emb.T
        top = np.argsort(-sims, axis=-1, kind="stable")[:, :TOP_K]
        rankings = [[pool_ids[j] for j in row] for row in top]
        targets = [_target_text(task, ex) for ex in examples]
        (fn,) = task.predict_metric_fns
        metrics = fn(targets, rankings)
        _write_predictions(cell, lang, split, examples, np.zeros(len(examples)), rankings,
                           metrics, {"task": name, "split": split, "checkpoint": checkpoint,
                                     "cell": cell.cell_id, "pool_size": len(pool_ids)})
        r, p = score_language(cell.target, lang, task, examples, rankings, metrics)
        results += r
        per_example += p
    return results, per_example


# ------------------------------------------------------------------------------ the cell

def run_cell(exp: Experiment, cell_id: str, study_dir: str, *, db: Any = None) -> None:
    """Run one cell end to end; a failure is recorded in the DB and re-raised."""
    import jax

    from study.db import ResultsDB

    cells = grid.by_id(grid.build(exp, study_dir))
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
        db.mark_running(cell_id, start_time=now(), device_kind=jax.devices()[0].device_kind)
        try:
            provenance = _run(exp, cell, cells, db)
        except BaseException as e:
            db.mark_failed(cell_id, one_line(e), end_time=now())
            raise
        results, per_example, prov = provenance
        db.record_results(cell_id, results, per_example, end_time=now(),
                          experiment_hash=exp.sha256, code_commit=code_commit(), **prov)
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
        results, per_example = evaluate_tatoeba(exp, cell, config, checkpoint)
        step = (int(checkpoint.rstrip("/").rsplit("_", 1)[-1])
                if checkpoint and checkpoint.rstrip("/").rsplit("_", 1)[-1].isdigit() else None)
        return results, per_example, {
            "checkpoint_path": checkpoint, "checkpoint_step": step, "gin_config": operative,
            "selection_protocol": "encoder of " + (cell.init_from or "the initial checkpoint"),
            "retrieval_layer": exp.retrieval_layer, "retrieval_pooling": exp.retrieval_pooling,
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
    evaluate = evaluate_dual_encoder if cell.kind == "retrieval" else evaluate_decode
    results, per_example = evaluate(exp, cell, config, trained["checkpoint_path"])
    _log(f"{cell.cell_id}: evaluated {len(exp.languages[cell.target])} languages in "
         f"{time.monotonic() - t0:.1f}s")
    return results, per_example, trained


def _log(message: str) -> None:
    print(message, flush=True)
