"""Convert mT5 checkpoints between formats.

    python -m train.formats.convert --from hf --to t5x --input DIR --output ROOT [--step N]
    python -m train.formats.convert --from t5x --to hf --input ROOT/checkpoint_N --output DIR
    python -m train.formats.convert --from orbax --to t5x --input CKPT --output ROOT

t5x output is the legacy layout `ROOT/checkpoint_<step>/`; Hugging Face output is a
safetensors directory with config.json: the model size comes from the parameter shapes, the
other fields from the input's config.json (Hugging Face input) and `--set FIELD=VALUE`
(e.g. `--set relpos_max_distance=256`, which t5x checkpoints do not record).
Optimizer statistics travel between t5x formats unless --optimizer-state reset. Hugging Face
input starts at step 1,000,000 (the released models' pretraining steps) unless --step.
Refused, with the names: a tensor missing from the input, a config.json or --set value that
contradicts the weights.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from train.formats import huggingface, report, t5x_legacy, t5x_orbax
from train.formats.result import LoadedCheckpoint
from xitt_common import fs

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
                   help="step to record (default: the checkpoint's; "
                        f"{huggingface.HF_START_STEP:,} for hf input)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                   help="cast floating parameters (default: as stored)")
    p.add_argument("--optimizer-state", choices=("restore", "reset"), default=None,
                   help="t5x->t5x: keep (restore, default) or drop (reset) Adafactor statistics")
    p.add_argument("--allow-pickle", action="store_true",
                   help="hf input: read pytorch_model.bin with torch.load(weights_only=True)")
    p.add_argument("--overwrite", action="store_true", help="hf output: replace OUTPUT")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="hf output: an MT5Config field for config.json (repeatable)")
    return p


def read(source: str, path: str, *, optimizer_state: str, dtype: str | None,
         allow_pickle: bool = False, step: int | None = None) -> LoadedCheckpoint:
    if source == "hf":
        return huggingface.read_huggingface(
            path, allow_pickle=allow_pickle, dtype=dtype,
            step=huggingface.HF_START_STEP if step is None else step)
    reader = t5x_legacy.read_t5x_legacy if source == "t5x" else t5x_orbax.read_t5x_orbax
    return reader(path, optimizer_state=optimizer_state, dtype=dtype)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """['relpos_max_distance=256', ...] -> typed MT5Config fields; one error per bad item."""
    from train.config import MT5Config

    fields = {f.name: f for f in dataclasses.fields(MT5Config)}
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in fields:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{sorted(fields)}")
        kind = type(fields[name].default)
        try:
            out[name] = (text.lower() in ("1", "true", "yes")) if kind is bool else kind(text)
        except ValueError:
            raise ValueError(f"--set {item!r}: {name} expects a {kind.__name__}") from None
    return out


def config_for(params: dict, declared: Mapping[str, Any] | None = None) -> object:
    """An MT5Config for the HF config.json: every shape-determined field from `params`, the
    rest from `declared` (input config.json, --set). A declared value that contradicts the
    shapes is refused."""
    from train.config import MT5Config

    dims = report.infer_dims({n: tuple(v.shape) for n, v in report.flatten(params).items()})
    declared = dict(declared or {})
    wrong = [f"{k}={declared[k]} but the weights have {v}" for k, v in dims.items()
             if k in declared and declared[k] != v]
    if wrong:
        raise ValueError(f"the config contradicts the weights: {'; '.join(wrong)}")
    return MT5Config(**{**declared, **dims})


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _convert(args)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"convert: error: {e}", file=sys.stderr)
        return 1


def _convert(args: argparse.Namespace) -> int:
    start = time.time()
    overrides = parse_overrides(args.overrides)
    if overrides and args.dest != "hf":
        raise ValueError("--set applies to --to hf only (t5x checkpoints hold no config)")
    keep_states = args.dest == "t5x" and args.source != "hf" and args.optimizer_state != "reset"
    loaded = read(args.source, args.input, optimizer_state="restore" if keep_states else "reset",
                  dtype=args.dtype, allow_pickle=args.allow_pickle, step=args.step)
    step = loaded.step if args.step is None else args.step
    if args.dest == "t5x":
        out = t5x_legacy.write_t5x_legacy(args.output, step, loaded.params, loaded.param_states)
    else:
        declared = {}
        if args.source == "hf" and fs.path(args.input).joinpath(huggingface.CONFIG).exists():
            declared = huggingface.config_from_hf(args.input)
        config = config_for(loaded.params, {**declared, **overrides})
        out = huggingface.write_huggingface(args.output, loaded.params, config,
                                            overwrite=args.overwrite)
    count = sum(int(np.prod(v.shape)) for v in report.flatten(loaded.params).values())
    states = "with" if loaded.param_states is not None else "without"
    print(f"{args.input} ({args.source}, step {loaded.step}) -> {out} ({args.dest}, step {step}):"
          f" {count:,} parameters {states} optimizer statistics in {time.time() - start:.1f}s")
    return 0


if __name__ == "__main__":
    from xitt_common.quiet import entry_point

    entry_point(libraries=False)  # no library lines unless --verbose
    sys.exit(main())
