"""Subprocess entry: `python -m benchmarks.workers KIND '<json args>'` prints one result line.

Kinds: jax_train, torch_train, jax_decode, torch_decode, jax_peak, torch_peak, write_weights,
input, eval.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from benchmarks.timing import RESULT_PREFIX


def _shape(args: dict[str, Any]):
    from benchmarks import shapes

    for s in shapes.train_shapes(args["quick"], args.get("dtype", "float32")):
        if s.name == args["shape"]:
            return s
    raise ValueError(f"unknown benchmark shape {args['shape']!r}")


def run(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    if kind == "input":
        from benchmarks import pipeline_side

        return pipeline_side.input_pipeline(args["batch_size"], args["input_length"],
                                            args["target_length"], args["warmup"],
                                            args["batches"])
    if kind == "eval":
        from benchmarks import pipeline_side

        return pipeline_side.evaluate_all_languages(args["batch_size"], args["input_length"],
                                                    args["target_length"],
                                                    args.get("max_languages"))
    if kind.startswith("torch"):
        from benchmarks import torch_side as side
    else:
        from benchmarks import jax_side as side
    if kind == "write_weights":
        return {"dir": side.write_weights(_shape(args).config, args["dir"])}
    if kind.endswith("_train"):
        return side.train(_shape(args), args["dir"], args["warmup"], args["steps"])
    if kind == "jax_decode":
        return side.decode(_shape(args).config, args["dir"], args["batch_size"],
                           args["input_length"], args["decode_length"], args["warmup"],
                           args["reps"])
    if kind == "torch_decode":
        return side.decode(args["dir"], args["encoder_input_tokens"], args["decode_length"],
                           args["warmup"], args["reps"])
    if kind.endswith("_peak"):
        return side.peak_matmul(args["dtype"], args["n"], args["reps"])
    raise ValueError(f"unknown worker kind {kind!r}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.workers KIND JSON_ARGS", file=sys.stderr)
        return 2
    result = run(argv[0], json.loads(argv[1]))
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
