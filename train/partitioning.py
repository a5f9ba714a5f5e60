"""Device mesh and logical-axis sharding, with t5x's mesh vocabulary and axis rules.

The mesh is always `('data', 'model')`. t5x users describe it one of three ways (model-parallel
ways, a physical TPU sub-mesh per model replica, or both axis sizes); every way ends in the same
2-D mesh here. Logical axes (mt5.md) map to mesh axes through an ordered rule list resolved
exactly like flax's, so the same rules also drive `nn.logical_axis_rules` for the network's
activation constraints: earlier rules win a mesh axis, so `embed -> data` (2-D parameters)
gives way to `batch -> data` in activations.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from train import tree_paths

MESH_AXES = ("data", "model")

MeshAxis = str | tuple[str, ...] | None
Rules = tuple[tuple[str, MeshAxis], ...]


# ----------------------------------------------------------------------------------------------
# Mesh
# ----------------------------------------------------------------------------------------------

def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a positive int")
    return int(value)


def tile_by_submesh(physical: np.ndarray, submesh: Sequence[int]) -> np.ndarray:
    """[X, Y, Z, C] physical device grid -> [replicas, prod(submesh)] with one tile per row.

    Each row holds the devices of one contiguous x*y*z*core block, so the model-parallel
    collectives of a replica stay inside its tile (t5x's `model_parallel_submesh`).
    """
    if physical.ndim != 4 or len(submesh) != 4:
        raise ValueError(f"model_parallel_submesh={tuple(submesh)} and a physical grid of shape "
                         f"{physical.shape}: both need 4 dims (x, y, z, core)")
    for axis, (have, tile) in enumerate(zip(physical.shape, submesh)):
        if have % tile:
            raise ValueError(
                f"model_parallel_submesh={tuple(submesh)}: dim {axis} ({'xyzc'[axis]}={tile}) "
                f"does not divide the physical device grid {physical.shape}")
    blocks = [n // t for n, t in zip(physical.shape, submesh)]
    split = physical.reshape(blocks[0], submesh[0], blocks[1], submesh[1],
                             blocks[2], submesh[2], blocks[3], submesh[3])
    tiled = split.transpose(0, 2, 4, 6, 1, 3, 5, 7)
    return tiled.reshape(math.prod(blocks), math.prod(submesh))


def _physical_grid(devices: Sequence[Any]) -> np.ndarray:
    """TPU devices placed on their [x, y, z, core] coordinates."""
    coords = [(*d.coords, getattr(d, "core_on_chip", 0)) for d in devices]
    dims = [max(c[i] for c in coords) + 1 for i in range(4)]
    grid = np.empty(dims, dtype=object)
    for device, c in zip(devices, coords):
        grid[c] = device
    if any(x is None for x in grid.flat) or len(devices) != math.prod(dims):
        raise ValueError(f"the {len(devices)} TPU devices do not fill a full "
                         f"x*y*z*core grid {tuple(dims)}; pass explicit axis sizes instead")
    return grid


def create_mesh(*, num_partitions: int | None = None,
                model_parallel_submesh: Sequence[int] | None = None,
                data_axis_size: int | None = None, model_axis_size: int | None = None,
                devices: Sequence[Any] | None = None) -> Mesh:
    """A `('data', 'model')` mesh over `devices` (default all), described one way only.

    - `num_partitions=N`: N-way model parallelism, the rest data parallel.
    - `model_parallel_submesh=(x, y, z, core)`: model axis = x*y*z*core; on TPU every row of
      the mesh is one physical tile, elsewhere a plain reshape.
    - `data_axis_size` / `model_axis_size`: explicit sizes (one may be inferred).
    - nothing: every device on `data`.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    ways = [name for name, given in (
        ("num_partitions", num_partitions is not None),
        ("model_parallel_submesh", model_parallel_submesh is not None),
        ("data_axis_size/model_axis_size",
         data_axis_size is not None or model_axis_size is not None)) if given]
    if len(ways) > 1:
        raise ValueError(f"mesh given several ways ({', '.join(ways)}): pass exactly one")

    submesh = None
    if num_partitions is not None:
        model = _check_positive("num_partitions", num_partitions)
        if n % model:
            raise ValueError(f"num_partitions={model} does not divide the {n} devices")
        data = n // model
    elif model_parallel_submesh is not None:
        submesh = tuple(model_parallel_submesh)
        if len(submesh) != 4:
            raise ValueError(f"model_parallel_submesh={submesh}: expected 4 ints (x, y, z, core)")
        for axis, value in zip("xyzc", submesh):
            _check_positive(f"model_parallel_submesh {axis}", value)
        model = math.prod(submesh)
        if n % model:
            raise ValueError(f"model_parallel_submesh={submesh} ({model} devices per replica) "
                             f"does not divide the {n} devices")
        data = n // model
    elif data_axis_size is not None or model_axis_size is not None:
        if data_axis_size is not None:
            _check_positive("data_axis_size", data_axis_size)
        if model_axis_size is not None:
            _check_positive("model_axis_size", model_axis_size)
        known = data_axis_size or model_axis_size
        if data_axis_size is None or model_axis_size is None:
            if n % known:
                raise ValueError(f"axis size {known} does not divide the {n} devices")
        data = data_axis_size if data_axis_size is not None else n // known
        model = model_axis_size if model_axis_size is not None else n // known
        if data * model != n:
            raise ValueError(f"mesh {data}x{model} needs {data * model} devices, have {n}")
    else:
        data, model = n, 1

    on_tpu = getattr(devices[0], "platform", "") == "tpu"
    if on_tpu and submesh is not None:
        grid = tile_by_submesh(_physical_grid(devices), submesh)
    elif on_tpu:
        # Let JAX order TPU devices so each model-parallel group sits on a physical ring.
        grid = mesh_utils.create_device_mesh((data, model), devices,
                                             allow_split_physical_axes=True)
    else:
        grid = np.array(devices, dtype=object).reshape(data, model)
    return Mesh(grid, MESH_AXES)


# ----------------------------------------------------------------------------------------------
# Logical axis rules
# ----------------------------------------------------------------------------------------------

def standard_logical_axis_rules(parameter_partitioning: str = "1d",
                                activation_partitioning_dims: int = 1) -> Rules:
    """t5x's standard rules (mt5.md table); '2d' additionally shards `embed` over `data`.

    `activation_partitioning_dims=2` also shards the activation `embed` over `model` (t5x).
    Rules are ordered: a logical axis may list several mesh axes and takes the first free one.
    """
    if parameter_partitioning not in ("1d", "2d"):
        raise ValueError(f"parameter_partitioning={parameter_partitioning!r}: "
                         "expected '1d' or '2d'")
    if activation_partitioning_dims not in (1, 2):
        raise ValueError(f"activation_partitioning_dims={activation_partitioning_dims!r}: "
                         "expected 1 or 2")
    rules: list[tuple[str, MeshAxis]] = [
        ("batch", "data"),
        ("vocab", "model"),
        ("mlp", "model"),
        ("heads", "model"),
        ("joined_kv", "model"),
        ("kv", None),
    ]
    if activation_partitioning_dims == 2:
        rules.append(("embed", "model"))
    rules.append(("embed", "data" if parameter_partitioning == "2d" else None))
    rules += [(name, None) for name in (
        "relpos_buckets", "abspos_buckets", "length", "layers", "stack", "mlp_activations")]
    return tuple(rules)


def logical_to_mesh_axes(axes: Sequence[str | None], rules: Rules,
                         path: str = "<array>") -> PartitionSpec:
    """Logical axis names -> PartitionSpec, resolved like flax (`nn.logical_to_mesh_axes`).

    Rules are visited in order; a rule assigns its mesh axis to the dims with its logical name
    while that mesh axis is still free in this array, so earlier rules win (`batch -> data`
    before `embed -> data`). A `None` rule or no free rule leaves the dim replicated.
    """
    known = {logical for logical, _ in rules}
    for dim, name in enumerate(axes):
        if name is not None and name not in known:
            raise ValueError(f"{path} dim {dim}: logical axis {name!r} has no rule "
                             f"(known: {sorted(known)})")
    spec: list[MeshAxis] = [None] * len(axes)
    done = [name is None for name in axes]
    used: set[str] = set()
    for logical, mesh_axis in rules:
        for dim, name in enumerate(axes):
            if done[dim] or name != logical:
                continue
            if mesh_axis is None:
                done[dim] = True
                continue
            names = (mesh_axis,) if isinstance(mesh_axis, str) else tuple(mesh_axis)
            if not used.intersection(names):
                spec[dim], done[dim] = mesh_axis, True
                used.update(names)
    return PartitionSpec(*spec)


def _mesh_axis_size(mesh: Mesh, mesh_axis: MeshAxis) -> int:
    names = (mesh_axis,) if isinstance(mesh_axis, str) else tuple(mesh_axis or ())
    return math.prod(mesh.shape[name] for name in names)


def check_divisible(path: str, shape: Sequence[int], axes: Sequence[str | None],
                    spec: PartitionSpec, mesh: Mesh) -> None:
    """Raise naming the parameter, dim, size, logical axis and mesh axis when a shard is uneven."""
    for dim, (size, name, mesh_axis) in enumerate(zip(shape, axes, spec)):
        if mesh_axis is None:
            continue
        ways = _mesh_axis_size(mesh, mesh_axis)
        if size % ways:
            shown = mesh_axis if isinstance(mesh_axis, str) else "x".join(mesh_axis)
            raise ValueError(f"{path} dim {dim} ({name}={size}) is not divisible by mesh axis "
                             f"'{shown}' of size {ways}")


# Nested dict <-> {'a/b/c': leaf} (t5x path style; tuples of axes are leaves).
flatten_paths = tree_paths.flatten
unflatten_paths = tree_paths.unflatten


def logical_to_sharding(axes_tree: Mapping[str, Any], shapes_tree: Mapping[str, Any],
                        mesh: Mesh, rules: Rules) -> dict[str, Any]:
    """Nested dict of logical-axis tuples + matching shapes -> nested dict of NamedSharding.

    `shapes_tree` leaves may be arrays, `jax.ShapeDtypeStruct`s or shape tuples.
    """
    axes_flat = tree_paths.flatten(axes_tree)
    shapes_flat = tree_paths.flatten(shapes_tree)
    tree_paths.require_same_paths(axes_flat, shapes_flat, "axes and shapes trees differ",
                                  "axes", "shape")
    out = {}
    for path, axes in axes_flat.items():
        leaf = shapes_flat[path]
        shape = tuple(leaf.shape) if hasattr(leaf, "shape") else tuple(leaf)
        axes = tuple(axes)
        if len(axes) != len(shape):
            raise ValueError(f"{path}: logical axes {axes} do not match shape {shape}")
        spec = logical_to_mesh_axes(axes, rules, path)
        check_divisible(path, shape, axes, spec, mesh)
        out[path] = NamedSharding(mesh, spec)
    return tree_paths.unflatten(out)


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding for `[batch, ...]` arrays: batch over `data`, everything else replicated."""
    return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def bytes_per_device(shape: Sequence[int], dtype: Any, spec: PartitionSpec, mesh: Mesh) -> int:
    """Bytes one device holds of an array sharded by `spec` (even shards assumed)."""
    ways = math.prod(_mesh_axis_size(mesh, a) for a in spec if a is not None)
    return math.prod(shape) * np.dtype(dtype).itemsize // ways
