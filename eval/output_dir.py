"""Evaluation output written completely or not at all: one directory per checkpoint.

An evaluation that fails partway must not leave languages scored by the new checkpoint beside
stale ones from an older run. `atomic_output_dir` hands out a fresh temporary sibling of the
final directory; only when the `with` body finishes is it renamed into place (an older
directory of the same name is moved aside first and removed after). On an error the temporary
directory is removed and the final one is untouched. On a local filesystem the rename is
atomic; on object stores (`gs://`) epath copies, so readers may briefly see a partial copy,
but never a mix of two runs once the copy finishes.
"""
from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator

from etils import epath

_TMP_TAG = ".tmp-"
_OLD_TAG = ".old-"
_STEP = re.compile(r"checkpoint_(\d+)$")


def checkpoint_step(checkpoint: str | os.PathLike) -> int:
    """The step of a `.../checkpoint_<step>` path; ValueError naming it otherwise."""
    name = epath.Path(checkpoint).name
    match = _STEP.fullmatch(name)
    if not match:
        raise ValueError(f"checkpoint {os.fspath(checkpoint)!r}: expected a directory named "
                         "checkpoint_<step>")
    return int(match.group(1))


def checkpoint_output_dir(output_dir: str | os.PathLike, step: int) -> epath.Path:
    """`<output_dir>/checkpoint_<step>`: results of different checkpoints never mix."""
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"step={step!r}: expected a non-negative int")
    return epath.Path(output_dir) / f"checkpoint_{step}"


def remove_stale(final: str | os.PathLike) -> list[epath.Path]:
    """Remove temporary and set-aside siblings of `final` left by a killed run; returns them."""
    final = epath.Path(final)
    removed = []
    if not final.parent.exists():
        return removed
    for sibling in final.parent.iterdir():
        if sibling.name.startswith(final.name + _TMP_TAG) or \
                sibling.name.startswith(final.name + _OLD_TAG):
            sibling.rmtree(missing_ok=True)
            removed.append(sibling)
    return removed


@contextlib.contextmanager
def atomic_output_dir(final: str | os.PathLike) -> Iterator[epath.Path]:
    """Yield an empty temporary directory that becomes `final` when the body succeeds.

    An existing `final` is replaced only on success. Leftovers of a killed run (temporary or
    set-aside siblings) are removed on entry.
    """
    final = epath.Path(final)
    remove_stale(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = final.parent / f"{final.name}{_TMP_TAG}{tag}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        tmp.rmtree(missing_ok=True)
        raise
    old = final.parent / f"{final.name}{_OLD_TAG}{tag}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        old.rmtree()
