"""Nested parameter dicts <-> flat {'a/b/c': leaf} maps, the t5x path style.

Shared by partitioning, the optimizer and the checkpoint formats, which all address
parameters by their t5x path.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

SEP = "/"


def flatten(
    tree: Mapping[str, Any],
    prefix: str = "",
    is_leaf: Callable[[Any], bool] | None = None,
) -> dict[str, Any]:
    """Nested dicts -> {'a/b/c': leaf}; empty dicts vanish; `is_leaf` stops at some dicts."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{SEP}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and not (is_leaf and is_leaf(value)):
            flat.update(flatten(value, name, is_leaf))
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split(SEP)
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def require_same_paths(a: Mapping[str, Any], b: Mapping[str, Any], what: str,
                       a_name: str, b_name: str) -> None:
    """Two flat trees must name the same parameters; say which are missing on each side."""
    if set(a) != set(b):
        no_a = sorted(set(b) - set(a))[:5]
        no_b = sorted(set(a) - set(b))[:5]
        raise ValueError(f"{what}: no {a_name} for {no_a}, no {b_name} for {no_b}")
