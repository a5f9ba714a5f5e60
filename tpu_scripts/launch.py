"""Create, set up, train on, evaluate on, watch and delete a multi-host Cloud TPU VM slice.

    python -m tpu_scripts.launch create --name xnli-xxl --slice v5e:4x8 --project P --spot
    python -m tpu_scripts.launch setup  --name xnli-xxl --slice v5e:4x8 --project P \
        --repo https://github.com/ORG/xitt.git --ref main
    python -m tpu_scripts.launch train  --name xnli-xxl --slice v5e:4x8 --project P \
        --size xxl --model_dir gs://BUCKET/runs/xnli-xxl --task TASK --train_steps 1012000 \
        [--init_checkpoint gs://t5-data/pretrained_models/t5x/mt5_xxl/checkpoint_1000000]
    python -m tpu_scripts.launch watch  ...same flags as train...   # restarts after preemption
    python -m tpu_scripts.launch eval   --name ... --size xxl --checkpoint gs://.../checkpoint_N \
        --task TASK --output_dir gs://BUCKET/eval/xnli-xxl
    python -m tpu_scripts.launch delete --name xnli-xxl --slice v5e:4x8 --project P

`--dry_run` prints the exact commands (one per line, shell-quoted) and runs nothing. Nothing is
ever run through a local shell: commands are argv lists; the remote `--command` string is
built with shlex quoting. Both training phases use `train` (the target phase starts from the
intermediate run's final checkpoint: pass it as --init_checkpoint); a resumed run continues
from the last checkpoint in --model_dir, so restarting the same command after a preemption is
the recovery. The config is the shipped gin/tpu file for --size and --slice (docs/tpu.md).
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from tpu_scripts import configs, gcloud, topology
from xitt_common.data_env import with_data_env

EXIT_MARKER = gcloud.EXIT_MARKER
DISTRIBUTED_ENV = "XITT_DISTRIBUTED"
RECOVER_STATES = {"PREEMPTED", "TERMINATED", "FAILED", "SUSPENDED", "NOT_FOUND"}


class Runner:
    """Runs argv lists, or prints them (`dry_run`); never through a local shell."""

    def __init__(self, dry_run: bool, out=None) -> None:
        self.dry_run = dry_run
        self.out = out or sys.stdout
        self.printed: list[str] = []

    def run(self, argv: Sequence[str], *, check: bool = True, capture: bool = False) -> str:
        line = shlex.join(list(argv))
        if self.dry_run:
            self.printed.append(line)
            print(line, file=self.out)
            return ""
        print(f"$ {line}", file=sys.stderr, flush=True)
        proc = subprocess.run(list(argv), text=True, capture_output=capture)
        if check and proc.returncode:
            detail = (proc.stderr or "").strip().splitlines()[-1:] if capture else []
            raise RuntimeError(f"command failed (exit {proc.returncode}): {line}"
                               + (f": {detail[0]}" if detail else ""))
        return proc.stdout if capture else ""


# ------------------------------------------------------------------------------ commands

def train_argv(gin_files: Sequence[str], model_dir: str, task: str, train_steps: int,
               init_checkpoint: str | None, task_module: str = "xitt_tasks",
               extra_bindings: Sequence[str] = ()) -> list[str]:
    """`python -m train` on the slice; gin string values as double-quoted literals."""
    argv = gcloud.python("-m", "train", *[f"--gin_file={f}" for f in gin_files],
                         f"--gin.MODEL_DIR={gcloud.gin_string(model_dir)}",
                         f"--gin.MIXTURE_OR_TASK_NAME={gcloud.gin_string(task)}",
                         f"--gin.MIXTURE_OR_TASK_MODULE={gcloud.gin_string(task_module)}",
                         f"--gin.TRAIN_STEPS={int(train_steps)}")
    if init_checkpoint:
        argv.append(f"--gin.INITIAL_CHECKPOINT_PATH={gcloud.gin_string(init_checkpoint)}")
    argv += [f"--gin.{b}" for b in extra_bindings]
    return argv


def eval_argv(cfg: configs.TpuConfig, checkpoint: str, task: str, split: str, mode: str,
              output_dir: str, target_length: int) -> list[str]:
    """`python -m eval` with the config's inference mesh and batch (1-D rules)."""
    return gcloud.python(
        "-m", "eval", f"--gin_file=gin/models/mt5_{cfg.size}.gin",
        f"--gin.SCAN_LAYERS={cfg.model_config.scan_layers}", f"--checkpoint={checkpoint}",
        f"--task={task}", f"--split={split}", f"--mode={mode}", f"--output_dir={output_dir}",
        f"--feature_lengths=inputs={cfg.input_length},targets={target_length}",
        f"--batch_size={cfg.infer_batch_size}", f"--num_partitions={cfg.infer_num_partitions}",
        "--mixture_or_task_module=xitt_tasks")


