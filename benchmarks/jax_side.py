"""This runtime's side of each benchmark, built through the functions the trainer and eval use.

The train step is `train.steps.jit_train_step(..., track_nonfinite=True)`, the trainer's
jitted, sharded, donated step; decoding is `train.steps.jit_predict_step`. Both run on a
one-device mesh (this CPU's cores are one XLA device).
"""
from __future__ import annotations

import functools
import resource
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing
from benchmarks.shapes import Shape
from train import models, network, optimizer, partitioning, steps, train_state
from train.config import MT5Config

LEARNING_RATE = 1e-3


def random_batch(shape: Shape, seed: int = 0) -> dict[str, np.ndarray]:
    """An unpacked EncDecFeatureConverter batch of real (non-padding) tokens, no EOS."""
    rng = np.random.default_rng(seed)
    b, li, lt, v = shape.batch_size, shape.input_length, shape.target_length, \
        shape.config.vocab_size
    targets = rng.integers(2, v, (b, lt)).astype(np.int32)
    return {"encoder_input_tokens": rng.integers(2, v, (b, li)).astype(np.int32),
            "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
            "decoder_target_tokens": targets,
            "decoder_loss_weights": np.ones((b, lt), np.float32)}


def write_weights(config: MT5Config, directory: str, seed: int = 0) -> str:
    """Random t5x-initialised weights as a Hugging Face directory both frameworks load."""
    from train.formats import huggingface

    params = jax.tree.map(np.asarray, network.init_params(config, jax.random.key(seed)))
    return huggingface.write_huggingface(directory, params, config, overwrite=True)


def load_params(config: MT5Config, directory: str) -> dict:
    from train.formats import huggingface

    return huggingface.read_huggingface(directory, network.abstract_params(config)).params


def _mesh() -> jax.sharding.Mesh:
    return partitioning.create_mesh(num_partitions=1, devices=jax.devices()[:1])


def build_train_step(config: MT5Config, mesh: jax.sharding.Mesh) -> tuple[Any, Any, Any]:
    """(steps.MeshFn (state, batch, rng, first_bad) -> (state, metrics, first_bad), state
    layout, optimizer): the trainer's step, NaN flag included."""
    rules = steps.rules_for()
    model = models.EncoderDecoderModel(config)
    adafactor = optimizer.AdafactorConfig()
    layout = steps.state_layout(model, mesh, rules, adafactor)
    tx = optimizer.adafactor(LEARNING_RATE, layout.param_axes, adafactor)
    return steps.jit_train_step(model, tx, layout, mesh, rules, track_nonfinite=True), layout, tx


def train(shape: Shape, weights_dir: str, warmup: int, reps: int) -> dict[str, Any]:
    """Median seconds per train step, the compiled step's memory analysis and peak RSS."""
    mesh = _mesh()
    step_fn, layout, tx = build_train_step(shape.config, mesh)
    params = load_params(shape.config, weights_dir)
    state = train_state.TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
    state = jax.device_put(state, layout.shardings)
    del params
    batch = jax.device_put(random_batch(shape), steps.batch_sharding(mesh))
    rng = jax.random.key(0)
    first_bad = jnp.asarray(-1, jnp.int32)
    start = time.perf_counter()
    compiled = step_fn.lower(state, batch, rng, first_bad).compile()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()
    losses = []

    def one_step():
        nonlocal state, first_bad
        with step_fn.context():
            state, metrics, first_bad = compiled(state, batch, rng, first_bad)
        losses.append(float(metrics["loss"]) / float(metrics["num_target_tokens"]))

    seconds = timing.repeat(one_step, warmup, reps)
    return {"step_seconds": seconds, "compile_seconds": compile_s,
            "first_loss_per_token": losses[0],
            "memory": _memory_dict(memory), "peak_rss_bytes": peak_rss_bytes(),
            "nonfinite": int(first_bad) >= 0}


def _memory_dict(memory: Any) -> dict[str, int]:
    names = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
             "temp_size_in_bytes", "generated_code_size_in_bytes")
    return {n: int(getattr(memory, n, 0) or 0) for n in names}


def peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def decode(config: MT5Config, weights_dir: str, batch_size: int, input_length: int,
           decode_length: int, warmup: int, reps: int) -> dict[str, Any]:
    """Greedy decoding through `steps.jit_predict_step`; tokens of the last call."""
    mesh = _mesh()
    model = models.EncoderDecoderModel(config)
    rules = steps.rules_for()
    shardings = steps.param_shardings(model, mesh, rules)
    params = jax.device_put(load_params(config, weights_dir), shardings)
    inputs = random_batch(Shape("decode", config, batch_size, input_length, 1), seed=1)
    batch = jax.device_put({"encoder_input_tokens": inputs["encoder_input_tokens"]},
                           steps.batch_sharding(mesh))
    fn = steps.jit_predict_step(model, mesh, rules, shardings, max_decode_len=decode_length)
    encode = steps.MeshFn(lambda p, b: model.module().apply(
        {"params": p}, b["encoder_input_tokens"], enable_dropout=False, method="encode"),
        mesh, rules)
    out = {}

    def call():
        out["tokens"] = np.asarray(fn(params, batch)["tokens"])

    seconds = timing.repeat(call, warmup, reps)
    encoder_seconds = timing.repeat(lambda: encode(params, batch).block_until_ready(), 1, reps)
    return {"seconds": seconds, "encoder_seconds": encoder_seconds,
            "tokens": out["tokens"].tolist(),
            "encoder_input_tokens": inputs["encoder_input_tokens"].tolist()}


def peak_matmul(dtype: str, n: int, reps: int) -> dict[str, Any]:
    """Best-case matmul FLOP/s of XLA on this CPU: an n x n x n jitted dot."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
    b = jnp.asarray(np.random.default_rng(1).standard_normal((n, n)), dtype)
    f = jax.jit(functools.partial(jnp.dot, preferred_element_type=jnp.dtype(dtype)))
    seconds = timing.repeat(lambda: f(a, b).block_until_ready(), 2, reps)
    return {"seconds": seconds, "flops": 2.0 * n ** 3}
