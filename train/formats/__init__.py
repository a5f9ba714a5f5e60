"""Checkpoint formats: read released mT5 checkpoints (t5x legacy msgpack + zarr, t5x Orbax,
Hugging Face safetensors) into the t5x parameter tree, and write t5x-legacy and Hugging Face
checkpoints back. Every reader returns a `result.LoadedCheckpoint`.

Modules: report (tree comparison before reading), result (the load result, sharded array
building), t5x_legacy, t5x_orbax, huggingface, vocabulary, convert (the CLI).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

FORMATS = ("t5x_legacy", "t5x_orbax", "huggingface")


def detect_format(path: str) -> str:
    """Which reader a directory needs, from the files it holds."""
    from train.formats import huggingface, t5x_legacy, t5x_orbax

    path = os.fspath(path).rstrip("/")
    if path.startswith("gs://") or os.path.isfile(os.path.join(path, t5x_legacy.CHECKPOINT_FILE)):
        return "t5x_legacy"
    hf_files = (huggingface.SAFETENSORS, huggingface.SAFETENSORS_INDEX, huggingface.PICKLE,
                huggingface.PICKLE_INDEX)
    if any(os.path.exists(os.path.join(path, f)) for f in hf_files):
        return "huggingface"
    try:
        t5x_orbax.find_pytree_dir(path)
        return "t5x_orbax"
    except (ValueError, FileNotFoundError):
        pass
    raise ValueError(f"{path}: not a t5x (legacy or Orbax) nor a Hugging Face checkpoint "
                     f"directory; expected one of formats {FORMATS}.")


def load_checkpoint(
    path: str,
    target: Mapping[str, Any] | None = None,
    *,
    format: str = "auto",  # noqa: A002  (the user-facing name)
    optimizer_state: str = "restore",
    state_target: Mapping[str, Any] | None = None,
    **kwargs: Any,
):
    """Read any supported checkpoint; see the per-format readers for the arguments.

    Hugging Face checkpoints have no optimizer state: for them 'restore' is an error.
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
                                            **kwargs)
    raise ValueError(f"format={format!r}: expected 'auto' or one of {FORMATS}.")
