"""The one filesystem layer below the tasks and the runtime: `etils.epath` for files and
directories (local, gs:// and whatever else epath knows). The checkpoint readers (train.formats)
and the benchmark file readers (xitt_tasks.readers) both open files here, so a gs:// data root
is read exactly like a gs:// checkpoint. TensorStore's own drivers (file, gcs) read the zarr
arrays of legacy t5x checkpoints, Orbax its own checkpoints.

Why one layer: a reader that uses os.path works on a laptop and fails on gs://, and a format
guessed from the scheme reads the wrong way. Files are read in chunks and split into lines
here (TF's GFile readline drops the `\\r` of `\\r\\n`), so line numbers and bytes are the same
local or remote. Only libraries that need a local file (safetensors memory-maps it) get a copy,
made once per process, through `local_file`.
"""
from __future__ import annotations

import codecs
import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

from etils import epath

CHUNK = 1 << 20
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


def is_file(p: str | os.PathLike) -> bool:
    return path(p).is_file()


def signature(p: str | os.PathLike) -> tuple[int, int]:
    """(size, mtime) of a file: a cache key that changes when the file is rewritten."""
    if is_local(p):
        st = os.stat(p)
        return st.st_size, st.st_mtime_ns
    st = path(p).stat()
    return int(st.length), int(st.mtime)


@contextlib.contextmanager
def open_binary(p: str | os.PathLike) -> Iterator[IO[bytes]]:
    with path(p).open("rb") as f:
        yield f


def lines(p: str | os.PathLike) -> Iterator[bytes]:
    """The lines of a file as bytes, each with its own line ending (b'\\n' splits lines)."""
    with open_binary(p) as f:
        rest = b""
        while chunk := f.read(CHUNK):
            parts = (rest + chunk).split(b"\n")
            rest = parts.pop()
            for part in parts:
                yield part + b"\n"
        if rest:
            yield rest


class TextReader:
    """`read(n)` of decoded text over a binary stream (utf-8-sig drops a leading BOM)."""

    def __init__(self, f: IO[bytes], encoding: str = "utf-8-sig"):
        self.f = f
        self.decoder = codecs.getincrementaldecoder(encoding)()

    def read(self, size: int = CHUNK) -> str:
        while True:
            chunk = self.f.read(size)
            text = self.decoder.decode(chunk, final=not chunk)
            if text or not chunk:
                return text


@contextlib.contextmanager
def open_text(p: str | os.PathLike, encoding: str = "utf-8-sig") -> Iterator[TextReader]:
    with open_binary(p) as f:
        yield TextReader(f, encoding)


def write_bytes_atomic(p: str | os.PathLike, data: bytes) -> None:
    """Write under a temporary name beside `p`, then rename: never a half-written `p`."""
    target = path(p)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.partial"
    tmp.write_bytes(data)
    tmp.replace(target)


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


def write_stream_atomic(p: str | os.PathLike, source: IO[bytes]) -> int:
    """Copy a readable binary stream to `p` in chunks, through a temporary name and a rename;
    returns the bytes written."""
    target = path(p)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.partial"
    n = 0
    with tmp.open("wb") as out:
        while chunk := source.read(CHUNK):
            out.write(chunk)
            n += len(chunk)
    tmp.replace(target)
    return n
