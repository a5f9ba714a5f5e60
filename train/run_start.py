"""Where a training run starts: every check that can fail before work is done, then the state.

`start` builds the mesh, checks the batch, splits, vocabularies and files, compares the run's
identity with the model directory's (`train.run_identity`), and returns a `StartedRun`: the
state resumed from the model directory, read from a pretrained checkpoint, or randomly
initialised, with the compiled steps that train it.

Where the run started (and whether the pretrained Adafactor statistics were restored or reset)
is written once to `<model_dir>/train_origin.json` and read back on resume: steps are absolute,
as in t5x, so the input stream and the Adafactor decay count from that start.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
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
    train_state,
)
from train.formats import result as formats_result
from train.formats import vocabulary
from train.settings import (
    CheckpointSettings,
    DataSettings,
    MeshSettings,
    OptimizerSettings,
    ScheduleSettings,
    ValidationSettings,
)

ORIGIN_FILE = "train_origin.json"


@dataclasses.dataclass
class StartedRun:
    """A run ready to train: its mesh, compiled steps and state, and where it started."""

    model_dir: str
    model: models.BaseModel
    mesh: Mesh
    layout: train_state.StateLayout
    compiled: steps.TrainerSteps
    state: Any                    # train_state.TrainState, in the in-memory layout
    resume_step: int | None       # the model directory's checkpoint it resumed, if any
    origin: dict[str, Any]        # train_origin.json
    seed: int                     # of the init, the dropout and the data order
    dropout_rng: jax.Array


def start(model_dir: str, model: models.BaseModel, data: DataSettings,
          schedule: ScheduleSettings, optimizer_settings: OptimizerSettings,
          checkpointing: CheckpointSettings, validation: ValidationSettings,
          mesh_settings: MeshSettings, seed: int) -> StartedRun:
    """Check, then resume, load or initialise (in that order of preference)."""
    mesh, rules = mesh_settings.make_mesh(), mesh_settings.rules()
    input_pipeline.host_batch_size(data.batch_size, mesh)  # fail early on an uneven batch
    if validation.eval_split:
        input_pipeline.check_split(validation.task(data), validation.eval_split)
    _check_vocabulary(model, data, checkpointing)
    resume_step = _resumable_step(model_dir)
    preflight.check_run_files(
        mixture_or_task_name=data.mixture_or_task_name, eval_split=validation.eval_split,
        eval_mixture_or_task_name=validation.eval_mixture_or_task_name,
        init_checkpoint=checkpointing.init_checkpoint if resume_step is None else None)
    _check_identity(model_dir, model, data, schedule, seed, resume_step,
                    checkpointing.allow_changed_run)
    origin = read_origin(model_dir)
    adafactor = optimizer_settings.adafactor
    # Shapes and shardings do not depend on the Adafactor step offset chosen below.
    layout = train_state.state_layout(model, mesh, rules, adafactor)
    init_rng, dropout_rng = jax.random.split(jax.random.key(seed))
    loaded = None
    if resume_step is None and checkpointing.init_checkpoint is not None:
        loaded = _read_init_checkpoint(checkpointing, model, mesh, rules, adafactor, init_rng)
        origin = {"init_checkpoint": os.fspath(checkpointing.init_checkpoint),
                  "format": loaded.format, "optimizer_state": loaded.optimizer_state,
                  "start_step": loaded.step, "decay_step_offset": loaded.decay_step_offset}
    if adafactor.step_offset == 0 and origin["decay_step_offset"]:
        adafactor = dataclasses.replace(adafactor, step_offset=origin["decay_step_offset"])
    compiled = steps.trainer_steps(
        model, layout, mesh, rules, schedule.learning_rate, adafactor,
        num_microbatches=optimizer_settings.num_microbatches, **optimizer_settings.loss_kwargs())
    state = _initial_state(model_dir, resume_step, loaded, layout, compiled, init_rng)
    if resume_step is None:
        epath.Path(model_dir).mkdir(parents=True, exist_ok=True)
        _write_json(epath.Path(model_dir) / ORIGIN_FILE, origin)
    return StartedRun(model_dir, model, mesh, layout, compiled, state, resume_step, origin,
                      seed, dropout_rng)


def _check_vocabulary(model: models.BaseModel, data: DataSettings,
                      checkpointing: CheckpointSettings) -> None:
    # A pretrained table of real size (mT5: 250,112 rows for 250,100 ids) must be read with its
    # own vocabulary: far fewer ids than rows means the wrong one (e.g. XITT_VOCAB=cpu).
    vocab_size = model.config.vocab_size
    pretrained_table = checkpointing.init_checkpoint is not None and vocab_size >= 32_000
    vocabulary.check_task_vocabularies(
        data.mixture_or_task_name, vocab_size,
        max_unused_rows=vocabulary.MT5_ROW_PADDING if pretrained_table else None)


def _resumable_step(model_dir: str) -> int | None:
    """The latest intact checkpoint's step (None: start afresh); every one damaged stops."""
    if jax.process_index() == 0:
        checkpoints.clean_stale(model_dir)  # `.deleting` and temporary dirs of a killed run
    resume_step, damaged = checkpoints.latest_intact_step(model_dir)
    if resume_step is None and damaged:
        raise checkpoints.CorruptCheckpointError(
            f"every checkpoint in {model_dir} is damaged (not starting afresh over them): "
            + " | ".join(damaged))
    return resume_step


