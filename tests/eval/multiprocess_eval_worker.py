"""One process of the 2-process evaluation rehearsal (run by
tests/eval/test_multiprocess_eval.py).

`python -m tests.eval.multiprocess_eval_worker PROCESS_ID PORT WORKDIR` joins the same kind of
2-process `jax.distributed` CPU job as `tests.train.multiprocess_worker` (4 devices each), then
runs `python -m eval` (its `main`) on the tiny checkpoint `WORKDIR/model/checkpoint_0` for each
case of `CASES` into `WORKDIR/multi/<case>`, and writes the returned metrics to
`WORKDIR/process_<id>.json`. Importable without side effects: the parent takes the argv from it.
"""
from __future__ import annotations

import sys

GIN_FILE = "gin/models/mt5_tiny.gin"
# Decoding (XNLI, every language, greedy) and retrieval embedding + sharded top-k (Mewsli-X:
# the 212-entity candidate pool and every language's mentions).
CASES = {
    "xnli": ["--target=xnli", "--feature_lengths=inputs=64,targets=4"],
    "mewslix": ["--target=mewslix", "--feature_lengths=inputs=32,targets=32"],
}
BATCH_SIZE = 8


def checkpoint(workdir: str) -> str:
    return f"{workdir}/model/checkpoint_0"


def eval_argv(workdir: str, output_dir: str, case: str) -> list[str]:
    return [f"--gin_file={GIN_FILE}", f"--checkpoint={checkpoint(workdir)}",
            f"--output_dir={output_dir}", f"--batch_size={BATCH_SIZE}", *CASES[case]]


def main(process_id: int, port: int, workdir: str) -> None:
    import jax

    from tests.train import multiprocess_worker as base

    base.initialize(process_id, port)
    from eval import __main__ as eval_main

    results = {case: eval_main.main(eval_argv(workdir, f"{workdir}/multi/{case}", case))
               for case in CASES}
    base.write_report(workdir, process_id, {"process_index": jax.process_index(),
                                            "process_count": jax.process_count(),
                                            "results": results})
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
