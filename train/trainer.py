"""Fine-tune (or train from scratch) an mT5 model on a seqio task or mixture.

`train` reads top to bottom: start the run (`train.run_start`: checks, run identity, resume or
initialise), then the loop, whose concerns each have a name beside it: `_Due` (what this step
does besides training), `Validation` (validation loss, the task's own metric), `_check_finite`
(NaN/inf), the checkpoints (`train.checkpoints`) and the summaries (`train.summaries`).
Plain typed Python; the settings are `train.settings` objects, which gin binds in
gin/runs/finetune.gin for `python -m train`.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from train import checkpoints, input_pipeline, models, partitioning, run_start, summaries
from train.config import MT5Config
from train.run_start import ORIGIN_FILE, StartedRun
from train.settings import (
    CheckpointSettings,
    DataSettings,
    MeshSettings,
    OptimizerSettings,
    ScheduleSettings,
    SelectionFn,
    ValidationSettings,
    check_together,
)

__all__ = ["ORIGIN_FILE", "NonFiniteLossError", "TrainResult", "Validation", "train"]


class NonFiniteLossError(FloatingPointError):
    """Training produced NaN or inf; the run stops and that state is never checkpointed."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    step: int
    train_metrics: dict[str, float]
    eval_metrics: dict[str, float] | None
    checkpoint_steps: list[int]


def train(*, model_dir: str, model: models.BaseModel | MT5Config, data: DataSettings,
          schedule: ScheduleSettings, optimizer: OptimizerSettings | None = None,
          checkpointing: CheckpointSettings | None = None,
          validation: ValidationSettings | None = None, mesh: MeshSettings | None = None,
          seed: int = 0, on_start: Callable[[str], None] | None = None) -> TrainResult:
    """Train `model` (a `train.models` model, or an `MT5Config`: its encoder-decoder) until
    step `schedule.train_steps`, resuming from `model_dir` when it holds a checkpoint.

    Before anything is loaded every file the run needs is checked and, when resuming, the run's
    identity is compared with the model directory's (see `train.run_start`). `on_start(model_dir)`
    is called once the state is ready (the entry point writes its config). A NaN/inf in a step
    sets a device-side flag, read at every log, validation and checkpoint step: a set flag
    stops the run with `NonFiniteLossError` naming the first bad step, before any checkpoint of
    it is written. A settings group left out takes its defaults.
    """
    model, model_dir = models.as_model(model), os.fspath(model_dir)
    optimizer = optimizer or OptimizerSettings()
    checkpointing = checkpointing or CheckpointSettings()
    validation, mesh = validation or ValidationSettings(), mesh or MeshSettings()
    check_together(data, optimizer)
    run = run_start.start(model_dir, model, data, schedule, optimizer, checkpointing,
                          validation, mesh, seed)
    if on_start is not None:
        on_start(model_dir)
    saver = checkpoints.Checkpoints(model_dir, keep=checkpointing.keep_checkpoints,
                                    best_metric=validation.best_metric,
                                    best_mode=validation.best_mode)
    logger = _summaries(run, data, schedule, mesh)
    validate = Validation(run, data, validation)
    train_scalars: dict[str, float] = {}
    start, stop = int(run.state.step), schedule.train_steps
    if start >= stop:
        run_start.log(f"step {start} >= train_steps {stop}: nothing to train")
        logger.close()
        return _result(run, train_scalars, validate.last)
    state, rng = run.state, run.dropout_rng
    first_bad = jax.device_put(jnp.asarray(-1, jnp.int32), partitioning.replicated(run.mesh))
    batches = _train_batches(run, data, start)
    try:
        for step in range(start + 1, stop + 1):
            state, metrics, first_bad = run.compiled.run_step(state, next(batches), rng,
                                                              first_bad)
            due = _Due.at(step, schedule, checkpointing, validation)
            scalars = logger.add(step, metrics, schedule.learning_rate_at(step - 1)
                                 if due.log else None)
            if scalars is not None or due.validate or due.save:
                _check_finite(first_bad, model_dir)
                train_scalars = scalars or train_scalars
            with logger.paused():
                step_eval = validate(state.params, step, logger) if due.validate else None
                if due.save:
                    saver.save(step, run.compiled.to_tree(state), metrics=step_eval,
                               data_state=batches.save)
    finally:
        batches.close()  # release tf.data now: its teardown at exit can hang
        logger.close()
    run.state = state
    return _result(run, train_scalars, validate.last)


# ------------------------------------------------------------------------------ the loop's parts

@dataclasses.dataclass(frozen=True)
class _Due:
    """What the step that just ended does besides training."""

    log: bool
    validate: bool
    save: bool

    @classmethod
    def at(cls, step: int, schedule: ScheduleSettings, checkpointing: CheckpointSettings,
           validation: ValidationSettings) -> _Due:
        every = validation.every(checkpointing.save_every)
        return cls(log=step % schedule.log_every == 0,
                   validate=bool(validation.eval_split) and every > 0 and step % every == 0,
                   save=step % checkpointing.save_every == 0 or step == schedule.train_steps)


