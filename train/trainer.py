"""Fine-tune (or train from scratch) an mT5 model on a seqio task or mixture.

One function, `train`, in sections: mesh -> input -> state layout -> init or resume -> jit ->
loop (log, validate, checkpoint). Plain typed Python; gin binds it in `train/__main__.py`.

Steps are absolute, as in t5x: a run started from a pretrained `checkpoint_1000000` counts on
from 1,000,000, and `train_steps` is the step to stop at. Where the run started (and whether
the pretrained Adafactor statistics were restored or reset) is written once to
`<model_dir>/train_origin.json` and read back on resume.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from etils import epath
from jax.sharding import Mesh

from train import (
    checkpoints,
    formats,
    input_pipeline,
    models,
    optimizer,
    partitioning,
    preflight,
    run_identity,
    steps,
    summaries,
    train_state,
)
from train.config import MT5Config
from train.formats import result as formats_result
from train.formats import vocabulary

ORIGIN_FILE = "train_origin.json"
Schedule = Callable[[jax.Array], jax.Array]
# Model selection by the task's own metric: called at every validation step with the params
# (in-memory layout) and the step; returns metrics such as {'task_score': 81.2}, which join the
# validation loss and token accuracy and can be named by `best_metric`.
SelectionFn = Callable[[Any, int], Mapping[str, float]]


class NonFiniteLossError(FloatingPointError):
    """Training produced NaN or inf; the run stops and that state is never checkpointed."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    step: int
    train_metrics: dict[str, float]
    eval_metrics: dict[str, float] | None
    checkpoint_steps: list[int]


# ------------------------------------------------------------------------------ bookkeeping

