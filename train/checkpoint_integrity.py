"""Integrity of saved checkpoints: a checksum manifest written when a step is saved and checked
before it is restored, and removal of what interrupted saves and prunes leave behind.

Why: Orbax's commit markers say that a save finished, not that the bytes are still the ones
written; a flipped byte restores silently (as NaN, or as a wrong weight) and a truncated file
fails deep inside TensorStore. The manifest `_CHECKSUMS.json` holds the size and sha256 of every
file of the step directory. It is written atomically (tmp + rename) once Orbax has committed the
step, so it is the last thing a save writes. A step directory without one (saved before
checksums existed, or a save killed between Orbax's commit and the manifest) is still restorable
(Orbax committed it) and its arrays are still checked for finiteness on restore.
"""
from __future__ import annotations

import hashlib
import json
import re

from etils import epath

MANIFEST = "_CHECKSUMS.json"
_MANIFEST_TMP = MANIFEST + ".tmp"
_CHUNK = 16 * 1024 * 1024
# Left by a kill: Orbax's temporary directory of an unfinished save, and a pruned step whose
# removal did not finish (renamed first, so that it is never mistaken for a checkpoint).
STALE = re.compile(r"^checkpoint_\d+(\.orbax-checkpoint-tmp-\d+|\.deleting)$")


def _files(root: epath.Path, prefix: str = "") -> list[str]:
    """Every file under `root` as a '/'-relative path, sorted; the manifest itself excluded."""
    out = []
    for child in root.iterdir():
        rel = f"{prefix}{child.name}"
        if child.is_dir():
            out += _files(child, rel + "/")
        elif rel not in (MANIFEST, _MANIFEST_TMP):
            out.append(rel)
    return sorted(out)


def _sha256(path: epath.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(step_dir: epath.Path) -> None:
    """Record size and sha256 of every file of a committed step directory (one process)."""
    step_dir = epath.Path(step_dir)
    entries = {rel: {"bytes": (step_dir / rel).stat().length, "sha256": _sha256(step_dir / rel)}
               for rel in _files(step_dir)}
    tmp = step_dir / _MANIFEST_TMP
    tmp.write_text(json.dumps({"version": 1, "files": entries}, indent=1, sort_keys=True))
    tmp.replace(step_dir / MANIFEST)


def has_manifest(step_dir: epath.Path) -> bool:
    return (epath.Path(step_dir) / MANIFEST).exists()


def verify(step_dir: epath.Path) -> str | None:
    """What is wrong with a step directory's files, in one line; None when they match the
    manifest (or there is no manifest to check against)."""
    step_dir = epath.Path(step_dir)
    manifest = step_dir / MANIFEST
    if not manifest.exists():
        return None
    try:
        files = json.loads(manifest.read_text())["files"]
        expected = {str(k): (int(v["bytes"]), str(v["sha256"])) for k, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"its checksum manifest {MANIFEST} is unreadable ({type(e).__name__}: {e})"
    bad = []
    for rel, (size, digest) in expected.items():
        path = step_dir / rel
        if not path.exists():
            bad.append(f"{rel} is missing")
            continue
        got = path.stat().length
        if got != size:
            bad.append(f"{rel} has {got} bytes, {size} were written (truncated or overwritten)")
        elif _sha256(path) != digest:
            bad.append(f"{rel} does not match its sha256 (bytes changed since the save)")
    if not bad:
        return None
    more = f" (and {len(bad) - 3} more files)" if len(bad) > 3 else ""
    return "; ".join(bad[:3]) + more


def manifest_digest(step_dir: epath.Path) -> str | None:
    """sha256 of the manifest file itself (identifies one save of a step), None without one."""
    manifest = epath.Path(step_dir) / MANIFEST
    return _sha256(manifest) if manifest.exists() else None


def clean_stale(model_dir: str) -> list[str]:
    """Remove Orbax temporary directories and `checkpoint_<N>.deleting` leftovers from a model
    directory; returns their names. Call it from the only process that writes checkpoints,
    before its first save: a concurrent save's temporary directory would be removed too."""
    root = epath.Path(model_dir)
    if not root.exists():
        return []
    removed = []
    for child in root.iterdir():
        if STALE.match(child.name) and child.is_dir():
            child.rmtree()
            removed.append(child.name)
    tmp_metrics = root / "checkpoint_metrics.json.tmp"
    if tmp_metrics.exists():
        tmp_metrics.unlink()
        removed.append(tmp_metrics.name)
    return sorted(removed)
