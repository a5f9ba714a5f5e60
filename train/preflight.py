"""Check every file a run needs before the first step, and report all that are missing at once.

A validation file found missing at the first validation step wastes the training compute
before it; a typo in a data root should cost seconds. These checks use seqio's source API only
(train never imports the task package):

- a `seqio.FileDataSource` (TextLine, TFExample, ...) must match at least one file per pattern;
- any other source may list the files a split needs with a `required_files(split)` method
  (the project's `XittSource` does); sources without one (functions, TFDS) are not checked;
- each output feature's SentencePiece model file (`sentencepiece_model_file`) must exist;
- an initial checkpoint directory must exist.

Paths go through `tf.io.gfile`, so `gs://` works as it does for the readers.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import seqio
import tensorflow as tf


def _tasks(mixture_or_task_name: str) -> list[seqio.Task]:
    from train import input_pipeline

    provider = input_pipeline.get_provider(mixture_or_task_name)
    return list(provider.tasks) if isinstance(provider, seqio.Mixture) else [provider]


def source_files(source: Any, split: str) -> list[tuple[str, bool]]:
    """(path or pattern, exists) for each file `source` needs for `split` (may be empty)."""
    if isinstance(source, seqio.FileDataSource):
        patterns = source._split_to_filepattern.get(split)  # noqa: SLF001 (no public getter)
        if patterns is None:
            return []
        patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        return [(p, bool(tf.io.gfile.glob(p))) for p in patterns]
    required = getattr(source, "required_files", None)
    if callable(required):
        return [(p, tf.io.gfile.exists(p)) for p in required(split)]
    return []


def missing_task_files(mixture_or_task_name: str, split: str) -> list[str]:
    """'<task> <split>: <path>' for each file of the split's sources that does not exist."""
    missing = []
    for task in _tasks(mixture_or_task_name):
        if split not in task.splits:
            continue  # a mixture member without the split: seqio skips it too
        for path, exists in source_files(task.source, split):
            if not exists:
                missing.append(f"{task.name} {split}: {path}")
    return missing


def vocabulary_files(mixture_or_task_name: str) -> list[str]:
    """The SentencePiece model files of every output feature of every task (deduplicated)."""
    files: list[str] = []
    for task in _tasks(mixture_or_task_name):
        for feature in task.output_features.values():
            path = getattr(feature.vocabulary, "sentencepiece_model_file", None)
            if path and path not in files:
                files.append(path)
    return files


def missing_vocabulary_files(mixture_or_task_name: str) -> list[str]:
    return [f"vocabulary of {mixture_or_task_name}: {p}"
            for p in vocabulary_files(mixture_or_task_name) if not tf.io.gfile.exists(p)]


def missing_checkpoint(path: str | os.PathLike | None) -> list[str]:
    if path is None or tf.io.gfile.exists(os.fspath(path)):
        return []
    return [f"initial checkpoint: {os.fspath(path)}"]


def check_run_files(*, mixture_or_task_name: str, train_split: str | None = "train",
                    eval_mixture_or_task_name: str | None = None,
                    eval_split: str | None = None,
                    init_checkpoint: str | os.PathLike | None = None) -> None:
    """FileNotFoundError listing every missing file of the run; nothing when all exist."""
    missing: list[str] = []
    checks: list[tuple[str, str]] = []
    if train_split:
        checks.append((mixture_or_task_name, train_split))
    if eval_split:
        checks.append((eval_mixture_or_task_name or mixture_or_task_name, eval_split))
    for name, split in checks:
        missing += missing_task_files(name, split)
    for name in _unique(n for n, _ in checks):
        missing += missing_vocabulary_files(name)
    missing += missing_checkpoint(init_checkpoint)
    if missing:
        raise FileNotFoundError(
            2, f"{len(missing)} file(s) this run needs do not exist, checked before the "
            f"first step: {'; '.join(missing)}", missing[0].rpartition(": ")[2])


def data_fingerprint(mixture_or_task_name: str, splits: Sequence[str]) -> dict[str, Any]:
    """{split: [[file name, size in bytes], ...]}: the data of a run, for its identity.

    Names without directories, so moving the data root (local to gs://) keeps the identity.
    """
    out: dict[str, Any] = {}
    for split in splits:
        files = []
        for task in _tasks(mixture_or_task_name):
            if split not in task.splits:
                continue
            for path, exists in source_files(task.source, split):
                if exists and not any(c in path for c in "*?["):
                    files.append([os.path.basename(path), tf.io.gfile.stat(path).length])
        out[split] = files
    return out


def _unique(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
