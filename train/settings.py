"""The trainer's settings, grouped by what they are about; each group checks itself when built.

`train.trainer.train` takes one object per concern instead of forty keywords:

  DataSettings        what the run trains on and how batches are made
  ScheduleSettings    when things happen: the step to stop at, the learning rate, logging
  OptimizerSettings   what one update computes: Adafactor, microbatches, the loss terms
  CheckpointSettings  where the run starts (resume, a pretrained checkpoint) and what it keeps
  ValidationSettings  the validation loss and the model selection by a metric
  MeshSettings        the device mesh, the partitioning rules and the devices' peak FLOP/s

Gin binds them in gin/runs/finetune.gin (`trainer.train.data = @settings.DataSettings()`, ...),
so the operative config.gin lists each group's fields under its own name. Frozen dataclasses:
equal settings compare equal, which lets a study worker reuse compiled steps across cells.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
from jax.sharding import Mesh

from train import formats, optimizer, partitioning
from train.formats import result as formats_result

Schedule = Callable[[jax.Array], jax.Array]
# Model selection by the task's own metric: called at every validation step with the params
# (in-memory layout) and the step; returns metrics such as {'task_score': 81.2}, which join the
# validation loss and token accuracy and can be named by `best_metric`.
SelectionFn = Callable[[Any, int], Mapping[str, float]]


def _positive_int(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{owner}.{name}={value!r}: expected a positive int")


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """The training data: a seqio task or mixture, its feature lengths, the global batch.

    `pack` packs several examples per row (seq2seq; the dual encoder needs False); `use_cached`
    reads seqio's offline cache (None: when every task has one, True: require it).
    """

    mixture_or_task_name: str
    task_feature_lengths: Mapping[str, int]
    batch_size: int
    shuffle: bool = True
    pack: bool = True
    use_cached: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.mixture_or_task_name, str) or not self.mixture_or_task_name:
            raise ValueError(f"DataSettings.mixture_or_task_name={self.mixture_or_task_name!r}: "
                             "expected a seqio task or mixture name")
        if not isinstance(self.task_feature_lengths, Mapping) or not self.task_feature_lengths:
            raise ValueError(f"DataSettings.task_feature_lengths={self.task_feature_lengths!r}: "
                             "expected a mapping such as {'inputs': 1024, 'targets': 128}")
        for feature, length in self.task_feature_lengths.items():
            _positive_int("DataSettings", f"task_feature_lengths[{feature!r}]", length)
        _positive_int("DataSettings", "batch_size", self.batch_size)


@dataclasses.dataclass(frozen=True)
class ScheduleSettings:
    """When things happen. `train_steps` is absolute, as in t5x: the step to stop at (a run
    from a pretrained `checkpoint_1000000` counts on from 1,000,000). `learning_rate` is a
    constant or a schedule of the step (`train.schedules`); scalars are written every
    `log_every` steps."""

    train_steps: int
    learning_rate: float | Schedule = 1e-3
    log_every: int = 10

    def __post_init__(self) -> None:
        _positive_int("ScheduleSettings", "train_steps", self.train_steps)
        _positive_int("ScheduleSettings", "log_every", self.log_every)
        if not callable(self.learning_rate) and not isinstance(self.learning_rate,
                                                               (int, float)):
            raise ValueError(f"ScheduleSettings.learning_rate={self.learning_rate!r}: expected "
                             "a number or a schedule (train.schedules)")

    def learning_rate_at(self, step: int) -> float:
        """The rate used by the update from `step` to `step + 1`."""
        lr = self.learning_rate
        return float(lr(step)) if callable(lr) else float(lr)


# The target length the gin/tpu slice configs are sized for: their BATCH_SIZE fits, in their
# NUM_MICROBATCHES, at 1024 inputs / 512 targets (QA), the longest of their base phases.
CONFIG_TARGET_LENGTH = 512


def scaled_microbatches(base_microbatches: int, base_tokens: int, batch_size: int,
                        sequence_tokens: int) -> int:
    """Microbatches for a step of `batch_size` sequences of `sequence_tokens` (inputs +
    targets) on a slice whose config fits `base_tokens` per step in `base_microbatches`: enough
    that no microbatch holds more tokens than the configured one (XNLI's 2^20-token step
    accumulates 6-8x as many; NER's 1024-token targets may need more than QA's), raised until
    they divide the batch."""
    micro = max(1, -(-base_microbatches * batch_size * sequence_tokens // base_tokens))
    while batch_size % micro:
        micro += 1
    return micro


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """What one update computes: Adafactor (t5x's mT5 defaults), the gradient accumulated over
    `num_microbatches` slices of the batch, and the loss terms (`train.objectives`)."""

    adafactor: optimizer.AdafactorConfig = dataclasses.field(
        default_factory=optimizer.AdafactorConfig)
    num_microbatches: int = 1
    label_smoothing: float = 0.0
    z_loss: float = 1e-4
    loss_normalizing_factor: float | str | None = None

    def __post_init__(self) -> None:
        if self.adafactor is None:  # gin's `adafactor = None`: the defaults
            object.__setattr__(self, "adafactor", optimizer.AdafactorConfig())
        if not isinstance(self.adafactor, optimizer.AdafactorConfig):
            raise ValueError(f"OptimizerSettings.adafactor={self.adafactor!r}: expected a "
                             "train.optimizer.AdafactorConfig")
        _positive_int("OptimizerSettings", "num_microbatches", self.num_microbatches)
        if not 0.0 <= float(self.label_smoothing) < 1.0:
            raise ValueError(f"OptimizerSettings.label_smoothing={self.label_smoothing!r}: "
                             "expected [0, 1)")

    def loss_kwargs(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing, "z_loss": self.z_loss,
                "loss_normalizing_factor": self.loss_normalizing_factor}


@dataclasses.dataclass(frozen=True)
class CheckpointSettings:
    """Where the run starts and what it keeps.

    A model directory holding a checkpoint resumes from its latest intact one; otherwise the
    run starts from `init_checkpoint` (t5x legacy or Orbax `checkpoint_<step>`, or a Hugging
    Face directory, whose step is taken as `hf_start_step`) with its Adafactor statistics
    restored or reset (`init_optimizer_state`), or from a random init. A checkpoint is written
    every `save_every` steps and at the end; the last `keep_checkpoints` are kept (and the best
    by the validation settings). `allow_changed_run` resumes a directory whose recorded run
    identity differs (`train.run_identity`).
    """

    save_every: int = 200
    keep_checkpoints: int = 3
    init_checkpoint: str | None = None
    init_optimizer_state: str = "restore"
    hf_start_step: int = formats.HF_START_STEP
    allow_changed_run: bool = False

    def __post_init__(self) -> None:
        _positive_int("CheckpointSettings", "save_every", self.save_every)
        _positive_int("CheckpointSettings", "keep_checkpoints", self.keep_checkpoints)
        formats_result.check_choice(self.init_optimizer_state)


@dataclasses.dataclass(frozen=True)
class ValidationSettings:
    """Validation and model selection.

    Every `eval_every` steps (None: at every save; 0: never) the token loss and accuracy are
    computed on `eval_split` (None: no validation) of `eval_mixture_or_task_name` (None: the
    training task), over `eval_steps` batches (None: the whole split). `selection_fn(params,
    step)` adds the task's own metric (`eval.selection`). The best checkpoint is kept by
    `best_metric` ('loss', 'accuracy', a key of `selection_fn`'s metrics, or None: the last
    only), smaller or larger better by `best_mode` ('min', 'max').
    """

    eval_every: int | None = None
    eval_split: str | None = "validation"
    eval_steps: int | None = None
    eval_mixture_or_task_name: str | None = None
    best_metric: str | None = "loss"
    best_mode: str = "min"
    selection_fn: SelectionFn | None = None

    def __post_init__(self) -> None:
        if self.eval_every is not None and (not isinstance(self.eval_every, int)
                                            or self.eval_every < 0):
            raise ValueError(f"ValidationSettings.eval_every={self.eval_every!r}: expected "
                             "None (at every save), 0 (never) or a positive int")
        if self.eval_steps is not None:
            _positive_int("ValidationSettings", "eval_steps", self.eval_steps)
        if self.best_mode not in ("min", "max"):
            raise ValueError(f"ValidationSettings.best_mode={self.best_mode!r}: expected "
                             "'min' or 'max'")
        if self.selection_fn is not None and not callable(self.selection_fn):
            raise ValueError(f"ValidationSettings.selection_fn={self.selection_fn!r}: expected "
                             "a function (params, step) -> {metric: value}")

    def every(self, save_every: int) -> int:
        """Steps between validations (0: none)."""
        return save_every if self.eval_every is None else self.eval_every

    def task(self, data: DataSettings) -> str:
        return self.eval_mixture_or_task_name or data.mixture_or_task_name


@dataclasses.dataclass(frozen=True)
class MeshSettings:
    """The device mesh ('data' x 'model') and how arrays are laid out on it.

    Give the mesh one way: a ready `mesh`, `num_partitions` (model-parallel ways), a
    `model_parallel_submesh` (x, y, z, core) or explicit `data_axis_size` x `model_axis_size`;
    `devices` restricts it (default: all). `parameter_partitioning` '1d' or '2d' (also shards
    `embed` over 'data') and `activation_partitioning_dims` choose t5x's standard rules.
    `peak_flops` (per device) overrides the device table for the MFU summary.
    """

    mesh: Mesh | None = None
    num_partitions: int | None = None
    model_parallel_submesh: Sequence[int] | None = None
    data_axis_size: int | None = None
    model_axis_size: int | None = None
    devices: Sequence[Any] | None = None
    parameter_partitioning: str = "1d"
    activation_partitioning_dims: int = 1
    peak_flops: float | None = None

    def __post_init__(self) -> None:
        self.rules()  # names a bad partitioning choice now, not after the data is read
        if self.mesh is not None and tuple(self.mesh.axis_names) != partitioning.MESH_AXES:
            raise ValueError(f"MeshSettings.mesh axes {self.mesh.axis_names}: expected "
                             f"{partitioning.MESH_AXES}")

    def make_mesh(self) -> Mesh:
        if self.mesh is not None:
            return self.mesh
        return partitioning.create_mesh(
            num_partitions=self.num_partitions,
            model_parallel_submesh=self.model_parallel_submesh,
            data_axis_size=self.data_axis_size, model_axis_size=self.model_axis_size,
            devices=self.devices)

    def rules(self) -> partitioning.Rules:
        return partitioning.standard_logical_axis_rules(self.parameter_partitioning,
                                                        self.activation_partitioning_dims)


def check_together(data: DataSettings, optimizer_settings: OptimizerSettings) -> None:
    """What no single group can check on its own."""
    if data.batch_size % optimizer_settings.num_microbatches:
        raise ValueError(f"DataSettings.batch_size={data.batch_size} is not divisible by "
                         f"OptimizerSettings.num_microbatches="
                         f"{optimizer_settings.num_microbatches}")


GROUPS: dict[str, type] = {
    "data": DataSettings, "schedule": ScheduleSettings, "optimizer": OptimizerSettings,
    "checkpointing": CheckpointSettings, "validation": ValidationSettings,
    "mesh": MeshSettings}
# `train`'s own arguments besides the groups.
TRAIN_ARGUMENTS = ("model_dir", "model", "seed", "on_start")


def group_of(name: str) -> str | None:
    """The group (`train` argument) whose field `name` is; None for none."""
    for group, cls in GROUPS.items():
        if name in {f.name for f in dataclasses.fields(cls)}:
            return group
    return None


def from_keywords(**keywords: Any) -> dict[str, Any]:
    """`train`'s arguments from the flat keyword list it took before the settings were grouped
    (`train(**from_keywords(model_dir=..., batch_size=8, save_every=3, ...))`): each keyword
    goes to its group; `model_config=` (an MT5Config) stands for `model=`. For scripts and
    tests that set a few fields of several groups; an unknown keyword is named."""
    keywords = dict(keywords)
    config = keywords.pop("model_config", None)
    if (keywords.get("model") is None) == (config is None):
        raise ValueError("give exactly one of model= (a train.models model) and "
                         "model_config= (an MT5Config: the encoder-decoder)")
    keywords["model"] = keywords.get("model") or config
    grouped: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
    out: dict[str, Any] = {}
    for name, value in keywords.items():
        group = group_of(name)
        if group is not None:
            grouped[group][name] = value
        elif name in TRAIN_ARGUMENTS:
            out[name] = value
        else:
            raise ValueError(f"{name}={value!r}: not a trainer setting (expected one of "
                             f"{sorted(TRAIN_ARGUMENTS)} or a field of {sorted(GROUPS)})")
    for group, fields in grouped.items():
        if fields or group in ("optimizer", "checkpointing", "validation", "mesh"):
            out[group] = GROUPS[group](**fields)
    return out
