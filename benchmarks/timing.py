"""Timing, subprocess workers and the ratio arithmetic every figure goes through."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

RESULT_PREFIX = "BENCHMARK_RESULT "
# glibc: serve no block with mmap (MALLOC_MMAP_MAX_=0; a threshold above 32 MiB is ignored)
# and never trim the heap, so a step's buffers are reused instead of page-faulted afresh.
TUNED_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0",
                    "MALLOC_TRIM_THRESHOLD_": "17179869184",
                    "MALLOC_TOP_PAD_": "268435456"}


def repeat(fn: Callable[[], Any], warmup: int, reps: int) -> list[float]:
    """Wall seconds of `reps` calls of `fn` after `warmup` untimed calls (fn must block)."""
    if warmup < 0 or reps < 1:
        raise ValueError(f"warmup={warmup}, reps={reps}: expected warmup >= 0 and reps >= 1")
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no measurements")
    return float(statistics.median(values))


def ratio(numerator_seconds: Sequence[float], denominator_seconds: Sequence[float]) -> float:
    """How many times faster the denominator's thing is: median(num) / median(den)."""
    return median(numerator_seconds) / median(denominator_seconds)


def mfu(flops_per_call: float, seconds: Sequence[float], peak_flops: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s at the median time over the measured peak."""
    if not peak_flops > 0:
        raise ValueError(f"peak_flops={peak_flops!r}: expected > 0")
    return flops_per_call / median(seconds) / peak_flops


def run_worker(kind: str, args: Mapping[str, Any], env: Mapping[str, str] | None = None,
               timeout: float = 3600) -> dict[str, Any]:
    """Run `python -m benchmarks.workers KIND JSON` in a fresh process; returns its result.

    A fresh process per measurement gives each framework its own peak RSS and allocator
    settings, and keeps PyTorch out of the JAX process.
    """
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    full_env.setdefault("JAX_PLATFORMS", "cpu")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.workers", kind, json.dumps(args)],
                          env=full_env, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
    raise RuntimeError(f"benchmark worker {kind} failed (exit {proc.returncode}):\n"
                       + "\n".join(tail))
