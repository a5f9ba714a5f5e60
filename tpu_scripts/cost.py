"""What the whole study costs on TPUs, before anything is booked.

    python -m tpu_scripts.cost gin/study/study_xxl.gin --mfu 0.4 [--price_per_chip_hour 1.2]
        [--generation v5e] [--cells]
    python -m tpu_scripts.cost gin/study/study_{base,large,xl,xxl}.gin   # the whole study

For every training cell of the experiments' grids (study.grid; a cell in two files counts once):

    chip-hours = steps x FLOPs per step / (peak bf16 FLOP/s per chip x MFU) / 3600

FLOPs per step are model FLOPs (train.flops: every matmul of the forward pass x 3 for a train
step, at the padded feature lengths and the experiment's batch; the dual encoder: both encoder
towers plus the in-batch scores). The MFU you assume absorbs rematerialisation, input pipeline
and communication; the fit table (docs/tpu_fit.md) gives each config's MFU bound. Chip-hours
do not depend on the slice size (a bigger slice finishes sooner on more chips). Evaluation
(decoding every language) is not included. Money = chip-hours x --price_per_chip_hour.
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


def report(costs: Sequence[CellCost], chip: topology.Chip, mfu: float,
           price: float | None, per_cell: bool) -> str:
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
    lines.append(f"{'size':<8} {'cells':>6} {'steps':>12} {'chip-hours':>12}"
                 + ("  money" if price else ""))
    sizes: dict[str, list[CellCost]] = {}
    for c in costs:
        sizes.setdefault(c.cell.size, []).append(c)
    total = 0.0
    for size, group in sizes.items():
        hours = sum(c.chip_hours for c in group)
        total += hours
        lines.append(f"{size:<8} {len(group):>6} {sum(c.cell.steps for c in group):>12,} "
                     f"{hours:>12,.1f}" + money(hours))
    lines.append(f"{'total':<8} {len(costs):>6} {sum(c.cell.steps for c in costs):>12,} "
                 f"{total:>12,.1f}" + money(total))
    lines.append("(training steps only; evaluation is not included)")
    return "\n".join(lines)


def cells_from_experiment(path: str) -> tuple[list[TrainCell], dict[str, Any]]:
    """The experiment's training cells and each size's MT5Config (via study.grid)."""
    from study import experiment, grid
    from train import gin_utils

    exp = experiment.load(path, check_files=False)
    configs = {}
    for size in exp.sizes:
        gin_utils.parse([size.model_gin], [])
        configs[size.name] = gin_utils.model_config_from_gin()
    cells = []
    for c in grid.build(exp, "/tmp/xitt-cost-study"):
        if not c.steps:
            continue
        key = c.target if c.kind != "intermediate" else experiment.condition_short(c.condition)
        if c.kind == "stage":
            key = "xcopa_siqa"
        lengths = exp.train_length(key)
        cells.append(TrainCell(c.cell_id, c.kind, c.size, c.steps, lengths.inputs,
                               lengths.targets, exp.batch_size,
                               dual_encoder=c.kind == "retrieval"))
    return cells, configs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tpu_scripts.cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", nargs="+",
                        help="the study's experiment files (gin/study/*.gin), e.g. one per size")
    parser.add_argument("--mfu", type=float, default=0.4)
    parser.add_argument("--price_per_chip_hour", type=float, default=None)
    parser.add_argument("--generation", choices=sorted(topology.CHIPS), default="v5e")
    parser.add_argument("--cells", action="store_true", help="one line per cell")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from eval.quiet import quiet_imports

    quiet_imports(tasks=False)  # TF's start-up lines (the experiment's gin imports seqio)
    try:
        cells, configs, seen = [], {}, set()
        for path in args.experiment:
            more, sized = cells_from_experiment(path)
            cells += [c for c in more if c.cell_id not in seen]
            seen.update(c.cell_id for c in more)
            configs.update(sized)
        chip = topology.CHIPS[args.generation]
        costs = cost_cells(cells, configs, chip, args.mfu)
        print(report(costs, chip, args.mfu, args.price_per_chip_hour, args.cells))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from xitt_common.quiet import entry_point

    entry_point(libraries=False)  # first: no library lines unless --verbose
    sys.exit(main())
