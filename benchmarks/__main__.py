"""`python -m benchmarks [--quick] [--only train,decode,input,eval,memory,peak]`.

Runs the sections in order, each measurement in a fresh worker process, and rewrites the
results block of BENCHMARKS.md after every section (so a long run leaves what it has).
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from collections.abc import Sequence

SECTIONS = ("peak", "train", "memory", "decode", "input", "eval")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes and few repetitions: checks the harness in minutes")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections out of {','.join(SECTIONS)}")
    parser.add_argument("--output", default="BENCHMARKS.md")
    parser.add_argument("--workdir", default=None,
                        help="where the shared weights are written (default: a temp dir)")
    args = parser.parse_args(list(argv))
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = sorted(set(only) - set(SECTIONS))
    if bad:
        parser.error(f"--only: unknown section(s) {bad}; expected some of {list(SECTIONS)}")
    args.only = only
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks import report, shapes, suite, timing

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    command = "python -m benchmarks " + " ".join(argv)
    machine = report.machine_description()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    rows: list[report.Row] = []

    def log(message: str) -> None:
        print(message, flush=True)

    def publish(complete: bool = False) -> None:
        report.write(args.output, report.render(rows, command, machine, date, complete))

    failures: list[str] = []

    def guarded(section: str, fn) -> None:
        """Run one section; a failure becomes a table row and the next section still runs."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported in the table and the exit status
            first = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            rows.append(report.Row(section, "FAILED", first[:200].replace("|", "/")))
            failures.append(section)
            log(f"{section}: FAILED: {first}")
        publish()

    train_shapes = shapes.train_shapes(args.quick)
    big, small = train_shapes
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        settings = suite.Settings.make(args.quick, workdir)
        peaks: dict[str, float] = {}
        trained: dict[str, dict] = {}

        def peak() -> None:
            log("peak: matmul FLOP/s, f32 and bf16, JAX and PyTorch")
            peak_rows, found = suite.peak_rows(suite.run_peak(settings))
            rows.extend(peak_rows)
            peaks.update(found)

        def train() -> None:
            for shape in train_shapes:
                log(f"train: {shape.name} (ours, PyTorch default, PyTorch tuned malloc)")
                res = trained[shape.name] = suite.run_train(settings, shape)
                rows.extend(suite.train_rows(shape, res["jax"], res["torch_default"],
                                             res["torch_tuned"], peaks.get("float32"),
                                             mfu_target=shape is small))
                publish()

        def memory() -> None:
            log(f"memory: {big.name}")
            res = trained.get(big.name)
            if res is None:
                one = {"quick": args.quick, "shape": big.name,
                       "dir": os.path.join(workdir, big.name), "warmup": 0, "steps": 1}
                timing.run_worker("write_weights", one)
                res = {"jax": timing.run_worker("jax_train", one), "torch_default": None}
            rows.extend(suite.memory_rows(big, res["jax"], res["torch_default"]))

        def decode() -> None:
            for shape in (small, big):
                log(f"decode: {shape.name} greedy, batch {settings.decode_batch}")
                res, length = suite.run_decode(settings, shape)
                rows.extend(suite.decode_rows(shape, res["jax"], res["torch"],
                                              settings.decode_batch, length))
                publish()

        def input_() -> None:
            log(f"input: seqio pipeline at the {small.name} batch and lengths")
            res = timing.run_worker("input", {
                "batch_size": small.batch_size, "input_length": small.input_length,
                "target_length": small.target_length, "warmup": 2,
                "batches": 10 if args.quick else 30})
            step = trained.get(small.name)
            step_s = timing.median(step["jax"]["step_seconds"]) if step else None
            rows.extend(suite.input_rows(small, res, step_s))

        def eval_() -> None:
            log("eval: every language of XNLI and WikiANN")
            res = timing.run_worker("eval", {"batch_size": 32, "input_length": 128,
                                             "target_length": 32,
                                             "max_languages": 3 if args.quick else None})
            rows.extend(suite.eval_rows(res))

        wanted = set(args.only) | ({"peak"} if "train" in args.only else set())
        for name, fn in (("peak", peak), ("train", train), ("memory", memory),
                         ("decode", decode), ("input", input_), ("eval", eval_)):
            if name in wanted:
                guarded(name, fn)
    publish(complete=not failures)
    log(f"wrote {args.output}" + (f"; failed sections: {failures}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    from xitt_common.quiet import entry_point

    entry_point(libraries=False)  # first: no library lines unless --verbose
    sys.exit(main())