def _write_json(path: epath.Path, value: Mapping[str, Any]) -> None:
    if jax.process_index() != 0:
        return
    tmp = path.parent / (path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    tmp.replace(path)


def _read_origin(model_dir: str) -> dict[str, Any]:
    f = epath.Path(model_dir) / ORIGIN_FILE
    if not f.exists():
        return {"init_checkpoint": None, "optimizer_state": None, "start_step": 0,
                "decay_step_offset": 0}
    try:
        return json.loads(f.read_text())
    except ValueError as e:
        raise ValueError(f"{f}: not valid JSON ({e})") from None


def _make_mesh(mesh: Mesh | None, num_partitions: int | None,
               model_parallel_submesh: Sequence[int] | None, data_axis_size: int | None,
               model_axis_size: int | None, devices: Sequence[Any] | None) -> Mesh:
    if mesh is not None:
        if tuple(mesh.axis_names) != partitioning.MESH_AXES:
            raise ValueError(f"mesh axes {mesh.axis_names}: expected {partitioning.MESH_AXES}")
        return mesh
    return partitioning.create_mesh(
        num_partitions=num_partitions, model_parallel_submesh=model_parallel_submesh,
        data_axis_size=data_axis_size, model_axis_size=model_axis_size, devices=devices)


def _read_init_checkpoint(path: str, model: models.BaseModel, mesh: Mesh,
                          rules: partitioning.Rules, adafactor: optimizer.AdafactorConfig,
                          optimizer_state: str, rng: jax.Array,
                          hf_start_step: int) -> formats_result.LoadedCheckpoint:
    """A pretrained checkpoint (t5x legacy, t5x Orbax or Hugging Face), read in the layout of
    the model it holds (`model.pretrained_model()`) and turned into `model`'s tree."""
    if "://" not in path and not epath.Path(path).exists():
        raise FileNotFoundError(f"init_checkpoint {path}: no such directory; expected a t5x "
                                "checkpoint_<step> directory or a Hugging Face model directory")
    source = train_state.state_layout(model.pretrained_model(), mesh, rules, adafactor)
    kwargs = {}
    if formats.detect_format(path) != "huggingface":  # HF files hold no optimizer state
        kwargs["state_target"] = source.checkpoint_abstract["state"]["param_states"]
    loaded = formats.load_checkpoint(path, source.checkpoint_abstract["target"],
                                     optimizer_state=optimizer_state,
                                     hf_start_step=hf_start_step, **kwargs)
    slots = loaded.param_states
    return dataclasses.replace(
        loaded, params=model.from_pretrained(loaded.params, rng),
        param_states=None if slots is None else model.from_pretrained(slots, rng, slots=True,
                                                                      adafactor=adafactor))


# ------------------------------------------------------------------------------ train

def train(
    *,
    model_dir: str,
    mixture_or_task_name: str,
    task_feature_lengths: Mapping[str, int],
    model_config: MT5Config | None = None,
    train_steps: int,
    model: models.BaseModel | None = None,
    batch_size: int,
    learning_rate: float | Schedule = 1e-3,
    adafactor: optimizer.AdafactorConfig | None = None,
    mesh: Mesh | None = None,
    num_partitions: int | None = None,
    model_parallel_submesh: Sequence[int] | None = None,
    data_axis_size: int | None = None,
    model_axis_size: int | None = None,
    devices: Sequence[Any] | None = None,
    parameter_partitioning: str = "1d",
    activation_partitioning_dims: int = 1,
    num_microbatches: int = 1,
    seed: int = 0,
    shuffle: bool = True,
    pack: bool = True,
    use_cached: bool | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 1e-4,
    loss_normalizing_factor: float | str | None = None,
    init_checkpoint: str | None = None,
    init_optimizer_state: str = "restore",
    save_every: int = 200,
    keep_checkpoints: int = 3,
    eval_every: int | None = None,
    eval_split: str | None = "validation",
    eval_steps: int | None = None,
    eval_mixture_or_task_name: str | None = None,
    best_metric: str | None = "loss",
    best_mode: str = "min",
    selection_fn: SelectionFn | None = None,
    log_every: int = 10,
    peak_flops: float | None = None,
    on_start: Callable[[str], None] | None = None,
    allow_changed_run: bool = False,
    hf_start_step: int = formats.HF_START_STEP,
) -> TrainResult:
    """Train until step `train_steps`, resuming from `model_dir` when it holds a checkpoint.

    Otherwise start from `init_checkpoint` (a t5x `checkpoint_<step>` directory, legacy or
    Orbax; `init_optimizer_state` 'restore' or 'reset' its Adafactor statistics) or from a
    random init. Every `eval_every` steps (default: `save_every`) the validation loss (token
    cross-entropy) and accuracy are computed on `eval_split`; checkpoints are written every
    `save_every` steps and at the end, keeping the last `keep_checkpoints` and the best by
    `best_metric` ('loss', 'accuracy', a key of `selection_fn`'s metrics, or None for the last
    checkpoint only; `best_mode` 'min'/'max'). `selection_fn(params, step)` scores the task's own
    metric on the selection set (decoding or rank-scoring it) at every validation step.
    `on_start(model_dir)` is called once the state is ready (the entry point writes its config).

    Before anything is loaded, every file the run needs is checked (`train.preflight`) and,
    when resuming, the run's identity is compared with `<model_dir>/run_identity.json`
    (`train.run_identity`): a different task, model, seed, batch, feature lengths, schedule or
    data stops the run with the differences unless `allow_changed_run=True`.

    `model` is a `train.models` model (the encoder-decoder or the dual encoder); a bare
    `model_config` means the encoder-decoder of that config.

    NaN/inf: each step sets a device-side flag; it is read at every log, validation and
    checkpoint step, and a set flag stops the run with `NonFiniteLossError` naming the first
    bad step, before any checkpoint of it is written.
    """
    for name, value in (("train_steps", train_steps), ("save_every", save_every),
                        ("log_every", log_every), ("num_microbatches", num_microbatches)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: expected a positive int")
    if batch_size % num_microbatches:
        raise ValueError(f"batch_size={batch_size} is not divisible by "
                         f"num_microbatches={num_microbatches}")
    formats_result.check_choice(init_optimizer_state)
    if (model is None) == (model_config is None):
        raise ValueError("train: give exactly one of model= (a train.models model) and "
                         "model_config= (an MT5Config: the encoder-decoder)")
    model = model if model is not None else models.EncoderDecoderModel(model_config)
    model_config = model.config
    eval_every = save_every if eval_every is None else eval_every
    adafactor = adafactor or optimizer.AdafactorConfig()
    model_dir = os.fspath(model_dir)

    # ---- mesh and state layout ----------------------------------------------------------
    mesh = _make_mesh(mesh, num_partitions, model_parallel_submesh, data_axis_size,
                      model_axis_size, devices)
    rules = partitioning.standard_logical_axis_rules(parameter_partitioning,
                                                     activation_partitioning_dims)
    input_pipeline.host_batch_size(batch_size, mesh)  # fail early on an uneven batch
    if eval_split:
        input_pipeline.check_split(eval_mixture_or_task_name or mixture_or_task_name,
                                   eval_split)

    # ---- where the run starts ----------------------------------------------------------
    # A pretrained table of real size (mT5: 250,112 rows for 250,100 ids) must be read with its
    # own vocabulary: far fewer ids than rows means the wrong one (e.g. XITT_VOCAB=cpu).
    pretrained_table = init_checkpoint is not None and model_config.vocab_size >= 32_000
    vocabulary.check_task_vocabularies(
        mixture_or_task_name, model_config.vocab_size,
        max_unused_rows=vocabulary.MT5_ROW_PADDING if pretrained_table else None)
    if jax.process_index() == 0:
        checkpoints.clean_stale(model_dir)  # `.deleting` and temporary dirs of a killed run
    resume_step, damaged = checkpoints.latest_intact_step(model_dir)
    if resume_step is None and damaged:
        raise checkpoints.CorruptCheckpointError(
            f"every checkpoint in {model_dir} is damaged (not starting afresh over them): "
            + " | ".join(damaged))
    preflight.check_run_files(
        mixture_or_task_name=mixture_or_task_name, eval_split=eval_split,
        eval_mixture_or_task_name=eval_mixture_or_task_name,
        init_checkpoint=init_checkpoint if resume_step is None else None)
    run_identity.check_or_record(
        model_dir, run_identity.make_identity(
            mixture_or_task_name=mixture_or_task_name, model_config=model_config, seed=seed,
            batch_size=batch_size, task_feature_lengths=task_feature_lengths,
            learning_rate=learning_rate, pack=pack, model=type(model).__name__,
            data_fingerprint=preflight.data_fingerprint(mixture_or_task_name, ["train"])),
        resuming=resume_step is not None, allow_changed_run=allow_changed_run,
        write=jax.process_index() == 0)
    origin = _read_origin(model_dir)
    loaded = None
    # Shapes and shardings do not depend on the Adafactor step offset chosen below.
    layout = train_state.state_layout(model, mesh, rules, adafactor)
    init_rng, dropout_rng = jax.random.split(jax.random.key(seed))
    if resume_step is None and init_checkpoint is not None:
        loaded = _read_init_checkpoint(init_checkpoint, model, mesh, rules, adafactor,
                                       init_optimizer_state, init_rng, hf_start_step)
        origin = {"init_checkpoint": os.fspath(init_checkpoint), "format": loaded.format,
                  "optimizer_state": loaded.optimizer_state, "start_step": loaded.step,
                  "decay_step_offset": loaded.decay_step_offset}
    if adafactor.step_offset == 0 and origin["decay_step_offset"]:
        adafactor = dataclasses.replace(adafactor, step_offset=origin["decay_step_offset"])
    schedule = learning_rate if callable(learning_rate) else (lambda _: learning_rate)
    replicated = partitioning.replicated(mesh)
    compiled = steps.trainer_steps(
        model, layout, mesh, rules, learning_rate, adafactor, num_microbatches=num_microbatches,
        label_smoothing=label_smoothing, z_loss=z_loss,
        loss_normalizing_factor=loss_normalizing_factor)
    to_state, to_tree = compiled.to_state, compiled.to_tree

    # ---- init or resume -----------------------------------------------------------------
    if resume_step is not None:
        resume_step, tree, _ = checkpoints.restore_latest_intact(model_dir,
                                                                 layout.checkpoint_abstract)
        state = to_state(tree)
        _log(f"resumed from {checkpoints.checkpoint_path(model_dir, resume_step)}")
    elif loaded is not None:
        step = jnp.asarray(loaded.step, jnp.int32)
        slots = loaded.param_states
        if slots is None:  # reset: Adafactor starts from zero statistics
            slots = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype, device=a.sharding),
                                 layout.checkpoint_abstract["state"]["param_states"])
        state = to_state({"target": loaded.params,
                          "state": {"step": step, "param_states": slots}})
        state = jax.device_put(state, layout.shardings)
        _log(f"initialised from {loaded.path} ({loaded.format}, step {loaded.step}, "
             f"optimizer state {loaded.optimizer_state})")
    else:
        state = compiled.init(init_rng)
    if resume_step is None:
        epath.Path(model_dir).mkdir(parents=True, exist_ok=True)
        _write_json(epath.Path(model_dir) / ORIGIN_FILE, origin)
    if on_start is not None:
        on_start(model_dir)

    # ---- compiled steps -----------------------------------------------------------------
    run_step, run_eval = compiled.run_step, compiled.run_eval

    # ---- data, summaries, checkpoints ---------------------------------------------------
    start = int(state.step)
    data_cfg = input_pipeline.DatasetConfig(
        mixture_or_task_name, task_feature_lengths, "train", batch_size, shuffle=shuffle,
        seed=seed, pack=pack, use_cached=use_cached,
        feature_converter=model.feature_converter(pack))
    eval_cfg = dataclasses.replace(
        data_cfg, mixture_or_task_name=eval_mixture_or_task_name or mixture_or_task_name,
        split=eval_split or "", shuffle=False,
        feature_converter=model.feature_converter(False))
    ckpts = checkpoints.Checkpoints(model_dir, keep=keep_checkpoints, best_metric=best_metric,
                                    best_mode=best_mode)
    encoder_params, decoder_params = summaries.stack_param_counts(
        layout.checkpoint_abstract["target"])
    logger = summaries.TrainSummaries(
        model_dir, log_every=log_every, encoder_params=encoder_params,
        decoder_params=decoder_params, num_devices=mesh.size,
        device_kind=mesh.devices.flat[0].device_kind, peak_flops=peak_flops,
        # exact matmul FLOPs (train.flops) for the encoder-decoder; 6 x params otherwise
        model_config=model_config if model.kind == "encoder_decoder" else None,
        feature_lengths=task_feature_lengths)

    validation: list[dict[str, Any]] = []  # read once, on host: every validation is the same

    def evaluate(params) -> dict[str, float]:
        if not validation:
            validation.extend(input_pipeline.eval_host_batches(eval_cfg, mesh, eval_steps))
        totals = None
        for host_batch in validation:
            sums = run_eval(params, input_pipeline.to_global(host_batch, mesh))
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        host = {k: float(v) for k, v in jax.device_get(totals).items()}
        return {"loss": host["loss_sum"] / max(host["tokens"], 1.0),
                "accuracy": host["accuracy_numerator"] / max(host["accuracy_denominator"], 1.0)}

    def check_finite(first_bad) -> None:
        bad = int(first_bad)
        if bad >= 0:
            last = checkpoints.latest_step(model_dir)
            raise NonFiniteLossError(
                f"training stopped: non-finite loss or gradient in the train step at step "
                f"{bad} (the update from step {bad} to {bad + 1}); no checkpoint was written "
                f"after it. Last checkpoint: "
                f"{'none' if last is None else checkpoints.checkpoint_path(model_dir, last)}.")

    # ---- loop ---------------------------------------------------------------------------
    train_scalars: dict[str, float] = {}
    eval_scalars: dict[str, float] | None = None
    if start >= train_steps:
        _log(f"step {start} >= train_steps {train_steps}: nothing to train")
    else:
        first_bad = jax.device_put(jnp.asarray(-1, jnp.int32), replicated)
        batches = input_pipeline.train_iterator(
            data_cfg, mesh, start_step=start - int(origin["start_step"]),
            restore_dir=(None if resume_step is None
                         else checkpoints.checkpoint_path(model_dir, resume_step)))
        try:
            for step in range(start + 1, train_steps + 1):
                state, metrics, first_bad = run_step(state, next(batches), dropout_rng,
                                                     first_bad)
                due_eval = bool(eval_split) and eval_every > 0 and step % eval_every == 0
                due_save = step % save_every == 0 or step == train_steps
                lr = float(schedule(step - 1)) if step % log_every == 0 else None
                scalars = logger.add(step, metrics, lr)
                if scalars is not None or due_eval or due_save:
                    check_finite(first_bad)
                    train_scalars = scalars or train_scalars
                step_eval = None
                with logger.paused():
                    if due_eval:
                        step_eval = eval_scalars = evaluate(state.params)
                        if selection_fn is not None:
                            step_eval = eval_scalars = {
                                **eval_scalars, **_selection_metrics(selection_fn, state.params,
                                                                     step, eval_scalars)}
                        logger.write_eval(step, eval_scalars)
                    if due_save:
                        ckpts.save(step, to_tree(state), metrics=step_eval,
                                   data_state=batches.save)
        finally:
            batches.close()  # release tf.data now: its teardown at exit can hang
            logger.close()
    return TrainResult(step=int(state.step), train_metrics=train_scalars,
                       eval_metrics=eval_scalars,
                       checkpoint_steps=checkpoints.committed_steps(model_dir))


def _selection_metrics(selection_fn: SelectionFn, params: Any, step: int,
                       validation: Mapping[str, float]) -> dict[str, float]:
    metrics = {k: float(v) for k, v in selection_fn(params, step).items()}
    clash = sorted(set(metrics) & set(validation))
    if clash:
        raise ValueError(f"selection_fn returned {clash}, which the validation loss already "
                         "reports; name the task metrics differently (e.g. 'task_score')")
    return metrics


def _log(message: str) -> None:
    if jax.process_index() == 0:
        print(message, flush=True)
