"""Training and validation summaries: TensorBoard scalars and a console progress line.

Step metrics stay on the device and are summed there between log points; the host reads them
once per `log_every` steps, so logging adds no per-step synchronisation.

Throughput counts non-padding tokens. Model FLOPs are `train.flops`'s exact count per input and
per target token (every matmul, attention included, the embedding lookup not) when the model
config and feature lengths are given; otherwise the cruder 6 * (encoder params * input tokens +
decoder params * target tokens). MFU divides the achieved model FLOP/s by the peak of the
devices: from `PEAK_FLOPS` by device kind, or `peak_flops` when given. With no known peak (the
CPU) MFU is not reported, only the achieved FLOP/s.

clu (and with it TensorFlow) is imported only when a summary writer is created, so a process
that only wants the train step does not load TensorFlow through this module.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from train import flops as flops_lib
from train.config import MT5Config

# Dense bf16 peak per device (chip), FLOP/s, matched as a substring of `device.device_kind`.
PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("TPU v6 lite", 918e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5p", 459e12),
    ("TPU v5", 459e12),
    ("TPU v4", 275e12),
    ("TPU v3", 123e12),
    ("TPU v2", 45e12),
    ("H200", 989e12),
    ("H100", 989e12),
    ("A100", 312e12),
)


def peak_flops_per_device(device_kind: str, override: float | None = None) -> float | None:
    """Peak FLOP/s of one device, `override` first; None when unknown (e.g. CPU)."""
    if override is not None:
        if not override > 0:
            raise ValueError(f"peak_flops={override!r}: expected a positive FLOP/s figure")
        return float(override)
    for name, peak in PEAK_FLOPS:
        if name.lower() in device_kind.lower():
            return peak
    return None


def _summary_writer(logdir: str) -> Any:
    from clu import metric_writers  # imports TensorFlow: only when summaries are written

    return metric_writers.SummaryWriter(logdir)


def stack_param_counts(params: Mapping[str, Any]) -> tuple[int, int]:
    """(encoder, decoder) parameter counts of a t5x tree; the decoder's include logits_dense."""

    def count(tree: Any) -> int:
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))

    return count(params.get("encoder", {})), count(params.get("decoder", {}))


