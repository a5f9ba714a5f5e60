"""`python -m tpu_scripts.cost`: chip-hours per cell and per size from the stated formula."""
import dataclasses

import pytest

from tpu_scripts import cost, topology
from train import flops
from train.config import MT5Config

BASE = MT5Config(emb_dim=768, mlp_dim=2048, num_heads=12, num_encoder_layers=12,
                 num_decoder_layers=12)


def cell(cell_id="base/inter", steps=1000, targets=128, dual=False, size="base"):
    return cost.TrainCell(cell_id, "retrieval" if dual else "target", size, steps, 1024,
                          targets, 128, dual_encoder=dual)


def test_chip_hours_follow_the_formula():
    chip = topology.CHIPS["v5e"]
    (c,) = cost.cost_cells([cell()], {"base": BASE}, chip, mfu=0.5)
    step = flops.train_step_flops(BASE, 128, 1024, 128)
    assert c.flops_per_step == step
    assert c.chip_hours == pytest.approx(1000 * step / (197e12 * 0.5) / 3600)
    # twice the steps, twice the hours; a faster chip, fewer hours
    (c2,) = cost.cost_cells([cell(steps=2000)], {"base": BASE}, chip, mfu=0.5)
    assert c2.chip_hours == pytest.approx(2 * c.chip_hours)
    (c3,) = cost.cost_cells([cell()], {"base": BASE}, topology.CHIPS["v5p"], mfu=0.5)
    assert c3.chip_hours == pytest.approx(c.chip_hours * 197 / 459)


def test_dual_encoder_costs_the_two_encoder_towers_only():
    (enc_dec,) = cost.cost_cells([cell()], {"base": BASE}, topology.CHIPS["v4"], 0.4)
    (dual,) = cost.cost_cells([cell(dual=True)], {"base": BASE}, topology.CHIPS["v4"], 0.4)
    no_decoder = dataclasses.replace(BASE, num_decoder_layers=1)
    assert dual.flops_per_step < enc_dec.flops_per_step
    # more than the query tower's train FLOPs alone (the candidate tower adds to it)
    query_only = 3 * flops.forward_flops(no_decoder, 128, 1024, 1).encoder
    assert dual.flops_per_step > query_only


def test_cells_without_training_cost_nothing_and_bad_mfu_is_refused():
    assert cost.cost_cells([cell(steps=0)], {"base": BASE}, topology.CHIPS["v5e"], 0.4) == []
    with pytest.raises(ValueError, match="--mfu 1.5: expected a fraction"):
        cost.cost_cells([cell()], {"base": BASE}, topology.CHIPS["v5e"], 1.5)


def test_report_sums_per_size_and_prices_the_total():
    chip = topology.CHIPS["v5e"]
    cells = [cell("b1"), cell("b2", targets=512), cell("x1", size="xxl")]
    xxl = MT5Config(emb_dim=4096, mlp_dim=10240, num_heads=64, num_encoder_layers=24,
                    num_decoder_layers=24)
    costs = cost.cost_cells(cells, {"base": BASE, "xxl": xxl}, chip, 0.4)
    text = cost.report(costs, chip, 0.4, price=2.0, per_cell=True)
    lines = text.splitlines()
    assert lines[0] == cost.FORMULA
    base_hours = costs[0].chip_hours + costs[1].chip_hours
    base_line = next(line for line in lines if line.startswith("base "))
    assert base_line.split()[1:3] == ["2", "2,000"]
    assert float(base_line.split()[3].replace(",", "")) == pytest.approx(base_hours, abs=0.06)
    total = next(line for line in lines if line.startswith("total"))
    hours = sum(c.chip_hours for c in costs)
    assert float(total.split()[4]) == 0.0  # no evaluation cells given
    assert float(total.split()[5].replace(",", "")) == pytest.approx(2 * hours, abs=0.6)
    assert costs[2].chip_hours > 10 * costs[0].chip_hours  # XXL vs Base at equal steps


