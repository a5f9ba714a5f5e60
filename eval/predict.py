"""Decode or score every example of one seqio task split, write JSONL predictions and metrics.

The split is read once, unshuffled and unpacked (`EncDecFeatureConverter(pack=False)`), in
fixed-size batches; the last batch is padded with zero rows, which are computed and dropped, so
every batch has the same shape and the same compiled function serves every batch, task and
language with the same feature lengths and batch size (no hang or recompile on the last batch).

Outputs in the task's output directory, each written atomically (temporary file + rename):
- `predictions.jsonl`: one object per example in split order: `index`, the raw example's
  JSON-representable features (`inputs_pretokenized`, `targets_pretokenized`, ids, answers,
  ...), and `prediction` (decoded text) and `score` (the sequence's log-prob / brevity
  penalty) in decode mode, or `score` (the target's log-likelihood) in score mode.
- `metrics.json`: the task's seqio metric functions (`predict_metric_fns` in decode mode,
  `score_metric_fns` in score mode) on the postprocessed targets and outputs, following
  seqio's Evaluator conventions; written only when the task has such metric functions.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import seqio
import tensorflow as tf
from etils import epath
from jax.sharding import Mesh

from train import models, steps

MODES = ("decode", "score")
PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
_TOKEN_FEATURES = ("inputs", "targets")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """What to run on a split. `feature_lengths` fix the shapes: {'inputs': n, 'targets': m};
    `targets` is also the decode length."""

    feature_lengths: Mapping[str, int]
    split: str = "validation"
    mode: str = "decode"
    batch_size: int = 32
    beam_size: int = 1
    alpha: float = 0.6
    max_examples: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}: expected one of {MODES}")
        if set(self.feature_lengths) != set(_TOKEN_FEATURES):
            raise ValueError(f"feature_lengths={dict(self.feature_lengths)}: expected exactly "
                             "the keys 'inputs' and 'targets'")
        for key, value in self.feature_lengths.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"feature_lengths[{key!r}]={value!r}: expected a positive int")
        for name in ("batch_size", "beam_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected >= 1")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"max_examples={self.max_examples}: expected >= 1 or None")


def parse_feature_lengths(text: str) -> dict[str, int]:
    """'inputs=1024,targets=128' -> {'inputs': 1024, 'targets': 128}."""
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip()] = int(value)
        except ValueError:
            raise ValueError(f"--feature_lengths={text!r}: expected inputs=N,targets=M") from None
    return out


# ----------------------------------------------------------------------------------- model fns

BatchFn = Callable[[Any, Mapping[str, np.ndarray]], dict[str, jax.Array]]


def as_model(model: Any) -> models.BaseModel:
    """A `train.models` model; a bare `train.network.Transformer` means its encoder-decoder."""
    if isinstance(model, nn.Module) and hasattr(model, "config"):
        return models.EncoderDecoderModel(model.config)
    return models.as_model(model)


def make_batch_fn(model: Any, settings: EvalSettings, mesh: Mesh | None = None,
                  rules: Any = None, params_sharding: Any = None) -> BatchFn:
    """The jitted per-batch function of the mode; reuse it across tasks to compile once.

    With a `mesh` (built by `train.partitioning.create_mesh`, as in training) the batch is split
    over its 'data' axis and the params sharded by `params_sharding`; with several processes
    each passes its own host batch and every process gets every row back.
    """
    model = as_model(model)
    if mesh is None:
        if settings.mode == "score":
            return jax.jit(lambda params, batch: {"score": model.score_batch(params, batch)})

        def decode(params, batch):
            tokens, scores = model.predict_batch(
                params, batch, max_decode_len=settings.feature_lengths["targets"],
                beam_size=settings.beam_size, alpha=settings.alpha, return_scores=True)
            return {"tokens": tokens, "score": scores}

        return jax.jit(decode)
    if settings.mode == "score":
        fn = steps.jit_score_step(model, mesh, rules, params_sharding)
    else:
        fn = steps.jit_predict_step(model, mesh, rules, params_sharding,
                                    max_decode_len=settings.feature_lengths["targets"],
                                    beam_size=settings.beam_size, alpha=settings.alpha)
    if jax.process_count() == 1:
        return fn
    sharding = steps.batch_sharding(mesh)

    def global_batch_fn(params, batch):
        return fn(params, {k: jax.make_array_from_process_local_data(sharding, v)
                           for k, v in batch.items()})

    return global_batch_fn


# ----------------------------------------------------------------------------------- data

def _model_features(mode: str) -> tuple[str, ...]:
    if mode == "decode":
        return ("encoder_input_tokens",)
    return ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
            "decoder_loss_weights")


_KEPT: dict[tuple, Any] | None = None  # see keep_splits_in_memory


def keep_splits_in_memory(enabled: bool = True) -> None:
    """From now on, keep every split this process reads for evaluation (`read_split`,
    `eval.retrieval.read_task`) in host memory, read once. For a long-lived worker that scores
    many checkpoints on the same splits (the study's cells); `python -m eval` reads each split
    once and leaves this off."""
    global _KEPT
    if not enabled:
        _KEPT = None
    elif _KEPT is None:
        _KEPT = {}


def kept(key: tuple, read: Callable[[], Any]) -> Any:
    """`read()`, or its kept result when `keep_splits_in_memory` is on."""
    if _KEPT is None:
        return read()
    if key not in _KEPT:
        _KEPT[key] = read()
    return _KEPT[key]


def read_split(task: seqio.Task, settings: EvalSettings
               ) -> tuple[list[dict], tf.data.Dataset | list[dict[str, np.ndarray]]]:
    """(raw examples in split order, their model features batched by batch_size); the batches
    are host arrays when `keep_splits_in_memory` is on."""
    if _KEPT is not None:
        key = ("split", task.name, settings.split, tuple(sorted(settings.feature_lengths.items())),
               settings.max_examples, settings.mode, settings.batch_size)
        return kept(key, lambda: _materialized(_read_split(task, settings)))
    return _read_split(task, settings)


def _materialized(split: tuple[list[dict], tf.data.Dataset]
                  ) -> tuple[list[dict], list[dict[str, np.ndarray]]]:
    return split[0], list(split[1].as_numpy_iterator())


def _read_split(task: seqio.Task, settings: EvalSettings
                ) -> tuple[list[dict], tf.data.Dataset]:
    if settings.split not in task.splits:
        raise ValueError(f"task {task.name!r} has no split {settings.split!r} "
                         f"(splits: {list(task.splits)})")
    ds = task.get_dataset(sequence_length=dict(settings.feature_lengths), split=settings.split,
                          shuffle=False, num_epochs=1, seed=None)
    if settings.max_examples is not None:
        ds = ds.take(settings.max_examples)
    examples = list(ds.as_numpy_iterator())
    if not examples:
        raise ValueError(f"split {settings.split!r} of task {task.name!r} has no examples")
    keys = _model_features(settings.mode)
    converted = seqio.EncDecFeatureConverter(pack=False, apply_length_check=False)(
        ds, dict(settings.feature_lengths))  # the task trims to these lengths (train.models)
    converted = converted.map(lambda ex: {k: ex[k] for k in keys})
    return examples, converted.batch(settings.batch_size).prefetch(tf.data.AUTOTUNE)


def materialized_split(task: seqio.Task, settings: EvalSettings
                       ) -> tuple[list[dict], list[dict[str, np.ndarray]]]:
    """`read_split` with the batches read into host memory: a split evaluated again and again
    (model selection at every validation step) builds its input pipeline once."""
    split = read_split(task, settings)
    return split if _KEPT is not None else _materialized(split)


def padded_batches(batches: tf.data.Dataset | Iterable[dict[str, np.ndarray]], batch_size: int
                   ) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """(batch padded to batch_size with zero rows, number of real rows)."""
    rows = batches.as_numpy_iterator() if isinstance(batches, tf.data.Dataset) else batches
    for batch in rows:
        n = next(iter(batch.values())).shape[0]
        if n < batch_size:
            batch = {k: np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:], v.dtype)])
                     for k, v in batch.items()}
        yield batch, n


def run_batches(batch_fn: BatchFn, params: Any, batches: tf.data.Dataset | list[dict],
                batch_size: int) -> dict[str, np.ndarray]:
    """Outputs of every real row, concatenated. Batch i+1 is dispatched before batch i's
    outputs are fetched, so the host never waits on the device between batches."""
    collected: dict[str, list[np.ndarray]] = {}
    pending = None

    def fetch(outputs, n):
        for key, value in outputs.items():
            collected.setdefault(key, []).append(np.asarray(value)[:n])

    for batch, n in padded_batches(batches, batch_size):
        outputs = batch_fn(params, batch)
        if pending is not None:
            fetch(*pending)
        pending = (outputs, n)
    if pending is not None:
        fetch(*pending)
    return {k: np.concatenate(v) for k, v in collected.items()}


def run_batches_multiprocess(batch_fn: BatchFn, params: Any,
                             batches: tf.data.Dataset | list[dict],
                             batch_size: int, num_examples: int) -> dict[str, np.ndarray]:
    """Data-parallel over processes: process p runs examples p, p+P, ... in host batches of
    batch_size / P; every process runs the same number of batches (zero rows after its shard
    ends) and gets every row back, which is put back into split order."""
    procs, me = jax.process_count(), jax.process_index()
    if batch_size % procs:
        raise ValueError(f"batch_size={batch_size} is not divisible by the {procs} processes")
    per_host = batch_size // procs
    if not isinstance(batches, tf.data.Dataset):  # materialized host batches
        batches = tf.data.Dataset.from_tensor_slices(
            {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}).batch(batch_size)
    mine = batches.unbatch().shard(procs, me).batch(per_host)
    shard_len = math.ceil(num_examples / procs)
    num_batches = math.ceil(shard_len / per_host)
    it = padded_batches(mine, per_host)
    # All-zero rows for a process whose shard has ended (or is empty: fewer examples than
    # processes), shaped as the dataset's batches.
    zeros = {k: np.zeros((per_host,) + tuple(spec.shape[1:]), spec.dtype.as_numpy_dtype)
             for k, spec in mine.element_spec.items()}
    collected: dict[str, np.ndarray] = {}
    for b in range(num_batches):
        batch, _ = next(it, (None, 0))
        if batch is None:
            batch = zeros
        outputs = {k: np.asarray(v) for k, v in batch_fn(params, batch).items()}
        for j in range(batch_size):
            index = (b * per_host + j % per_host) * procs + j // per_host
            if index < num_examples:
                for key, value in outputs.items():
                    if key not in collected:
                        collected[key] = np.zeros((num_examples,) + value.shape[1:],
                                                  value.dtype)
                    collected[key][index] = value[j]
    return collected


# ----------------------------------------------------------------------------------- outputs

def _jsonable(value: Any) -> Any:
    """numpy / bytes -> JSON values; None for what has no JSON form."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()] if value.ndim else _jsonable(value.item())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str) or value is None:
        return value
    return None


def _metric_value(value: Any) -> Any:
    """seqio metric values may be plain numbers or seqio.metrics.Scalar-like objects."""
    value = getattr(value, "value", value)
    return _jsonable(np.asarray(value) if isinstance(value, np.generic) else value)


def atomic_write_text(path: epath.Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    tmp.write_text(text)
    tmp.replace(path)


def example_records(examples: list[dict], outputs: Mapping[str, np.ndarray],
                    predictions: list[str] | None) -> list[dict]:
    records = []
    for i, ex in enumerate(examples):
        record: dict[str, Any] = {"index": i}
        for key, value in ex.items():
            if key not in _TOKEN_FEATURES:
                record[key] = _jsonable(value)
        if predictions is not None:
            record["prediction"] = predictions[i]
        record["score"] = float(outputs["score"][i])
        records.append(record)
    return records


def target_texts(task: seqio.Task, examples: list[dict]) -> list[Any]:
    """The postprocessed targets the metrics compare with (seqio's Evaluator convention)."""
    vocab = task.output_features["targets"].vocabulary
    targets = []
    for ex in examples:
        target = ex.get("targets_pretokenized")
        if target is None:
            target = vocab.decode([int(t) for t in ex["targets"]])
        if isinstance(target, bytes):
            target = target.decode("utf-8")
        targets.append(task.postprocess_fn(target, example=ex, is_target=True))
    return targets


def compute_metrics(task: seqio.Task, examples: list[dict], mode: str,
                    predictions: list[str] | None, scores: np.ndarray) -> dict[str, Any]:
    """seqio Evaluator conventions: postprocessed targets and predictions (or raw scores)."""
    metric_fns = task.predict_metric_fns if mode == "decode" else task.score_metric_fns
    if not metric_fns:
        return {}
    targets = target_texts(task, examples)
    if mode == "decode":
        outputs = [task.postprocess_fn(p, example=ex, is_target=False)
                   for ex, p in zip(examples, predictions)]
    else:
        outputs = [float(s) for s in scores]
    results: dict[str, Any] = {}
    for fn in metric_fns:
        values = fn(targets, outputs)
        if not isinstance(values, Mapping):
            raise ValueError(f"task {task.name!r}: metric {getattr(fn, '__name__', fn)} "
                             f"returned {type(values).__name__}, expected a dict")
        results.update({k: _metric_value(v) for k, v in values.items()})
    return results


@dataclasses.dataclass(frozen=True)
class TaskOutput:
    """One task split run through the model: raw examples, model outputs, decoded texts."""

    task: seqio.Task
    examples: list[dict]
    outputs: dict[str, np.ndarray]
    predictions: list[str] | None
    metrics: dict[str, Any]


def predict_task(task_name: str, params: Any, batch_fn: BatchFn,
                 settings: EvalSettings, *, split_data: tuple[list[dict], Any] | None = None
                 ) -> TaskOutput:
    """Decode or score every example of one task split and compute its metrics (no files).
    `split_data`: the split as `materialized_split` returned it, to skip reading it again."""
    task = seqio.get_mixture_or_task(task_name)
    if not isinstance(task, seqio.Task):
        raise ValueError(f"{task_name!r} is a mixture; evaluate its tasks one by one "
                         "(`eval.__main__` does)")
    examples, batches = split_data if split_data is not None else read_split(task, settings)
    if jax.process_count() == 1:
        outputs = run_batches(batch_fn, params, batches, settings.batch_size)
    else:
        outputs = run_batches_multiprocess(batch_fn, params, batches, settings.batch_size,
                                           len(examples))
    n = outputs["score"].shape[0]
    if n != len(examples):
        raise RuntimeError(f"task {task_name!r}: {n} model outputs for {len(examples)} "
                           "examples (the feature converter dropped or added rows)")
    predictions = None
    if settings.mode == "decode":
        vocab = task.output_features["targets"].vocabulary
        predictions = [vocab.decode(row.tolist()) for row in outputs["tokens"]]
    metrics = compute_metrics(task, examples, settings.mode, predictions, outputs["score"])
    return TaskOutput(task, examples, outputs, predictions, metrics)


def write_task_outputs(result: TaskOutput, settings: EvalSettings, output_dir: str,
                       extra_info: Mapping[str, Any] | None = None) -> None:
    """`predictions.jsonl` and (when the task has metrics) `metrics.json`, each atomically."""
    out = epath.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = example_records(result.examples, result.outputs, result.predictions)
    atomic_write_text(out / PREDICTIONS_FILE,
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    if result.metrics:
        summary = {"task": result.task.name, "split": settings.split, "mode": settings.mode,
                   "num_examples": len(result.examples), "beam_size": settings.beam_size,
                   "alpha": settings.alpha, "feature_lengths": dict(settings.feature_lengths),
                   **dict(extra_info or {}), "metrics": result.metrics}
        atomic_write_text(out / METRICS_FILE, json.dumps(summary, indent=1) + "\n")


def evaluate_task(task_name: str, params: Any, batch_fn: BatchFn, settings: EvalSettings,
                  output_dir: str, extra_info: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Run one task split and write its outputs; returns the metrics (possibly empty)."""
    result = predict_task(task_name, params, batch_fn, settings)
    write_task_outputs(result, settings, output_dir, extra_info)
    return result.metrics
