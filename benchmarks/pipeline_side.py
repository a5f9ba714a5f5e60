"""Input-pipeline throughput and all-language evaluation (wall time, number of compilations).

Both read the shipped sample data through the registered seqio tasks (`xitt_tasks`), exactly
as the trainer (`train.input_pipeline`) and `python -m eval` (`eval.predict`) do.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import jax
import numpy as np

from benchmarks import timing

TRAIN_TASK = "xitt.xnli.train.en"  # MNLI, the intermediate task the study trains most
EVAL_TARGETS = ("xnli", "wikiann")
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def input_pipeline(batch_size: int, input_length: int, target_length: int, warmup: int,
                   batches: int) -> dict[str, Any]:
    """Seconds per packed batch (tokenise, pack, batch; host side) and examples per batch."""
    import xitt_tasks  # noqa: F401  (registers the tasks)
    from train import input_pipeline, partitioning

    mesh = partitioning.create_mesh(num_partitions=1, devices=jax.devices()[:1])
    cfg = input_pipeline.DatasetConfig(TRAIN_TASK, {"inputs": input_length,
                                                    "targets": target_length}, "train",
                                       batch_size, shuffle=True, seed=0, pack=True)
    it = input_pipeline.host_dataset(cfg, mesh, repeat=True).as_numpy_iterator()
    examples = []

    def one_batch():
        batch = next(it)
        examples.append(int(np.sum(np.max(batch["decoder_segment_ids"], axis=1))))

    seconds = timing.repeat(one_batch, warmup, batches)
    return {"seconds": seconds, "examples_per_batch": float(np.mean(examples[warmup:]))}


def evaluate_all_languages(batch_size: int, input_length: int, target_length: int,
                           max_languages: int | None = None) -> dict[str, Any]:
    """Decode every language of XNLI and WikiANN (validation) with one compiled function.

    Compilations are counted with jax.monitoring's backend-compile event, separately for the
    first language and for all the others, so growth with the language count shows directly.
    `max_languages` keeps the first few languages of each target (for --quick).
    """
    import xitt_tasks
    from eval import predict
    from train import network
    from train.config import MT5Config
    from xitt_tasks import vocab as vocab_lib

    vocab = vocab_lib.get_vocabulary()
    config = MT5Config(vocab_size=max(2048, vocab.vocab_size), emb_dim=64, num_heads=4,
                       head_dim=16, mlp_dim=128, num_encoder_layers=2, num_decoder_layers=2,
                       dtype="float32")
    params = network.init_params(config, jax.random.key(0))
    settings = predict.EvalSettings(
        feature_lengths={"inputs": input_length, "targets": target_length},
        batch_size=batch_size)
    batch_fn = predict.make_batch_fn(network.Transformer(config), settings)
    compiles = [0]

    def listener(event: str, duration: float, **_: Any) -> None:
        if event == COMPILE_EVENT:
            compiles[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    tasks = [xitt_tasks.eval_task_name(t, lang) for t in EVAL_TARGETS
             for lang in xitt_tasks.languages.TASK_LANGUAGES[t][:max_languages]]
    per_task, examples = [], 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        for task in tasks:
            before = compiles[0]
            t0 = time.perf_counter()
            predict.evaluate_task(task, params, batch_fn, settings, os.path.join(out, task))
            per_task.append({"task": task, "seconds": time.perf_counter() - t0,
                             "compilations": compiles[0] - before})
            examples += _count_lines(os.path.join(out, task, predict.PREDICTIONS_FILE))
    return {"seconds": time.perf_counter() - start, "tasks": per_task, "examples": examples,
            "compilations_total": compiles[0]}


def _count_lines(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)
