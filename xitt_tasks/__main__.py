"""`python -m xitt_tasks list` | `python -m xitt_tasks show NAME [--split S] [-n 3]
[--lengths 512,128]`: the registered tasks and mixtures, and a few preprocessed examples."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import seqio

import xitt_tasks  # noqa: F401  (registers; quiets `python -m xitt_tasks`)
from xitt_common import quiet


def xitt_names() -> tuple[list[str], list[str]]:
    tasks = sorted(n for n in seqio.TaskRegistry.names() if n.startswith("xitt."))
    mixtures = sorted(n for n in seqio.MixtureRegistry.names() if n.startswith("xitt."))
    return tasks, mixtures


def cmd_list() -> None:
    tasks, mixtures = xitt_names()
    print(f"# {len(tasks)} tasks")
    for name in tasks:
        print(f"task     {name}  splits={','.join(seqio.get_mixture_or_task(name).splits)}")
    print(f"# {len(mixtures)} mixtures")
    for name in mixtures:
        mix = seqio.get_mixture_or_task(name)
        print(f"mixture  {name}  ({len(mix.tasks)} tasks)")


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def cmd_show(name: str, split: str | None, n: int, lengths: dict[str, int]) -> None:
    provider = seqio.get_mixture_or_task(name)
    split = split or ("train" if "train" in provider.splits else provider.splits[0])
    tasks = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
    print(f"{name}: split sizes")
    for task in tasks:
        sizes = {s: task.source.count(s) if hasattr(task.source, "count") else "?"
                 for s in task.splits}
        print(f"  {task.name}: {sizes}")
    ds = seqio.get_dataset(name, lengths, feature_converter=seqio.PassThroughFeatureConverter(),
                           dataset_split=split, shuffle=False, num_epochs=1)
    print(f"{name}[{split}]: first {n} examples")
    for i, ex in enumerate(ds.take(n).as_numpy_iterator()):
        print(f"--- {i}")
        for key in ("inputs", "targets"):
            if f"{key}_pretokenized" in ex:
                print(f"  {key}: {_text(ex[f'{key}_pretokenized'])}")
            else:  # mixtures drop the *_pretokenized features: decode the ids instead
                vocab = provider.output_features[key].vocabulary
                print(f"  {key} (decoded): {vocab.decode(ex[key].tolist())}")
            print(f"  {key} ids: {ex[key].tolist()}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xitt_tasks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print every registered xitt task and mixture")
    show = sub.add_parser("show", help="print a few preprocessed examples and split sizes")
    show.add_argument("name")
    show.add_argument("--split", default=None)
    show.add_argument("-n", type=int, default=3)
    show.add_argument("--lengths", default="512,128", help="inputs,targets feature lengths")
    args = parser.parse_args(argv)
    if args.command == "list":
        cmd_list()
        return 0
    try:
        inputs_len, targets_len = (int(x) for x in args.lengths.split(","))
    except ValueError:
        parser.error(f"--lengths {args.lengths!r}: expected two integers, e.g. 512,128")
    try:
        provider = seqio.get_mixture_or_task(args.name)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.split is not None and args.split not in provider.splits:
        print(f"error: {args.name} has no split {args.split!r}; expected one of "
              f"{list(provider.splits)}", file=sys.stderr)
        return 2
    cmd_show(args.name, args.split, args.n, {"inputs": inputs_len, "targets": targets_len})
    return 0


if __name__ == "__main__":
    quiet.entry_point()  # removes --verbose (the package's import quieted the libraries)
    sys.exit(main())
