"""Epoch budgets as packed steps: what the published recipes' epochs cost in this study's steps.

X-STILTs trains each intermediate task for 3 epochs and XTREME-R states its targets' budgets in
epochs (docs/protocol.md); the trainer counts steps of packed sequences, t5x style. A phase's
steps are ceil(epochs x packed sequences per epoch / sequences per step), where a packed epoch
is counted on the data the study reads, tokenized with its vocabulary and packed at the phase's
lengths as training packs it (an unpacked phase's epoch is its examples: dual encoders' pairs,
and the phases trained with XTREME-R's example batches, `batch_examples`).

    python -m study budget EXPERIMENT            # measure; exit 1 where the file disagrees
    python -m study budget EXPERIMENT --estimate 51   # from published counts, t tokens/example

A real study (toy = False) with `epochs` refuses to start until its file agrees with the
measurement (`check`): the steps that cost chip-hours are then the published budget on the data
actually prepared, not an estimate. The measurement is kept in the study directory
(`budget.json`, keyed by the data settings) so a coordinator counts once.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence

from study.experiment import (
    INTER_PREFIX,
    INTERMEDIATE_TASKS,
    MULTITASK,
    Experiment,
    ExperimentError,
    alternative_base,
    condition_short,
)

BUDGET_FILE = "budget.json"


@dataclasses.dataclass(frozen=True)
class PhaseBudget:
    key: str                 # 'mnli', 'multitask', 'xcopa_siqa', 'udpos', ...
    epochs: float
    examples: int
    sequences: int           # packed sequences (dual encoders: pairs) in one epoch
    batch: int               # sequences per step
    file_steps: int          # what the experiment file says

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.epochs * self.sequences / self.batch))

    @property
    def agrees(self) -> bool:
        return self.steps == self.file_steps


def phases(exp: Experiment) -> dict[str, float]:
    """Phase key -> epochs, for every phase of the grid whose budget is in epochs."""
    out: dict[str, float] = {}
    tasks = {alternative_base(condition_short(c)) for c in exp.conditions if c != "baseline"}
    for task in sorted(tasks):
        epochs = exp.epochs.get(task, exp.epochs.get("intermediate"))
        if epochs is not None:
            out[task] = epochs
    trained = set(exp.target_steps)
    if "xcopa" in trained and exp.xcopa_recipe == "siqa_copa" and "xcopa_siqa" in exp.epochs:
        out["xcopa_siqa"] = exp.epochs["xcopa_siqa"]
    for key, epochs in exp.epochs.items():
        if key in trained:
            out[key] = epochs
    return out


def train_tasks(key: str) -> list[str]:
    """The seqio tasks one epoch of phase `key` reads (a mixture: each of its tasks once)."""
    import seqio

    if key in (*INTERMEDIATE_TASKS, MULTITASK):
        name = INTER_PREFIX + key
    elif key == "xcopa_siqa":
        name = "xitt.xcopa.train.siqa"
    elif key == "xcopa":
        name = "xitt.xcopa.train.copa"
    else:
        name = f"xitt.{key}.train.en"
    provider = seqio.get_mixture_or_task(name)
    return [t.name for t in provider.tasks] if isinstance(provider, seqio.Mixture) else [name]


def file_steps(exp: Experiment, key: str) -> int:
    if key == "xcopa_siqa":
        return exp.xcopa_siqa_steps
    if key in exp.target_steps:
        return exp.target_steps[key]
    return exp.intermediate_steps_for(INTER_PREFIX + key)


def count_epoch(task: str, lengths: Mapping[str, int], pack: bool) -> tuple[int, int]:
    """(examples, sequences) of one unshuffled epoch of `task`'s train split."""
    import seqio

    examples = sum(1 for _ in seqio.get_mixture_or_task(task).get_dataset(
        None, "train", shuffle=False, num_epochs=1).as_numpy_iterator())
    if not pack:
        return examples, examples
    packed = seqio.get_dataset(task, dict(lengths), seqio.EncDecFeatureConverter(pack=True),
                               dataset_split="train", shuffle=False, num_epochs=1,
                               verbose=False)
    return examples, sum(1 for _ in packed.as_numpy_iterator())