class Validation:
    """The validation loss and token accuracy on a fixed set of batches (read once, on host:
    every validation is the same), joined by the task's own metric (`selection_fn`)."""

    def __init__(self, run: StartedRun, data: DataSettings,
                 settings: ValidationSettings) -> None:
        self.run, self.settings = run, settings
        self.config = input_pipeline.DatasetConfig(
            settings.task(data), data.task_feature_lengths, settings.eval_split or "",
            data.batch_size, shuffle=False, seed=run.seed, pack=data.pack,
            use_cached=data.use_cached, feature_converter=run.model.feature_converter(False))
        self.batches: list[dict[str, Any]] = []
        self.last: dict[str, float] | None = None

    def __call__(self, params: Any, step: int, logger: summaries.TrainSummaries
                 ) -> dict[str, float]:
        metrics = self.loss_and_accuracy(params)
        if self.settings.selection_fn is not None:
            metrics = {**metrics, **_selection_metrics(self.settings.selection_fn, params,
                                                       step, metrics)}
        logger.write_eval(step, metrics)
        self.last = metrics
        return metrics

    def loss_and_accuracy(self, params: Any) -> dict[str, float]:
        mesh = self.run.mesh
        if not self.batches:
            self.batches.extend(input_pipeline.eval_host_batches(self.config, mesh,
                                                                 self.settings.eval_steps))
        totals = None
        for host_batch in self.batches:
            sums = self.run.compiled.run_eval(params, input_pipeline.to_global(host_batch, mesh))
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        host = {k: float(v) for k, v in jax.device_get(totals).items()}
        return {"loss": host["loss_sum"] / max(host["tokens"], 1.0),
                "accuracy": host["accuracy_numerator"] / max(host["accuracy_denominator"], 1.0)}


def _selection_metrics(selection_fn: SelectionFn, params: Any, step: int,
                       validation: Mapping[str, float]) -> dict[str, float]:
    metrics = {k: float(v) for k, v in selection_fn(params, step).items()}
    clash = sorted(set(metrics) & set(validation))
    if clash:
        raise ValueError(f"selection_fn returned {clash}, which the validation loss already "
                         "reports; name the task metrics differently (e.g. 'task_score')")
    return metrics


def _check_finite(first_bad: jax.Array, model_dir: str) -> None:
    bad = int(first_bad)
    if bad >= 0:
        last = checkpoints.latest_step(model_dir)
        raise NonFiniteLossError(
            f"training stopped: non-finite loss or gradient in the train step at step "
            f"{bad} (the update from step {bad} to {bad + 1}); no checkpoint was written "
            f"after it. Last checkpoint: "
            f"{'none' if last is None else checkpoints.checkpoint_path(model_dir, last)}.")


def _train_batches(run: StartedRun, data: DataSettings, start: int
                   ) -> input_pipeline.TrainIterator:
    """The batch of step `start` first: restored from the resumed checkpoint's input state,
    or replayed from where the run started (`train_origin.json`)."""
    config = input_pipeline.DatasetConfig(
        data.mixture_or_task_name, data.task_feature_lengths, "train", data.batch_size,
        shuffle=data.shuffle, seed=run.seed, pack=data.pack, use_cached=data.use_cached,
        feature_converter=run.model.feature_converter(data.pack))
    return input_pipeline.train_iterator(
        config, run.mesh, start_step=start - int(run.origin["start_step"]),
        restore_dir=(None if run.resume_step is None
                     else checkpoints.checkpoint_path(run.model_dir, run.resume_step)))


def _summaries(run: StartedRun, data: DataSettings, schedule: ScheduleSettings,
               mesh: MeshSettings) -> summaries.TrainSummaries:
    encoder_params, decoder_params = summaries.stack_param_counts(
        run.layout.checkpoint_abstract["target"])
    model = run.model
    return summaries.TrainSummaries(
        run.model_dir, log_every=schedule.log_every, encoder_params=encoder_params,
        decoder_params=decoder_params, num_devices=run.mesh.size,
        device_kind=run.mesh.devices.flat[0].device_kind, peak_flops=mesh.peak_flops,
        # exact matmul FLOPs (train.flops) for the encoder-decoder; 6 x params otherwise
        model_config=model.config if model.kind == "encoder_decoder" else None,
        feature_lengths=data.task_feature_lengths)


def _result(run: StartedRun, train_scalars: dict[str, float],
            eval_scalars: dict[str, float] | None) -> TrainResult:
    return TrainResult(step=int(run.state.step), train_metrics=train_scalars,
                       eval_metrics=eval_scalars,
                       checkpoint_steps=checkpoints.committed_steps(run.model_dir))
