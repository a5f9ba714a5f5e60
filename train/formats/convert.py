"""Convert mT5 checkpoints between formats.

    python -m train.formats.convert --from hf --to t5x --input DIR --output ROOT [--step N]
    python -m train.formats.convert --from t5x --to hf --input ROOT/checkpoint_N --output DIR
    python -m train.formats.convert --from orbax --to t5x --input CKPT --output ROOT

t5x output is the legacy layout `ROOT/checkpoint_<step>/`; Hugging Face output is a
safetensors directory with config.json, the model size inferred from the parameter shapes.
Optimizer statistics travel between t5x formats unless --optimizer-state reset.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from train.formats import huggingface, report, t5x_legacy, t5x_orbax
from train.formats.result import LoadedCheckpoint

FROM = ("hf", "t5x", "orbax")
TO = ("t5x", "hf")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.formats.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", choices=FROM, required=True)
    p.add_argument("--to", dest="dest", choices=TO, required=True)
    p.add_argument("--input", required=True, help="checkpoint directory to read")
    p.add_argument("--output", required=True,
                   help="t5x: root directory for checkpoint_<step>/; hf: the model directory")
    p.add_argument("--step", type=int, default=None,
                   help="step to record (default: the checkpoint's; 0 for hf input)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                   help="cast floating parameters (default: as stored)")
    p.add_argument("--optimizer-state", choices=("restore", "reset"), default=None,
                   help="t5x->t5x: keep (restore, default) or drop (reset) Adafactor statistics")
    p.add_argument("--allow-pickle", action="store_true",
                   help="hf input: read pytorch_model.bin with torch.load(weights_only=True)")
    p.add_argument("--overwrite", action="store_true", help="hf output: replace OUTPUT")
    return p


def read(source: str, path: str, *, optimizer_state: str, dtype: str | None,
         allow_pickle: bool = False, step: int | None = None) -> LoadedCheckpoint:
    if source == "hf":
        return huggingface.read_huggingface(path, allow_pickle=allow_pickle, dtype=dtype,
                                            step=step or 0)
    reader = t5x_legacy.read_t5x_legacy if source == "t5x" else t5x_orbax.read_t5x_orbax
    return reader(path, optimizer_state=optimizer_state, dtype=dtype)


def config_for(params: dict) -> object:
    """An MT5Config whose shapes are those of `params` (for the HF config.json)."""
    from train.config import MT5Config

    dims = report.infer_dims({n: tuple(v.shape) for n, v in report.flatten(params).items()})
    dims.pop("relpos_buckets", None)
    return MT5Config(**dims)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    start = time.time()
    keep_states = args.dest == "t5x" and args.source != "hf" and args.optimizer_state != "reset"
    loaded = read(args.source, args.input, optimizer_state="restore" if keep_states else "reset",
                  dtype=args.dtype, allow_pickle=args.allow_pickle, step=args.step)
    step = loaded.step if args.step is None else args.step
    if args.dest == "t5x":
        out = t5x_legacy.write_t5x_legacy(args.output, step, loaded.params, loaded.param_states)
    else:
        out = huggingface.write_huggingface(args.output, loaded.params, config_for(loaded.params),
                                            overwrite=args.overwrite)
    count = sum(int(np.prod(v.shape)) for v in report.flatten(loaded.params).values())
    states = "with" if loaded.param_states is not None else "without"
    print(f"{args.input} ({args.source}, step {loaded.step}) -> {out} ({args.dest}, step {step}):"
          f" {count:,} parameters {states} optimizer statistics in {time.time() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
