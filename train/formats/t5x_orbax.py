"""t5x checkpoints written with Orbax (newer t5x, and this project's trainer): the same
`{'target': params, 'state': {'step', 'param_states'}}` tree as the legacy format.

The tree is compared with the expected one from Orbax's metadata before any array is read;
arrays are restored straight into the target shardings (each host reads its shards), and the
Adafactor statistics are skipped entirely when the optimizer state is reset.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from train.formats import report
from train.formats.result import LoadedCheckpoint, check_choice, make_result, target_leaf
from xitt_common import fs

_MARKERS = ("_METADATA", "manifest.ocdbt", "_sharding")


def _is_pytree_dir(path: str) -> bool:
    return any(fs.path(path).joinpath(m).exists() for m in _MARKERS)


def find_pytree_dir(path: str, item: str | None = None) -> str:
    """The Orbax PyTree directory: `path` itself, `path/item`, or its only item subdirectory
    (a CheckpointManager step directory `checkpoint_<step>/<item>/`). Local or gs://."""
    path = os.fspath(path).rstrip("/")
    if not fs.path(path).is_dir():
        raise FileNotFoundError(f"{path}: no such Orbax checkpoint directory.")
    if item is not None:
        candidate = fs.join(path, item)
        if not _is_pytree_dir(candidate):
            raise FileNotFoundError(f"{candidate}: no Orbax PyTree checkpoint (item={item!r}).")
        return candidate
    if _is_pytree_dir(path):
        return path
    items = [d for d in fs.listdir(path) if _is_pytree_dir(fs.join(path, d))]
    if len(items) == 1:
        return fs.join(path, items[0])
    raise ValueError(
        f"{path}: expected one Orbax PyTree item (a directory with {_MARKERS[0]}), found "
        f"{items or 'none'}; pass item=<name> to choose."
    )


def _metadata_tree(pytree_dir: str) -> dict[str, Any]:
    meta = ocp.PyTreeCheckpointer().metadata(pytree_dir)
    meta = getattr(meta, "item_metadata", meta)
    tree = getattr(meta, "tree", meta)
    return _to_dict(tree)


def _to_dict(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {str(k): _to_dict(v) for k, v in tree.items()}
    return tree


def _restore_args(leaf: Any, dtype: np.dtype | None, sharding: Any) -> ocp.RestoreArgs:
    if sharding is not None:
        return ocp.ArrayRestoreArgs(sharding=sharding, global_shape=tuple(leaf.shape),
                                    dtype=dtype)
    return ocp.RestoreArgs(restore_type=np.ndarray, dtype=dtype)


def _plan(
    meta: Mapping[str, Any], targets: Mapping[str, Any] | None, dtype: np.dtype | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flat (abstract item, restore args) for one subtree."""
    items, args = {}, {}
    for name, leaf in meta.items():
        if targets is not None:
            shape, want, sharding = target_leaf(targets[name])
        else:
            shape, stored = report.meta_of(leaf)
            want = dtype if dtype is not None and stored.kind in "fV" else stored
            sharding = None
        items[name] = jax.ShapeDtypeStruct(shape, want, sharding=sharding)
        args[name] = _restore_args(items[name], want, sharding)
    return items, args


def read_t5x_orbax(
    path: str,
    target: Mapping[str, Any] | None = None,
    *,
    optimizer_state: str = "restore",
    state_target: Mapping[str, Any] | None = None,
    dtype: Any = None,
    item: str | None = None,
) -> LoadedCheckpoint:
    """Load an Orbax t5x checkpoint (`checkpoint_<step>/` or its item directory).

    Arguments as for `t5x_legacy.read_t5x_legacy`; `item` names the CheckpointManager item
    when a step directory holds several.
    """
    check_choice(optimizer_state)
    pytree_dir = find_pytree_dir(path, item)
    tree = _metadata_tree(pytree_dir)
    prefix = ()
    if "optimizer" in tree and "target" not in tree:  # the legacy wrapping, kept by some tools
        tree, prefix = tree["optimizer"], ("optimizer",)
    if "target" not in tree:
        raise ValueError(f"{pytree_dir}: no 'target' (the parameters) in the tree; top-level "
                         f"keys are {sorted(tree)}.")
    state = tree.get("state") or {}
    flat_params = report.flatten(tree["target"])
    flat_states = report.flatten(state.get("param_states") or {})
    flat_states = {n: v for n, v in flat_states.items()
                   if not (n.endswith("/m") and int(np.prod(v.shape)) <= 1)}
    restore = optimizer_state == "restore"
    if restore and not flat_states:
        raise ValueError(f"{pytree_dir}: optimizer_state='restore' but the checkpoint holds no "
                         "Adafactor param_states; use optimizer_state='reset'.")

    found = {n: report.meta_of(v) for n, v in flat_params.items()}
    if target is not None:
        report.check(found, report.expected_meta(target), source=pytree_dir)
    want = None if dtype is None else np.dtype(dtype)
    targets = report.flatten(target) if target is not None else None
    items, args = _plan(flat_params, targets, want)
    items, args = {f"target/{n}": v for n, v in items.items()}, {
        f"target/{n}": v for n, v in args.items()}
    if restore:
        found = {n: report.meta_of(v) for n, v in flat_states.items()}
        if state_target is not None:
            report.check(found, report.expected_meta(state_target), source=pytree_dir,
                         what="optimizer state (param_states)")
        st = report.flatten(state_target) if state_target is not None else None
        s_items, s_args = _plan(flat_states, st, None)
        items.update({f"state/param_states/{n}": v for n, v in s_items.items()})
        args.update({f"state/param_states/{n}": v for n, v in s_args.items()})
    if "step" in state:
        items["state/step"] = jax.ShapeDtypeStruct((), np.int64)
        args["state/step"] = ocp.RestoreArgs(restore_type=np.ndarray)

    def wrap(flat):
        out = report.unflatten(flat)
        for key in reversed(prefix):
            out = {key: out}
        return out

    try:
        restored = ocp.PyTreeCheckpointer().restore(
            pytree_dir,
            args=ocp.args.PyTreeRestore(item=wrap(items), restore_args=wrap(args),
                                        partial_restore=True),
        )
    except Exception as e:  # noqa: BLE001  (orbax/tensorstore raise many types)
        raise ValueError(f"{pytree_dir}: cannot restore the Orbax checkpoint ({e}); it may be "
                         "truncated or written by an incompatible Orbax version.") from e
    for key in prefix:
        restored = restored[key]
    rstate = restored.get("state") or {}
    step = int(np.asarray(rstate.get("step", 0)))
    return make_result(restored["target"], step, rstate.get("param_states"), optimizer_state,
                       pytree_dir, "t5x_orbax")
