"""`python -m xitt_tasks.prepare --data_dir DIR [--only TASKS]`: download and convert the data
root; `... --check --data_dir DIR [--only TASKS] [--eval_only]`: validate one (exit 0 only when
every checked split is complete). See xitt_tasks/README.md."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xitt_tasks.prepare import check, pipeline, units


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m xitt_tasks.prepare", description=__doc__)
    p.add_argument("--data_dir", required=True, help="the data root, local or gs://")
    p.add_argument("--check", action="store_true", help="validate instead of preparing")
    p.add_argument("--only", help="comma-separated targets / intermediate tasks "
                                  f"({','.join(units.groups())}); default: all")
    p.add_argument("--eval_only", action="store_true",
                   help="only the evaluation splits of the named targets")
    p.add_argument("--jobs", type=int, default=8, help="parallel downloads")
    p.add_argument("--cache_dir", help="where downloads are kept (default: DATA_DIR.downloads "
                                       "beside a local root, a temp folder for gs://)")
    p.add_argument("--lock", help="lock file (default: DATA_DIR/xitt-data.lock.json)")
    p.add_argument("--mirror", help="fetch https://HOST/PATH from MIRROR/HOST/PATH instead")
    p.add_argument("--attempts", type=int, default=4, help="tries per download")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per connection/read")
    p.add_argument("--backoff", type=float, default=1.0, help="seconds before the first retry")
    p.add_argument("--no_progress", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        selected = units.units(units.parse_only(args.only), args.eval_only)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        results = check.check(args.data_dir, selected)
        print(check.table(results))
        return 0 if check.all_complete(results) else 1
    opts = pipeline.Options(args.data_dir, args.cache_dir, args.lock, args.mirror, args.jobs,
                            args.attempts, args.timeout, args.backoff, not args.no_progress)
    report = pipeline.prepare(selected, opts)
    print(pipeline.summary(report, args.data_dir))
    return 1 if report.failed else 0


if __name__ == "__main__":
    from xitt_common.quiet import entry_point

    entry_point()  # removes --verbose (the package's import quieted the libraries)
    sys.exit(main())
