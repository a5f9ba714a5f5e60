"""Does a refactor of the trainer change what it computes? Train the tiny model through
`python -m train` (the gin entry point, which both sides keep) from two checkouts and compare
every saved array bit for bit.

  python scripts/trainer_bit_identity.py --base /path/to/checkout_at_main --new . --workdir /tmp/x

Runs, each from both checkouts (CPU, one device, dropout on, validation every 3 steps):
  straight  6 steps, checkpoints at 3 and 6;
  resumed   3 steps, then a second process resumes to 6;
  dual      the dual encoder (gin/runs/dual_encoder.gin) on Mewsli-X sample pairs, 4 steps;
and `crossed`: the base checkout trains 3 steps, the new one resumes that model directory to 6
(a model directory written before the change still resumes, to the same numbers).

Compared exactly: every array of every committed checkpoint (parameters, Adafactor statistics,
step), `checkpoint_metrics.json` (validation loss and accuracy), `run_identity.json` and
`train_origin.json`. Exit status 0 when everything is identical, 1 with the differences listed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

TINY = ["--gin_file=gin/models/mt5_tiny.gin", "--gin_file=gin/runs/finetune.gin"]
COPY = [*TINY, "--gin_file=gin/runs/cpu_tiny.gin", "--gin.MIXTURE_OR_TASK_NAME='xitt_test_copy'",
        "--gin.MIXTURE_OR_TASK_MODULE='tests.train.testing_tasks'", "--gin.DROPOUT_RATE=0.1",
        "--gin.SAVE_EVERY=3", "--gin.KEEP_CHECKPOINTS=5"]
DUAL = [*TINY, "--gin_file=gin/runs/dual_encoder.gin", "--gin_file=gin/runs/cpu_tiny.gin",
        "--gin.MIXTURE_OR_TASK_NAME='xitt.mewslix.train.en'",
        "--gin.MIXTURE_OR_TASK_MODULE='xitt_tasks'", "--gin.DROPOUT_RATE=0.1",
        "--gin.SAVE_EVERY=2", "--gin.KEEP_CHECKPOINTS=5", "--gin.TRAIN_STEPS=4",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 32}", "--gin.PROJECTION_DIM=16"]
JSON_FILES = ("checkpoint_metrics.json", "run_identity.json", "train_origin.json")


def train(checkout: Path, model_dir: Path, args: list[str], steps: int | None) -> None:
    env = dict(os.environ, PYTHONPATH=str(checkout), JAX_PLATFORMS="cpu",
               TF_CPP_MIN_LOG_LEVEL="3", XITT_VOCAB="cpu")
    cmd = [sys.executable, "-m", "train", *args, f"--gin.MODEL_DIR='{model_dir}'"]
    if steps is not None:
        cmd.append(f"--gin.TRAIN_STEPS={steps}")
    proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{checkout}: {' '.join(cmd[2:])} failed:\n{proc.stderr[-3000:]}")


def arrays(model_dir: Path) -> dict[str, np.ndarray]:
    """Every array of every committed checkpoint, by 'checkpoint_<n>/<path>'."""
    import jax
    import orbax.checkpoint as ocp

    out = {}
    for step_dir in sorted(model_dir.glob("checkpoint_*")):
        if not step_dir.is_dir() or not step_dir.name.removeprefix("checkpoint_").isdigit():
            continue
        tree = ocp.PyTreeCheckpointer().restore(step_dir)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            out[f"{step_dir.name}/{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    return out


def compare(name: str, a: Path, b: Path) -> list[str]:
    problems = []
    left, right = arrays(a), arrays(b)
    if sorted(left) != sorted(right):
        problems.append(f"{name}: different arrays: {sorted(set(left) ^ set(right))[:5]}")
    for key in sorted(set(left) & set(right)):
        x, y = left[key], right[key]
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            problems.append(f"{name}: {key} differs")
    for f in JSON_FILES:
        fa, fb = a / f, b / f
        va = json.loads(fa.read_text()) if fa.exists() else None
        vb = json.loads(fb.read_text()) if fb.exists() else None
        if f == "train_origin.json" and va is not None and vb is not None:
            va.pop("init_checkpoint", None), vb.pop("init_checkpoint", None)
        if va != vb:
            problems.append(f"{name}: {f} differs: {va} != {vb}")
    print(f"{name}: {len(set(left) & set(right))} arrays compared "
          f"({sum(v.size for v in left.values())} numbers), "
          f"{'identical' if not problems else f'{len(problems)} differences'}", flush=True)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="checkout before the change")
    parser.add_argument("--new", type=Path, required=True, help="checkout after the change")
    parser.add_argument("--workdir", type=Path, required=True, help="an empty directory")
    parser.add_argument("--compare_only", action="store_true",
                        help="compare the runs already in --workdir, train nothing")
    args = parser.parse_args()
    base, new, work = args.base.resolve(), args.new.resolve(), args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not args.compare_only:
        if any(work.iterdir()):
            raise SystemExit(f"--workdir {work}: not empty")
        for side, checkout in (("base", base), ("new", new)):
            train(checkout, work / side / "straight", COPY, 6)
            train(checkout, work / side / "resumed", COPY, 3)
            train(checkout, work / side / "resumed", COPY, 6)
            train(checkout, work / side / "dual", DUAL, None)
        train(base, work / "crossed", COPY, 3)
        train(new, work / "crossed", COPY, 6)
    problems = []
    for name in ("straight", "resumed", "dual"):
        problems += compare(name, work / "base" / name, work / "new" / name)
    problems += compare("crossed (base 3 steps, new resumes to 6) vs base straight",
                        work / "base" / "straight", work / "crossed")
    for line in problems:
        print(line)
    print("IDENTICAL" if not problems else "DIFFERENT")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
