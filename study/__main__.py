"""The study's command line.

  python -m study run EXPERIMENT.gin [--study_dir DIR] [--sizes base,large] [--local_dir DIR]
                                     [--rerun_changed] [--executor local|subprocess]
                                     [--workers N]
  python -m study run-cell EXPERIMENT.gin --cell CELL_ID [--study_dir DIR] [--db FILE]
  python -m study status EXPERIMENT.gin [--study_dir DIR] [--local_dir DIR]
  python -m study merge EXPERIMENT.gin --study_dir DIR [SRC.sqlite ...] [--into FILE]
  python -m study report [--study_dir DIR] [--experiment EXPERIMENT.gin] [--out DIR]
  python -m study simulate [--studies N] [--true_slope B] [--seeds R] [--json]
  python -m study simulate --fit_power SIMULATE.json [...]
  python -m study plan EXPERIMENT.gin --detect_slope -1.0 --power 0.8 [--sizes a,b,...]
  python -m study budget EXPERIMENT.gin [--estimate TOKENS_PER_EXAMPLE]

`--study_dir` defaults to `study_runs/<experiment name>`; it holds the results database
(results.sqlite), one model directory per cell (models/<cell id>/, with cell.log), the JAX
compilation cache and the report. `--sizes` runs some of the experiment's sizes; with
`--local_dir` the coordinator keeps its database there and copies it to
`<study_dir>/databases/<sizes>.sqlite` as cells end (several coordinators, one per set of
sizes, can run at once; `merge` puts their copies together into `<study_dir>/results.sqlite`).
A run refuses finished cells made under other settings (listing them) unless
`--rerun_changed`; `report` refuses a database whose finished cells differ from the
experiment's recipe. A cell on a TPU slice (tpu_scripts.executor) has its model
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
    p_run.add_argument("--sizes", help="comma-separated sizes of the experiment to run "
                       "(default: all)")
    p_run.add_argument("--local_dir", help="this coordinator's database (results.sqlite) and "
                       "worker logs, copied to <study_dir>/databases/ as cells end; started "
                       "from that copy when missing (default: the database in --study_dir)")
    p_run.add_argument("--rerun_changed", action="store_true",
                       help="re-run finished cells made under other settings, and their "
                       "dependents (default: refuse, listing the differences)")
    p_cell = sub.add_parser("run-cell", help="run one cell (what every executor runs)")
    p_cell.add_argument("experiment")
    p_cell.add_argument("--cell", required=True)
    p_cell.add_argument("--study_dir")
    p_cell.add_argument("--db", help="the cell's own results database (local or gs://), seeded "
                        "by the TPU executors; default: the study's, in --study_dir")
    p_status = sub.add_parser("status", help="done / running / failed / left")
    p_status.add_argument("experiment")
    p_status.add_argument("--study_dir")
    p_status.add_argument("--local_dir", help="a coordinator's database (as given to run)")
    p_merge = sub.add_parser("merge", help="coordinators' databases into one")
    p_merge.add_argument("experiment")
    p_merge.add_argument("sources", nargs="*", help="databases (local or gs://); default "
                         "every copy in <study_dir>/databases/")
    p_merge.add_argument("--study_dir", required=True)
    p_merge.add_argument("--into", help="the merged database (default "
                         "<study_dir>/results.sqlite; required for a gs:// study_dir)")
    p_report = sub.add_parser("report", help="write the Markdown report with plots")
    p_report.add_argument("--study_dir", required=True)
    p_report.add_argument("--out", help="report directory (default <study_dir>/report)")
    p_report.add_argument("--experiment", help="the experiment whose recipe the finished cells "
                          "must match (default: the file the study was run from)")
    p_sim = sub.add_parser("simulate", help="calibration of the primary slope's interval on "
                           "studies with a known truth (study/simulate.py)")
    p_sim.add_argument("--studies", type=int, default=1000)
    p_sim.add_argument("--true_slope", type=float, default=0.0,
                       help="points per 10x parameters of the overall gain")
    p_sim.add_argument("--seeds", type=int, default=3)
    p_sim.add_argument("--sizes", help="comma-separated mT5 sizes (default base,large,xl,xxl)")
    p_sim.add_argument("--items", type=int, default=100, help="items per target and language")
    p_sim.add_argument("--seed", type=int, default=0, help="study i uses seed + i")
    p_sim.add_argument("--workers", type=int, default=2)
    p_sim.add_argument("--json", action="store_true")
    p_sim.add_argument("--fit_power", nargs="+", metavar="SIMULATE_JSON",
                       help="refit study/data/power_fit.json (the planner's kappa) from "
                       "saved --json outputs")
    p_plan = sub.add_parser("plan", help="seeds, sizes and chip-hours to detect a slope")
    p_plan.add_argument("experiment")
    p_plan.add_argument("--detect_slope", type=float, required=True)
    p_plan.add_argument("--power", type=float, default=0.8)
    p_plan.add_argument("--sizes", help="comma-separated sizes (default: the experiment's)")
    p_plan.add_argument("--seed_sd", type=float, default=1.0,
                        help="assumed seed sd per (run, target), points (default 1.0)")
    p_plan.add_argument("--run_sd", type=float, default=0.5,
                        help="assumed seed sd shared by a run's targets, points (default 0.5)")
    p_plan.add_argument("--items", type=int, help="items per language (default: EVAL_ITEMS)")
    p_plan.add_argument("--mfu", type=float, default=0.4)
    p_plan.add_argument("--eval_mfu", type=float, default=0.1)
    p_plan.add_argument("--generation", default="v5e")
    p_budget = sub.add_parser("budget", help="the published epochs as packed steps on the data "
                              "read now (exit 1 where the experiment file differs)")
    p_budget.add_argument("experiment")
    p_budget.add_argument("--estimate", type=float, metavar="T",
                          help="no data: the published training-set sizes at T input tokens "
                          "per example")
    p_worker = sub.add_parser("worker", help=argparse.SUPPRESS)
    p_worker.add_argument("experiment")
    p_worker.add_argument("--study_dir", required=True)
    p_worker.add_argument("--reply_fd", type=int, required=True)
    p_worker.add_argument("--db", required=True)
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.command == "merge" and not any(e.startswith("-") for e in extra):
        args.sources += extra  # sources after --study_dir (argparse stops at the option)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")

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


def _simulate(args: argparse.Namespace) -> int:
    from study import simulate

    return simulate.main(args)


def _plan(args: argparse.Namespace) -> int:
    from study import experiment, plan
    from tpu_scripts import cost, topology  # the entry point wires costing into the planner

    if args.generation not in topology.CHIPS:
        raise ValueError(f"--generation {args.generation}: expected one of "
                         f"{', '.join(sorted(topology.CHIPS))}")
    chip = topology.CHIPS[args.generation]
    exp = experiment.load(args.experiment, check_files=False)
    print(plan.plan(exp, args.sizes.split(",") if args.sizes else None, args.detect_slope,
                    args.power, (args.seed_sd, args.run_sd),
                    lambda e: cost.per_seed_chip_hours(e, chip, args.mfu, args.eval_mfu),
                    cost.EVAL_ITEMS, args.items))
    return 0


def _budget(args: argparse.Namespace) -> int:
    from study import budget, experiment

    exp = experiment.load(args.experiment, check_files=False)
    if not budget.phases(exp):
        print(f"{args.experiment}: no phase declares a budget in epochs (`epochs`)")
        return 0
    if args.estimate is not None:
        counted = budget.estimate(exp, args.estimate)
        print(f"estimate: published training-set sizes, {args.estimate:g} input tokens per "
              "example (phases without a published size are left out)")
    else:
        counted = budget.measure(exp, progress=lambda line: print(line, file=sys.stderr))
        print("measured on the data read now (XITT_DATA_DIR, XITT_VOCAB, XITT_SOURCE)")
    rows = budget.budgets(exp, counted)
    print(budget.table(rows))
    wrong = [r for r in rows if not r.agrees]
    if wrong:
        print(f"set in {args.experiment}:", *budget.fix_lines(exp, wrong), sep="\n  ")
    return 1 if wrong else 0


def _dispatch(args: argparse.Namespace) -> int:
    from study import experiment, grid

    if args.command in ("simulate", "plan"):
        return _simulate(args) if args.command == "simulate" else _plan(args)
    if args.command == "budget":
        return _budget(args)

    if args.command == "report":
        from study import report

        db_path = os.path.join(os.path.abspath(args.study_dir), "results.sqlite")
        if not os.path.exists(db_path):
            raise FileNotFoundError(f"{db_path}: no results database (run the study first)")
        _check_recipe(db_path, args.experiment, args.study_dir)
        out = args.out or os.path.join(os.path.abspath(args.study_dir), "report")
        path = report.write_report(db_path, out)
        print(f"report: {path}")
        return 0

    exp = experiment.load(args.experiment)
    study_dir = _study_dir(args, exp)
    if args.command == "worker":
        from study import executors

        executors.worker_main(args.experiment, study_dir, args.reply_fd, args.db)
        return 0
    if args.command == "merge":
        return _merge(args, exp, study_dir)
    from study.cell import DB_FILE
    from study.db import ResultsDB

    if args.command == "status":
        from study import status

        db_path = os.path.join(grid.absolute(args.local_dir or study_dir), DB_FILE)
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
    if args.command == "run-cell":
        from study import cell

        db = ResultsDB(os.path.join(study_dir, DB_FILE))  # refuses another schema version
        cell.enable_compilation_cache(study_dir)
        try:
            cell.run_cell(exp, args.cell, study_dir, db=db)
        finally:
            db.close()
        return 0
    return _run(args, exp, study_dir)


def _run(args: argparse.Namespace, exp, study_dir: str) -> int:
    from study import db_copies, executors, experiment, runner, status
    from study.cell import DB_FILE
    from study.db import ResultsDB

    if args.workers < 1:
        raise ValueError(f"--workers {args.workers}: expected at least 1")
    exp = experiment.select_sizes(exp, args.sizes)
    sizes = [s.name for s in exp.sizes]
    work_dir, copy = study_dir, None
    if args.local_dir:
        work_dir = os.path.abspath(args.local_dir)
        copy = db_copies.copy_path(study_dir, db_copies.coordinator_name(
            sizes if args.sizes else None))
    db_path = os.path.join(work_dir, DB_FILE)
    if copy is not None and not os.path.exists(db_path) and db_copies.fetch(copy, db_path):
        print(f"started from the copy {copy}", file=sys.stderr)
    os.makedirs(work_dir, exist_ok=True)
    db = ResultsDB(db_path)  # refuses another schema version
    pool = [executors.LocalExecutor(args.experiment, study_dir,
                                    os.path.join(work_dir, f"worker{f'-{i}' if i else ''}.log"),
                                    db_path=db_path)
            if args.executor == "local" else executors.SubprocessExecutor()
            for i in range(args.workers)]
    print(f"study {exp.name}: sizes {', '.join(sizes)} x {len(exp.conditions)} conditions x "
          f"{len(exp.targets)} targets -> {study_dir}", file=sys.stderr)
    publish = None if copy is None else (lambda: db_copies.publish(db_path, copy))
    try:
        summary = runner.run(exp, study_dir, pool, db=db, rerun_changed=args.rerun_changed,
                             on_cell_end=publish)
    finally:
        db.close()
    print(status.render(summary))
    return 0 if not summary.failed and not summary.blocked else 1


def _merge(args: argparse.Namespace, exp, study_dir: str) -> int:
    from study import db_copies, grid, merge

    into = args.into
    if into is None:
        if grid.is_remote(study_dir):
            raise ValueError(f"--study_dir {study_dir} is on an object store: give --into "
                             "FILE (a local database)")
        into = os.path.join(study_dir, "results.sqlite")
    sources = args.sources or db_copies.list_copies(study_dir)
    counts = merge.merge(exp, study_dir, sources, into)
    print(f"merged {len(sources)} database(s) into {into}: {counts['imported']} cell(s) "
          f"imported, {counts['done']} done")
    return 0


def _check_recipe(db_path: str, experiment_file: str | None, study_dir: str) -> None:
    """Refuse to report finished cells made under another recipe than the experiment's."""
    from study import experiment, fingerprint, grid, merge
    from study.db import ResultsDB

    with ResultsDB(db_path, create=False) as db:
        path = experiment_file or db.meta().get("experiment_file")
        if path is None:
            return  # not written by `run` (a simulated or hand-built database): no recipe
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: the experiment this study was run from is not "
                                    "here; give report --experiment FILE")
        exp = experiment.load(path)
        current = fingerprint.compute(exp, grid.build(exp, grid.absolute(study_dir)))
        wrong = merge.problems(exp, db_path, db, current)
    if wrong:
        raise fingerprint.RecipeChanged(
            f"not reported (a report never mixes recipes): {'; '.join(wrong)}; run python -m "
            f"study run {path} --rerun_changed first")


if __name__ == "__main__":
    from xitt_common.quiet import entry_point

    entry_point(libraries=False)  # first: no library lines unless --verbose
    sys.exit(main())
