"""Train from gin configs, t5x style.

  python -m train --gin_file=gin/models/mt5_tiny.gin --gin_file=gin/runs/finetune.gin \
      --gin_file=gin/runs/cpu_tiny.gin --gin.MODEL_DIR="'/tmp/xitt_tiny'" \
      --gin.MIXTURE_OR_TASK_NAME="'<task>'" --gin.MIXTURE_OR_TASK_MODULE="'<module>'"

Files are applied in order (model, run, overlays), then `--gin.NAME=VALUE` bindings. The
operative config is written to `<model_dir>/config.gin` (a restart with a different config
keeps it and writes `config.<n>.gin` beside it). An error is one line on stderr and exit
status 2 (`--verbose` adds the traceback); see train/cli.py.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xitt_common import quiet

if __name__ == "__main__":
    quiet.entry_point(own_flag=True)  # first: TF prints its start-up lines at import

import gin  # noqa: E402
import tensorflow as tf  # noqa: E402

from train import cli, gin_utils, trainer  # noqa: E402


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    bindings, rest = gin_utils.split_gin_flags(argv)
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gin_file", action="append", default=[], required=True,
                        help="a .gin file; repeat, applied in order")
    parser.add_argument("--gin_bindings", action="append", default=[],
                        help="a gin binding 'NAME = VALUE'; repeatable (same as --gin.NAME=VALUE)")
    parser.add_argument("--gin_search_paths", action="append", default=None,
                        help="directories searched for --gin_file and gin includes (default .)")
    parser.add_argument("--mixture_or_task_module", action="append", default=[],
                        help="module to import that registers the seqio tasks (repeatable)")
    parser.add_argument(gin_utils.CACHE_DIRS_FLAG, action="append", default=[],
                        help="a directory of seqio caches (cache_tasks_main's output), searched "
                             "after seqio's own; repeatable or comma-separated")
    args = parser.parse_args(rest)
    return args, [*args.gin_bindings, *bindings]


def main(argv: Sequence[str]) -> None:
    args, bindings = parse_args(argv)
    gin_utils.add_seqio_cache_dirs(args.seqio_additional_cache_dirs)
    gin_utils.parse(args.gin_file, bindings,
                    args.gin_search_paths or (".", str(gin_utils.REPO_ROOT)))
    modules = gin_utils.task_modules(args.mixture_or_task_module)
    gin_utils.import_modules(modules)
    gin_utils.finalize()
    tf.config.set_visible_devices([], "GPU")  # tf.data only; accelerators belong to JAX
    train = gin.get_configurable(trainer.train)
    train(on_start=lambda model_dir: gin_utils.write_config(model_dir, modules))


if __name__ == "__main__":
    cli.run(main, sys.argv[1:], prog="python -m train")
