"""Decode, score or retrieve with a checkpoint: a seqio task or mixture, or a whole XTREME-R
target (every language, leaderboard files included).

    python -m eval --gin_file=gin/models/mt5_tiny.gin --checkpoint=MODEL_DIR_OR_CHECKPOINT \
        (--task=xitt.xnli.de | --target=xnli) --output_dir=DIR [--split=validation] \
        [--mode=decode|score] [--feature_lengths inputs=1024,targets=128] [--batch_size 32] \
        [--beam_size 1] [--alpha 0.6] [--num_partitions N | --model_parallel_submesh x,y,z,c] \
        [--parameter_partitioning 1d|2d] [--retrieval_layer L] [--retrieval_pooling mean|first]
        [--mixture_or_task_module xitt_tasks] [--seqio_additional_cache_dirs DIR]
        [--max_examples N] [--gin.NAME=VALUE] [--verbose]

Gin binds only the model (`MODEL_CONFIG` of a gin/models/*.gin file, or a `MODEL` macro such
as a dual encoder). The checkpoint may be a model directory (its latest checkpoint), one of our
`checkpoint_<step>` directories, or a released t5x / Hugging Face checkpoint.

Outputs go to `--output_dir/checkpoint_<step>/`, written completely or not at all: a task
writes `predictions.jsonl` (and `metrics.json`) there, a mixture one sub-directory per task; a
target writes `<task>/...` per language, the XTREME-R submission layout under `predictions/`
and `metrics.json` with per-language metrics and the task score. The mesh is built by the
training code (`train.partitioning.create_mesh`) over every process's devices; with several
processes each decodes its own shard and every process receives every row; process 0 writes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
from collections.abc import Iterator, Sequence
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
                        help="model dir, checkpoint_<step> dir, or a released t5x/HF checkpoint")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--task", help="registered seqio task or mixture name")
    what.add_argument("--target", help="an XTREME-R target: every language, leaderboard files")
    parser.add_argument("--split", default=None,
                        help="default: validation for --task, the target's scored split else")
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
    parser.add_argument("--seqio_additional_cache_dirs", action="append", default=[],
                        help="a directory of seqio caches (cache_tasks_main's output), searched "
                             "after seqio's own; repeatable or comma-separated")
    parser.add_argument("--max_examples", type=int, default=None)
    parser.add_argument("--num_partitions", type=int, default=None,
                        help="model-parallel ways (default: data parallel over the devices "
                             "that divide the batch)")
    parser.add_argument("--model_parallel_submesh", default=None,
                        help="x,y,z,core: TPU model-parallel tile (instead of num_partitions)")
    parser.add_argument("--parameter_partitioning", choices=("1d", "2d"), default="1d")
    parser.add_argument("--activation_partitioning_dims", type=int, choices=(1, 2), default=1)
    parser.add_argument("--retrieval_layer", type=int, default=None,
                        help="encoder layer of retrieval embeddings (default: the last)")
    parser.add_argument("--retrieval_pooling", choices=("mean", "first"), default="mean")
    args = parser.parse_args(list(rest))
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


def make_mesh(args: argparse.Namespace) -> Any:
    """The training code's mesh. Without a model-parallel setting: data parallel over the
    largest device count that divides the batch (every process keeps its share)."""
    import jax

    from train import partitioning

    if args.model_parallel_submesh:
        submesh = tuple(int(v) for v in args.model_parallel_submesh.split(","))
        mesh = partitioning.create_mesh(model_parallel_submesh=submesh)
    elif args.num_partitions is not None:
        mesh = partitioning.create_mesh(num_partitions=args.num_partitions)
    else:
        devices = jax.devices()
        if jax.process_count() == 1:
            devices = devices[:math.gcd(args.batch_size, len(devices))]
        mesh = partitioning.create_mesh(devices=devices)
    if args.batch_size % mesh.shape["data"]:
        raise ValueError(f"--batch_size={args.batch_size} is not divisible by the mesh's data "
                         f"axis ({mesh.shape['data']}, mesh {dict(mesh.shape)})")
    return mesh


def load_params(checkpoint: str, model: Any, mesh: Any, rules: Any) -> tuple[Any, Any, int]:
    """(params in the model's in-memory layout, their shardings, step). Our checkpoints are
    read by `train.checkpoints`; released t5x / Hugging Face ones by `train.formats`."""
    import jax

    from train import checkpoints, formats, steps

    disk = model.unscanned()
    disk_shardings = steps.param_shardings(disk, mesh, rules)
    path = str(checkpoints.resolve(checkpoint)) if _is_ours(checkpoint) else checkpoint
    if _is_ours(checkpoint):
        params = checkpoints.load_params(path, disk.abstract_params(), disk_shardings)
        step = _step_of(path)
    else:
        source = model.pretrained_model()
        abstract = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            source.abstract_params(), steps.param_shardings(source, mesh, rules))
        loaded = formats.load_checkpoint(checkpoint, abstract, optimizer_state="reset")
        params, step = model.from_pretrained(loaded.params, jax.random.key(0)), loaded.step
    return model.scan(params), steps.param_shardings(model, mesh, rules), step


def _is_ours(checkpoint: str) -> bool:
    """A model directory of our trainer, or one of its `checkpoint_<step>` directories (a
    missing path too, so that `train.checkpoints.resolve` names it); else a released one."""
    from etils import epath

    from train import checkpoints

    p = epath.Path(checkpoint)
    if not p.exists() or checkpoints.latest_step(checkpoint) is not None:
        return True
    return checkpoints.is_committed(p)


def _step_of(path: str) -> int:
    from eval import output_dir

    return output_dir.checkpoint_step(path)


def _parse_gin(gin_files: Sequence[str], bindings: Sequence[str],
               modules: Sequence[str]) -> tuple[Any, list[str]]:
    """(model, task modules imported); a second call in one process starts afresh."""
    from train import gin_utils

    gin_utils.parse(gin_files, bindings)
    modules = gin_utils.task_modules(modules)
    gin_utils.import_modules(modules)
    gin_utils.finalize()
    return gin_utils.model_from_gin(), modules


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Returns {task name: metrics} (a target: {language task: metrics})."""
    import jax
    import tensorflow as tf

    from eval import output_dir as atomic
    from eval import predict
    from eval import targets as eval_targets
    from train import gin_utils, steps
    from train.formats import vocabulary

    tf.config.set_visible_devices([], "GPU")
    args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
    gin_utils.add_seqio_cache_dirs(args.seqio_additional_cache_dirs)
    lengths = predict.parse_feature_lengths(args.feature_lengths)
    model, modules = _parse_gin(args.gin_file, bindings,
                                args.mixture_or_task_module or ["xitt_tasks"])
    spec = None if args.task else eval_targets.xtreme_r.get_task(args.target)  # resolved once
    split = args.split or ("validation" if args.task else eval_targets.default_split(spec))
    tasks = _task_names(args.task) if args.task else []
    checked = tasks or [f"xitt.{spec.name}.{eval_targets.target_languages(spec.name)[0]}"]
    for name in dict.fromkeys(checked):  # the model's rows must hold every token id
        vocabulary.check_task_vocabularies(name, model.config.vocab_size)
    mesh = make_mesh(args)
    rules = steps.rules_for(args.parameter_partitioning, args.activation_partitioning_dims)
    params, shardings, step = load_params(args.checkpoint, model, mesh, rules)
    info = {"checkpoint": str(args.checkpoint), "step": step}
    results: dict[str, dict[str, Any]] = {}
    final = atomic.checkpoint_output_dir(args.output_dir, step)
    writer = jax.process_index() == 0
    # Only process 0 touches the output directory (the others would race it: remove its
    # temporary directory, or rename their empty one over its results).
    with (atomic.atomic_output_dir(final) if writer else _scratch_dir()) as out:
        if writer:
            gin_utils.write_config(str(out), modules)
        if args.target:
            settings = eval_targets.TargetSettings(
                feature_lengths=lengths, batch_size=args.batch_size, beam_size=args.beam_size,
                alpha=args.alpha, max_examples=args.max_examples,
                retrieval_layer=args.retrieval_layer, retrieval_pooling=args.retrieval_pooling)
            result = eval_targets.evaluate_target(
                model, params, spec, settings, split=split, mesh=mesh, rules=rules,
                params_sharding=shardings, output_dir=str(out) if writer else None,
                leaderboard_dir=str(out / "predictions") if writer else None, info=info)
            results = {r.task: r.metrics for r in result.languages.values()}
            if writer:
                predict.atomic_write_text(out / predict.METRICS_FILE, json.dumps(
                    {**result.info, "task_score": result.task_score,
                     "metrics": result.per_language_metrics()}, indent=1) + "\n")
            for lang, r in result.languages.items():
                print(f"{args.target} {lang}: {_short(r.metrics)} (n={r.num_examples})")
            print(f"{args.target} task score: {result.task_score}")
        else:
            settings = predict.EvalSettings(
                feature_lengths=lengths, split=split, mode=args.mode,
                batch_size=args.batch_size, beam_size=args.beam_size, alpha=args.alpha,
                max_examples=args.max_examples)
            batch_fn = predict.make_batch_fn(model, settings, mesh, rules, shardings)
            for task in tasks:
                task_dir = out if len(tasks) == 1 and task == args.task else out / task
                output = predict.predict_task(task, params, batch_fn, settings)
                if writer:
                    predict.write_task_outputs(output, settings, str(task_dir), info)
                results[task] = output.metrics
                print(f"{task}: {_short(output.metrics) or 'predictions written'}")
    if jax.process_count() > 1:  # no process reports before process 0's files are in place
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("eval outputs written")
    print(f"outputs -> {final}")
    return results


@contextlib.contextmanager
def _scratch_dir() -> Iterator[Any]:
    """A throwaway local directory for processes other than 0 (they write nothing there)."""
    from etils import epath

    with tempfile.TemporaryDirectory(prefix="eval-scratch-") as tmp:
        yield epath.Path(tmp)


def _short(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in metrics.items())


if __name__ == "__main__":
    from xitt_common.quiet import entry_point

    entry_point(own_flag=True)  # first: no library start-up lines unless --verbose
    from train import cli

    cli.run(main, prog="python -m eval")
