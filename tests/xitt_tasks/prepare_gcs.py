"""A fake GCS for the tests: `gs://` paths keep going through etils.epath's TF backend (the
backend a real gs:// path uses when TensorFlow is installed), whose `tf.io.gfile` calls are
redirected to TensorFlow's in-memory `ram://` file system. Everything above the last gfile
call (epath, xitt_common.fs, the readers, the sources) runs as it would against a bucket."""
from __future__ import annotations

import os
from typing import Any

import tensorflow as tf
from etils.epath import backend

PREFIX, RAM = "gs://", "ram://"


def _to_ram(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and value.startswith(PREFIX):
        return RAM + value[len(PREFIX):]
    return value


def _to_gs(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(RAM):
        return PREFIX + value[len(RAM):]
    if isinstance(value, list):
        return [_to_gs(v) for v in value]
    return value


class RamGfile:
    """tf.io.gfile with gs://bucket/... served from ram://bucket/..."""

    def __getattr__(self, name: str) -> Any:
        fn = getattr(tf.io.gfile, name)
        if not callable(fn):
            return fn

        def call(*args: Any, **kwargs: Any) -> Any:
            out = fn(*map(_to_ram, args), **{k: _to_ram(v) for k, v in kwargs.items()})
            return out if name in ("GFile", "stat", "walk") else _to_gs(out)
        return call


def install(monkeypatch) -> None:
    """Serve gs:// from ram:// for the rest of the test."""
    monkeypatch.setattr(backend._TfBackend, "gfile", property(lambda self: RamGfile()))


def upload(local_root: str, url: str) -> int:
    """Copy a local directory tree to `url` (gs://...) through the fake; returns files copied."""
    n = 0
    for directory, _, files in os.walk(local_root):
        rel = os.path.relpath(directory, local_root)
        target = url.rstrip("/") + ("" if rel == "." else "/" + rel)
        tf.io.gfile.makedirs(_to_ram(target))
        for name in files:
            tf.io.gfile.copy(os.path.join(directory, name), _to_ram(f"{target}/{name}"),
                             overwrite=True)
            n += 1
    return n
