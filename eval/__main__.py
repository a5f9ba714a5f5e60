"""Decode or score a task (or every task of a mixture) from a checkpoint.

    python -m eval --gin_file=gin/models/mt5_tiny.gin --checkpoint=MODEL_DIR_OR_checkpoint_N \
        --task=xitt.xnli.de --split=validation --mode=decode --output_dir=DIR \
        [--feature_lengths inputs=1024,targets=128] [--batch_size 32] [--beam_size 1] \
        [--alpha 0.6] [--mixture_or_task_module xitt_tasks] [--max_examples N] \
        [--num_partitions N] [--gin.NAME=VALUE]

Gin binds only the model (`MODEL_CONFIG` of a gin/models/*.gin file). A task writes
`predictions.jsonl` (and `metrics.json` when it has metric functions of the mode) into
`--output_dir`; a mixture writes each of its tasks into `--output_dir/<task>/`, all through one
compiled function. The operative gin config is saved as `--output_dir/config.gin`.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

_DEFAULT_LENGTHS = "inputs=1024,targets=128"


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    from train.gin_utils import split_gin_flags

    bindings, rest = split_gin_flags(argv)
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gin_file", action="append", required=True,
                        help="model gin file (repeatable; later files override earlier ones)")
    parser.add_argument("--gin_bindings", action="append", default=[],
                        help="extra gin binding lines (also --gin.NAME=VALUE)")
    parser.add_argument("--checkpoint", required=True,
                        help="model directory (its latest checkpoint) or a checkpoint_<step> dir")
    parser.add_argument("--task", required=True, help="registered seqio task or mixture name")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--mode", choices=("decode", "score"), default="decode")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--feature_lengths", default=_DEFAULT_LENGTHS,
                        help=f"inputs=N,targets=M (default {_DEFAULT_LENGTHS}); targets is "
                             "also the decode length")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--beam_size", type=int, default=1, help="1 = greedy")
    parser.add_argument("--alpha", type=float, default=0.6, help="brevity penalty exponent")
    parser.add_argument("--mixture_or_task_module", action="append", default=None,
                        help="module(s) whose import registers the task (default xitt_tasks)")
    parser.add_argument("--max_examples", type=int, default=None)
    parser.add_argument("--num_partitions", type=int, default=None,
                        help="model-parallel ways over all devices (default: one device)")
    args = parser.parse_args(list(argv))
    return args, bindings + list(args.gin_bindings)


def _task_names(name: str) -> list[str]:
    import seqio

    try:
        provider = seqio.get_mixture_or_task(name)
    except ValueError:
        raise ValueError(f"--task={name!r} is not a registered seqio task or mixture; is the "
                         "module that registers it given by --mixture_or_task_module?") from None
    if isinstance(provider, seqio.Mixture):
        return [t.name for t in provider.tasks]
    return [name]


def _load(args: argparse.Namespace, config: Any) -> tuple[Any, Any, Any]:
    """(model, params, mesh or None); params restored in the unscanned on-disk layout."""
    import jax

    from train import checkpoints, network, partitioning, scan

    model = network.Transformer(config)
    disk_config = dataclasses.replace(config, scan_layers=False)
    abstract = network.abstract_params(disk_config)
    mesh = shardings = None
    if args.num_partitions is not None:
        mesh = partitioning.create_mesh(num_partitions=args.num_partitions)
        rules = partitioning.standard_logical_axis_rules()
        shardings = partitioning.logical_to_sharding(network.param_axes(disk_config), abstract,
                                                     mesh, rules)
        if args.batch_size % mesh.shape["data"]:
            raise ValueError(f"--batch_size={args.batch_size} is not divisible by the mesh's "
                             f"data axis ({mesh.shape['data']})")
    else:
        shardings = jax.tree.map(
            lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), abstract)
    params = checkpoints.load_params(args.checkpoint, abstract, shardings)
    if config.scan_layers:
        params = scan.scan_params(params, config)
    return model, params, mesh


def _parse_gin(gin_files: Sequence[str], bindings: Sequence[str],
               modules: Sequence[str]) -> tuple[Any, list[str]]:
    """(model config, task modules imported); a second call in one process starts afresh."""
    from train import gin_utils

    gin_utils.parse(gin_files, bindings)
    modules = gin_utils.task_modules(modules)
    gin_utils.import_modules(modules)
    gin_utils.finalize()
    return gin_utils.model_config_from_gin(), modules


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Returns {task name: metrics} (metrics may be empty)."""
    import contextlib

    import flax.linen as nn
    import jax
    import tensorflow as tf
    from etils import epath

    from eval import predict
    from train import gin_utils, partitioning

    tf.config.set_visible_devices([], "GPU")
    args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
    settings = predict.EvalSettings(
        feature_lengths=predict.parse_feature_lengths(args.feature_lengths), split=args.split,
        mode=args.mode, batch_size=args.batch_size, beam_size=args.beam_size, alpha=args.alpha,
        max_examples=args.max_examples)
    config, modules = _parse_gin(args.gin_file, bindings,
                                 args.mixture_or_task_module or ["xitt_tasks"])
    tasks = _task_names(args.task)
    model, params, mesh = _load(args, config)

    out = epath.Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    gin_utils.write_config(str(out), modules)
    batch_fn = predict.make_batch_fn(model, settings)
    info = {"checkpoint": str(args.checkpoint)}
    results = {}
    with contextlib.ExitStack() as stack:
        if mesh is not None:
            stack.enter_context(jax.set_mesh(mesh))
            stack.enter_context(nn.logical_axis_rules(
                partitioning.standard_logical_axis_rules()))
        for task in tasks:
            task_dir = out if len(tasks) == 1 and task == args.task else out / task
            results[task] = predict.evaluate_task(task, params, batch_fn, settings,
                                                  str(task_dir), info)
            print(f"{task}: {results[task] or 'predictions written'} -> {task_dir}")
    return results


if __name__ == "__main__":
    main()