def _check_identity(model_dir: str, model: models.BaseModel, data: DataSettings,
                    schedule: ScheduleSettings, seed: int, resume_step: int | None,
                    allow_changed_run: bool) -> None:
    """The same fields, under the same names, as before the settings were grouped: model
    directories written by earlier versions resume."""
    run_identity.check_or_record(
        model_dir, run_identity.make_identity(
            mixture_or_task_name=data.mixture_or_task_name, model_config=model.config,
            seed=seed, batch_size=data.batch_size,
            task_feature_lengths=data.task_feature_lengths,
            learning_rate=schedule.learning_rate, pack=data.pack, model=type(model).__name__,
            data_fingerprint=preflight.data_fingerprint(data.mixture_or_task_name, ["train"])),
        resuming=resume_step is not None, allow_changed_run=allow_changed_run,
        write=jax.process_index() == 0)


def _read_init_checkpoint(checkpointing: CheckpointSettings, model: models.BaseModel,
                          mesh: Mesh, rules: partitioning.Rules,
                          adafactor: optimizer.AdafactorConfig,
                          rng: jax.Array) -> formats_result.LoadedCheckpoint:
    """A pretrained checkpoint (t5x legacy, t5x Orbax or Hugging Face), read in the layout of
    the model it holds (`model.pretrained_model()`) and turned into `model`'s tree."""
    path = checkpointing.init_checkpoint
    if "://" not in path and not epath.Path(path).exists():
        raise FileNotFoundError(f"init_checkpoint {path}: no such directory; expected a t5x "
                                "checkpoint_<step> directory or a Hugging Face model directory")
    source = train_state.state_layout(model.pretrained_model(), mesh, rules, adafactor)
    kwargs = {}
    if formats.detect_format(path) != "huggingface":  # HF files hold no optimizer state
        kwargs["state_target"] = source.checkpoint_abstract["state"]["param_states"]
    loaded = formats.load_checkpoint(path, source.checkpoint_abstract["target"],
                                     optimizer_state=checkpointing.init_optimizer_state,
                                     hf_start_step=checkpointing.hf_start_step, **kwargs)
    slots = loaded.param_states
    return dataclasses.replace(
        loaded, params=model.from_pretrained(loaded.params, rng),
        param_states=None if slots is None else model.from_pretrained(slots, rng, slots=True,
                                                                      adafactor=adafactor))


def _initial_state(model_dir: str, resume_step: int | None,
                   loaded: formats_result.LoadedCheckpoint | None,
                   layout: train_state.StateLayout, compiled: steps.TrainerSteps,
                   init_rng: jax.Array) -> Any:
    if resume_step is not None:
        resume_step, tree, _ = checkpoints.restore_latest_intact(model_dir,
                                                                 layout.checkpoint_abstract)
        log(f"resumed from {checkpoints.checkpoint_path(model_dir, resume_step)}")
        return compiled.to_state(tree)
    if loaded is None:
        return compiled.init(init_rng)
    slots = loaded.param_states
    if slots is None:  # reset: Adafactor starts from zero statistics
        slots = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype, device=a.sharding),
                             layout.checkpoint_abstract["state"]["param_states"])
    state = compiled.to_state({"target": loaded.params,
                               "state": {"step": jnp.asarray(loaded.step, jnp.int32),
                                         "param_states": slots}})
    log(f"initialised from {loaded.path} ({loaded.format}, step {loaded.step}, "
        f"optimizer state {loaded.optimizer_state})")
    return jax.device_put(state, layout.shardings)


def read_origin(model_dir: str) -> dict[str, Any]:
    f = epath.Path(model_dir) / ORIGIN_FILE
    if not f.exists():
        return {"init_checkpoint": None, "optimizer_state": None, "start_step": 0,
                "decay_step_offset": 0}
    try:
        return json.loads(f.read_text())
    except ValueError as e:
        raise ValueError(f"{f}: not valid JSON ({e})") from None


def _write_json(path: epath.Path, value: Mapping[str, Any]) -> None:
    if jax.process_index() != 0:
        return
    tmp = path.parent / (path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    tmp.replace(path)


def log(message: str) -> None:
    if jax.process_index() == 0:
        print(message, flush=True)
