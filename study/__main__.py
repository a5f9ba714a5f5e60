"""The study's command line.

  python -m study run EXPERIMENT.gin [--study_dir DIR] [--executor local|subprocess]
                                     [--workers N]
  python -m study run-cell EXPERIMENT.gin --cell CELL_ID [--study_dir DIR] [--db FILE]
  python -m study status EXPERIMENT.gin [--study_dir DIR]
  python -m study report [--study_dir DIR] [--out DIR]

`--study_dir` defaults to `study_runs/<experiment name>`; it holds the results database
(results.sqlite), one model directory per cell (models/<cell id>/, with cell.log), the JAX
compilation cache and the report. A cell on a TPU slice (tpu_scripts.executor) has its model
directory on `gs://` and its own database (`--db`, study/cell_db.py), imported into the
study's when it ends. Errors are one line on stderr, exit status 1.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def quiet() -> None:
    """TF, seqio and the tasks imported without their start-up lines (`xitt_common.quiet`;
    nothing changed under --verbose)."""
    from eval.quiet import quiet_imports

    quiet_imports()


def _study_dir(args: argparse.Namespace, exp) -> str:
    from study import grid

    return grid.absolute(args.study_dir or os.path.join("study_runs", exp.name))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run (or resume) the whole grid")
    p_run.add_argument("experiment")
    p_run.add_argument("--study_dir")
    p_run.add_argument("--executor", choices=("local", "subprocess"), default="local")
    p_run.add_argument("--workers", type=int, default=1,
                       help="cells run side by side, one worker process each (default 1)")
    p_cell = sub.add_parser("run-cell", help="run one cell (what every executor runs)")
    p_cell.add_argument("experiment")
    p_cell.add_argument("--cell", required=True)
    p_cell.add_argument("--study_dir")
    p_cell.add_argument("--db", help="the cell's own results database (local or gs://), seeded "
                        "by the TPU executors; default: the study's, in --study_dir")
    p_status = sub.add_parser("status", help="done / running / failed / left")
    p_status.add_argument("experiment")
    p_status.add_argument("--study_dir")
    p_report = sub.add_parser("report", help="write the Markdown report with plots")
    p_report.add_argument("--study_dir", required=True)
    p_report.add_argument("--out", help="report directory (default <study_dir>/report)")
    p_worker = sub.add_parser("worker", help=argparse.SUPPRESS)
    p_worker.add_argument("experiment")
    p_worker.add_argument("--study_dir", required=True)
    p_worker.add_argument("--reply_fd", type=int, required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    quiet()
    try:
        if args.command == "run-cell":  # a cell on a multi-host slice (tpu_scripts' executor)
            from train import cli

            cli.maybe_initialize_distributed()
        return _dispatch(args)
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, KeyError) as e:
        from study.cell import one_line

        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    from study import experiment, grid

    if args.command == "report":
        from study import report

        db_path = os.path.join(os.path.abspath(args.study_dir), "results.sqlite")
        if not os.path.exists(db_path):
            raise FileNotFoundError(f"{db_path}: no results database (run the study first)")
        out = args.out or os.path.join(os.path.abspath(args.study_dir), "report")
        path = report.write_report(db_path, out)
        print(f"report: {path}")
        return 0

    exp = experiment.load(args.experiment)
    study_dir = _study_dir(args, exp)
    if args.command == "worker":
        from study import executors

        executors.worker_main(args.experiment, study_dir, args.reply_fd)
        return 0
    from study.cell import DB_FILE
    from study.db import ResultsDB

    if args.command == "status":
        from study import status

        db_path = os.path.join(study_dir, DB_FILE)
        if not os.path.exists(db_path):
            raise FileNotFoundError(f"{db_path}: no results database (nothing has run yet)")
        with ResultsDB(db_path, create=False) as db:
            records = {r.cell_id: r for r in db.cells()}
        print(status.render(status.summarize(grid.build(exp, study_dir), records)))
        return 0
    if args.command == "run-cell" and args.db:  # on a TPU slice: the cell's own database
        import jax

        from study import cell, cell_db

        cell.enable_compilation_cache(study_dir)
        with cell_db.opened(args.db, write_back=jax.process_index() == 0) as db:
            cell.run_cell(exp, args.cell, study_dir, db=db)
        return 0
    if grid.is_remote(study_dir):
        fix = ("give run-cell --db (tpu_scripts.executor does)" if args.command == "run-cell"
               else "run the study with python -m tpu_scripts.executor (--local_dir holds "
                    "the database)")
        raise ValueError(f"--study_dir {study_dir}: the results database is an SQLite file on "
                         f"this machine; with model directories on an object store {fix}")
    os.makedirs(study_dir, exist_ok=True)
    db = ResultsDB(os.path.join(study_dir, DB_FILE))  # refuses another schema version
    if args.command == "run-cell":
        from study import cell

        cell.enable_compilation_cache(study_dir)
        try:
            cell.run_cell(exp, args.cell, study_dir, db=db)
        finally:
            db.close()
        return 0
    from study import executors, runner, status

    if args.workers < 1:
        raise ValueError(f"--workers {args.workers}: expected at least 1")
    pool = [executors.LocalExecutor(args.experiment, study_dir,
                                    "worker.log" if i == 0 else f"worker-{i}.log")
            if args.executor == "local" else executors.SubprocessExecutor()
            for i in range(args.workers)]
    print(f"study {exp.name}: {len(exp.sizes)} sizes x {len(exp.conditions)} conditions x "
          f"{len(exp.targets)} targets -> {study_dir}", file=sys.stderr)
    try:
        summary = runner.run(exp, study_dir, pool, db=db)
    finally:
        db.close()
    print(status.render(summary))
    return 0 if not summary.failed and not summary.blocked else 1


if __name__ == "__main__":
    from xitt_common.quiet import entry_point

    entry_point(libraries=False)  # first: no library lines unless --verbose
    sys.exit(main())
