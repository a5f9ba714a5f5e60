"""One process of a 2-process CPU "cluster" (run by tests/train/test_multiprocess.py).

`python -m tests.train.multiprocess_worker PROCESS_ID PORT WORKDIR` joins a
`jax.distributed` job on 127.0.0.1:PORT with gloo CPU collectives; with 4 host devices per
process the mesh spans 8 devices over 2 processes. It then
1. reads the first host batches of its input shard and assembles a global batch,
2. trains the tiny model 4 steps into `WORKDIR/full` (validating at the end),
3. trains 2 steps into `WORKDIR/resumed`, then resumes there to step 4,
and writes what it saw to `WORKDIR/process_<id>.json` for the parent to compare.
The module is importable without side effects: the parent takes the run's settings from it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

NUM_PROCESSES = 2
LOCAL_DEVICES = 4
FEATURE_LENGTHS = {"inputs": 32, "targets": 32}
INPUT_BATCHES = 2  # host batches compared per process


def train_args(model_dir: str) -> dict[str, Any]:
    """The run every process (and the parent's single-process reference) makes."""
    from tests.train import testing_tasks
    from train.config import MT5Config

    tiny = MT5Config(vocab_size=512, emb_dim=32, mlp_dim=64, num_heads=4, head_dim=8,
                     num_encoder_layers=1, num_decoder_layers=1, dtype="float32",
                     dropout_rate=0.1)
    return dict(model_dir=model_dir, mixture_or_task_name=testing_tasks.COPY_TASK,
                task_feature_lengths=FEATURE_LENGTHS, model_config=tiny, train_steps=4,
                batch_size=8, learning_rate=1e-2, save_every=2, keep_checkpoints=5,
                eval_split=None, log_every=1, loss_normalizing_factor="NUM_REAL_TARGET_TOKENS",
                data_axis_size=2, model_axis_size=4)


def data_config(global_batch_size: int):
    from tests.train import testing_tasks
    from train import input_pipeline

    return input_pipeline.DatasetConfig(testing_tasks.COPY_TASK, FEATURE_LENGTHS, "train",
                                        global_batch_size)


def _input_report(mesh) -> dict[str, Any]:
    """This process's first host batches, and the global batch assembled from the first."""
    import numpy as np
    from jax.experimental import multihost_utils

    from train import input_pipeline

    cfg = data_config(8)
    it = input_pipeline.host_dataset(cfg, mesh, repeat=True).as_numpy_iterator()
    host = [next(it) for _ in range(INPUT_BATCHES)]
    batch = input_pipeline.to_global(host[0], mesh)
    tokens = batch["encoder_input_tokens"]
    gathered = multihost_utils.process_allgather(tokens, tiled=True)
    local_rows = sorted({s.index[0].start for s in tokens.addressable_shards})
    return {
        "host_batches": [{k: v.tolist() for k, v in b.items()} for b in host],
        "global_shape": list(tokens.shape),
        "global_encoder_input_tokens": np.asarray(gathered).tolist(),
        "local_row_starts": local_rows,
    }


def main(process_id: int, port: int, workdir: str) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                               num_processes=NUM_PROCESSES, process_id=process_id)
    # Each process compiles the same programs three times (full run, 2 steps, resume).
    jax.config.update("jax_compilation_cache_dir", f"{workdir}/jax_cache_{process_id}")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    from train import partitioning, trainer

    mesh = partitioning.create_mesh(data_axis_size=2, model_axis_size=LOCAL_DEVICES)
    report: dict[str, Any] = {
        "process_index": jax.process_index(), "process_count": jax.process_count(),
        "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
        **_input_report(mesh),
    }
    runs = {}
    # The full run also validates at the end: with several processes the eval stream must
    # run a fixed number of steps in lockstep (eval_steps).
    validate = dict(eval_split="validation", eval_every=4, eval_steps=2)
    for name, model_dir, steps, extra in (("full", "full", 4, validate),
                                          ("first_half", "resumed", 2, {}),
                                          ("resumed", "resumed", 4, {})):
        args = train_args(f"{workdir}/{model_dir}")
        result = trainer.train(**{**args, "train_steps": steps, **extra})
        runs[name] = dataclasses.asdict(result)
    report["runs"] = runs
    with open(f"{workdir}/process_{process_id}.json.tmp", "w") as f:
        json.dump(report, f)
    os.replace(f"{workdir}/process_{process_id}.json.tmp", f"{workdir}/process_{process_id}.json")
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