class TrainSummaries:
    """Accumulates step metrics on device; writes scalars every `log_every` steps. The first
    step only starts the clock (its time is mostly compilation) and is not averaged in."""

    def __init__(self, model_dir: str, *, log_every: int, encoder_params: int,
                 decoder_params: int, num_devices: int, device_kind: str,
                 peak_flops: float | None = None, writer: Any | None = None,
                 model_config: MT5Config | None = None,
                 feature_lengths: Mapping[str, int] | None = None) -> None:
        if log_every < 1:
            raise ValueError(f"log_every={log_every!r}: expected >= 1")
        self.log_every = log_every
        self.encoder_params, self.decoder_params = encoder_params, decoder_params
        if model_config is not None and feature_lengths is not None:
            self.flops_per_token = flops_lib.per_token_train(
                model_config, int(feature_lengths["inputs"]), int(feature_lengths["targets"]))
        else:  # the 6 * params rule: overcounts the embedding, leaves out attention scores
            self.flops_per_token = (6.0 * encoder_params, 6.0 * decoder_params)
        self.num_devices = num_devices
        peak = peak_flops_per_device(device_kind, peak_flops)
        self.peak_total = None if peak is None else peak * num_devices
        lead = jax.process_index() == 0
        self.train_writer = writer or (_summary_writer(f"{model_dir}/train")
                                       if lead else None)
        # Created on the first validation, so a run without one leaves no empty event file.
        self.eval_writer = writer
        self._eval_dir = f"{model_dir}/validation" if lead and writer is None else None
        self._sums: dict[str, jax.Array] | None = None
        self._steps = 0
        self._clock: float | None = None
        self._excluded = 0.0
        self.last: dict[str, float] = {}

    def _start_clock(self, metrics: Mapping[str, jax.Array]) -> None:
        jax.block_until_ready(metrics)  # once: leaves compilation out of the first interval
        self._clock = time.perf_counter()
        self._sums, self._steps = None, 0

    def add(self, step: int, metrics: Mapping[str, jax.Array],
            learning_rate: float | None = None) -> dict[str, float] | None:
        """Record the metrics of the step that ended at `step`; returns the scalars written
        at a log step, else None."""
        if self._clock is None:
            self._start_clock(metrics)
            return None
        if self._sums is None:
            self._sums = dict(metrics)
        else:
            self._sums = {k: self._sums[k] + v for k, v in metrics.items()}
        self._steps += 1
        if step % self.log_every:
            return None
        return self._write(step, learning_rate)

    def _write(self, step: int, learning_rate: float | None) -> dict[str, float]:
        sums = {k: float(v) for k, v in jax.device_get(self._sums).items()}
        now = time.perf_counter()
        seconds, n = now - self._clock - self._excluded, self._steps
        scalars = {
            "loss": sums["loss"] / n,
            "z_loss": sums.get("z_loss", 0.0) / n,
            "grad_norm": sums.get("grad_norm", 0.0) / n,
            "seconds_per_step": seconds / n,
        }
        if sums.get("accuracy_denominator"):
            scalars["accuracy"] = sums["accuracy_numerator"] / sums["accuracy_denominator"]
        if learning_rate is not None:
            scalars["learning_rate"] = float(learning_rate)
        tokens = sums.get("num_input_tokens", 0.0) + sums.get("num_target_tokens", 0.0)
        scalars["tokens_per_second"] = tokens / seconds
        scalars["examples_per_second"] = sums.get("num_examples", 0.0) / seconds
        per_input, per_target = self.flops_per_token
        flops = (per_input * sums.get("num_input_tokens", 0.0)
                 + per_target * sums.get("num_target_tokens", 0.0))
        scalars["model_flops_per_second"] = flops / seconds
        if self.peak_total:
            scalars["mfu"] = flops / seconds / self.peak_total
        if self.train_writer is not None:
            self.train_writer.write_scalars(step, scalars)
            self.train_writer.flush()
        if jax.process_index() == 0:
            print(progress_line(step, scalars), flush=True)
        self._sums, self._steps, self._clock, self._excluded = None, 0, now, 0.0
        self.last = scalars
        return scalars

    @contextlib.contextmanager
    def paused(self):
        """Leave validation and checkpoint time out of the throughput figures."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._excluded += time.perf_counter() - start

    def write_eval(self, step: int, scalars: Mapping[str, float]) -> None:
        if self.eval_writer is None and self._eval_dir is not None:
            self.eval_writer = _summary_writer(self._eval_dir)
        if self.eval_writer is not None:
            self.eval_writer.write_scalars(step, dict(scalars))
            self.eval_writer.flush()
        if jax.process_index() == 0:
            shown = " | ".join(f"{k} {v:.4g}" for k, v in sorted(scalars.items()))
            print(f"step {step} validation | {shown}", flush=True)

    def close(self) -> None:
        for w in {id(w): w for w in (self.train_writer, self.eval_writer) if w}.values():
            w.close()


def progress_line(step: int, s: Mapping[str, float]) -> str:
    parts = [f"step {step}", f"loss {s['loss']:.4f}"]
    if "accuracy" in s:
        parts.append(f"acc {s['accuracy']:.3f}")
    if "learning_rate" in s:
        parts.append(f"lr {s['learning_rate']:.2e}")
    parts.append(f"{s['tokens_per_second']:.4g} tok/s")
    parts.append(f"{s['examples_per_second']:.4g} ex/s")
    if "mfu" in s:
        parts.append(f"MFU {100 * s['mfu']:.1f}%")
    else:
        parts.append(f"{s['model_flops_per_second']:.3g} FLOP/s (MFU n/a: no peak)")
    parts.append(f"{s['seconds_per_step']:.3f} s/step")
    return " | ".join(parts)
