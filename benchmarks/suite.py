"""The benchmark sections: run the workers, turn their timings into ratios, make table rows.

Every measurement runs in a fresh worker process (`benchmarks.workers`), one at a time; the
rows are ratios of medians from this run only. The `*_rows` functions are pure arithmetic on
the workers' results, so the harness is testable without timing anything.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from benchmarks import shapes, timing
from benchmarks.report import Row
from train import flops

TRAIN_TARGET = 2.0
MFU_TARGET = 0.60
DECODE_TARGET = 3.0
INPUT_TARGET = 10.0
Result = dict[str, Any]
Runner = Callable[..., Result]


@dataclasses.dataclass
class Settings:
    quick: bool
    workdir: str
    warmup: int
    steps: int
    decode_batch: int = 32

    @classmethod
    def make(cls, quick: bool, workdir: str) -> Settings:
        return cls(quick, workdir, warmup=1, steps=3 if quick else 6)


def _fmt(x: float, unit: str = "") -> str:
    return f"{x:,.3g}{unit}" if abs(x) < 1000 else f"{x:,.0f}{unit}"


# ----------------------------------------------------------------------------- peak

def peak_rows(results: Mapping[str, Result]) -> tuple[list[Row], dict[str, float]]:
    """Rows per (framework, dtype) and the machine's peak per dtype: the best framework."""
    rows, peaks = [], {}
    for key, res in sorted(results.items()):
        framework, dtype = key.split(":")
        rate = res["flops"] / timing.median(res["seconds"])
        peaks[dtype] = max(peaks.get(dtype, 0.0), rate)
        rows.append(Row("peak", f"matmul {dtype}, {framework}", _fmt(rate / 1e9, " GFLOP/s"),
                        detail=f"n={round(res['flops'] / 2) ** (1 / 3):.0f}"))
    return rows, peaks


def run_peak(settings: Settings, run: Runner = timing.run_worker) -> dict[str, Result]:
    n, reps = (1024, 5) if settings.quick else (2048, 7)
    out = {}
    for dtype in ("float32", "bfloat16"):
        for framework in ("jax", "torch"):
            out[f"{framework}:{dtype}"] = run(f"{framework}_peak",
                                              {"dtype": dtype, "n": n, "reps": reps})
    return out


# ----------------------------------------------------------------------------- train

def train_rows(shape: shapes.Shape, jax_res: Result, torch_default: Result,
               torch_tuned: Result, peak_f32: float | None,
               mfu_target: bool = False) -> list[Row]:
    """Speed-up over the faster PyTorch allocator setting, the same-weights check, MFU (its
    target applies at the smaller shape only)."""
    tokens = shape.batch_size * (shape.input_length + shape.target_length)
    ours = timing.median(jax_res["step_seconds"])
    t_def, t_tuned = (timing.median(torch_default["step_seconds"]),
                      timing.median(torch_tuned["step_seconds"]))
    best = min(t_def, t_tuned)
    name = (f"{shape.name} (b{shape.batch_size}, {shape.input_length}/{shape.target_length}, "
            f"{shape.config.dtype})")
    speedup = best / ours
    rows = [
        Row("train", f"{name}: tokens/s vs PyTorch (faster allocator)", f"{speedup:.2f}x",
            f">= {TRAIN_TARGET:g}x", speedup >= TRAIN_TARGET,
            f"ours {_fmt(tokens / ours)} tok/s; PyTorch {_fmt(tokens / t_def)} default, "
            f"{_fmt(tokens / t_tuned)} tuned malloc; ours vs default {t_def / ours:.2f}x"),
        Row("train", f"{name}: same weights check", f"{jax_res['first_loss_per_token']:.4f} vs "
            f"{torch_default['first_loss_per_token']:.4f}",
            detail="first-step loss per token, ours (incl. z-loss 1e-4) vs PyTorch"),
    ]
    if peak_f32:
        step_flops = flops.train_step_flops(shape.config, shape.batch_size, shape.input_length,
                                            shape.target_length)
        ours_mfu = timing.mfu(step_flops, jax_res["step_seconds"], peak_f32)
        split = flops.forward_flops(shape.config, shape.batch_size, shape.input_length,
                                    shape.target_length)
        rows.append(Row("MFU", f"{name}: model FLOPs / measured f32 peak", f"{ours_mfu:.1%}",
                        f">= {MFU_TARGET:.0%}" if mfu_target else "",
                        ours_mfu >= MFU_TARGET if mfu_target else None,
                        f"{step_flops / 1e9:,.1f} GFLOP/step, output layer "
                        f"{split.output_layer / split.total:.0%} of them; PyTorch "
                        f"{step_flops / best / peak_f32:.1%}"))
    return rows


def run_train(settings: Settings, shape: shapes.Shape,
              run: Runner = timing.run_worker) -> dict[str, Result]:
    common = {"quick": settings.quick, "shape": shape.name,
              "dir": os.path.join(settings.workdir, shape.name)}
    run("write_weights", common)
    timed = {**common, "warmup": settings.warmup, "steps": settings.steps}
    return {"jax": run("jax_train", timed),
            "torch_default": run("torch_train", timed),
            "torch_tuned": run("torch_train", timed, env=timing.TUNED_MALLOC_ENV)}


