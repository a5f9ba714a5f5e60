"""The one filesystem layer of the checkpoint readers: `etils.epath` for files and directories
(local, gs:// and whatever else epath knows), TensorStore's own drivers (file, gcs) for the
zarr arrays of legacy t5x checkpoints, Orbax's own epath use for its checkpoints.

Why one layer: a reader that uses os.path works on a laptop and fails on gs:// (released
checkpoints live there), and a format guessed from the scheme reads the wrong way. Only
libraries that need a local file (safetensors memory-maps it) get a copy, made once per
process, through `local_file`.
"""
from __future__ import annotations

import os
import tempfile
import threading

from etils import epath

_COPIES: dict[str, str] = {}
_LOCK = threading.Lock()


def path(p: str | os.PathLike) -> epath.Path:
    """An epath.Path for a local or remote path (the only constructor the readers use)."""
    return epath.Path(p)


def is_local(p: str | os.PathLike) -> bool:
    """Whether the operating system opens `p` directly (no scheme such as gs://)."""
    return "://" not in os.fspath(p)


def join(p: str | os.PathLike, *parts: str) -> str:
    """String join that keeps the scheme (gs://...): names stay what the user gave."""
    return os.fspath(epath.Path(p).joinpath(*parts))


def listdir(p: str | os.PathLike) -> list[str]:
    """Names in a directory, sorted; [] when it does not exist."""
    d = path(p)
    return sorted(c.name for c in d.iterdir()) if d.is_dir() else []


def local_file(p: str | os.PathLike, cache_dir: str | None = None) -> str:
    """`p` itself when local, else a local copy (under `cache_dir` or a temporary directory),
    copied once per process. The copy is written under a temporary name and renamed."""
    if is_local(p):
        return os.fspath(p)
    key = os.fspath(p)
    with _LOCK:
        if key in _COPIES and os.path.exists(_COPIES[key]):
            return _COPIES[key]
        root = cache_dir or tempfile.mkdtemp(prefix="xitt-ckpt-")
        target = os.path.join(root, key.replace("://", "/").replace("/", "_"))
        tmp = target + ".partial"
        path(p).copy(path(tmp), overwrite=True)
        os.replace(tmp, target)
        _COPIES[key] = target
        return target