def measure(exp: Experiment, keys: Sequence[str] | None = None,
            progress=None) -> dict[str, tuple[int, int]]:
    """Phase key -> (examples, sequences) of one epoch, counted on the data read now."""
    import xitt_tasks  # noqa: F401  (registers the tasks)

    out = {}
    keys = list(phases(exp) if keys is None else keys)
    for i, key in enumerate(keys):
        lengths = exp.train_length(key).as_dict()
        pack = exp.packed(key)
        counts = [count_epoch(t, lengths, pack) for t in train_tasks(key)]
        out[key] = (sum(c[0] for c in counts), sum(c[1] for c in counts))
        if progress is not None:
            progress(f"[{i + 1}/{len(keys)}] {key}: {out[key][0]:,} examples, "
                     f"{out[key][1]:,} sequences per epoch")
    return out


def estimate(exp: Experiment, tokens_per_example: float) -> dict[str, tuple[int, int]]:
    """Phase key -> (examples, sequences) from the published training-set sizes
    (xitt_tasks.prepare.counts), packing `tokens_per_example` input tokens per example into
    sequences of the phase's input length. Phases without a published count are left out."""
    import xitt_tasks  # noqa: F401
    from xitt_tasks.prepare import counts

    out = {}
    for key in phases(exp):
        sizes = [counts.expected(t, "train") for t in train_tasks(key)]
        if any(s is None for s in sizes):
            continue
        n = sum(s.n for s in sizes)
        out[key] = (n, math.ceil(n * tokens_per_example / exp.train_length(key).inputs)
                    if exp.packed(key) else n)
    return out


def budgets(exp: Experiment, counted: Mapping[str, tuple[int, int]]) -> list[PhaseBudget]:
    wanted = phases(exp)
    return [PhaseBudget(key, wanted[key], examples, sequences, exp.batch_size(key),
                        file_steps(exp, key))
            for key, (examples, sequences) in counted.items() if key in wanted]


def table(rows: Sequence[PhaseBudget]) -> str:
    lines = [f"{'phase':<14} {'epochs':>6} {'examples':>10} {'seqs/epoch':>10} {'batch':>6} "
             f"{'steps':>7} {'in file':>8}"]
    for r in rows:
        lines.append(f"{r.key:<14} {r.epochs:>6g} {r.examples:>10,} {r.sequences:>10,} "
                     f"{r.batch:>6} {r.steps:>7,} {r.file_steps:>8,}"
                     + ("" if r.agrees else "   <- differs"))
    return "\n".join(lines)


def fix_lines(exp: Experiment, rows: Sequence[PhaseBudget]) -> list[str]:
    """The gin lines to put in the experiment file for every phase that differs: whole
    mappings (gin has no item assignment), the entries that agree kept."""
    wrong = {r.key: r.steps for r in rows if not r.agrees}
    inter = {k: v for k, v in wrong.items() if k in (*INTERMEDIATE_TASKS, MULTITASK)}
    targets = {k: v for k, v in wrong.items() if k in exp.target_steps}
    lines = []
    if inter:
        lines.append(f"experiment.study.intermediate_steps = "
                     f"{ {**exp.intermediate_steps, **inter}!r}")
    if "xcopa_siqa" in wrong:
        lines.append(f"experiment.study.xcopa_siqa_steps = {wrong['xcopa_siqa']}")
    if targets:
        lines.append(f"experiment.study.target_steps = { {**exp.target_steps, **targets}!r}")
    return lines


def _data_key(exp: Experiment) -> dict[str, object]:
    """What the counts depend on: each phase's lengths and the data root, vocabulary and
    source in force (with the data root's lock file)."""
    from study import fingerprint
    from xitt_tasks.prepare import guard

    return {"lengths": {k: exp.train_length(k).as_dict() for k in phases(exp)},
            "environment": fingerprint.environment(), **guard.provenance()}


def check(exp: Experiment, study_dir: str, progress=None) -> None:
    """Refuse (ExperimentError) a real study whose epoch-budgeted steps differ from the
    measurement on its data; the measurement is kept in `<study_dir>/budget.json`."""
    if exp.toy or not phases(exp):
        return
    from xitt_common import fs

    path = fs.join(study_dir, BUDGET_FILE)
    key = _data_key(exp)
    counted = None
    if fs.is_file(path):
        saved = json.loads(fs.path(path).read_text())
        if saved.get("key") == key:
            counted = {k: tuple(v) for k, v in saved["counts"].items()}
    if counted is None or set(counted) != set(phases(exp)):
        counted = measure(exp, progress=progress)
        fs.write_bytes_atomic(path, json.dumps({"key": key, "counts": counted},
                                               indent=1).encode())
    wrong = [r for r in budgets(exp, counted) if not r.agrees]
    if wrong:
        raise ExperimentError(
            f"{exp.path}: steps differ from the published epochs on this data "
            f"(python -m study budget {exp.path} shows the table); set "
            + "; ".join(fix_lines(exp, wrong)))