# ------------------------------------------------------------------------------ actions

def _spec(args: argparse.Namespace) -> gcloud.SliceSpec:
    slice_ = topology.Slice.parse(args.slice)
    return gcloud.SliceSpec(args.name, slice_, args.project, args.zone or slice_.chip.default_zone,
                            spot=args.spot, queued=not args.no_queued)


def _config(args: argparse.Namespace) -> configs.TpuConfig:
    path = args.config or configs.find(args.size, args.slice)
    cfg = configs.load(path)
    if cfg.slice_name != topology.Slice.parse(args.slice).name:
        raise ValueError(f"{path} is for slice {cfg.slice_name}, not --slice {args.slice}")
    return cfg


def node_state(runner: Runner, spec: gcloud.SliceSpec) -> str:
    try:
        out = runner.run(gcloud.describe_state(spec), capture=True)
    except RuntimeError:
        return "NOT_FOUND"
    return out.strip() or ("READY" if runner.dry_run else "UNKNOWN")


def do_create(runner: Runner, spec: gcloud.SliceSpec) -> None:
    """Idempotent: nothing to do when the node already exists."""
    if not runner.dry_run and node_state(runner, spec) not in RECOVER_STATES:
        print(f"{spec.name} exists; not creating it again", file=sys.stderr)
        return
    runner.run(gcloud.create(spec))
    if spec.queued and not runner.dry_run:
        wait_ready(runner, spec)


def wait_ready(runner: Runner, spec: gcloud.SliceSpec, poll_s: float = 60.0) -> None:
    while True:
        state = node_state(runner, spec)
        if state == "READY":
            return
        print(f"{spec.name}: {state}, waiting for capacity", file=sys.stderr, flush=True)
        time.sleep(poll_s)


def do_setup(runner: Runner, spec: gcloud.SliceSpec, repo: str, ref: str) -> None:
    runner.run(gcloud.ssh_all(spec, gcloud.setup_command(repo, ref)))


def multihost(spec: gcloud.SliceSpec, argv: list[str]) -> list[str]:
    """On a multi-host slice, `XITT_DISTRIBUTED=1` tells the entry points to call
    `jax.distributed.initialize()` (one process per host; peers found from TPU metadata)."""
    return ["env", f"{DISTRIBUTED_ENV}=1", *argv] if spec.slice.num_hosts > 1 else list(argv)


def do_train(runner: Runner, spec: gcloud.SliceSpec, argv: list[str], run: str) -> None:
    runner.run(gcloud.ssh_all(spec, gcloud.detached(multihost(spec, argv), run)))


