"""Legacy t5x checkpoints: a msgpack file `checkpoint_<step>/checkpoint` plus one zarr array
per partitioned leaf, the format of the released mT5 t5x checkpoints.

The msgpack holds `{'version': 3, 'optimizer': {'target': params, 'state': {'step',
'param_states'}}}` encoded with flax's msgpack (numpy arrays as extension type 1). Partitioned
leaves are replaced by a TensorStore spec whose kvstore path is relative to the checkpoint
directory (the leaf's '/'-path with '.'), so checkpoints stay movable; `gs://` directories
use TensorStore's gcs kvstore with the bucket taken from the directory, every other file goes
through `fs` (etils.epath). Reading builds each global
array with `jax.make_array_from_callback`, so a host reads only its own shards and an XXL
array is never whole on one host.
"""
from __future__ import annotations

import os
import posixpath
import re
import shutil
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import tensorstore as ts
from flax import serialization

from train.formats import report
from train.formats.result import (
    LoadedCheckpoint,
    build_array,
    check_choice,
    index_key,
    local_indices,
    make_result,
    target_leaf,
)
from xitt_common import fs

CHECKPOINT_FILE = "checkpoint"
VERSION = 3
READABLE_VERSIONS = (2, 3)
_CHUNK_BYTES = 64 * 1024 * 1024  # t5x's desired chunk size
_GCS = re.compile(r"^gs://([^/]+)/?(.*)$")


# ---------------------------------------------------------------- paths
def checkpoint_dir(root: str, step: int) -> str:
    return posixpath.join(root, f"checkpoint_{step}") if _GCS.match(root) else os.path.join(
        root, f"checkpoint_{step}"
    )


def array_dir_name(name: str) -> str:
    """'target/encoder/layers_0/...' -> 'target.encoder.layers_0....' (t5x's relative path)."""
    return name.replace("/", ".")


def kvstore_spec(ckpt_dir: str, relative: str) -> dict[str, Any]:
    """Absolute TensorStore kvstore for a relative array path inside `ckpt_dir`."""
    match = _GCS.match(ckpt_dir)
    if match:
        bucket, prefix = match.group(1), match.group(2).rstrip("/")
        return {"driver": "gcs", "bucket": bucket, "path": posixpath.join(prefix, relative)}
    return {"driver": "file", "path": os.path.join(ckpt_dir, relative)}


def is_tensorstore_spec(value: Any) -> bool:
    return isinstance(value, Mapping) and {"driver", "kvstore"} <= set(value)


