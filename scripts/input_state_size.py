"""What the training input state costs: bytes on disk and seconds to save and restore.

The state that every checkpoint holds per process (`train_ds-<p>-of-<n>.*`, see
train/input_pipeline.py) is measured for a task or mixture after some steps:

  python scripts/input_state_size.py xitt.inter.multitask --lengths 512,128 --batch 32
  python scripts/input_state_size.py xitt.xnli.train.en --steps 20

It holds positions plus the buffers in flight (seqio's shuffle window of each task, packing,
prefetch); the file sources' permutation is stateless. Reads $XITT_DATA_DIR (default: the
shipped sample, whose tiny splits still fill each 1,000-example window by repetition, so the
figures are those of real data with examples of the sample's length).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="registered task or mixture (xitt_tasks)")
    parser.add_argument("--lengths", default="512,128", help="inputs,targets lengths")
    parser.add_argument("--batch", type=int, default=32, help="host batch size")
    parser.add_argument("--steps", type=int, default=10, help="batches drawn before saving")
    parser.add_argument("--no_pack", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax

    import xitt_tasks  # noqa: F401  (registers the tasks)
    from train import input_pipeline, partitioning

    inputs, targets = (int(x) for x in args.lengths.split(","))
    mesh = partitioning.create_mesh(devices=jax.devices()[:1])
    cfg = input_pipeline.DatasetConfig(args.name, {"inputs": inputs, "targets": targets},
                                       "train", args.batch, pack=not args.no_pack)
    with tempfile.TemporaryDirectory() as tmp:
        with input_pipeline.train_iterator(cfg, mesh) as it:
            for _ in range(args.steps):
                next(it)
            t0, c0 = time.perf_counter(), time.process_time()
            it.save(tmp)
            save_s, save_cpu = time.perf_counter() - t0, time.process_time() - c0
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
        with input_pipeline.train_iterator(cfg, mesh, args.steps, restore_dir=tmp) as it:
            t0, c0 = time.perf_counter(), time.process_time()
            next(it)
            first_s, first_cpu = time.perf_counter() - t0, time.process_time() - c0
            assert it.replayed_batches == 0
    print(f"{args.name} lengths {inputs},{targets} host batch {args.batch} pack "
          f"{not args.no_pack}, after {args.steps} batches: state {size / 2**20:.2f} MiB per "
          f"process; save {save_s:.2f} s ({save_cpu:.2f} s CPU, all threads), restore + first "
          f"batch {first_s:.2f} s ({first_cpu:.2f} s CPU)")


if __name__ == "__main__":
    main()