# ----------------------------------------------------------------------------- decode

def decode_rows(shape: shapes.Shape, jax_res: Result, torch_res: Result, batch: int,
                decode_length: int) -> list[Row]:
    ours, theirs = timing.median(jax_res["seconds"]), timing.median(torch_res["seconds"])
    same = sum(a == b for a, b in zip(jax_res["tokens"], torch_res["tokens"]))
    rows = len(jax_res["tokens"])
    speedup = theirs / ours
    detail = (f"ours {_fmt(batch * decode_length / ours)} tok/s, transformers "
              f"{_fmt(batch * decode_length / theirs)}; identical tokens in {same}/{rows} rows")
    if "encoder_seconds" in jax_res and "encoder_seconds" in torch_res:
        # Where the time goes: the encoder is one fixed cost per batch; the rest is the loop.
        enc_ours = timing.median(jax_res["encoder_seconds"])
        enc_theirs = timing.median(torch_res["encoder_seconds"])
        loop_ours, loop_theirs = ours - enc_ours, theirs - enc_theirs
        detail += (f"; encoder alone {enc_ours:.2f} s vs {enc_theirs:.2f} s "
                   f"({enc_ours / ours:.0%} of our call); after it "
                   f"{loop_ours / decode_length * 1e3:.0f} vs "
                   f"{loop_theirs / decode_length * 1e3:.0f} ms/token "
                   f"({loop_theirs / loop_ours:.2f}x)" if loop_ours > 0 else "")
    return [Row("decode", f"{shape.name}: greedy tokens/s vs `generate` (batch {batch}, "
                f"{decode_length} tokens)", f"{speedup:.2f}x", f">= {DECODE_TARGET:g}x",
                speedup >= DECODE_TARGET and same == rows, detail)]


def run_decode(settings: Settings, shape: shapes.Shape,
               run: Runner = timing.run_worker) -> tuple[dict[str, Result], int]:
    length = 8 if settings.quick else 32
    args = {"quick": settings.quick, "shape": shape.name,
            "dir": os.path.join(settings.workdir, shape.name),
            "batch_size": settings.decode_batch, "input_length": shape.input_length // 2,
            "decode_length": length, "warmup": 1, "reps": settings.steps}
    if not os.path.exists(args["dir"]):
        run("write_weights", args)
    ours = run("jax_decode", args)
    theirs = run("torch_decode", {**args, "encoder_input_tokens": ours["encoder_input_tokens"]})
    return {"jax": ours, "torch": theirs}, length


# ----------------------------------------------------------------------------- input, eval

def input_rows(shape: shapes.Shape, res: Result, train_step_seconds: float | None) -> list[Row]:
    per_batch = timing.median(res["seconds"])
    produced = res["examples_per_batch"] / per_batch
    if train_step_seconds is None:
        return [Row("input", f"{shape.name}: seqio examples/s", _fmt(produced),
                    detail="train section not run: no consumption rate to compare")]
    consumed = res["examples_per_batch"] / train_step_seconds
    ratio = produced / consumed
    return [Row("input", f"{shape.name}: seqio (tokenise, pack, batch) vs train step, "
                "examples/s", f"{ratio:.1f}x", f">= {INPUT_TARGET:g}x", ratio >= INPUT_TARGET,
                f"pipeline {_fmt(produced)} ex/s, step consumes {_fmt(consumed)} ex/s "
                f"({res['examples_per_batch']:.1f} packed examples per batch)")]


def eval_rows(res: Result) -> list[Row]:
    tasks = res["tasks"]
    first, rest = tasks[0]["compilations"], sum(t["compilations"] for t in tasks[1:])
    return [Row("eval", f"decode all languages of XNLI + WikiANN ({len(tasks)} tasks, "
                f"{res['examples']} examples)", f"{res['seconds']:.0f} s wall, "
                f"{res['compilations_total']} compilation(s)",
                "compilations do not grow with languages", rest == 0,
                f"first task {first} compilation(s), the other {len(tasks) - 1} tasks {rest}")]


def memory_rows(shape: shapes.Shape, jax_res: Result, torch_res: Result | None) -> list[Row]:
    m = jax_res["memory"]
    device = (m["argument_size_in_bytes"] + m["output_size_in_bytes"]
              - m["alias_size_in_bytes"] + m["temp_size_in_bytes"])
    detail = (f"arguments {m['argument_size_in_bytes'] / 2**30:.2f} GiB, temporaries "
              f"{m['temp_size_in_bytes'] / 2**30:.2f} GiB, outputs aliased to donated inputs "
              f"{m['alias_size_in_bytes'] / 2**30:.2f} GiB")
    rows = [Row("memory", f"{shape.name}: peak per-device memory of the compiled step",
                f"{device / 2**30:.2f} GiB", detail=detail),
            Row("memory", f"{shape.name}: peak RSS of a training run (ours)",
                f"{jax_res['peak_rss_bytes'] / 2**30:.2f} GiB")]
    if torch_res is not None:
        rows.append(Row("memory", f"{shape.name}: peak RSS of a training run (PyTorch)",
                        f"{torch_res['peak_rss_bytes'] / 2**30:.2f} GiB"))
    return rows