def resolve_spec(ckpt_dir: str, spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The stored (relative) spec -> an openable spec; missing chunks are errors, not zeros."""
    kvstore = spec.get("kvstore") or {}
    relative = kvstore.get("path") if isinstance(kvstore, Mapping) else None
    relative = relative or spec.get("path")  # tensorstore < 0.1.14 kept it at the top level
    if not relative:
        raise ValueError(
            f"{ckpt_dir}/{CHECKPOINT_FILE}: TensorStore spec of '{name}' has no kvstore path: "
            f"{dict(spec)}"
        )
    return {
        "driver": spec.get("driver", "zarr"),
        "kvstore": kvstore_spec(ckpt_dir, str(relative)),
        "fill_missing_data_reads": False,
    }


def _checkpoint_paths(path: str) -> tuple[str, str]:
    """Accept the checkpoint directory or the msgpack file inside it (local or gs://)."""
    path = str(path).rstrip("/")
    if fs.path(path).is_file():
        return os.fspath(fs.path(path).parent), path
    return path, fs.join(path, CHECKPOINT_FILE)


def read_msgpack(path: str) -> dict[str, Any]:
    """The raw state dict of a legacy checkpoint (TensorStore specs left as dicts)."""
    ckpt_dir, file = _checkpoint_paths(path)
    if not fs.path(file).is_file():
        raise FileNotFoundError(
            f"{file}: no legacy t5x checkpoint here (expected a msgpack file named "
            f"'{CHECKPOINT_FILE}' inside checkpoint_<step>/)."
        )
    data = fs.path(file).read_bytes()
    try:
        state = serialization.msgpack_restore(data)
    except Exception as e:  # noqa: BLE001  (msgpack raises several unrelated types)
        raise ValueError(f"{file}: not a readable msgpack t5x checkpoint ({e}).") from e
    version = state.get("version") if isinstance(state, dict) else None
    if version is None or int(version) not in READABLE_VERSIONS or "optimizer" not in state:
        raise ValueError(
            f"{file}: expected a t5x checkpoint {{'version': {VERSION}, 'optimizer': ...}}; "
            f"got version={version!r} and keys {sorted(state) if isinstance(state, dict) else []}."
        )
    return state


# ---------------------------------------------------------------- reading
class _Leaf:
    """One stored leaf: inline numpy or an opened TensorStore, with its shape and dtype."""

    def __init__(self, name: str, value: Any, store: ts.TensorStore | None):
        self.name, self.value, self.store = name, value, store
        if store is not None:
            self.shape = tuple(int(d) for d in store.shape)
            self.dtype = np.dtype(store.dtype.numpy_dtype)
        else:
            arr = np.asarray(value)
            self.shape, self.dtype = arr.shape, arr.dtype

    def read_async(self, index):
        if self.store is None:
            return _Done(np.asarray(self.value)[index])
        return self.store[index].read()


class _Done:
    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


def _open_leaves(
    ckpt_dir: str, flat: Mapping[str, Any]
) -> tuple[dict[str, _Leaf], list[tuple[str, report.Meta, str]]]:
    """Open every TensorStore concurrently; failures become 'unreadable' report entries."""
    futures = {
        n: ts.open(resolve_spec(ckpt_dir, v, n)) for n, v in flat.items() if is_tensorstore_spec(v)
    }
    leaves, unreadable = {}, []
    for name, value in flat.items():
        if name not in futures:
            leaves[name] = _Leaf(name, value, None)
            continue
        try:
            leaves[name] = _Leaf(name, value, futures[name].result())
        except Exception as e:  # noqa: BLE001  (tensorstore raises ValueError/OSError)
            meta = value.get("metadata") or {}
            shape = tuple(int(d) for d in np.asarray(meta.get("shape", ())).tolist() or ())
            dtype = np.dtype(value.get("dtype", "float32"))
            unreadable.append((name, (shape, dtype), f"cannot open the array: {e}"))
    return leaves, unreadable


def _drop_unused_momentum(flat: dict[str, Any]) -> dict[str, Any]:
    """t5x stores a (1,)-shaped 'm' placeholder when momentum is off; drop it."""

    def placeholder(v: Any) -> bool:
        if is_tensorstore_spec(v):
            shape = (v.get("metadata") or {}).get("shape", ())
            return int(np.prod(np.asarray(shape))) <= 1
        return np.asarray(v).size <= 1

    return {n: v for n, v in flat.items() if not (n.endswith("/m") and placeholder(v))}


def _read_tree(
    leaves: Mapping[str, _Leaf],
    targets: Mapping[str, Any] | None,
    dtype: np.dtype | None,
    source: str,
    what: str,
    unreadable: list,
) -> dict[str, Any]:
    """Issue every shard read first (concurrent I/O), then assemble arrays; collect failures."""
    plan = {}
    for name, leaf in leaves.items():
        if targets is not None:
            shape, want, sharding = target_leaf(targets[name])
        else:
            want = dtype if dtype is not None and leaf.dtype.kind in "fV" else leaf.dtype
            shape, sharding = leaf.shape, None
        reads = {index_key(i): leaf.read_async(i) for i in local_indices(shape, sharding)}
        plan[name] = (shape, want, sharding, reads)
    out = {}
    for name, (shape, want, sharding, reads) in plan.items():
        try:
            read = lambda i, r=reads: r[index_key(i)].result()
            out[name] = build_array(shape, want, sharding, read)
        except Exception as e:  # noqa: BLE001
            leaf = leaves[name]
            unreadable.append((name, (leaf.shape, leaf.dtype), _why(e)))
    if unreadable:
        rep = report.TreeReport(unreadable=unreadable)
        raise ValueError(
            rep.format(source, what, ["the checkpoint is truncated or corrupted: a chunk file "
                                      "is missing or short, or an array directory is absent."])
        )
    return out


def _why(e: Exception) -> str:
    return str(e).split(" [tensorstore_spec")[0]


def read_t5x_legacy(
    path: str,
    target: Mapping[str, Any] | None = None,
    *,
    optimizer_state: str = "restore",
    state_target: Mapping[str, Any] | None = None,
    dtype: Any = None,
) -> LoadedCheckpoint:
    """Load a legacy t5x checkpoint directory (`.../checkpoint_<step>`, local or gs://).

    target: abstract params (ShapeDtypeStruct leaves, e.g. network.abstract_params(config));
      the checkpoint is checked against it before any data is read, arrays come back in its
      dtypes, and as global jax.Arrays where a leaf carries a sharding (numpy otherwise).
    optimizer_state: 'restore' imports the Adafactor v_row/v_col/v; 'reset' skips them.
    state_target: abstract param_states to check against and shard like (optional).
    dtype: with no target, the float dtype to convert parameters to (default: as stored).
    """
    check_choice(optimizer_state)
    ckpt_dir, file = _checkpoint_paths(path)
    state = read_msgpack(path)["optimizer"]
    if "target" not in state:
        raise ValueError(f"{file}: no 'optimizer/target' (the parameters) in this checkpoint.")
    opt = state.get("state") or {}
    step = int(np.asarray(opt.get("step", 0)))
    flat_params = report.flatten(state["target"], is_leaf=is_tensorstore_spec)
    flat_states = _drop_unused_momentum(
        report.flatten(opt.get("param_states") or {}, is_leaf=is_tensorstore_spec)
    )
    restore = optimizer_state == "restore"
    if restore and not flat_states:
        raise ValueError(
            f"{file}: optimizer_state='restore' but the checkpoint holds no Adafactor "
            "param_states; use optimizer_state='reset'."
        )

    params_leaves, bad = _open_leaves(ckpt_dir, _prefixed("target", flat_params))
    params_leaves = _strip("target", params_leaves)
    bad = [(n.removeprefix("target/"), m, w) for n, m, w in bad]
    found = {n: (leaf.shape, leaf.dtype) for n, leaf in params_leaves.items()}
    found.update({n: m for n, m, _ in bad})
    if target is not None:
        report.check(found, report.expected_meta(target), source=ckpt_dir)
    targets = report.flatten(target) if target is not None else None
    params = _read_tree(params_leaves, targets, _np_dtype(dtype), ckpt_dir, "parameters", bad)

    param_states = None
    if restore:
        leaves, bad = _open_leaves(ckpt_dir, _prefixed("state/param_states", flat_states))
        leaves = _strip("state/param_states", leaves)
        bad = [(n.removeprefix("state/param_states/"), m, w) for n, m, w in bad]
        if state_target is not None:
            found = {n: (leaf.shape, leaf.dtype) for n, leaf in leaves.items()}
            found.update({n: m for n, m, _ in bad})
            report.check(found, report.expected_meta(state_target), source=ckpt_dir,
                         what="optimizer state (param_states)")
        st = report.flatten(state_target) if state_target is not None else None
        param_states = report.unflatten(
            _read_tree(leaves, st, None, ckpt_dir, "optimizer state (param_states)", bad)
        )
    return make_result(report.unflatten(params), step, param_states, optimizer_state,
                       ckpt_dir, "t5x_legacy")


def _prefixed(prefix: str, flat: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}/{n}": v for n, v in flat.items()}


def _strip(prefix: str, flat: Mapping[str, _Leaf]) -> dict[str, _Leaf]:
    return {n.removeprefix(prefix + "/"): v for n, v in flat.items()}


def _np_dtype(dtype: Any) -> np.dtype | None:
    return None if dtype is None else np.dtype(dtype)


# ---------------------------------------------------------------- writing
def _chunk_shape(shape: tuple[int, ...], itemsize: int) -> list[int]:
    """Halve the largest even dimension until a chunk is at most 64 MiB (t5x's rule)."""
    chunk = list(shape) or [1]
    while int(np.prod(chunk)) * itemsize > _CHUNK_BYTES:
        dims = [d for d in range(len(chunk)) if chunk[d] % 2 == 0]
        if not dims:
            break
        d = max(dims, key=lambda i: chunk[i])
        chunk[d] //= 2
    return chunk if shape else []


def _write_leaf(ckpt_dir: str, name: str, value: Any) -> tuple[dict[str, Any], list]:
    """Create the zarr array and issue this host's writes; returns (stored spec, futures)."""
    dtype = np.dtype(value.dtype)
    shape = tuple(int(d) for d in value.shape)
    shard_shape = value.sharding.shard_shape(shape) if isinstance(value, jax.Array) else shape
    metadata = {
        "compressor": {"id": "gzip"},
        "shape": list(shape),
        "chunks": _chunk_shape(shard_shape, dtype.itemsize),
    }
    relative = array_dir_name(name)
    stored = {"driver": "zarr", "dtype": dtype.name,
              "kvstore": {"driver": "file", "path": relative}, "metadata": metadata}
    spec = {**stored, "kvstore": kvstore_spec(ckpt_dir, relative)}
    store = ts.open(spec, create=True, delete_existing=True).result()
    if isinstance(value, jax.Array):
        futures = [store[s.index].write(np.asarray(s.data))
                   for s in value.addressable_shards if s.replica_id == 0]
    else:
        futures = [store.write(np.asarray(value))]
    return stored, futures


def write_t5x_legacy(
    root: str,
    step: int,
    params: Mapping[str, Any],
    param_states: Mapping[str, Any] | None = None,
    *,
    inline_max_bytes: int = 0,
) -> str:
    """Write `root/checkpoint_<step>/` in the legacy t5x layout; returns that directory.

    Arrays up to `inline_max_bytes` (and scalars) go inline in the msgpack, the rest to zarr.
    Written into a temporary sibling and renamed, so a crash never leaves a half checkpoint
    under the final name. Local (or mounted) directories only; one process.
    """
    if _GCS.match(str(root)):
        raise ValueError(f"{root}: the legacy writer writes local directories only.")
    if jax.process_count() > 1:
        raise NotImplementedError("write_t5x_legacy is single-process; use train.checkpoints.")
    final = checkpoint_dir(str(root), int(step))
    tmp = f"{final}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tree = {"target": params, "state": {"step": np.asarray(step, np.int32)}}
    if param_states is not None:
        tree["state"]["param_states"] = param_states
    written, futures = {}, []
    for name, value in report.flatten(tree).items():
        arr_bytes = int(np.prod(value.shape)) * np.dtype(value.dtype).itemsize
        if not np.shape(value) or arr_bytes <= inline_max_bytes:
            written[name] = np.asarray(value)
        else:
            written[name], fut = _write_leaf(tmp, name, value)
            futures += fut
    for fut in futures:
        fut.result()
    state = {"version": VERSION, "optimizer": report.unflatten(written)}
    with open(os.path.join(tmp, CHECKPOINT_FILE), "wb") as f:
        f.write(serialization.msgpack_serialize(state))
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final
