"""What the whole study costs on TPUs, before anything is booked.

    python -m tpu_scripts.cost gin/study/study_mt5.gin --mfu 0.4 [--price_per_chip_hour 1.2]
        [--generation v5e] [--cells]   # the whole study, every size

For every training cell of the experiments' grids (study.grid; a cell in two files counts once):

    chip-hours = steps x FLOPs per step / (peak bf16 FLOP/s per chip x MFU) / 3600

FLOPs per step are model FLOPs (train.flops: every matmul of the forward pass x 3 for a train
step, at the padded feature lengths and the experiment's batch; the dual encoder: both encoder
towers plus the in-batch scores). The MFU you assume absorbs rematerialisation, input pipeline
and communication; the fit table (docs/tpu_fit.md) gives each config's MFU bound. Chip-hours
do not depend on the slice size (a bigger slice finishes sooner on more chips).

Evaluation (`eval_costs`): every target cell decodes (or, for retrieval, embeds) every
language of its target once, plus the English-dev validation for model selection every
`save_every` steps; FLOPs = train.flops.decode_flops per example at the experiment's eval
lengths, at an assumed `--eval_mfu` (decoding is memory-bound: far below training's MFU).
Per-language set sizes are EVAL_ITEMS (approximate, see there). Money = chip-hours x
--price_per_chip_hour.

Provisioning and setup are counted per slice created (`setup_costs`): each costs
`--provision_minutes` (the node booting once capacity is granted) + `--setup_minutes` (clone and
pip install on every host) on every chip of its slice, both assumed, not measured; time waiting
in the queue is not billed, and each preemption adds a slice not counted here. How many slices
are created is the executor's plan (tpu_scripts/plan.py) with `--workers` workers that keep
their slice, next to one slice per cell.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from tpu_scripts import topology

FORMULA = ("chip-hours = steps x model FLOPs per step / (peak bf16 FLOP/s per chip x MFU) "
           "/ 3600")


@dataclasses.dataclass(frozen=True)
class TrainCell:
    """What costing needs of one cell (study.grid.Cell has these attributes)."""

    cell_id: str
    kind: str           # 'intermediate' | 'stage' | 'target' | 'retrieval' | 'embedding'
    size: str
    steps: int
    inputs: int
    targets: int
    batch_size: int
    dual_encoder: bool = False


# Approximate evaluation-set sizes per language (examples; XTREME-R dev sets, or test where a
# target has only one set), rounded: they set the evaluation cost and the planner's test-item
# noise, not any result. XCOPA: 100 dev; XQuAD/LAReQA: 1190 questions; XNLI: 2490 dev.
EVAL_ITEMS = {"xnli": 2490, "xcopa": 100, "udpos": 1000, "wikiann": 1000, "xquad": 1190,
              "mlqa": 1000, "tydiqa": 500, "mewslix": 1000, "lareqa": 1190, "tatoeba": 1000}
DEFAULT_EVAL_MFU = 0.1


@dataclasses.dataclass(frozen=True)
class EvalCell:
    """What costing one cell's evaluation needs."""

    cell_id: str
    size: str
    examples: int       # every language's examples + the selection validations
    inputs: int
    targets: int        # decode length (1 for an embedding pass)


@dataclasses.dataclass(frozen=True)
class CellCost:
    cell: TrainCell
    flops_per_step: float
    chip_hours: float


def step_flops(config: Any, cell: TrainCell) -> float:
    from train import flops

    if cell.dual_encoder:
        d, j, f = config.emb_dim, config.joined_kv, config.mlp_dim
        per_token = lambda n: config.num_encoder_layers * (8 * d * j + 6 * d * f + 4 * n * j)
        fwd = cell.batch_size * (cell.inputs * per_token(cell.inputs)
                                 + cell.targets * per_token(cell.targets))
        return flops.TRAIN_MULTIPLIER * fwd + 3 * 2 * cell.batch_size ** 2 * d
    return flops.train_step_flops(config, cell.batch_size, cell.inputs, cell.targets)


def chip_hours(flops_total: float, chip: topology.Chip, mfu: float) -> float:
    return flops_total / (chip.peak_bf16_flops * mfu) / 3600.0


def cost_cells(cells: Iterable[TrainCell], model_configs: dict[str, Any], chip: topology.Chip,
               mfu: float) -> list[CellCost]:
    if not 0 < mfu <= 1:
        raise ValueError(f"--mfu {mfu}: expected a fraction in (0, 1], e.g. 0.4")
    out = []
    for cell in cells:
        if cell.steps <= 0:
            continue
        f = step_flops(model_configs[cell.size], cell)
        out.append(CellCost(cell, f, chip_hours(f * cell.steps, chip, mfu)))
    return out


def eval_chip_hours(cells: Iterable[EvalCell], model_configs: dict[str, Any],
                    chip: topology.Chip, mfu: float = DEFAULT_EVAL_MFU) -> dict[str, float]:
    """Evaluation chip-hours per size."""
    from train import flops

    if not 0 < mfu <= 1:
        raise ValueError(f"--eval_mfu {mfu}: expected a fraction in (0, 1], e.g. 0.1")
    out: dict[str, float] = {}
    for c in cells:
        f = flops.decode_flops(model_configs[c.size], 1, c.inputs, c.targets) * c.examples
        out[c.size] = out.get(c.size, 0.0) + chip_hours(f, chip, mfu)
    return out


