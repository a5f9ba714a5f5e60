"""Checkpoint formats: read released mT5 checkpoints (t5x legacy msgpack + zarr, t5x Orbax,
Hugging Face safetensors) into the t5x parameter tree, and write t5x-legacy and Hugging Face
checkpoints back. Every reader returns a `result.LoadedCheckpoint`.

Modules: report (tree comparison before reading), result (the load result, sharded array
building), t5x_legacy, t5x_orbax, huggingface, vocabulary (does a task's vocabulary fit the
model), convert (the CLI). Files are opened through xitt_common.fs, the one filesystem layer
(local and gs://).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

FORMATS = ("t5x_legacy", "t5x_orbax", "huggingface")
HF_START_STEP = 1_000_000  # = huggingface.HF_START_STEP (kept here: no import at package load)


def detect_format(path: str) -> str:
    """Which reader a directory needs, from the files it holds (local or gs:// alike, through
    `fs`): a msgpack `checkpoint` is legacy t5x, safetensors / PyTorch weights are Hugging
    Face, Orbax's `_METADATA` (in the directory or its only item subdirectory) is t5x Orbax."""
    from train.formats import huggingface, t5x_legacy, t5x_orbax
    from xitt_common import fs

    path = os.fspath(path).rstrip("/")
    root = fs.path(path)
    if not root.is_dir():
        if root.is_file() and root.name == t5x_legacy.CHECKPOINT_FILE:
            return "t5x_legacy"
        raise FileNotFoundError(f"{path}: no such checkpoint directory; expected one of "
                                f"formats {FORMATS}.")
    if (root / t5x_legacy.CHECKPOINT_FILE).is_file():
        return "t5x_legacy"
    hf_files = (huggingface.SAFETENSORS, huggingface.SAFETENSORS_INDEX, huggingface.PICKLE,
                huggingface.PICKLE_INDEX)
    if any((root / f).exists() for f in hf_files):
        return "huggingface"
    try:
        t5x_orbax.find_pytree_dir(path)
        return "t5x_orbax"
    except (ValueError, FileNotFoundError):
        pass
    raise ValueError(f"{path}: not a t5x (legacy or Orbax) nor a Hugging Face checkpoint "
                     f"directory; expected one of formats {FORMATS}; found "
                     f"{fs.listdir(path)[:10] or 'an empty directory'}.")


def load_checkpoint(
    path: str,
    target: Mapping[str, Any] | None = None,
    *,
    format: str = "auto",  # noqa: A002  (the user-facing name)
    optimizer_state: str = "restore",
    state_target: Mapping[str, Any] | None = None,
    hf_start_step: int = HF_START_STEP,
    **kwargs: Any,
):
    """Read any supported checkpoint; see the per-format readers for the arguments.

    Hugging Face checkpoints have no optimizer state ('restore' is an error for them) nor a
    step: they start at `hf_start_step` (default 1,000,000, the released mT5 models'
    pretraining steps), so absolute t5x-style step counts mean what t5x users expect.
    """
    from train.formats import huggingface, t5x_legacy, t5x_orbax

    fmt = detect_format(path) if format == "auto" else format
    if fmt == "t5x_legacy":
        return t5x_legacy.read_t5x_legacy(path, target, optimizer_state=optimizer_state,
                                          state_target=state_target, **kwargs)
    if fmt == "t5x_orbax":
        return t5x_orbax.read_t5x_orbax(path, target, optimizer_state=optimizer_state,
                                        state_target=state_target, **kwargs)
    if fmt == "huggingface":
        return huggingface.read_huggingface(path, target, optimizer_state=optimizer_state,
                                            step=hf_start_step, **kwargs)
    raise ValueError(f"format={format!r}: expected 'auto' or one of {FORMATS}.")
