"""Convert trees between the released per-layer layout (`layers_{i}`) and the scanned layout.

Works on any tree that mirrors the parameter tree below `encoder` / `decoder`, where a
parameter's leaf may itself be a dict (e.g. Adafactor slots {v_row, v_col, v}). Leaves may be
jax or numpy arrays, `jax.ShapeDtypeStruct`s, or logical-axes tuples of str.

- Arrays are stacked on a new leading axis (scan) or split along it (unscan).
- Axes tuples get 'layers' prepended (scan) or removed (unscan).
- Shape-(1,) leaves are optimizer placeholders (Adafactor's dummy for an unfactored or
  unused slot), shared by all layers: scan keeps layer 0's one (1,) leaf; unscan gives each
  layer that same (1,) leaf. Hence no real parameter below a layer may have shape (1,) or ()
  with a one-layer stack; the mT5 tree has none.
- None leaves stay None.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from train.config import MT5Config

_STACKS = (("encoder", "num_encoder_layers"), ("decoder", "num_decoder_layers"))
ENCODER_DECODER = ("encoder", "decoder")
ENCODER_ONLY = ("encoder",)  # a dual encoder's tree (train.dual_encoder) has no decoder


def _stacks(stacks: tuple[str, ...]) -> list[tuple[str, str]]:
    known = dict(_STACKS)
    unknown = [s for s in stacks if s not in known]
    if unknown or not stacks:
        raise ValueError(f"stacks={stacks!r}: expected a non-empty subset of {tuple(known)}")
    return [(s, known[s]) for s in stacks]


def _is_axes(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(a, str) for a in x)


def _is_dummy(x: Any) -> bool:
    return hasattr(x, "shape") and tuple(x.shape) == (1,)


def _stack(items: list[Any], path: str) -> Any:
    first = items[0]
    if isinstance(first, Mapping):
        keys = set(first)
        for i, item in enumerate(items):
            if not isinstance(item, Mapping) or set(item) != keys:
                raise ValueError(f"scan_params: {path}: layers_{i} has keys "
                                 f"{sorted(item) if isinstance(item, Mapping) else item!r}, "
                                 f"layers_0 has {sorted(keys)}")
        return {k: _stack([item[k] for item in items], f"{path}/{k}") for k in first}
    if first is None:
        return None
    if _is_axes(first):
        if first and first[0] == "layers":
            raise ValueError(f"scan_params: {path}: axes {first} already have 'layers'")
        return ("layers",) + first
    if _is_dummy(first):
        return first
    shapes = {tuple(x.shape) for x in items}
    if len(shapes) != 1:
        raise ValueError(f"scan_params: {path}: layers disagree on shape: {sorted(shapes)}")
    if isinstance(first, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct((len(items),) + tuple(first.shape), first.dtype)
    if isinstance(first, np.ndarray):
        return np.stack(items)
    return jnp.stack(items)


def _split(tree: Any, n: int, path: str) -> list[Any]:
    if isinstance(tree, Mapping):
        parts = {k: _split(v, n, f"{path}/{k}") for k, v in tree.items()}
        return [{k: v[i] for k, v in parts.items()} for i in range(n)]
    if tree is None:
        return [None] * n
    if _is_axes(tree):
        if not tree or tree[0] != "layers":
            raise ValueError(f"unscan_params: {path}: expected axes starting with 'layers', "
                             f"got {tree}")
        return [tree[1:]] * n
    if _is_dummy(tree):
        return [tree] * n
    if not tree.shape or tree.shape[0] != n:
        raise ValueError(f"unscan_params: {path}: expected a leading layer axis of {n}, "
                         f"got shape {tuple(tree.shape)}")
    if isinstance(tree, jax.ShapeDtypeStruct):
        return [jax.ShapeDtypeStruct(tuple(tree.shape[1:]), tree.dtype)] * n
    return [tree[i] for i in range(n)]


def _stack_subtree(tree: Mapping, stack: str, config: MT5Config, field: str) -> dict:
    if stack not in tree:
        raise ValueError(f"scan_params: expected a '{stack}' subtree, got keys {sorted(tree)}")
    n = getattr(config, field)
    sub = dict(tree[stack])
    names = [f"layers_{i}" for i in range(n)]
    missing = [k for k in names if k not in sub]
    extra = [k for k in sub if k.startswith("layers") and k not in names]
    if missing or extra:
        raise ValueError(f"scan_params: {stack}: config.{field}={n} expects {names[0]}.."
                         f"{names[-1]}; missing {missing}, unexpected {extra}")
    sub["layers"] = _stack([sub.pop(k) for k in names], f"{stack}/layers")
    return sub


def scan_params(tree: Mapping, config: MT5Config,
                stacks: tuple[str, ...] = ENCODER_DECODER) -> dict:
    """Per-layer `layers_{i}` subtrees -> one stacked `layers` subtree, in each of `stacks`."""
    out = dict(tree)
    for stack, field in _stacks(stacks):
        out[stack] = _stack_subtree(tree, stack, config, field)
    return out


def unscan_params(tree: Mapping, config: MT5Config,
                  stacks: tuple[str, ...] = ENCODER_DECODER) -> dict:
    """Stacked `layers` subtree -> `layers_{i}` subtrees (the released checkpoint layout)."""
    out = dict(tree)
    for stack, field in _stacks(stacks):
        if stack not in tree or "layers" not in tree[stack]:
            raise ValueError(f"unscan_params: expected '{stack}/layers', got keys "
                             f"{sorted(tree.get(stack, tree))}")
        n = getattr(config, field)
        sub = dict(tree[stack])
        for i, layer in enumerate(_split(sub.pop("layers"), n, f"{stack}/layers")):
            sub[f"layers_{i}"] = layer
        out[stack] = sub
    return out