def do_watch(runner: Runner, spec: gcloud.SliceSpec, argv: list[str], run: str, repo: str,
             ref: str, poll_s: float, sleep: Callable[[float], None] = time.sleep) -> int:
    """Poll the node; on preemption delete, recreate, set up and restart the same command
    (the trainer resumes from the last checkpoint in its model dir). Returns the run's exit
    status once worker 0's log shows it. A dry run prints one poll and the recovery."""
    tail = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", spec.name, *spec._where(),
            "--worker=0", f"--command={gcloud.tail_log(run, 5)}"]
    if runner.dry_run:
        runner.run(gcloud.describe_state(spec))
        runner.run(tail)
        print("# on PREEMPTED / TERMINATED / missing node:", file=runner.out)
        runner.run(gcloud.delete(spec))
        runner.run(gcloud.create(spec))
        do_setup(runner, spec, repo, ref)
        do_train(runner, spec, argv, run)
        return 0
    while True:
        state = node_state(runner, spec)
        if state in RECOVER_STATES:
            print(f"{spec.name}: {state}; recreating and resuming {run}", file=sys.stderr)
            if state != "NOT_FOUND":
                runner.run(gcloud.delete(spec), check=False)
            runner.run(gcloud.create(spec))
            if spec.queued:
                wait_ready(runner, spec)
            do_setup(runner, spec, repo, ref)
            do_train(runner, spec, argv, run)
        elif state == "READY":
            text = runner.run(tail, capture=True, check=False)
            for line in reversed(text.splitlines()):
                if line.startswith(EXIT_MARKER):
                    return int(line.split()[-1])
            print(text.strip().splitlines()[-1] if text.strip() else f"{run}: no log yet",
                  file=sys.stderr, flush=True)
        sleep(poll_s)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tpu_scripts.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("create", "setup", "train", "eval", "watch",
                                           "delete"))
    parser.add_argument("--name", required=True, help="TPU node (and queued resource) name")
    parser.add_argument("--slice", required=True, help="e.g. v5e:4x8, v4:2x2x4, v5p:2x2x2")
    parser.add_argument("--project", required=True)
    parser.add_argument("--zone", help="default: a zone that offers the generation")
    parser.add_argument("--spot", action="store_true", help="spot (preemptible) capacity")
    parser.add_argument("--no_queued", action="store_true",
                        help="create the node directly instead of through a queued resource")
    parser.add_argument("--dry_run", action="store_true", help="print the commands only")
    parser.add_argument("--repo", default="https://github.com/ORG/xitt.git")
    parser.add_argument("--ref", default="main")
    parser.add_argument("--size", choices=("base", "large", "xl", "xxl"))
    parser.add_argument("--config", help="a gin/tpu file (default: the one for --size/--slice)")
    parser.add_argument("--run", help="log name on the hosts (default: --name)")
    parser.add_argument("--model_dir", help="gs:// directory of the run (checkpoints, logs)")
    parser.add_argument("--task", help="seqio task or mixture")
    parser.add_argument("--train_steps", type=int, help="absolute step to stop at (t5x)")
    parser.add_argument("--init_checkpoint", help="pretrained or intermediate checkpoint_N")
    parser.add_argument("--binding", action="append", default=[],
                        help="extra gin binding NAME=VALUE for train (repeatable)")
    parser.add_argument("--checkpoint", help="eval: checkpoint_N directory or model dir")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--mode", choices=("decode", "score"), default="decode")
    parser.add_argument("--target_length", type=int, default=128)
    parser.add_argument("--output_dir")
    parser.add_argument("--poll_s", type=float, default=300.0)
    args = parser.parse_args(list(argv))
    need = {"train": ("model_dir", "task", "train_steps"),
            "watch": ("model_dir", "task", "train_steps"),
            "eval": ("checkpoint", "task", "output_dir")}.get(args.action, ())
    missing = [f"--{n}" for n in need if getattr(args, n) is None]
    if need and not (args.size or args.config):
        missing.append("--size (or --config)")
    if missing:
        parser.error(f"{args.action} needs {', '.join(missing)}")
    return args


def main(argv: Sequence[str] | None = None, out=None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        runner = Runner(args.dry_run, out)
        spec = _spec(args)
        run = args.run or args.name
        if args.action == "create":
            do_create(runner, spec)
        elif args.action == "setup":
            do_setup(runner, spec, args.repo, args.ref)
        elif args.action == "delete":
            runner.run(gcloud.delete(spec))
        elif args.action in ("train", "watch"):
            cfg = _config(args)
            cmd = with_data_env(train_argv(configs.gin_files(cfg.path), args.model_dir,
                                           args.task, args.train_steps, args.init_checkpoint,
                                           extra_bindings=args.binding))
            if args.action == "train":
                do_train(runner, spec, cmd, run)
            else:
                return do_watch(runner, spec, cmd, run, args.repo, args.ref, args.poll_s)
        elif args.action == "eval":
            cfg = _config(args)
            cmd = with_data_env(eval_argv(cfg, args.checkpoint, args.task, args.split,
                                          args.mode, args.output_dir, args.target_length))
            runner.run(gcloud.ssh_all(spec, gcloud.foreground(multihost(spec, cmd))))
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from xitt_common.quiet import entry_point

    entry_point(libraries=False)  # first: no library lines unless --verbose
    sys.exit(main())
