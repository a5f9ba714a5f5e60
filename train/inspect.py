"""Print a model's parameters, their sharding and per-device memory without allocating them.

    python -m train.inspect --gin_file=gin/models/mt5_xxl.gin --devices 8 --mesh 2,4 \
        --parameter_partitioning 2d [--gin.SCAN_LAYERS=True]

Shapes come from `jax.eval_shape`, so XXL inspects on a laptop. `--devices N` fakes N host CPU
devices (XLA_FLAGS is set before JAX starts), enough to check that a mesh divides every
parameter before a TPU slice is booked. The last line is the parameter count.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def _ints(text: str, count: int | None, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{flag}={text!r}: expected comma-separated ints") from None
    if count is not None and len(values) != count:
        raise ValueError(f"{flag}={text!r}: expected {count} comma-separated ints")
    return values


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    from train.gin_utils import split_gin_flags

    bindings, rest = split_gin_flags(argv)
    parser = argparse.ArgumentParser(prog="python -m train.inspect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gin_file", action="append", required=True,
                        help="gin file (repeatable; later files override earlier ones)")
    parser.add_argument("--gin_bindings", action="append", default=[],
                        help="extra gin binding lines (also --gin.NAME=VALUE)")
    way = parser.add_mutually_exclusive_group()
    way.add_argument("--num_partitions", type=int)
    way.add_argument("--model_parallel_submesh", help="x,y,z,core")
    way.add_argument("--mesh", help="data,model axis sizes")
    parser.add_argument("--devices", type=int, default=1, help="fake host CPU devices")
    parser.add_argument("--parameter_partitioning", choices=("1d", "2d"), default="1d")
    parser.add_argument("--optimizer_state", action=argparse.BooleanOptionalAction,
                        default=True, help="also total the Adafactor state per device")
    args = parser.parse_args(rest)
    if args.devices < 1:
        parser.error(f"--devices={args.devices}: expected >= 1")
    return args, bindings + list(args.gin_bindings)


def _set_fake_devices(count: int) -> None:
    if "jax" in sys.modules:
        return  # already started: run with the devices it has (checked by create_mesh)
    flags = re.sub(rf"{_DEVICE_FLAG}=\S+", "", os.environ.get("XLA_FLAGS", ""))
    os.environ["XLA_FLAGS"] = f"{flags} {_DEVICE_FLAG}={count}".strip()
    os.environ["JAX_PLATFORMS"] = "cpu"


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------

def _gib(n: int) -> str:
    return f"{n / 2**30:,.3f} GiB"


def format_count(n: int) -> str:
    return f"{n / 1e6:,.1f}M ({n:,})"


def inspect_model(config: Any, mesh: Any, rules: Any, *, optimizer_state: bool = True,
                  out: Any = None) -> int:
    """Print the table and totals; returns the parameter count. Raises ValueError listing
    every parameter the mesh does not divide."""
    import math

    from train import network, optimizer, partitioning

    out = sys.stdout if out is None else out
    shapes = partitioning.flatten_paths(network.abstract_params(config))
    axes = partitioning.flatten_paths(network.param_axes(config))
    errors, rows, param_bytes = [], [], 0
    for path, leaf in shapes.items():
        spec = partitioning.logical_to_mesh_axes(axes[path], rules, path)
        try:
            partitioning.check_divisible(path, leaf.shape, axes[path], spec, mesh)
        except ValueError as err:
            errors.append(str(err))
            continue
        nbytes = partitioning.bytes_per_device(leaf.shape, leaf.dtype, spec, mesh)
        param_bytes += nbytes
        rows.append((path, str(tuple(leaf.shape)), str(tuple(axes[path])), str(spec),
                     f"{nbytes:,}"))
    if errors:
        by_problem: dict[str, list[str]] = {}
        for err in errors:  # one line per (logical axis, size, mesh axis)
            by_problem.setdefault(err[err.index("("):], []).append(err)
        shown = [same[0] + (f" (and {len(same) - 1} more like it)" if len(same) > 1 else "")
                 for same in by_problem.values()]
        raise ValueError(f"mesh {dict(mesh.shape)} does not divide {len(errors)} "
                         "parameter(s):\n  " + "\n  ".join(shown))
    header = ("parameter", "shape", "logical axes", "partition spec", "bytes/device")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)
    count = sum(math.prod(leaf.shape) for leaf in shapes.values())
    print(f"\nmesh: {dict(mesh.shape)} ({mesh.devices.size} devices)", file=out)
    print(f"parameters per device: {_gib(param_bytes)}", file=out)
    if optimizer_state:
        tree_shapes = partitioning.unflatten_paths(shapes)
        tree_axes = partitioning.unflatten_paths(axes)
        state_shapes = optimizer.adafactor_state_shapes(tree_shapes, tree_axes)
        shardings = optimizer.optimizer_state_shardings(tree_axes, tree_shapes, mesh, rules)
        import jax

        state_bytes = sum(
            partitioning.bytes_per_device(s.shape, s.dtype, sh.spec, mesh)
            for s, sh in zip(jax.tree.leaves(state_shapes), jax.tree.leaves(shardings)))
        print(f"Adafactor state per device: {_gib(state_bytes)}", file=out)
        print(f"parameters + Adafactor state per device: {_gib(param_bytes + state_bytes)}",
              file=out)
    print(f"Total parameters: {format_count(count)}", file=out)
    return count


def main(argv: Sequence[str] | None = None) -> int:
    args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
    _set_fake_devices(args.devices)
    import jax

    from train import gin_utils, partitioning

    try:
        gin_utils.parse(args.gin_file, bindings)
        gin_utils.finalize()
        config = gin_utils.model_config_from_gin()
        devices = jax.devices()
        if len(devices) < args.devices:
            raise ValueError(f"--devices={args.devices}: JAX already started with "
                             f"{len(devices)} devices")
        devices = devices[:args.devices]
        if args.num_partitions is not None:
            mesh = partitioning.create_mesh(num_partitions=args.num_partitions, devices=devices)
        elif args.model_parallel_submesh is not None:
            mesh = partitioning.create_mesh(model_parallel_submesh=_ints(
                args.model_parallel_submesh, 4, "--model_parallel_submesh"), devices=devices)
        elif args.mesh is not None:
            data, model = _ints(args.mesh, 2, "--mesh")
            mesh = partitioning.create_mesh(data_axis_size=data, model_axis_size=model,
                                            devices=devices)
        else:
            mesh = partitioning.create_mesh(devices=devices)
        rules = partitioning.standard_logical_axis_rules(args.parameter_partitioning)
        inspect_model(config, mesh, rules, optimizer_state=args.optimizer_state)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from xitt_common.quiet import entry_point

    entry_point(libraries=False, own_flag=True)  # first: no library lines unless --verbose
    from train import cli

    cli.run(main, sys.argv[1:], prog="python -m train.inspect")
