"""One process of a 2-process CPU "cluster" (run by tests/train/test_multiprocess.py).

`python -m tests.train.multiprocess_worker PROCESS_ID PORT WORKDIR` joins a
`jax.distributed` job on 127.0.0.1:PORT with gloo CPU collectives; with 4 host devices per
process the mesh spans 8 devices over 2 processes. It then
1. reads the first host batches of its input shard and assembles a global batch,
2. trains the tiny model 4 steps into `WORKDIR/full` (validating at the end),
3. trains 2 steps into `WORKDIR/resumed`, then resumes there to step 4,
and writes what it saw to `WORKDIR/process_<id>.json` for the parent to compare.
With a fourth argument `dual_encoder` it instead trains the tiny `DualEncoderModel` a few steps
on the shipped Mewsli-X English pairs into `WORKDIR/dual` and restores that checkpoint on both
processes (`dual_encoder_args`).
The module is importable without side effects: the parent takes the run's settings from it,
and `launch` (the parent's side) starts the processes of any such worker module.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
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


DUAL_LENGTHS = {"inputs": 32, "targets": 32}


def dual_encoder_args(model_dir: str) -> dict[str, Any]:
    """The dual-encoder run: 3 steps on Mewsli-X English pairs, a 2x4 mesh, one checkpoint."""
    import xitt_tasks  # noqa: F401  (registers the tasks; tests sit above xitt_tasks)
    from train.config import MT5Config
    from train.dual_encoder import DualEncoderModel

    tiny = MT5Config(vocab_size=1280, emb_dim=32, mlp_dim=64, num_heads=4, head_dim=8,
                     num_encoder_layers=1, num_decoder_layers=1, dtype="float32",
                     dropout_rate=0.1)
    return dict(model_dir=model_dir, mixture_or_task_name="xitt.mewslix.train.en",
                task_feature_lengths=DUAL_LENGTHS,
                model=DualEncoderModel(tiny, projection_dim=16, logit_scale=20.0),
                train_steps=3, batch_size=8, learning_rate=1e-2, save_every=3,
                keep_checkpoints=1, eval_split=None, log_every=1, pack=False,
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


def initialize(process_id: int, port: int) -> None:
    """Join the 2-process job on 127.0.0.1:port with gloo CPU collectives."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                               num_processes=NUM_PROCESSES, process_id=process_id)


def write_report(workdir: str, process_id: int, report: dict[str, Any]) -> None:
    path = f"{workdir}/process_{process_id}.json"
    with open(f"{path}.tmp", "w") as f:
        json.dump(report, f)
    os.replace(f"{path}.tmp", path)


def dual_encoder_main(process_id: int, workdir: str) -> None:
    """Train the dual encoder in both processes, then restore its checkpoint in both."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    from train import checkpoints, partitioning, settings, steps, trainer

    args = dual_encoder_args(f"{workdir}/dual")
    result = trainer.train(**settings.from_keywords(**args))
    model = args["model"].unscanned()
    mesh = partitioning.create_mesh(data_axis_size=2, model_axis_size=LOCAL_DEVICES)
    shardings = steps.param_shardings(model, mesh, steps.rules_for())
    restored = checkpoints.load_params(args["model_dir"], model.abstract_params(), shardings)
    gathered = multihost_utils.process_allgather(restored, tiled=True)
    write_report(workdir, process_id, {
        "process_index": jax.process_index(), "result": dataclasses.asdict(result),
        "restored_sharding": str(jax.tree.leaves(restored)[0].sharding.spec),
        "restored": {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v).tolist()
                     for path, v in jax.tree_util.tree_leaves_with_path(gathered)}})


def launch(module: str, workdir: str, args: Sequence[str] = (), timeout_s: int = 300
           ) -> list[dict[str, Any]]:
    """Run `python -m module PROCESS_ID PORT WORKDIR *args` as the 2 processes of one job on
    this machine (4 CPU devices each); their reports `WORKDIR/process_<i>.json`, by index.
    Raises RuntimeError with the log tail of a worker that fails or times out. The timeout
    can be raised with $XITT_MULTIPROCESS_TIMEOUT_S (a heavily shared machine)."""
    timeout_s = int(os.environ.get("XITT_MULTIPROCESS_TIMEOUT_S", timeout_s))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={LOCAL_DEVICES}",
           "PYTHONPATH": root, "PYTHONUNBUFFERED": "1"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs, logs = [], []
    try:
        for i in range(NUM_PROCESSES):
            log = open(f"{workdir}/process_{i}.log", "w")
            logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", module, str(i), str(port), workdir, *args],
                cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT))
        for p in procs:
            try:
                p.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"multi-process workers did not finish in {timeout_s} s; "
                                   f"logs in {workdir}") from None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    for i, p in enumerate(procs):
        if p.returncode != 0:
            with open(f"{workdir}/process_{i}.log") as f:
                tail = f.read()[-4000:]
            raise RuntimeError(f"worker {i} exited with {p.returncode}:\n{tail}")
    reports = []
    for i in range(NUM_PROCESSES):
        with open(f"{workdir}/process_{i}.json") as f:
            reports.append(json.load(f))
    return reports


def main(process_id: int, port: int, workdir: str, mode: str = "trainer") -> None:
    import jax

    initialize(process_id, port)
    if mode == "dual_encoder":
        dual_encoder_main(process_id, workdir)
        jax.distributed.shutdown()
        return
    # Each process compiles the same programs three times (full run, 2 steps, resume).
    jax.config.update("jax_compilation_cache_dir", f"{workdir}/jax_cache_{process_id}")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    from train import partitioning, settings, trainer

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
        result = trainer.train(**settings.from_keywords(**{**args, "train_steps": steps,
                                                            **extra}))
        runs[name] = dataclasses.asdict(result)
    report["runs"] = runs
    write_report(workdir, process_id, report)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:])