def eval_cells_from_experiment(exp: Any, cells: Iterable[Any]) -> list[EvalCell]:
    """One EvalCell per cell that is scored (study.grid cells with a target)."""
    out = []
    for c in cells:
        if c.target is None or c.kind == "stage":
            continue
        lengths = exp.eval_length(c.target)
        langs = len(exp.languages[c.target])
        per_lang = EVAL_ITEMS[c.target]
        if exp.eval_max_examples:
            per_lang = min(per_lang, exp.eval_max_examples)
        validations = (c.steps // exp.save_every) * per_lang if c.steps else 0
        decode = 1 if c.kind in ("retrieval", "embedding") else lengths.targets
        out.append(EvalCell(c.cell_id, c.size, langs * per_lang + validations, lengths.inputs,
                            decode))
    return out


def per_seed_chip_hours(exp: Any, chip: topology.Chip, mfu: float,
                        eval_mfu: float = DEFAULT_EVAL_MFU) -> dict[str, tuple[float, float]]:
    """Per size, (training, evaluation) chip-hours of ONE seed of the experiment's grid."""
    from study import grid

    cells, configs = cells_for(exp)
    train = cost_cells(cells, configs, chip, mfu)
    evals = eval_chip_hours(eval_cells_from_experiment(exp, grid.build(exp, "/tmp/xitt-cost")),
                            configs, chip, eval_mfu)
    seeds = len(exp.seeds)
    return {s.name: (sum(c.chip_hours for c in train if c.cell.size == s.name) / seeds,
                     evals.get(s.name, 0.0) / seeds) for s in exp.sizes}


def _eval_cells(path: str) -> list[EvalCell]:
    from study import experiment, grid

    exp = experiment.load(path, check_files=False)
    return eval_cells_from_experiment(exp, grid.build(exp, "/tmp/xitt-cost-study"))


def report(costs: Sequence[CellCost], chip: topology.Chip, mfu: float,
           price: float | None, per_cell: bool,
           evals: dict[str, float] | None = None, eval_mfu: float = DEFAULT_EVAL_MFU) -> str:
    lines = [FORMULA,
             f"chip: {chip.generation}, peak {chip.peak_bf16_flops / 1e12:.0f} TFLOP/s bf16; "
             f"assumed MFU {mfu:.0%}" + (f"; price {price:g} per chip-hour" if price else "")]
    money = (lambda h: f"  {h * price:>12,.0f}") if price else (lambda h: "")
    if per_cell:
        lines.append(f"{'cell':<60} {'steps':>8} {'FLOPs/step':>11} {'chip-h':>10}"
                     + ("  money" if price else ""))
        for c in costs:
            lines.append(f"{c.cell.cell_id:<60} {c.cell.steps:>8,} {c.flops_per_step:>11.3e} "
                         f"{c.chip_hours:>10,.1f}" + money(c.chip_hours))
    evals = evals or {}
    lines.append(f"{'size':<8} {'cells':>6} {'steps':>12} {'chip-hours':>12} {'eval':>10}"
                 + ("  money" if price else ""))
    sizes: dict[str, list[CellCost]] = {}
    for c in costs:
        sizes.setdefault(c.cell.size, []).append(c)
    total = 0.0
    for size, group in sizes.items():
        hours = sum(c.chip_hours for c in group)
        total += hours
        lines.append(f"{size:<8} {len(group):>6} {sum(c.cell.steps for c in group):>12,} "
                     f"{hours:>12,.1f} {evals.get(size, 0.0):>10,.1f}"
                     + money(hours + evals.get(size, 0.0)))
    ev = sum(evals.values())
    lines.append(f"{'total':<8} {len(costs):>6} {sum(c.cell.steps for c in costs):>12,} "
                 f"{total:>12,.1f} {ev:>10,.1f}" + money(total + ev))
    lines.append(f"(chip-hours: training; eval: decoding every language + selection "
                 f"validations at an assumed MFU of {eval_mfu:.0%}; money: both)")
    return "\n".join(lines)


SETUP_ASSUMPTION = ("per slice created: {p:g} min provisioning + {s:g} min setup (assumed), "
                    "billed on every chip of the slice; queue wait not billed; each "
                    "preemption adds a slice, not counted")


@dataclasses.dataclass(frozen=True)
class SetupCost:
    slices: int
    chip_hours: float


def setup_costs(paths: Sequence[str], workers: int, minutes: float,
                ) -> tuple[SetupCost, SetupCost, list[str]]:
    """Provisioning + setup of the slices the experiments' plans create with `workers` workers
    that keep their slice, and with one slice per cell; plus the sizes left out (no gin/tpu
    file, so no slice)."""
    from study import experiment, grid
    from tpu_scripts import executor, plan

    kept = per_cell = 0.0
    n_kept = n_cells = 0
    skipped: list[str] = []
    for path in paths:
        exp = experiment.load(path, check_files=False)
        slices = {}
        for size in exp.sizes:
            tpu = [f for f in size.gin_files if f.startswith("gin/tpu/")]
            if tpu:
                slices[size.name] = executor.Placement.for_config(tpu[0], "cost").slice
            else:
                skipped.append(f"{path}: {size.name}")
        cells = [c for c in grid.build(exp, "/tmp/xitt-cost-study") if c.size in slices]
        chips = {s.name: s.num_chips for s in slices.values()}
        pool = [plan.PlanWorker({n: s.name for n, s in slices.items()})
                for _ in range(workers)]
        for use in plan.simulate(cells, pool).slices:
            kept += chips[use.slice] * minutes / 60
            n_kept += 1
        for c in cells:
            per_cell += slices[c.size].num_chips * minutes / 60
            n_cells += 1
    return SetupCost(n_kept, kept), SetupCost(n_cells, per_cell), skipped


def setup_report(kept: SetupCost, per_cell: SetupCost, workers: int, provision: float,
                 setup: float, price: float | None) -> str:
    money = (lambda h: f", {h * price:,.0f} money") if price else (lambda h: "")
    return "\n".join([
        "provisioning + setup: " + SETUP_ASSUMPTION.format(p=provision, s=setup),
        f"  workers keep their slice (--workers {workers}): {kept.slices:,} slices, "
        f"{kept.chip_hours:,.1f} chip-hours" + money(kept.chip_hours),
        f"  one slice per cell: {per_cell.slices:,} slices, {per_cell.chip_hours:,.1f} "
        "chip-hours" + money(per_cell.chip_hours)])


def cells_from_experiment(path: str) -> tuple[list[TrainCell], dict[str, Any]]:
    """The experiment's training cells and each size's MT5Config (via study.grid)."""
    from study import experiment

    return cells_for(experiment.load(path, check_files=False))


def cells_for(exp: Any) -> tuple[list[TrainCell], dict[str, Any]]:
    """cells_from_experiment for a loaded (or derived) study.experiment.Experiment."""
    from study import grid
    from train import gin_utils

    configs = {}
    for size in exp.sizes:
        gin_utils.parse([size.model_gin], [])
        configs[size.name] = gin_utils.model_config_from_gin()
    cells = []
    for c in grid.build(exp, "/tmp/xitt-cost-study"):
        if not c.steps:
            continue
        key = grid.phase_key(c)
        lengths = exp.train_length(key)
        cells.append(TrainCell(c.cell_id, c.kind, c.size, c.steps, lengths.inputs,
                               lengths.targets, exp.batch_size(key),
                               dual_encoder=c.kind == "retrieval"))
    return cells, configs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tpu_scripts.cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", nargs="+",
                        help="the study's experiment files (gin/study/*.gin), e.g. one per size")
    parser.add_argument("--mfu", type=float, default=0.4)
    parser.add_argument("--eval_mfu", type=float, default=DEFAULT_EVAL_MFU,
                        help="assumed MFU of decoding (memory-bound; default 0.1)")
    parser.add_argument("--price_per_chip_hour", type=float, default=None)
    parser.add_argument("--generation", choices=sorted(topology.CHIPS), default="v5e")
    parser.add_argument("--cells", action="store_true", help="one line per cell")
    parser.add_argument("--workers", type=int, default=16,
                        help="TPU workers, each keeping its slice (tpu_scripts.executor)")
    parser.add_argument("--provision_minutes", type=float, default=5.0,
                        help="assumed per slice created: booting once capacity is granted")
    parser.add_argument("--setup_minutes", type=float, default=5.0,
                        help="assumed per slice created: clone and pip install")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from eval.quiet import quiet_imports

    quiet_imports(tasks=False)  # TF's start-up lines (the experiment's gin imports seqio)
    try:
        cells, evals, configs, seen = [], [], {}, set()
        for path in args.experiment:
            more, sized = cells_from_experiment(path)
            cells += [c for c in more if c.cell_id not in seen]
            evals += [c for c in _eval_cells(path) if c.cell_id not in seen]
            seen.update(c.cell_id for c in more)
            configs.update(sized)
        chip = topology.CHIPS[args.generation]
        costs = cost_cells(cells, configs, chip, args.mfu)
        ev = eval_chip_hours(evals, configs, chip, args.eval_mfu)
        print(report(costs, chip, args.mfu, args.price_per_chip_hour, args.cells, ev,
                     args.eval_mfu))
        if args.workers < 1:
            raise ValueError(f"--workers {args.workers}: expected at least 1")
        kept, per_cell, skipped = setup_costs(args.experiment, args.workers,
                                              args.provision_minutes + args.setup_minutes)
        print(setup_report(kept, per_cell, args.workers, args.provision_minutes,
                           args.setup_minutes, args.price_per_chip_hour))
        if skipped:
            print(f"  (no gin/tpu slice, left out: {', '.join(skipped)})")
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from xitt_common.quiet import entry_point

    entry_point(libraries=False)  # first: no library lines unless --verbose
    sys.exit(main())
