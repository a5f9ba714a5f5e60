"""The shipped per-size TPU configs (gin/tpu/*.gin) as plain values, and the phases they cover.

Each gin/tpu file is an overlay given after gin/models/mt5_<size>.gin and gin/runs/finetune.gin
(the study adds it after its own run files): it overrides the training macros the trainer
reads (mesh, partitioning, remat, scan, microbatches) and sets macros only tpu_scripts read
(the slice, its phases, and the inference and retrieval settings that `python -m eval` and the
retrieval runs take as flags). Reading them through gin here means the fit check compiles what
`python -m train` with those three files would run.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TPU_GIN_DIR = REPO_ROOT / "gin" / "tpu"

# Training phases: tokens per step, relative to the config's BATCH_SIZE x input length (2^17 in
# every shipped config), and target length, as the mT5 fine-tuning script's tasks
# (docs/protocol.md): 2^17 tokens at 1024/128 (classification) and 1024/512 (QA, tagging),
# XNLI's 2^20 at 1024/128, NER's 2^16 at 1024/1024. Mesh TF's rule: sequences per step = tokens
# / the longest length; a phase with more tokens per step than the config is sized for accumulates
# proportionally more microbatches (train.settings.scaled_microbatches).
TRAIN_PHASES = {"train_cls": (1.0, 128), "train_xnli": (8.0, 128),
                "train_qa": (1.0, 512), "train_ner": (0.5, 1024)}
TRAIN_TARGET_LENGTHS = {p: t for p, (_, t) in TRAIN_PHASES.items()}
PHASES = (*TRAIN_PHASES, "decode", "score", "retrieval_train", "embed_candidates")
MEWSLIX_CANDIDATES = 1_003_893


@dataclasses.dataclass(frozen=True)
class TpuConfig:
    """One gin/tpu file, resolved."""

    path: Path
    size: str
    slice_name: str
    model_config: Any               # train.config.MT5Config (scan / remat as the file sets)
    batch_size: int
    input_length: int
    num_microbatches: int
    num_partitions: int | None
    model_parallel_submesh: tuple[int, ...] | None
    parameter_partitioning: str
    activation_partitioning_dims: int
    infer_num_partitions: int
    infer_batch_size: int
    decode_length: int
    retrieval_batch_size: int
    retrieval_lengths: tuple[int, int]      # (query, candidate)
    embed_batch_size: int

    @property
    def name(self) -> str:
        return self.path.stem

    def mesh_text(self) -> str:
        if self.model_parallel_submesh is not None:
            return f"submesh {'x'.join(map(str, self.model_parallel_submesh))}"
        return f"{self.num_partitions or 1}-way model"


def train_batch(cfg: TpuConfig, phase: str) -> tuple[int, int]:
    """(sequences per step, microbatches) of a training phase on `cfg`'s slice."""
    from train.settings import CONFIG_TARGET_LENGTH, scaled_microbatches

    ratio, targets = TRAIN_PHASES[phase]
    batch = int(ratio * cfg.batch_size * cfg.input_length) // max(cfg.input_length, targets)
    base_tokens = cfg.batch_size * (cfg.input_length + CONFIG_TARGET_LENGTH)
    return batch, scaled_microbatches(cfg.num_microbatches, base_tokens, batch,
                                      cfg.input_length + targets)


def gin_files(path: str | Path) -> list[str]:
    """The files a run of this overlay parses, in order (paths relative to the repository)."""
    path = Path(path)
    size = _size_of(path)
    try:
        rel = str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        rel = str(path)
    return [f"gin/models/mt5_{size}.gin", "gin/runs/finetune.gin", rel]


def shipped_paths() -> list[Path]:
    return sorted(TPU_GIN_DIR.glob("mt5_*.gin"))


def _size_of(path: Path) -> str:
    parts = path.stem.split("_")
    if len(parts) < 4 or parts[0] != "mt5":
        raise ValueError(f"{path}: expected a name like mt5_<size>_<generation>_<shape>.gin")
    return parts[1]


def load(path: str | Path, bindings: Sequence[str] = ()) -> TpuConfig:
    """Parse one gin/tpu file (plus `NAME = VALUE` bindings) into a TpuConfig."""
    import gin

    from train import gin_utils

    path = Path(path)
    if not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    gin_utils.parse(gin_files(path), list(bindings), (".", str(REPO_ROOT)))

    def macro(name: str) -> Any:
        try:
            return gin.query_parameter(f"%{name}")
        except ValueError:
            raise ValueError(f"{path}: defines no macro {name}") from None

    submesh = macro("MODEL_PARALLEL_SUBMESH")
    lengths = macro("TASK_FEATURE_LENGTHS")
    cfg = TpuConfig(
        path=path, size=_size_of(path), slice_name=macro("TPU_SLICE"),
        model_config=gin_utils.model_config_from_gin(),
        batch_size=macro("BATCH_SIZE"), input_length=int(lengths["inputs"]),
        num_microbatches=macro("NUM_MICROBATCHES"), num_partitions=macro("NUM_PARTITIONS"),
        model_parallel_submesh=None if submesh is None else tuple(submesh),
        parameter_partitioning=macro("PARAMETER_PARTITIONING"),
        activation_partitioning_dims=macro("ACTIVATION_PARTITIONING_DIMS"),
        infer_num_partitions=macro("INFER_NUM_PARTITIONS"),
        infer_batch_size=macro("INFER_BATCH_SIZE"), decode_length=macro("DECODE_LENGTH"),
        retrieval_batch_size=macro("RETRIEVAL_BATCH_SIZE"),
        retrieval_lengths=tuple(macro("RETRIEVAL_LENGTHS")),
        embed_batch_size=macro("EMBED_BATCH_SIZE"))
    gin.clear_config()
    return cfg


def find(size: str, slice_name: str) -> Path:
    """The shipped file for a size and slice, e.g. ('xxl', 'v5e:4x8')."""
    stem = f"mt5_{size}_{slice_name.replace(':', '_')}"
    path = TPU_GIN_DIR / f"{stem}.gin"
    if not path.exists():
        have = ", ".join(p.stem for p in shipped_paths())
        raise ValueError(f"no shipped config {path.relative_to(REPO_ROOT)} for --size {size} "
                         f"--slice {slice_name}; shipped: {have}")
    return path