def test_cli_on_the_study_experiment(capsys):
    assert cost.main(["gin/study/study_mt5.gin", "--mfu", "0.4", "--cells"]) == 0
    out = capsys.readouterr().out
    assert cost.FORMULA in out
    cell_lines = [line for line in out.splitlines()
                  if line.startswith(("base/", "large/", "xl/", "xxl/"))]
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert int(total.split()[1]) == len(cell_lines) > 0
    summed = sum(float(line.split()[-1].replace(",", "")) for line in cell_lines)
    assert float(total.split()[3].replace(",", "")) == pytest.approx(summed, rel=1e-3)


def test_one_command_costs_every_size_and_counts_a_repeated_file_once(capsys):
    def totals(*files):
        assert cost.main([*files, "--mfu", "0.4"]) == 0
        lines = capsys.readouterr().out.splitlines()
        return {line.split()[0]: float(line.split()[3].replace(",", "")) for line in lines
                if line.split() and line.split()[0] in ("base", "large", "total")}

    every = totals("gin/study/study_mt5.gin")  # the real study: one file, every size
    assert totals("gin/study/study_mt5.gin", "gin/study/study_mt5.gin") == every
    assert every["total"] > every["base"] + every["large"] > every["large"] > every["base"] > 0


def _base_only(tmp_path):
    """The real study at Base alone (one slice type)."""
    path = tmp_path / "base_only.gin"
    path.write_text("include 'gin/study/study_mt5.gin'\n"
                    "experiment.study.sizes = {'base': 'gin/models/mt5_base.gin'}\n"
                    "experiment.study.initial_checkpoints = {'base': 'gs://b/mt5_base'}\n"
                    "experiment.study.size_gin_files = "
                    "{'base': ['gin/tpu/mt5_base_v4_2x2x1.gin']}\n")
    return str(path)


def test_provisioning_and_setup_count_per_slice_created(capsys, tmp_path):
    from study import experiment, grid

    base_only = _base_only(tmp_path)
    kept, per_cell, skipped = cost.setup_costs([base_only], 2, 10.0)
    cells = grid.build(experiment.load(base_only, check_files=False), "/tmp/c")
    chips = topology.Slice.parse("v4:2x2x1").num_chips  # Base's gin/tpu slice
    # one size, one slice type: each of the two workers creates one slice and keeps it
    assert (kept.slices, per_cell.slices, skipped) == (2, len(cells), [])
    assert kept.chip_hours == pytest.approx(2 * chips * 10 / 60)
    assert per_cell.chip_hours == pytest.approx(len(cells) * chips * 10 / 60)
    assert cost.main([base_only, "--workers", "2", "--provision_minutes", "4",
                      "--setup_minutes", "6"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-3].startswith("provisioning + setup: per slice created: 4 min provisioning + "
                              "6 min setup (assumed)")
    assert out[-2] == (f"  workers keep their slice (--workers 2): 2 slices, "
                       f"{kept.chip_hours:,.1f} chip-hours")
    assert out[-1] == (f"  one slice per cell: {len(cells):,} slices, "
                       f"{per_cell.chip_hours:,.1f} chip-hours")


def test_evaluation_costs_every_language_and_the_selection_validations():
    from study import experiment, grid

    exp = experiment.load("gin/study/study_mt5.gin", check_files=False)
    evals = cost.eval_cells_from_experiment(exp, grid.build(exp, "/tmp/xitt-cost-test"))
    xnli = next(c for c in evals if c.cell_id == "base/s0/baseline/xnli")
    validations = (exp.target_steps["xnli"] // exp.save_every) * cost.EVAL_ITEMS["xnli"]
    assert xnli.examples == len(exp.languages["xnli"]) * cost.EVAL_ITEMS["xnli"] + validations
    assert xnli.targets == exp.eval_length("xnli").targets
    tatoeba = next(c for c in evals if c.cell_id == "base/s0/baseline/tatoeba")
    assert tatoeba.targets == 1  # an embedding pass, no decoding
    chip = topology.CHIPS["v5e"]
    hours = cost.eval_chip_hours([xnli], {"base": BASE}, chip, mfu=0.1)["base"]
    per_example = flops.decode_flops(BASE, 1, xnli.inputs, xnli.targets)
    assert hours == pytest.approx(xnli.examples * per_example / (197e12 * 0.1) / 3600)
    with pytest.raises(ValueError, match="--eval_mfu 0: expected a fraction"):
        cost.eval_chip_hours([xnli], {"base": BASE}, chip, mfu=0)
